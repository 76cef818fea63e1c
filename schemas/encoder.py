"""Event -> Avro body encoders. fastavro is the reference; a compiled encoder is used when built.

The compiled encoder (``schemas/_avroenc.c``) reads dataclass attributes directly, following a
plan derived from the same Avro schema; tests/unit/test_encoder.py checks that both produce
identical bytes for generated events of every type. When the extension was not built (no C
compiler) or rejects a value, fastavro encodes instead, so behaviour and errors stay the same.
"""

from __future__ import annotations

import dataclasses
import io
import typing
from collections.abc import Callable
from datetime import datetime
from enum import Enum
from typing import Any

import fastavro

from ledger.money import Money
from schemas.avro import Codec, _fields, _unwrap_optional

try:
    from schemas import _avroenc  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - depends on the build
    _avroenc = None

Encoder = Callable[[bytes, Any], bytes]
"""(header, event) -> header + Avro body"""

Plan = tuple[Any, ...]
_PRIMITIVE_OPS = {int: 1, str: 2, bool: 3, float: 4, bytes: 5}


def compiled_available() -> bool:
    return _avroenc is not None


def fastavro_encoder(c: Codec) -> Encoder:
    parsed, to_dict = c.parsed, c.to_dict

    def encode(header: bytes, event: Any) -> bytes:
        buf = io.BytesIO()
        buf.write(header)
        fastavro.schemaless_writer(buf, parsed, to_dict(event))
        return buf.getvalue()

    return encode


def plan_for(tp: Any) -> Plan:
    """The compiled encoder's plan for a type, mirroring schemas.avro's type mapping."""
    inner, optional = _unwrap_optional(tp)
    plan = _plan_non_null(inner)
    return (8, plan) if optional else plan


def _plan_non_null(tp: Any) -> Plan:
    if tp in _PRIMITIVE_OPS:
        return (_PRIMITIVE_OPS[tp],)
    if tp is datetime:
        return (6,)
    if typing.get_origin(tp) is list:
        return (9, plan_for(typing.get_args(tp)[0]))
    if isinstance(tp, type) and issubclass(tp, Enum):
        return (7, {m.value: i for i, m in enumerate(tp)})
    if tp is Money:
        return (10, ("amount_minor", "currency"), ((1,), (2,)))
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        fields = _fields(tp)
        return (10, tuple(f.name for f, _ in fields), tuple(plan_for(t) for _, t in fields))
    raise TypeError(f"no encoder plan for {tp!r}")


def compiled_encoder(c: Codec) -> Encoder:
    """The C encoder for ``c``'s class, falling back to fastavro for values it refuses."""
    if _avroenc is None:
        raise RuntimeError("schemas._avroenc is not built (no C compiler at install time)")
    plan, fast, reference = plan_for(c.cls), _avroenc.encode, fastavro_encoder(c)

    def encode(header: bytes, event: Any) -> bytes:
        try:
            return bytes(fast(header, event, plan))
        except (TypeError, ValueError, OverflowError):
            return reference(header, event)  # fastavro raises its own, clearer error

    return encode


def build_encoder(c: Codec) -> Encoder:
    """The fastest available encoder for ``c``'s class."""
    return compiled_encoder(c) if _avroenc is not None else fastavro_encoder(c)
