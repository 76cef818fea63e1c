"""The charging session as a value: its state, the facts it is priced from, and what applying
one event yields.

A session's state is a frozen ``Session``; its meter readings, charging states, the published
tariff versions and the payment holds it is billed against are facts beside it. ``apply`` (in
``ledger.sessions.lifecycle``) takes one session event to an ``Applied``: the session's next
state, the reading or state to keep, and the events and CDRs to emit. Nothing here touches Kafka
or a database; ``connectors.sessions_store`` stores these values and the sessions processor
loads, applies, stores and emits. See docs/sessions.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from ledger.errors import LedgerError
from ledger.events import ChargingState, RevenueLine
from ledger.sessions.metering import MeterFlag, MeterReading
from ledger.sessions.rules import SessionStatus
from ledger.sessions.signed import SignedValue

MeterKey = tuple[str, str, str, int]
"""A reading's identity: (session, station, transaction, seq_no). A second reading with the same
key is a redelivery (same values) or a conflict (other values)."""


@dataclass(frozen=True, slots=True)
class TariffVersion:
    """One published version of an OCPI tariff (immutable once published)."""

    tariff_id: str
    version: int
    currency: str
    ocpi_json: str
    published_at: datetime
    event_id: str


class HoldStatus(StrEnum):
    AUTHORIZED = "authorized"
    """Billable: ``held_minor`` is the authorization plus its increments."""
    REJECTED = "rejected"
    """The PaymentAuthorized broke a ledger rule: no session is billed against it."""


@dataclass(frozen=True, slots=True)
class PaymentHold:
    """What payments.events told the sessions processor a payment holds."""

    payment_id: str
    currency: str
    held_minor: int
    status: HoldStatus = HoldStatus.AUTHORIZED
    reason_code: str | None = None
    detail: str | None = None
    network_id: str | None = None
    authorized_at: datetime | None = None
    event_id: str | None = None

    @property
    def authorized(self) -> bool:
        return self.status == HoldStatus.AUTHORIZED


@dataclass(frozen=True, slots=True)
class SessionReading:
    """A meter reading as the session keeps it: the reading and where it came from."""

    station_id: str
    transaction_id: str
    session_id: str
    reading: MeterReading
    event_id: str
    #: The signed records (OCMF) the station sent with this reading.
    signed: tuple[SignedValue, ...] = ()

    @property
    def key(self) -> MeterKey:
        return (self.session_id, self.station_id, self.transaction_id, self.reading.seq_no)


StateChange = tuple[datetime, ChargingState]
"""When the EV's charging state changed, and to what."""


class CdrKind(StrEnum):
    ISSUED = "issued"
    CREDITED = "credited"


@dataclass(frozen=True, slots=True)
class CdrRecord:
    """A CDR as issued or credited: its totals and lines (minor units), the tariff version it
    was priced under and the dimensions waived. A CDR is never edited: a correction credits it
    and issues a new one that ``replaces_cdr_id`` it."""

    cdr_id: str
    session_id: str
    kind: CdrKind
    event_id: str
    tariff_id: str
    tariff_version: int
    waived: tuple[str, ...]
    currency: str
    total_excl_vat: int
    total_incl_vat: int
    lines: tuple[RevenueLine, ...]
    replaces_cdr_id: str | None = None
    credited_cdr_id: str | None = None
    reason: str | None = None
    #: OCPI ``signed_data`` (JSON text) and its verification (``verified`` or a reason code).
    signed_data: str | None = None
    signed_status: str | None = None
    #: Business time: when the CDR's event occurred (an issued bill: the session's stop; a credit
    #: and its re-issue: when the correction was made).
    occurred_at: datetime | None = None


def standing_cdr(cdrs: Sequence[CdrRecord]) -> CdrRecord | None:
    """The bill that stands among ``cdrs`` (in the order they were written): the last issued
    CDR that no credit among them cancels; None if there is none (never billed, or credited
    without a replacement)."""
    credited = {c.credited_cdr_id for c in cdrs if c.kind == CdrKind.CREDITED}
    standing = [c for c in cdrs if c.kind == CdrKind.ISSUED and c.cdr_id not in credited]
    return standing[-1] if standing else None


@dataclass(frozen=True, slots=True)
class Session:
    """Where one charging session stands: what its start said, its stop once known, its status
    with the current reason, and what was billed, captured and refunded (minor units)."""

    session_id: str
    network_id: str
    started_event_id: str
    correlation_id: str | None
    station_id: str
    evse_id: str
    connector_id: str
    transaction_id: str
    country: str
    time_zone: str
    tariff_id: str
    tariff_version: int | None
    payment_id: str | None
    meter_start_wh: int | None
    started_at: datetime
    status: SessionStatus = SessionStatus.OPEN
    reason_code: str | None = None
    stopped_event_id: str | None = None
    stopped_at: datetime | None = None
    meter_stop_wh: int | None = None
    flags: tuple[MeterFlag, ...] = ()
    currency: str | None = None
    hold_minor: int | None = None
    hold_source: str | None = None
    captured_minor: int = 0
    refunded_minor: int = 0
    shortfall_minor: int = 0
    shortfall_status: str | None = None
    #: With ``reason_code`` when the session is held / awaiting_tariff / rejected: what happened
    #: and what releases it.
    reason_detail: str | None = None
    reason_action: str | None = None
    #: Signed meter values: ``verified`` or the first failing reason code (None: unsigned), and
    #: the OCPI ``signed_data`` JSON text the CDR carries.
    signed_status: str | None = None
    signed_data: str | None = None
    #: Owed by the customer after a declined capture, until collected or written off
    #: (``ledger.sessions.settled``); ``captured_minor`` then counts what was captured.
    receivable_minor: int = 0


@dataclass(frozen=True, slots=True)
class SessionFacts:
    """One session as its rules see it: the session (None before its SessionStarted), the
    readings known for it by key (all of them when it is being priced) and its state changes."""

    session_id: str
    session: Session | None
    readings: Mapping[MeterKey, SessionReading]
    states: Sequence[StateChange]


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why the event is refused (stored with the record) although the session changed: held,
    waiting for its tariff, or rejected by pricing. ``error`` is the rule's error, if any."""

    code: str
    detail: str
    error: LedgerError | None = None

    @classmethod
    def of(cls, error: LedgerError) -> Rejection:
        return cls(error.code, str(error), error)


@dataclass(frozen=True, slots=True)
class Applied:
    """What applying one event yields. ``session`` is the session's next state (None when the
    event leaves it as it was); ``events`` are emitted in order, ``cdrs`` stored with them."""

    session: Session | None = None
    reading: SessionReading | None = None
    state: StateChange | None = None
    events: tuple[Any, ...] = ()
    cdrs: tuple[CdrRecord, ...] = ()
    rejection: Rejection | None = None
