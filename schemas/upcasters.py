"""Upcasters: turn a record written with an older schema into today's shape.

Avro schema resolution already handles added fields with defaults and removed fields; an
upcaster is for changes of meaning (a split field, a changed unit). Each is keyed by the record's
full name and applied, in registration order, to the datum decoded against today's schema
whenever the writer schema differs from it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Upcaster = Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]
"""(writer_schema, datum) -> datum"""

_UPCASTERS: dict[str, list[Upcaster]] = {}


def register(record_full_name: str, upcaster: Upcaster) -> None:
    _UPCASTERS.setdefault(record_full_name, []).append(upcaster)


def unregister(record_full_name: str, upcaster: Upcaster) -> None:
    _UPCASTERS.get(record_full_name, []).remove(upcaster)


def upcast(
    record_full_name: str, writer_schema: dict[str, Any], datum: dict[str, Any]
) -> dict[str, Any]:
    for upcaster in _UPCASTERS.get(record_full_name, ()):
        datum = upcaster(writer_schema, datum)
    return datum
