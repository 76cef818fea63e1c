"""Migration 024 converts a book kept under the old chart of accounts (revenue per network and
station, VAT per country) to the new one (revenue, refunds and VAT per country and rate, the
station on the posting) without changing any balance per dimension, and re-links the hash
chains so `evledger audit verify` still holds."""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from connectors import ledger_store as store
from connectors import postgres
from connectors.audit import verify_journal
from connectors.payment_state_form import state_from_dict
from entrypoints.bootstrap import App
from ledger.accounting import posting_rules
from ledger.accounting.chain import GENESIS, link
from ledger.money import Money

AT = datetime(2026, 10, 20, 12, 0, tzinfo=UTC)
NET = "net-old"

# (entry kind, payment, old postings (account, amount)), in the order the projector booked them.
OLD_BOOK: list[tuple[str, str, list[tuple[str, int]]]] = [
    ("HOLD_PLACED", "P1", [("memo:authorization_holds:sandbox", 5000),
                           ("memo:hold_commitments:sandbox", -5000)]),
    ("CAPTURE", "P1", [("assets:provider_clearing:sandbox", 3570),
                       ("revenue:energy:net-old:ST%201", -2500),
                       ("liabilities:vat_payable:DE", -570),
                       ("revenue:time:net-old:ST%201", -500)]),
    ("REFUND", "P1", [("assets:provider_clearing:sandbox", -1190),
                      ("contra_revenue:refunds:energy:net-old:ST%201", 1000),
                      ("liabilities:vat_payable:DE", 190)]),
    ("CAPTURE", "P2", [("assets:provider_clearing:sandbox", 1200),
                       ("revenue:flat:net-old:FR*X*1", -1000),
                       ("liabilities:vat_payable:FR", -200)]),
    ("CAPTURE", "P3", [("assets:provider_clearing:sandbox", 700),
                       ("revenue:energy:net-old:unassigned", -700)]),
]  # fmt: skip
"""P1: a session at station "ST 1" (percent-encoded in the old code) whose CDR billed ENERGY
and TIME at 19 %, partly refunded. P2: a capture from the SDK (no session, so no rate known)
in France. P3: no VAT posting and no station: its country comes from the payment's state."""

OLD_STATES = {
    "P1": [{"dimension": "ENERGY", "station": "ST 1", "country": "DE", "net": 1500, "vat": 285},
           {"dimension": "TIME", "station": "ST 1", "country": "DE", "net": 500, "vat": 95}],
    "P2": [{"dimension": "FLAT", "station": "FR*X*1", "country": "FR", "net": 1000, "vat": 200}],
    "P3": [{"dimension": "ENERGY", "station": None, "country": "AT", "net": 700, "vat": 0}],
}  # fmt: skip
"""Each payment's recorded revenue as the old projector stored it: no ``rate``."""


@pytest.fixture
def old_book(app: App) -> Iterator[str]:
    """A database at migration 023 holding OLD_BOOK, its balances, payments, a session with
    its CDR, and a hash chain over the entries as the old projector wrote and hashed them."""
    name = f"chart_{uuid.uuid4().hex[:12]}"
    url = postgres.create_database(app.database_url, name, migrated=False)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            _migrate_until(conn, 24)
            _write_old_book(conn)
        yield url
    finally:
        postgres.drop_database(app.database_url, name)


def _migrate_until(conn: psycopg.Connection[Any], version: int) -> None:
    conn.execute(
        "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )
    for number, name, sql in postgres.migrations():
        if number < version:
            conn.execute(sql.encode())
            conn.execute("INSERT INTO schema_migrations VALUES (%s, %s)", (number, name))


def _old_line(row: tuple[Any, ...]) -> bytes:
    """A journal row's COPY line as the projector wrote (and hashed) it before 024: the same
    columns less the stations array."""
    *head, accounts_, currencies, amounts = row
    line = store.copy_line(*head, accounts_, currencies, amounts, None)
    assert line.endswith("\t\\N\n")
    return (line.removesuffix("\t\\N\n") + "\n").encode()


def _write_old_book(conn: psycopg.Connection[Any]) -> None:
    ids, hashes, digest = [], [], GENESIS
    for n, (kind, payment, postings) in enumerate(OLD_BOOK):
        entry_id, event_id = str(uuid.uuid4()), f"ev-{n}"
        codes, amounts = [a for a, _ in postings], [m for _, m in postings]
        row = (entry_id, event_id, "PaymentEvent", payment, NET, "sandbox", kind, AT, codes,
               ["EUR"] * len(postings), amounts)  # fmt: skip
        conn.execute(
            "INSERT INTO journal_entries (entry_id, event_id, event_type, payment_id, network_id,"
            " provider, kind, occurred_at, accounts, currencies, amounts)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            row,
        )
        digest = link(digest, _old_line(row))
        ids.append(entry_id)
        hashes.append(digest)
    conn.execute(
        "INSERT INTO journal_chain VALUES ('payments.events', 0, 1, %s::uuid[], %s)", (ids, hashes)
    )
    conn.execute(
        "INSERT INTO journal_chain_heads VALUES ('payments.events', 0, %s, %s)", (len(ids), digest)
    )
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for _, _, postings in OLD_BOOK:
        for account, amount in postings:
            totals[account][0 if amount > 0 else 1] += abs(amount)
            totals[account][2] += 1
    for account, (debit, credit, count) in totals.items():
        conn.execute(
            "INSERT INTO balances (account, currency, debit, credit, postings)"
            " VALUES (%s, 'EUR', %s, %s, %s)",
            (account, debit, credit, count),
        )
    for payment, shares in OLD_STATES.items():
        state = {"payment_id": payment, "network_id": NET, "provider": "sandbox",
                 "currency": "EUR", "authorized": 5000, "incremented": 0, "captured": 0,
                 "refunded": 0, "hold": 0, "status": "FINALIZED", "provider_references": [],
                 "capture_ids": [], "revenue": shares, "refunds": [], "disputes": [],
                 "applied_event_ids": [], "authorized_at": None, "receivables": []}  # fmt: skip
        conn.execute(
            "INSERT INTO payments (payment_id, network_id, status, provider, currency,"
            " authorized, captured, refunded, hold, created_at, last_event_at, state)"
            " VALUES (%s, %s, 'FINALIZED', 'sandbox', 'EUR', 0, 0, 0, 0, %s, %s, %s::json)",
            (payment, NET, AT, AT, json.dumps(state)),
        )
    conn.execute(
        "INSERT INTO charging_sessions (session_id, network_id, started_event_id, station_id,"
        " evse_id, connector_id, transaction_id, country, time_zone, tariff_id, payment_id,"
        " started_at) VALUES ('S1', %s, 'e-start', 'ST 1', 'EVSE-1', '1', 'tx', 'DE',"
        " 'Europe/Berlin', 'T-1', 'P1', %s)",
        (NET, AT),
    )
    lines = [{"dimension": "ENERGY", "amount_excl_vat": 2500, "vat_amount": 475,
              "vat_rate": "19.00", "quantity": "10"},
             {"dimension": "TIME", "amount_excl_vat": 500, "vat_amount": 95, "vat_rate": "19",
              "quantity": "1"}]  # fmt: skip
    conn.execute(
        "INSERT INTO session_cdrs (cdr_id, session_id, kind, event_id, tariff_id, tariff_version,"
        " currency, total_excl_vat, total_incl_vat, lines)"
        " VALUES ('CDR-1', 'S1', 'issued', 'e-cdr', 'T-1', 1, 'EUR', 3000, 3570, %s::jsonb)",
        (json.dumps(lines),),
    )


def by_dimension(conn: psycopg.Connection[Any]) -> dict[tuple[str, ...], int]:
    """Revenue less refunds per network, station, tariff dimension and country."""
    rows = conn.execute(
        "SELECT operator, station, dimension, country, sum(revenue - refunds)::bigint"
        " FROM revenue_postings GROUP BY 1, 2, 3, 4"
    ).fetchall()
    return {tuple(r[:4]): r[4] for r in rows}


def test_an_old_book_converts_without_changing_a_balance_per_dimension(old_book: str) -> None:
    # What the old book says per network, station, dimension and country (the country from
    # each entry's VAT posting, else from the payment), worked out by hand:
    before = {
        (NET, "ST 1", "energy", "DE"): 2500 - 1000,
        (NET, "ST 1", "time", "DE"): 500,
        (NET, "FR*X*1", "flat", "FR"): 1000,
        (NET, "unassigned", "energy", "AT"): 700,
    }
    applied = postgres.migrate(old_book)
    assert applied[0].startswith("024_")
    with psycopg.connect(old_book) as conn:
        assert by_dimension(conn) == before
        accounts = {
            code: int(balance)
            for code, balance in conn.execute("SELECT account, balance FROM balances")
        }
        assert accounts == {
            "memo:authorization_holds:sandbox": 5000,
            "memo:hold_commitments:sandbox": -5000,
            "assets:provider_clearing:sandbox": 3570 - 1190 + 1200 + 700,
            "revenue:energy:DE:19": -2500,
            "revenue:time:DE:19": -500,
            "contra_revenue:refunds:energy:DE:19": 1000,
            "liabilities:vat_payable:DE:19": -570 + 190,
            "revenue:flat:FR:unassigned": -1000,  # no CDR names the rate: visible, not guessed
            "liabilities:vat_payable:FR:unassigned": -200,
            "revenue:energy:AT:unassigned": -700,
        }
        stations = conn.execute(
            "SELECT account, station FROM postings WHERE account LIKE 'revenue:%'"
            " OR account LIKE 'liabilities:%' ORDER BY 1, 2"
        ).fetchall()
        assert ("revenue:energy:DE:19", "ST 1") in stations  # decoded from ST%201
        assert ("liabilities:vat_payable:DE:19", "ST 1") in stations
        assert ("revenue:energy:AT:unassigned", None) in stations
        dims = conn.execute(
            "SELECT DISTINCT station, evse_id, tariff_id, session_id FROM posting_dimensions"
            " WHERE payment_id = 'P1' AND station IS NOT NULL"
        ).fetchall()
        assert dims == [("ST 1", "EVSE-1", "T-1", "S1")]

        checked, chains, breaks = verify_journal(conn)
        assert (checked, chains, breaks) == (len(OLD_BOOK), 1, [])
        (rebase,) = conn.execute(
            "SELECT entries, heads_before, heads_after FROM journal_chain_rebases"
        ).fetchall()
        assert rebase[0] == len(OLD_BOOK) - 1  # every entry but the hold changed
        assert rebase[1][0]["hash"] != rebase[2][0]["hash"]

        (state,) = conn.execute("SELECT state FROM payments WHERE payment_id = 'P1'").fetchone()
        p1 = state_from_dict(state)
        assert [s.rate for s in p1.revenue] == ["19", "19"]
        # A refund after the conversion books to the country and rate the capture was
        # converted to (not to 'unassigned').
        shares = posting_rules.allocate_refund(p1.revenue, 238)
        (entry,) = posting_rules.refunded(
            posting_rules.EntryContext("ev-r", "P1", NET, AT), "sandbox",
            Money(238, "EUR"), shares,
        )  # fmt: skip
        booked = {p.account.code for p in entry.postings} - {"assets:provider_clearing:sandbox"}
        assert booked == {
            "contra_revenue:refunds:energy:DE:19",
            "contra_revenue:refunds:time:DE:19",
            "liabilities:vat_payable:DE:19",
        }


def test_a_new_book_converts_nothing(app: App) -> None:
    name = f"chart_{uuid.uuid4().hex[:12]}"
    url = postgres.create_database(app.database_url, name)
    try:
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT count(*) FROM journal_chain_rebases").fetchone() == (0,)
    finally:
        postgres.drop_database(app.database_url, name)
