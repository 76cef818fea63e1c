"""The compiled encoder writes exactly the bytes fastavro (the reference) writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.envelope import Envelope
from ledger.events import PaymentVoided
from schemas.avro import codec
from schemas.encoder import (
    compiled_available,
    compiled_decoder,
    compiled_encoder,
    fastavro_decoder,
    fastavro_encoder,
)
from schemas.topics import ALL_EVENTS
from tests.strategies import strategy_for

pytestmark = pytest.mark.skipif(
    not compiled_available(), reason="compiled encoder not built: fastavro is used everywhere"
)


@settings(max_examples=1000, deadline=None)
@given(st.sampled_from(ALL_EVENTS).flatmap(strategy_for))
def test_compiled_bytes_equal_fastavro_bytes(event: object) -> None:
    c = codec(type(event))
    assert compiled_encoder(c)(b"\x00\x00\x00\x00\x01", event) == fastavro_encoder(c)(
        b"\x00\x00\x00\x00\x01", event
    )


@pytest.mark.parametrize(
    "tz",
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8)), None],
)
def test_timestamps_in_any_zone_match(tz: timezone | None) -> None:
    at = datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=tz)
    event = PaymentVoided(Envelope.new("n", occurred_at=at), "p", None)
    c = codec(PaymentVoided)
    assert compiled_encoder(c)(b"", event) == fastavro_encoder(c)(b"", event)


def test_invalid_values_raise_the_reference_error() -> None:
    c = codec(PaymentVoided)
    bad = PaymentVoided(Envelope.new("n"), 12345, None)  # type: ignore[arg-type]
    with pytest.raises((TypeError, ValueError)) as reference:
        fastavro_encoder(c)(b"", bad)
    with pytest.raises(type(reference.value)):
        compiled_encoder(c)(b"", bad)


@settings(max_examples=1000, deadline=None)
@given(st.sampled_from(ALL_EVENTS).flatmap(strategy_for))
def test_compiled_decoder_reads_what_fastavro_wrote(event: object) -> None:
    c = codec(type(event))
    data = fastavro_encoder(c)(b"\x00\x00\x00\x00\x01", event)
    assert compiled_decoder(c)(data, 5) == fastavro_decoder(c)(data, 5) == event


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(ALL_EVENTS).flatmap(strategy_for), st.data())
def test_compiled_decoder_refuses_truncated_or_padded_bodies(
    event: object, data: st.DataObject
) -> None:
    c = codec(type(event))
    body = fastavro_encoder(c)(b"", event)
    cut = data.draw(st.integers(0, len(body) - 1))
    for broken in (body[:cut], body + b"\x00"):
        with pytest.raises(Exception):  # noqa: B017 - any refusal is right; never a value
            compiled_decoder(c)(broken, 0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(ALL_EVENTS).flatmap(strategy_for), max_size=12))
def test_batch_encoding_equals_event_by_event_in_order(events: list[object]) -> None:
    from schemas.encoder import encode_each, plan_for

    routes = {type(e): (b"\x00" + bytes([i]) * 4, plan_for(type(e))) for i, e in enumerate(events)}
    expected = [fastavro_encoder(codec(type(e)))(routes[type(e)][0], e) for e in events]
    assert encode_each(events, routes) == expected
