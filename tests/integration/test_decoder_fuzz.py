"""Fuzzing the Avro decoders (the compiled fast path and fastavro's): any bytes on a topic either
decode to an event that belongs there or raise a DecodeError with a reason code, which the
processors turn into a rejection. Never another exception, which would stop a partition."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from entrypoints.bootstrap import App
from schemas.errors import DecodeError
from schemas.topics import TOPIC_EVENTS, allowed_events
from tests.strategies import valid_strategy_for

TYPES = [(topic, cls) for topic, classes in TOPIC_EVENTS.items() for cls in classes]


def mutate(data: bytes, how: str, at: int, noise: bytes) -> bytes:
    at = at % (len(data) + 1)
    if how == "truncate":
        return data[:at]
    if how == "flip":
        if not data:
            return noise
        i = min(at, len(data) - 1)
        return data[:i] + bytes([data[i] ^ (noise[0] if noise else 0xFF)]) + data[i + 1 :]
    if how == "insert":
        return data[:at] + noise + data[at:]
    if how == "append":
        return data + noise
    return data[:5] + noise  # a valid header, a random body


def outcome(app: App, topic: str, value: bytes) -> str:
    try:
        event = app.serde.decode(topic, value)
    except DecodeError as exc:
        assert exc.code and str(exc), exc
        return exc.code
    assert isinstance(event, allowed_events(topic)), type(event)
    return "decoded"


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.sampled_from(TYPES).flatmap(lambda tc: st.tuples(st.just(tc[0]), valid_strategy_for(tc[1]))),
    st.sampled_from(["truncate", "flip", "insert", "append", "body"]),
    st.integers(0, 10_000),
    st.binary(min_size=1, max_size=64),
)
def test_mutated_records_decode_or_are_refused_with_a_reason(
    app: App, pair: tuple[str, Any], how: str, at: int, noise: bytes
) -> None:
    topic, event = pair
    value = app.serde.encode(topic, event)
    assert app.serde.decode(topic, value) == event
    outcome(app, topic, mutate(value, how, at, noise))


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.sampled_from(list(TOPIC_EVENTS)), st.binary(max_size=200))
def test_random_bytes_are_refused_with_a_reason(app: App, topic: str, value: bytes) -> None:
    outcome(app, topic, value)
