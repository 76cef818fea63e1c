"""Payment-provider adapters behind one port (``base.PaymentProvider``): sandbox, Stripe, Braintree.

Import the adapters from their modules (``connectors.providers.stripe`` ...); this package exports
the port's vocabulary only, so importing it loads no vendor SDK.
"""

from connectors.providers.base import (
    Action,
    AuthorizationResult,
    AuthorizeCall,
    CaptureCall,
    CaptureResult,
    PaymentProvider,
    ProviderPaymentState,
    ProviderStatus,
    RefundCall,
    RefundResult,
    VoidCall,
    VoidResult,
    idempotency_key,
)

__all__ = [
    "Action",
    "AuthorizationResult",
    "AuthorizeCall",
    "CaptureCall",
    "CaptureResult",
    "PaymentProvider",
    "ProviderPaymentState",
    "ProviderStatus",
    "RefundCall",
    "RefundResult",
    "VoidCall",
    "VoidResult",
    "idempotency_key",
]
