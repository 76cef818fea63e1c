"""Payment rules the hostile-input review found missing (ledger.payments)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ledger import payments
from ledger.dimensions import Dimension
from ledger.envelope import Envelope, Source
from ledger.events import (
    AuthorizationIncremented,
    ExternalRefundReported,
    PaymentAuthorized,
    PaymentCaptured,
    PaymentRefunded,
    RevenueLine,
)
from ledger.money import Money
from ledger.payments import errors as err

T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def env(at: datetime) -> Envelope:
    return Envelope.new("net-1", Source.psp, occurred_at=at)


def authorize(amount: int = 5000) -> PaymentAuthorized:
    return PaymentAuthorized(env(T0), "pay-1", "stripe", "pi_1", Money(amount, "EUR"), "card")


def capture(at: datetime, amount: int = 1000) -> PaymentCaptured:
    line = RevenueLine(Dimension.ENERGY, amount - amount // 6, amount // 6)
    return PaymentCaptured(env(at), "pay-1", "cap-1", Money(amount, "EUR"), [line], False, "stripe")


@pytest.mark.parametrize("amount", [0, -100])
def test_a_zero_or_negative_authorization_is_refused(amount: int) -> None:
    with pytest.raises(err.InvalidAmount) as refused:
        payments.apply(None, authorize(amount))
    assert "must be positive" in str(refused.value) and "pay-1" in str(refused.value)


def test_check_hold_is_the_rule_the_ledger_applies() -> None:
    payments.check_hold(authorize(1))
    with pytest.raises(err.InvalidAmount):
        payments.check_hold(AuthorizationIncremented(env(T0), "pay-1", Money(0, "EUR")))


def test_the_authorization_time_is_kept() -> None:
    assert payments.apply(None, authorize()).state.authorized_at == T0


def test_a_capture_dated_before_its_authorization_is_refused() -> None:
    state = payments.apply(None, authorize()).state
    with pytest.raises(err.BeforeAuthorization) as refused:
        payments.apply(state, capture(T0 - timedelta(seconds=1)))
    assert refused.value.code == "BEFORE_AUTHORIZATION"
    assert T0.isoformat() in str(refused.value)
    payments.apply(state, capture(T0))  # at the same instant is fine


def test_a_refund_dated_before_its_authorization_is_refused() -> None:
    state = payments.apply(None, authorize()).state
    state = payments.apply(state, capture(T0 + timedelta(minutes=30))).state
    refund = PaymentRefunded(env(T0 - timedelta(days=1)), "pay-1", "r-1", Money(100, "EUR"), [])
    with pytest.raises(err.BeforeAuthorization):
        payments.apply(state, refund)


def test_an_external_refund_for_an_unknown_reference_names_provider_and_reference() -> None:
    refund = ExternalRefundReported(env(T0), "stripe", "ch_404", "re_9", Money(100, "EUR"))
    with pytest.raises(err.UnknownPayment) as refused:
        payments.apply(None, refund)
    text = str(refused.value)
    assert "payment_id=None" not in text
    assert "provider=stripe" in text and "provider_reference=ch_404" in text and "re_9" in text
