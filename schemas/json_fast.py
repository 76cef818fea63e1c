"""HTTP ingest's fast path for JSON: msgspec decodes a whole body straight into structs that
mirror the event dataclasses, and code generated per event class builds the events from them.

It only ever accepts. Whatever it cannot decode (any error at all: an unknown event type or
member, a float where an integer belongs, a string over the limit, a null where none is allowed,
a time without an offset, a nesting deeper than the limit allows) sends the whole body to the
reference parser (``schemas.json_events``), which answers with the error and its path. So the
answers to bad input are the reference's; for good input the events are equal to the
reference's (tests/unit/test_json_fast.py holds the two equal on generated events and on
mutated documents). Times are decoded as text and read by ``datetime.fromisoformat``, exactly as
the reference reads them.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from datetime import datetime
from enum import Enum
from typing import Annotated, Any

import msgspec

from ledger.errors import LedgerError
from ledger.fastpaths import slot_setters
from ledger.money import Money
from schemas.json_events import EVENT_TYPES, JsonLimits


class _Unsupported(Exception):
    """A field type the fast path has no mirror for: its event class takes the reference."""


class _Refused(Exception):
    """A value the generated builder refuses (a time without an offset): use the reference."""


def _time(text: str) -> datetime:
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise _Refused from None
    if at.tzinfo is None:
        raise _Refused
    return at


class FastDecoder:
    """Decodes ``{"events": [...]}`` batches and single documents for one set of limits."""

    def __init__(self, limits: JsonLimits) -> None:
        self.limits = limits
        self._structs: dict[type, Any] = {}
        self._builders: dict[type, Any] = {}
        self._money: Any = None
        docs = []
        self._build_doc: dict[type, Any] = {}
        for name, cls in sorted(EVENT_TYPES.items()):
            try:
                if _depth(cls, 1) >= limits.max_depth:
                    continue  # the reference would refuse it as too deep: let it say so
                struct = self._mirror(cls)
            except _Unsupported:
                continue
            doc = msgspec.defstruct(f"{name}Document", [("event", struct)], tag_field="type",
                                    tag=name, forbid_unknown_fields=True)  # fmt: skip
            docs.append(doc)
            self._build_doc[doc] = self._builders[cls]
        self._batch: Any = None
        self._single: Any = None
        if not docs:  # limits too tight for any event: the reference reads everything
            return
        union: Any = typing.Union[tuple(docs)]  # noqa: UP007  # built at run time
        events: Any = list[union]
        batch = msgspec.defstruct("Batch", [("events", events)], forbid_unknown_fields=True)
        self._batch = msgspec.json.Decoder(batch)
        self._single = msgspec.json.Decoder(union)

    def batch(self, body: bytes) -> list[Any] | None:
        """The events of a batch body, or None: the reference parser must read it."""
        if self._batch is None:
            return None
        try:
            documents = self._batch.decode(body).events
            build = self._build_doc
            return [build[type(d)](d.event) for d in documents]
        except (msgspec.MsgspecError, _Refused, LedgerError, ValueError, TypeError):
            return None

    def single(self, body: bytes) -> Any | None:
        """The event of a one-document body, or None: the reference parser must read it."""
        if self._single is None:
            return None
        try:
            document = self._single.decode(body)
            return self._build_doc[type(document)](document.event)
        except (msgspec.MsgspecError, _Refused, LedgerError, ValueError, TypeError):
            return None

    # -- mirrors and builders ----------------------------------------------------------------
    def _mirror(self, cls: type) -> Any:
        found = self._structs.get(cls)
        if found is not None:
            return found
        hints = typing.get_type_hints(cls)
        fields: list[Any] = []
        exprs: list[tuple[str, str]] = []  # (field, the expression building its value)
        env: dict[str, Any] = {"_cls": cls, "_time": _time}
        for f in dataclasses.fields(cls):
            tp, optional = _unwrap(hints[f.name])
            mirror = self._type(tp)
            if optional:
                mirror = mirror | None
            if f.default is not dataclasses.MISSING:
                fields.append((f.name, mirror, f.default))
            elif f.default_factory is not dataclasses.MISSING:
                fields.append((f.name, mirror, msgspec.field(default_factory=f.default_factory)))
            else:
                fields.append((f.name, mirror))
            exprs.append((f.name, self._build_expr(tp, f"s.{f.name}", optional, env)))
        struct = msgspec.defstruct(f"{cls.__name__}Json", fields, forbid_unknown_fields=True)
        if _plain_init(cls):  # each slot written once (ledger.fastpaths.slot_setters)
            env["_new"] = object.__new__
            writes = []
            for i, (setter, (_, expr)) in enumerate(zip(slot_setters(cls), exprs, strict=True)):
                env[f"_set{i}"] = setter
                writes.append(f"    _set{i}(o, {expr})\n")
            source = f"def build(s):\n    o = _new(_cls)\n{''.join(writes)}    return o\n"
        else:
            args = ", ".join(f"{name}={expr}" for name, expr in exprs)
            source = f"def build(s):\n    return _cls({args})\n"
        exec(compile(source, f"<json builder for {cls.__name__}>", "exec"), env)  # nosec B102  # code generated from our own dataclasses, no outside input
        self._structs[cls], self._builders[cls] = struct, env["build"]
        return struct

    def _type(self, tp: Any) -> Any:
        text = Annotated[str, msgspec.Meta(max_length=self.limits.max_string)]
        if tp is str or tp is datetime:
            return text
        if tp is int or tp is float or tp is bool:
            return tp
        if tp is Money:
            if self._money is None:
                money = [("amount_minor", int), ("currency", text)]
                self._money = msgspec.defstruct("MoneyJson", money, forbid_unknown_fields=True)
            return self._money
        if isinstance(tp, type) and issubclass(tp, Enum):
            return tp
        if typing.get_origin(tp) is list:
            (item,) = typing.get_args(tp)
            return Annotated[list[self._type(item)],  # type: ignore[misc]
                             msgspec.Meta(max_length=self.limits.max_items)]  # fmt: skip
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            return self._mirror(tp)
        raise _Unsupported(tp)

    def _build_expr(self, tp: Any, expr: str, optional: bool, env: dict[str, Any]) -> str:
        inner = self._build_inner(tp, expr, env)
        if not optional or inner == expr:
            return inner
        return f"(None if {expr} is None else {inner})"

    def _build_inner(self, tp: Any, expr: str, env: dict[str, Any]) -> str:
        if tp is datetime:
            return f"_time({expr})"
        if tp is Money:
            env["_Money"] = Money
            return f"_Money({expr}.amount_minor, {expr}.currency)"
        if typing.get_origin(tp) is list:
            (item,) = typing.get_args(tp)
            each = self._build_inner(item, "i", env)
            return expr if each == "i" else f"[{each} for i in {expr}]"
        if isinstance(tp, type) and dataclasses.is_dataclass(tp) and not issubclass(tp, Enum):
            self._mirror(tp)
            name = f"_build_{tp.__name__}"
            env[name] = self._builders[tp]
            return f"{name}({expr})"
        return expr


def _plain_init(cls: type) -> bool:
    """Whether building ``cls`` only writes its fields: a frozen ``slots=True`` dataclass
    whose ``__init__`` is the generated one, with no ``__post_init__`` (a hand-written
    ``__init__``, such as ``Money``'s, checks its values and is called)."""
    code = getattr(vars(cls).get("__init__"), "__code__", None)
    return (
        code is not None
        and code.co_filename == "<string>"  # made by dataclasses, not written in a module
        and not hasattr(cls, "__post_init__")
        and all(
            isinstance(vars(cls).get(f.name), types.MemberDescriptorType)
            for f in dataclasses.fields(cls)
        )
    )


def _unwrap(tp: Any) -> tuple[Any, bool]:
    args = typing.get_args(tp)
    if type(None) in args:
        (inner,) = [a for a in args if a is not type(None)]
        return inner, True
    return tp, False


def _depth(tp: Any, depth: int) -> int:
    """The deepest nesting the reference checks for a document of ``tp`` at ``depth``."""
    tp, _ = _unwrap(tp)
    if typing.get_origin(tp) is list:
        (item,) = typing.get_args(tp)
        return max(depth, _depth(item, depth + 1))
    if isinstance(tp, type) and dataclasses.is_dataclass(tp) and tp is not Money:
        hints = typing.get_type_hints(tp)
        return max([depth, *(_depth(hints[f.name], depth + 1)
                             for f in dataclasses.fields(tp))])  # fmt: skip
    return 0
