"""API keys on HTTP: the FastAPI dependency every keyed endpoint uses (``ledger.access``).

The key is read from ``Authorization: Bearer evl_...`` or ``X-API-Key``; a missing or malformed
key is refused before anything reaches the database (401), then the key is looked up (only its
12-hex-character id is bound to SQL) and its scope checked (403). Both are declared as security
schemes, so the OpenAPI shows them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Depends, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from connectors import keys_store
from ledger import access
from ledger.access import Principal, Scope

Bearer = Security(
    HTTPBearer(auto_error=False, description="Authorization: Bearer evl_<id>_<secret>")
)
ApiKey = Security(APIKeyHeader(name="X-API-Key", auto_error=False, description="evl_<id>_<secret>"))

STATUSES = {access.Unauthenticated: 401, access.Forbidden: 403}
"""The statuses of the errors a keyed endpoint may raise (``http_errors.install`` overrides)."""


def caller(scope: Scope, db: Any, ready: Callable[[Any], Any]) -> Any:
    """The dependency admitting a request whose key holds ``scope``: ``db`` is the dependency
    giving a connection, ``ready(conn)`` the connection once it may be queried (the API's schema
    check). The endpoint receives the caller's ``Principal``."""

    def admit(
        bearer: HTTPAuthorizationCredentials | None = Bearer,
        header: str | None = ApiKey,
        conn: Any = db,
    ) -> Principal:
        token = header or (bearer.credentials if bearer is not None else "")
        key_id, _ = access.parse(token)
        record = keys_store.lookup(ready(conn), key_id)
        return access.require(access.authenticate(token, record), scope)

    return Depends(admit)
