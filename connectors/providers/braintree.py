"""Braintree adapter over the braintree SDK's XML gateway.

Mapping: authorize = ``transaction.sale`` without ``submit_for_settlement`` (status
``authorized``), ``order_id`` = our payment id; capture = ``submit_for_settlement(id, amount)``
(one capture per transaction; the rest of the hold is released); void = ``void``; refund =
``refund(id, {amount, order_id=refund id})``, allowed once the sale is settling or settled.

Idempotency: the XML API has no idempotency key a merchant can rely on (At-Most-Once Processing
with ``api_request_key`` exists but must be enabled per merchant and excludes the duplicate
check; ``send_api_request_key=True`` sends our key once that is done). So the adapter makes
calls safe to repeat itself:

- sale and refund first search by ``order_id`` (payment id / refund id) and return what they find;
  Braintree's search index can lag by seconds, so its duplicate-transaction check is the second
  line of defence;
- capture and void that fail because the transaction already moved on read it back and return
  it when it is in the state the call would have produced.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import braintree
from braintree.exceptions.http.connection_error import ConnectionError as BtConnectionError
from braintree.exceptions.http.timeout_error import ConnectTimeoutError
from braintree.exceptions.http.timeout_error import TimeoutError as BtTimeoutError

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

STATES: dict[str, ProviderPaymentState] = {
    "authorizing": ProviderPaymentState.PENDING,
    "authorized": ProviderPaymentState.AUTHORIZED,
    "submitted_for_settlement": ProviderPaymentState.CAPTURED,
    "settling": ProviderPaymentState.CAPTURED,
    "settlement_pending": ProviderPaymentState.CAPTURED,
    "settled": ProviderPaymentState.CAPTURED,
    "settlement_confirmed": ProviderPaymentState.CAPTURED,
    "voided": ProviderPaymentState.VOIDED,
    "authorization_expired": ProviderPaymentState.EXPIRED,
    "processor_declined": ProviderPaymentState.DECLINED,
    "gateway_rejected": ProviderPaymentState.DECLINED,
    "failed": ProviderPaymentState.FAILED,
    "settlement_declined": ProviderPaymentState.FAILED,
}
LIVE_SALE_STATES = {s for s, state in STATES.items() if state not in {
    ProviderPaymentState.DECLINED, ProviderPaymentState.FAILED
}}  # fmt: skip

# Validation error codes (braintree.ErrorCodes.Transaction) with a meaning of their own.
CAPTURE_TOO_LARGE = "91522"  # SettlementAmountIsTooLarge
REFUND_TOO_LARGE = "91521"  # RefundAmountIsTooLarge
WRONG_STATE = {"91504", "91506", "91507", "91512"}  # cannot void / refund / submit / refunded


def _amount(money: Money) -> str:
    return f"{money.to_decimal():f}"


def _money(value: Any, currency: str) -> Money:
    return Money.of(Decimal(str(value)), currency)


class BraintreeProvider:
    """``PaymentProvider`` backed by a Braintree gateway (or the fake one in tests/fakes)."""

    def __init__(
        self,
        gateway: braintree.BraintreeGateway,
        *,
        name: str = "braintree",
        merchant_accounts: Mapping[str, str] | None = None,
        send_api_request_key: bool = False,
    ) -> None:
        self._gateway = gateway
        self._name = name
        self._merchant_accounts = dict(merchant_accounts or {})
        self._send_key = send_api_request_key

    @classmethod
    def connect(
        cls,
        *,
        merchant_id: str,
        public_key: str,
        private_key: str,
        environment: braintree.Environment | str = "sandbox",
        timeout: float = 30.0,
        name: str = "braintree",
        merchant_accounts: Mapping[str, str] | None = None,
    ) -> BraintreeProvider:
        config = braintree.Configuration(
            environment=environment,
            merchant_id=merchant_id,
            public_key=public_key,
            private_key=private_key,
            timeout=timeout,
            wrap_http_exceptions=True,  # requests' exceptions become braintree ones
        )
        return cls(
            braintree.BraintreeGateway(config), name=name, merchant_accounts=merchant_accounts
        )

    @staticmethod
    def local_environment(host: str, port: int) -> braintree.Environment:
        """An environment for a gateway on ``host:port``; plain HTTP since the port is not 443."""
        return braintree.Environment("local", host, str(port), f"http://{host}:{port}", False, None)

    @property
    def name(self) -> str:
        return self._name

    # -- the port ---------------------------------------------------------------------------
    def authorize(self, call: AuthorizeCall) -> AuthorizationResult:
        existing = self._find_by_order_id(call.payment_id, "sale", call.amount.currency)
        if existing is not None:
            if _money(existing.amount, call.amount.currency) != call.amount:
                raise IdempotencyConflict(
                    "payment already authorized at Braintree with another amount",
                    provider=self._name,
                    payment_id=call.payment_id,
                    provider_reference=existing.id,
                )
            return self._authorization(existing, call.amount.currency)
        params: dict[str, Any] = {
            "amount": _amount(call.amount),
            "payment_method_nonce": call.payment_token,
            "order_id": call.payment_id,
            "options": {"submit_for_settlement": False},
        }
        if call.amount.currency in self._merchant_accounts:
            params["merchant_account_id"] = self._merchant_accounts[call.amount.currency]
        self._with_key(params, call.idempotency_key)
        result = self._call("authorize", lambda: self._gateway.transaction.sale(params))
        transaction = self._unwrap(result, "authorize", call.payment_id)
        return self._authorization(transaction, call.amount.currency)

    def capture(self, call: CaptureCall) -> CaptureResult:
        params: dict[str, Any] = {}
        self._with_key(params, call.idempotency_key)
        result = self._call(
            "capture",
            lambda: self._gateway.transaction.submit_for_settlement(
                call.provider_reference, _amount(call.amount), params or None
            ),
        )
        if not result.is_success and self._has_code(result, WRONG_STATE):
            current = self._find(call.provider_reference)
            already = STATES.get(current.status) is ProviderPaymentState.CAPTURED
            if already and _money(current.amount, call.amount.currency) == call.amount:
                return self._capture_result(current, call.amount.currency)
        transaction = self._unwrap(result, "capture", call.payment_id)
        return self._capture_result(transaction, call.amount.currency)

    def void(self, call: VoidCall) -> VoidResult:
        params: dict[str, Any] = {}
        self._with_key(params, call.idempotency_key)
        result = self._call(
            "void",
            lambda: self._gateway.transaction.void(call.provider_reference, params or None),
        )
        if not result.is_success and self._has_code(result, WRONG_STATE):
            current = self._find(call.provider_reference)
            if current.status == "voided":
                return VoidResult(self._name, current.id, ProviderPaymentState.VOIDED)
        transaction = self._unwrap(result, "void", call.payment_id)
        return VoidResult(
            self._name, transaction.id, STATES.get(transaction.status, ProviderPaymentState.PENDING)
        )

    def refund(self, call: RefundCall) -> RefundResult:
        existing = self._find_by_order_id(call.refund_id, "credit", call.amount.currency)
        if existing is None:
            options: dict[str, Any] = {"amount": _amount(call.amount), "order_id": call.refund_id}
            self._with_key(options, call.idempotency_key)
            result = self._call(
                "refund",
                lambda: self._gateway.transaction.refund(call.provider_reference, options),
            )
            existing = self._unwrap(result, "refund", call.payment_id)
        return RefundResult(
            provider=self._name,
            provider_reference=call.provider_reference,
            refund_reference=existing.id,
            amount=_money(existing.amount, call.amount.currency),
            succeeded=STATES.get(existing.status) is ProviderPaymentState.CAPTURED,
        )

    def fetch_status(self, provider_reference: str) -> ProviderStatus:
        transaction = self._find(provider_reference)
        currency = transaction.currency_iso_code
        state = STATES.get(transaction.status, ProviderPaymentState.PENDING)
        amount = _money(transaction.amount, currency)
        refunded = Money.zero(currency)
        for refund_id in getattr(transaction, "refund_ids", None) or []:
            refund = self._find(refund_id)
            if STATES.get(refund.status) is ProviderPaymentState.CAPTURED:
                refunded = refunded + _money(refund.amount, currency)
        # Braintree reports the settlement amount as ``amount`` once submitted; the authorized
        # amount is then no longer visible on the transaction.
        return ProviderStatus(
            provider=self._name,
            provider_reference=transaction.id,
            state=state,
            authorized=amount,
            captured=amount if state is ProviderPaymentState.CAPTURED else Money.zero(currency),
            refunded=refunded,
        )

    def find_authorization(self, payment_id: str) -> AuthorizationResult | None:
        transaction = self._find_by_order_id(payment_id, "sale", None)
        if transaction is None:
            return None
        return self._authorization(transaction, transaction.currency_iso_code)

    def settlement_report(self, since: datetime, until: datetime) -> list[SettlementLine]:
        """Sales and refunds settled in the window. Fees are not on transactions (they are in
        the disbursement / fee reports), so ``fee`` is None: parse_settlement_batch_csv has them."""
        search = braintree.TransactionSearch.settled_at.between(since, until)
        found = self._call("report", lambda: list(self._gateway.transaction.search(search).items))
        lines = []
        for t in found:
            settled = _settled_at(t)
            lines.append(
                SettlementLine(
                    provider=self._name,
                    type=LineType.REFUND if t.type == "credit" else LineType.CHARGE,
                    provider_reference=t.id,
                    amount=_money(t.amount, t.currency_iso_code),
                    occurred_at=_aware(settled) if settled else None,
                    payment_reference=getattr(t, "refunded_transaction_id", None) or t.id,
                )
            )
        return lines

    # -- internals --------------------------------------------------------------------------
    def _with_key(self, params: dict[str, Any], key: str) -> None:
        if self._send_key:
            params["api_request_key"] = key

    def _find(self, transaction_id: str) -> Any:
        return self._call("fetch_status", lambda: self._gateway.transaction.find(transaction_id))

    def _find_by_order_id(self, order_id: str, kind: str, currency: str | None) -> Any | None:
        """The live (not declined/failed) transaction of ``kind`` carrying ``order_id``, if any."""
        search = braintree.TransactionSearch.order_id == order_id
        found = self._call("find", lambda: list(self._gateway.transaction.search(search).items))
        live = [
            t
            for t in found
            if t.order_id == order_id
            and t.type == kind
            and t.status in LIVE_SALE_STATES
            and (currency is None or t.currency_iso_code == currency)
        ]
        return max(live, key=lambda t: t.created_at) if live else None

    def _authorization(self, transaction: Any, currency: str) -> AuthorizationResult:
        expires = getattr(transaction, "authorization_expires_at", None)
        return AuthorizationResult(
            provider=self._name,
            provider_reference=transaction.id,
            amount=_money(transaction.amount, currency),
            state=STATES.get(transaction.status, ProviderPaymentState.PENDING),
            expires_at=_aware(expires) if expires else None,
        )

    def _capture_result(self, transaction: Any, currency: str) -> CaptureResult:
        return CaptureResult(
            provider=self._name,
            provider_reference=transaction.id,
            capture_reference=transaction.id,  # settlement reports name the same transaction
            amount=_money(transaction.amount, currency),
            state=STATES.get(transaction.status, ProviderPaymentState.PENDING),
        )

    @staticmethod
    def _has_code(result: Any, codes: set[str]) -> bool:
        return any(str(e.code) in codes for e in result.errors.deep_errors)

    def _unwrap(self, result: Any, operation: str, payment_id: str) -> Any:
        """The transaction of a successful result; otherwise the matching provider error."""
        if result.is_success:
            return result.transaction
        transaction = getattr(result, "transaction", None)
        if transaction is not None and transaction.status in {
            "processor_declined",
            "gateway_rejected",
        }:
            code = (
                getattr(transaction, "processor_response_code", None)
                or getattr(transaction, "gateway_rejection_reason", None)
                or transaction.status
            )
            raise PaymentDeclined(
                result.message,
                provider=self._name,
                decline_code=str(code),
                payment_id=payment_id,
                provider_reference=transaction.id,
            )
        codes = sorted({str(e.code) for e in result.errors.deep_errors})
        ctx: dict[str, Any] = {
            "provider": self._name,
            "provider_code": ",".join(codes) or None,
            "operation": operation,
            "payment_id": payment_id,
        }
        if CAPTURE_TOO_LARGE in codes:
            raise CaptureExceedsAuthorization(result.message, **ctx)
        if REFUND_TOO_LARGE in codes:
            raise RefundExceedsCapture(result.message, **ctx)
        if WRONG_STATE.intersection(codes):
            raise InvalidPaymentState(result.message, **ctx)
        raise InvalidProviderRequest(result.message, **ctx)

    def _call(self, operation: str, request: Callable[[], T]) -> T:
        try:
            return request()
        except braintree.exceptions.braintree_error.BraintreeError as exc:
            raise translate_error(exc, self._name, operation) from exc


def _settled_at(transaction: Any) -> datetime | None:
    """When the transaction settled: the ``settled`` entry of its status history."""
    for event in getattr(transaction, "status_history", None) or []:
        if event.status in {"settled", "settling"} and getattr(event, "timestamp", None):
            return _aware(event.timestamp)
    return None


def _aware(value: datetime | date) -> datetime:
    if not isinstance(value, datetime):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def translate_error(exc: Exception, provider: str, operation: str) -> ProviderError:
    """Map a braintree SDK exception onto the provider error vocabulary."""
    errors = braintree.exceptions
    ctx: dict[str, Any] = {"provider": provider, "operation": operation}
    message = str(exc) or type(exc).__name__
    if isinstance(exc, errors.NotFoundError):
        return PaymentNotFound(message, **ctx)
    if isinstance(exc, errors.AuthenticationError | errors.AuthorizationError):
        return ProviderAuthenticationError(message, **ctx)
    if isinstance(exc, errors.TooManyRequestsError):
        return ProviderRateLimited(message, **ctx)
    if isinstance(exc, ConnectTimeoutError):
        return ProviderUnavailable(message, **ctx)  # never connected: nothing was applied
    if isinstance(exc, BtTimeoutError | errors.RequestTimeoutError | errors.GatewayTimeoutError):
        return ProviderTimeout(message, **ctx)
    if isinstance(exc, BtConnectionError | errors.ServerError | errors.ServiceUnavailableError):
        error = ProviderUnavailable(message, **ctx)
        error.in_doubt = True  # the request may have reached the gateway
        return error
    return ProviderError(message, retriable=False, **ctx)


# ---------------------------------------------------------------------------- CSV reports
BRAINTREE_CSV_COLUMNS: dict[str, tuple[str, ...]] = {
    "id": ("transaction id",),
    "type": ("transaction type",),
    "amount": ("settlement amount", "amount submitted for settlement", "amount"),
    "currency": ("settlement currency iso code", "currency iso code"),
    "fee": ("total fee", "fee", "transaction fee"),
    "date": ("settlement date", "disbursement date"),
    "refunded": ("refunded transaction id",),
}


def parse_settlement_batch_csv(text: str, *, provider: str = "braintree") -> list[SettlementLine]:
    """Parse a Braintree transaction-level settlement export into settlement lines.

    Accepted columns (case-insensitive; the first present name wins): Transaction ID,
    Transaction Type (sale|credit), Settlement Amount|Amount Submitted For Settlement|Amount,
    Settlement Currency ISO Code|Currency ISO Code; optional Total Fee|Fee|Transaction Fee,
    Settlement Date|Disbursement Date (YYYY-MM-DD or ISO date-time), Refunded Transaction ID.
    Amounts are decimal major units. Raises ReportFormatError on a missing column or bad value.
    """
    reader = csv.DictReader(io.StringIO(text))
    headers = {h.strip().lower() for h in reader.fieldnames or []}
    for field_name in ("id", "type", "amount", "currency"):
        if not headers.intersection(BRAINTREE_CSV_COLUMNS[field_name]):
            raise ReportFormatError(
                f"Braintree CSV lacks a {'/'.join(BRAINTREE_CSV_COLUMNS[field_name])} column",
                provider=provider,
            )
    lines = []
    for number, raw in enumerate(reader, start=2):
        row = {k.strip().lower(): (v or "").strip() for k, v in raw.items() if k}

        def pick(field_name: str, row: dict[str, str] = row) -> str | None:
            return next((row[n] for n in BRAINTREE_CSV_COLUMNS[field_name] if row.get(n)), None)

        try:
            currency = (pick("currency") or "").upper()
            kind = (pick("type") or "").lower()
            fee = pick("fee")
            when = pick("date")
            lines.append(
                SettlementLine(
                    provider=provider,
                    type={"sale": LineType.CHARGE, "credit": LineType.REFUND}.get(
                        kind, LineType.OTHER
                    ),
                    provider_reference=pick("id") or "",
                    amount=_abs_money(pick("amount"), currency),
                    fee=_abs_money(fee, currency) if fee else None,
                    occurred_at=_parse_date(when) if when else None,
                    payment_reference=pick("refunded") or pick("id"),
                )
            )
        except (ValueError, InvalidOperation, LedgerError) as exc:
            raise ReportFormatError(
                f"unreadable Braintree CSV row: {exc}", provider=provider, line=number
            ) from exc
    return lines


def _abs_money(value: str | None, currency: str) -> Money:
    if value is None:
        raise ValueError("missing amount")
    money = Money.of(Decimal(value.replace(",", "")), currency)
    return Money(abs(money.amount_minor), currency)


def _parse_date(value: str) -> datetime:
    if len(value) == 10:
        return datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
    return _aware(datetime.fromisoformat(value.replace("Z", "+00:00")))
