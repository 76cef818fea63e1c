"""Webhook verification (Stripe, Braintree), replay protection and normalization to events."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any
from urllib.parse import urlencode

import braintree
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from connectors.kafka import PublishError
from connectors.webhook_ids import InMemoryWebhookIdStore
from connectors.webhooks import (
    BraintreeWebhookKey,
    ProviderEvent,
    WebhookHandler,
    WebhookSignatureError,
    braintree_challenge_response,
    normalize_stripe_event,
    verify_braintree_signature,
    verify_stripe_signature,
)
from entrypoints import http_errors
from entrypoints.webhooks_app import build_webhook_router
from ledger.events import ExternalRefundReported, PayoutPaid, ProviderDisputeUpdated
from ledger.money import Money

NOW = 1_760_000_000.0
SECRET = "whsec_current"
OLD_SECRET = "whsec_previous"


def stripe_header(payload: bytes, *secrets: str, t: float = NOW) -> str:
    signed = f"{int(t)}.".encode() + payload
    parts = [f"t={int(t)}"]
    parts += [f"v1={hmac.new(s.encode(), signed, hashlib.sha256).hexdigest()}" for s in secrets]
    return ",".join(parts)


def stripe_event(kind: str, obj: dict[str, Any], event_id: str = "evt_1") -> bytes:
    body = {"id": event_id, "type": kind, "created": int(NOW), "data": {"object": obj}}
    return json.dumps(body).encode()


PAYOUT = stripe_event(
    "payout.paid", {"id": "po_1", "object": "payout", "amount": 98_765, "currency": "eur"}
)


class Published:
    def __init__(self) -> None:
        self.events: list[ProviderEvent] = []

    def __call__(self, event: ProviderEvent) -> None:
        self.events.append(event)


def handler(published: Published, **kw: Any) -> WebhookHandler:
    defaults: dict[str, Any] = {
        "network_id": "net-1",
        "publish": published,
        "store": InMemoryWebhookIdStore(),
        "stripe_secrets": [SECRET],
        "clock": lambda: NOW,
    }
    return WebhookHandler(**{**defaults, **kw})


# ---------------------------------------------------------------------------- Stripe
def test_valid_stripe_payout_is_published_as_payout_paid() -> None:
    published = Published()
    outcome = handler(published).handle_stripe(PAYOUT, stripe_header(PAYOUT, SECRET))
    assert outcome.status == "published"
    [event] = published.events
    assert isinstance(event, PayoutPaid)
    assert (event.payout_id, event.amount) == ("po_1", Money(98_765, "EUR"))
    assert event.envelope.network_id == "net-1"


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "t=notanumber,v1=abc",
        f"t={int(NOW)}",
        stripe_header(PAYOUT, "whsec_wrong"),
        stripe_header(PAYOUT + b" ", SECRET),  # body changed after signing
    ],
)
def test_invalid_stripe_signature_publishes_nothing(header: str | None) -> None:
    published = Published()
    with pytest.raises(WebhookSignatureError):
        handler(published).handle_stripe(PAYOUT, header)
    assert published.events == []


@pytest.mark.parametrize("skew", [-301.0, 301.0])
def test_stale_or_future_stripe_timestamp_is_refused(skew: float) -> None:
    with pytest.raises(WebhookSignatureError):
        verify_stripe_signature(
            PAYOUT, stripe_header(PAYOUT, SECRET, t=NOW + skew), [SECRET], now=NOW
        )
    assert verify_stripe_signature(
        PAYOUT, stripe_header(PAYOUT, SECRET, t=NOW - 299), [SECRET], now=NOW
    ) == int(NOW - 299)


def test_secret_rotation_accepts_old_and_new_and_several_v1() -> None:
    both = [SECRET, OLD_SECRET]
    verify_stripe_signature(PAYOUT, stripe_header(PAYOUT, OLD_SECRET), both, now=NOW)
    verify_stripe_signature(PAYOUT, stripe_header(PAYOUT, "whsec_x", SECRET), both, now=NOW)
    with pytest.raises(WebhookSignatureError):  # once the old secret is retired
        verify_stripe_signature(PAYOUT, stripe_header(PAYOUT, OLD_SECRET), [SECRET], now=NOW)


def test_replayed_stripe_event_has_no_second_effect() -> None:
    published = Published()
    h = handler(published)
    header = stripe_header(PAYOUT, SECRET)
    assert h.handle_stripe(PAYOUT, header).status == "published"
    assert h.handle_stripe(PAYOUT, header).status == "duplicate"
    assert len(published.events) == 1


def test_dispute_events_become_provider_dispute_updated() -> None:
    dispute = {"id": "dp_1", "charge": "ch_1", "amount": 5_000, "currency": "eur",
               "status": "needs_response"}  # fmt: skip
    opened = normalize_stripe_event(json.loads(stripe_event("charge.dispute.created", dispute)),
                                    "net-1")  # fmt: skip
    closed = normalize_stripe_event(
        json.loads(stripe_event("charge.dispute.closed", {**dispute, "status": "won"}, "evt_2")),
        "net-1",
    )
    assert [type(e) for e in opened + closed] == [ProviderDisputeUpdated] * 2
    first, last = opened[0], closed[0]
    assert isinstance(first, ProviderDisputeUpdated) and isinstance(last, ProviderDisputeUpdated)
    assert first.provider_reference == "ch_1"
    assert (first.dispute_id, first.status) == ("dp_1", "needs_response")
    assert last.status == "won"
    assert first.envelope.event_id != last.envelope.event_id


def test_only_refunds_made_outside_evledger_are_reported() -> None:
    external = {"id": "re_ext", "amount": 700, "currency": "eur", "metadata": {}}
    ours = {"id": "re_ours", "amount": 300, "currency": "eur",
            "metadata": {"evledger_refund_id": "ref-1"}}  # fmt: skip
    charge = {"id": "ch_9", "refunds": {"data": [external, ours]}}
    events = normalize_stripe_event(json.loads(stripe_event("charge.refunded", charge)), "net-1")
    [event] = events
    assert isinstance(event, ExternalRefundReported)
    assert (event.provider_reference, event.refund_reference, event.amount) == (
        "ch_9", "re_ext", Money(700, "EUR"))  # fmt: skip
    # The same refund announced by refund.created carries the same event id: deduplicated.
    again = normalize_stripe_event(
        json.loads(stripe_event("refund.created", {**external, "charge": "ch_9"}, "evt_3")),
        "net-1",
    )
    assert [e.envelope.event_id for e in again] == [event.envelope.event_id]


def test_unrelated_event_types_are_ignored_but_remembered() -> None:
    published = Published()
    body = stripe_event("customer.created", {"id": "cus_1"})
    outcome = handler(published).handle_stripe(body, stripe_header(body, SECRET))
    assert outcome.status == "ignored"
    assert published.events == []


# ---------------------------------------------------------------------------- Braintree
KEY = BraintreeWebhookKey("pub_current", "priv_current")
OLD_KEY = BraintreeWebhookKey("pub_previous", "priv_previous")


def sample(kind: str, object_id: str, key: BraintreeWebhookKey = KEY) -> tuple[str, str]:
    config = braintree.Configuration(
        environment=braintree.Environment.Sandbox, merchant_id="m",
        public_key=key.public_key, private_key=key.private_key,
    )  # fmt: skip
    signed = braintree.BraintreeGateway(config).webhook_testing.sample_notification(kind, object_id)
    payload = signed["bt_payload"]
    return signed["bt_signature"], payload.decode() if isinstance(payload, bytes) else payload


def bt_handler(published: Published, keys: list[BraintreeWebhookKey]) -> WebhookHandler:
    import time

    return handler(published, braintree_keys=keys, clock=time.time)


def test_braintree_disbursement_becomes_payout_paid() -> None:
    published = Published()
    signature, payload = sample(braintree.WebhookNotification.Kind.Disbursement, "dsb_1")
    assert bt_handler(published, [KEY]).handle_braintree(signature, payload).status == "published"
    [event] = published.events
    assert isinstance(event, PayoutPaid)
    assert (event.payout_id, event.amount, event.provider) == ("dsb_1", Money(10_000, "USD"),
                                                               "braintree")  # fmt: skip


def test_braintree_dispute_becomes_provider_dispute_updated() -> None:
    published = Published()
    signature, payload = sample(braintree.WebhookNotification.Kind.DisputeOpened, "dsp_1")
    bt_handler(published, [KEY]).handle_braintree(signature, payload)
    [event] = published.events
    assert isinstance(event, ProviderDisputeUpdated)
    assert (event.dispute_id, event.status, event.amount) == ("dsp_1", "open",
                                                              Money(10_000, "USD"))  # fmt: skip


def test_braintree_tampered_or_unknown_key_is_refused() -> None:
    signature, payload = sample(braintree.WebhookNotification.Kind.Disbursement, "dsb_1")
    tampered = payload.replace(payload[10], "A" if payload[10] != "A" else "B", 1)
    with pytest.raises(WebhookSignatureError):
        verify_braintree_signature(signature, tampered, [KEY])
    with pytest.raises(WebhookSignatureError):
        verify_braintree_signature(signature, payload, [OLD_KEY])
    with pytest.raises(WebhookSignatureError):
        verify_braintree_signature(None, payload, [KEY])


def test_braintree_rotated_key_and_replay() -> None:
    published = Published()
    h = bt_handler(published, [KEY, OLD_KEY])
    signature, payload = sample(braintree.WebhookNotification.Kind.Disbursement, "d2", OLD_KEY)
    assert h.handle_braintree(signature, payload).status == "published"
    assert h.handle_braintree(signature, payload).status == "duplicate"
    assert len(published.events) == 1


def test_stale_braintree_notification_is_refused() -> None:
    published = Published()
    signature, payload = sample(braintree.WebhookNotification.Kind.Disbursement, "d3")
    late = handler(published, braintree_keys=[KEY], clock=lambda: 4_000_000_000.0)
    with pytest.raises(WebhookSignatureError):
        late.handle_braintree(signature, payload)
    assert published.events == []


def test_braintree_challenge_matches_the_sdk() -> None:
    config = braintree.Configuration(
        environment=braintree.Environment.Sandbox, merchant_id="m",
        public_key=KEY.public_key, private_key=KEY.private_key,
    )  # fmt: skip
    challenge = "0123456789abcdef0123"
    expected = braintree.BraintreeGateway(config).webhook_notification.verify(challenge)
    assert braintree_challenge_response(challenge, KEY) == expected


# ---------------------------------------------------------------------------- the router
def client(h: WebhookHandler) -> TestClient:
    app = FastAPI()
    http_errors.install(app)
    app.include_router(build_webhook_router(h))
    return TestClient(app)


def test_router_answers_400_and_publishes_nothing_on_a_bad_signature() -> None:
    published = Published()
    http = client(handler(published))
    bad = http.post("/webhooks/stripe", content=PAYOUT,
                    headers={"Stripe-Signature": stripe_header(PAYOUT, "whsec_wrong")})  # fmt: skip
    assert bad.status_code == 400
    assert bad.json()["code"] == "WEBHOOK_SIGNATURE"
    assert published.events == []


def test_router_publishes_once_and_lets_a_failed_publish_be_retried() -> None:
    published = Published()
    failures = [PublishError("kafka down", retriable=True)]

    def flaky(event: ProviderEvent) -> None:
        if failures:
            raise failures.pop()
        published(event)

    http = client(handler(published, publish=flaky))
    headers = {"Stripe-Signature": stripe_header(PAYOUT, SECRET)}
    assert http.post("/webhooks/stripe", content=PAYOUT, headers=headers).status_code == 503
    ok = http.post("/webhooks/stripe", content=PAYOUT, headers=headers)
    assert (ok.status_code, ok.json()["status"]) == (200, "published")
    again = http.post("/webhooks/stripe", content=PAYOUT, headers=headers)
    assert again.json()["status"] == "duplicate"
    assert len(published.events) == 1


def test_router_reads_braintree_form_posts() -> None:
    published = Published()
    http = client(bt_handler(published, [KEY]))
    signature, payload = sample(braintree.WebhookNotification.Kind.Disbursement, "d4")
    body = urlencode({"bt_signature": signature, "bt_payload": payload})
    response = http.post(
        "/webhooks/braintree", content=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    assert [type(e) for e in published.events] == [PayoutPaid]
