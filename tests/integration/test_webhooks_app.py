"""The webhook app on the real stack: valid deliveries reach provider.events before the 200;
invalid and stale signatures get 400 and publish nothing; a replay publishes nothing twice, also
across app instances (the ids live in PostgreSQL)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import braintree
import pytest
from fastapi.testclient import TestClient

from connectors import postgres
from connectors.kafka import PublishError
from connectors.provider_registry import ProviderRegistry
from connectors.providers.sandbox import SandboxProvider
from connectors.webhooks import BraintreeWebhookKey
from entrypoints.bootstrap import App
from entrypoints.webhooks_app import create_webhooks_app, publish_and_flush
from ledger.events import PayoutPaid
from tests.integration.conftest import end_offsets
from tests.integration.test_settlement_processor import collect, create_database, drop_database

SECRET = "whsec_integration"
KEY = BraintreeWebhookKey("pub_integration", "priv_integration")


@pytest.fixture(scope="module")
def database(app: App) -> Iterator[str]:
    url = create_database(app, "evl_hooks")
    yield url
    drop_database(app, url)


def providers() -> ProviderRegistry:
    registry = ProviderRegistry.of(SandboxProvider("sandbox"))
    registry.stripe_webhook_secrets = (SECRET,)
    registry.braintree_webhook_keys = (KEY,)
    return registry


def client(app: App, database: str) -> TestClient:
    return TestClient(create_webhooks_app(app=app, providers=providers(), database_url=database))


def stripe_payout(payout_id: str, event_id: str) -> bytes:
    event = {
        "id": event_id, "type": "payout.paid", "created": int(time.time()),
        "data": {"object": {"id": payout_id, "object": "payout", "amount": 12_345,
                            "currency": "eur"}},
    }  # fmt: skip
    return json.dumps(event).encode()


def signed(payload: bytes, secret: str = SECRET, at: float | None = None) -> dict[str, str]:
    t = int(at if at is not None else time.time())
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return {"Stripe-Signature": f"t={t},v1={mac}", "Content-Type": "application/json"}


def braintree_sample(disbursement_id: str) -> dict[str, str]:
    config = braintree.Configuration(
        environment=braintree.Environment.Sandbox, merchant_id="m",
        public_key=KEY.public_key, private_key=KEY.private_key,
    )  # fmt: skip
    sample: dict[str, Any] = braintree.BraintreeGateway(config).webhook_testing.sample_notification(
        braintree.WebhookNotification.Kind.Disbursement, disbursement_id
    )
    payload = sample["bt_payload"]
    return {
        "bt_signature": sample["bt_signature"],
        "bt_payload": payload.decode() if isinstance(payload, bytes) else payload,
    }


def payouts(app: App, starts: dict[tuple[str, int], int], ids: set[str]) -> list[PayoutPaid]:
    found = collect(
        app, "provider.events", starts, lambda r: getattr(r.event, "payout_id", None) in ids, 10,
        timeout=6,
    )  # fmt: skip
    return [r.event for r in found if isinstance(r.event, PayoutPaid)]


def test_signatures_replays_and_publishing(app: App, database: str) -> None:
    tag = uuid.uuid4().hex[:10]
    good, bad, stale = f"po_good_{tag}", f"po_bad_{tag}", f"po_stale_{tag}"
    bt_id = f"dsb_{tag}"
    starts = end_offsets(app, ["provider.events"])
    web = client(app, database)

    body = stripe_payout(good, f"evt_good_{tag}")
    first = web.post("/webhooks/stripe", content=body, headers=signed(body))
    assert first.status_code == 200, first.text
    assert first.json() == {"status": "published", "events": 1}
    # Flushed before the 200: the fact is on Kafka now.
    [payout] = payouts(app, starts, {good})
    assert (payout.amount.amount_minor, payout.provider) == (12_345, "stripe")

    wrong = stripe_payout(bad, f"evt_bad_{tag}")
    assert web.post("/webhooks/stripe", content=wrong,
                    headers=signed(wrong, secret="whsec_other")).status_code == 400  # fmt: skip
    tampered = stripe_payout(bad, f"evt_bad_{tag}")
    headers = signed(tampered)
    assert web.post("/webhooks/stripe", content=tampered.replace(b"12345", b"99999"),
                    headers=headers).status_code == 400  # fmt: skip
    old = stripe_payout(stale, f"evt_stale_{tag}")
    assert web.post("/webhooks/stripe", content=old,
                    headers=signed(old, at=time.time() - 3600)).status_code == 400  # fmt: skip

    # A replay (same event id, freshly signed) is acknowledged and publishes nothing.
    replay = web.post("/webhooks/stripe", content=body, headers=signed(body))
    assert replay.status_code == 200 and replay.json()["status"] == "duplicate"
    # ...also through a second app instance: the ids are in PostgreSQL.
    other = client(app, database)
    again = other.post("/webhooks/stripe", content=body, headers=signed(body))
    assert again.json()["status"] == "duplicate"

    form = braintree_sample(bt_id)
    bt_headers = {"Content-Type": "application/x-www-form-urlencoded"}
    assert web.post("/webhooks/braintree", content=urlencode(form),
                    headers=bt_headers).json()["status"] == "published"  # fmt: skip
    assert web.post("/webhooks/braintree", content=urlencode(form),
                    headers=bt_headers).json()["status"] == "duplicate"  # fmt: skip
    forged = dict(form, bt_signature=f"{KEY.public_key}|{'0' * 40}")
    assert web.post("/webhooks/braintree", content=urlencode(forged),
                    headers=bt_headers).status_code == 400  # fmt: skip

    published = payouts(app, starts, {good, bad, stale, bt_id})
    assert sorted(p.payout_id for p in published) == sorted([good, bt_id])
    with postgres.connect(database) as conn:
        stored = conn.execute(
            "SELECT provider, count(*) FROM webhook_events GROUP BY 1 ORDER BY 1"
        ).fetchall()
    assert stored == [("braintree", 1), ("stripe", 1)]
    assert web.get("/healthz").json()["stripe_secrets"] == 1


def test_publish_failure_answers_503_and_releases_the_claim(app: App, database: str) -> None:
    real = publish_and_flush(app.publisher())
    kafka_down = [True]

    def flaky(event: Any) -> None:
        if kafka_down[0]:
            raise PublishError("kafka unreachable", retriable=True)
        real(event)

    web = TestClient(
        create_webhooks_app(app=app, providers=providers(), database_url=database, publish=flaky)
    )
    tag = uuid.uuid4().hex[:10]
    starts = end_offsets(app, ["provider.events"])
    body = stripe_payout(f"po_{tag}", f"evt_{tag}")
    assert web.post("/webhooks/stripe", content=body, headers=signed(body)).status_code == 503
    kafka_down[0] = False
    # The provider's retry goes through: the failed delivery did not keep its id.
    retried = web.post("/webhooks/stripe", content=body, headers=signed(body))
    assert retried.json()["status"] == "published"
    assert [p.payout_id for p in payouts(app, starts, {f"po_{tag}"})] == [f"po_{tag}"]
