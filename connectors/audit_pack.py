"""Audit packs: what an auditor takes away and verifies offline (docs/audit.md, "Audit packs").

``export`` writes, for entries dated in a range (optionally one network), CSV and Parquet of the
journal (one row per posting), the chain links of those entries with the exact bytes each hash
covers, the balances at the end of the range, the CDRs, the settlement attempts and the
rejections; then ``manifest.json``: every file's SHA-256, rows and columns, the range, and a
signed checkpoint of the chain heads, the whole manifest signed with the Ed25519 audit key.

``verify`` needs only the pack and the public key, no database: the manifest's signature, every
file's hash and row count, and every chain link recomputed from the bytes it covers (SHA-256 over
the previous hash and the entry's canonical line), consecutive links joined.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from connectors import audit, signing
from connectors.ledger_store import STORED_ROW, stored_line
from ledger.accounting.chain import link
from ledger.errors import LedgerError

Conn = psycopg.Connection[Any]
MANIFEST = "manifest.json"
VERSION = 1


class PackError(LedgerError):
    """An export that cannot be written (an empty or reversed range, an existing directory)."""

    code = "AUDIT_PACK_INVALID"


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]


@dataclass(frozen=True, slots=True)
class Written:
    directory: Path
    files: int
    entries: int
    postings: int


def export(
    conn: Conn,
    out: Path,
    since: date,
    until: date,
    key: Ed25519PrivateKey,
    *,
    network: str | None = None,
    zone: str = "UTC",
) -> Written:
    """Write the pack for entries dated ``since``..``until`` (inclusive days in ``zone``)."""
    if until < since:
        raise PackError(f"the range ends ({until}) before it starts ({since})")
    if out.exists() and any(out.iterdir()):
        raise PackError(f"{out} exists and is not empty: a pack goes into a new directory")
    tz = ZoneInfo(zone)
    starts = datetime.combine(since, time(0), tz)
    ends = datetime.combine(until + timedelta(days=1), time(0), tz)
    tables = _tables(conn, starts, ends, network)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for table in tables:
        for suffix, data in ((".csv", _csv(table)), (".parquet", _parquet(table))):
            path = out / f"{table.name}{suffix}"
            path.write_bytes(data)
            files.append({"name": path.name, "sha256": hashlib.sha256(data).hexdigest(),
                          "rows": len(table.rows), "columns": list(table.columns)})  # fmt: skip
    stored = audit.take_checkpoint(conn, key)
    body = {
        "pack_version": VERSION,
        "range": {"from": since.isoformat(), "to": until.isoformat(), "time_zone": zone,
                  "starts": starts.isoformat(), "ends": ends.isoformat()},
        "network": network,
        "created_at": datetime.now(UTC).isoformat(),
        "files": files,
        "checkpoint": {"id": stored.id, "document": stored.signed.document.decode(),
                       "signature": stored.signed.signature.hex()},
    }  # fmt: skip
    canonical = _canonical(body)
    manifest = {
        "body": body,
        "signature": key.sign(canonical).hex(),
        "key_fingerprint": signing.fingerprint(key.public_key()),
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    journal = next(t for t in tables if t.name == "journal")
    chain = next(t for t in tables if t.name == "journal_chain")
    return Written(out, len(files) + 1, len(chain.rows), len(journal.rows))


def verify(directory: Path, key: Ed25519PublicKey) -> list[str]:
    """Every problem of the pack in ``directory`` (empty: it verifies), checked with the files
    and the public key alone."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
        body, signature = manifest["body"], bytes.fromhex(manifest["signature"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return [f"{MANIFEST}: unreadable ({type(exc).__name__}: {exc})"]
    problems = []
    try:
        key.verify(signature, _canonical(body))
    except Exception:  # InvalidSignature, or a malformed signature: the same verdict
        problems.append(f"{MANIFEST}: the signature does not hold under this public key "
                        f"(signed by {manifest.get('key_fingerprint', '?')[:16]}...)")  # fmt: skip
    cp = body.get("checkpoint", {})
    signed = signing.Signed(cp.get("document", "").encode(),
                                bytes.fromhex(cp.get("signature", "")), "")  # fmt: skip
    if not signing.signature_holds(signed, key):
        problems.append(f"{MANIFEST}: the embedded checkpoint's signature does not hold")
    for entry in body.get("files", []):
        path = directory / entry["name"]
        try:
            data = path.read_bytes()
        except OSError:
            problems.append(f"{entry['name']}: missing")
            continue
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            problems.append(f"{entry['name']}: its SHA-256 is not the one the manifest signed "
                            "(the file was changed)")  # fmt: skip
    if not problems:
        problems += _chain_problems(directory / "journal_chain.csv")
    return problems


def _chain_problems(path: Path) -> list[str]:
    """Each link recomputed from the bytes it covers; consecutive links joined."""
    problems = []
    previous: dict[tuple[str, int], tuple[int, str]] = {}
    with path.open(newline="") as f:
        rows = sorted(csv.DictReader(f), key=lambda r: (r["chain_topic"],
                      int(r["chain_partition"]), int(r["chain_seq"])))  # fmt: skip
    for r in rows:
        chain, seq = (r["chain_topic"], int(r["chain_partition"])), int(r["chain_seq"])
        where = f"entry {r['entry_id']} ({chain[0]}[{chain[1]}] #{seq})"
        if link(r["previous_hash"], r["canonical_line"].encode()) != r["hash"]:
            problems.append(f"{where}: its hash is not SHA-256 of the previous hash and its line")
        before = previous.get(chain)
        if before is not None and before[0] == seq - 1 and before[1] != r["previous_hash"]:
            problems.append(f"{where}: its previous hash is not entry #{seq - 1}'s hash")
        previous[chain] = (seq, r["hash"])
    return problems


def _tables(conn: Conn, starts: datetime, ends: datetime, network: str | None) -> list[Table]:
    span = {"starts": starts, "ends": ends, "network": network}
    in_range = (
        "e.occurred_at >= %(starts)s AND e.occurred_at < %(ends)s"
        " AND (%(network)s::text IS NULL OR e.network_id = %(network)s)"
    )
    journal = _query(conn, "journal", (
        "entry_id", "event_id", "event_type", "kind", "occurred_at", "payment_id", "network_id",
        "provider", "ordinal", "account", "currency", "amount_minor", "station", "cdr_id"),
        f"""SELECT e.entry_id::text, e.event_id, e.event_type, e.kind, e.occurred_at,
                   e.payment_id, e.network_id, e.provider, p.ordinal, p.account,
                   p.currency::text, p.amount_minor, p.station, r.cdr_id
            FROM journal_entries e JOIN postings p USING (entry_id)
            LEFT JOIN entry_references r ON r.entry_id = e.entry_id
            WHERE {in_range} ORDER BY e.occurred_at, e.entry_id, p.ordinal""",  # nosec B608  # constant filter
        span)  # fmt: skip
    links = conn.execute(
        f"""SELECT e.entry_id::text, c.topic, c.partition, c.first_seq + l.n - 1, l.hash,
                   CASE WHEN l.n > 1 THEN c.hashes[l.n - 1] ELSE coalesce(
                       (SELECT p.hashes[cardinality(p.hashes)] FROM journal_chain p
                        WHERE p.topic = c.topic AND p.partition = c.partition
                          AND p.first_seq < c.first_seq ORDER BY p.first_seq DESC LIMIT 1),
                       %(genesis)s) END
            FROM journal_chain c
            CROSS JOIN LATERAL unnest(c.entry_ids, c.hashes) WITH ORDINALITY AS l(entry_id, hash, n)
            JOIN journal_entries e ON e.entry_id = l.entry_id
            WHERE {in_range} ORDER BY 2, 3, 4""",  # nosec B608  # constant filter
        {**span, "genesis": "0" * 64},
    ).fetchall()  # fmt: skip
    lines = {
        row[0]: stored_line(row).decode()
        for row in conn.execute(
            f"SELECT {STORED_ROW} FROM journal_entries e WHERE {in_range}",  # nosec B608
            span,
        )
    }
    chain = Table("journal_chain", ("entry_id", "chain_topic", "chain_partition", "chain_seq",
                                    "previous_hash", "hash", "canonical_line"),
                  [(e, t, p, s, prev, h, lines[e]) for e, t, p, s, h, prev in links])  # fmt: skip
    balances = _query(conn, "balances", ("account", "currency", "debit_minor", "credit_minor",
                                         "balance_minor"),
        "SELECT account, currency, debit, credit, balance FROM balances_of(%(network)s, %(ends)s)"
        " ORDER BY 1, 2", span)  # fmt: skip
    cdrs = _query(conn, "cdrs", ("cdr_id", "session_id", "network_id", "kind", "event_id",
                                 "tariff_id", "tariff_version", "currency", "total_excl_vat_minor",
                                 "total_incl_vat_minor", "lines", "created_at"),
        """SELECT c.cdr_id, c.session_id, s.network_id, c.kind, c.event_id, c.tariff_id,
                  c.tariff_version, c.currency, c.total_excl_vat, c.total_incl_vat,
                  c.lines::text, c.created_at
           FROM session_cdrs c LEFT JOIN charging_sessions s USING (session_id)
           WHERE c.created_at >= %(starts)s AND c.created_at < %(ends)s
             AND (%(network)s::text IS NULL OR s.network_id = %(network)s)
           ORDER BY c.created_at, c.cdr_id""", span)  # fmt: skip
    settlements = _query(conn, "settlements", ("idempotency_key", "command_event_id",
                         "payment_id", "provider", "action", "status", "reason_code",
                         "provider_reference", "outcome_reference", "fee_minor", "created_at",
                         "updated_at"),
        """SELECT a.idempotency_key, a.command_event_id, a.payment_id, a.provider, a.action,
                  a.status, a.reason_code, a.provider_reference, a.outcome_reference,
                  a.fee_minor, a.created_at, a.updated_at
           FROM provider_attempts a LEFT JOIN payments p USING (payment_id)
           WHERE a.created_at >= %(starts)s AND a.created_at < %(ends)s
             AND (%(network)s::text IS NULL OR p.network_id = %(network)s)
           ORDER BY a.created_at, a.idempotency_key""", span)  # fmt: skip
    rejections = _query(conn, "rejections", ("consumer_group", "topic", "partition", "offset",
                        "event_id", "reason_code", "detail", "rejected_at"),
        """SELECT consumer_group, topic, partition, "offset", event_id, reason_code, detail,
                  rejected_at FROM rejections
           WHERE rejected_at >= %(starts)s AND rejected_at < %(ends)s
             AND %(network)s::text IS NULL
           ORDER BY rejected_at, consumer_group, topic, partition, "offset\"""", span)  # fmt: skip
    return [journal, chain, balances, cdrs, settlements, rejections]


def _query(
    conn: Conn, name: str, columns: Sequence[str], sql: str, params: dict[str, Any]
) -> Table:
    return Table(name, tuple(columns), [tuple(r) for r in conn.execute(sql, params).fetchall()])


def _cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return value


def _csv(table: Table) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(table.columns)
    writer.writerows([[_cell(v) for v in row] for row in table.rows])
    return buffer.getvalue().encode()


def _parquet(table: Table) -> bytes:
    columns = list(zip(*table.rows, strict=True)) if table.rows else [() for _ in table.columns]
    arrays = {}
    for name, values in zip(table.columns, columns, strict=True):
        cells = [_cell(v) for v in values]
        kind = pa.int64() if name.endswith(("_minor", "ordinal", "partition", "seq", "offset",
                                            "version")) else pa.string()  # fmt: skip
        arrays[name] = pa.array(
            [c if c is None or kind == pa.int64() else str(c) for c in cells], type=kind
        )
    sink = io.BytesIO()
    pq.write_table(pa.table(arrays), sink)
    return sink.getvalue()


def _canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
