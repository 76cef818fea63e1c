"""Hypothesis strategies that build any event in the catalogue from its type hints."""

from __future__ import annotations

import base64
import dataclasses
import types
import typing
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from hypothesis import strategies as st

from ledger.money import EXPONENTS, Money

_LONG = st.integers(min_value=-(2**63), max_value=2**63 - 1)
_TEXT = st.text(max_size=20)
_TIMES = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)
money_strategy = st.builds(
    Money, st.integers(-(10**12), 10**12), st.sampled_from(sorted(EXPONENTS))
)


def strategy_for(tp: Any) -> st.SearchStrategy[Any]:
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return st.none() | strategy_for(inner)
    if typing.get_origin(tp) is list:
        return st.lists(strategy_for(typing.get_args(tp)[0]), max_size=3)
    simple: dict[Any, st.SearchStrategy[Any]] = {
        str: _TEXT,
        int: _LONG,
        bool: st.booleans(),
        bytes: st.binary(max_size=30),
        float: st.floats(allow_nan=False),
        datetime: _TIMES,
        Money: money_strategy,
    }
    if tp in simple:
        return simple[tp]
    if isinstance(tp, type) and issubclass(tp, Enum):
        return st.sampled_from(list(tp))
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        hints = typing.get_type_hints(tp)
        fields = {f.name: strategy_for(hints[f.name]) for f in dataclasses.fields(tp)}
        return st.builds(tp, **fields)
    raise TypeError(f"no strategy for {tp!r}")


# -- events that obey the input rules (ledger.validation), field by field -------------------------
_IDENTIFIER = st.text(
    st.characters(codec="utf-8", categories=["L", "N", "P", "S"]), min_size=1, max_size=30
)
_FREE_TEXT = st.text(
    st.characters(codec="utf-8", categories=["L", "N", "P", "S"], include_characters=" \n\t"),
    max_size=40,
)
_COUNTRY = st.text(st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZ"), min_size=2, max_size=2)
_VAT_RATE = st.sampled_from(["0", "7", "19", "20", "5.5", "100"]) | st.decimals(
    min_value=0, max_value=100, places=2
).map(lambda d: format(d.normalize(), "f"))
_SEALED = st.binary(min_size=28, max_size=200).map(
    lambda b: "pd1:" + base64.urlsafe_b64encode(b).rstrip(b"=").decode()
)
"""Sealed personal values as ``connectors.personal_data`` writes them (nonce, ciphertext, tag)."""
_PLAUSIBLE_TIMES = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2026, 1, 1), timezones=st.just(UTC)
)


def valid_strategy_for(cls: type, owner: type | None = None) -> st.SearchStrategy[Any]:
    """Instances of the event (or nested record) ``cls`` that pass ``ledger.validation.check``
    with any ``latest`` after 2026-01-01."""
    from ledger import validation

    owner = owner or cls
    hints = typing.get_type_hints(cls)
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        tp = hints[f.name]
        optional = isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union
        if optional:
            (tp,) = [a for a in typing.get_args(tp) if a is not type(None)]
        fields[f.name] = _valid_field(f.name, tp, owner, validation)
        if optional:
            fields[f.name] = st.none() | fields[f.name]
    return st.builds(cls, **fields)


def _valid_field(name: str, tp: Any, owner: type, validation: Any) -> st.SearchStrategy[Any]:
    if typing.get_origin(tp) is list:
        (item,) = typing.get_args(tp)
        inner = (
            valid_strategy_for(item, owner)
            if dataclasses.is_dataclass(item)
            else _valid_field(name, item, owner, validation)
        )
        return st.lists(inner, max_size=3)
    if tp is str:
        if name == "event_id":
            return st.uuids().map(str)
        if name in validation.COUNTRY_FIELDS:
            return _COUNTRY
        if name in validation.VAT_RATE_FIELDS:
            return _VAT_RATE
        if name in validation.COORDINATE_FIELDS:
            limit = validation.COORDINATE_FIELDS[name]
            degrees = st.decimals(min_value=-limit, max_value=limit, places=6)
            return degrees.map(lambda d: format(d, "f"))
        if name in validation.CHOICES:
            return st.sampled_from(sorted(validation.CHOICES[name]))
        if name in validation.personal.PERSONAL_FIELDS:
            return _SEALED
        if name in validation.TEXT_FIELDS or name in validation.DOCUMENT_FIELDS:
            return _FREE_TEXT
        return _IDENTIFIER
    if tp is Money:
        rule = validation.AMOUNT_RULES.get((owner, name), validation.NON_NEGATIVE)
        low = {validation.POSITIVE: 1, validation.NON_NEGATIVE: 0}.get(rule, -(10**12))
        return st.builds(Money, st.integers(low, 10**12), st.sampled_from(sorted(EXPONENTS)))
    if tp is datetime:
        return _PLAUSIBLE_TIMES
    if tp is int:
        if name in validation.POWER_FIELDS:
            return st.integers(1, validation.POWER_MAX_W)
        return st.integers(0, 2**63 - 1) if name in validation.COUNTS else _LONG
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return valid_strategy_for(tp, owner)
    return strategy_for(tp)


@st.composite
def plausible_meter(
    draw: st.DrawFn, max_readings: int = 20
) -> tuple[list[tuple[int, int, int]], int, int]:
    """One plausible charging session's meter: readings as (seq_no, minute, register Wh), the
    register never falling and under 50 kW between readings; then the stop's minute and
    register."""
    count = draw(st.integers(1, max_readings))
    register, minutes, readings = 0, 0, []
    for seq in range(1, count + 1):
        step = draw(st.integers(1, 15))
        minutes += step
        register += draw(st.integers(0, 50_000 * step // 60))
        readings.append((seq, minutes, register))
    return readings, minutes + draw(st.integers(0, 40)), register
