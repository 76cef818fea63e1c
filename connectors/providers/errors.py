"""Errors every payment-provider adapter raises, whatever the vendor.

Adapters translate vendor exceptions here with ``raise ... from exc``. Three flags decide what the
caller does next:

- ``retriable``: trying again (with the same idempotency key) may succeed;
- ``in_doubt``: the provider may have applied the call; resolve by ``fetch_status`` /
  ``find_authorization`` or by retrying with the same key, never by guessing;
- ``declined``: the payment method was refused; final for this instruction.
"""

from __future__ import annotations

from typing import Any

from ledger.errors import InfrastructureError


class ProviderError(InfrastructureError):
    """Root of provider errors. ``provider_code`` is the vendor's own code, when it gave one."""

    code = "PROVIDER_ERROR"
    declined = False
    in_doubt = False
    default_retriable = False

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        retriable: bool | None = None,
        provider_code: str | None = None,
        retry_after: float | None = None,
        **context: Any,
    ) -> None:
        super().__init__(
            message,
            retriable=self.default_retriable if retriable is None else retriable,
            provider=provider,
            **context,
        )
        self.provider = provider
        self.provider_code = provider_code
        self.retry_after = retry_after


class PaymentDeclined(ProviderError):
    """The issuer or the provider's risk engine refused the payment method."""

    code = "PAYMENT_DECLINED"
    declined = True

    def __init__(self, message: str, *, provider: str, decline_code: str, **context: Any) -> None:
        super().__init__(message, provider=provider, provider_code=decline_code, **context)
        self.decline_code = decline_code


class ProviderUnavailable(ProviderError):
    """The provider could not be reached or answered 5xx before doing anything we know of."""

    code = "PROVIDER_UNAVAILABLE"
    default_retriable = True


class ProviderRateLimited(ProviderUnavailable):
    code = "PROVIDER_RATE_LIMITED"


class ProviderTimeout(ProviderUnavailable):
    """No answer in time: the call may or may not have taken effect."""

    code = "PROVIDER_TIMEOUT"
    in_doubt = True


class ProviderAuthenticationError(ProviderError):
    """Wrong or revoked credentials: an operator must act."""

    code = "PROVIDER_AUTHENTICATION"


class InvalidProviderRequest(ProviderError):
    """The provider rejected the request as invalid; retrying the same request cannot help."""

    code = "PROVIDER_INVALID_REQUEST"


class IdempotencyConflict(InvalidProviderRequest):
    """The idempotency key was already used with different parameters."""

    code = "IDEMPOTENCY_CONFLICT"


class PaymentNotFound(InvalidProviderRequest):
    code = "PROVIDER_PAYMENT_NOT_FOUND"


class InvalidPaymentState(InvalidProviderRequest):
    """The operation is not allowed in the payment's current state (void after capture, ...)."""

    code = "PROVIDER_INVALID_STATE"


class CaptureExceedsAuthorization(InvalidProviderRequest):
    code = "CAPTURE_EXCEEDS_AUTHORIZATION"


class RefundExceedsCapture(InvalidProviderRequest):
    code = "REFUND_EXCEEDS_CAPTURE"


class ReportFormatError(InvalidProviderRequest):
    """A settlement report file lacks a column we need or holds an unreadable value."""

    code = "REPORT_FORMAT"
