"""A poison record costs the good records of its batch nothing (issue: hardening the money path).

One batch of 1000 records, consumed from Kafka and applied in one transaction by the shared
loop, holds one record whose content PostgreSQL refuses: the 999 others are applied, the poison
is rejected with a reason that names the condition (never the server's raw text), and the
offsets advance past all 1000."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from typing import Any

import pytest

from connectors import postgres
from connectors.kafka import Consumed
from entrypoints.bootstrap import App
from ledger.envelope import Envelope, Source
from ledger.events import PaymentAuthorized
from ledger.money import Money
from processors.base import Effects, PostgresProcessor
from processors.ledger_projector import LedgerHandler
from tests.integration.conftest import end_offsets

TOPIC = "payments.events"


class IntColumnHandler:
    """Stores each hold's amount in an ``integer`` column, as a careless handler might: an
    amount the input rules allow (up to 10^12) can still overflow it (SQLSTATE 22003)."""

    def __init__(self, table: str) -> None:
        self.table = table

    def handle(self, tx: Effects, records: Sequence[Consumed]) -> None:
        with tx.conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {self.table} (event_id, amount) VALUES (%s, %s)",
                [(r.event_id, r.event.amount.amount_minor) for r in records],
            )


def holds(network: str, count: int, poison_at: int, poison: dict[str, Any]) -> list[Any]:
    events = []
    for i in range(count):
        fields: dict[str, Any] = {"payment_id": f"pay-{network}-{i}", "amount": Money(500, "EUR")}
        if i == poison_at:
            fields.update(poison)
        events.append(
            PaymentAuthorized(
                Envelope.new(network, Source.psp),
                provider="sandbox",
                provider_reference=f"ref-{i}",
                payment_method="card",
                **fields,
            )
        )
    return events


def one_batch(app: App, processor: PostgresProcessor, events: list[Any]) -> list[Consumed]:
    """Publish ``events`` raw (as a producer that skips the SDK's checks would) and consume
    them back into one list: the batch the test hands to the loop in one transaction."""
    publisher = app.publisher()
    for event in events:
        publisher.produce_bytes(TOPIC, publisher.serde.encode(TOPIC, event), event.payment_id)
    publisher.flush()
    wanted = {e.envelope.event_id for e in events}
    batch: list[Consumed] = []
    while len(batch) < len(events):
        batch += [r for r in processor.consumer.poll(2000, 1.0) if r.event_id in wanted]
    return batch


def started_group(app: App, url: str) -> str:
    group = f"test-poison-{uuid.uuid4().hex[:8]}"
    with postgres.connect(url) as conn:
        postgres.store_offsets(conn, group, end_offsets(app, [TOPIC]))
    return group


def rejections(url: str, group: str) -> list[tuple[str, str, str | None]]:
    with postgres.connect(url) as conn:
        return conn.execute(
            "SELECT reason_code, detail, event_id FROM rejections WHERE consumer_group = %s",
            (group,),
        ).fetchall()


def test_one_poison_among_999_good_records_costs_them_nothing(app: App) -> None:
    table = f"holds_{uuid.uuid4().hex[:8]}"
    with postgres.connect(app.database_url) as conn:
        conn.execute(f"CREATE TABLE {table} (event_id text PRIMARY KEY, amount integer)")
    network = uuid.uuid4().hex[:8]
    events = holds(network, 1000, poison_at=617, poison={"amount": Money(5_000_000_000, "EUR")})
    group = started_group(app, app.database_url)
    processor = PostgresProcessor(app, IntColumnHandler(table), group, [TOPIC], batch_size=2000)
    try:
        batch = one_batch(app, processor, events)
        stats = processor._apply(batch)  # one batch, one transaction
    finally:
        processor.close()

    assert (stats.consumed, stats.applied, stats.rejected, stats.duplicates) == (1000, 999, 1, 0)
    with postgres.connect(app.database_url) as conn:
        stored = {r[0] for r in conn.execute(f"SELECT event_id FROM {table}")}
        offsets = postgres.stored_offsets(conn, group, [TOPIC])
    assert stored == {e.envelope.event_id for i, e in enumerate(events) if i != 617}
    for record in batch:
        assert offsets[(record.topic, record.partition)] > record.offset
    ((code, detail, event_id),) = rejections(app.database_url, group)
    assert (code, event_id) == ("VALUE_NOT_STORABLE", events[617].envelope.event_id)
    assert "SQLSTATE 22003" in detail and "PaymentAuthorized" in detail
    assert "integer out of range" not in detail  # the server's own text stays in the log


@pytest.mark.parametrize("input_rules", ["on", "bypassed"])
def test_a_10000_character_payment_id_is_rejected_and_the_partition_moves_on(
    app: App, input_rules: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The defect as found: the ledger's payments index refused a 10,000-character id and the
    batch was retried forever. The input rules refuse it first, naming the field; and should a
    value ever slip past them, the database refusal isolates it instead of stopping the loop."""
    if input_rules == "bypassed":
        monkeypatch.setattr("ledger.validation.check", lambda event, latest: None)
    name = f"poison_{uuid.uuid4().hex[:10]}"
    url = postgres.create_database(app.database_url, name)
    network = uuid.uuid4().hex[:8]
    huge = secrets.token_hex(5000)  # random, so TOAST compression cannot shrink it
    events = holds(network, 200, poison_at=50, poison={"payment_id": huge})
    try:
        group = started_group(app, url)
        processor = PostgresProcessor(app, LedgerHandler(), group, [TOPIC], database_url=url)
        try:
            stats = processor._apply(one_batch(app, processor, events))
        finally:
            processor.close()
        ((code, detail, event_id),) = rejections(url, group)
        with postgres.connect(url) as conn:
            booked = conn.execute("SELECT count(*) FROM payments").fetchone()
    finally:
        postgres.drop_database(app.database_url, name)
    assert (stats.consumed, stats.applied, stats.rejected) == (200, 199, 1), stats
    assert booked == (199,)
    assert event_id == events[50].envelope.event_id
    if input_rules == "on":
        assert code == "FIELD_TOO_LONG"
        assert "PaymentAuthorized.payment_id" in detail and "10000 characters" in detail
    else:
        assert code == "VALUE_TOO_LARGE"
        assert "SQLSTATE 54000" in detail and "payment_id (10000 characters)" in detail
    assert huge not in detail
