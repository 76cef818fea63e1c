"""The shared exactly-once loop: every consumed record is applied, a duplicate, or rejected."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from connectors import postgres
from connectors.checkpoint import InMemoryCheckpoint
from connectors.kafka import Consumed
from entrypoints.bootstrap import App
from entrypoints.simulate import NetworkSimulator
from ledger.events import PaymentVoided
from processors.base import Effects, PostgresProcessor
from tests.integration.conftest import consume_from, end_offsets

TOPIC = "payments.events"


class RecordingHandler:
    """Applies by inserting the event id; refuses voids (a stand-in business rule)."""

    def __init__(self, table: str) -> None:
        self.table = table

    def handle(self, tx: Effects, records: Sequence[Consumed]) -> None:
        for record in records:
            if isinstance(record.event, PaymentVoided):
                tx.reject(record, "TEST_NO_VOIDS", "voids are refused by this test handler")
            else:
                tx.conn.execute(f"INSERT INTO {self.table} VALUES (%s)", (record.event_id,))


def test_counts_add_up_and_effects_are_exactly_once(app: App) -> None:
    table = f"applied_{uuid.uuid4().hex[:8]}"
    with postgres.connect(app.database_url) as conn:
        conn.execute(f"CREATE TABLE {table} (event_id text PRIMARY KEY)")
    events = [
        e
        for e in NetworkSimulator(seed=11).burst(40)
        if type(e).__module__
        and type(e).__name__ in {"PaymentAuthorized", "PaymentCaptured", "PaymentVoided"}
    ]
    rejected_start = end_offsets(app, [f"{TOPIC}.rejected"])
    start = end_offsets(app, [TOPIC])  # the group starts here, not at offset 0
    publisher = app.publisher()
    publisher.publish_many(events)
    publisher.publish_many(events[:5])  # redelivered by a flaky upstream: same event ids
    publisher.produce_bytes(TOPIC, b"garbage", b"junk")
    publisher.flush()
    total = sum(end_offsets(app, [TOPIC]).values()) - sum(start.values())

    group = f"test-base-{uuid.uuid4()}"
    with postgres.connect(app.database_url) as conn:
        postgres.store_offsets(conn, group, start)
    first = PostgresProcessor(app, RecordingHandler(table), group, [TOPIC], batch_size=7)
    stats = first.drain(idle_seconds=2)
    first.close()
    # A restarted instance resumes from the stored offsets and applies nothing twice.
    second = PostgresProcessor(app, RecordingHandler(table), group, [TOPIC])
    again = second.drain(idle_seconds=2)
    second.close()

    assert again.consumed == 0
    assert stats.consumed == total
    assert stats.applied + stats.duplicates + stats.rejected == stats.consumed
    voids = [e for e in events if isinstance(e, PaymentVoided)]
    with postgres.connect(app.database_url) as conn:
        mine = {row[0] for row in conn.execute(f"SELECT event_id FROM {table}")}
        counts = conn.execute(
            "SELECT applied, duplicates, rejected FROM processing_counts WHERE consumer_group=%s",
            (group,),
        ).fetchone()
        reasons = dict(
            conn.execute(
                "SELECT reason_code, count(*) FROM rejections WHERE consumer_group=%s GROUP BY 1",
                (group,),
            ).fetchall()
        )
    assert counts == (stats.applied, stats.duplicates, stats.rejected)
    expected = {e.envelope.event_id for e in events if not isinstance(e, PaymentVoided)}
    assert expected <= mine and len(mine) == stats.applied
    assert stats.duplicates >= 5
    assert reasons["UNDECODABLE"] >= 1 and reasons["TEST_NO_VOIDS"] >= len(voids)
    relayed = consume_from(app, [f"{TOPIC}.rejected"], rejected_start, stats.rejected)
    ours = [r.event for r in relayed if r.event.consumer_group == group]
    assert len(ours) == stats.rejected


class ExplodingHandler:
    """Fails on one payment, as a handler bug or unstorable data would."""

    def __init__(self, poison: str) -> None:
        self.poison = poison
        self.applied: list[str] = []

    def handle(self, tx: Effects, records: Sequence[Consumed]) -> None:
        for record in records:
            if record.event.payment_id == self.poison:
                raise ValueError("cannot store this payment")
            self.applied.append(record.event_id or "")


def test_a_poison_record_is_rejected_alone_and_never_blocks_the_partition(app: App) -> None:
    events = [e for e in NetworkSimulator(seed=5).burst(10)
              if type(e).__name__ == "PaymentAuthorized"]  # fmt: skip
    poison = events[3].payment_id
    start = end_offsets(app, [TOPIC])
    publisher = app.publisher()
    publisher.publish_many(events)
    publisher.flush()
    group = f"test-poison-{uuid.uuid4()}"
    with postgres.connect(app.database_url) as conn:  # start at this test's records
        postgres.store_offsets(conn, group, start)
    handler = ExplodingHandler(poison)
    processor = PostgresProcessor(app, handler, group, [TOPIC], batch_size=100)
    stats = processor.drain(idle_seconds=2)
    processor.close()
    assert stats.consumed == len(events)
    assert stats.rejected == 1 and stats.applied == len(events) - 1
    assert set(handler.applied) >= {e.envelope.event_id for e in events if e.payment_id != poison}
    with postgres.connect(app.database_url) as conn:
        row = conn.execute(
            "SELECT reason_code, detail FROM rejections WHERE consumer_group = %s", (group,)
        ).fetchone()
    assert row is not None and row[0] == "UNPROCESSABLE" and "cannot store" in row[1]


def test_the_loop_runs_on_the_in_memory_checkpoint(app: App) -> None:
    """The same loop with its progress kept in memory (connectors.checkpoint): a handler that
    keeps no tables is tested with Kafka alone, and the poison isolation holds there too."""
    events = [e for e in NetworkSimulator(seed=6).burst(10)
              if type(e).__name__ == "PaymentAuthorized"]  # fmt: skip
    poison = events[2].payment_id
    publisher = app.publisher()
    start = end_offsets(app, [TOPIC])
    publisher.publish_many(events)
    publisher.flush()
    group = f"test-memory-{uuid.uuid4()}"
    memory = InMemoryCheckpoint()
    with memory.batch() as batch:  # start at this test's records
        batch.advance(group, start)
    handler = ExplodingHandler(poison)
    processor = PostgresProcessor(app, handler, group, [TOPIC], checkpoint=memory)
    stats = processor.drain(idle_seconds=2)
    processor.close()
    assert (stats.consumed, stats.applied, stats.rejected) == (len(events), len(events) - 1, 1)
    assert memory.counts(group) == (len(events) - 1, 0, 1)
    [rejection] = memory.rejections(group)
    assert rejection.reason_code == "UNPROCESSABLE"
    assert [topic for topic, *_ in memory.outgoing()] == [f"{TOPIC}.rejected"]
    assert memory.stored_offsets(group, [TOPIC]) == end_offsets(app, [TOPIC])
