"""Corrections to a session after its stop, each in one transaction then relayed: re-pricing a
billed session with a waiver (credit, reissue, refund) and releasing a session held for a
blocking meter flag after review. The rules are ``ledger.sessions.review``; this module locks
the session, loads its facts, applies the rule, stores and emits. See docs/sessions.md."""

from __future__ import annotations

from collections.abc import Collection

from connectors import sessions_store as store
from connectors.checkpoint import postgres_batch
from ledger.dimensions import Dimension
from ledger.sessions import review
from ledger.sessions.billing import Known, TariffCache
from ledger.sessions.corrections import Correction
from ledger.sessions.rules import SessionsConfig, UnknownSession
from ledger.sessions.session import Applied, Session
from processors.base import Effects, Wiring, relay_outbox
from processors.sessions import GROUP


def reprice(
    app: Wiring,
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

    with connect(database_url or app.database_url) as conn:
        with conn.transaction():
            s = _locked(conn, session_id)
            applied, correction = review.reprice(
                s,
                store.cdrs_of(conn, session_id),
                store.meter_rows_of(conn, session_id),
                store.load_states(conn, (session_id,)).get(session_id, []),
                _known(conn, s, config),
                frozenset(waive),
                reason,
            )
            _store(conn, app, s, applied)
        relay_outbox(conn, app.publisher())
    return correction


def release(
    app: Wiring,
    session_id: str,
    reason: str,
    *,
    database_url: str | None = None,
    config: SessionsConfig | None = None,
) -> str:
    """Bill a session held for a blocking meter flag, after review, without the flagged
    readings (``ledger.sessions.review.release``); returns the new status.

    Raises UnknownSession, SessionNotHeld, UnknownTariff, InvalidHold (the payment has no hold
    the ledger accepts: the session stays held with that reason, which is saved)."""
    from connectors.postgres import connect

    with connect(database_url or app.database_url) as conn:
        with conn.transaction():
            s = _locked(conn, session_id)
            applied = review.release(
                s,
                store.meter_rows_of(conn, session_id),
                store.load_states(conn, (session_id,)).get(session_id, []),
                _known(conn, s, config),
                reason,
            )
            _store(conn, app, s, applied)
        relay_outbox(conn, app.publisher())
    if applied.rejection is not None and applied.rejection.error is not None:
        raise applied.rejection.error
    assert applied.session is not None
    return applied.session.status


def _locked(conn: store.Conn, session_id: str) -> Session:
    s = store.lock_session(conn, session_id)
    if s is None:
        raise UnknownSession("no such session", session_id=session_id)
    return s


def _known(conn: store.Conn, s: Session, config: SessionsConfig | None) -> Known:
    """The session's tariff versions, its payment's hold and its station's meter keys."""
    return Known(
        store.tariff_versions(conn, (s.tariff_id,)),
        store.load_holds(conn, [s.payment_id] if s.payment_id else []),
        TariffCache(),
        config or SessionsConfig(),
        store.meter_keys(conn, (s.station_id,)),
    )


def _store(conn: store.Conn, app: Wiring, s: Session, applied: Applied) -> None:
    """Emit through the outbox, keep the CDRs and save the session, in the caller's
    transaction."""
    tx = Effects(postgres_batch(conn), app.publisher().serde.encode, GROUP, s.network_id)
    for event in applied.events:
        tx.emit(event)
    store.insert_cdrs(conn, applied.cdrs)
    store.save_sessions(conn, [applied.session or s])
