"""The HTTP edges: strict webhook money, bounded bodies, work off the event loop, 4xx for what
is permanent and 5xx for what may pass, one JSON error shape (webhooks and finance API)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from connectors.kafka import PublishError
from connectors.settings import Settings
from connectors.webhooks import (
    WebhookPayloadError,
    json_depth_problem,
    normalize_braintree_notification,
    normalize_stripe_event,
)
from entrypoints import http_errors
from entrypoints.api import create_app
from entrypoints.webhooks_app import build_webhook_router
from ledger import posting_rules
from ledger.events import PayoutPaid
from ledger.money import Money
from tests.unit.test_webhooks import SECRET, Published, handler, stripe_event, stripe_header


def payout(amount: Any, currency: Any = "eur") -> dict[str, Any]:
    obj = {"id": "po_1", "object": "payout", "amount": amount, "currency": currency}
    return {"id": "evt_1", "type": "payout.paid", "created": 1_760_000_000, "data": {"object": obj}}


# -- money at the webhook edge ------------------------------------------------------------------
def test_a_negative_stripe_payout_keeps_its_sign() -> None:
    [event] = normalize_stripe_event(payout(-1500), "net-1")
    assert isinstance(event, PayoutPaid) and event.amount == Money(-1500, "EUR")


def test_a_negative_payout_is_booked_as_a_debit_of_the_bank() -> None:
    [event] = normalize_stripe_event(payout(-1500), "net-1")
    [entry] = posting_rules.payout(event)  # type: ignore[arg-type]
    by_account = {p.account.code: p.amount.amount_minor for p in entry.postings}
    assert by_account == {"assets:bank": -1500, "assets:provider_clearing:stripe": 1500}


@pytest.mark.parametrize("amount", [12.5, 12.0, "1250", True, None, Decimal("12")])
def test_a_stripe_amount_that_is_not_an_integer_is_refused_not_truncated(amount: Any) -> None:
    with pytest.raises(WebhookPayloadError) as refused:
        normalize_stripe_event(payout(amount), "net-1")
    assert "payout.amount must be an integer amount in minor units" in str(refused.value)


@pytest.mark.parametrize("kind", ["charge.dispute.created", "refund.created"])
def test_stripe_dispute_and_refund_amounts_must_be_positive(kind: str) -> None:
    obj = {"id": "x_1", "charge": "ch_1", "status": "needs_response", "amount": -300,
           "currency": "eur", "metadata": {}}  # fmt: skip
    event = {"id": "evt_2", "type": kind, "created": 1_760_000_000, "data": {"object": obj}}
    with pytest.raises(WebhookPayloadError, match="must be positive"):
        normalize_stripe_event(event, "net-1")


def test_an_unknown_currency_is_refused_by_name() -> None:
    with pytest.raises(WebhookPayloadError, match="'XYZ'"):
        normalize_stripe_event(payout(100, "xyz"), "net-1")


def disbursement(amount: Any) -> dict[str, Any]:
    from datetime import UTC, datetime

    merchant = {"currency_iso_code": "EUR"}
    return {"kind": "disbursement", "timestamp": datetime(2026, 11, 1, tzinfo=UTC),
            "subject": {"disbursement": {"id": "d1", "amount": amount,
                                         "merchant_account": merchant}}}  # fmt: skip


def test_braintree_amounts_are_exact_and_keep_a_payouts_sign() -> None:
    [event] = normalize_braintree_notification(disbursement("-10.50"), "net-1")
    assert isinstance(event, PayoutPaid) and event.amount == Money(-1050, "EUR")
    for bad in ("12.345", "NaN", "Infinity", "ten", 12.5):
        with pytest.raises(WebhookPayloadError):
            normalize_braintree_notification(disbursement(bad), "net-1")


# -- the webhook receiver ---------------------------------------------------------------------
def client(published: Published, max_body_bytes: int = 4096, **kw: Any) -> TestClient:
    app = FastAPI()
    http_errors.install(app)
    app.include_router(
        build_webhook_router(handler(published, **kw), max_body_bytes=max_body_bytes)
    )

    @app.get("/loop-thread")
    async def loop_thread() -> int:
        return threading.get_ident()

    return TestClient(app, raise_server_exceptions=False)


def signed(body: bytes) -> dict[str, str]:
    return {"Stripe-Signature": stripe_header(body, SECRET)}


def test_a_body_over_the_limit_is_refused_before_it_is_read() -> None:
    published = Published()
    body = stripe_event("payout.paid", {"id": "po_9", "amount": 1, "currency": "eur",
                                        "pad": "x" * 5000})  # fmt: skip
    answer = client(published).post("/webhooks/stripe", content=body, headers=signed(body))
    assert answer.status_code == 413 and answer.json()["code"] == "BODY_TOO_LARGE"
    assert published.events == []


def test_a_streamed_body_without_length_is_cut_at_the_limit() -> None:
    published = Published()

    def chunks() -> Iterator[bytes]:
        for _ in range(100):
            yield b"x" * 1000

    answer = client(published).post("/webhooks/stripe", content=chunks())
    assert answer.status_code == 413 and answer.json()["code"] == "BODY_TOO_LARGE"


def test_deeply_nested_json_is_a_permanent_400_not_a_503() -> None:
    published = Published()
    body = b'{"id": "evt_1", "type": "payout.paid", "data": ' + b"[" * 3000 + b"]" * 3000 + b"}"
    answer = client(published, max_body_bytes=100_000).post(
        "/webhooks/stripe", content=body, headers=signed(body)
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == "WEBHOOK_PAYLOAD" and "nested deeper" in answer.json()["detail"]
    assert published.events == []


def test_json_depth_ignores_brackets_inside_strings() -> None:
    assert json_depth_problem(json.dumps({"a": "[[[[[[[[[[" * 10}).encode(), 3) is None
    assert json_depth_problem(b'{"a": [[[[1]]]]}', 3) is not None


def test_a_fractional_amount_answers_400_and_publishes_nothing() -> None:
    published = Published()
    body = json.dumps(payout(12.5)).encode()
    answer = client(published).post("/webhooks/stripe", content=body, headers=signed(body))
    assert answer.status_code == 400 and answer.json()["code"] == "WEBHOOK_PAYLOAD"
    assert published.events == []


def test_the_work_runs_off_the_event_loop() -> None:
    threads: list[int] = []
    published = Published()

    def publish(event: Any) -> None:
        threads.append(threading.get_ident())
        published(event)

    http = client(published, publish=publish)
    body = json.dumps(payout(100)).encode()
    assert http.post("/webhooks/stripe", content=body, headers=signed(body)).status_code == 200
    loop_thread = http.get("/loop-thread").json()
    assert threads and threads[0] != loop_thread


def test_publish_failure_is_503_and_a_bug_is_a_500_in_the_same_shape() -> None:
    def down(event: Any) -> None:
        raise PublishError("kafka down", retriable=True)

    def bug(event: Any) -> None:
        raise RuntimeError("secret internals")

    body = json.dumps(payout(100)).encode()
    failed = client(Published(), publish=down).post("/webhooks/stripe", content=body,
                                                    headers=signed(body))  # fmt: skip
    assert failed.status_code == 503 and failed.json()["code"] == "PUBLISH_FAILED"
    crashed = client(Published(), publish=bug).post("/webhooks/stripe", content=body,
                                                    headers=signed(body))  # fmt: skip
    assert crashed.status_code == 500
    shape = crashed.json()
    assert shape["code"] == "INTERNAL_ERROR" and "secret internals" not in crashed.text
    assert shape["request_id"] in shape["detail"]
    assert crashed.headers["X-Request-ID"] == shape["request_id"]


# -- the finance API ---------------------------------------------------------------------------
@pytest.fixture
def api() -> TestClient:
    # No lifespan (no ``with``): these answers come before any database is needed.
    return TestClient(create_app(Settings()), raise_server_exceptions=False)


def test_a_nul_in_a_path_is_a_json_400(api: TestClient) -> None:
    answer = api.get("/payments/pay%00ment")
    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == "INVALID_PARAMETER"
    assert "\\x00" in answer.json()["detail"]


def test_a_nul_in_a_query_is_a_json_400_naming_the_parameter(api: TestClient) -> None:
    answer = api.get("/balances", params={"prefix": "assets\x00"})
    assert answer.status_code == 400
    assert answer.json()["code"] == "INVALID_PARAMETER" and "'prefix'" in answer.json()["detail"]


def test_unknown_routes_answer_in_the_one_shape(api: TestClient) -> None:
    missing = api.get("/no/such/route")
    assert missing.status_code == 404 and set(missing.json()) == {"code", "detail", "request_id"}
    assert missing.json()["code"] == "NOT_FOUND"


def test_a_sane_request_id_is_kept_and_an_odd_one_replaced(api: TestClient) -> None:
    kept = api.get("/no/such/route", headers={"X-Request-ID": "abc-123"})
    assert kept.json()["request_id"] == "abc-123"
    odd = api.get("/no/such/route", headers={"X-Request-ID": "a b\tc"})
    assert odd.json()["request_id"] != "a b\tc"
