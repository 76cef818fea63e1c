"""Why a money event is rejected: one class per rule, each with a stable reason code.

The codes go into ``<topic>.rejected`` and the rejections table, so a person can act on them;
never rename one. Every error carries ``payment_id`` and ``event_id`` in its context.
``out_of_order`` marks rejections that a later event can cure: re-drive the record from the
rejected topic once the missing event has been applied.
"""

from __future__ import annotations

from typing import Any

from ledger.errors import CurrencyMismatch, ValidationError


class PaymentRejected(ValidationError):
    """A money event breaks a payment rule. Never retriable as is."""

    code = "PAYMENT_REJECTED"
    out_of_order = False

    def __init__(
        self, message: str, *, payment_id: str | None, event_id: str, **context: Any
    ) -> None:
        if payment_id is not None:  # a refund reported by reference names the reference instead
            context = {"payment_id": payment_id, **context}
        super().__init__(message, event_id=event_id, **context)
        self.payment_id = payment_id
        self.event_id = event_id


class UnknownPayment(PaymentRejected):
    """No authorization for this payment yet. Events of one payment share a partition, so this
    means the authorization was rejected, lost or keyed wrongly: re-drive after it is applied."""

    code = "UNKNOWN_PAYMENT"
    out_of_order = True


class BeforeAuthorization(PaymentRejected):
    """A capture, refund or increment that occurred before the authorization it follows."""

    code = "BEFORE_AUTHORIZATION"


class DuplicateAuthorization(PaymentRejected):
    """A second PaymentAuthorized (another event_id) for a payment that already has a hold."""

    code = "DUPLICATE_AUTHORIZATION"


class PaymentCurrencyMismatch(PaymentRejected, CurrencyMismatch):
    """An amount in another currency than the authorization's: one currency per payment."""

    code = "CURRENCY_MISMATCH"


class NetworkMismatch(PaymentRejected):
    """The event's network_id is not the payment's: another tenant's event."""

    code = "NETWORK_MISMATCH"


class ProviderMismatch(PaymentRejected):
    """A capture or external refund from another provider than the one holding the payment."""

    code = "PROVIDER_MISMATCH"


class ProviderReferenceMismatch(PaymentRejected):
    """An external refund names a provider reference this payment never had."""

    code = "PROVIDER_REFERENCE_MISMATCH"


class InvalidAmount(PaymentRejected):
    """A negative amount, line or fee, or a zero amount where only a positive one makes sense."""

    code = "INVALID_AMOUNT"


class LinesDoNotSum(PaymentRejected):
    """Revenue lines (net + VAT) do not add up to the amount."""

    code = "LINES_DO_NOT_SUM"


class CaptureExceedsAuthorization(PaymentRejected):
    """Captured in total would exceed authorized + increments."""

    code = "CAPTURE_EXCEEDS_AUTHORIZATION"


class PaymentAlreadyVoided(PaymentRejected):
    """Capture or increment after the hold was voided."""

    code = "PAYMENT_VOIDED"


class AuthorizationAlreadyExpired(PaymentRejected):
    """Capture or increment after the provider let the hold expire."""

    code = "AUTHORIZATION_EXPIRED"


class PaymentFinalized(PaymentRejected):
    """Capture, increment or void after a final capture released the hold."""

    code = "PAYMENT_FINALIZED"


class DuplicateCapture(PaymentRejected):
    """A capture_id already applied under another event_id: it would count the money twice."""

    code = "DUPLICATE_CAPTURE"


class RefundExceedsCaptured(PaymentRejected):
    """Refund above captured − refunded − disputed, in total or for one tariff dimension."""

    code = "REFUND_EXCEEDS_CAPTURED"


class DuplicateRefund(PaymentRejected):
    """A refund_id (or provider refund reference) already applied under another event_id."""

    code = "DUPLICATE_REFUND"


class RefundAmountMismatch(PaymentRejected):
    """RefundFailed for a booked refund, but with another amount."""

    code = "REFUND_AMOUNT_MISMATCH"


class DisputeExceedsCaptured(PaymentRejected):
    """Disputed amount above captured − refunded − already disputed."""

    code = "DISPUTE_EXCEEDS_CAPTURED"


class DuplicateDispute(PaymentRejected):
    """DisputeOpened for a dispute_id that is already open or resolved."""

    code = "DUPLICATE_DISPUTE"


class UnknownDispute(PaymentRejected):
    """DisputeResolved for a dispute never opened: re-drive after the DisputeOpened is applied."""

    code = "UNKNOWN_DISPUTE"
    out_of_order = True


class DisputeAlreadyResolved(PaymentRejected):
    """A second resolution of the same dispute."""

    code = "DISPUTE_ALREADY_RESOLVED"


class DisputeAmountMismatch(PaymentRejected):
    """The resolution's amount is not the disputed amount (partial outcomes are not modelled)."""

    code = "DISPUTE_AMOUNT_MISMATCH"


class UnknownReceivable(PaymentRejected):
    """A collection or write-off of a CDR that has no receivable on this payment."""

    code = "UNKNOWN_RECEIVABLE"


class ReceivableExceeded(PaymentRejected):
    """More collected or written off (or captured against it) than the receivable has open."""

    code = "RECEIVABLE_EXCEEDED"


REASON_CODES: tuple[str, ...] = tuple(
    cls.code
    for cls in (
        UnknownPayment,
        DuplicateAuthorization,
        PaymentCurrencyMismatch,
        NetworkMismatch,
        ProviderMismatch,
        ProviderReferenceMismatch,
        InvalidAmount,
        LinesDoNotSum,
        CaptureExceedsAuthorization,
        PaymentAlreadyVoided,
        AuthorizationAlreadyExpired,
        PaymentFinalized,
        DuplicateCapture,
        RefundExceedsCaptured,
        DuplicateRefund,
        RefundAmountMismatch,
        DisputeExceedsCaptured,
        DuplicateDispute,
        UnknownDispute,
        DisputeAlreadyResolved,
        DisputeAmountMismatch,
        UnknownReceivable,
        ReceivableExceeded,
    )
)
"""Every reason code a payment event can be rejected with."""
