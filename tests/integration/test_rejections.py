"""Bad input gets a clear reason and loses nothing: every record is decoded or rejected."""

from __future__ import annotations

import os
import struct

import pytest

from connectors.kafka import Rejecter
from entrypoints.bootstrap import App
from entrypoints.simulate import NetworkSimulator
from ledger.envelope import Envelope, Source
from ledger.events import EventRejected, PaymentAuthorized
from ledger.money import Money
from schemas.errors import DecodeError
from tests.integration.conftest import consume_from, end_offsets

TOPIC = "sessions.events"


def test_garbage_unknown_schema_and_mismatch_land_in_the_rejected_topic(app: App) -> None:
    good = [e for e in NetworkSimulator(seed=3).burst(5) if type(e).__name__.startswith("Session")]
    known_id = app.serde.schema_id(TOPIC, type(good[0]))
    bad = {
        b"garbage": b"\x13\x37 definitely not avro",
        b"unknown-id": b"\x00" + struct.pack(">I", 2_000_000_000) + os.urandom(20),
        b"truncated": b"\x00" + struct.pack(">I", known_id) + b"\x02",
    }
    starts = end_offsets(app, [TOPIC])
    rejected_starts = end_offsets(app, [f"{TOPIC}.rejected"])
    publisher = app.publisher()
    for event in good:
        publisher.publish(event)
    for key, value in bad.items():
        publisher.produce_bytes(TOPIC, value, key)
    publisher.flush()

    records = consume_from(app, [TOPIC], starts, len(good) + len(bad))
    assert len(records) == len(good) + len(bad)
    rejecter = Rejecter(publisher, "test-rejections", "test-network")
    applied = [r for r in records if r.error is None]
    for record in records:
        if record.error is not None:
            rejecter.reject_undecodable(record)
    publisher.flush()
    assert len(applied) == len(good)

    rejected = consume_from(app, [f"{TOPIC}.rejected"], rejected_starts, len(bad))
    events = [r.event for r in rejected]
    assert all(isinstance(e, EventRejected) for e in events)
    reasons = {e.original_key: e.reason_code for e in events}
    assert reasons == {
        b"garbage": "UNDECODABLE",
        b"unknown-id": "UNKNOWN_SCHEMA_ID",
        b"truncated": "SCHEMA_MISMATCH",
    }
    for e in events:
        assert e.original_value == bad[e.original_key]  # the bytes are kept for replay
        assert e.original_topic == TOPIC and e.detail
        source = next(r for r in records if r.key == e.original_key)
        assert (e.original_partition, e.original_offset) == (source.partition, source.offset)


def test_an_unknown_currency_in_a_raw_record_is_named_as_such(app: App) -> None:
    """A raw producer's record whose Avro is sound but whose currency is not one evledger
    carries was reported as SCHEMA_MISMATCH; it is UNKNOWN_CURRENCY, naming the code."""
    topic = "payments.events"
    event = PaymentAuthorized(
        Envelope.new("net-1", Source.psp), "pay-xxx", "stripe", "pi_1", Money(500, "EUR"), "card"
    )
    value = app.serde.encode(topic, event)
    assert value.count(b"\x06EUR") == 1  # Avro string: zig-zag length 3, then the bytes
    forged = value.replace(b"\x06EUR", b"\x06XXX")
    with pytest.raises(DecodeError) as refused:
        app.serde.decode(topic, forged)
    assert refused.value.code == "UNKNOWN_CURRENCY"
    assert "'XXX'" in str(refused.value) and "PaymentAuthorized" in str(refused.value)
