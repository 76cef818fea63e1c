"""The sessions processor: meter values under a frozen tariff become a CDR and a capture.

Consumer group ``evledger-sessions`` reads ``tariffs.events`` (tariff versions),
``payments.events`` (only the holds: PaymentAuthorized, AuthorizationIncremented, by the
ledger's rules) and ``sessions.events``. On SessionStopped it prices the session
(``ledger.pricing``) and emits, through the outbox of ``processors.base``, CdrIssued and
CaptureRequested (or VoidRequested), or holds the session with a reason.
Emitted event ids are uuid5 of the causing event id, so a replay re-emits the same ids.

The rules live in the domain (``ledger.sessions``: ``lifecycle.apply`` per session event,
``holds.apply_hold_event``, ``lifecycle.check_tariff``); this module loads what a batch needs
once per table, applies each record, stores the results and emits through the outbox.
Re-pricing and release, run by a person, are ``processors.sessions_corrections``.
See docs/sessions.md.
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
    MeterValueRecorded,
    PaymentAuthorized,
    SessionStarted,
    SessionStopped,
    TariffPublished,
)
from ledger.sessions.billing import Known, TariffCache, price_and_bill
from ledger.sessions.holds import HOLD_ASSUMED, apply_hold_event
from ledger.sessions.lifecycle import apply, check_tariff
from ledger.sessions.rules import SessionsConfig
from ledger.sessions.session import (
    Applied,
    CdrRecord,
    MeterKey,
    PaymentHold,
    Session,
    SessionFacts,
    SessionReading,
    StateChange,
    TariffVersion,
)
from ledger.sessions.settled import Outcome, settle
from processors.base import Effects, PostgresProcessor, Wiring

GROUP = "evledger-sessions"
TOPICS = ("tariffs.events", "payments.events", "sessions.events")

log = logging.getLogger("evledger.sessions")
SETTLING = Outcome.__args__
"""Payment outcomes that change a billed session's captured or receivable amount."""


# ------------------------------------------------------------------------------------ handler
class SessionsHandler:
    """Applies a batch: tariffs first, then holds, then session events in log order."""

    def __init__(self, config: SessionsConfig | None = None) -> None:
        self.config = config or SessionsConfig()
        self.tariffs = TariffCache()

    def handle(self, tx: Effects, records: Sequence[Consumed]) -> None:
        published = [r for r in records if isinstance(r.event, TariffPublished)]
        self._tariffs(tx, published)
        payment_records = [r for r in records if r.topic == "payments.events"]
        authorized = self._holds(tx, payment_records)
        self._outcomes(tx, payment_records)
        self._bill_waiting(
            tx, {r.event.tariff_id for r in published if r.topic == "tariffs.events"}, authorized
        )
        session_records = [r for r in records if r.topic == "sessions.events"]
        if session_records:
            self._sessions(tx, session_records)

    def _known(
        self,
        tariffs: dict[str, list[TariffVersion]],
        holds: dict[str, PaymentHold],
        meter_keys: dict[str, list[str]],
    ) -> Known:
        return Known(tariffs, holds, self.tariffs, self.config, meter_keys)

    def _tariffs(self, tx: Effects, records: list[Consumed]) -> None:
        """Keep each new tariff version; reject an invalid one or a changed republication."""
        if not records:
            return
        known = store.tariff_versions(tx.conn, {r.event.tariff_id for r in records})
        seen = {(v.tariff_id, v.version): v for vs in known.values() for v in vs}
        new: list[TariffVersion] = []
        for record in records:
            e: TariffPublished = record.event
            stored = seen.get((e.tariff_id, e.version))
            try:
                version = check_tariff(e, stored)
            except LedgerError as exc:
                tx.reject(record, exc.code, str(exc))
                continue
            if stored is None:
                seen[(e.tariff_id, e.version)] = version
                new.append(version)
        store.insert_tariffs(tx.conn, new)

    def _holds(self, tx: Effects, records: list[Consumed]) -> set[str]:
        """Apply authorizations and increments by the ledger's rules; reject what it would.
        Returns the payment ids that now have an accepted hold they lacked before."""
        records = [
            r for r in records if isinstance(r.event, PaymentAuthorized | AuthorizationIncremented)
        ]
        if not records:
            return set()
        holds = store.load_holds(tx.conn, {r.event.payment_id for r in records})
        before = {pid for pid, h in holds.items() if h.authorized}
        changed: set[str] = set()
        for record in records:
            e: PaymentAuthorized | AuthorizationIncremented = record.event
            applied = apply_hold_event(holds.get(e.payment_id), e)
            if applied.rejection is not None:
                tx.reject(record, applied.rejection.code, applied.rejection.detail)
                log.warning("hold rejected: %s", applied.rejection.detail)
            if applied.hold is not None:
                holds[e.payment_id] = applied.hold
                changed.add(e.payment_id)
        store.save_holds(tx.conn, [holds[pid] for pid in sorted(changed)])
        return {pid for pid in changed if holds[pid].authorized and pid not in before}

    def _outcomes(self, tx: Effects, records: list[Consumed]) -> None:
        """Keep the captured and receivable amounts of billed sessions as the payment outcomes
        that name their CDRs say (``ledger.sessions.settled``)."""
        outcomes = [
            r.event
            for r in records
            if isinstance(r.event, SETTLING) and getattr(r.event, "cdr_id", None) is not None
        ]
        if not outcomes:
            return
        owners = store.sessions_of_cdrs(tx.conn, {e.cdr_id for e in outcomes})
        sessions = store.load_sessions(tx.conn, set(owners.values()))
        changed: set[str] = set()
        for event in outcomes:
            session_id = owners.get(event.cdr_id)
            if session_id is None or session_id not in sessions:
                continue  # a CDR of another system: not ours to follow
            after = settle(sessions[session_id], event)
            if after != sessions[session_id]:
                sessions[session_id] = after
                changed.add(session_id)
        store.save_sessions(tx.conn, [sessions[sid] for sid in sorted(changed)])

    def _bill_waiting(self, tx: Effects, tariff_ids: set[str], payment_ids: set[str]) -> None:
        """Bill sessions whose stop waited for one of ``tariff_ids``, or for an accepted hold of
        one of ``payment_ids`` (ids derive from the stop, so the result equals billing it on
        time)."""
        waiting = store.sessions_awaiting(tx.conn, tariff_ids, payment_ids)
        if not waiting:
            return
        ids = [s.session_id for s in waiting]
        readings: dict[str, list[SessionReading]] = {}
        for row in store.load_meter_rows(tx.conn, (), ids):
            readings.setdefault(row.session_id, []).append(row)
        states = store.load_states(tx.conn, ids)
        known = self._known(
            store.tariff_versions(tx.conn, {s.tariff_id for s in waiting}),
            store.load_holds(tx.conn, {s.payment_id for s in waiting if s.payment_id}),
            store.meter_keys(tx.conn, {s.station_id for s in waiting}),
        )
        saved: list[Session] = []
        cdrs: list[CdrRecord] = []
        for s in waiting:
            applied = price_and_bill(
                s, readings.get(s.session_id, []), states.get(s.session_id, []), known
            )
            assert applied.session is not None
            saved.append(applied.session)
            _emit(tx, applied)
            cdrs += applied.cdrs
            after, rejection = applied.session, applied.rejection
            if rejection is not None:
                log.warning("session %s %s: %s", s.session_id, after.status, rejection.detail)
            else:
                log.info("session %s settled after the wait: %s", s.session_id, after.status)
        store.save_sessions(tx.conn, saved)
        store.insert_cdrs(tx.conn, cdrs)

    def _sessions(self, tx: Effects, records: list[Consumed]) -> None:
        """Load every table a batch of sessions.events needs once, apply the records in log
        order, and save what changed once."""
        conn = tx.conn
        events = [r.event for r in records]
        sessions = store.load_sessions(conn, {e.session_id for e in events})
        stopping = {e.session_id for e in events if isinstance(e, SessionStopped)}
        keys = {
            (e.session_id, e.station_id, e.transaction_id, e.seq_no)
            for e in events
            if isinstance(e, MeterValueRecorded)
        }
        # Every reading of a session that stops in this batch (pricing), and the stored
        # reading of each key in the batch (redeliveries and conflicts).
        readings: dict[str, dict[MeterKey, SessionReading]] = {}
        for row in store.load_meter_rows(conn, keys, stopping):
            readings.setdefault(row.session_id, {})[row.key] = row
        states: dict[str, list[StateChange]] = dict(store.load_states(conn, stopping))
        starts = [e for e in events if isinstance(e, SessionStarted)]
        known = self._known(
            store.tariff_versions(
                conn, {s.tariff_id for s in sessions.values()} | {e.tariff_id for e in starts}
            ),
            store.load_holds(
                conn,
                {s.payment_id for s in sessions.values() if s.payment_id}
                | {e.payment_id for e in starts if e.payment_id},
            ),
            # The stations of the sessions that stop in this batch, those that also start in
            # it included (their keys verify the signed meter values at the stop).
            store.meter_keys(
                conn,
                {sessions[sid].station_id for sid in stopping if sid in sessions}
                | {e.station_id for e in starts if e.session_id in stopping},
            ),
        )
        changed: set[str] = set()
        new_readings: list[SessionReading] = []
        new_states: list[tuple[str, datetime, ChargingState]] = []
        new_cdrs: list[CdrRecord] = []
        for record in records:
            sid = record.event.session_id
            facts = SessionFacts(sid, sessions.get(sid), readings.get(sid, {}), states.get(sid, []))
            try:
                applied = apply(facts, record.event, known)
            except LedgerError as exc:
                tx.reject(record, exc.code, str(exc))
                continue
            if applied.session is not None:
                sessions[sid] = applied.session
                changed.add(sid)
            if applied.reading is not None:
                readings.setdefault(sid, {})[applied.reading.key] = applied.reading
                new_readings.append(applied.reading)
            if applied.state is not None:
                states.setdefault(sid, []).append(applied.state)
                new_states.append((sid, applied.state[0], applied.state[1]))
            _emit(tx, applied)
            new_cdrs += applied.cdrs
            if applied.rejection is not None:
                tx.reject(record, applied.rejection.code, applied.rejection.detail)
        store.insert_meter_rows(conn, new_readings)
        store.insert_states(conn, new_states)
        store.save_sessions(conn, (sessions[sid] for sid in sorted(changed)))
        store.insert_cdrs(conn, new_cdrs)


def _emit(tx: Effects, applied: Applied) -> None:
    """Queue what ``applied`` emits, and say when a capture rests on an assumed hold."""
    for event in applied.events:
        tx.emit(event)
    s = applied.session
    if s is not None and s.hold_source == HOLD_ASSUMED and applied.events:
        log.warning(
            "session %s: no hold seen for payment %s; assumed the pre-authorization %s %s",
            s.session_id,
            s.payment_id,
            s.hold_minor,
            s.currency,
        )


# ------------------------------------------------------------------------------------ wiring
def build_sessions_processor(
    app: Wiring,
    *,
    group: str = GROUP,
    database_url: str | None = None,
    config: SessionsConfig | None = None,
    batch_size: int = 2000,
    subscribe: bool = True,
) -> PostgresProcessor:
    """The sessions processor on the shared exactly-once loop (``processors.base``);
    ``subscribe=False``: out of the Kafka consumer group (a replay, which hands it records)."""
    return PostgresProcessor(app, SessionsHandler(config), group, TOPICS, batch_size,
                             database_url=database_url, subscribe=subscribe)  # fmt: skip
