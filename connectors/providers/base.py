"""The payment-provider port: what the settlement connector asks of Stripe, Braintree, sandbox.

Every mutating call carries an ``idempotency_key`` the caller derived from the instruction's
``event_id`` with ``idempotency_key()`` and persisted *before* the call
(docs/providers.md, "Idempotency keys"). A retry resends the same key; an adapter whose
provider has no keys (Braintree) makes the call idempotent its own way and says how in its
docstring.

Amounts are ``Money``; every result says which provider answered and its reference for the object.
Errors are the classes of ``connectors.providers.errors``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable

from ledger.money import Money
from ledger.settlement.reconciliation import SettlementLine


class Action(StrEnum):
    AUTHORIZE = "authorize"
    CAPTURE = "capture"
    VOID = "void"
    REFUND = "refund"


def idempotency_key(event_id: str, action: Action | str) -> str:
    """The provider idempotency key for one instruction: stable across retries and restarts.

    ``event_id`` is the instruction event's id (a UUID), so one instruction maps to exactly one key.
    """
    return f"evl-{Action(action).value}-{event_id}"


class ProviderPaymentState(StrEnum):
    """Where a payment stands at the provider, in our words."""

    PENDING = "pending"  # processing, or waiting for customer action (3-D Secure)
    AUTHORIZED = "authorized"  # hold placed, nothing captured yet
    PARTIALLY_CAPTURED = "partially_captured"  # multi-capture: some captured, hold still open
    CAPTURED = "captured"  # captured; the rest of the hold (if any) released
    VOIDED = "voided"
    EXPIRED = "expired"
    DECLINED = "declined"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class AuthorizeCall:
    payment_id: str
    amount: Money
    payment_token: str
    idempotency_key: str
    payment_method: str = "card"
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CaptureCall:
    payment_id: str
    provider_reference: str
    amount: Money
    idempotency_key: str
    final: bool = True


@dataclass(frozen=True, slots=True)
class VoidCall:
    payment_id: str
    provider_reference: str
    idempotency_key: str


@dataclass(frozen=True, slots=True)
class RefundCall:
    payment_id: str
    provider_reference: str
    refund_id: str
    amount: Money
    idempotency_key: str


@dataclass(frozen=True, slots=True)
class AuthorizationResult:
    provider: str
    provider_reference: str
    amount: Money
    state: ProviderPaymentState
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class CaptureResult:
    provider: str
    provider_reference: str  # the authorization's reference
    capture_reference: str  # the charge / settled transaction; what settlement reports name
    amount: Money
    state: ProviderPaymentState
    fee: Money | None = None


@dataclass(frozen=True, slots=True)
class VoidResult:
    provider: str
    provider_reference: str
    state: ProviderPaymentState


@dataclass(frozen=True, slots=True)
class RefundResult:
    provider: str
    provider_reference: str
    refund_reference: str
    amount: Money
    succeeded: bool  # False while the provider still processes it


@dataclass(frozen=True, slots=True)
class ProviderStatus:
    """A payment as the provider sees it now; resolves in-doubt outcomes."""

    provider: str
    provider_reference: str
    state: ProviderPaymentState
    authorized: Money
    captured: Money
    refunded: Money


@runtime_checkable
class PaymentProvider(Protocol):
    """A payment service provider. Implementations: sandbox, stripe, braintree."""

    @property
    def name(self) -> str: ...

    def authorize(self, call: AuthorizeCall) -> AuthorizationResult:
        """Place a hold. Raises PaymentDeclined, ProviderTimeout (in doubt), ..."""
        ...

    def capture(self, call: CaptureCall) -> CaptureResult:
        """Capture up to the authorized amount. Raises CaptureExceedsAuthorization, ..."""
        ...

    def void(self, call: VoidCall) -> VoidResult:
        """Release a hold that has not been captured. Raises InvalidPaymentState after capture."""
        ...

    def refund(self, call: RefundCall) -> RefundResult:
        """Return captured money. Raises RefundExceedsCapture."""
        ...

    def fetch_status(self, provider_reference: str) -> ProviderStatus:
        """The provider's current view of one payment. Raises PaymentNotFound."""
        ...

    def find_authorization(self, payment_id: str) -> AuthorizationResult | None:
        """The hold placed for ``payment_id``, if any: resolves an authorize that timed out
        before we learnt its provider reference."""
        ...

    def settlement_report(self, since: datetime, until: datetime) -> list[SettlementLine]:
        """Settled money movements in ``[since, until)`` for reconciliation."""
        ...
