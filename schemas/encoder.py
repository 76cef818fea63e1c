"""Event <-> Avro body codecs. fastavro is the reference; compiled ones are used when built.

The compiled encoder (``schemas/_avroenc.c``) reads dataclass attributes directly, following a
plan derived from the same Avro schema; tests/unit/test_encoder.py checks that both produce
identical bytes for generated events of every type. When the extension was not built (no C
compiler) or rejects a value, fastavro encodes instead, so behaviour and errors stay the same.
"""

from __future__ import annotations

import dataclasses
import io
import typing
from collections.abc import Callable, Sequence
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
            return fast(header, event, plan)  # type: ignore[no-any-return]
        except (TypeError, ValueError, OverflowError):
            return reference(header, event)  # fastavro raises its own, clearer error

    return encode


Decoder = Callable[[bytes, int], Any]
"""(data, start) -> event decoded from data[start:] (writer schema == today's schema)"""


def decode_plan_for(tp: Any) -> Plan:
    """The compiled decoder's plan: like the encoder's, with the Python types to build."""
    inner, optional = _unwrap_optional(tp)
    plan = _decode_plan_non_null(inner)
    return (8, plan) if optional else plan


def _decode_plan_non_null(tp: Any) -> Plan:
    if tp in _PRIMITIVE_OPS:
        return (_PRIMITIVE_OPS[tp],)
    if tp is datetime:
        return (6,)
    if typing.get_origin(tp) is list:
        return (9, decode_plan_for(typing.get_args(tp)[0]))
    if isinstance(tp, type) and issubclass(tp, Enum):
        return (7, tuple(tp))
    if tp is Money:
        return (10, Money, ((1,), (2,)))
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return (10, tp, tuple(decode_plan_for(t) for _, t in _fields(tp)))
    raise TypeError(f"no decoder plan for {tp!r}")


def fastavro_decoder(c: Codec) -> Decoder:
    parsed, from_dict = c.parsed, c.from_dict

    def decode(data: bytes, start: int) -> Any:
        body = io.BytesIO(memoryview(data)[start:])
        event = from_dict(fastavro.schemaless_reader(body, parsed, None))  # type: ignore[arg-type]
        if body.tell() != len(data) - start:
            raise ValueError(f"{len(data) - start - body.tell()} trailing bytes")
        return event

    return decode


def compiled_decoder(c: Codec) -> Decoder:
    """The C decoder for ``c``'s class. Raises ValueError (or the domain's ValidationError)
    on malformed input; callers fall back to fastavro for the precise error."""
    if _avroenc is None:
        raise RuntimeError("schemas._avroenc is not built (no C compiler at install time)")
    plan, fast = decode_plan_for(c.cls), _avroenc.decode

    def decode(data: bytes, start: int) -> Any:
        return fast(data, start, plan)

    return decode


def build_decoder(c: Codec) -> Decoder:
    """The fastest available decoder for records written with ``c``'s own schema."""
    return compiled_decoder(c) if _avroenc is not None else fastavro_decoder(c)


def encode_each(events: Sequence[Any], routes: dict[type, tuple[bytes, Plan]]) -> list[bytes]:
    """Encode ``events`` in order with one call of the compiled encoder; ``routes`` maps each
    event type to its (header, plan). Raises like the compiled encoder on a bad value."""
    if _avroenc is None:
        raise RuntimeError("schemas._avroenc is not built (no C compiler at install time)")
    return _avroenc.encode_each(events, routes)  # type: ignore[no-any-return]


def build_encoder(c: Codec) -> Encoder:
    """The fastest available encoder for ``c``'s class."""
    return compiled_encoder(c) if _avroenc is not None else fastavro_encoder(c)
