"""The webhook receiver: a FastAPI app around ``connectors.webhooks`` for Stripe and Braintree.

Verified, normalized facts are published to ``provider.events`` and flushed before the 200, so
an acknowledged webhook is on Kafka. Replays are refused with the delivery ids kept in PostgreSQL
(``webhook_events``) for at least ``braintree_max_age``: Braintree signs no timestamp, so only
the id store stops an old payload from being replayed inside that window.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from connectors import metrics
from connectors.kafka import EventPublisher
from connectors.provider_registry import ProviderRegistry, load_providers
from connectors.settings import Settings
from connectors.webhook_ids import BRAINTREE_MAX_AGE, PostgresWebhookIdStore
from connectors.webhooks import (
    MAX_BODY_BYTES,
    ProviderEvent,
    WebhookHandler,
    WebhookOutcome,
    WebhookPayloadError,
    WebhookSignatureError,
    braintree_challenge_response,
)
from entrypoints import http_errors, observe
from entrypoints.bootstrap import App, bootstrap
from entrypoints.http_errors import HttpErrorCode, error_response, read_limited
from ledger.errors import LedgerError, ValidationError

log = logging.getLogger("evledger.webhooks")


def webhook_limits(settings: Settings) -> tuple[int, int]:
    """``(max_body_bytes, max_json_depth)`` of the receiver: ``EVLEDGER_WEBHOOK_MAX_BODY_BYTES``
    and ``EVLEDGER_WEBHOOK_MAX_JSON_DEPTH`` (validated positive when the settings are read)."""
    return settings.webhook_max_body_bytes, settings.webhook_max_json_depth


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
    max_body_bytes: int | None = None,
    max_json_depth: int | None = None,
) -> FastAPI:
    """The webhook FastAPI app: ``POST /webhooks/stripe``, ``POST|GET /webhooks/braintree``,
    ``GET /healthz``. Secrets come from the provider registry (file or STRIPE_WEBHOOK_SECRET /
    BRAINTREE_* variables). ``publish`` defaults to publish-and-flush on the app's publisher.
    Limits not given come from the settings (``webhook_limits``)."""
    app = app or bootstrap(settings)
    body_limit, depth_limit = webhook_limits(app.settings)
    max_body_bytes = body_limit if max_body_bytes is None else max_body_bytes
    max_json_depth = depth_limit if max_json_depth is None else max_json_depth
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
        max_future_skew_seconds=app.settings.max_future_skew_seconds,
        max_json_depth=max_json_depth,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        store.close()

    api = FastAPI(title="evledger webhooks", docs_url=None, redoc_url=None, lifespan=lifespan)
    http_errors.install(api)
    api.include_router(build_webhook_router(handler, max_body_bytes=max_body_bytes))
    api.include_router(
        observe.telemetry_router(observe.url_probe(database_url or app.database_url))
    )
    api.state.webhook_store = store

    @api.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {
            "status": "ok",
            "stripe_secrets": len(providers.stripe_webhook_secrets),
            "braintree_keys": len(providers.braintree_webhook_keys),
        }

    return api


def build_webhook_router(
    handler: WebhookHandler, *, prefix: str = "/webhooks", max_body_bytes: int = MAX_BODY_BYTES
) -> APIRouter:
    """Routes ``POST {prefix}/stripe`` and ``POST|GET {prefix}/braintree``.

    The body is read only up to ``max_body_bytes`` (413 beyond it, before reading when the
    Content-Length says so). Verifying, parsing and publishing run in a worker thread, never on
    the event loop, so one large request does not stall the health check. Permanent failures
    answer 4xx (resending the same body cannot help; Stripe and Braintree retry any non-2xx all
    the same, docs/providers.md): 400 for a bad signature or payload (one that breaks an input
    rule included), 413 for a body too large; nothing is published. 200 for published, ignored
    and duplicate deliveries; 503 when Kafka did not take the events, for whatever reason (the
    delivery claim is released: the provider's retry is processed). Errors use the one JSON
    shape of ``entrypoints.http_errors``.
    """
    router = APIRouter(prefix=prefix)

    def answer(provider: str, request: Request, run: Callable[[], WebhookOutcome]) -> Response:
        deliveries = metrics.WEBHOOK_DELIVERIES
        try:
            outcome = run()
        except (WebhookSignatureError, ValidationError) as exc:
            deliveries.labels(provider, exc.code).inc()
            return error_response(400, exc.code, exc.message, request)
        except LedgerError as exc:
            # Kafka refusing a valid fact, even for good (a missing topic, an ACL), is ours to
            # fix: 503 keeps the provider retrying (Stripe for 3 days) instead of losing it.
            deliveries.labels(provider, exc.code).inc()
            level = logging.WARNING if exc.retriable else logging.ERROR
            log.log(level, "webhook not published (%s); answering 503 so the provider retries", exc)
            return error_response(503, exc.code, exc.message, request)
        deliveries.labels(provider, outcome.status).inc()
        return JSONResponse({"status": outcome.status, "events": len(outcome.events)})

    @router.post("/stripe")
    async def stripe_webhook(request: Request) -> Response:
        body = await read_limited(request, max_body_bytes)
        if body is None:
            return too_large(request, max_body_bytes)
        signature = request.headers.get("stripe-signature")
        return await run_in_threadpool(
            answer, "stripe", request, lambda: handler.handle_stripe(body, signature)
        )

    @router.post("/braintree")
    async def braintree_webhook(request: Request) -> Response:
        body = await read_limited(request, max_body_bytes)
        if body is None:
            return too_large(request, max_body_bytes)

        def handle() -> WebhookOutcome:
            form = parse_qs(body.decode("utf-8", errors="replace"))
            signature = next(iter(form.get("bt_signature", [])), None)
            payload = next(iter(form.get("bt_payload", [])), None)
            return handler.handle_braintree(signature, payload)

        return await run_in_threadpool(answer, "braintree", request, handle)

    @router.get("/braintree")
    async def braintree_challenge(request: Request, bt_challenge: str = "") -> Response:
        key = handler.challenge_key
        if key is None:
            return error_response(404, "UNKNOWN_PROVIDER", "no Braintree key configured", request)
        try:
            text = braintree_challenge_response(bt_challenge, key)
        except WebhookPayloadError as exc:
            return error_response(400, exc.code, exc.message, request)
        return PlainTextResponse(text)

    return router


def too_large(request: Request, limit: int) -> Response:
    detail = f"body larger than {limit} bytes; provider webhooks are a few KB"
    return error_response(413, HttpErrorCode.BODY_TOO_LARGE, detail, request)
