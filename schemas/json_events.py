"""Events from JSON, for publishers that are not Python (``POST /v1/events``, docs/ingest.md).

A document is ``{"type": "<event type>", "event": {...}}``; the event object has exactly the
fields of the event's dataclass (``ledger/events.py``), the envelope included, in this form:

- text: a JSON string; ``int``: a JSON integer (never ``12.0`` nor ``"12"``: amounts are integer
  minor units, and a JSON float is refused with the field's path); ``bool``: ``true``/``false``;
  ``float`` (a meter's sampled value): any JSON number;
- a time: an RFC 3339 string with its offset (``2026-11-20T18:00:00Z``, ``...+01:00``);
- money: ``{"amount_minor": 1234, "currency": "EUR"}``;
- an enumeration: its value as a string (``"ENERGY"``); a list: a JSON array;
- an optional field may be ``null`` or left out; every other field is required, and a field the
  event does not have is refused (a typo is not silently dropped).

Errors name the path of the field (``event.lines[0].amount_excl_vat``). The input rules
(``ledger.validation``) run afterwards, as for the SDK. Pure: no HTTP, no Kafka.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import Enum, StrEnum
from typing import Any

from ledger.card_numbers import mask_card_numbers
from ledger.errors import LedgerError
from ledger.money import Money
from schemas.topics import TOPIC_EVENTS

EVENT_TYPES: dict[str, type] = {cls.__name__: cls for cs in TOPIC_EVENTS.values() for cls in cs}


class JsonErrorCode(StrEnum):
    """Reason codes of a document that is not an event of the documented shape (docs/errors.md)."""

    INVALID_JSON = "INVALID_JSON"
    JSON_TOO_DEEP = "JSON_TOO_DEEP"
    STRING_TOO_LONG = "STRING_TOO_LONG"
    ARRAY_TOO_LONG = "ARRAY_TOO_LONG"
    UNKNOWN_EVENT_TYPE = "UNKNOWN_EVENT_TYPE"
    FLOAT_NOT_ALLOWED = "FLOAT_NOT_ALLOWED"
    BATCH_TOO_LARGE = "BATCH_TOO_LARGE"


class JsonEventError(LedgerError):
    """A document that is not an event of the documented shape; ``path`` names the field."""

    code = "INVALID_JSON_EVENT"

    def __init__(self, message: str, path: str, code: str | None = None) -> None:
        """``code``: a ``JsonErrorCode``, or the code of the rule the value broke (a currency)."""
        super().__init__(message, path=path)
        self.path = path
        if code is not None:
            self.code = str(code)


@dataclass(frozen=True, slots=True)
class JsonLimits:
    """Bounds on what a document may hold (``EVLEDGER_INGEST_*`` settings)."""

    max_string: int = 1_000_000
    """characters in any JSON string (the input rules bound each field more tightly)"""
    max_depth: int = 16
    """nesting of objects and arrays"""
    max_items: int = 10_000
    """elements of any array"""


class _Float(float):
    """A JSON number written with a fraction or exponent (``json.loads(parse_float=...)``)."""


def loads(text: bytes | str) -> Any:
    """JSON with its floats marked, so an integer field can refuse ``12.0``. Raises
    JsonEventError for text that is not JSON or nests beyond Python's recursion limit."""
    try:
        return json.loads(text, parse_float=_Float, parse_constant=_refuse_constant)
    except RecursionError:
        raise JsonEventError("the JSON nests too deep", "$", JsonErrorCode.JSON_TOO_DEEP) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise JsonEventError(f"not JSON: {exc}", "$", JsonErrorCode.INVALID_JSON) from None


def parse_document(doc: Any, limits: JsonLimits = JsonLimits(), path: str = "$") -> Any:
    """The event a ``{"type", "event"}`` document describes. Raises JsonEventError."""
    if not isinstance(doc, dict):
        raise JsonEventError("an event document is a JSON object", path)
    extra = set(doc) - {"type", "event"}
    if extra:
        raise JsonEventError(f"unknown member {sorted(extra)[0]!r}", f"{path}.{sorted(extra)[0]}")
    name = doc.get("type")
    cls = EVENT_TYPES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise JsonEventError(
            f"type must be one of the event types (docs/events.md), not {_shown(name)}",
            f"{path}.type",
            JsonErrorCode.UNKNOWN_EVENT_TYPE,
        )
    if "event" not in doc:
        raise JsonEventError("the event object is missing", f"{path}.event")
    return _dataclass(cls, doc["event"], f"{path}.event", limits, 1)


def to_document(event: Any) -> dict[str, Any]:
    """The JSON document of ``event``: ``parse_document(to_document(e)) == e``."""
    return {"type": type(event).__name__, "event": json_value(event)}


def json_value(value: Any) -> Any:
    """``value`` as JSON-ready data: Money as ``{amount_minor, currency}``, times in ISO 8601,
    enums by value, dataclasses as objects of their fields, lists element by element."""
    if isinstance(value, Money):
        return {"amount_minor": value.amount_minor, "currency": value.currency}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, list):
        return [json_value(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: json_value(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value


Conv = Callable[[Any, str, JsonLimits, int], Any]
"""Reads one JSON value of a field type: (raw, path, limits, depth) -> the Python value."""


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    read: Conv
    optional: bool
    required: bool


_PLANS: dict[type, tuple[dict[str, _Field], str]] = {}


def _plan(cls: type) -> tuple[dict[str, _Field], str]:
    """How to read ``cls``: its fields with their readers, built once per class."""
    plan = _PLANS.get(cls)
    if plan is None:
        hints = typing.get_type_hints(cls)
        fields = {}
        for f in dataclasses.fields(cls):
            tp, optional = _unwrap(hints[f.name])
            has_default = (
                f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
            )
            fields[f.name] = _Field(f.name, _reader(tp), optional, not (optional or has_default))
        plan = _PLANS[cls] = (fields, cls.__name__)
    return plan


def _dataclass(cls: type, value: Any, path: str, limits: JsonLimits, depth: int) -> Any:
    if depth >= limits.max_depth:
        raise JsonEventError(
            f"nests deeper than {limits.max_depth} levels", path, JsonErrorCode.JSON_TOO_DEEP
        )
    fields, name = _plan(cls)
    if not isinstance(value, dict):
        raise JsonEventError(f"{name} is a JSON object, not {_kind(value)}", path)
    args: dict[str, Any] = {}
    for key, raw in value.items():
        f = fields.get(key)
        if f is None:
            raise JsonEventError(f"{name} has no field {_shown(key)}", f"{path}.{key}")
        if raw is None:
            if not f.optional:
                raise JsonEventError(f"{key} may not be null", f"{path}.{key}")
            args[key] = None
        elif f.read is _read_str and type(raw) is str and len(raw) <= limits.max_string:
            args[key] = raw  # the common case, without building the field's path
        else:
            args[key] = f.read(raw, f"{path}.{key}", limits, depth + 1)
    if len(args) < len(fields):
        for f in fields.values():
            if f.required and f.name not in args:
                raise JsonEventError(f"{f.name} is required", f"{path}.{f.name}")
    return cls(**args)


_READERS: dict[Any, Conv] = {}


def _reader(tp: Any) -> Conv:
    """The reader of field type ``tp`` (raises JsonEventError for a new field type: extend)."""
    found = _READERS.get(tp)
    if found is not None:
        return found
    if typing.get_origin(tp) is list:
        (item,) = typing.get_args(tp)
        read_item = _reader(item)

        def read_list(raw: Any, path: str, limits: JsonLimits, depth: int) -> Any:
            if not isinstance(raw, list):
                raise JsonEventError(f"a JSON array, not {_kind(raw)}", path)
            if len(raw) > limits.max_items:
                raise JsonEventError(f"an array of {len(raw):,} items; at most "
                                     f"{limits.max_items:,}", path,
                                     JsonErrorCode.ARRAY_TOO_LONG)  # fmt: skip
            if depth >= limits.max_depth:
                raise JsonEventError(f"nests deeper than {limits.max_depth} levels", path,
                                     JsonErrorCode.JSON_TOO_DEEP)  # fmt: skip
            return [read_item(x, f"{path}[{i}]", limits, depth + 1) for i, x in enumerate(raw)]

        found = read_list
    elif isinstance(tp, type) and issubclass(tp, Enum):
        found = _enum_reader(tp)
    elif isinstance(tp, type) and dataclasses.is_dataclass(tp) and tp is not Money:
        cls = tp

        def read_dataclass(raw: Any, path: str, limits: JsonLimits, depth: int) -> Any:
            return _dataclass(cls, raw, path, limits, depth)

        found = read_dataclass
    else:
        simple = _SIMPLE.get(tp)
        if simple is None:
            raise JsonEventError(f"no JSON form for {tp!r}", "$")
        found = simple
    _READERS[tp] = found
    return found


def _enum_reader(tp: type[Enum]) -> Conv:
    by_value = {m.value: m for m in tp}
    allowed = ", ".join(str(v) for v in by_value)

    def read_enum(raw: Any, path: str, limits: JsonLimits, depth: int) -> Any:
        member = by_value.get(raw) if isinstance(raw, str | int) else None
        if member is None:
            raise JsonEventError(f"one of {allowed}, not {_shown(raw)}", path)
        return member

    return read_enum


def _read_bool(raw: Any, path: str, limits: JsonLimits, depth: int) -> bool:
    if not isinstance(raw, bool):
        raise JsonEventError(f"true or false, not {_kind(raw)}", path)
    return raw


def _read_int(raw: Any, path: str, limits: JsonLimits, depth: int) -> int:
    if type(raw) is int:
        return raw
    if isinstance(raw, _Float):
        raise JsonEventError(
            "an integer (amounts are integer minor units: EUR 12.34 is 1234), not a number "
            "with a fraction or exponent",
            path,
            JsonErrorCode.FLOAT_NOT_ALLOWED,
        )
    raise JsonEventError(f"an integer, not {_kind(raw)}", path)


def _read_float(raw: Any, path: str, limits: JsonLimits, depth: int) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise JsonEventError(f"a number, not {_kind(raw)}", path)
    return float(raw)


def _read_str(raw: Any, path: str, limits: JsonLimits, depth: int) -> str:
    if type(raw) is not str:
        raise JsonEventError(f"a string, not {_kind(raw)}", path)
    if len(raw) > limits.max_string:
        raise JsonEventError(f"a string of {len(raw):,} characters; at most "
                             f"{limits.max_string:,}", path,
                             JsonErrorCode.STRING_TOO_LONG)  # fmt: skip
    return raw


def _read_time(raw: Any, path: str, limits: JsonLimits, depth: int) -> datetime:
    if not isinstance(raw, str):
        raise JsonEventError(f"an RFC 3339 time string, not {_kind(raw)}", path)
    try:
        at = datetime.fromisoformat(raw)
    except ValueError:
        raise JsonEventError(f"not an RFC 3339 time: {_shown(raw)}", path) from None
    if at.tzinfo is None:
        raise JsonEventError("a time needs its offset (Z or +01:00)", path)
    return at


def _read_money(raw: Any, path: str, limits: JsonLimits, depth: int) -> Money:
    if not isinstance(raw, dict) or raw.keys() != {"amount_minor", "currency"}:
        raise JsonEventError('money is {"amount_minor": <integer>, "currency": "EUR"}', path)
    amount = _read_int(raw["amount_minor"], f"{path}.amount_minor", limits, depth)
    currency = _read_str(raw["currency"], f"{path}.currency", limits, depth)
    try:
        return Money(amount, currency)
    except LedgerError as exc:
        raise JsonEventError(exc.message, f"{path}.currency", exc.code) from None


_SIMPLE: dict[Any, Conv] = {
    bool: _read_bool,
    int: _read_int,
    float: _read_float,
    str: _read_str,
    datetime: _read_time,
    Money: _read_money,
}


def _unwrap(tp: Any) -> tuple[Any, bool]:
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _kind(value: Any) -> str:
    return "null" if value is None else _KINDS.get(type(value), "a value")


_KINDS = {bool: "a boolean", int: "an integer", _Float: "a number", float: "a number",
          str: "a string", list: "an array", dict: "an object"}  # fmt: skip


def _shown(value: Any) -> str:
    text = mask_card_numbers(repr(value))
    return text if len(text) <= 40 else text[:37] + "..."


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
