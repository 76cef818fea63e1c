"""PostgreSQL side of the ledger projector: load payment states, write entries, balances, payments.

Every function runs inside the caller's transaction (the processor base commits effects and
offsets together) and touches each row at most once per batch:

* ``load_payment_states`` reads every payment a batch needs in one query and locks the rows
  (``FOR UPDATE``, in payment id order) so two instances of the group cannot lose an update
  when an ``ExternalRefundReported`` on ``provider.events`` hits a payment whose
  ``payments.events`` partition belongs to the other instance;
* ``write_entries`` COPYs entries with their postings (text format, built in Python);
* ``upsert_balances`` adds one aggregated delta per (account, currency), in sorted order, so hot
  accounts are written once per batch and concurrent batches lock them in the same order;
* ``write_payments`` COPYs the payments a batch created and updates the ones it loaded.

Lock order inside a batch is therefore: offsets → payments (sorted) → balances (sorted) →
processing counts, the same for every instance, so batches cannot deadlock.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson
import psycopg
from psycopg.types.json import set_json_loads

from connectors.payment_state_form import state_from_dict
from connectors.postgres import array_element, array_literal
from connectors.postgres import copy_field as _text
from ledger.accounting.balances import BalanceDelta
from ledger.accounting.chain import GENESIS, link
from ledger.accounting.journal import JournalEntry
from ledger.accounting.periods import Relocation
from ledger.payments.state import PaymentState

try:
    from connectors import _copytext  # type: ignore[attr-defined]
except ImportError:  # built without a C compiler (setup.py)
    _copytext = None

Conn = psycopg.Connection[Any]


class StoredEntry(NamedTuple):
    """A journal entry with what the journal table records beside it. (A NamedTuple: two are
    built per event, at half the cost of a frozen dataclass.)"""

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


@dataclass(frozen=True, slots=True)
class PaymentStep:
    """A payment's status and totals right after one event was applied to it: one row of
    ``payment_history`` (migration 036), what a payment "as of" and "as known at" reads."""

    payment_id: str
    step: int
    """how many events the payment has applied, this one included (1: its authorization)"""
    event_id: str
    event_type: str
    occurred_at: datetime
    status: str
    authorized: int
    captured: int
    refunded: int
    hold: int


# -- reading ------------------------------------------------------------------------------------
LOCK_STATES = (
    "SELECT p.payment_id, p.state FROM unnest(%s::text[]) AS q(payment_id)"
    " CROSS JOIN LATERAL (SELECT payment_id, state FROM payments"
    "  WHERE payment_id = q.payment_id LIMIT 1 FOR UPDATE) AS p"
)
OWNERS_OF_REFERENCES = (
    "SELECT r.payment_id FROM unnest(%s::text[], %s::text[]) AS q(provider, ref)"
    " CROSS JOIN LATERAL (SELECT payment_id FROM payment_references"
    "  WHERE provider = q.provider AND provider_reference = q.ref LIMIT 1) AS r"
)


def load_payment_states(
    conn: Conn, payment_ids: Iterable[str], references: Iterable[tuple[str, str]]
) -> dict[str, PaymentState]:
    """States of the named payments and of the payments owning ``(provider, reference)``,
    locked for the rest of the transaction (in payment id order). Unknown ids are absent.

    Both look-ups are written as one index probe per key (a LATERAL subquery the planner cannot
    flatten), so their cost follows the batch, never the table. As a filter
    (``payment_id = ANY($1::text[])``) the cached generic plan scanned every payment and cast
    the array parameter once per row: a batch of 5,000 cost 0.2-14 s on a table of 15,000."""
    ids = set(payment_ids)
    refs = sorted(set(references))
    if refs:
        params = (array_literal(p for p, _ in refs), array_literal(r for _, r in refs))
        ids.update(str(row[0]) for row in conn.execute(OWNERS_OF_REFERENCES, params))
    if not ids:
        return {}
    with conn.cursor() as cur:
        set_json_loads(orjson.loads, cur)
        rows = cur.execute(LOCK_STATES, (array_literal(sorted(ids)),)).fetchall()
    return {str(pid): state_from_dict(state) for pid, state in rows}


# -- writing ------------------------------------------------------------------------------------


def write_entries(conn: Conn, entries: Sequence[StoredEntry]) -> bytes:
    """COPY the entries, each with its postings as four arrays (013_journal_postings_inline,
    024_chart_by_country);
    returns the COPY text (one line per entry, which the hash chain covers). A repeated
    ``entry_id`` raises UniqueViolation: the event was already booked by another consumer group
    writing into the same book, which must never happen (one ledger group per database)."""
    if not entries:
        return b""
    text = entry_text(entries)
    data = text if isinstance(text, bytes) else text.encode()
    with (
        conn.cursor() as cur,
        cur.copy(
            "COPY journal_entries (entry_id, event_id, event_type, payment_id, network_id,"
            " provider, kind, occurred_at, accounts, currencies, amounts, stations) FROM STDIN"
        ) as copy,
    ):
        copy.write(data)
    return data


def entry_text(entries: Sequence[StoredEntry]) -> bytes | str:
    """The COPY text of ``entries``: from the compiled formatter when it is built (UTF-8 bytes;
    4.2 -> 2.0 us per event, half of it the timestamp's isoformat), else from ``_entry_lines``.
    A property test holds the two to each other byte for byte."""
    if _copytext is not None:
        text: bytes = _copytext.entry_lines(entries)
        return text
    return "".join(_entry_lines(entries))


def copy_line(
    entry_id: str,
    event_id: str,
    event_type: str,
    payment_id: str | None,
    network_id: str,
    provider: str | None,
    kind: str,
    occurred_at: datetime,
    accounts: Sequence[str],
    currencies: Sequence[str],
    amounts: Sequence[int],
    stations: Sequence[str | None] | None,
) -> str:
    """One stored journal row as the COPY text wrote it (``_entry_lines``): what a verifier of
    the hash chain rebuilds from the table. ``occurred_at`` in UTC, as the projector books it."""
    return (
        f"{entry_id}\t{_text(event_id)}\t{event_type}\t{_text(payment_id)}\t"
        f"{_text(network_id)}\t{_text(provider)}\t{kind}\t{occurred_at.isoformat()}\t"
        f"{{{','.join(_element(a) for a in accounts)}}}\t{{{','.join(currencies)}}}\t"
        f"{{{','.join(str(n) for n in amounts)}}}\t{_stations(stations)}\n"
    )


def _stations(stations: Sequence[str | None] | None) -> str:
    """The stations column: ``\\N`` when no posting has a station, else one element each."""
    if stations is None or all(s is None for s in stations):
        return "\\N"
    return "{" + ",".join(_text(array_element(s)) for s in stations) + "}"


STORED_ROW = (
    "entry_id::text, event_id, event_type, payment_id, network_id, provider, kind, occurred_at,"
    " accounts, currencies, amounts, stations"
)
"""The journal columns a verifier selects for ``stored_line``, in its order (``entry_id`` first)."""


def stored_line(row: Sequence[Any]) -> bytes:
    """A journal row selected as ``STORED_ROW``: its canonical content, the COPY text line the
    projector hashed (the date in UTC)."""
    entry_id, event_id, event_type, payment_id, network_id, provider, kind, at, *arrays = row
    accounts, currencies, amounts, stations = arrays
    line = copy_line(entry_id, event_id, event_type, payment_id, network_id, provider, kind,
                     at.astimezone(UTC), accounts, currencies, amounts, stations)  # fmt: skip
    return line.encode()


def _entry_lines(entries: Sequence[StoredEntry]) -> list[str]:
    """COPY text lines of the entries. The entries of one event share every column but id,
    kind, postings and (rarely: a capture's revenue on the supply date) the date, so those are
    formatted once per event, the date once per datetime object."""
    lines: list[str] = []
    shared_of: Any = None
    at_of: Any = None
    shared = at = ""
    for stored in entries:
        e = stored.entry
        if e.occurred_at is not at_of:
            at_of = e.occurred_at
            at = at_of.isoformat()
        if e.event_id is not shared_of:
            shared_of = e.event_id
            shared = (
                f"{_text(e.event_id)}\t{stored.event_type}\t{_text(e.payment_id)}\t"
                f"{_text(e.network_id)}\t{_text(stored.provider)}"
            )
        postings = e.postings
        accounts = ",".join([_element(p.account.code) for p in postings])
        currencies = ",".join([p.amount.currency for p in postings])
        amounts = ",".join([str(p.amount.amount_minor) for p in postings])
        stations = _stations([p.station for p in postings])
        lines.append(
            f"{e.entry_id}\t{shared}\t{e.kind.value}\t{at}\t"
            f"{{{accounts}}}\t{{{currencies}}}\t{{{amounts}}}\t{stations}\n"
        )
    return lines


@functools.lru_cache(maxsize=65536)
def _element(code: str) -> str:
    """An account code as a quoted array element in COPY text form. Currencies (ISO codes) and
    integers need no quoting. The same few thousand codes recur in every batch."""
    return _text(array_element(code))


def insert_documents(conn: Conn, documents: Sequence[tuple[str, str]]) -> None:
    """Which CDR each entry books (migration 018), for the journal export's references."""
    if not documents:
        return
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO entry_references (entry_id, cdr_id) VALUES (%s, %s)"
            " ON CONFLICT DO NOTHING",
            documents,
        )


def link_entries(
    conn: Conn, text: bytes, entries: Sequence[StoredEntry], sources: Sequence[tuple[str, int]]
) -> None:
    """Link ``entries`` (each from the partition in ``sources``; ``text`` their COPY text, one
    line each) into their partitions' hash chains after the stored heads: one segment row per
    chain (its entries and hashes in order) and the new heads (migration 019)."""
    if not entries:
        return
    rows = text.split(b"\n")
    chains = sorted(set(sources))
    heads: dict[tuple[str, int], tuple[int, str]] = {
        (topic, partition): (seq, digest)
        for topic, partition, seq, digest in conn.execute(
            "SELECT topic, partition, seq, hash FROM journal_chain_heads"
            " WHERE (topic, partition) IN (SELECT * FROM unnest(%s::text[], %s::int[]))",
            ([t for t, _ in chains], [p for _, p in chains]),
        )
    }
    segments: dict[tuple[str, int], tuple[int, list[str], list[str]]] = {}
    for stored, chain, row in zip(entries, sources, rows, strict=False):
        seq, previous = heads.get(chain, (0, GENESIS))
        digest = link(previous, row + b"\n")
        heads[chain] = (seq + 1, digest)
        segment = segments.get(chain)
        if segment is None:
            segment = segments[chain] = (seq + 1, [], [])
        segment[1].append(stored.entry.entry_id)
        segment[2].append(digest)
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO journal_chain (topic, partition, first_seq, entry_ids, hashes)"
            " VALUES (%s, %s, %s, %s::uuid[], %s::text[])",
            [
                (t, p, first, array_literal(ids), array_literal(hashes))
                for (t, p), (first, ids, hashes) in segments.items()
            ],
        )
        cur.executemany(
            "INSERT INTO journal_chain_heads (topic, partition, seq, hash) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (topic, partition)"
            " DO UPDATE SET seq = EXCLUDED.seq, hash = EXCLUDED.hash",
            [(t, p, heads[(t, p)][0], heads[(t, p)][1]) for t, p in segments],
        )


def lock_boundary(conn: Conn) -> datetime | None:
    """Until when the books are locked (closed periods; None: none), held FOR SHARE until the
    batch commits, so a close waits for it (migration 017)."""
    row = conn.execute("SELECT locked_until FROM period_lock FOR SHARE").fetchone()
    return None if row is None or row[0] is None else row[0].astimezone(UTC)


def insert_relocations(conn: Conn, moved: Sequence[Relocation]) -> None:
    """Keep the original date of each entry booked at the lock instead (``periods.relocate``)."""
    if not moved:
        return
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO relocated_entries (entry_id, original_occurred_at, booked_at)"
            " VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
            [(m.entry_id, m.original_occurred_at, m.booked_at) for m in moved],
        )


def upsert_balances(conn: Conn, deltas: Sequence[BalanceDelta]) -> None:
    """Add each delta to its balance row: one row write per account per batch, in the order
    given (``ledger.accounting.balances.aggregate`` sorts by account then currency)."""
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


def write_payments(conn: Conn, rows: Sequence[PaymentRow], known: Collection[str]) -> None:
    """Store the payments' new states: COPY the ones this batch created, update the ``known``
    ones (those ``load_payment_states`` found and locked).

    A new payment cannot collide: only its authorization creates it, and that arrives on the
    payments.events partition whose offsets this transaction holds locked. If it does anyway (an
    authorization published under another key), COPY raises UniqueViolation and the batch is
    retried record by record, where the second authorization is rejected as a duplicate."""
    created = [r for r in rows if r.state.payment_id not in known]
    updated = [r for r in rows if r.state.payment_id in known]
    if created:
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY payments (payment_id, network_id, status, provider, currency,"
                " authorized, captured, refunded, hold, station_id, created_at, last_event_at,"
                " state) FROM STDIN"
            ) as copy,
        ):
            copy.write("".join(_payment_line(r) for r in created))
    if updated:
        _update_payments(conn, updated)


def write_payment_history(conn: Conn, steps: Sequence[PaymentStep]) -> None:
    """Append the batch's payment steps, in the order they were applied (one COPY; the rows
    take the transaction's time as ``recorded_at``, as the journal entries booked with them)."""
    if not steps:
        return
    lines = "".join(
        f"{_text(s.payment_id)}\t{s.step}\t{_text(s.event_id)}\t{s.event_type}\t"
        f"{s.occurred_at.isoformat()}"
        f"\t{s.status}\t{s.authorized}\t{s.captured}\t{s.refunded}\t{s.hold}\n"
        for s in steps
    )
    with (
        conn.cursor() as cur,
        cur.copy(
            "COPY payment_history (payment_id, step, event_id, event_type, occurred_at, status,"
            " authorized, captured, refunded, hold) FROM STDIN"
        ) as copy,
    ):
        copy.write(lines)


def state_json(state: PaymentState) -> str:
    """``state_to_dict(state)`` as compact JSON: what ``json.dumps(..., ensure_ascii=False)``
    gives.

    orjson serializes the frozen dataclasses directly (fields in declaration order, enums as
    their values, tuples as arrays), several times faster than building the dict and encoding
    it; the one set, ``applied_event_ids``, is written sorted, as ``state_to_dict`` does."""
    return orjson.dumps(state, default=_sorted_set).decode()


def _sorted_set(value: object) -> list[str]:
    if isinstance(value, frozenset):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not part of a payment state")


def _payment_line(row: PaymentRow) -> str:
    s = row.state
    # JSON holds no raw tab, newline or CR (it escapes them), so only backslashes need doubling.
    state = state_json(s).replace("\\", "\\\\")
    return (
        f"{_text(s.payment_id)}\t{_text(s.network_id)}\t{s.status.value}\t{_text(s.provider)}\t"
        f"{s.currency}\t{s.authorized_total}\t{s.captured}\t{s.refunded}\t{s.hold}\t"
        f"{_text(row.station_id)}\t{row.created_at.isoformat()}\t"
        f"{row.last_event_at.isoformat()}\t{state}\n"
    )


def _update_payments(conn: Conn, rows: Sequence[PaymentRow]) -> None:
    """Replace the states of known payments (sorted by id, like the locks taken on load).

    The rows travel as one JSON document (the states are JSON already): encoding it is one C
    call, and the server reads the rows back with json_to_recordset."""
    ordered = sorted(rows, key=lambda r: r.state.payment_id)
    document = orjson.dumps(
        [
            {
                "payment_id": r.state.payment_id,
                "status": r.state.status,
                "authorized": r.state.authorized_total,
                "captured": r.state.captured,
                "refunded": r.state.refunded,
                "hold": r.state.hold,
                "station_id": r.station_id,
                "last_event_at": r.last_event_at.isoformat(),
                "state": r.state,
            }
            for r in ordered
        ],
        default=_sorted_set,
    ).decode()
    conn.execute(
        "UPDATE payments AS p SET status = x.status, authorized = x.authorized,"
        " captured = x.captured, refunded = x.refunded, hold = x.hold,"
        " station_id = COALESCE(x.station_id, p.station_id), last_event_at = x.last_event_at,"
        " updated_at = now(), state = x.state"
        " FROM json_to_recordset(%s::json) AS x(payment_id text, status text,"
        " authorized bigint, captured bigint, refunded bigint, hold bigint, station_id text,"
        " last_event_at timestamptz, state json)"
        " WHERE p.payment_id = x.payment_id",
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
        " SELECT * FROM unnest(%s::text[], %s::text[], %s::text[]) ON CONFLICT DO NOTHING",
        (
            array_literal(r[0] for r in refs),
            array_literal(r[1] for r in refs),
            array_literal(r[2] for r in refs),
        ),
    )
