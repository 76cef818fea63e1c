"""The sessions processor: meter values under a frozen tariff become a CDR and a capture.

Consumer group ``evledger-sessions`` reads ``tariffs.events`` (tariff versions),
``payments.events`` (only the holds: PaymentAuthorized, AuthorizationIncremented, by the
ledger's rules) and ``sessions.events``. On SessionStopped it prices the session
(``ledger.pricing``) and emits, through the outbox of ``processors.base``, CdrIssued and
CaptureRequested (or VoidRequested), or holds the session with a reason.
Emitted event ids are uuid5 of the causing event id, so a replay re-emits the same ids.

This module holds the handler and its wiring; pricing and billing live in
``processors.sessions_billing``, re-pricing and release in ``processors.sessions_corrections``,
the shared settings, ids and topics in ``processors.sessions_base``. See docs/sessions.md.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from connectors import sessions_store as store
from connectors.kafka import Consumed
from ledger.errors import LedgerError
from ledger.events import (
    AuthorizationIncremented,
    ChargingState,
    ChargingStateChanged,
    MeterValueRecorded,
    PaymentAuthorized,
    SessionStarted,
    SessionStopped,
    TariffPublished,
)
from ledger.pricing.tariffs import InvalidTariff, UnknownTariff, parse_tariff_json
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
    ShortfallPolicy,
    TariffVersionConflict,
    UnknownSession,
)
from processors.base import Effects, PostgresProcessor, Wiring
from processors.sessions_base import (
    GROUP,
    TOPICS,
    SessionsConfig,
    apply_hold,
    derived_id,
    hold_rejection_detail,
    rejected_hold,
)
from processors.sessions_billing import TariffCache, price_and_bill, resolve_tariff, scale_lines
from processors.sessions_corrections import release, reprice, waivable

# Re-exported: the CLI, the demo and the tests import these from here.
__all__ = [
    "GROUP",
    "TOPICS",
    "SessionsConfig",
    "SessionsHandler",
    "ShortfallPolicy",
    "TariffCache",
    "build_sessions_processor",
    "derived_id",
    "release",
    "reprice",
    "resolve_tariff",
    "scale_lines",
    "waivable",
]

log = logging.getLogger("evledger.sessions")


# ------------------------------------------------------------------------------------ handler
class SessionsHandler:
    """Applies a batch: tariffs first, then holds, then session events in log order."""

    def __init__(self, config: SessionsConfig | None = None) -> None:
        self.config = config or SessionsConfig()
        self.tariffs = TariffCache()

    def handle(self, tx: Effects, records: Sequence[Consumed]) -> None:
        self._tariffs(tx, [r for r in records if isinstance(r.event, TariffPublished)])
        authorized = self._holds(tx, [r for r in records if r.topic == "payments.events"])
        self._bill_waiting(
            tx,
            {
                r.event.tariff_id
                for r in records
                if r.topic == "tariffs.events" and isinstance(r.event, TariffPublished)
            },
            authorized,
        )
        session_records = [r for r in records if r.topic == "sessions.events"]
        if session_records:
            _SessionBatch(self, tx, session_records).apply()

    def _tariffs(self, tx: Effects, records: list[Consumed]) -> None:
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

    def _bill_waiting(self, tx: Effects, tariff_ids: set[str], payment_ids: set[str]) -> None:
        """Bill sessions whose stop waited for one of ``tariff_ids``, or for an accepted hold of
        one of ``payment_ids`` (ids derive from the stop, so the result equals billing it on
        time)."""
        waiting = store.sessions_awaiting(tx.conn, tariff_ids, payment_ids)
        if not waiting:
            return
        ids = [s.session_id for s in waiting]
        versions = store.tariff_versions(tx.conn, {s.tariff_id for s in waiting})
        readings: dict[str, list[store.MeterRow]] = {}
        for row in store.load_meter_rows(tx.conn, (), ids):
            readings.setdefault(row.session_id, []).append(row)
        states = store.load_states(tx.conn, ids)
        holds = store.load_holds(tx.conn, {s.payment_id for s in waiting if s.payment_id})
        cdrs: list[store.CdrRow] = []
        for s in waiting:
            try:
                billed, held = price_and_bill(
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
            if held is not None:
                log.warning("session %s held: %s %s", s.session_id, held.code, held.detail)
            else:
                log.info("session %s settled after the wait: %s", s.session_id, s.status)
        store.save_sessions(tx.conn, waiting)
        store.insert_cdrs(tx.conn, cdrs)

    def _holds(self, tx: Effects, records: list[Consumed]) -> set[str]:
        """Apply authorizations and increments by the ledger's rules; reject what it would.
        Returns the payment ids that now have an accepted hold they lacked before."""
        records = [
            r for r in records if isinstance(r.event, PaymentAuthorized | AuthorizationIncremented)
        ]
        if not records:
            return set()
        holds = store.load_holds(tx.conn, {r.event.payment_id for r in records})
        before = {pid for pid, h in holds.items() if h.status == "authorized"}
        changed: set[str] = set()
        for record in records:
            e: PaymentAuthorized | AuthorizationIncremented = record.event
            current = holds.get(e.payment_id)
            try:
                holds[e.payment_id] = apply_hold(current, e)
            except LedgerError as exc:
                detail = hold_rejection_detail(e, exc)
                tx.reject(record, exc.code, detail)
                log.warning("hold rejected: %s", detail)
                if isinstance(e, PaymentAuthorized) and (
                    current is None or current.status != "authorized"
                ):
                    holds[e.payment_id] = rejected_hold(e, exc)
                else:
                    continue
            changed.add(e.payment_id)
        store.save_holds(tx.conn, [holds[pid] for pid in sorted(changed)])
        return {pid for pid in changed if holds[pid].status == "authorized" and pid not in before}


class _SessionBatch:
    """One batch of sessions.events: state loaded once per table, saved once at the end."""

    def __init__(self, handler: SessionsHandler, tx: Effects, records: list[Consumed]) -> None:
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
        if s is not None and not SessionStatus(s.status).accepts_session_events:
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
        s = self._open(e.session_id, "meter value")
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
        check_stop(s.session_id, s.started_at, e.stopped_at)  # the session stays as it was
        s.stopped_event_id, s.stopped_at, s.meter_stop_wh = (
            e.envelope.event_id,
            e.stopped_at,
            e.meter_stop_wh,
        )
        self.changed.add(s.session_id)
        cdrs, held = price_and_bill(
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
        if held is not None:
            self.tx.reject(record, held.code, held.detail)


def _within(s: store.SessionState, e: MeterValueRecorded) -> None:
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


# ------------------------------------------------------------------------------------ wiring
def build_sessions_processor(
    app: Wiring,
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
