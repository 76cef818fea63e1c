"""Hypothesis strategies that build any event in the catalogue from its type hints."""

from __future__ import annotations

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
