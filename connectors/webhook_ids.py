"""Which webhook deliveries were processed: the replay guard of the webhook receiver.

Braintree signs no timestamp, so only this store stops an old payload from being replayed; ids
are kept at least as long as the receiver accepts a notification's age (``braintree_max_age``).
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Protocol

from psycopg_pool import ConnectionPool

BRAINTREE_MAX_AGE = 3 * 24 * 3600.0
"""Oldest Braintree notification accepted (s): longer than Braintree's retries."""
RETENTION = timedelta(days=7)
"""How long delivery ids are kept: comfortably above BRAINTREE_MAX_AGE."""


class WebhookIdStore(Protocol):
    """Remembers which webhook deliveries were processed (PostgreSQL in production)."""

    def claim(self, provider: str, webhook_id: str) -> bool:
        """Atomically mark as processed; False when it already was (a replay)."""
        ...

    def release(self, provider: str, webhook_id: str) -> None:
        """Undo a claim whose processing failed, so the provider's retry is processed."""
        ...


class InMemoryWebhookIdStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: set[tuple[str, str]] = set()

    def claim(self, provider: str, webhook_id: str) -> bool:
        with self._lock:
            if (provider, webhook_id) in self._seen:
                return False
            self._seen.add((provider, webhook_id))
            return True

    def release(self, provider: str, webhook_id: str) -> None:
        with self._lock:
            self._seen.discard((provider, webhook_id))


class PostgresWebhookIdStore:
    """``WebhookIdStore`` on the ``webhook_events`` table; safe across threads and processes."""

    def __init__(self, database_url: str, retention: timedelta = RETENTION) -> None:
        if retention.total_seconds() < BRAINTREE_MAX_AGE:
            raise ValueError("webhook ids must be kept at least as long as braintree_max_age")
        self.retention = retention
        self._pool = ConnectionPool(
            database_url, min_size=1, max_size=4, kwargs={"autocommit": True}, open=True
        )

    def claim(self, provider: str, webhook_id: str) -> bool:
        with self._pool.connection() as conn:
            row = conn.execute(
                "INSERT INTO webhook_events (provider, webhook_id) VALUES (%s, %s)"
                " ON CONFLICT DO NOTHING RETURNING 1",
                (provider, webhook_id),
            ).fetchone()
        return row is not None

    def release(self, provider: str, webhook_id: str) -> None:
        with self._pool.connection() as conn:
            conn.execute(
                "DELETE FROM webhook_events WHERE provider = %s AND webhook_id = %s",
                (provider, webhook_id),
            )

    def prune(self) -> int:
        """Forget ids older than the retention; returns how many."""
        with self._pool.connection() as conn:
            cur = conn.execute(
                "DELETE FROM webhook_events WHERE received_at < now() - %s", (self.retention,)
            )
            return cur.rowcount

    def close(self) -> None:
        self._pool.close()
