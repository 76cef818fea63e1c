"""The ledger projector against the real stack, compared with an independent recomputation.

Each test projects into its own fresh database (same server) under its own consumer group,
seeded at the topics' current ends, so the book holds exactly the records the group consumed;
those records are read back from Kafka and recomputed by ``tests/ledger_oracle.py``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from connectors import finance, postgres
from connectors.payment_state_form import state_from_dict
from entrypoints.bootstrap import App
from ledger.events import PaymentAuthorized
from ledger.money import Money
from processors.base import PostgresProcessor
from processors.ledger_projector import TOPICS, build_ledger_processor, caught_up
from tests.integration.conftest import end_offsets
from tests.ledger_oracle import Book, _Maker, mixed_stream, read_range, recompute


@contextmanager
def scratch_book(app: App) -> Iterator[str]:
    """A fresh, migrated database on the stack's server; dropped afterwards."""
    name = f"ledger_test_{uuid.uuid4().hex[:12]}"
    url = postgres.create_database(app.database_url, name, migrated=False)
    try:
        postgres.migrate(url)
        yield url
    finally:
        postgres.drop_database(app.database_url, name)


@pytest.fixture
def book_db(app: App) -> Iterator[str]:
    with scratch_book(app) as url:
        yield url


def start_group(app: App, url: str) -> tuple[str, dict[tuple[str, int], int]]:
    """A new group that starts at the topics' current ends (the book begins now)."""
    group = f"test-ledger-{uuid.uuid4().hex[:8]}"
    starts = end_offsets(app, list(TOPICS))
    with psycopg.connect(url) as conn:
        postgres.store_offsets(conn, group, starts)
    return group, starts


def run_to(processor: PostgresProcessor, targets: dict[tuple[str, int], int]) -> None:
    """Step until every partition is read up to ``targets`` (no time limit beyond pytest's)."""
    while True:
        stats = processor.step(0.5)
        if not stats.consumed and caught_up(processor, targets):
            return


def publish(app: App, events: list[Any]) -> None:
    publisher = app.publisher()
    publisher.publish_many(events)
    publisher.flush()


def stored_offsets(url: str, group: str) -> dict[tuple[str, int], int]:
    with psycopg.connect(url) as conn:
        return postgres.stored_offsets(conn, group, TOPICS)


def assert_projection_matches(url: str, group: str, book: Book) -> None:
    with psycopg.connect(url) as conn:
        stored = {
            (a, c): (d, cr)
            for a, c, d, cr in conn.execute("SELECT account, currency, debit, credit FROM balances")
        }
        from_journal = dict(
            conn.execute(
                "SELECT account || '/' || currency, sum(amount_minor) FROM postings GROUP BY 1"
            ).fetchall()
        )
        entry_ids = [str(r[0]) for r in conn.execute("SELECT entry_id FROM journal_entries")]
        orphans = conn.execute(
            "SELECT count(*) FROM postings p LEFT JOIN journal_entries e USING (entry_id)"
            " WHERE e.entry_id IS NULL"
        ).fetchone()
        unbalanced = conn.execute(
            "SELECT count(*) FROM (SELECT entry_id, currency FROM postings GROUP BY 1, 2"
            " HAVING sum(amount_minor) <> 0) x"
        ).fetchone()
        states = {
            pid: state_from_dict(state)
            for pid, state in conn.execute("SELECT payment_id, state FROM payments")
        }
        counts = conn.execute(
            "SELECT applied, duplicates, rejected FROM processing_counts WHERE consumer_group=%s",
            (group,),
        ).fetchone()
        processed = conn.execute(
            "SELECT count(*) FROM processed_events WHERE consumer_group=%s", (group,)
        ).fetchone()
    expected = {k: (d, c) for k, (d, c) in book.balances.items()}
    assert stored == expected
    assert from_journal == {f"{a}/{c}": d - cr for (a, c), (d, cr) in expected.items()}
    assert len(entry_ids) == len(book.entry_ids) == len(set(book.entry_ids))
    assert set(entry_ids) == set(book.entry_ids)
    assert orphans == (0,) and unbalanced == (0,)
    assert states == book.states
    assert counts == (book.applied, book.duplicates, book.rejected)
    # Every applied event id is marked with its fingerprint, payment events too (they are
    # deduplicated by their state; the mark is what tells a reused id from a repeat).
    marked = book.seen.union(*book.applied_to.values())
    assert processed == (len(marked),)


def test_mixed_stream_matches_independent_recomputation(app: App, book_db: str) -> None:
    network = f"net-{uuid.uuid4().hex[:8]}"
    stream = mixed_stream(network, payments_count=160)
    group, starts = start_group(app, book_db)
    processor = build_ledger_processor(app, group=group, database_url=book_db, batch_size=97)
    try:
        publish(app, stream.phase1)
        run_to(processor, end_offsets(app, list(TOPICS)))
        publish(app, stream.phase2)  # provider events refer to payments projected above
        run_to(processor, end_offsets(app, list(TOPICS)))
    finally:
        processor.close()

    stops = stored_offsets(book_db, group)
    records = read_range(app, starts, stops)
    consumed = sum(stops[tp] - starts.get(tp, 0) for tp in stops)
    ours = {e.envelope.event_id for e in [*stream.phase1, *stream.phase2]}
    assert ours <= {r.event_id for r in records}, "every published event was consumed"
    book = recompute(records)
    assert book.applied + book.duplicates + book.rejected == len(records)
    assert_projection_matches(book_db, group, book)

    with psycopg.connect(book_db) as conn:
        counts = conn.execute(
            "SELECT applied + duplicates + rejected FROM processing_counts WHERE consumer_group=%s",
            (group,),
        ).fetchone()
        rejections = dict(
            conn.execute(
                "SELECT DISTINCT ON (event_id) event_id, reason_code FROM rejections"
                ' WHERE consumer_group=%s ORDER BY event_id, "offset"',
                (group,),
            ).fetchall()
        )
    # Offsets may skip transaction markers of other producers, so consumed <= the offset span.
    assert counts == (len(records),) and len(records) <= consumed
    for event_id, code in stream.expect_rejected.items():
        assert rejections.get(event_id) == code
    assert {"CAPTURE_EXCEEDS_AUTHORIZATION", "REFUND_EXCEEDS_CAPTURED"} <= set(rejections.values())
    assert book.duplicates >= stream.duplicates
    # Spot checks that do not go through the oracle: the book balances and holds are released.
    posted = [d - c for (a, _), (d, c) in book.balances.items() if not a.startswith("memo:")]
    assert sum(posted) == 0
    mine = [s for pid, s in book.states.items() if network in pid]
    assert len(mine) == 160
    assert all(s.captured <= s.authorized_total and s.refunded <= s.captured for s in mine)


def test_restart_resumes_without_booking_twice(app: App, book_db: str) -> None:
    network = f"net-{uuid.uuid4().hex[:8]}"
    stream = mixed_stream(network, payments_count=40, seed=3)
    group, starts = start_group(app, book_db)
    publish(app, stream.phase1)
    targets = end_offsets(app, list(TOPICS))
    first = build_ledger_processor(app, group=group, database_url=book_db, batch_size=13)
    # Stop the first instance part-way: after a few batches.
    for _ in range(200):
        if first.step(0.5).consumed and stored_offsets(book_db, group) != starts:
            break
    first.close()
    second = build_ledger_processor(app, group=group, database_url=book_db, batch_size=500)
    try:
        run_to(second, targets)
    finally:
        second.close()
    records = read_range(app, starts, stored_offsets(book_db, group))
    assert_projection_matches(book_db, group, recompute(records))


def test_a_rejected_payment_event_applies_when_re_driven(app: App, book_db: str) -> None:
    """A capture that overtook its authorization is rejected (UNKNOWN_PAYMENT, out of order);
    the same bytes published again once the authorization is booked apply, and a third copy is
    a duplicate. Nothing of the first attempt blocks the re-drive."""
    network = f"net-{uuid.uuid4().hex[:8]}"
    at = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)
    maker = _Maker(network, f"P-{network}", "sandbox", "DE", "DE*EVL*E1", at)
    auth = PaymentAuthorized(
        maker.env(0), maker.pid, "sandbox", "sbx-1", Money(2000, "EUR"), "card"
    )
    capture = maker.capture(30, 1500, True)
    group, _ = start_group(app, book_db)
    processor = build_ledger_processor(app, group=group, database_url=book_db, batch_size=50)
    try:
        for events in ([capture], [auth, capture], [capture]):
            publish(app, events)
            run_to(processor, end_offsets(app, list(TOPICS)))
    finally:
        processor.close()
    with psycopg.connect(book_db) as conn:
        (counts,) = finance.counts(conn, group)
        reasons = conn.execute(
            "SELECT reason_code FROM rejections WHERE consumer_group=%s", (group,)
        ).fetchall()
        state = state_from_dict(
            conn.execute("SELECT state FROM payments WHERE payment_id=%s", (maker.pid,)).fetchone()[
                0
            ]
        )
    assert (counts.applied, counts.duplicates, counts.rejected) == (2, 1, 1)
    assert reasons == [("UNKNOWN_PAYMENT",)]
    assert state.captured == 1500 and state.hold == 0
