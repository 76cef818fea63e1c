"""Stripe adapter: PaymentIntents with manual capture, through stripe-python's ``StripeClient``.

Mapping: authorize = create a PaymentIntent with ``capture_method=manual, confirm=true`` and the
vaulted payment method; capture = ``capture`` with ``amount_to_capture`` (one capture, the rest
of the hold is released, unless multicapture is enabled on the account and ``final`` is False);
void = ``cancel``; refund = ``refunds.create(payment_intent=...)``. Every mutating request sends
the caller's key as ``Idempotency-Key``; Stripe keeps keys at least 24 hours and refuses a key
reused with other parameters (IdempotencyConflict). stripe-python's own retries are off by
default (``max_network_retries=0``) so that retries go through ``ledger.settlement.retry`` and
the breaker.

Stripe's decline arrives as HTTP 402 (CardError → PaymentDeclined). A connection failure or 5xx
is in doubt: retry with the same key, or read the PaymentIntent with ``fetch_status``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import stripe

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
    ProviderAuthenticationError,
    ProviderError,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
    RefundExceedsCapture,
    ReportFormatError,
)
from ledger.errors import LedgerError
from ledger.money import Money
from ledger.settlement.reconciliation import LineType, SettlementLine

T = TypeVar("T")

PAYMENT_INTENT_STATES: dict[str, ProviderPaymentState] = {
    "requires_capture": ProviderPaymentState.AUTHORIZED,
    "succeeded": ProviderPaymentState.CAPTURED,
    "canceled": ProviderPaymentState.VOIDED,
    "processing": ProviderPaymentState.PENDING,
    "requires_action": ProviderPaymentState.PENDING,
    "requires_confirmation": ProviderPaymentState.PENDING,
    # After confirm=true this means the payment method failed; Stripe normally raises a
    # CardError first, so this is reached only when the failure came asynchronously.
    "requires_payment_method": ProviderPaymentState.FAILED,
}

# Balance transaction ``type`` / ``reporting_category`` → reconciliation line type.
BALANCE_TYPES: dict[str, LineType] = {
    "charge": LineType.CHARGE,
    "payment": LineType.CHARGE,
    "refund": LineType.REFUND,
    "payment_refund": LineType.REFUND,
    "payout": LineType.PAYOUT,
    "stripe_fee": LineType.FEE,
    "fee": LineType.FEE,
    "tax": LineType.FEE,
}


def _money(amount_minor: int, currency: str) -> Money:
    return Money(abs(int(amount_minor)), currency.upper())


class StripeProvider:
    """``PaymentProvider`` backed by Stripe (or stripe-mock, which is stateless)."""

    def __init__(self, client: stripe.StripeClient, *, name: str = "stripe") -> None:
        self._client = client
        self._name = name

    @classmethod
    def connect(
        cls,
        api_key: str,
        *,
        api_base: str | None = None,
        http_client: stripe.HTTPClient | None = None,
        max_network_retries: int = 0,
        name: str = "stripe",
    ) -> StripeProvider:
        """Build a client; ``api_base`` points at stripe-mock (``http://127.0.0.1:<port>``)."""
        client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else None,
            http_client=http_client,
            max_network_retries=max_network_retries,
        )
        return cls(client, name=name)

    @property
    def name(self) -> str:
        return self._name

    # -- the port ---------------------------------------------------------------------------
    def authorize(self, call: AuthorizeCall) -> AuthorizationResult:
        params: Any = {
            "amount": call.amount.amount_minor,
            "currency": call.amount.currency.lower(),
            "capture_method": "manual",
            "confirm": True,
            "payment_method": call.payment_token,
            "payment_method_types": ["card"],
            "metadata": {**call.metadata, "payment_id": call.payment_id},
        }
        intent = self._call(
            "authorize",
            lambda: self._client.v1.payment_intents.create(
                params=params, options={"idempotency_key": call.idempotency_key}
            ),
        )
        return self._authorization(intent)

    def capture(self, call: CaptureCall) -> CaptureResult:
        params: Any = {
            "amount_to_capture": call.amount.amount_minor,
            "expand": ["latest_charge.balance_transaction"],
        }
        if not call.final:
            params["final_capture"] = False  # needs multicapture enabled on the account
        intent = self._call(
            "capture",
            lambda: self._client.v1.payment_intents.capture(
                call.provider_reference,
                params=params,
                options={"idempotency_key": call.idempotency_key},
            ),
        )
        charge = intent.latest_charge
        capture_reference = intent.id
        fee: Money | None = None
        if isinstance(charge, stripe.Charge):
            capture_reference = charge.id
            balance = charge.balance_transaction
            if isinstance(balance, stripe.BalanceTransaction):
                fee = _money(balance.fee, balance.currency)
        elif isinstance(charge, str):
            capture_reference = charge
        return CaptureResult(
            provider=self._name,
            provider_reference=intent.id,
            capture_reference=capture_reference,
            amount=_money(intent.amount_received, intent.currency),
            state=self._state(intent),
            fee=fee,
        )

    def void(self, call: VoidCall) -> VoidResult:
        intent = self._call(
            "void",
            lambda: self._client.v1.payment_intents.cancel(
                call.provider_reference, options={"idempotency_key": call.idempotency_key}
            ),
        )
        return VoidResult(self._name, intent.id, self._state(intent))

    def refund(self, call: RefundCall) -> RefundResult:
        params: Any = {
            "payment_intent": call.provider_reference,
            "amount": call.amount.amount_minor,
            # Marks refunds made by evledger; a refund without it is an external one (webhooks).
            "metadata": {"evledger_refund_id": call.refund_id, "payment_id": call.payment_id},
        }
        refund = self._call(
            "refund",
            lambda: self._client.v1.refunds.create(
                params=params, options={"idempotency_key": call.idempotency_key}
            ),
        )
        return RefundResult(
            provider=self._name,
            provider_reference=call.provider_reference,
            refund_reference=refund.id,
            amount=_money(refund.amount, refund.currency),
            succeeded=refund.status == "succeeded",
        )

    def fetch_status(self, provider_reference: str) -> ProviderStatus:
        intent = self._call(
            "fetch_status",
            lambda: self._client.v1.payment_intents.retrieve(
                provider_reference, params={"expand": ["latest_charge"]}
            ),
        )
        refunded = 0
        if isinstance(intent.latest_charge, stripe.Charge):
            refunded = intent.latest_charge.amount_refunded
        return ProviderStatus(
            provider=self._name,
            provider_reference=intent.id,
            state=self._state(intent),
            authorized=_money(intent.amount, intent.currency),
            captured=_money(intent.amount_received, intent.currency),
            refunded=_money(refunded, intent.currency),
        )

    def find_authorization(self, payment_id: str) -> AuthorizationResult | None:
        """Search PaymentIntents by ``metadata['payment_id']``. Stripe's search index lags by
        up to a minute: prefer retrying the authorize with the same idempotency key."""
        quoted = payment_id.replace("\\", "\\\\").replace("'", "\\'")
        query = f"metadata['payment_id']:'{quoted}'"
        found = self._call(
            "find",
            lambda: self._client.v1.payment_intents.search(params={"query": query, "limit": 10}),
        )
        intents = [i for i in found.data if _metadata(i).get("payment_id") == payment_id]
        if not intents:
            return None
        return self._authorization(max(intents, key=lambda i: i.created))

    def settlement_report(self, since: datetime, until: datetime) -> list[SettlementLine]:
        window: Any = {
            "created": {"gte": int(since.timestamp()), "lt": int(until.timestamp())},
            "limit": 100,
        }
        page = self._call(
            "report", lambda: self._client.v1.balance_transactions.list(params=window)
        )
        lines: list[SettlementLine] = []
        for bt in self._call("report", lambda: list(page.auto_paging_iter())):
            kind = BALANCE_TYPES.get(bt.reporting_category) or BALANCE_TYPES.get(bt.type)
            source = bt.source
            reference = source if isinstance(source, str) else (source.id if source else bt.id)
            lines.append(
                SettlementLine(
                    provider=self._name,
                    type=kind or LineType.OTHER,
                    provider_reference=reference or bt.id,
                    amount=_money(bt.amount, bt.currency),
                    fee=_money(bt.fee, bt.currency),
                    occurred_at=datetime.fromtimestamp(bt.created, UTC),
                )
            )
        return lines

    # -- mapping ----------------------------------------------------------------------------
    def _state(self, intent: stripe.PaymentIntent) -> ProviderPaymentState:
        if intent.status == "canceled" and intent.cancellation_reason == "automatic":
            return ProviderPaymentState.EXPIRED  # Stripe cancels uncaptured holds when they lapse
        return PAYMENT_INTENT_STATES.get(intent.status, ProviderPaymentState.PENDING)

    def _authorization(self, intent: stripe.PaymentIntent) -> AuthorizationResult:
        return AuthorizationResult(
            provider=self._name,
            provider_reference=intent.id,
            amount=_money(intent.amount, intent.currency),
            state=self._state(intent),
        )

    def _call(self, operation: str, request: Callable[[], T]) -> T:
        try:
            return request()
        except stripe.StripeError as exc:
            raise translate_error(exc, self._name, operation) from exc


def _metadata(obj: Any) -> dict[str, str]:
    """StripeObject metadata as a plain dict (its stub type hides the mapping)."""
    return {str(k): str(v) for k, v in (getattr(obj, "metadata", None) or {}).items()}


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    if not headers:
        return None
    for name, value in headers.items():
        if name.lower() == "retry-after":
            try:
                return float(value)
            except ValueError:
                return None
    return None


def translate_error(exc: stripe.StripeError, provider: str, operation: str) -> ProviderError:
    """Map a stripe-python exception onto the provider error vocabulary."""
    code = exc.code
    ctx: dict[str, Any] = {
        "provider": provider,
        "provider_code": code,
        "operation": operation,
        "request_id": exc.request_id,
        "http_status": exc.http_status,
    }
    message = exc.user_message or str(exc)
    if isinstance(exc, stripe.CardError):
        decline = (exc.error.decline_code if exc.error else None) or code or "card_declined"
        return PaymentDeclined(
            message, provider=provider, decline_code=decline, operation=operation,
            request_id=exc.request_id,
        )  # fmt: skip
    if isinstance(exc, stripe.RateLimitError):
        return ProviderRateLimited(message, retry_after=_retry_after(exc.headers), **ctx)
    if isinstance(exc, stripe.APIConnectionError):
        return ProviderTimeout(message, **ctx)
    if isinstance(exc, stripe.IdempotencyError):
        return IdempotencyConflict(message, **ctx)
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        return ProviderAuthenticationError(message, **ctx)
    if isinstance(exc, stripe.InvalidRequestError):
        if code == "resource_missing":
            return PaymentNotFound(message, **ctx)
        if code == "payment_intent_unexpected_state" or code == "charge_already_refunded":
            return InvalidPaymentState(message, **ctx)
        if code == "amount_too_large" and operation == "capture":
            return CaptureExceedsAuthorization(message, **ctx)
        if code == "amount_too_large" and operation == "refund":
            return RefundExceedsCapture(message, **ctx)
        return InvalidProviderRequest(message, **ctx)
    if isinstance(exc, stripe.APIError):
        # 5xx: Stripe may have applied the request; the same idempotency key makes a retry safe.
        error = ProviderUnavailable(message, **ctx)
        error.in_doubt = True
        return error
    return ProviderError(message, retriable=False, **ctx)


# ---------------------------------------------------------------------------- CSV reports
# Column aliases: the Reports API "balance_change_from_activity.itemized" export uses the first
# name, the Dashboard's Balance → Export the second.
STRIPE_CSV_COLUMNS: dict[str, tuple[str, ...]] = {
    "id": ("balance_transaction_id", "id"),
    "type": ("reporting_category", "type"),
    "source": ("source_id", "source"),
    "gross": ("gross", "amount"),
    "fee": ("fee",),
    "currency": ("currency",),
    "created": ("created_utc", "created (utc)", "created"),
}


def _pick(row: Mapping[str, str], names: Iterable[str]) -> str | None:
    for name in names:
        if name in row and row[name] != "":
            return row[name]
    return None


def parse_balance_transactions_csv(text: str, *, provider: str = "stripe") -> list[SettlementLine]:
    """Parse a Stripe balance-transactions CSV export into settlement lines.

    Accepted columns (case-insensitive, either name): balance_transaction_id|id,
    reporting_category|type, source_id|source, gross|amount, fee, currency,
    created_utc|created (utc)|created. Amounts are decimal major units ("12.34", "-5.00");
    created is "YYYY-MM-DD HH:MM[:SS]" UTC. Raises ReportFormatError on a missing column or an
    unreadable value.
    """
    reader = csv.DictReader(io.StringIO(text))
    headers = {h.strip().lower() for h in reader.fieldnames or []}
    for field_name, names in STRIPE_CSV_COLUMNS.items():
        if field_name != "source" and not headers.intersection(names):
            raise ReportFormatError(
                f"Stripe CSV lacks a {'/'.join(names)} column", provider=provider
            )
    lines = []
    for number, raw in enumerate(reader, start=2):
        row = {k.strip().lower(): (v or "").strip() for k, v in raw.items() if k}
        try:
            currency = (_pick(row, STRIPE_CSV_COLUMNS["currency"]) or "").upper()
            bt_id = _pick(row, STRIPE_CSV_COLUMNS["id"]) or ""
            kind = (_pick(row, STRIPE_CSV_COLUMNS["type"]) or "").lower()
            created = _pick(row, STRIPE_CSV_COLUMNS["created"])
            lines.append(
                SettlementLine(
                    provider=provider,
                    type=BALANCE_TYPES.get(kind, LineType.OTHER),
                    provider_reference=_pick(row, STRIPE_CSV_COLUMNS["source"]) or bt_id,
                    amount=_csv_money(_pick(row, STRIPE_CSV_COLUMNS["gross"]), currency),
                    fee=_csv_money(_pick(row, STRIPE_CSV_COLUMNS["fee"]) or "0", currency),
                    occurred_at=_csv_time(created) if created else None,
                )
            )
        except (ValueError, InvalidOperation, LedgerError) as exc:
            raise ReportFormatError(
                f"unreadable Stripe CSV row: {exc}", provider=provider, line=number
            ) from exc
    return lines


def _csv_money(value: str | None, currency: str) -> Money:
    if value is None:
        raise ValueError("missing amount")
    amount = Money.of(Decimal(value.replace(",", "")), currency)
    return Money(abs(amount.amount_minor), currency)


def _csv_time(value: str) -> datetime:
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise ValueError(f"unreadable timestamp {value!r}")
