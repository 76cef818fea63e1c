"""Reading the journal and its hash chain back for ``evledger audit verify``
(``ledger.accounting.chain``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC
from typing import Any

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from connectors.ledger_store import STORED_ROW, stored_line
from connectors.signing import Signed, sign, signature_holds
from ledger.accounting.chain import Break, ChainLink, verify
from ledger.accounting.checkpoints import Checkpoint, check_heads, heads_of

Conn = psycopg.Connection[Any]


def _links(conn: Conn) -> list[ChainLink]:
    return [
        ChainLink(topic, partition, seq, entry_id, digest)
        for topic, partition, seq, entry_id, digest in conn.execute(
            "SELECT c.topic, c.partition, c.first_seq + l.n - 1, l.entry_id::text, l.hash"
            " FROM journal_chain c"
            " CROSS JOIN LATERAL unnest(c.entry_ids, c.hashes) WITH ORDINALITY"
            "   AS l(entry_id, hash, n)"
            " ORDER BY 1, 2, 3"
        )
    ]


def verify_journal(conn: Conn) -> tuple[int, int, list[Break]]:
    """(entries checked, chains, breaks): every chain recomputed over the journal as stored."""
    links = _links(conn)
    entries = {
        row[0]: stored_line(row)
        for row in conn.execute(f"SELECT {STORED_ROW} FROM journal_entries")  # nosec B608  # SQL built from module constants; values are bound parameters
    }
    chains = len({(link.topic, link.partition) for link in links})
    return len(entries), chains, verify(links, entries, (link.entry_id for link in links))


# -- signed checkpoints ----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    id: int
    checkpoint: Checkpoint
    signed: Signed


def take_checkpoint(conn: Conn, key: Ed25519PrivateKey) -> StoredCheckpoint:
    """Sign the chain heads as they stand and keep the checkpoint (one transaction, reading the
    heads and the entry count in one snapshot)."""
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        heads = heads_of(conn.execute(
            "SELECT topic, partition, seq, hash FROM journal_chain_heads ORDER BY 1, 2"
        ).fetchall())  # fmt: skip
        (entries,) = conn.execute("SELECT count(*) FROM journal_entries").fetchone() or (0,)
        taken_at = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
    checkpoint = Checkpoint(taken_at.astimezone(UTC), int(entries), heads)
    signed = sign(checkpoint, key)
    row = conn.execute(
        "INSERT INTO audit_checkpoints (taken_at, entries, document, signature, key_fingerprint)"
        " VALUES (%s, %s, %s, %s, %s) RETURNING id",
        (checkpoint.taken_at, checkpoint.entries, signed.document, signed.signature,
         signed.key_fingerprint),
    ).fetchone()  # fmt: skip
    assert row is not None
    return StoredCheckpoint(int(row[0]), checkpoint, signed)


def checkpoints(conn: Conn) -> list[StoredCheckpoint]:
    """Every stored checkpoint, oldest first (the document is what was signed; the columns
    beside it are for listing only)."""
    rows = conn.execute(
        "SELECT id, document, signature, key_fingerprint FROM audit_checkpoints ORDER BY id"
    ).fetchall()
    return [
        StoredCheckpoint(int(i), Checkpoint.from_canonical(bytes(d)), Signed(bytes(d), bytes(s), f))
        for i, d, s, f in rows
    ]


def verify_checkpoints(conn: Conn, key: Ed25519PublicKey) -> tuple[int, list[str]]:
    """(checkpoints checked, problems): every stored checkpoint's signature under ``key``, and
    that the journal's chains still pass through every head it signed. Checkpoints taken before
    a recorded chain rebase (journal_chain_rebases, a migration that re-anchored the chains)
    are reported as superseded, not checked against the re-linked chains."""
    found = checkpoints(conn)
    if not found:
        return 0, []
    rebased = conn.execute("SELECT max(rebased_at) FROM journal_chain_rebases").fetchone()
    last_rebase = rebased[0] if rebased else None
    chains: dict[tuple[str, int], dict[int, str]] = {}
    for link_ in _links(conn):
        chains.setdefault((link_.topic, link_.partition), {})[link_.seq] = link_.hash
    problems = []
    for stored in found:
        name = f"checkpoint {stored.id} ({stored.checkpoint.taken_at.isoformat()})"
        if not signature_holds(stored.signed, key):
            problems.append(f"{name}: the signature does not hold under this public key "
                            f"(signed by key {stored.signed.key_fingerprint[:16]}...)")  # fmt: skip
            continue
        if last_rebase is not None and stored.checkpoint.taken_at < last_rebase:
            continue  # superseded by a recorded re-anchoring (docs/audit.md)
        problems += [f"{name}: {p}" for p in check_heads(stored.checkpoint, chains)]
    return len(found), problems


# -- comparing a rebuilt projection with the live one ----------------------------------------
def compare_projections(
    live: Conn, rebuilt: Conn, limit: int = 20, projections: tuple[str, ...] = ("ledger",)
) -> tuple[dict[str, int], list[str]]:
    """(rows compared per table, differences). ``ledger``: the journal entry by entry (the
    canonical line each hash covers), the chain links, the balances, the payment states and their
    history;
    ``sessions``: sessions, meter values, charging states, holds, CDRs, held reasons and tariff
    versions, every column but the processing times. At most ``limit`` differences are listed
    per table, then how many more."""
    counts: dict[str, int] = {}
    problems: list[str] = []
    compared = {t: q for p in projections for t, q in PROJECTION_TABLES[p].items()}
    for table, query in compared.items():
        a, b = _keyed(live, query), _keyed(rebuilt, query)
        counts[table] = max(len(a), len(b))
        found = [f"{table} {k}: only in the live projection" for k in sorted(a.keys() - b.keys())]
        found += [f"{table} {k}: only in the rebuilt one" for k in sorted(b.keys() - a.keys())]
        found += [f"{table} {k}: differs" for k in sorted(a.keys() & b.keys()) if a[k] != b[k]]
        problems += found[:limit]
        if len(found) > limit:
            problems.append(f"{table}: {len(found) - limit} more differences")
    return counts, problems


_COMPARED = {
    "journal": f"SELECT {STORED_ROW} FROM journal_entries",  # nosec B608  # constant
    "chain": "SELECT c.topic || '[' || c.partition || '] #' || (c.first_seq + l.n - 1), l.hash"
    " FROM journal_chain c CROSS JOIN LATERAL unnest(c.hashes) WITH ORDINALITY AS l(hash, n)",
    "balances": "SELECT account || ' ' || currency, debit, credit, balance FROM balances",
    "payments": "SELECT payment_id, state::text FROM payments",
    # Each step after an event, by its place in the payment's order; the one-row snapshots of
    # payments booked before migration 036 (no event id) are not compared.
    "payment history": "SELECT payment_id || ' #' || step, event_id, event_type, occurred_at,"
    " status, authorized, captured, refunded, hold FROM payment_history"
    " WHERE event_id IS NOT NULL",
}
_SESSIONS_COMPARED = {
    "sessions": "SELECT session_id, (to_jsonb(s) - 'updated_at')::text FROM charging_sessions s",
    "meter values": "SELECT station_id || ' ' || transaction_id || ' #' || seq_no,"
    " to_jsonb(m)::text FROM session_meter_values m",
    "charging states": "SELECT session_id || ' ' || changed_at, state FROM session_charging_states",
    "holds": "SELECT payment_id, (to_jsonb(h) - 'updated_at')::text FROM session_payment_holds h",
    "cdrs": "SELECT cdr_id, (to_jsonb(c) - 'created_at')::text FROM session_cdrs c",
    "held reasons": "SELECT session_id || ' ' || reason_code || ' ' || since,"
    " (to_jsonb(r) - 'id')::text FROM session_held_reasons r",
    "tariffs": "SELECT tariff_id || ' v' || version, to_jsonb(t)::text FROM tariff_versions t",
}
_OUTCOME = "(status = 'succeeded' OR (status = 'failed' AND action <> 'void'))"
"""An attempt whose outcome is on the log (a refused void's record is rejected, not emitted)."""
_SETTLEMENT_COMPARED = {
    # What the log holds of an attempt (processors.settlement_replay): the instruction, and
    # once it has an outcome, that outcome; the tries, their history and the raw answer not.
    "attempts": "SELECT idempotency_key, command_event_id, payment_id, action, request::text,"
    " amount_minor, currency,"
    f" CASE WHEN {_OUTCOME} THEN status ELSE 'no outcome on the log' END,"
    f" CASE WHEN {_OUTCOME} OR action <> 'authorize' THEN provider END,"
    f" CASE WHEN {_OUTCOME} OR action <> 'authorize' THEN coalesce(provider_reference, '') END,"
    f" CASE WHEN {_OUTCOME} THEN outcome_reference END, CASE WHEN {_OUTCOME} THEN fee_minor END,"
    " CASE WHEN status = 'failed' AND action <> 'void'"
    " THEN coalesce(reason_code, 'PROVIDER_ERROR') || ': ' || coalesce(detail, '') END,"
    f" CASE WHEN {_OUTCOME} THEN jsonb_path_query_array(routing, '$[*].provider')::text END"
    " FROM provider_attempts",  # nosec B608  # constant fragments
}
PROJECTION_TABLES = {
    "ledger": _COMPARED,
    "sessions": _SESSIONS_COMPARED,
    "settlement": _SETTLEMENT_COMPARED,
}
"""What ``compare_projections`` compares per projection: table name -> keyed query."""


def _keyed(conn: Conn, query: str) -> dict[str, Any]:
    rows = conn.execute(query).fetchall()
    if query.startswith(f"SELECT {STORED_ROW}"):
        return {str(r[0]): stored_line(r) for r in rows}
    return {str(r[0]): tuple(r[1:]) for r in rows}
