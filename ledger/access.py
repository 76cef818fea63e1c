"""API keys: who may call evledger's HTTP endpoints, for which network, to do what.

A key is ``evl_<key id>_<secret>``: the key id (12 hex characters) is public and names the key in
lists and logs; the secret is 32 random bytes (256 bits, ``secrets``) in URL-safe base64. Only a
SHA-256 of the secret is stored: with that much entropy a slow password hash adds nothing, and a
leaked table reveals no key. The whole key is shown once, when it is made.

Every key belongs to **one network** (tenant) and holds **scopes**: what it may do. Whoever
holds a key sees and writes only its network's data, whatever the scope. Pure: no SQL, no HTTP
(``connectors.keys_store`` keeps the keys, ``entrypoints.api`` asks them).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from base64 import urlsafe_b64encode
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from ledger.errors import LedgerError

PREFIX = "evl"
SECRET_BYTES = 32
_KEY = re.compile(r"evl_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")


class Scope(StrEnum):
    """What a key may do."""

    PUBLISH = "publish"
    """publish events (HTTP ingest)"""
    FINANCE_READ = "finance:read"
    """read balances, revenue, VAT, payments and sessions (the finance API)"""
    RISK = "risk"
    """read fraud scores and alerts, block and unblock tokens"""
    ADMIN = "admin"
    """operational reads across consumer groups (processing counts)"""
    WEBHOOK = "webhook"
    """deliver provider webhooks"""


class Unauthenticated(LedgerError):
    """No key, a malformed key, an unknown key, a wrong secret or a revoked key: 401. The detail
    never says which, so a caller cannot probe for valid key ids."""

    code = "UNAUTHENTICATED"


class Forbidden(LedgerError):
    """A valid key without the scope the endpoint needs: 403."""

    code = "FORBIDDEN_SCOPE"


class InvalidKeyRequest(LedgerError):
    """A key asked for with no scope, an unknown scope or no network."""

    code = "INVALID_KEY_REQUEST"


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key just made: ``token`` is shown once and never stored."""

    key_id: str
    token: str
    secret_hash: bytes


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A key as stored: no secret, only its hash."""

    key_id: str
    network_id: str
    scopes: frozenset[Scope]
    secret_hash: bytes
    name: str
    created_at: datetime
    revoked_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key's id, its network and its scopes."""

    key_id: str
    network_id: str
    scopes: frozenset[Scope]


def generate() -> NewKey:
    """A fresh key with 256 bits of secret."""
    key_id = secrets.token_hex(6)
    secret = urlsafe_b64encode(secrets.token_bytes(SECRET_BYTES)).rstrip(b"=").decode()
    return NewKey(key_id, f"{PREFIX}_{key_id}_{secret}", _hash(secret))


def parse(token: str) -> tuple[str, str]:
    """(key id, secret) of a presented key. Raises Unauthenticated for anything else."""
    match = _KEY.fullmatch(token.strip())
    if match is None:
        raise Unauthenticated("an API key is required: Authorization: Bearer evl_<id>_<secret>")
    return match.group(1), match.group(2)


def scopes_of(names: Collection[str]) -> frozenset[Scope]:
    """The scopes named. Raises InvalidKeyRequest for none or an unknown one."""
    known = {s.value: s for s in Scope}
    unknown = sorted(n for n in names if n not in known)
    if unknown:
        raise InvalidKeyRequest(
            f"unknown scope {', '.join(unknown)}; scopes are {', '.join(known)}"
        )
    if not names:
        raise InvalidKeyRequest(f"a key needs at least one scope: {', '.join(known)}")
    return frozenset(known[n] for n in names)


def authenticate(token: str, record: KeyRecord | None) -> Principal:
    """The caller a presented ``token`` names, checked against the stored ``record`` of its key
    id (None: no such key). Raises Unauthenticated, in constant time for a wrong secret."""
    _, secret = parse(token)
    if record is None or not hmac.compare_digest(_hash(secret), record.secret_hash):
        raise Unauthenticated("the API key is not valid")
    if record.revoked_at is not None:
        raise Unauthenticated("the API key is not valid")
    return Principal(record.key_id, record.network_id, record.scopes)


def require(principal: Principal, scope: Scope) -> Principal:
    """``principal`` if it holds ``scope``; raises Forbidden otherwise."""
    if scope not in principal.scopes:
        held = ", ".join(sorted(principal.scopes)) or "none"
        raise Forbidden(
            f"this endpoint needs the scope {scope.value}; the key holds {held}",
            key_id=principal.key_id,
        )
    return principal


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()
