"""One contract for every PaymentProvider adapter (sandbox, Stripe via stripe-mock, Braintree via
the fake gateway).

Three parts:
1. ``TestEveryAdapter``: requests are accepted and responses map onto the port's types. These
   hold for stateless stripe-mock too.
2. ``TestStatefulAdapters`` (sandbox and Braintree only): behaviour that needs a backend with
   state: holds, capture ≤ authorized, refund ≤ captured, declines, idempotent retries,
   in-doubt outcomes. stripe-mock cannot take part: it returns canned objects (every
   PaymentIntent is ``requires_payment_method``, ids are random per call, nothing is
   enforced), so it would fail these for reasons that say nothing about the adapter.
3. ``TestStripeAdapterSpecifics``: what stripe-mock cannot show about the Stripe adapter:
   the Idempotency-Key on every mutating request, and error translation from canned
   HTTP error responses.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import stripe

from connectors.providers.base import (
    Action,
    AuthorizationResult,
    AuthorizeCall,
    CaptureCall,
    CaptureResult,
    ProviderPaymentState,
    ProviderStatus,
    RefundCall,
    RefundResult,
    VoidCall,
    VoidResult,
    idempotency_key,
)
from connectors.providers.errors import (
    CaptureExceedsAuthorization,
    IdempotencyConflict,
    InvalidPaymentState,
    PaymentDeclined,
    PaymentNotFound,
    ProviderError,
    ProviderRateLimited,
    ProviderUnavailable,
    RefundExceedsCapture,
)
from connectors.providers.sandbox import Fault, FeeSchedule, SandboxProvider
from connectors.providers.stripe import StripeProvider
from ledger.money import Money
from ledger.settlement.reconciliation import LineType, SettlementLine
from tests.contract.conftest import Harness


def new_id() -> str:
    return str(uuid.uuid4())


def authorize(h: Harness, amount: int = 5_000, token: str | None = None) -> AuthorizationResult:
    payment_id = f"pay_{uuid.uuid4().hex[:12]}"
    call = AuthorizeCall(
        payment_id=payment_id,
        amount=Money(amount, h.currency),
        payment_token=token or h.approve_token,
        idempotency_key=idempotency_key(new_id(), Action.AUTHORIZE),
    )
    return h.provider.authorize(call)


def capture_call(auth: AuthorizationResult, amount: int, key: str | None = None) -> CaptureCall:
    return CaptureCall(
        payment_id="pay",
        provider_reference=auth.provider_reference,
        amount=Money(amount, auth.amount.currency),
        idempotency_key=key or idempotency_key(new_id(), Action.CAPTURE),
    )


def refund_call(auth: AuthorizationResult, amount: int) -> RefundCall:
    return RefundCall(
        payment_id="pay",
        provider_reference=auth.provider_reference,
        refund_id=f"ref_{uuid.uuid4().hex[:12]}",
        amount=Money(amount, auth.amount.currency),
        idempotency_key=idempotency_key(new_id(), Action.REFUND),
    )


def void_call(auth: AuthorizationResult) -> VoidCall:
    key = idempotency_key(new_id(), Action.VOID)
    return VoidCall("pay", auth.provider_reference, key)


# ---------------------------------------------------------------------------- 1. every adapter
class TestEveryAdapter:
    def test_idempotency_key_is_stable_per_instruction(self) -> None:
        event_id = new_id()
        assert idempotency_key(event_id, Action.CAPTURE) == idempotency_key(event_id, "capture")
        assert idempotency_key(event_id, Action.CAPTURE) != idempotency_key(event_id, "refund")

    def test_authorize_maps_the_response(self, harness: Harness) -> None:
        result = authorize(harness, 4_321)
        assert isinstance(result, AuthorizationResult)
        assert result.provider == harness.provider.name == harness.name
        assert result.provider_reference
        assert result.amount == Money(4_321, harness.currency)
        assert isinstance(result.state, ProviderPaymentState)

    def test_capture_maps_the_response(self, harness: Harness) -> None:
        auth = authorize(harness)
        result = harness.provider.capture(capture_call(auth, 2_000))
        assert isinstance(result, CaptureResult)
        assert result.provider_reference == auth.provider_reference
        assert result.capture_reference
        assert isinstance(result.state, ProviderPaymentState)

    def test_void_maps_the_response(self, harness: Harness) -> None:
        auth = authorize(harness)
        result = harness.provider.void(void_call(auth))
        assert isinstance(result, VoidResult)
        assert result.provider_reference == auth.provider_reference

    def test_refund_maps_the_response(self, harness: Harness) -> None:
        auth = authorize(harness)
        harness.provider.capture(capture_call(auth, 3_000))
        harness.settle(auth.provider_reference)
        result = harness.provider.refund(refund_call(auth, 1_250))
        assert isinstance(result, RefundResult)
        assert result.refund_reference
        assert result.amount.amount_minor == 1_250
        assert result.provider_reference == auth.provider_reference

    def test_fetch_status_maps_the_response(self, harness: Harness) -> None:
        auth = authorize(harness, 1_500)
        status = harness.provider.fetch_status(auth.provider_reference)
        assert isinstance(status, ProviderStatus)
        assert status.provider_reference == auth.provider_reference
        assert isinstance(status.state, ProviderPaymentState)

    def test_settlement_report_returns_lines(self, harness: Harness) -> None:
        now = datetime.now(UTC)
        lines = harness.provider.settlement_report(now - timedelta(days=1), now + timedelta(days=1))
        assert all(isinstance(line, SettlementLine) for line in lines)
        assert all(line.provider == harness.name for line in lines)


# ---------------------------------------------------------------------------- 2. stateful subset
class TestStatefulAdapters:
    """Sandbox and Braintree only; see the module docstring for why stripe-mock is left out."""

    def test_authorize_places_a_hold(self, stateful_harness: Harness) -> None:
        auth = authorize(stateful_harness, 5_000)
        assert auth.state is ProviderPaymentState.AUTHORIZED
        status = stateful_harness.provider.fetch_status(auth.provider_reference)
        assert status.state is ProviderPaymentState.AUTHORIZED
        assert status.authorized == Money(5_000, stateful_harness.currency)
        assert status.captured.is_zero

    def test_partial_capture_takes_less_than_the_hold(self, stateful_harness: Harness) -> None:
        auth = authorize(stateful_harness, 5_000)
        result = stateful_harness.provider.capture(capture_call(auth, 3_210))
        assert result.state is ProviderPaymentState.CAPTURED
        assert result.amount == Money(3_210, stateful_harness.currency)
        status = stateful_harness.provider.fetch_status(auth.provider_reference)
        assert status.captured == Money(3_210, stateful_harness.currency)

    def test_capture_above_the_hold_is_refused(self, stateful_harness: Harness) -> None:
        auth = authorize(stateful_harness, 5_000)
        with pytest.raises(CaptureExceedsAuthorization) as caught:
            stateful_harness.provider.capture(capture_call(auth, 5_001))
        assert caught.value.retriable is False
        status = stateful_harness.provider.fetch_status(auth.provider_reference)
        assert status.state is ProviderPaymentState.AUTHORIZED

    def test_void_releases_the_hold_and_blocks_capture(self, stateful_harness: Harness) -> None:
        auth = authorize(stateful_harness)
        assert stateful_harness.provider.void(void_call(auth)).state is ProviderPaymentState.VOIDED
        with pytest.raises(InvalidPaymentState):
            stateful_harness.provider.capture(capture_call(auth, 100))

    def test_refunds_are_limited_to_the_capture(self, stateful_harness: Harness) -> None:
        h = stateful_harness
        auth = authorize(h, 5_000)
        h.provider.capture(capture_call(auth, 4_000))
        h.settle(auth.provider_reference)
        first = h.provider.refund(refund_call(auth, 2_500))
        assert first.amount == Money(2_500, h.currency)
        with pytest.raises(RefundExceedsCapture):
            h.provider.refund(refund_call(auth, 1_501))
        h.provider.refund(refund_call(auth, 1_500))
        assert h.provider.fetch_status(auth.provider_reference).refunded == Money(4_000, h.currency)

    def test_decline_is_final_not_retriable(self, stateful_harness: Harness) -> None:
        with pytest.raises(PaymentDeclined) as caught:
            authorize(stateful_harness, token=stateful_harness.decline_token)
        assert caught.value.declined is True
        assert caught.value.retriable is False
        assert caught.value.decline_code

    def test_same_key_same_request_gives_the_same_authorization(
        self, stateful_harness: Harness
    ) -> None:
        call = AuthorizeCall(
            payment_id=f"pay_{uuid.uuid4().hex[:12]}",
            amount=Money(2_222, stateful_harness.currency),
            payment_token=stateful_harness.approve_token,
            idempotency_key=idempotency_key(new_id(), Action.AUTHORIZE),
        )
        first = stateful_harness.provider.authorize(call)
        second = stateful_harness.provider.authorize(call)
        assert second == first

    def test_same_key_other_amount_is_a_conflict(self, stateful_harness: Harness) -> None:
        call = AuthorizeCall(
            payment_id=f"pay_{uuid.uuid4().hex[:12]}",
            amount=Money(2_222, stateful_harness.currency),
            payment_token=stateful_harness.approve_token,
            idempotency_key=idempotency_key(new_id(), Action.AUTHORIZE),
        )
        stateful_harness.provider.authorize(call)
        changed = AuthorizeCall(
            call.payment_id, Money(3_333, call.amount.currency), call.payment_token,
            call.idempotency_key,
        )  # fmt: skip
        with pytest.raises(IdempotencyConflict):
            stateful_harness.provider.authorize(changed)

    def test_in_doubt_authorize_is_resolved_by_retrying_with_the_same_key(
        self, stateful_harness: Harness
    ) -> None:
        h = stateful_harness
        call = AuthorizeCall(
            payment_id=f"pay_{uuid.uuid4().hex[:12]}",
            amount=Money(1_800, h.currency),
            payment_token=h.approve_token,
            idempotency_key=idempotency_key(new_id(), Action.AUTHORIZE),
        )
        h.lose_next_response("authorize")
        with pytest.raises(ProviderError) as caught:
            h.provider.authorize(call)
        assert caught.value.retriable and caught.value.in_doubt
        found = h.provider.find_authorization(call.payment_id)
        assert found is not None and found.state is ProviderPaymentState.AUTHORIZED
        retried = h.provider.authorize(call)
        assert retried.provider_reference == found.provider_reference

    def test_in_doubt_capture_is_not_applied_twice(self, stateful_harness: Harness) -> None:
        h = stateful_harness
        auth = authorize(h, 5_000)
        call = capture_call(auth, 2_600)
        h.lose_next_response("capture")
        with pytest.raises(ProviderError) as caught:
            h.provider.capture(call)
        assert caught.value.in_doubt
        retried = h.provider.capture(call)
        assert retried.state is ProviderPaymentState.CAPTURED
        assert retried.amount == Money(2_600, h.currency)
        assert h.provider.fetch_status(auth.provider_reference).captured == retried.amount

    def test_unknown_payment(self, stateful_harness: Harness) -> None:
        assert stateful_harness.provider.find_authorization(f"pay_{uuid.uuid4().hex}") is None
        with pytest.raises(PaymentNotFound):
            stateful_harness.provider.fetch_status("doesnotexist")

    def test_settlement_report_lists_the_capture(self, stateful_harness: Harness) -> None:
        h = stateful_harness
        since = datetime.now(UTC) - timedelta(minutes=1)
        auth = authorize(h, 5_000)
        captured = h.provider.capture(capture_call(auth, 4_000))
        h.settle(auth.provider_reference)
        lines = h.provider.settlement_report(since, datetime.now(UTC) + timedelta(minutes=1))
        mine = [line for line in lines if line.provider_reference == captured.capture_reference]
        assert [(line.type, line.amount) for line in mine] == [
            (LineType.CHARGE, Money(4_000, h.currency))
        ]


# ---------------------------------------------------------------------------- 3. Stripe only
class TestStripeAdapterSpecifics:
    def test_every_mutating_request_carries_the_callers_key(self, stripe_mock_url: str) -> None:
        from tests.contract.conftest import stripe_harness

        h = stripe_harness(stripe_mock_url)
        assert h.recorder is not None
        auth_key = idempotency_key(new_id(), Action.AUTHORIZE)
        auth = h.provider.authorize(
            AuthorizeCall("pay_1", Money(1_000, "EUR"), h.approve_token, auth_key)
        )
        capture_key = idempotency_key(new_id(), Action.CAPTURE)
        h.provider.capture(capture_call(auth, 900, key=capture_key))
        refund = refund_call(auth, 100)
        h.provider.refund(refund)
        void = void_call(auth)
        h.provider.void(void)
        posts = [(url, headers) for method, url, headers in h.recorder.sent if method == "POST"]
        keys = [headers.get("Idempotency-Key") for _, headers in posts]
        assert keys == [auth_key, capture_key, refund.idempotency_key, void.idempotency_key]
        assert posts[1][0].endswith(f"/v1/payment_intents/{auth.provider_reference}/capture")


class CannedHTTPClient(stripe.HTTPClient):
    """Answers every request with one canned (body, status, headers) response."""

    name = "canned"

    def __init__(self, status: int, body: Mapping[str, Any], headers: dict[str, str]) -> None:
        super().__init__()
        self._response = (json.dumps(body), status, headers)

    def request(  # type: ignore[override]
        self, method: str, url: str, headers: Mapping[str, str] | None, post_data: Any = None
    ) -> tuple[str, int, Mapping[str, str]]:
        return self._response

    def close(self) -> None:
        pass


def stripe_answering(status: int, error: dict[str, Any], **headers: str) -> StripeProvider:
    client = CannedHTTPClient(status, {"error": error}, {"Request-Id": "req_canned", **headers})
    return StripeProvider.connect("sk_test_canned", http_client=client)


class TestStripeErrorTranslation:
    CALL = AuthorizeCall("pay_1", Money(1_000, "EUR"), "pm_card_visa", "evl-authorize-1")

    def test_card_error_is_a_decline(self) -> None:
        provider = stripe_answering(
            402,
            {"type": "card_error", "code": "card_declined", "decline_code": "insufficient_funds",
             "message": "Your card has insufficient funds."},
        )  # fmt: skip
        with pytest.raises(PaymentDeclined) as caught:
            provider.authorize(self.CALL)
        assert caught.value.decline_code == "insufficient_funds"
        assert caught.value.retriable is False
        assert isinstance(caught.value.__cause__, stripe.CardError)

    def test_rate_limit_is_retriable_and_keeps_retry_after(self) -> None:
        provider = stripe_answering(
            429, {"type": "invalid_request_error", "code": "rate_limit", "message": "slow down"},
            **{"Retry-After": "3"},
        )  # fmt: skip
        with pytest.raises(ProviderRateLimited) as caught:
            provider.authorize(self.CALL)
        assert caught.value.retriable is True
        assert caught.value.retry_after == 3.0

    def test_reused_key_with_other_parameters(self) -> None:
        provider = stripe_answering(
            400, {"type": "idempotency_error", "message": "Keys for idempotent requests..."}
        )
        with pytest.raises(IdempotencyConflict) as caught:
            provider.authorize(self.CALL)
        assert caught.value.retriable is False

    def test_missing_payment_intent(self) -> None:
        provider = stripe_answering(
            404, {"type": "invalid_request_error", "code": "resource_missing", "message": "No"}
        )
        with pytest.raises(PaymentNotFound):
            provider.fetch_status("pi_missing")

    def test_capture_above_the_hold(self) -> None:
        provider = stripe_answering(
            400, {"type": "invalid_request_error", "code": "amount_too_large", "message": "No"}
        )
        auth = AuthorizationResult(
            "stripe", "pi_1", Money(1_000, "EUR"), ProviderPaymentState.AUTHORIZED
        )
        with pytest.raises(CaptureExceedsAuthorization):
            provider.capture(capture_call(auth, 2_000))

    def test_server_error_is_retriable_and_in_doubt(self) -> None:
        provider = stripe_answering(500, {"type": "api_error", "message": "boom"})
        with pytest.raises(ProviderUnavailable) as caught:
            provider.authorize(self.CALL)
        assert caught.value.retriable is True
        assert caught.value.in_doubt is True


# ---------------------------------------------------------------------------- sandbox knobs
class TestSandboxSpecifics:
    """What only the sandbox offers: fault injection, hold expiry, multi-capture, payouts."""

    @staticmethod
    def call(payment_id: str = "pay_s", amount: int = 5_000) -> AuthorizeCall:
        key = idempotency_key(new_id(), Action.AUTHORIZE)
        return AuthorizeCall(payment_id, Money(amount, "EUR"), "tok_visa", key)

    def test_outage_fails_every_operation_without_effect(self) -> None:
        sandbox = SandboxProvider()
        sandbox.inject(Fault.OUTAGE, times=None)
        with pytest.raises(ProviderUnavailable) as caught:
            sandbox.authorize(self.call())
        assert caught.value.retriable and not caught.value.in_doubt
        with pytest.raises(ProviderUnavailable):
            sandbox.find_authorization("pay_s")
        sandbox.clear_faults()
        assert sandbox.find_authorization("pay_s") is None

    def test_timeout_before_applies_nothing(self) -> None:
        sandbox = SandboxProvider()
        sandbox.inject(Fault.TIMEOUT_BEFORE, "authorize")
        with pytest.raises(ProviderError) as caught:
            sandbox.authorize(self.call())
        assert caught.value.in_doubt
        assert sandbox.find_authorization("pay_s") is None

    def test_latency_goes_through_the_injected_sleep(self) -> None:
        slept: list[float] = []
        sandbox = SandboxProvider(sleep=slept.append)
        sandbox.set_latency(0.25, "authorize")
        sandbox.authorize(self.call())
        assert slept == [0.25]

    def test_hold_expires(self) -> None:
        now = [datetime(2025, 1, 1, tzinfo=UTC)]
        sandbox = SandboxProvider(clock=lambda: now[0], hold_ttl=timedelta(hours=1))
        auth = sandbox.authorize(self.call())
        assert auth.expires_at == now[0] + timedelta(hours=1)
        now[0] += timedelta(hours=1)
        assert sandbox.fetch_status(auth.provider_reference).state is ProviderPaymentState.EXPIRED
        with pytest.raises(InvalidPaymentState):
            sandbox.capture(capture_call(auth, 100))

    def test_multi_capture_until_final(self) -> None:
        sandbox = SandboxProvider(multi_capture=True)
        auth = sandbox.authorize(self.call(amount=5_000))
        first = CaptureCall(
            "pay_s", auth.provider_reference, Money(1_000, "EUR"), "k1", final=False
        )
        assert sandbox.capture(first).state is ProviderPaymentState.PARTIALLY_CAPTURED
        with pytest.raises(CaptureExceedsAuthorization):
            sandbox.capture(capture_call(auth, 4_001))
        assert sandbox.capture(capture_call(auth, 500)).state is ProviderPaymentState.CAPTURED
        assert sandbox.fetch_status(auth.provider_reference).captured == Money(1_500, "EUR")

    def test_single_capture_releases_the_rest(self) -> None:
        sandbox = SandboxProvider()
        auth = sandbox.authorize(self.call(amount=5_000))
        sandbox.capture(capture_call(auth, 1_000))
        with pytest.raises(InvalidPaymentState):
            sandbox.capture(capture_call(auth, 1_000))

    def test_a_decline_is_replayed_for_the_same_key(self) -> None:
        sandbox = SandboxProvider()
        call = AuthorizeCall("pay_d", Money(100, "EUR"), "tok_insufficient_funds", "k-decline")
        for _ in range(2):
            with pytest.raises(PaymentDeclined) as caught:
                sandbox.authorize(call)
            assert caught.value.decline_code == "insufficient_funds"

    def test_payout_pays_the_net_of_charges_fees_and_refunds(self) -> None:
        sandbox = SandboxProvider(fees=FeeSchedule(rate_basis_points=100, fixed_minor=10))
        auth = sandbox.authorize(self.call(amount=10_000))
        captured = sandbox.capture(capture_call(auth, 10_000))
        assert captured.fee == Money(110, "EUR")
        sandbox.refund(refund_call(auth, 2_000))
        payout = sandbox.pay_out("EUR")
        assert payout is not None and payout.amount == Money(10_000 - 110 - 2_000, "EUR")
        assert sandbox.pay_out("EUR") is None


def test_the_sandbox_service_refuses_an_amount_that_is_not_integer_minor_units(
    sandbox_http_harness: Harness,
) -> None:
    """The wire form takes money as integer minor units: a float, a string or a bool amount is
    a 400 with the reason, never rounded into a capture."""
    url = sandbox_http_harness.provider._http.base_url  # type: ignore[attr-defined]
    for amount in (12.5, "1250", True):
        body = {"payment_id": "P-1", "amount": {"amount_minor": amount, "currency": "EUR"},
                "payment_token": "tok_visa", "idempotency_key": "evl-authorize-x"}  # fmt: skip
        answer = httpx.post(f"{url}/v1/authorize", json=body, timeout=10)
        assert answer.status_code == 400
        assert answer.json()["error"]["code"] == "PROVIDER_INVALID_REQUEST"
        assert "minor units" in answer.json()["error"]["message"]
