"""The webhook receiver: a FastAPI app around ``connectors.webhooks`` for Stripe and Braintree.

Verified, normalized facts are published to ``provider.events`` and flushed before the 200, so
an acknowledged webhook is on Kafka. Replays are refused with the delivery ids kept in PostgreSQL
(``webhook_events``) for at least ``braintree_max_age``: Braintree signs no timestamp, so only
the id store stops an old payload from being replayed inside that window.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from fastapi import FastAPI
from psycopg_pool import ConnectionPool

from connectors.bootstrap import App, bootstrap
from connectors.kafka import EventPublisher
from connectors.provider_registry import ProviderRegistry, load_providers
from connectors.settings import Settings
from connectors.webhooks import ProviderEvent, WebhookHandler, build_webhook_router

BRAINTREE_MAX_AGE = 3 * 24 * 3600.0
RETENTION = timedelta(days=7)  # comfortably above BRAINTREE_MAX_AGE


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


def publish_and_flush(publisher: EventPublisher) -> Callable[[ProviderEvent], None]:
    """Publish one fact and wait for Kafka's ack, so a 200 means it is stored.
    Raises PublishError (the router answers 503 and releases the claim)."""

    def publish(event: ProviderEvent) -> None:
        publisher.publish(event)
        publisher.flush(timeout=15.0)

    return publish


def create_webhooks_app(
    settings: Settings | None = None,
    *,
    app: App | None = None,
    providers: ProviderRegistry | None = None,
    database_url: str | None = None,
    clock: Callable[[], float] = time.time,
    tolerance: float = 300.0,
    publish: Callable[[ProviderEvent], None] | None = None,
) -> FastAPI:
    """The webhook FastAPI app: ``POST /webhooks/stripe``, ``POST|GET /webhooks/braintree``,
    ``GET /healthz``. Secrets come from the provider registry (file or STRIPE_WEBHOOK_SECRET /
    BRAINTREE_* variables). ``publish`` defaults to publish-and-flush on the app's publisher."""
    app = app or bootstrap(settings)
    providers = providers or load_providers()
    store = PostgresWebhookIdStore(database_url or app.database_url)
    store.prune()
    handler = WebhookHandler(
        network_id=app.settings.network_id,
        publish=publish or publish_and_flush(app.publisher()),
        store=store,
        stripe_secrets=providers.stripe_webhook_secrets,
        braintree_keys=providers.braintree_webhook_keys,
        clock=clock,
        tolerance=tolerance,
        braintree_max_age=BRAINTREE_MAX_AGE,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        store.close()

    api = FastAPI(title="evledger webhooks", docs_url=None, redoc_url=None, lifespan=lifespan)
    api.include_router(build_webhook_router(handler))
    api.state.webhook_store = store

    @api.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {
            "status": "ok",
            "stripe_secrets": len(providers.stripe_webhook_secrets),
            "braintree_keys": len(providers.braintree_webhook_keys),
        }

    return api
