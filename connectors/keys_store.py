"""API keys in PostgreSQL (``api_keys``) and the append-only log of administrative actions
(``admin_audit``), migration 028. Making, revoking and rotating a key writes the key and its
audit row in one transaction; the API only reads (``lookup``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import psycopg

from ledger.access import InvalidKeyRequest, KeyRecord, NewKey, Scope, generate, scopes_of

Conn = psycopg.Connection[Any]

_COLUMNS = "key_id, network_id, scopes, secret_hash, name, created_at, revoked_at"


class UnknownKey(InvalidKeyRequest):
    code = "UNKNOWN_KEY"


@dataclass(frozen=True, slots=True)
class AuditRow:
    seq: int
    at: datetime
    actor: str
    action: str
    key_id: str | None
    network_id: str | None
    detail: dict[str, Any]


def create(
    conn: Conn, network_id: str, scopes: Iterable[str], *, actor: str, name: str = ""
) -> tuple[NewKey, KeyRecord]:
    """A new key for ``network_id`` with ``scopes``; the token is in the NewKey, shown once."""
    if not network_id.strip():
        raise InvalidKeyRequest("a key belongs to one network: give --network")
    granted = scopes_of(list(scopes))
    new = generate()
    with conn.transaction():
        record = _insert(conn, new, network_id, granted, name, actor, replaces=None)
        _audit(conn, actor, "key.create", record, {"scopes": sorted(granted), "name": name})
    return new, record


def lookup(conn: Conn, key_id: str) -> KeyRecord | None:
    """The stored key ``key_id`` (revoked or not), or None."""
    row = conn.execute(f"SELECT {_COLUMNS} FROM api_keys WHERE key_id = %s", (key_id,)).fetchone()  # nosec B608  # constant column list; the id is a bound parameter
    return _record(row) if row is not None else None


def keys(conn: Conn, network_id: str | None = None) -> list[KeyRecord]:
    """Every key (of one network), oldest first."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM api_keys WHERE %s::text IS NULL OR network_id = %s"  # nosec B608  # constant column list
        " ORDER BY created_at, key_id",
        (network_id, network_id),
    ).fetchall()
    return [_record(r) for r in rows]


def revoke(conn: Conn, key_id: str, *, actor: str, reason: str) -> KeyRecord:
    """Revoke ``key_id`` from now on. Raises UnknownKey; revoking twice changes nothing."""
    with conn.transaction():
        record = _locked(conn, key_id)
        if record.revoked_at is None:
            conn.execute(
                "UPDATE api_keys SET revoked_at = now(), revoked_by = %s, revoke_reason = %s"
                " WHERE key_id = %s",
                (actor, reason, key_id),
            )
            _audit(conn, actor, "key.revoke", record, {"reason": reason})
        found = lookup(conn, key_id)
    assert found is not None
    return found


def rotate(conn: Conn, key_id: str, *, actor: str) -> tuple[NewKey, KeyRecord]:
    """A new key with the network, scopes and name of ``key_id``, which is revoked in the same
    transaction (deploy the new key, then rotate; or make a second key first for an overlap).
    Raises UnknownKey, or InvalidKeyRequest for a revoked key."""
    with conn.transaction():
        old = _locked(conn, key_id)
        if old.revoked_at is not None:
            raise InvalidKeyRequest(f"key {key_id} is revoked; create a new one", key_id=key_id)
        new = generate()
        record = _insert(conn, new, old.network_id, old.scopes, old.name, actor, replaces=key_id)
        conn.execute(
            "UPDATE api_keys SET revoked_at = now(), revoked_by = %s, revoke_reason = %s"
            " WHERE key_id = %s",
            (actor, f"rotated to {new.key_id}", key_id),
        )
        _audit(conn, actor, "key.rotate", record, {"replaces": key_id})
    return new, record


def audit_log(conn: Conn, limit: int = 100) -> list[AuditRow]:
    """The latest administrative actions, newest first."""
    rows = conn.execute(
        "SELECT seq, at, actor, action, key_id, network_id, detail FROM admin_audit"
        " ORDER BY seq DESC LIMIT %s",
        (limit,),
    ).fetchall()
    return [AuditRow(*r) for r in rows]


def _insert(
    conn: Conn,
    new: NewKey,
    network_id: str,
    scopes: frozenset[Scope],
    name: str,
    actor: str,
    *,
    replaces: str | None,
) -> KeyRecord:
    row = conn.execute(
        "INSERT INTO api_keys (key_id, network_id, scopes, secret_hash, name, created_by,"
        f" replaces) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}",  # nosec B608  # constant column list
        (new.key_id, network_id, sorted(scopes), new.secret_hash, name, actor, replaces),
    ).fetchone()
    assert row is not None
    return _record(row)


def _locked(conn: Conn, key_id: str) -> KeyRecord:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM api_keys WHERE key_id = %s FOR UPDATE",  # nosec B608  # constant column list
        (key_id,),
    ).fetchone()
    if row is None:
        raise UnknownKey(f"no API key {key_id!r}", key_id=key_id)
    return _record(row)


def _audit(conn: Conn, actor: str, action: str, key: KeyRecord, detail: dict[str, Any]) -> None:
    conn.execute(
        "INSERT INTO admin_audit (actor, action, key_id, network_id, detail)"
        " VALUES (%s, %s, %s, %s, %s::jsonb)",
        (actor, action, key.key_id, key.network_id, orjson.dumps(detail).decode()),
    )


def _record(row: Any) -> KeyRecord:
    key_id, network_id, scopes, secret_hash, name, created_at, revoked_at = row
    return KeyRecord(key_id, network_id, frozenset(Scope(s) for s in scopes), bytes(secret_hash),
                     name, created_at, revoked_at)  # fmt: skip
