"""Provider webhooks: verify the signature, drop replays, normalize to ``provider.events`` facts.

Stripe signs ``f"{t}.{raw body}"`` with HMAC-SHA256 and the endpoint secret and sends
``Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]``. We accept any v1 that matches any of our
secrets (rotation: old and new secret both valid for a while) when ``t`` is within the tolerance.

Braintree posts ``bt_signature`` (``public_key|hmac_sha1_hex`` pairs joined by ``&``; the HMAC key
is SHA-1 of the private key) and ``bt_payload`` (base64 of an XML notification), as the SDK's
``WebhookNotificationGateway`` checks. Braintree's signature has no timestamp; the notification's
own (signed) timestamp is checked against ``braintree_max_age``, which must exceed Braintree's
retry period, and the replay store must remember ids at least that long.

Normalized events get deterministic ``event_id`` s (UUIDv5 of the provider fact), so a fact seen
twice, say a refund reported by both ``charge.refunded`` and ``refund.created``, deduplicates
downstream even when the replay store cannot help.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from braintree.util.xml_util import XmlUtil

from connectors.webhook_ids import WebhookIdStore
from ledger import ids, validation
from ledger.envelope import Envelope, Source
from ledger.errors import LedgerError, ValidationError
from ledger.events import ExternalRefundReported, PayoutPaid, ProviderDisputeUpdated
from ledger.money import Money

log = logging.getLogger(__name__)

ProviderEvent = PayoutPaid | ProviderDisputeUpdated | ExternalRefundReported
MAX_BODY_BYTES = 1_048_576
"""Largest webhook body read (1 MiB): Stripe events and Braintree notifications are a few KB."""
MAX_JSON_DEPTH = 32
"""Deepest JSON nesting parsed; a Stripe event nests about 8 levels."""
EVENT_ID_NAMESPACE = ids.PROVIDER_FACTS.namespace


class WebhookSignatureError(LedgerError):
    """Missing, malformed, wrong or stale signature: answer 400 and publish nothing."""

    code = "WEBHOOK_SIGNATURE"


class WebhookPayloadError(ValidationError):
    """A correctly signed payload we cannot read."""

    code = "WEBHOOK_PAYLOAD"


# ---------------------------------------------------------------------------- Stripe
def verify_stripe_signature(
    payload: bytes,
    header: str | None,
    secrets: Sequence[str],
    *,
    now: float,
    tolerance: float = 300.0,
) -> int:
    """Check a ``Stripe-Signature`` header; return its timestamp. Raises WebhookSignatureError."""
    if not header:
        raise WebhookSignatureError("missing Stripe-Signature header")
    if not secrets:
        raise WebhookSignatureError("no Stripe endpoint secret configured")
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise WebhookSignatureError("unreadable timestamp in Stripe-Signature") from None
        elif key == "v1":
            signatures.append(value)
    if timestamp is None or not signatures:
        raise WebhookSignatureError("Stripe-Signature lacks t= or v1=")
    if abs(now - timestamp) > tolerance:
        raise WebhookSignatureError(
            "Stripe-Signature timestamp outside the tolerance", age_s=int(now - timestamp)
        )
    signed = f"{timestamp}.".encode() + payload
    for secret in secrets:
        expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
        # Evaluate every candidate: no early exit that leaks which one matched.
        if any([hmac.compare_digest(expected, candidate) for candidate in signatures]):
            return timestamp
    raise WebhookSignatureError("no Stripe-Signature v1 matches an endpoint secret")


def _event_id(provider: str, fact: str) -> str:
    return ids.PROVIDER_FACTS.derive(provider, fact)


def _envelope(network_id: str, provider: str, fact: str, occurred_at: datetime) -> Envelope:
    return Envelope.new(
        network_id, Source.psp, occurred_at=occurred_at, event_id=_event_id(provider, fact)
    )


Sign = Literal["positive", "any"]


def _stripe_money(amount: Any, currency: Any, field: str, sign: Sign = "positive") -> Money:
    """Stripe amounts are integers in minor units. Anything else is refused, never truncated or
    rounded: ``12.5`` is not 12. A payout keeps its sign (negative: Stripe debited the bank);
    dispute and refund amounts must be positive. Raises WebhookPayloadError naming the field."""
    if type(amount) is not int:
        raise WebhookPayloadError(
            f"{field} must be an integer amount in minor units, got {amount!r:.60}", field=field
        )
    code = _currency(currency, field)
    return _checked(lambda: Money(amount, code), field, sign)


def _currency(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise WebhookPayloadError(f"currency of {field} must be a string, got {value!r:.60}")
    return value.upper()  # Stripe sends ISO codes in lower case; Money checks the code


def _checked(make: Callable[[], Money], field: str, sign: Sign) -> Money:
    """The Money ``make`` builds, refused with the field's name when its currency is unknown,
    its decimals too many, or its sign not one ``sign`` allows (zero never is)."""
    try:
        money = make()
    except LedgerError as exc:
        raise WebhookPayloadError(f"{field}: {exc.message}", field=field) from exc
    if money.amount_minor == 0 or (sign == "positive" and money.amount_minor < 0):
        wanted = "non-zero" if sign == "any" else "positive"
        raise WebhookPayloadError(f"{field} must be {wanted}, got {money}", field=field)
    return money


def normalize_stripe_event(
    event: Mapping[str, Any], network_id: str, provider: str = "stripe"
) -> list[ProviderEvent]:
    """Facts in one Stripe event: payouts paid, dispute changes, refunds made outside evledger.

    Other event types give an empty list. Raises WebhookPayloadError on a malformed event.
    """
    try:
        event = _object(event, "event")
        kind = _text(event, "type", "event")
        obj = _object(_object(event["data"], "data")["object"], "data.object")
        occurred = datetime.fromtimestamp(int(event.get("created") or time.time()), UTC)
        if kind == "payout.paid":
            amount = _stripe_money(obj["amount"], obj["currency"], "payout.amount", "any")
            payout_id = _text(obj, "id", "payout")
            return [
                PayoutPaid(
                    envelope=_envelope(network_id, provider, f"payout_paid:{payout_id}", occurred),
                    provider=provider,
                    payout_id=payout_id,
                    amount=amount,
                    # The payout object carries the net only; fees come per charge (balance
                    # transactions) and are reconciled from the settlement report.
                    fees=Money.zero(amount.currency),
                )
            ]
        if kind.startswith("charge.dispute."):
            dispute_id = _text(obj, "id", "dispute")
            fact = f"dispute:{dispute_id}:{_text(event, 'id', 'event')}"
            return [
                ProviderDisputeUpdated(
                    envelope=_envelope(network_id, provider, fact, occurred),
                    provider=provider,
                    provider_reference=_text(obj, "charge", "dispute"),
                    dispute_id=dispute_id,
                    status=_text(obj, "status", "dispute"),
                    amount=_stripe_money(obj["amount"], obj["currency"], "dispute.amount"),
                )
            ]
        if kind == "charge.refunded":
            charge = _text(obj, "id", "charge")
            listed = _object(obj.get("refunds") or {}, "charge.refunds").get("data") or []
            if not isinstance(listed, list):
                raise WebhookPayloadError(f"charge.refunds.data must be a list, got {listed!r:.60}")
            refunds = [_object(refund, "charge.refunds.data[]") for refund in listed]
            return [
                _external_refund(network_id, provider, charge, refund, occurred)
                for refund in refunds
                if _is_external(refund)
            ]
        if kind == "refund.created" and _is_external(obj) and obj.get("charge"):
            charge = _text(obj, "charge", "refund")
            return [_external_refund(network_id, provider, charge, obj, occurred)]
        return []
    except WebhookPayloadError:
        raise
    except (KeyError, TypeError, ValueError, ArithmeticError, LedgerError) as exc:
        raise WebhookPayloadError(f"malformed Stripe event: {_why(exc)}") from exc


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise WebhookPayloadError(f"{where} must be an object, got {value!r:.60}")
    return value


def _text(mapping: Mapping[str, Any], key: str, where: str) -> str:
    """``mapping[key]`` when it is a string (ids, references, statuses). Raises KeyError when
    missing, WebhookPayloadError for another type; the input rules then bound its content."""
    value = mapping[key]
    if not isinstance(value, str):
        raise WebhookPayloadError(f"{where}.{key} must be a string, got {value!r:.60}")
    return value


def _is_external(refund: Mapping[str, Any]) -> bool:
    return "evledger_refund_id" not in _object(refund.get("metadata") or {}, "refund.metadata")


def _external_refund(
    network_id: str, provider: str, charge: str, refund: Mapping[str, Any], occurred: datetime
) -> ExternalRefundReported:
    refund_id = _text(refund, "id", "refund")
    return ExternalRefundReported(
        envelope=_envelope(network_id, provider, f"external_refund:{refund_id}", occurred),
        provider=provider,
        provider_reference=charge,
        refund_reference=refund_id,
        amount=_stripe_money(refund["amount"], refund["currency"], "refund.amount"),
    )


# ---------------------------------------------------------------------------- Braintree
@dataclass(frozen=True, slots=True)
class BraintreeWebhookKey:
    public_key: str
    private_key: str


_BASE64 = re.compile(rb"^[A-Za-z0-9+=/\n]+$")


def verify_braintree_signature(
    bt_signature: str | None, bt_payload: str | None, keys: Sequence[BraintreeWebhookKey]
) -> None:
    """Check ``bt_signature`` against ``bt_payload`` for any configured key pair.

    Raises WebhookSignatureError.
    """
    if not bt_signature or not bt_payload:
        raise WebhookSignatureError("missing bt_signature or bt_payload")
    payload = bt_payload.encode("ascii", errors="replace")
    if not _BASE64.match(payload):
        raise WebhookSignatureError("bt_payload contains illegal characters")
    pairs = [pair.split("|", 1) for pair in bt_signature.split("&") if "|" in pair]
    for key in keys:
        hmac_key = hashlib.sha1(key.private_key.encode()).digest()  # nosec B324  # Braintree's signature scheme is HMAC-SHA1
        for public_key, signature in pairs:
            if public_key != key.public_key:
                continue
            # The SDK accepts the payload with or without a trailing newline.
            for candidate in (payload, payload + b"\n"):
                expected = hmac.new(hmac_key, candidate, hashlib.sha1).hexdigest()
                if hmac.compare_digest(expected, signature):
                    return
    raise WebhookSignatureError("no bt_signature pair matches a configured key")


def parse_braintree_notification(bt_payload: str) -> Mapping[str, Any]:
    """The ``notification`` element of a verified payload, via the SDK's XML parser."""
    try:
        xml = base64.decodebytes(bt_payload.encode("ascii"))
        parsed = XmlUtil.dict_from_xml(xml)
        notification = parsed["notification"]
        if not isinstance(notification, dict):
            raise TypeError("notification is not an element")
        return notification
    except (binascii.Error, KeyError, TypeError, ValueError) as exc:
        raise WebhookPayloadError(f"unreadable Braintree notification: {exc!r}") from exc
    except Exception as exc:  # minidom raises ExpatError and friends
        raise WebhookPayloadError(f"unreadable Braintree notification: {exc!r}") from exc


def _bt_money(amount: Any, currency: Any, field: str, sign: Sign = "positive") -> Money:
    """Braintree amounts are decimal strings in major units ("12.50"); one with more decimals
    than the currency has is refused (Money.of), never rounded."""
    if isinstance(amount, bool) or not isinstance(amount, str | Decimal | int):
        raise WebhookPayloadError(
            f"{field} must be a decimal amount, got {amount!r:.60}", field=field
        )
    try:
        value = Decimal(str(amount).strip())
    except ArithmeticError:
        raise WebhookPayloadError(
            f"{field} is not a decimal: {amount!r:.60}", field=field
        ) from None
    if not value.is_finite():
        raise WebhookPayloadError(f"{field} is not a finite amount: {amount!r:.60}", field=field)
    code = _currency(currency, field)
    return _checked(lambda: Money.of(value, code), field, sign)


def normalize_braintree_notification(
    notification: Mapping[str, Any], network_id: str, provider: str = "braintree"
) -> list[ProviderEvent]:
    """Facts in one Braintree notification: disbursements (payouts) and dispute changes.

    Braintree has no webhook for refunds made in its control panel; those surface in
    reconciliation as ``missing_in_ledger``. Raises WebhookPayloadError when malformed.
    """
    try:
        notification = _object(notification, "notification")
        kind = _text(notification, "kind", "notification")
        occurred = _aware(notification.get("timestamp"))
        subject = _object(notification.get("subject") or {}, "subject")
        if kind == "disbursement":
            d = _object(subject["disbursement"], "disbursement")
            merchant = _object(d["merchant_account"], "disbursement.merchant_account")
            currency = merchant["currency_iso_code"]
            amount = _bt_money(d["amount"], currency, "disbursement.amount", "any")
            payout_id = _text(d, "id", "disbursement")
            return [
                PayoutPaid(
                    envelope=_envelope(network_id, provider, f"payout_paid:{payout_id}", occurred),
                    provider=provider,
                    payout_id=payout_id,
                    amount=amount,
                    fees=Money.zero(amount.currency),  # fees are in the disbursement report
                )
            ]
        if kind.startswith("dispute_"):
            d = _object(subject["dispute"], "dispute")
            dispute_id = _text(d, "id", "dispute")
            fact = f"dispute:{dispute_id}:{kind}:{occurred.isoformat()}"
            status = d.get("status") or kind.removeprefix("dispute_")
            if not isinstance(status, str):
                raise WebhookPayloadError(f"dispute.status must be a string, got {status!r:.60}")
            return [
                ProviderDisputeUpdated(
                    envelope=_envelope(network_id, provider, fact, occurred),
                    provider=provider,
                    provider_reference=_text(
                        _object(d["transaction"], "dispute.transaction"), "id", "transaction"
                    ),
                    dispute_id=dispute_id,
                    status=status,
                    amount=_bt_money(
                        d.get("amount_disputed") or d["amount"],
                        d["currency_iso_code"],
                        "dispute.amount",
                    ),
                )
            ]
        return []
    except WebhookPayloadError:
        raise
    except (KeyError, TypeError, ValueError, ArithmeticError, LedgerError) as exc:
        raise WebhookPayloadError(f"malformed Braintree notification: {_why(exc)}") from exc


def _why(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"missing field {exc}"
    if isinstance(exc, LedgerError):
        return exc.message
    return f"{type(exc).__name__}: {exc}"


def _aware(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    raise WebhookPayloadError("notification lacks a timestamp")


def braintree_challenge_response(challenge: str, key: BraintreeWebhookKey) -> str:
    """Answer Braintree's endpoint verification (``bt_challenge``), as the SDK's ``verify``."""
    if not re.fullmatch(r"[a-f0-9]{20,32}", challenge):
        raise WebhookPayloadError("bt_challenge is not 20-32 hex characters")
    hmac_key = hashlib.sha1(key.private_key.encode()).digest()  # nosec B324  # Braintree's signature scheme is HMAC-SHA1
    digest = hmac.new(hmac_key, challenge.encode(), hashlib.sha1).hexdigest()
    return f"{key.public_key}|{digest}"


# ---------------------------------------------------------------------------- handling
@dataclass(frozen=True, slots=True)
class WebhookOutcome:
    status: Literal["published", "duplicate", "ignored"]
    events: tuple[ProviderEvent, ...] = ()


class WebhookHandler:
    """Verify → claim the delivery id → normalize → publish; framework-independent."""

    def __init__(
        self,
        *,
        network_id: str,
        publish: Callable[[ProviderEvent], None],
        store: WebhookIdStore,
        stripe_secrets: Sequence[str] = (),
        braintree_keys: Sequence[BraintreeWebhookKey] = (),
        clock: Callable[[], float] = time.time,
        tolerance: float = 300.0,
        braintree_max_age: float = 3 * 24 * 3600.0,
        stripe_provider: str = "stripe",
        braintree_provider: str = "braintree",
        max_json_depth: int = MAX_JSON_DEPTH,
        max_future_skew_seconds: float = validation.DEFAULT_FUTURE_SKEW_SECONDS,
    ) -> None:
        self.network_id = network_id
        self._publish = publish
        self._store = store
        self._stripe_secrets = tuple(stripe_secrets)
        self._braintree_keys = tuple(braintree_keys)
        self._clock = clock
        self._tolerance = tolerance
        self._braintree_max_age = braintree_max_age
        self._stripe = stripe_provider
        self._braintree = braintree_provider
        self._max_json_depth = max_json_depth
        self._skew = timedelta(seconds=max_future_skew_seconds)

    @property
    def challenge_key(self) -> BraintreeWebhookKey | None:
        """The key that answers Braintree's endpoint challenge: the first (newest) one."""
        return self._braintree_keys[0] if self._braintree_keys else None

    def handle_stripe(self, payload: bytes, signature_header: str | None) -> WebhookOutcome:
        """Raises WebhookSignatureError (answer 400) or WebhookPayloadError (400)."""
        verify_stripe_signature(
            payload,
            signature_header,
            self._stripe_secrets,
            now=self._clock(),
            tolerance=self._tolerance,
        )
        too_deep = json_depth_problem(payload, self._max_json_depth)
        if too_deep is not None:
            raise WebhookPayloadError(f"unreadable Stripe event: {too_deep}")
        try:
            event = _object(json.loads(payload, parse_constant=_no_constant), "event")
            webhook_id = _text(event, "id", "event")
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            raise WebhookPayloadError(f"unreadable Stripe event: {_why(exc)}") from exc
        events = normalize_stripe_event(event, self.network_id, self._stripe)
        return self._deliver(self._stripe, webhook_id, events)

    def handle_braintree(self, bt_signature: str | None, bt_payload: str | None) -> WebhookOutcome:
        """Raises WebhookSignatureError (answer 400) or WebhookPayloadError (400)."""
        verify_braintree_signature(bt_signature, bt_payload, self._braintree_keys)
        assert bt_payload is not None
        notification = parse_braintree_notification(bt_payload)
        sent_at = _aware(notification.get("timestamp"))
        if abs(self._clock() - sent_at.timestamp()) > self._braintree_max_age:
            raise WebhookSignatureError("Braintree notification older than braintree_max_age")
        webhook_id = hashlib.sha256(bt_payload.encode("ascii")).hexdigest()
        events = normalize_braintree_notification(notification, self.network_id, self._braintree)
        return self._deliver(self._braintree, webhook_id, events)

    def _deliver(
        self, provider: str, webhook_id: str, events: list[ProviderEvent]
    ) -> WebhookOutcome:
        latest = datetime.now(UTC) + self._skew
        for event in events:  # all or nothing: refuse before anything is published
            try:
                validation.check(event, latest)
            except validation.InvalidInput as exc:
                raise WebhookPayloadError(f"{provider} webhook: {exc.message}") from exc
        if not self._store.claim(provider, webhook_id):
            return WebhookOutcome("duplicate")
        try:
            for event in events:
                self._publish(event)
        except BaseException:
            self._store.release(provider, webhook_id)
            raise
        return WebhookOutcome("published" if events else "ignored", tuple(events))


def _no_constant(name: str) -> Any:
    # Python's json reads NaN and Infinity, which are not JSON and no provider sends.
    raise ValueError(f"{name} is not a JSON number")


def json_depth_problem(payload: bytes, max_depth: int) -> str | None:
    """Why ``payload`` is nested deeper than ``max_depth`` (arrays and objects), or None.
    Checked before parsing: a deep document makes the parser recurse until it fails."""
    depth = 0
    for bracket in _BRACKETS.findall(_JSON_STRING.sub(b'""', payload)):
        if bracket in (b"[", b"{"):
            depth += 1
            if depth > max_depth:
                return f"JSON nested deeper than {max_depth} levels"
        else:
            depth -= 1
    return None


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(rb"[\[\]{}]")
