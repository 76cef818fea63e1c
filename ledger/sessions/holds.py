"""A session's payment hold, by the ledger's own rules for holds (``ledger.payments``), so that
no session is billed against a hold the ledger refused; and the hold a stopped session is
billed against (the one payments.events told, else the tariff's pre-authorization sizing)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from ledger.errors import LedgerError
from ledger.events import AuthorizationIncremented, PaymentAuthorized
from ledger.money import Money
from ledger.payments import errors as err
from ledger.payments.rules import check_hold
from ledger.pricing.preauth import preauthorization_amount
from ledger.pricing.tariffs import Tariff
from ledger.sessions.rules import InvalidHold, SessionsConfig
from ledger.sessions.session import HoldStatus, PaymentHold, Rejection, Session

HoldEvent = PaymentAuthorized | AuthorizationIncremented


def apply_hold(hold: PaymentHold | None, event: HoldEvent) -> PaymentHold:
    """The payment's hold after ``event``: one authorization per payment, a positive amount
    (``check_hold``), increments only of an accepted authorization, in its network and currency
    and not before it.

    Raises PaymentRejected: DuplicateAuthorization, InvalidAmount, UnknownPayment,
    NetworkMismatch, BeforeAuthorization, PaymentCurrencyMismatch (the ledger's codes)."""
    env = event.envelope
    if isinstance(event, PaymentAuthorized):
        if hold is not None and hold.authorized:
            raise err.DuplicateAuthorization(
                f"payment already authorized by event {hold.event_id}; the hold stays "
                f"{Money(hold.held_minor, hold.currency)}",
                payment_id=event.payment_id,
                event_id=env.event_id,
            )
        check_hold(event)
        return PaymentHold(
            event.payment_id,
            event.amount.currency,
            event.amount.amount_minor,
            network_id=env.network_id,
            authorized_at=env.occurred_at,
            event_id=env.event_id,
        )
    if hold is None or not hold.authorized:
        raise err.UnknownPayment(
            "no accepted authorization for this payment: an increment alone is not a hold",
            payment_id=event.payment_id,
            event_id=env.event_id,
        )
    ids = {"payment_id": event.payment_id, "event_id": env.event_id}
    if hold.network_id is not None and env.network_id != hold.network_id:
        raise err.NetworkMismatch(f"the payment is in network {hold.network_id}", **ids)
    if hold.authorized_at is not None and env.occurred_at < hold.authorized_at:
        raise err.BeforeAuthorization(
            f"occurred before the authorization at {hold.authorized_at.isoformat()}", **ids
        )
    if event.amount.currency != hold.currency:
        raise err.PaymentCurrencyMismatch(f"the hold is in {hold.currency}", **ids)
    check_hold(event)
    return dataclasses.replace(hold, held_minor=hold.held_minor + event.amount.amount_minor)


@dataclass(frozen=True, slots=True)
class HoldApplied:
    """The hold after an event (None: unchanged) and why the event was refused, if it was."""

    hold: PaymentHold | None
    rejection: Rejection | None = None


def apply_hold_event(current: PaymentHold | None, event: HoldEvent) -> HoldApplied:
    """``apply_hold``, with what a refusal leaves behind: a refused authorization of a payment
    without an accepted one is remembered as a rejected hold (its sessions are held
    INVALID_HOLD); any other refusal leaves the hold as it was."""
    try:
        return HoldApplied(apply_hold(current, event))
    except LedgerError as exc:
        rejection = Rejection(exc.code, hold_rejection_detail(event, exc), exc)
        if isinstance(event, PaymentAuthorized) and (current is None or not current.authorized):
            return HoldApplied(rejected_hold(event, exc), rejection)
        return HoldApplied(None, rejection)


def rejected_hold(event: PaymentAuthorized, exc: LedgerError) -> PaymentHold:
    """What to remember of a refused authorization: its sessions are held INVALID_HOLD."""
    return PaymentHold(
        event.payment_id,
        event.amount.currency,
        0,
        HoldStatus.REJECTED,
        exc.code,
        hold_rejection_detail(event, exc),
        event.envelope.network_id,
        event.envelope.occurred_at,
        event.envelope.event_id,
    )


def hold_rejection_detail(event: HoldEvent, exc: LedgerError) -> str:
    """The rejection's detail: the field and value at fault, then the error with its ids."""
    env = event.envelope
    field, value = {
        "INVALID_AMOUNT": ("amount", f"{event.amount.amount_minor} {event.amount.currency}"),
        "CURRENCY_MISMATCH": ("amount.currency", event.amount.currency),
        "NETWORK_MISMATCH": ("envelope.network_id", env.network_id),
        "BEFORE_AUTHORIZATION": ("envelope.occurred_at", env.occurred_at.isoformat()),
    }.get(exc.code, ("payment_id", event.payment_id))
    return f"{type(event).__name__}.{field}={value}: {exc}"


HOLD_AUTHORIZED = "authorized"
"""``Session.hold_source`` when payments.events told the hold."""
HOLD_ASSUMED = "assumed"
"""``Session.hold_source`` when the hold was sized from the tariff (no authorization seen)."""


def hold_for(
    s: Session,
    tariff: Tariff,
    holds: Mapping[str, PaymentHold],
    config: SessionsConfig,
) -> tuple[Money, str] | None:
    """The session's hold and where it came from: ``authorized`` when payments.events told us
    (authorization + increments), else ``assumed``: the pre-authorization sizing of the tariff.
    None without a payment. Raises InvalidHold when the authorization was rejected or the
    hold is not positive."""
    if s.payment_id is None:
        return None
    known = holds.get(s.payment_id)
    if known is not None:
        if not known.authorized:
            raise InvalidHold(
                f"the authorization of the session's payment was rejected {known.reason_code} "
                f"({known.detail}); no CDR or capture against it",
                session_id=s.session_id,
                payment_id=s.payment_id,
            )
        return positive_hold(s, Money(known.held_minor, known.currency)), HOLD_AUTHORIZED
    assumed = preauthorization_amount(
        tariff,
        starts_at=s.started_at,
        time_zone=s.time_zone,
        max_power_kw=config.preauth_max_power_kw,
        max_duration=config.preauth_max_duration,
    )
    return assumed, HOLD_ASSUMED


def positive_hold(s: Session, hold: Money) -> Money:
    """``hold``, or InvalidHold when it is zero or less: never a capture against it."""
    if hold.amount_minor <= 0:
        raise InvalidHold(
            f"hold_minor={hold.amount_minor} {hold.currency}: a hold must be positive; no "
            "capture against it",
            session_id=s.session_id,
            payment_id=s.payment_id,
        )
    return hold
