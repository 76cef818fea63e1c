"""A card number never stays in evledger: the SDK refuses to publish it, and a record that a raw
producer put on a topic anyway is rejected by the consumer with the number masked in the
reason, the rejections table and the ``.rejected`` record."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from connectors.kafka import TOPIC_OF, key_of
from entrypoints.bootstrap import App
from ledger.envelope import Envelope, Source
from ledger.errors import LedgerError
from ledger.events import PaymentAuthorized
from ledger.money import Money
from processors.ledger_projector import TOPICS, build_ledger_processor
from tests.integration.conftest import consume_from, end_offsets
from tests.integration.test_ledger_projector import run_to, scratch_book, start_group

PAN = "4111111111111111"


def test_card_numbers_are_refused_at_publish_and_masked_when_consumed(app: App) -> None:
    event = PaymentAuthorized(
        Envelope.new(app.settings.network_id, Source.psp), f"P-pan-{uuid.uuid4().hex[:8]}",
        "sandbox",
        "pi_pan", Money(1000, "EUR"), f"card-{PAN}",
    )  # fmt: skip
    publisher = app.publisher()
    with pytest.raises(LedgerError) as refused:
        publisher.publish(event)
    assert refused.value.code == "CARD_NUMBER" and PAN not in str(refused.value)

    topic = TOPIC_OF[type(event)]
    rejected_starts = end_offsets(app, [f"{topic}.rejected"])
    with scratch_book(app) as url:
        group, _ = start_group(app, url)
        processor = build_ledger_processor(app, group=group, database_url=url)
        try:
            value = publisher.serde.encode(topic, event)  # a raw producer: no input rules
            assert PAN.encode() in value
            publisher.produce_bytes(topic, value, key_of(event).encode())
            publisher.flush()
            run_to(processor, end_offsets(app, list(TOPICS)))
        finally:
            processor.close()
        with psycopg.connect(url) as conn:
            rows = conn.execute(
                "SELECT reason_code, detail, original_value FROM rejections"
                " WHERE consumer_group = %s",
                (group,),
            ).fetchall()
    (code, detail, stored), *_ = rows
    assert code == "CARD_NUMBER" and PAN not in detail and "************1111" in detail
    assert PAN.encode() not in bytes(stored) and b"************1111" in bytes(stored)
    records = consume_from(app, [f"{topic}.rejected"], rejected_starts, 50, timeout=5)
    ours = [r.event for r in records if r.event.consumer_group == group]
    assert ours and all(PAN.encode() not in (r.original_value or b"") for r in ours)
    assert all(PAN not in r.detail for r in ours)
