"""An in-process payment provider with real state: the default for the demo and the tests.

Behaves like a card acquirer: holds that expire, captures limited to the hold, refunds limited to
the captures, declines for test tokens, Stripe-style idempotency keys (same key and parameters
give the same result, including a decline; same key with other parameters is an error), and a
settlement report with fees. Thread-safe.

Captures: by default one capture per authorization and the rest of the hold is released (as
Stripe's default and Braintree's ``submit_for_settlement``). ``multi_capture=True`` allows several
partial captures until one is ``final`` or the hold is used up.

Test tokens (anything else starting with ``tok_`` is approved):
``tok_decline`` → card_declined, ``tok_insufficient_funds`` → insufficient_funds,
``tok_expired_card`` → expired_card; each also with a suffix (``tok_decline_7``).

Faults, per operation or for all (``"*"``), for ``times`` calls (``None``: until cleared):
``Fault.OUTAGE`` (ProviderUnavailable, nothing applied), ``Fault.TIMEOUT_BEFORE`` (ProviderTimeout,
nothing applied), ``Fault.TIMEOUT_AFTER`` (the effect *is* applied and remembered under the
idempotency key, then ProviderTimeout), and ``set_latency`` (sleeps before answering).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar

from connectors.providers.base import (
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
)
from connectors.providers.errors import (
    CaptureExceedsAuthorization,
    IdempotencyConflict,
    InvalidPaymentState,
    InvalidProviderRequest,
    PaymentDeclined,
    PaymentNotFound,
    ProviderTimeout,
    ProviderUnavailable,
    RefundExceedsCapture,
)
from ledger.envelope import utcnow
from ledger.money import Money
from ledger.settlement.reconciliation import LineType, SettlementLine

R = TypeVar("R")

DECLINING_TOKENS = {
    "tok_decline": "card_declined",
    "tok_insufficient_funds": "insufficient_funds",
    "tok_expired_card": "expired_card",
}


def declined_by(token: str) -> str | None:
    """The decline code of a test token: ``tok_decline``, or it with a suffix
    (``tok_decline_4711``: a declined card of its own, for simulations with many cards)."""
    for prefix, code in DECLINING_TOKENS.items():
        if token == prefix or token.startswith(prefix + "_"):
            return code
    return None


OPEN_STATES = (ProviderPaymentState.AUTHORIZED, ProviderPaymentState.PARTIALLY_CAPTURED)


class Fault(StrEnum):
    OUTAGE = "outage"
    TIMEOUT_BEFORE = "timeout_before"
    TIMEOUT_AFTER = "timeout_after"


OPERATIONS = ("authorize", "capture", "void", "refund", "fetch_status", "find", "report")


@dataclass(frozen=True, slots=True)
class FeeSchedule:
    """Fee per capture: ``rate_basis_points`` / 10 000 of the amount (rounded half-up) + fixed."""

    rate_basis_points: int = 140
    fixed_minor: int = 25

    def fee(self, amount: Money) -> Money:
        variable = (amount.amount_minor * self.rate_basis_points + 5_000) // 10_000
        return Money(variable + self.fixed_minor, amount.currency)


@dataclass
class _Payment:
    payment_id: str
    reference: str
    authorized: Money
    expires_at: datetime
    state: ProviderPaymentState = ProviderPaymentState.AUTHORIZED
    captured: int = 0
    refunded: int = 0


@dataclass
class _Injected:
    fault: Fault
    remaining: int | None  # None: until cleared


@dataclass
class _Faults:
    injected: dict[str, list[_Injected]] = field(default_factory=dict)
    latency: dict[str, float] = field(default_factory=dict)


class SandboxProvider:
    """Stateful in-memory provider; see the module docstring for its rules and knobs."""

    def __init__(
        self,
        name: str = "sandbox",
        *,
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], None] = time.sleep,
        fees: FeeSchedule | None = None,
        hold_ttl: timedelta = timedelta(days=7),
        multi_capture: bool = False,
    ) -> None:
        self._name = name
        self._clock = clock
        self._sleep = sleep
        self.fees = fees or FeeSchedule()
        self.hold_ttl = hold_ttl
        self.multi_capture = multi_capture
        self._lock = threading.RLock()
        self._payments: dict[str, _Payment] = {}
        self._by_payment_id: dict[str, str] = {}
        self._idempotent: dict[str, tuple[tuple[Any, ...], object]] = {}
        self._lines: list[SettlementLine] = []
        self._paid_out = 0  # index into _lines of the first line not yet paid out
        self._faults = _Faults()

    @property
    def name(self) -> str:
        return self._name

    # -- fault injection --------------------------------------------------------------------
    def inject(self, fault: Fault, operation: str = "*", *, times: int | None = 1) -> None:
        """Make the next ``times`` calls of ``operation`` (``"*"``: any) fail with ``fault``."""
        if operation != "*" and operation not in OPERATIONS:
            raise ValueError(f"unknown operation {operation!r}; one of {OPERATIONS}")
        with self._lock:
            self._faults.injected.setdefault(operation, []).append(_Injected(fault, times))

    def set_latency(self, seconds: float, operation: str = "*") -> None:
        with self._lock:
            self._faults.latency[operation] = seconds

    def clear_faults(self) -> None:
        with self._lock:
            self._faults = _Faults()

    def _take_fault(self, operation: str) -> Fault | None:
        with self._lock:
            for key in (operation, "*"):
                queue = self._faults.injected.get(key, [])
                if queue:
                    head = queue[0]
                    if head.remaining is not None:
                        head.remaining -= 1
                        if head.remaining <= 0:
                            queue.pop(0)
                    return head.fault
            return None

    def _call(self, operation: str, apply: Callable[[], R]) -> R:
        latency = self._faults.latency.get(operation, self._faults.latency.get("*", 0.0))
        if latency > 0:
            self._sleep(latency)
        fault = self._take_fault(operation)
        if fault is Fault.OUTAGE:
            raise ProviderUnavailable(f"{self._name} is down (injected)", provider=self._name)
        if fault is Fault.TIMEOUT_BEFORE:
            raise ProviderTimeout(f"{operation} timed out (injected)", provider=self._name)
        result = apply()
        if fault is Fault.TIMEOUT_AFTER:
            raise ProviderTimeout(
                f"{operation} timed out after it was applied (injected)", provider=self._name
            )
        return result

    def _idempotent_call(self, key: str, fingerprint: tuple[Any, ...], apply: Callable[[], R]) -> R:
        """Stripe's rule: a key replays its first outcome (result or decline) for identical
        parameters and is refused for different ones."""
        with self._lock:
            if key in self._idempotent:
                seen_fingerprint, outcome = self._idempotent[key]
                if seen_fingerprint != fingerprint:
                    raise IdempotencyConflict(
                        "idempotency key reused with different parameters",
                        provider=self._name,
                        idempotency_key=key,
                    )
                if isinstance(outcome, PaymentDeclined):
                    raise outcome
                return outcome  # type: ignore[return-value]
            try:
                result = apply()
            except PaymentDeclined as declined:
                self._idempotent[key] = (fingerprint, declined)
                raise
            self._idempotent[key] = (fingerprint, result)
            return result

    # -- the port ---------------------------------------------------------------------------
    def authorize(self, call: AuthorizeCall) -> AuthorizationResult:
        fingerprint = ("authorize", call.payment_id, call.amount, call.payment_token)
        return self._call(
            "authorize",
            lambda: self._idempotent_call(
                call.idempotency_key, fingerprint, lambda: self._authorize(call)
            ),
        )

    def _authorize(self, call: AuthorizeCall) -> AuthorizationResult:
        if call.amount.amount_minor <= 0:
            raise InvalidProviderRequest("amount must be positive", provider=self._name)
        if not call.payment_token.startswith("tok_"):
            raise InvalidProviderRequest(
                "unknown payment token", provider=self._name, payment_id=call.payment_id
            )
        decline = declined_by(call.payment_token)
        if decline is not None:
            raise PaymentDeclined(
                f"card declined: {decline}",
                provider=self._name,
                decline_code=decline,
                payment_id=call.payment_id,
            )
        payment = _Payment(
            payment_id=call.payment_id,
            reference=f"sbx_auth_{uuid.uuid4().hex[:20]}",
            authorized=call.amount,
            expires_at=self._clock() + self.hold_ttl,
        )
        self._payments[payment.reference] = payment
        self._by_payment_id[call.payment_id] = payment.reference
        return self._authorization_result(payment)

    def capture(self, call: CaptureCall) -> CaptureResult:
        fingerprint = ("capture", call.provider_reference, call.amount, call.final)
        return self._call(
            "capture",
            lambda: self._idempotent_call(
                call.idempotency_key, fingerprint, lambda: self._capture(call)
            ),
        )

    def _capture(self, call: CaptureCall) -> CaptureResult:
        payment = self._open_payment(call.provider_reference, "capture")
        if call.amount.currency != payment.authorized.currency or call.amount.amount_minor <= 0:
            raise InvalidProviderRequest(
                "capture amount must be positive and in the authorized currency",
                provider=self._name,
                provider_reference=payment.reference,
            )
        capturable = payment.authorized.amount_minor - payment.captured
        if call.amount.amount_minor > capturable:
            raise CaptureExceedsAuthorization(
                "capture exceeds the remaining authorization",
                provider=self._name,
                provider_reference=payment.reference,
                requested=call.amount.amount_minor,
                capturable=capturable,
            )
        payment.captured += call.amount.amount_minor
        done = (
            not self.multi_capture
            or call.final
            or payment.captured == payment.authorized.amount_minor
        )
        payment.state = (
            ProviderPaymentState.CAPTURED if done else ProviderPaymentState.PARTIALLY_CAPTURED
        )
        fee = self.fees.fee(call.amount)
        capture_reference = f"sbx_ch_{uuid.uuid4().hex[:20]}"
        self._lines.append(
            SettlementLine(
                provider=self._name,
                type=LineType.CHARGE,
                provider_reference=capture_reference,
                amount=call.amount,
                fee=fee,
                occurred_at=self._clock(),
                payment_reference=payment.reference,
            )
        )
        return CaptureResult(
            self._name, payment.reference, capture_reference, call.amount, payment.state, fee
        )

    def void(self, call: VoidCall) -> VoidResult:
        fingerprint = ("void", call.provider_reference)
        return self._call(
            "void",
            lambda: self._idempotent_call(
                call.idempotency_key, fingerprint, lambda: self._void(call)
            ),
        )

    def _void(self, call: VoidCall) -> VoidResult:
        payment = self._open_payment(call.provider_reference, "void")
        if payment.state is not ProviderPaymentState.AUTHORIZED:
            raise InvalidPaymentState(
                "only an uncaptured authorization can be voided",
                provider=self._name,
                provider_reference=payment.reference,
                state=payment.state.value,
            )
        payment.state = ProviderPaymentState.VOIDED
        return VoidResult(self._name, payment.reference, payment.state)

    def refund(self, call: RefundCall) -> RefundResult:
        fingerprint = ("refund", call.provider_reference, call.refund_id, call.amount)
        return self._call(
            "refund",
            lambda: self._idempotent_call(
                call.idempotency_key, fingerprint, lambda: self._refund(call)
            ),
        )

    def _refund(self, call: RefundCall) -> RefundResult:
        payment = self._payment(call.provider_reference)
        if payment.captured == 0:
            raise InvalidPaymentState(
                "nothing captured to refund",
                provider=self._name,
                provider_reference=payment.reference,
                state=payment.state.value,
            )
        refundable = payment.captured - payment.refunded
        if call.amount.amount_minor <= 0 or call.amount.currency != payment.authorized.currency:
            raise InvalidProviderRequest("refund amount must be positive", provider=self._name)
        if call.amount.amount_minor > refundable:
            raise RefundExceedsCapture(
                "refund exceeds the captured amount not yet refunded",
                provider=self._name,
                provider_reference=payment.reference,
                requested=call.amount.amount_minor,
                refundable=refundable,
            )
        payment.refunded += call.amount.amount_minor
        reference = f"sbx_re_{uuid.uuid4().hex[:20]}"
        self._lines.append(
            SettlementLine(
                provider=self._name,
                type=LineType.REFUND,
                provider_reference=reference,
                amount=call.amount,
                fee=Money.zero(call.amount.currency),
                occurred_at=self._clock(),
                payment_reference=payment.reference,
            )
        )
        return RefundResult(self._name, payment.reference, reference, call.amount, succeeded=True)

    def fetch_status(self, provider_reference: str) -> ProviderStatus:
        return self._call("fetch_status", lambda: self._status(provider_reference))

    def _status(self, provider_reference: str) -> ProviderStatus:
        with self._lock:
            payment = self._payment(provider_reference)
            currency = payment.authorized.currency
            return ProviderStatus(
                provider=self._name,
                provider_reference=payment.reference,
                state=payment.state,
                authorized=payment.authorized,
                captured=Money(payment.captured, currency),
                refunded=Money(payment.refunded, currency),
            )

    def find_authorization(self, payment_id: str) -> AuthorizationResult | None:
        def find() -> AuthorizationResult | None:
            with self._lock:
                reference = self._by_payment_id.get(payment_id)
                if reference is None:
                    return None
                return self._authorization_result(self._payment(reference))

        return self._call("find", find)

    def settlement_report(self, since: datetime, until: datetime) -> list[SettlementLine]:
        def report() -> list[SettlementLine]:
            with self._lock:
                return [
                    line
                    for line in self._lines
                    if line.occurred_at is not None and since <= line.occurred_at < until
                ]

        return self._call("report", report)

    # -- sandbox-only helpers ---------------------------------------------------------------
    def snapshot(self) -> tuple[list[tuple[str, ProviderStatus]], list[SettlementLine]]:
        """Every payment (our payment id, the provider's view) and every line of its books
        (charges, refunds, payouts), without faults or latency: the provider's own state, for
        an auditor or a checker that must not trust the ledger."""
        with self._lock:
            payments = [(p.payment_id, self._status(ref)) for ref, p in self._payments.items()]
            return payments, list(self._lines)

    def pay_out(self, currency: str) -> SettlementLine | None:
        """Pay the net of every unpaid charge and refund in ``currency`` to the bank (a payout
        line in the report), as a provider does on its payout schedule."""
        with self._lock:
            pending = [
                line for line in self._lines[self._paid_out :] if line.amount.currency == currency
            ]
            if not pending:
                return None
            net = 0
            for line in pending:
                fee = line.fee.amount_minor if line.fee else 0
                sign = 1 if line.type is LineType.CHARGE else -1
                net += sign * line.amount.amount_minor - fee
            payout = SettlementLine(
                provider=self._name,
                type=LineType.PAYOUT,
                provider_reference=f"sbx_po_{uuid.uuid4().hex[:20]}",
                amount=Money(max(net, 0), currency),
                occurred_at=self._clock(),
            )
            self._lines.append(payout)
            self._paid_out = len(self._lines)
            return payout

    # -- internals --------------------------------------------------------------------------
    def _payment(self, reference: str) -> _Payment:
        payment = self._payments.get(reference)
        if payment is None:
            raise PaymentNotFound(
                "no such authorization", provider=self._name, provider_reference=reference
            )
        if payment.state in OPEN_STATES and self._clock() >= payment.expires_at:
            payment.state = ProviderPaymentState.EXPIRED
        return payment

    def _open_payment(self, reference: str, operation: str) -> _Payment:
        payment = self._payment(reference)
        if payment.state not in OPEN_STATES:
            raise InvalidPaymentState(
                f"cannot {operation} a payment in state {payment.state.value}",
                provider=self._name,
                provider_reference=reference,
                state=payment.state.value,
            )
        return payment

    def _authorization_result(self, payment: _Payment) -> AuthorizationResult:
        return AuthorizationResult(
            self._name, payment.reference, payment.authorized, payment.state, payment.expires_at
        )
