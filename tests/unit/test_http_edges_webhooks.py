"""The webhook edge: strict money (integer minor units, signs per event type, known currencies),
bounded bodies and JSON depth, work off the event loop, 4xx for what is permanent and 5xx for
what may pass, all in the one JSON error shape."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import example, given, settings
from hypothesis import strategies as st

from connectors.kafka import PublishError
from connectors.settings import Settings, SettingsError
from connectors.webhooks import (
    MAX_BODY_BYTES,
    MAX_JSON_DEPTH,
    WebhookPayloadError,
    json_depth_problem,
    normalize_braintree_notification,
    normalize_stripe_event,
)
from entrypoints import http_errors
from entrypoints.webhooks_app import build_webhook_router, webhook_limits
from ledger.accounting import posting_rules
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
    assert isinstance(event, PayoutPaid)
    [entry] = posting_rules.payout(event)
    by_account = {p.account.code: p.amount.amount_minor for p in entry.postings}
    assert by_account == {"assets:bank": -1500, "assets:provider_clearing:stripe": 1500}


@settings(max_examples=200, deadline=None)
# A payout that only covers its fees (gross zero) still moves money: it used to book nothing.
@example(amount=-25, fees=25, currency="EUR")
@example(amount=0, fees=25, currency="EUR")
@given(
    amount=st.integers(-(10**9), 10**9),
    fees=st.integers(0, 10**6),
    currency=st.sampled_from(["EUR", "JPY", "KWD"]),
)
def test_a_payout_balances_and_books_no_zero_line(amount: int, fees: int, currency: str) -> None:
    [template] = normalize_stripe_event(payout(1), "net-1")
    assert isinstance(template, PayoutPaid)
    event = PayoutPaid(
        envelope=template.envelope,
        provider="stripe",
        payout_id="po_1",
        amount=Money(amount, currency),
        fees=Money(fees, currency),
    )
    entries = posting_rules.payout(event)
    postings = [p for entry in entries for p in entry.postings]
    assert all(not p.amount.is_zero for p in postings)
    assert sum(p.amount.amount_minor for p in postings) == 0
    assert (entries == []) == (amount == 0 and fees == 0)


@pytest.mark.parametrize("amount", [12.5, 12.0, "1250", True, None, Decimal("12")])
def test_a_stripe_amount_that_is_not_an_integer_is_refused_not_truncated(amount: Any) -> None:
    with pytest.raises(WebhookPayloadError) as refused:
        normalize_stripe_event(payout(amount), "net-1")
    assert "payout.amount must be an integer amount in minor units" in str(refused.value)
    assert repr(amount) in str(refused.value)


def test_a_zero_payout_is_refused() -> None:
    with pytest.raises(WebhookPayloadError, match=r"payout\.amount must be non-zero"):
        normalize_stripe_event(payout(0), "net-1")


@pytest.mark.parametrize("kind", ["charge.dispute.created", "refund.created"])
@pytest.mark.parametrize("amount", [-300, 0])
def test_stripe_dispute_and_refund_amounts_must_be_positive(kind: str, amount: int) -> None:
    obj = {"id": "x_1", "charge": "ch_1", "status": "needs_response", "amount": amount,
           "currency": "eur", "metadata": {}}  # fmt: skip
    event = {"id": "evt_2", "type": kind, "created": 1_760_000_000, "data": {"object": obj}}
    with pytest.raises(WebhookPayloadError, match="must be positive"):
        normalize_stripe_event(event, "net-1")


def test_an_unknown_currency_is_refused_by_name() -> None:
    with pytest.raises(WebhookPayloadError, match="'XYZ'"):
        normalize_stripe_event(payout(100, "xyz"), "net-1")


@pytest.mark.parametrize(
    ("patch", "names"),
    [
        ({"created": 10**20}, "OverflowError"),  # was an uncaught OverflowError: a 500
        ({"data": {"object": {"id": ["x"], "amount": 5, "currency": "eur"}}}, "payout.id"),
        ({"data": []}, "data must be an object"),
        ({"id": {"a": 1}}, "event.id"),
    ],
)
def test_a_malformed_stripe_event_is_a_payload_error(patch: dict[str, Any], names: str) -> None:
    body = json.dumps({**payout(100), **patch}).encode()
    with pytest.raises(WebhookPayloadError, match=names):
        handler(Published()).handle_stripe(body, stripe_header(body, SECRET))


def test_refunds_that_are_not_objects_are_a_payload_error() -> None:
    charge = {"id": "ch_1", "refunds": {"data": ["re_1"]}}
    event = {"id": "evt_3", "type": "charge.refunded", "data": {"object": charge}}
    with pytest.raises(WebhookPayloadError, match=r"charge.refunds.data\[\] must be an object"):
        normalize_stripe_event(event, "net-1")


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=8,
)
SHAPES = [
    payout(100),
    {"id": "evt_4", "type": "charge.dispute.created", "data": {"object": {
        "id": "dp_1", "charge": "ch_1", "status": "won", "amount": 5, "currency": "eur"}}},
    {"id": "evt_5", "type": "charge.refunded", "data": {"object": {
        "id": "ch_1", "refunds": {"data": [{"id": "re_1", "amount": 5, "currency": "eur"}]}}}},
    {"id": "evt_6", "type": "refund.created", "data": {"object": {
        "id": "re_1", "charge": "ch_1", "amount": 5, "currency": "eur", "metadata": {}}}},
]  # fmt: skip


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield from _paths(inner, (*prefix, index))


def _replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    copy = json.loads(json.dumps(value))
    holder = copy
    for step in path[:-1]:
        holder = holder[step]
    holder[path[-1]] = new
    return copy


@settings(max_examples=400, deadline=None)
@given(data=st.data(), shape=st.sampled_from(SHAPES), new=JSON)
def test_any_value_anywhere_is_published_or_refused_never_a_crash(
    data: st.DataObject, shape: dict[str, Any], new: Any
) -> None:
    path = data.draw(st.sampled_from(list(_paths(shape))))
    body = json.dumps(_replaced(shape, path, new)).encode()
    outcome = "published"
    try:
        handler(Published()).handle_stripe(body, stripe_header(body, SECRET))
    except WebhookPayloadError:
        outcome = "refused"
    assert outcome in {"published", "refused"}  # anything else escaped as an exception


def disbursement(amount: Any, currency: Any = "EUR") -> dict[str, Any]:
    merchant = {"currency_iso_code": currency}
    return {"kind": "disbursement", "timestamp": datetime(2026, 11, 1, tzinfo=UTC),
            "subject": {"disbursement": {"id": "d1", "amount": amount,
                                         "merchant_account": merchant}}}  # fmt: skip


def test_braintree_amounts_are_exact_and_keep_a_payouts_sign() -> None:
    [event] = normalize_braintree_notification(disbursement("-10.50"), "net-1")
    assert isinstance(event, PayoutPaid) and event.amount == Money(-1050, "EUR")
    [event] = normalize_braintree_notification(disbursement(Decimal("7.25")), "net-1")
    assert isinstance(event, PayoutPaid) and event.amount == Money(725, "EUR")


@pytest.mark.parametrize("amount", ["12.345", "NaN", "Infinity", "ten", 12.5, True, None, "0.00"])
def test_a_braintree_amount_that_is_not_exact_is_refused(amount: Any) -> None:
    with pytest.raises(WebhookPayloadError, match=r"disbursement\.amount"):
        normalize_braintree_notification(disbursement(amount), "net-1")


def test_a_braintree_dispute_amount_must_be_positive_and_its_currency_known() -> None:
    def dispute(amount: str, currency: str) -> dict[str, Any]:
        body = {"id": "dp_1", "amount": amount, "currency_iso_code": currency,
                "transaction": {"id": "tx_1"}}  # fmt: skip
        return {"kind": "dispute_opened", "timestamp": datetime(2026, 11, 1, tzinfo=UTC),
                "subject": {"dispute": body}}  # fmt: skip

    with pytest.raises(WebhookPayloadError, match=r"dispute\.amount must be positive"):
        normalize_braintree_notification(dispute("-5.00", "EUR"), "net-1")
    with pytest.raises(WebhookPayloadError, match="'QQQ'"):
        normalize_braintree_notification(dispute("5.00", "QQQ"), "net-1")


def test_a_braintree_subject_that_is_not_an_element_is_a_payload_error() -> None:
    notification = {**disbursement("1.00"), "subject": {"disbursement": "text"}}
    with pytest.raises(WebhookPayloadError, match="disbursement must be an object"):
        normalize_braintree_notification(notification, "net-1")


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
    assert set(answer.json()) == {"code", "detail", "request_id"}
    assert published.events == []


def test_a_streamed_body_without_length_is_cut_at_the_limit() -> None:
    published = Published()
    sent: list[int] = []

    def chunks() -> Iterator[bytes]:
        for index in range(100):
            sent.append(index)
            yield b"x" * 1000

    answer = client(published).post("/webhooks/stripe", content=chunks())
    assert answer.status_code == 413 and answer.json()["code"] == "BODY_TOO_LARGE"


def test_a_braintree_body_over_the_limit_is_refused() -> None:
    form = b"bt_signature=a%7Cb&bt_payload=" + b"A" * 5000
    answer = client(Published()).post("/webhooks/braintree", content=form)
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
    assert json_depth_problem(json.dumps({"a": '\\"[[[[['}).encode(), 3) is None
    assert json_depth_problem(b'{"a": [[[[1]]]]}', 3) is not None
    assert json_depth_problem(b'{"a": [[1]]}', 3) is None


def test_nan_and_infinity_are_not_json() -> None:
    body = json.dumps({**payout(100), "created": float("inf")}).encode()
    answer = client(Published()).post("/webhooks/stripe", content=body, headers=signed(body))
    assert answer.status_code == 400 and "Infinity is not a JSON number" in answer.json()["detail"]


def test_a_fractional_amount_answers_400_and_publishes_nothing() -> None:
    published = Published()
    body = json.dumps(payout(12.5)).encode()
    answer = client(published).post("/webhooks/stripe", content=body, headers=signed(body))
    assert answer.status_code == 400 and answer.json()["code"] == "WEBHOOK_PAYLOAD"
    assert "12.5" in answer.json()["detail"]
    assert published.events == []


def test_the_work_runs_off_the_event_loop() -> None:
    loops: list[bool] = []

    def publish(event: Any) -> None:
        try:
            asyncio.get_running_loop()
            loops.append(True)
        except RuntimeError:
            loops.append(False)

    body = json.dumps(payout(100)).encode()
    answer = client(Published(), publish=publish).post(
        "/webhooks/stripe", content=body, headers=signed(body)
    )
    assert answer.status_code == 200 and loops == [False]


def test_a_slow_webhook_does_not_hold_up_other_requests() -> None:
    entered, release = threading.Event(), threading.Event()

    def slow(event: Any) -> None:
        entered.set()
        release.wait(10)  # on the event loop, this would stall every other request for 10 s

    body = json.dumps(payout(100)).encode()
    answers: list[int] = []
    with client(Published(), publish=slow) as http:
        sender = threading.Thread(
            target=lambda: answers.append(
                http.post("/webhooks/stripe", content=body, headers=signed(body)).status_code
            )
        )
        sender.start()
        assert entered.wait(5)
        started = time.monotonic()
        other = http.get("/loop-thread")
        waited = time.monotonic() - started
        release.set()
        sender.join(10)
    assert other.status_code == 200 and waited < 5
    assert answers == [200]


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


def test_a_publish_refused_for_good_is_still_a_503_so_nothing_is_lost(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def refused(event: Any) -> None:
        raise PublishError("topic provider.events not authorized", retriable=False)

    body = json.dumps(payout(100)).encode()
    answer = client(Published(), publish=refused).post("/webhooks/stripe", content=body,
                                                       headers=signed(body))  # fmt: skip
    assert answer.status_code == 503 and answer.json()["code"] == "PUBLISH_FAILED"
    assert any(
        r.levelname == "ERROR" and "not authorized" in r.getMessage() for r in caplog.records
    )


def test_unknown_webhook_routes_and_methods_answer_in_the_one_shape() -> None:
    http = client(Published())
    missing = http.post("/webhooks/adyen", content=b"{}")
    assert missing.status_code == 404 and missing.json()["code"] == "NOT_FOUND"
    wrong = http.get("/webhooks/stripe")
    assert wrong.status_code == 405 and wrong.json()["code"] == "METHOD_NOT_ALLOWED"


# -- limits from the environment ----------------------------------------------------------------
def test_limits_default_and_follow_the_environment() -> None:
    assert webhook_limits(Settings.from_env({})) == (MAX_BODY_BYTES, MAX_JSON_DEPTH)
    env = {"EVLEDGER_WEBHOOK_MAX_BODY_BYTES": "2048", "EVLEDGER_WEBHOOK_MAX_JSON_DEPTH": "12"}
    assert webhook_limits(Settings.from_env(env)) == (2048, 12)


@pytest.mark.parametrize("raw", ["", "0", "-1", "1e6", "lots", "²"])
def test_a_bad_limit_is_refused_not_ignored(raw: str) -> None:
    with pytest.raises(SettingsError, match="EVLEDGER_WEBHOOK_MAX_BODY_BYTES"):
        Settings.from_env({"EVLEDGER_WEBHOOK_MAX_BODY_BYTES": raw})
