"""The journal's hash chain through the real projector: an intact book verifies, and an edited
amount, a deleted entry, an inserted entry and a reordering are each caught, naming the entry."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from typer.testing import CliRunner

from connectors import audit
from entrypoints.bootstrap import App
from entrypoints.cli import app as cli
from ledger.dimensions import Dimension
from ledger.envelope import Envelope, Source
from ledger.events import PaymentAuthorized, PaymentCaptured, RevenueLine
from ledger.money import Money
from processors.ledger_projector import TOPICS, build_ledger_processor
from tests.integration.conftest import end_offsets
from tests.integration.test_ledger_projector import publish, run_to, scratch_book, start_group


@pytest.fixture(scope="module")
def book(app: App) -> Iterator[str]:
    """A book of 12 payments (authorized, captured), projected by the real projector."""
    at = datetime(2026, 11, 10, tzinfo=UTC)
    events = []
    for n in range(12):
        pid = f"P-chain-{uuid.uuid4().hex[:8]}"
        env = Envelope.new(app.settings.network_id, Source.psp, occurred_at=at)
        later = Envelope.new(app.settings.network_id, Source.psp, occurred_at=at + timedelta(n))
        events += [
            PaymentAuthorized(env, pid, "sandbox", f"pi{n}", Money(5000, "EUR"), "card"),
            PaymentCaptured(later, pid, f"c{n}", Money(1190, "EUR"),
                            [RevenueLine(Dimension.ENERGY, 1000, 190, "19")], True, "sandbox",
                            f"ch{n}", None, "ST", "DE"),
        ]  # fmt: skip
    with scratch_book(app) as url:
        group, _ = start_group(app, url)
        processor = build_ledger_processor(app, group=group, database_url=url)
        try:
            publish(app, events)
            run_to(processor, end_offsets(app, list(TOPICS)))
        finally:
            processor.close()
        yield url


Change = Callable[[psycopg.Connection], str]  # type: ignore[type-arg]


def tampered(url: str, change: Change) -> tuple[str, list]:  # type: ignore[type-arg]
    """Apply ``change``, verify, roll back; (the entry changed, the breaks found)."""
    with psycopg.connect(url) as conn:
        entry_id = change(conn)
        _, _, breaks = audit.verify_journal(conn)
        conn.rollback()
    return entry_id, breaks


def first_posted(conn: psycopg.Connection) -> str:  # type: ignore[type-arg]
    row = conn.execute(
        "SELECT e.entry_id::text FROM journal_chain c"
        " CROSS JOIN LATERAL unnest(c.entry_ids) WITH ORDINALITY AS l(entry_id, n)"
        " JOIN journal_entries e ON e.entry_id = l.entry_id"
        " WHERE e.kind = 'CAPTURE' ORDER BY c.topic, c.partition, c.first_seq, l.n LIMIT 1"
    ).fetchone()
    assert row is not None
    return str(row[0])


def test_an_intact_book_verifies(book: str) -> None:
    with psycopg.connect(book) as conn:
        checked, chains, breaks = audit.verify_journal(conn)
    assert breaks == [] and checked >= 36 and chains >= 1
    result = CliRunner().invoke(cli, ["audit", "verify"], env={"EVLEDGER_DATABASE_URL": book})
    assert result.exit_code == 0 and "journal intact" in result.output


def test_an_edited_amount_is_caught_and_named(book: str) -> None:
    def edit(conn: psycopg.Connection) -> str:  # type: ignore[type-arg]
        entry_id = first_posted(conn)
        conn.execute(
            "UPDATE journal_entries SET amounts = ARRAY(SELECT a * 2 FROM unnest(amounts) a)"
            " WHERE entry_id = %s",
            (entry_id,),
        )
        return entry_id

    entry_id, breaks = tampered(book, edit)
    assert [(b.reason, b.entry_id) for b in breaks] == [("EDITED", entry_id)]


def test_a_deleted_entry_is_caught_and_named(book: str) -> None:
    def delete(conn: psycopg.Connection) -> str:  # type: ignore[type-arg]
        entry_id = first_posted(conn)
        conn.execute("DELETE FROM journal_entries WHERE entry_id = %s", (entry_id,))
        return entry_id

    entry_id, breaks = tampered(book, delete)
    assert [(b.reason, b.entry_id) for b in breaks] == [("DELETED", entry_id)]


def test_an_inserted_entry_is_caught_and_named(book: str) -> None:
    forged = str(uuid.uuid4())

    def insert(conn: psycopg.Connection) -> str:  # type: ignore[type-arg]
        conn.execute(
            "INSERT INTO journal_entries (entry_id, event_id, event_type, payment_id, network_id,"
            " provider, kind, occurred_at, accounts, currencies, amounts) VALUES (%s, 'forged',"
            " 'PaymentCaptured', 'P-x', 'net', 'sandbox', 'CAPTURE', now(),"
            " ARRAY['assets:bank', 'revenue:energy:net:ST'], ARRAY['EUR', 'EUR'],"
            " ARRAY[100, -100]::bigint[])",
            (forged,),
        )
        return forged

    entry_id, breaks = tampered(book, insert)
    assert [(b.reason, b.entry_id) for b in breaks] == [("INSERTED", entry_id)]


def test_a_reordering_is_caught_and_named(book: str) -> None:
    def reorder(conn: psycopg.Connection) -> str:  # type: ignore[type-arg]
        row = conn.execute(
            "SELECT topic, partition, first_seq, entry_ids[2]::text FROM journal_chain"
            " WHERE cardinality(entry_ids) >= 2 ORDER BY topic, partition, first_seq LIMIT 1"
        ).fetchone()
        assert row is not None
        topic, partition, first, second = row
        conn.execute(
            "UPDATE journal_chain SET entry_ids = entry_ids[2:2] || entry_ids[1:1]"
            " || entry_ids[3:] WHERE topic = %s AND partition = %s AND first_seq = %s",
            (topic, partition, first),
        )
        return str(second)

    entry_id, breaks = tampered(book, reorder)
    assert [(b.reason, b.entry_id) for b in breaks] == [("EDITED", entry_id)]
