"""Avro schemas derived from the event dataclasses, and fast dataclass <-> dict converters.

The dataclasses in ``ledger.events`` are the single source of truth. ``avro_schema(cls)`` maps
them to Avro (documented fields, named shared types) and ``codec(cls)`` compiles converters once
per class, so the hot path never walks type hints.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from functools import cache
from pathlib import Path
from typing import Any

import fastavro

from ledger.money import Money

NAMESPACE = "io.evledger"
AVSC_DIR = Path(__file__).parent / "avro"

_PRIMITIVES: dict[Any, str] = {
    str: "string",
    int: "long",
    bool: "boolean",
    float: "double",
    bytes: "bytes",
}
_MONEY_DOCS = {
    "amount_minor": "Amount in integer minor units of the currency (EUR 12.34 is 1234)",
    "currency": "ISO 4217 alphabetic code; fixes the minor-unit exponent",
}


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"only X | None unions are supported, got {tp}")
        return args[0], True
    return tp, False


def _fields(cls: type) -> list[tuple[dataclasses.Field[Any], Any]]:
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls)]


def _avro_type(tp: Any, defined: set[str]) -> Any:
    inner, optional = _unwrap_optional(tp)
    avro = _avro_non_null(inner, defined)
    return ["null", avro] if optional else avro


def _avro_non_null(tp: Any, defined: set[str]) -> Any:
    if tp in _PRIMITIVES:
        return _PRIMITIVES[tp]
    if tp is datetime:
        return {"type": "long", "logicalType": "timestamp-micros"}
    if typing.get_origin(tp) is list:
        (item,) = typing.get_args(tp)
        return {"type": "array", "items": _avro_type(item, defined)}
    if isinstance(tp, type) and issubclass(tp, Enum):
        name = f"{NAMESPACE}.{tp.__name__}"
        if name in defined:
            return name
        defined.add(name)
        return {
            "type": "enum",
            "name": tp.__name__,
            "namespace": NAMESPACE,
            "doc": (tp.__doc__ or "").strip(),
            "symbols": [m.value for m in tp],
        }
    if tp is Money:
        name = f"{NAMESPACE}.Money"
        if name in defined:
            return name
        defined.add(name)
        return {
            "type": "record",
            "name": "Money",
            "namespace": NAMESPACE,
            "doc": "Money as integer minor units plus an ISO 4217 code; never a float",
            "fields": [
                {"name": "amount_minor", "type": "long", "doc": _MONEY_DOCS["amount_minor"]},
                {"name": "currency", "type": "string", "doc": _MONEY_DOCS["currency"]},
            ],
        }
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _record(tp, defined)
    raise TypeError(f"no Avro mapping for {tp!r}")


def _record(cls: type, defined: set[str]) -> Any:
    name = f"{NAMESPACE}.{cls.__name__}"
    if name in defined:
        return name
    defined.add(name)
    fields = []
    for f, tp in _fields(cls):
        entry: dict[str, Any] = {"name": f.name, "type": _avro_type(tp, defined)}
        entry["doc"] = f.metadata.get("doc", "")
        if f.default is not dataclasses.MISSING:
            entry["default"] = f.default.value if isinstance(f.default, Enum) else f.default
        elif f.default_factory is not dataclasses.MISSING:
            entry["default"] = f.default_factory()
        fields.append(entry)
    return {
        "type": "record",
        "name": cls.__name__,
        "namespace": NAMESPACE,
        "doc": " ".join((cls.__doc__ or "").split()),
        "fields": fields,
    }


@cache
def avro_schema(cls: type) -> dict[str, Any]:
    """The Avro schema (as a JSON-able dict) of an event class, self-contained."""
    return typing.cast(dict[str, Any], _record(cls, set()))


def schema_text(cls: type) -> str:
    """Canonical-ish JSON text of the schema, as registered and as written to ``.avsc``."""
    return json.dumps(avro_schema(cls), indent=2, ensure_ascii=False) + "\n"


def full_name(cls: type) -> str:
    return f"{NAMESPACE}.{cls.__name__}"


# ------------------------------------------------------------------------------- converters
@dataclass(frozen=True)
class Codec:
    """Compiled converters for one event class plus its parsed Avro schema."""

    cls: type
    parsed: Any
    to_dict: Callable[[Any], dict[str, Any]]
    from_dict: Callable[[dict[str, Any]], Any]


def _to_expr(tp: Any, expr: str, env: dict[str, Any]) -> str:
    inner, optional = _unwrap_optional(tp)
    conv = _to_expr_non_null(inner, expr if not optional else "_v", env)
    if not optional or conv == "_v":
        return expr if conv == "_v" and optional else conv
    return f"(None if ({expr}) is None else (lambda _v: {conv})({expr}))"


def _to_expr_non_null(tp: Any, expr: str, env: dict[str, Any]) -> str:
    if tp is Money:
        return f"{{'amount_minor': {expr}.amount_minor, 'currency': {expr}.currency}}"
    if typing.get_origin(tp) is list:
        (item,) = typing.get_args(tp)
        inner = _to_expr(item, "_i", env)
        return expr if inner == "_i" else f"[{inner} for _i in {expr}]"
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        fn = f"_to_{tp.__name__}"
        env[fn] = codec(tp).to_dict
        return f"{fn}({expr})"
    return expr  # primitives, datetimes and StrEnums are accepted by fastavro as they are


def _from_expr(tp: Any, expr: str, env: dict[str, Any]) -> str:
    inner, optional = _unwrap_optional(tp)
    conv = _from_expr_non_null(inner, "_v" if optional else expr, env)
    if not optional:
        return conv
    if conv == "_v":
        return expr
    return f"(None if ({expr}) is None else (lambda _v: {conv})({expr}))"


def _from_expr_non_null(tp: Any, expr: str, env: dict[str, Any]) -> str:
    if tp is Money:
        env["Money"] = Money
        return f"Money({expr}['amount_minor'], {expr}['currency'])"
    if typing.get_origin(tp) is list:
        (item,) = typing.get_args(tp)
        inner = _from_expr(item, "_i", env)
        return f"list({expr})" if inner == "_i" else f"[{inner} for _i in {expr}]"
    if isinstance(tp, type) and issubclass(tp, Enum):
        env[tp.__name__] = tp
        return f"{tp.__name__}({expr})"
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        fn = f"_from_{tp.__name__}"
        env[fn] = codec(tp).from_dict
        return f"{fn}({expr})"
    return expr


@cache
def codec(cls: type) -> Codec:
    """Compile (once) the converters between ``cls`` instances and fastavro dicts."""
    env: dict[str, Any] = {"_cls": cls}
    to_items = ", ".join(
        f"{f.name!r}: {_to_expr(tp, f'o.{f.name}', env)}" for f, tp in _fields(cls)
    )
    from_args = ", ".join(_from_expr(tp, f"d[{f.name!r}]", env) for f, tp in _fields(cls))
    source = (
        f"def to_dict(o):\n    return {{{to_items}}}\n"
        f"def from_dict(d):\n    return _cls({from_args})\n"
    )
    exec(compile(source, f"<codec {cls.__name__}>", "exec"), env)  # nosec B102  # code generated from our own dataclasses, no outside input
    parsed = fastavro.parse_schema(avro_schema(cls))
    return Codec(cls, parsed, env["to_dict"], env["from_dict"])


def export_avsc(classes: typing.Iterable[type], directory: Path = AVSC_DIR) -> list[Path]:
    """Write one ``<Name>.avsc`` per class; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for cls in classes:
        path = directory / f"{cls.__name__}.avsc"
        path.write_text(schema_text(cls))
        paths.append(path)
    return paths
