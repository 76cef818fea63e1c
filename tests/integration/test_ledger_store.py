"""The journal's storage form: entries with their postings inline, read back through ``postings``.

Account codes carry outside ids (stations, operators), so the array literals the projector COPYs
must survive every character an id may hold; and databases booked before postings moved inline
(migration 013) must keep every posting, in order.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors import ledger_store as store
from connectors import postgres
from entrypoints.bootstrap import App
from ledger.accounting import accounts
from ledger.accounting.journal import EntryKind, JournalEntry, Posting
from ledger.dimensions import Dimension
from ledger.money import Money
from ledger.payments.state import PaymentState

AWKWARD_STATIONS = ['st"1', "{x,y}", "back\\slash", "NULL", "tab\tand\nnewline", "ünï", "a,b"]


def entry(
    station: str, amounts: tuple[int, int], kind: EntryKind = EntryKind.CAPTURE
) -> JournalEntry:
    """A capture of ``sum(amounts)`` to energy revenue and its VAT, at ``station``."""
    net, vat = amounts
    return JournalEntry.for_event(
        event_id=str(uuid.uuid4()),
        kind=kind,
        payment_id=f"pay-{station}",
        network_id="net-store",
        occurred_at=datetime(2026, 11, 24, 12, 0, tzinfo=UTC),
        postings=[
            Posting.debit(accounts.provider_clearing("sandbox"), Money(net + vat, "EUR")),
            Posting.credit(accounts.revenue(Dimension.ENERGY, "DE", "19"), Money(net, "EUR"),
                           station),
            Posting.credit(accounts.vat_payable("DE", "19"), Money(vat, "EUR"), station),
        ],
    )  # fmt: skip


@pytest.fixture
def scratch(app: App) -> Iterator[str]:
    """A fresh, unmigrated database on the stack's server; dropped afterwards."""
    name = f"ledger_store_{uuid.uuid4().hex[:12]}"
    url = postgres.create_database(app.database_url, name, migrated=False)
    try:
        yield url
    finally:
        postgres.drop_database(app.database_url, name)


PostingRow = tuple[str, str, int, str | None]


def posting_rows(conn: psycopg.Connection[Any]) -> dict[str, list[PostingRow]]:
    rows = conn.execute(
        "SELECT entry_id::text, account, currency, amount_minor, station FROM postings"
        " ORDER BY entry_id, ordinal"
    ).fetchall()
    out: dict[str, list[PostingRow]] = {}
    for entry_id, account, currency, amount, station in rows:
        out.setdefault(entry_id, []).append((account, currency, amount, station))
    return out


def expected(entries: list[JournalEntry]) -> dict[str, list[PostingRow]]:
    return {
        e.entry_id: [
            (p.account.code, p.amount.currency, p.amount.amount_minor, p.station)
            for p in e.postings
        ]
        for e in entries
    }


def test_awkward_account_codes_round_trip(scratch: str) -> None:
    postgres.migrate(scratch)
    entries = [entry(station, (1000 + i, 190 + i)) for i, station in enumerate(AWKWARD_STATIONS)]
    with psycopg.connect(scratch) as conn:
        store.write_entries(
            conn, [store.StoredEntry(e, "PaymentCaptured", "sandbox") for e in entries]
        )
        conn.commit()
        assert posting_rows(conn) == expected(entries)


def test_unbalanced_or_short_entries_are_refused_by_the_table(scratch: str) -> None:
    postgres.migrate(scratch)
    with psycopg.connect(scratch) as conn, pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(
            "INSERT INTO journal_entries (entry_id, event_id, event_type, network_id, kind,"
            " occurred_at, accounts, currencies, amounts) VALUES (gen_random_uuid(), 'e',"
            " 'PaymentCaptured', 'n', 'CAPTURE', now(), '{a}', '{EUR}', '{5}')"
        )


def test_migration_moves_existing_postings_inline_in_order(scratch: str) -> None:
    """A book written before 013 (postings as rows, under the old chart of accounts) keeps every
    posting, in insertion order; 024 then renames its accounts and moves the stations onto the
    postings (rate unassigned: this book has no CDRs that would name it)."""
    entries = [entry(station, (500 * (i + 1), 95 * (i + 1))) for i, station in enumerate("ABC")]
    old_code = {  # what the old chart called the accounts of each entry's postings
        e.entry_id: ["assets:provider_clearing:sandbox", f"revenue:energy:op:{station}",
                     "liabilities:vat_payable:DE"]
        for e, station in zip(entries, "ABC", strict=True)
    }  # fmt: skip
    converted = {
        e.entry_id: [
            (code.replace(":19", ":unassigned"), currency, amount, station)
            for code, currency, amount, station in rows
        ]
        for e in entries
        for rows in [expected([e])[e.entry_id]]
    }
    before = [m for m in postgres.migrations() if m[0] < 13]
    with psycopg.connect(scratch, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for version, name, sql in before:
            conn.execute(sql.encode())
            conn.execute("INSERT INTO schema_migrations VALUES (%s, %s)", (version, name))
        for e in entries:  # the pre-013 write path: an entry row, then a row per posting
            conn.execute(
                "INSERT INTO journal_entries (entry_id, event_id, event_type, network_id, provider,"
                " kind, occurred_at) VALUES (%s, %s, 'PaymentCaptured', %s, 'sandbox', %s, %s)",
                (e.entry_id, e.event_id, e.network_id, e.kind.value, e.occurred_at),
            )
            for p, code in zip(e.postings, old_code[e.entry_id], strict=True):
                conn.execute(
                    "INSERT INTO postings (entry_id, account, currency, amount_minor, occurred_at)"
                    " VALUES (%s, %s, %s, %s, %s)",
                    (e.entry_id, code, p.amount.currency, p.amount.amount_minor, e.occurred_at),
                )
    assert postgres.migrate(scratch)[0].startswith("013_")
    with psycopg.connect(scratch) as conn:
        assert posting_rows(conn) == converted
        captured = conn.execute("SELECT sum(captured) FROM provider_flows").fetchone()
        assert captured == (sum(e.postings[0].amount.amount_minor for e in entries),)


# Any text an event can carry: UTF-8 (no lone surrogates) that PostgreSQL can hold (no NUL).
STORABLE_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), STORABLE_TEXT)))
def test_array_literals_round_trip_any_text(app: App, values: list[str | None]) -> None:
    """``postgres.array_literal`` is what the processors bind for batches of ids and references."""
    with psycopg.connect(app.database_url) as conn:
        row = conn.execute("SELECT %s::text[]", (postgres.array_literal(values),)).fetchone()
    assert row == (values,)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1)))
def test_array_literals_round_trip_bigints(app: App, values: list[int]) -> None:
    """Partitions and offsets travel the same way as ids."""
    with psycopg.connect(app.database_url) as conn:
        row = conn.execute("SELECT %s::bigint[]", (postgres.array_literal(values),)).fetchone()
    assert row == (values,)


def _payment(i: int) -> store.PaymentRow:
    state = PaymentState(
        payment_id=f"pay-{i:06d}",
        network_id="net-store",
        provider="sandbox",
        currency="EUR",
        authorized=1000,
        hold=1000,
        provider_references=(f"ref-{i:06d}",),
        applied_event_ids=frozenset({str(uuid.uuid4())}),
    )
    at = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    return store.PaymentRow(state, None, at, at)


def test_states_load_by_index_probes_whatever_the_plan(scratch: str) -> None:
    """The batch's payments are locked by one index probe per id, also under the generic plan
    that psycopg's prepared statements end up on: a plan that scans the table (or casts the
    array parameter per row) made batch cost grow with the number of payments."""
    postgres.migrate(scratch)
    rows = [_payment(i) for i in range(20_000)]
    with psycopg.connect(scratch) as conn:
        store.write_payments(conn, rows, known=())
        store.insert_references(
            conn, [(r.state.provider, r.state.provider_references[0], r.state.payment_id)
                   for r in rows]
        )  # fmt: skip
        conn.commit()
        conn.execute("SET plan_cache_mode = force_generic_plan")
        wanted = [f"pay-{i:06d}" for i in range(0, 20_000, 7)] + ["pay-missing"]
        states = store.load_payment_states(
            conn, wanted, [("sandbox", "ref-000003"), ("sandbox", "ref-nobody")]
        )
        assert set(states) == {*wanted[:-1], "pay-000003"}
        assert states["pay-000007"] == rows[7].state
        for sql, params in (
            (store.LOCK_STATES, ("{pay-000001}",)),
            (store.OWNERS_OF_REFERENCES, ("{sandbox}", "{ref-000001}")),
        ):
            plan = "\n".join(str(r[0]) for r in conn.execute(f"EXPLAIN (COSTS OFF) {sql}", params))
            assert "Seq Scan" not in plan and "Index Scan" in plan, plan


def test_states_with_awkward_text_round_trip(scratch: str) -> None:
    """States travel as JSON inside COPY text: every id an outside system may send survives."""
    postgres.migrate(scratch)
    rows = []
    for i, text in enumerate([*AWKWARD_STATIONS, 'quote\\"d', "\\N", "ctl\x01\x1f"]):
        row = _payment(i)
        state = row.state.updated({"provider_references": (text, f"r{i}"), "capture_ids": (text,)})
        rows.append(store.PaymentRow(state, text, row.created_at, row.last_event_at))
    with psycopg.connect(scratch) as conn:
        store.write_payments(conn, rows, known=())
        loaded = store.load_payment_states(conn, [r.state.payment_id for r in rows], [])
        assert loaded == {r.state.payment_id: r.state for r in rows}
        updated = [store.PaymentRow(r.state.updated({"hold": 1}), r.station_id, r.created_at,
                                    r.last_event_at) for r in rows]  # fmt: skip
        store.write_payments(conn, updated, known=set(loaded))
        assert store.load_payment_states(conn, list(loaded), []) == {
            r.state.payment_id: r.state for r in updated
        }
        stations = dict(conn.execute("SELECT payment_id, station_id FROM payments").fetchall())
        assert stations == {r.state.payment_id: r.station_id for r in rows}
