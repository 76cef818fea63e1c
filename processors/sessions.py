"""The sessions processor: meter values under a frozen tariff become a CDR and a capture.

Consumer group ``evledger-sessions`` reads ``tariffs.events`` (tariff versions),
``payments.events`` (only the holds: PaymentAuthorized, AuthorizationIncremented) and
``sessions.events``. On SessionStopped it prices the session (``ledger.pricing``) and emits,
through the outbox of ``processors.base``, CdrIssued and CaptureRequested (or VoidRequested).
Emitted event ids are uuid5 of the causing event id, so a replay re-emits the same ids.
See docs/sessions.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import uuid
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Any

from connectors import sessions_store as store
from connectors.bootstrap import App
from connectors.kafka import Consumed
from ledger.corrections import Correction, SettlementKind, correct_cdr
from ledger.dimensions import Dimension
from ledger.envelope import Envelope, Source
from ledger.errors import CurrencyMismatch, LedgerError, ValidationError
from ledger.events import (
    AuthorizationIncremented,
    CaptureRequested,
    CdrCredited,
    CdrIssued,
    ChargingState,
    ChargingStateChanged,
    MeterValueRecorded,
    PaymentAuthorized,
    RefundRequested,
    RevenueLine,
    SessionStarted,
    SessionStopped,
    TariffPublished,
    VoidRequested,
)
from ledger.metering import (
    MeteredSession,
    MeterFlag,
    MeterReading,
    SessionMeter,
    current_a,
    energy_register_wh,
    power_kw,
)
from ledger.money import Money
from ledger.preauth import DEFAULT_MAX_DURATION, DEFAULT_MAX_POWER_KW, preauthorization_amount
from ledger.pricing import PricedSession, price_session
from ledger.tariffs import InvalidTariff, Tariff, UnknownTariff, parse_tariff_json
from processors.base import PostgresProcessor, Tx, relay_outbox

log = logging.getLogger("evledger.sessions")

GROUP = "evledger-sessions"
TOPICS = ("tariffs.events", "payments.events", "sessions.events")
_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://evledger.io/processors/sessions")


def derived_id(cause_event_id: str, kind: str) -> str:
    """Deterministic id of what ``cause_event_id`` caused (uuid5), so retries re-emit it."""
    return str(uuid.uuid5(_ID_NAMESPACE, f"{cause_event_id}/{kind}"))


class ShortfallPolicy(StrEnum):
    WRITE_OFF = "write_off"  # the part above the hold is written off
    CHARGE = "charge"  # the part above the hold is kept as owed (shortfall_status to_collect)


@dataclass(frozen=True)
class SessionsConfig:
    """Processor knobs (CLI options / ``build_sessions_processor`` keywords)."""

    shortfall_policy: ShortfallPolicy = ShortfallPolicy.WRITE_OFF
    #: An interval implying more power than this is METER_IMPLAUSIBLE_ENERGY (blocking).
    max_power_kw: Decimal = Decimal(400)
    #: A register drop to at most this is a meter reset, any other drop a decrease.
    reset_threshold_wh: Decimal = Decimal(1000)
    #: Assumed hold when payments.events never told us one (ledger.preauth sizing).
    preauth_max_power_kw: Decimal = DEFAULT_MAX_POWER_KW
    preauth_max_duration: timedelta = DEFAULT_MAX_DURATION


class UnknownSession(ValidationError):
    code = "UNKNOWN_SESSION"


class SessionAlreadyStarted(ValidationError):
    code = "SESSION_ALREADY_STARTED"


class SessionAlreadyStopped(ValidationError):
    code = "SESSION_ALREADY_STOPPED"


class ConflictingMeterValue(ValidationError):
    code = "METER_CONFLICTING_DUPLICATE"


class TariffVersionConflict(ValidationError):
    code = "TARIFF_VERSION_CONFLICT"


# ------------------------------------------------------------------------------------ domain glue
def resolve_tariff(
    versions: Sequence[store.TariffVersion], tariff_id: str, requested: int | None, at: datetime
) -> store.TariffVersion:
    """The requested version, else the latest one published at or before ``at`` (the session
    start): the tariff is frozen at start. Raises UnknownTariff."""
    if requested is not None:
        found = [v for v in versions if v.version == requested]
    else:
        found = sorted((v for v in versions if v.published_at <= at), key=lambda v: v.version)
    if not found:
        raise UnknownTariff(
            "tariff was never published (or not before the session started)",
            tariff_id=tariff_id,
            tariff_version=requested,
        )
    return found[-1]


def scale_lines(lines: Sequence[RevenueLine], target: int) -> list[RevenueLine]:
    """Revenue lines scaled down to sum to ``target`` (minor units, VAT included).

    Each line's gross is scaled by target/total with the largest remainder (ties to the earlier
    line); its net is the same share of the scaled gross as before, rounded half-up, and VAT is
    the rest. The result sums to ``target`` exactly."""
    gross = [line.amount_excl_vat + line.vat_amount for line in lines]
    total = sum(gross)
    if total <= 0 or target >= total:
        return list(lines)
    shares = [g * target // total for g in gross]
    by_remainder = sorted(range(len(lines)), key=lambda i: (-(gross[i] * target % total), i))
    for i in by_remainder[: target - sum(shares)]:
        shares[i] += 1
    scaled = []
    for line, g, share in zip(lines, gross, shares, strict=True):
        net = (2 * share * line.amount_excl_vat + g) // (2 * g) if g else 0
        scaled.append(RevenueLine(line.dimension, net, share - net, line.vat_rate, line.quantity))
    return scaled


def _whole(value: Decimal) -> int:
    """CDR quantities (Wh, seconds) are integers: rounded once, half-up."""
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def metered_session(
    s: store.SessionState,
    readings: Iterable[store.MeterRow],
    states: Iterable[tuple[datetime, ChargingState]],
    config: SessionsConfig,
) -> MeteredSession:
    """Rebuild the session's meter from its stored readings and states (any order)."""
    assert s.stopped_at is not None
    meter = SessionMeter(
        s.session_id, s.started_at, s.meter_start_wh, config.max_power_kw, config.reset_threshold_wh
    )
    for row in readings:
        meter.record_reading(row.station_id, row.transaction_id, row.reading)
    for at, state in states:
        meter.record_state(state, at)
    return meter.metered_session(s.stopped_at, s.time_zone, s.meter_stop_wh)


class TariffCache:
    """Parsed tariffs by (id, version); versions are immutable, so caching is safe."""

    def __init__(self) -> None:
        self._parsed: dict[tuple[str, int], Tariff] = {}

    def get(self, version: store.TariffVersion) -> Tariff:
        key = (version.tariff_id, version.version)
        tariff = self._parsed.get(key)
        if tariff is None:
            tariff = self._parsed[key] = parse_tariff_json(version.ocpi_json)
        return tariff


# ------------------------------------------------------------------------------------ billing
def hold_for(
    s: store.SessionState,
    tariff: Tariff,
    holds: dict[str, tuple[str, int]],
    config: SessionsConfig,
) -> tuple[Money, str] | None:
    """The session's hold and where it came from: ``authorized`` when payments.events told us
    (authorization + increments), else ``assumed``: the pre-authorization sizing of the tariff.
    None without a payment."""
    if s.payment_id is None:
        return None
    known = holds.get(s.payment_id)
    if known is not None:
        return Money(known[1], known[0]), "authorized"
    assumed = preauthorization_amount(
        tariff,
        starts_at=s.started_at,
        time_zone=s.time_zone,
        max_power_kw=config.preauth_max_power_kw,
        max_duration=config.preauth_max_duration,
    )
    log.warning(
        "session %s: no hold seen for payment %s; assuming the pre-authorization %s",
        s.session_id,
        s.payment_id,
        assumed,
    )
    return assumed, "assumed"


def bill(
    tx: Tx,
    s: store.SessionState,
    version: int,
    priced: PricedSession,
    hold: tuple[Money, str] | None,
    config: SessionsConfig,
    cause_id: str,
) -> list[store.CdrRow]:
    """Emit what a priced session owes: CdrIssued + CaptureRequested (capped at the hold), or
    VoidRequested when no energy was delivered. Updates ``s``; returns the CDR rows to store.
    Event ids derive from ``cause_id`` (the SessionStopped event id).

    Raises CurrencyMismatch when the hold is in another currency than the tariff."""

    def envelope(kind: str) -> Envelope:
        return Envelope.new(
            s.network_id,
            Source.internal,
            occurred_at=s.stopped_at,
            correlation_id=s.correlation_id,
            causation_id=cause_id,
            event_id=derived_id(cause_id, kind),
        )

    if hold is not None and hold[0].currency != priced.currency:
        raise CurrencyMismatch(
            "the hold and the tariff are in different currencies",
            session_id=s.session_id,
            payment_id=s.payment_id,
            hold=hold[0].currency,
            tariff=priced.currency,
        )
    s.tariff_version, s.currency = version, priced.currency
    if priced.energy_wh == 0:
        if s.payment_id is not None:
            tx.emit(VoidRequested(envelope("void"), s.payment_id, "NO_ENERGY_DELIVERED"))
        s.status = "voided"
        return []
    cdr_id = derived_id(cause_id, "cdr")
    lines = priced.revenue_lines()
    tx.emit(_cdr_issued(envelope("cdr-issued"), s, cdr_id, version, priced, None))
    s.status = "billed"
    cdr = _cdr_row(cdr_id, s, "issued", derived_id(cause_id, "cdr-issued"), version, priced)
    if s.payment_id is None or hold is None:
        return [cdr]
    held, s.hold_source = hold
    s.hold_minor = held.amount_minor
    total = priced.total_incl_vat
    if total.is_zero:
        tx.emit(VoidRequested(envelope("void"), s.payment_id, "NOTHING_TO_CAPTURE"))
        return [cdr]
    capture = total.min(held)
    shortfall = total - capture
    if not shortfall.is_zero:
        lines = scale_lines(lines, capture.amount_minor)
        s.shortfall_minor = shortfall.amount_minor
        s.shortfall_status = (
            "to_collect" if config.shortfall_policy is ShortfallPolicy.CHARGE else "written_off"
        )
    tx.emit(
        CaptureRequested(
            envelope("capture"),
            s.payment_id,
            capture,
            lines,
            True,
            cdr_id,
            s.station_id,
            s.country,
            None if shortfall.is_zero else shortfall,
        )
    )
    s.captured_minor = capture.amount_minor
    return [cdr]


def _cdr_issued(
    env: Envelope,
    s: store.SessionState,
    cdr_id: str,
    version: int,
    priced: PricedSession,
    replaces: str | None,
) -> CdrIssued:
    return CdrIssued(
        envelope=env,
        session_id=s.session_id,
        cdr_id=cdr_id,
        station_id=s.station_id,
        tariff_id=s.tariff_id,
        tariff_version=version,
        country=s.country,
        total_energy_wh=_whole(priced.energy_wh),
        total_time_s=_whole(priced.duration_s),
        total_parking_time_s=_whole(priced.parking_s),
        lines=priced.revenue_lines(),
        total_excl_vat=priced.total_excl_vat,
        total_incl_vat=priced.total_incl_vat,
        payment_id=s.payment_id,
        replaces_cdr_id=replaces,
    )


def _cdr_row(
    cdr_id: str,
    s: store.SessionState,
    kind: str,
    event_id: str,
    version: int,
    priced: PricedSession,
    replaces: str | None = None,
) -> store.CdrRow:
    return store.CdrRow(
        cdr_id,
        s.session_id,
        kind,
        event_id,
        s.tariff_id,
        version,
        tuple(sorted(d.value for d in priced.waived)),
        priced.currency,
        priced.total_excl_vat.amount_minor,
        priced.total_incl_vat.amount_minor,
        [_line_json(line) for line in priced.revenue_lines()],
        replaces,
    )


def _line_json(line: RevenueLine) -> dict[str, Any]:
    return {
        "dimension": line.dimension.value,
        "amount_excl_vat": line.amount_excl_vat,
        "vat_amount": line.vat_amount,
        "vat_rate": line.vat_rate,
        "quantity": line.quantity,
    }


# ------------------------------------------------------------------------------------ handler
class SessionsHandler:
    """Applies a batch: tariffs first, then holds, then session events in log order."""

    def __init__(self, config: SessionsConfig | None = None) -> None:
        self.config = config or SessionsConfig()
        self.tariffs = TariffCache()

    def handle(self, tx: Tx, records: Sequence[Consumed]) -> None:
        self._tariffs(tx, [r for r in records if isinstance(r.event, TariffPublished)])
        self._holds(tx, [r for r in records if r.topic == "payments.events"])
        self._bill_waiting(
            tx,
            {
                r.event.tariff_id
                for r in records
                if r.topic == "tariffs.events" and isinstance(r.event, TariffPublished)
            },
        )
        session_records = [r for r in records if r.topic == "sessions.events"]
        if session_records:
            _SessionBatch(self, tx, session_records).apply()

    def _tariffs(self, tx: Tx, records: list[Consumed]) -> None:
        if not records:
            return
        known = store.tariff_versions(tx.conn, {r.event.tariff_id for r in records})
        seen = {(v.tariff_id, v.version): v for vs in known.values() for v in vs}
        new: list[store.TariffVersion] = []
        for record in records:
            e: TariffPublished = record.event
            row = store.TariffVersion(
                e.tariff_id,
                e.version,
                e.currency,
                e.ocpi_tariff_json,
                e.envelope.occurred_at,
                e.envelope.event_id,
            )
            try:
                tariff = parse_tariff_json(e.ocpi_tariff_json)
                if tariff.id != e.tariff_id or tariff.currency != e.currency or e.version < 1:
                    raise InvalidTariff(
                        "tariff_id, currency or version do not match the OCPI tariff",
                        tariff_id=e.tariff_id,
                        version=e.version,
                        currency=e.currency,
                    )
                old = seen.get((e.tariff_id, e.version))
                if old is not None and (old.ocpi_json, old.currency) != (row.ocpi_json, e.currency):
                    raise TariffVersionConflict(
                        "a published tariff version is immutable; publish a new version",
                        tariff_id=e.tariff_id,
                        version=e.version,
                    )
            except LedgerError as exc:
                tx.reject(record, exc.code, str(exc))
                continue
            if old is None:
                seen[(e.tariff_id, e.version)] = row
                new.append(row)
        store.insert_tariffs(tx.conn, new)

    def _bill_waiting(self, tx: Tx, tariff_ids: set[str]) -> None:
        """Bill sessions whose stop waited for one of ``tariff_ids`` (ids derive from the stop,
        so the result equals billing it on time)."""
        waiting = store.sessions_awaiting(tx.conn, tariff_ids)
        if not waiting:
            return
        ids = [s.session_id for s in waiting]
        versions = store.tariff_versions(tx.conn, tariff_ids)
        readings: dict[str, list[store.MeterRow]] = {}
        for row in store.load_meter_rows(tx.conn, (), ids):
            readings.setdefault(row.session_id, []).append(row)
        states = store.load_states(tx.conn, ids)
        holds = store.load_holds(tx.conn, {s.payment_id for s in waiting if s.payment_id})
        cdrs: list[store.CdrRow] = []
        for s in waiting:
            try:
                billed, _held = settle(
                    tx,
                    s,
                    versions.get(s.tariff_id, []),
                    readings.get(s.session_id, []),
                    states.get(s.session_id, []),
                    holds,
                    self.tariffs,
                    self.config,
                )
            except LedgerError as exc:
                log.warning("session %s still not billable: %s", s.session_id, exc)
                continue
            cdrs += billed
            log.info("session %s billed after its tariff arrived: %s", s.session_id, s.status)
        store.save_sessions(tx.conn, waiting)
        store.insert_cdrs(tx.conn, cdrs)

    def _holds(self, tx: Tx, records: list[Consumed]) -> None:
        holds = [
            (r.event.payment_id, r.event.amount.currency, r.event.amount.amount_minor)
            for r in records
            if isinstance(r.event, PaymentAuthorized | AuthorizationIncremented)
        ]
        store.add_holds(tx.conn, holds)


class _SessionBatch:
    """One batch of sessions.events: state loaded once per table, saved once at the end."""

    def __init__(self, handler: SessionsHandler, tx: Tx, records: list[Consumed]) -> None:
        self.handler, self.config, self.tx, self.records = handler, handler.config, tx, records
        conn = tx.conn
        events = [r.event for r in records]
        self.sessions = store.load_sessions(conn, {e.session_id for e in events})
        self.stopping = {e.session_id for e in events if isinstance(e, SessionStopped)}
        keys = {
            (e.session_id, e.station_id, e.transaction_id, e.seq_no)
            for e in events
            if isinstance(e, MeterValueRecorded)
        }
        self.by_key: dict[store.MeterKey, store.MeterRow] = {}
        self.readings: dict[str, dict[store.MeterKey, store.MeterRow]] = {}
        for row in store.load_meter_rows(conn, keys, self.stopping):
            self.by_key[row.key] = row
            if row.session_id in self.stopping:
                self.readings.setdefault(row.session_id, {})[row.key] = row
        self.states = store.load_states(conn, self.stopping)
        starts = [e for e in events if isinstance(e, SessionStarted)]
        known = list(self.sessions.values())
        self.tariff_versions = store.tariff_versions(
            conn, {s.tariff_id for s in known} | {e.tariff_id for e in starts}
        )
        self.holds = store.load_holds(
            conn,
            {s.payment_id for s in known if s.payment_id}
            | {e.payment_id for e in starts if e.payment_id},
        )
        self.changed: set[str] = set()
        self.new_readings: list[store.MeterRow] = []
        self.new_states: list[tuple[str, datetime, ChargingState]] = []
        self.new_cdrs: list[store.CdrRow] = []

    def apply(self) -> None:
        for record in self.records:
            event = record.event
            try:
                if isinstance(event, SessionStarted):
                    self._started(event)
                elif isinstance(event, MeterValueRecorded):
                    self._meter_value(event)
                elif isinstance(event, ChargingStateChanged):
                    self._state(event)
                elif isinstance(event, SessionStopped):
                    self._stopped(record, event)
            except LedgerError as exc:
                self.tx.reject(record, exc.code, str(exc))
        conn = self.tx.conn
        store.insert_meter_rows(conn, self.new_readings)
        store.insert_states(conn, self.new_states)
        store.save_sessions(conn, (self.sessions[sid] for sid in sorted(self.changed)))
        store.insert_cdrs(conn, self.new_cdrs)

    def _open(self, session_id: str, what: str) -> store.SessionState | None:
        s = self.sessions.get(session_id)
        if s is not None and s.status not in ("open", "rejected", "awaiting_tariff"):
            raise SessionAlreadyStopped(
                f"{what} after the session was {s.status}; re-price it with a correction",
                session_id=session_id,
            )
        return s

    def _started(self, e: SessionStarted) -> None:
        if e.session_id in self.sessions:
            raise SessionAlreadyStarted(
                "another SessionStarted for this session", session_id=e.session_id
            )
        env = e.envelope
        s = store.SessionState(
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
            e.tariff_version,
            e.payment_id,
            e.meter_start_wh,
            env.occurred_at,
        )
        try:  # freeze now when the tariff is known; else the same rule applies at stop
            versions = self.tariff_versions.get(e.tariff_id, [])
            s.tariff_version = resolve_tariff(
                versions, e.tariff_id, e.tariff_version, s.started_at
            ).version
        except UnknownTariff:
            pass
        self.sessions[e.session_id] = s
        self.changed.add(e.session_id)

    def _meter_value(self, e: MeterValueRecorded) -> None:
        self._open(e.session_id, "meter value")
        reading = MeterReading(
            e.seq_no,
            e.sampled_at,
            energy_register_wh(e.samples),
            power_kw(e.samples),
            current_a(e.samples),
        )
        row = store.MeterRow(
            e.station_id, e.transaction_id, e.session_id, reading, e.envelope.event_id
        )
        seen = self.by_key.get(row.key)
        if seen is not None:
            if seen.reading != reading:
                raise ConflictingMeterValue(
                    "same (station, transaction, seq_no) with other values; the first is kept",
                    session_id=e.session_id,
                    seq_no=e.seq_no,
                    first_event_id=seen.event_id,
                )
            return  # the same reading re-sent under another event id: nothing changes
        self.by_key[row.key] = row
        self.readings.setdefault(e.session_id, {})[row.key] = row
        self.new_readings.append(row)

    def _state(self, e: ChargingStateChanged) -> None:
        self._open(e.session_id, "charging state")
        self.states.setdefault(e.session_id, []).append((e.changed_at, e.state))
        self.new_states.append((e.session_id, e.changed_at, e.state))

    def _stopped(self, record: Consumed, e: SessionStopped) -> None:
        s = self._open(e.session_id, "SessionStopped")
        if s is None:
            raise UnknownSession("SessionStopped without SessionStarted", session_id=e.session_id)
        s.stopped_event_id, s.stopped_at, s.meter_stop_wh = (
            e.envelope.event_id,
            e.stopped_at,
            e.meter_stop_wh,
        )
        self.changed.add(s.session_id)
        cdrs, blocking = settle(
            self.tx,
            s,
            self.tariff_versions.get(s.tariff_id, []),
            self.readings.get(s.session_id, {}).values(),
            self.states.get(s.session_id, []),
            self.holds,
            self.handler.tariffs,
            self.config,
        )
        self.new_cdrs += cdrs
        if blocking:
            detail = "; ".join(f"{f.code.value} seq_no={f.seq_no}: {f.detail}" for f in blocking)
            self.tx.reject(record, blocking[0].code.value, f"CDR held for review: {detail}")


def settle(
    tx: Tx,
    s: store.SessionState,
    versions: Sequence[store.TariffVersion],
    readings: Iterable[store.MeterRow],
    states: Iterable[tuple[datetime, ChargingState]],
    holds: dict[str, tuple[str, int]],
    tariffs: TariffCache,
    config: SessionsConfig,
) -> tuple[list[store.CdrRow], tuple[MeterFlag, ...]]:
    """Price and bill a stopped session: the CDR rows, or the blocking flags that hold it.

    Sets ``s.status``: billed / voided, held (blocking flags), awaiting_tariff (UnknownTariff,
    re-raised: billed when the tariff arrives) or rejected (any other LedgerError, re-raised)."""
    assert s.stopped_event_id is not None
    try:
        found = resolve_tariff(versions, s.tariff_id, s.tariff_version, s.started_at)
    except UnknownTariff as exc:
        s.status, s.reason_code = "awaiting_tariff", exc.code
        raise
    try:
        tariff = tariffs.get(found)
        metered = metered_session(s, readings, states, config)
        s.flags = [_flag_json(f) for f in metered.flags]
        blocking = metered.blocking_flags
        if blocking:
            s.status, s.reason_code = "held", blocking[0].code.value
            return [], blocking
        priced = price_session(tariff, metered)
        hold = hold_for(s, tariff, holds, config)
        cdrs = bill(tx, s, found.version, priced, hold, config, s.stopped_event_id)
    except LedgerError as exc:
        s.status, s.reason_code = "rejected", exc.code
        raise
    s.reason_code = None
    return cdrs, ()


def _flag_json(flag: Any) -> dict[str, Any]:
    return {
        "code": flag.code.value,
        "seq_no": flag.seq_no,
        "sampled_at": None if flag.sampled_at is None else flag.sampled_at.isoformat(),
        "detail": flag.detail,
    }


# ------------------------------------------------------------------------------------ corrections
class NothingToReprice(ValidationError):
    code = "NOTHING_TO_REPRICE"


class SessionNotBilled(ValidationError):
    code = "SESSION_NOT_BILLED"


def reprice(
    app: App,
    session_id: str,
    waive: Collection[Dimension],
    reason: str,
    *,
    database_url: str | None = None,
    config: SessionsConfig | None = None,
) -> Correction:
    """Re-price a billed session with ``waive`` (e.g. PARKING_TIME) and emit CdrCredited, the new
    CdrIssued (replaces_cdr_id) and RefundRequested for the difference, through the outbox in one
    transaction, then relay. Afterwards captured - refunded = the new total (or the hold, if
    that is less). Raises UnknownSession, SessionNotBilled, NothingToReprice."""
    from connectors.postgres import connect

    config = config or SessionsConfig()
    with connect(database_url or app.database_url) as conn:
        with conn.transaction():
            correction = _reprice(conn, app, session_id, frozenset(waive), reason, config)
        relay_outbox(conn, app.publisher())
    return correction


def _reprice(
    conn: store.Conn,
    app: App,
    session_id: str,
    waive: frozenset[Dimension],
    reason: str,
    config: SessionsConfig,
) -> Correction:
    s = store.lock_session(conn, session_id)
    if s is None:
        raise UnknownSession("no such session", session_id=session_id)
    if s.status != "billed" or s.tariff_version is None:
        raise SessionNotBilled(f"the session is {s.status}", session_id=session_id)
    cdrs = store.cdrs_of(conn, session_id)
    credited = {c.credited_cdr_id for c in cdrs if c.kind == "credited"}
    current = [c for c in cdrs if c.kind == "issued" and c.cdr_id not in credited][-1]
    before = frozenset(Dimension(d) for d in current.waived)
    after = before | waive
    if after == before:
        raise NothingToReprice("already priced with that waiver", session_id=session_id)
    (version,) = [
        v
        for v in store.tariff_versions(conn, (s.tariff_id,)).get(s.tariff_id, [])
        if v.version == s.tariff_version
    ]
    tariff = TariffCache().get(version)
    metered = metered_session(
        s,
        store.meter_rows_of(conn, session_id),
        store.load_states(conn, (session_id,)).get(session_id, []),
        config,
    )
    original = price_session(tariff, metered, waive=before)
    if original.total_incl_vat.amount_minor != current.total_incl_vat:
        raise ValidationError(
            "re-pricing the current CDR does not reproduce it",
            session_id=session_id,
            cdr_id=current.cdr_id,
        )
    repriced = price_session(tariff, metered, waive=after)
    captured = Money(s.captured_minor - s.refunded_minor, repriced.currency)
    correction = correct_cdr(original, repriced, captured, reason)
    tx = Tx(conn, app.serde.encode, GROUP, s.network_id)
    cause = current.event_id

    def envelope(kind: str) -> Envelope:
        return Envelope.new(
            s.network_id,
            Source.internal,
            correlation_id=s.correlation_id,
            causation_id=cause,
            event_id=derived_id(cause, kind),
        )

    credit_id, new_id = derived_id(cause, "credit"), derived_id(cause, "reissue")
    tx.emit(
        CdrCredited(
            envelope("cdr-credited"),
            session_id,
            credit_id,
            current.cdr_id,
            correction.credit.total_incl_vat,
            reason,
            list(correction.credit.lines),
            s.payment_id,
        )
    )
    tx.emit(
        _cdr_issued(envelope("cdr-reissued"), s, new_id, version.version, repriced, current.cdr_id)
    )
    rows = [
        store.CdrRow(
            credit_id,
            session_id,
            "credited",
            derived_id(cause, "cdr-credited"),
            s.tariff_id,
            version.version,
            current.waived,
            current.currency,
            current.total_excl_vat,
            current.total_incl_vat,
            current.lines,
            None,
            current.cdr_id,
            reason,
        ),
        _cdr_row(
            new_id,
            s,
            "issued",
            derived_id(cause, "cdr-reissued"),
            version.version,
            repriced,
            current.cdr_id,
        ),
    ]
    if correction.kind is SettlementKind.REFUND and s.payment_id is not None:
        tx.emit(
            RefundRequested(
                envelope("refund"),
                s.payment_id,
                derived_id(cause, "refund-id"),
                correction.refund,
                list(correction.refund_lines),
                reason,
            )
        )
        s.refunded_minor += correction.refund.amount_minor
    s.shortfall_minor = correction.additional_charge.amount_minor
    if not s.shortfall_minor:
        s.shortfall_status = None
    store.insert_cdrs(conn, rows)
    store.save_sessions(conn, [s])
    return correction


class SessionNotHeld(ValidationError):
    code = "SESSION_NOT_HELD"


def release(
    app: App,
    session_id: str,
    reason: str,
    *,
    database_url: str | None = None,
    config: SessionsConfig | None = None,
) -> str:
    """Bill a session held for a blocking meter flag, after review, as the meter reads without
    the flagged readings (a decrease or reset delivers no energy; implausible energy is billed as
    measured). Emits like a stop would, with ids derived from the stop; returns the new status.
    Raises UnknownSession, SessionNotHeld, UnknownTariff."""
    from connectors.postgres import connect

    config = config or SessionsConfig()
    with connect(database_url or app.database_url) as conn:
        with conn.transaction():
            s = store.lock_session(conn, session_id)
            if s is None:
                raise UnknownSession("no such session", session_id=session_id)
            if s.status != "held" or s.stopped_event_id is None or s.stopped_at is None:
                raise SessionNotHeld(f"the session is {s.status}", session_id=session_id)
            versions = store.tariff_versions(conn, (s.tariff_id,)).get(s.tariff_id, [])
            found = resolve_tariff(versions, s.tariff_id, s.tariff_version, s.started_at)
            tariff = TariffCache().get(found)
            metered = metered_session(
                s,
                store.meter_rows_of(conn, session_id),
                store.load_states(conn, (session_id,)).get(session_id, []),
                config,
            )
            holds = store.load_holds(conn, [s.payment_id] if s.payment_id else [])
            tx = Tx(conn, app.serde.encode, GROUP, s.network_id)
            priced = price_session(tariff, metered)
            hold = hold_for(s, tariff, holds, config)
            cause_id = derived_id(s.stopped_event_id, "release")
            rows = bill(tx, s, found.version, priced, hold, config, cause_id)
            store.insert_cdrs(conn, [dataclasses.replace(r, reason=reason) for r in rows])
            store.save_sessions(conn, [s])
        relay_outbox(conn, app.publisher())
    return s.status


# ------------------------------------------------------------------------------------ wiring
def build_sessions_processor(
    app: App,
    *,
    group: str = GROUP,
    database_url: str | None = None,
    config: SessionsConfig | None = None,
    batch_size: int = 2000,
) -> PostgresProcessor:
    """The sessions processor on the shared exactly-once loop (``processors.base``)."""
    return PostgresProcessor(
        app, SessionsHandler(config), group, TOPICS, batch_size, database_url=database_url
    )


def waivable(names: Collection[str]) -> frozenset[Dimension]:
    """Dimensions named on the command line (ENERGY, TIME, PARKING_TIME, FLAT)."""
    try:
        return frozenset(Dimension(name.upper()) for name in names)
    except ValueError:
        raise ValidationError("unknown tariff dimension", names=",".join(names)) from None


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m processors.sessions [--drain]``."""
    from connectors.bootstrap import bootstrap
    from connectors.postgres import migrate

    parser = argparse.ArgumentParser(prog="python -m processors.sessions")
    parser.add_argument("--drain", action="store_true", help="stop when idle (demo, replays)")
    parser.add_argument(
        "--shortfall-policy",
        choices=[p.value for p in ShortfallPolicy],
        default=ShortfallPolicy.WRITE_OFF.value,
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    app = bootstrap()
    migrate(app.database_url)
    config = SessionsConfig(shortfall_policy=ShortfallPolicy(args.shortfall_policy))
    processor = build_sessions_processor(app, config=config)
    try:
        if args.drain:
            stats = processor.drain()
            log.info("drained: %s", stats)
        else:
            processor.run_forever()
    finally:
        processor.close()


if __name__ == "__main__":
    main()
