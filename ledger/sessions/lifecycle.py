"""A charging session's rules, event by event: ``apply`` takes one session event and the facts
the session is priced from to an ``Applied`` (the session's next state, the reading or charging
state to keep, the events and CDRs to emit, or why the event is refused). ``check_tariff``
is the rule for a published tariff version.

An event that breaks a rule and changes nothing raises the rule's LedgerError; an event that
changes the session and is still refused (a stop held for review, waiting for its tariff or
rejected by pricing) returns an ``Applied`` with a ``rejection``. See docs/sessions.md.
"""

from __future__ import annotations

import contextlib
import dataclasses

from ledger.events import (
    ChargingStateChanged,
    MeterValueRecorded,
    SessionStarted,
    SessionStopped,
    TariffPublished,
)
from ledger.pricing.tariffs import InvalidTariff, UnknownTariff, parse_tariff_json
from ledger.sessions.billing import Known, price_and_bill, resolve_tariff
from ledger.sessions.metering import (
    MeterReading,
    ReadingOutsideSession,
    check_stop,
    current_a,
    energy_phases,
    energy_register_wh,
    power_kw,
)
from ledger.sessions.rules import (
    ConflictingMeterValue,
    SessionAlreadyStarted,
    SessionAlreadyStopped,
    SessionStatus,
    TariffVersionConflict,
    UnknownSession,
)
from ledger.sessions.session import Applied, Session, SessionFacts, SessionReading, TariffVersion
from ledger.sessions.signed import signed_values

SessionEvent = SessionStarted | MeterValueRecorded | ChargingStateChanged | SessionStopped


def apply(facts: SessionFacts, event: SessionEvent, known: Known) -> Applied:
    """The session after ``event``, and what to keep and emit.

    Raises SessionAlreadyStarted, SessionAlreadyStopped, UnknownSession, ConflictingMeterValue,
    ReadingOutsideSession, StopBeforeStart (the session stays as it was)."""
    if isinstance(event, SessionStarted):
        return Applied(_started(facts.session, event, known))
    if isinstance(event, MeterValueRecorded):
        return Applied(reading=_reading(facts, event))
    if isinstance(event, ChargingStateChanged):
        _open(facts.session, "charging state")
        return Applied(state=(event.changed_at, event.state))
    return _stopped(facts, event, known)


def _open(s: Session | None, what: str) -> Session | None:
    """``s``, if it may still change; SessionAlreadyStopped once it is billed, voided or held."""
    if s is not None and not s.status.accepts_session_events:
        raise SessionAlreadyStopped(
            f"{what} after the session was {s.status}; re-price it with a correction",
            session_id=s.session_id,
        )
    return s


def _started(s: Session | None, e: SessionStarted, known: Known) -> Session:
    if s is not None:
        raise SessionAlreadyStarted(
            "another SessionStarted for this session", session_id=e.session_id
        )
    env = e.envelope
    version = e.tariff_version
    # Frozen now when the tariff is known; else the same rule applies at the stop.
    with contextlib.suppress(UnknownTariff):
        version = resolve_tariff(
            known.versions(e.tariff_id), e.tariff_id, e.tariff_version, env.occurred_at
        ).version
    return Session(
        e.session_id,
        env.network_id,
        env.event_id,
        env.correlation_id or env.event_id,
        e.station_id,
        e.evse_id,
        e.connector_id,
        e.transaction_id,
        e.country,
        e.time_zone,
        e.tariff_id,
        version,
        e.payment_id,
        e.meter_start_wh,
        env.occurred_at,
    )


def _reading(facts: SessionFacts, e: MeterValueRecorded) -> SessionReading | None:
    """The reading to keep; None for the same reading re-sent under another event id."""
    s = _open(facts.session, "meter value")
    if s is not None:
        _within(s, e)
    reading = MeterReading(
        e.seq_no,
        e.sampled_at,
        energy_register_wh(e.samples),
        power_kw(e.samples),
        current_a(e.samples),
        energy_phases(e.samples),
    )
    row = SessionReading(
        e.station_id,
        e.transaction_id,
        e.session_id,
        reading,
        e.envelope.event_id,
        signed_values(e.samples),
    )
    seen = facts.readings.get(row.key)
    if seen is None:
        return row
    if seen.reading != reading:
        raise ConflictingMeterValue(
            "same (station, transaction, seq_no) with other values; the first is kept",
            session_id=e.session_id,
            seq_no=e.seq_no,
            first_event_id=seen.event_id,
        )
    return None


def _within(s: Session, e: MeterValueRecorded) -> None:
    """Reject a reading sampled before its known session started, or after the stop of a
    session waiting for its tariff: it would bill energy from outside the session. (Readings
    that arrive before their SessionStarted are checked when the session stops.)"""
    stop = s.stopped_at if s.status == SessionStatus.AWAITING_TARIFF else None
    if e.sampled_at < s.started_at or (stop is not None and e.sampled_at > stop):
        raise ReadingOutsideSession(
            f"sampled_at {e.sampled_at.isoformat()} is outside the session "
            f"({s.started_at.isoformat()} to {stop.isoformat() if stop else 'its stop'}); "
            "not billed",
            session_id=s.session_id,
            seq_no=e.seq_no,
            station_id=e.station_id,
            transaction_id=e.transaction_id,
        )


def _stopped(facts: SessionFacts, e: SessionStopped, known: Known) -> Applied:
    s = _open(facts.session, "SessionStopped")
    if s is None:
        raise UnknownSession("SessionStopped without SessionStarted", session_id=e.session_id)
    check_stop(s.session_id, s.started_at, e.stopped_at)  # the session stays as it was
    stopped = dataclasses.replace(
        s,
        stopped_event_id=e.envelope.event_id,
        stopped_at=e.stopped_at,
        meter_stop_wh=e.meter_stop_wh,
    )
    return price_and_bill(stopped, facts.readings.values(), facts.states, known)


def check_tariff(e: TariffPublished, stored: TariffVersion | None) -> TariffVersion:
    """The tariff version ``e`` publishes, checked: a valid OCPI tariff whose id and currency
    match the event, a version from 1, and, when ``stored`` holds that version already, the
    same tariff (a published version is immutable).

    Raises InvalidTariff, TariffVersionConflict."""
    version = TariffVersion(
        e.tariff_id,
        e.version,
        e.currency,
        e.ocpi_tariff_json,
        e.envelope.occurred_at,
        e.envelope.event_id,
    )
    tariff = parse_tariff_json(e.ocpi_tariff_json)
    if tariff.id != e.tariff_id or tariff.currency != e.currency or e.version < 1:
        raise InvalidTariff(
            "tariff_id, currency or version do not match the OCPI tariff",
            tariff_id=e.tariff_id,
            version=e.version,
            currency=e.currency,
        )
    if stored is not None and (stored.ocpi_json, stored.currency) != (
        version.ocpi_json,
        e.currency,
    ):
        raise TariffVersionConflict(
            "a published tariff version is immutable; publish a new version",
            tariff_id=e.tariff_id,
            version=e.version,
        )
    return version
