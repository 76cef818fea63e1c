"""PostgreSQL side of the ledger projector: load payment states, write entries, balances, payments.

Every function runs inside the caller's transaction (the processor base commits effects and
offsets together) and touches each row at most once per batch:

* ``load_states`` reads every payment a batch needs in one query and locks the rows
  (``FOR UPDATE``, in payment id order) so two instances of the group cannot lose an update
  when an ``ExternalRefundReported`` on ``provider.events`` hits a payment whose
  ``payments.events`` partition belongs to the other instance;
* ``write_entries`` COPYs entries and postings (text format, built in Python);
* ``upsert_balances`` adds one aggregated delta per (account, currency), in sorted order, so hot
  accounts are written once per batch and concurrent batches lock them in the same order;
* ``upsert_payments`` writes the new states with their extracted columns.

Lock order inside a batch is therefore: offsets → payments (sorted) → balances (sorted) →
processing counts, the same for every instance, so batches cannot deadlock.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from ledger.balances import BalanceDelta
from ledger.journal import JournalEntry
from ledger.payment_state import PaymentState

Conn = psycopg.Connection[Any]


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """A journal entry with what the journal table records beside it."""

    entry: JournalEntry
    event_type: str
    provider: str | None


@dataclass(slots=True)
class PaymentRow:
    """A payment's new state plus the columns the state does not hold."""

    state: PaymentState
    station_id: str | None
    created_at: datetime
    last_event_at: datetime


# -- reading ------------------------------------------------------------------------------------
def load_states(
    conn: Conn, payment_ids: Iterable[str], references: Iterable[tuple[str, str]]
) -> dict[str, PaymentState]:
    """States of the named payments and of the payments owning ``(provider, reference)``,
    locked for the rest of the transaction. One query; unknown ids are simply absent."""
    ids = sorted(set(payment_ids))
    refs = sorted(set(references))
    if not ids and not refs:
        return {}
    rows = conn.execute(
        "SELECT p.payment_id, p.state FROM payments p"
        " WHERE p.payment_id IN (SELECT jsonb_array_elements_text(%s::jsonb))"
        " OR p.payment_id IN (SELECT r.payment_id FROM payment_references r"
        "  JOIN unnest(%s::text[], %s::text[]) AS q(provider, reference)"
        "  ON r.provider = q.provider AND r.provider_reference = q.reference)"
        " ORDER BY p.payment_id FOR UPDATE OF p",
        (json.dumps(ids), [p for p, _ in refs], [r for _, r in refs]),
    ).fetchall()
    return {str(pid): PaymentState.from_dict(state) for pid, state in rows}


# -- writing ------------------------------------------------------------------------------------
_ESCAPE = re.compile(r"[\\\t\n\r]")  # only these need escaping in COPY text format
_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _text(value: str | None) -> str:
    """One field in COPY text format (``\\N`` is NULL)."""
    if value is None:
        return "\\N"
    if value.isprintable() and "\\" not in value:  # fast path: no tab, newline, CR or backslash
        return value
    return _ESCAPE.sub(lambda m: _ESCAPES[m.group()], value)


def write_entries(conn: Conn, entries: Sequence[StoredEntry], chunk: int = 4000) -> None:
    """COPY the entries, then their postings. A repeated ``entry_id`` raises UniqueViolation:
    the event was already booked by another consumer group writing into the same book, which
    must never happen (one ledger group per database)."""
    if not entries:
        return
    with conn.cursor() as cur:
        with cur.copy(
            "COPY journal_entries (entry_id, event_id, event_type, payment_id, network_id,"
            " provider, kind, occurred_at) FROM STDIN"
        ) as copy:
            for start in range(0, len(entries), chunk):
                lines = []
                for stored in entries[start : start + chunk]:
                    e = stored.entry
                    lines.append(
                        f"{e.entry_id}\t{_text(e.event_id)}\t{stored.event_type}\t"
                        f"{_text(e.payment_id)}\t{_text(e.network_id)}\t{_text(stored.provider)}\t"
                        f"{e.kind.value}\t{e.occurred_at.isoformat()}\n"
                    )
                copy.write("".join(lines))
        with cur.copy(
            "COPY postings (entry_id, account, currency, amount_minor, occurred_at) FROM STDIN"
        ) as copy:
            for start in range(0, len(entries), chunk):
                lines = []
                for stored in entries[start : start + chunk]:
                    e = stored.entry
                    at = e.occurred_at.isoformat()
                    for p in e.postings:
                        lines.append(
                            f"{e.entry_id}\t{_text(p.account.code)}\t{p.amount.currency}\t"
                            f"{p.amount.amount_minor}\t{at}\n"
                        )
                copy.write("".join(lines))


def upsert_balances(conn: Conn, deltas: Sequence[BalanceDelta]) -> None:
    """Add each delta to its balance row: one row write per account per batch, in the order
    given (``ledger.balances.aggregate`` sorts by account then currency)."""
    if not deltas:
        return
    conn.execute(
        "INSERT INTO balances AS b (account, currency, debit, credit, postings)"
        " SELECT * FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::bigint[], %s::bigint[])"
        " ON CONFLICT (account, currency) DO UPDATE SET debit = b.debit + EXCLUDED.debit,"
        " credit = b.credit + EXCLUDED.credit, postings = b.postings + EXCLUDED.postings,"
        " updated_at = now()",
        (
            [d.account.code for d in deltas],
            [d.currency for d in deltas],
            [d.debit for d in deltas],
            [d.credit for d in deltas],
            [d.postings for d in deltas],
        ),
    )


def upsert_payments(conn: Conn, rows: Sequence[PaymentRow]) -> None:
    """Insert or replace the payments' states (sorted by id, like the locks taken on load).

    The rows travel as one JSON document: encoding it is one C call, where psycopg's text-array
    dumper would escape every element of thirteen arrays in Python."""
    if not rows:
        return
    ordered = sorted(rows, key=lambda r: r.state.payment_id)
    document = json.dumps(
        [
            {
                "payment_id": r.state.payment_id,
                "network_id": r.state.network_id,
                "status": r.state.status.value,
                "provider": r.state.provider,
                "currency": r.state.currency,
                "authorized": r.state.authorized_total,
                "captured": r.state.captured,
                "refunded": r.state.refunded,
                "hold": r.state.hold,
                "station_id": r.station_id,
                "created_at": r.created_at.isoformat(),
                "last_event_at": r.last_event_at.isoformat(),
                "state": r.state.to_dict(),
            }
            for r in ordered
        ],
        separators=(",", ":"),
    )
    conn.execute(
        "INSERT INTO payments AS p (payment_id, network_id, status, provider, currency,"
        " authorized, captured, refunded, hold, station_id, created_at, last_event_at, state)"
        " SELECT * FROM jsonb_to_recordset(%s::jsonb) AS x(payment_id text, network_id text,"
        " status text, provider text, currency text, authorized bigint, captured bigint,"
        " refunded bigint, hold bigint, station_id text, created_at timestamptz,"
        " last_event_at timestamptz, state jsonb)"
        " ON CONFLICT (payment_id) DO UPDATE SET status = EXCLUDED.status,"
        " authorized = EXCLUDED.authorized, captured = EXCLUDED.captured,"
        " refunded = EXCLUDED.refunded, hold = EXCLUDED.hold,"
        " station_id = COALESCE(EXCLUDED.station_id, p.station_id),"
        " last_event_at = EXCLUDED.last_event_at, updated_at = now(), state = EXCLUDED.state",
        (document,),
    )


def insert_references(conn: Conn, references: Iterable[tuple[str, str, str]]) -> None:
    """Record ``(provider, provider_reference, payment_id)`` for ExternalRefundReported look-ups;
    a reference already known keeps its payment."""
    refs = sorted(set(references))
    if not refs:
        return
    conn.execute(
        "INSERT INTO payment_references (provider, provider_reference, payment_id)"
        " SELECT x->>0, x->>1, x->>2 FROM jsonb_array_elements(%s::jsonb) AS x"
        " ON CONFLICT DO NOTHING",
        (json.dumps(refs),),
    )
