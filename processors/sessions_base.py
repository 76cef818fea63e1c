"""What the parts of the sessions processor share: its consumer group and topics, its settings,
the deterministic ids of what it emits, the errors they raise, what releases a held session,
and the rules a hold must pass (the ledger's own). See docs/sessions.md."""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from connectors import sessions_store as store
from ledger.errors import LedgerError
from ledger.events import AuthorizationIncremented, PaymentAuthorized
from ledger.money import Money
from ledger.payments import errors as err
from ledger.payments.rules import check_hold
from ledger.pricing.preauth import DEFAULT_MAX_DURATION, DEFAULT_MAX_POWER_KW
from ledger.sessions.rules import ShortfallPolicy

GROUP = "evledger-sessions"
TOPICS = ("tariffs.events", "payments.events", "sessions.events")
_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://evledger.io/processors/sessions")


def derived_id(cause_event_id: str, kind: str) -> str:
    """Deterministic id of what ``cause_event_id`` caused (uuid5), so retries re-emit it."""
    return str(uuid.uuid5(_ID_NAMESPACE, f"{cause_event_id}/{kind}"))


@dataclass(frozen=True)
class SessionsConfig:
    """Processor knobs (CLI options / ``build_sessions_processor`` keywords)."""

    shortfall_policy: ShortfallPolicy = ShortfallPolicy.WRITE_OFF
    #: An interval implying more power than this is METER_IMPLAUSIBLE_ENERGY (blocking).
    max_power_kw: Decimal = Decimal(400)
    #: A register drop to at most this is a meter reset, any other drop a decrease.
    reset_threshold_wh: Decimal = Decimal(1000)
    #: Assumed hold when payments.events never told us one (ledger.pricing.preauth sizing).
    preauth_max_power_kw: Decimal = DEFAULT_MAX_POWER_KW
    preauth_max_duration: timedelta = DEFAULT_MAX_DURATION
    #: Connectors wired to one phase, as ``connector_key(station_id, connector_id)``: their
    #: per-phase energy (L1 only) is the total. Any other connector is taken as three-phase, and
    #: a reading of only some of its phases holds the session PARTIAL_PHASES.
    single_phase_connectors: frozenset[str] = field(default_factory=frozenset)

    def single_phase(self, station_id: str, connector_id: str) -> bool:
        return connector_key(station_id, connector_id) in self.single_phase_connectors


def connector_key(station_id: str, connector_id: str) -> str:
    """How a connector is named in ``single_phase_connectors`` and on the command line."""
    return f"{station_id}/{connector_id}"


_RELEASE_BY_REVIEW = (
    "review the readings (evledger sessions show ID), then evledger sessions release ID "
    "--reason TEXT: bills the session without the flagged readings"
)

#: What releases a session held, waiting or rejected for each reason code (docs/sessions.md).
RELEASE_ACTIONS: dict[str, str] = {
    "UNKNOWN_TARIFF": (
        "publish the tariff version in force at the session start (evledger tariffs publish "
        "FILE); the session is billed when it is consumed"
    ),
    "INVALID_HOLD": (
        "have the payment authorized with a positive amount in the tariff's currency (a "
        "PaymentAuthorized the ledger accepts); the session is billed when it is consumed"
    ),
    "METER_REGISTER_DECREASED": _RELEASE_BY_REVIEW,
    "METER_REGISTER_RESET": _RELEASE_BY_REVIEW,
    "METER_IMPLAUSIBLE_ENERGY": (
        "review the readings (evledger sessions show ID), then evledger sessions release ID "
        "--reason TEXT: bills the energy as measured"
    ),
    "METER_READING_OUTSIDE_SESSION": (
        "check the station clock; then evledger sessions release ID --reason TEXT: bills the "
        "session without the readings outside it"
    ),
    "PARTIAL_PHASES": (
        "if the connector is single-phase, release with evledger sessions release ID --reason "
        "TEXT --single-phase STATION/CONNECTOR (and run the processor with it); otherwise fix "
        "the station's phase reporting and release without it: the partial readings are not "
        "billed, the start and stop registers still count"
    ),
    "CURRENCY_MISMATCH": (
        "the hold and the tariff are in different currencies: correct the payment or the "
        "session's tariff, then send a SessionStopped with a new event id"
    ),
}


def release_action(code: str) -> str:
    """What a person does to release a session held for ``code``."""
    return RELEASE_ACTIONS.get(
        code,
        f"fix the cause of {code} (docs/errors.md), then send a SessionStopped with a new event id",
    )


# ------------------------------------------------------------------------------------ holds
HoldEvent = PaymentAuthorized | AuthorizationIncremented


def apply_hold(hold: store.PaymentHold | None, event: HoldEvent) -> store.PaymentHold:
    """The payment's hold after ``event``, by the ledger's own rules for holds
    (``ledger.payments``), so no session is billed against a hold the ledger refused: one
    authorization per payment, a positive amount (``check_hold``), increments only of an
    accepted authorization, in its network and currency and not before it.

    Raises PaymentRejected: DuplicateAuthorization, InvalidAmount, UnknownPayment,
    NetworkMismatch, BeforeAuthorization, PaymentCurrencyMismatch (the ledger's codes)."""
    env = event.envelope
    if isinstance(event, PaymentAuthorized):
        if hold is not None and hold.status == "authorized":
            raise err.DuplicateAuthorization(
                f"payment already authorized by event {hold.event_id}; the hold stays "
                f"{Money(hold.held_minor, hold.currency)}",
                payment_id=event.payment_id,
                event_id=env.event_id,
            )
        check_hold(event)
        return store.PaymentHold(
            event.payment_id,
            event.amount.currency,
            event.amount.amount_minor,
            network_id=env.network_id,
            authorized_at=env.occurred_at,
            event_id=env.event_id,
        )
    if hold is None or hold.status != "authorized":
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


def rejected_hold(event: PaymentAuthorized, exc: LedgerError) -> store.PaymentHold:
    """What to remember of a refused authorization: its sessions are held INVALID_HOLD."""
    return store.PaymentHold(
        event.payment_id,
        event.amount.currency,
        0,
        "rejected",
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
