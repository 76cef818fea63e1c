"""Corrections to a session after its stop, each in one transaction then relayed: re-pricing a
billed session with a waiver (credit, reissue, refund) and releasing a session held for a
blocking meter flag after review. See docs/sessions.md."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection

from connectors import sessions_store as store
from connectors.checkpoint import postgres_batch
from ledger.dimensions import Dimension
from ledger.envelope import Envelope, Source
from ledger.errors import ValidationError
from ledger.events import CdrCredited, RefundRequested
from ledger.money import Money
from ledger.pricing.price import price_session
from ledger.sessions.corrections import Correction, SettlementKind, correct_cdr
from ledger.sessions.rules import (
    InvalidHold,
    NothingToReprice,
    SessionNotBilled,
    SessionNotHeld,
    SessionStatus,
    UnknownSession,
)
from processors.base import Effects, Wiring, relay_outbox
from processors.sessions_base import GROUP, SessionsConfig, derived_id
from processors.sessions_billing import (
    TariffCache,
    bill,
    cdr_issued,
    cdr_row,
    hold_for,
    mark,
    metered_session,
    resolve_tariff,
)


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

    config = config or SessionsConfig()
    with connect(database_url or app.database_url) as conn:
        with conn.transaction():
            correction = _reprice(conn, app, session_id, frozenset(waive), reason, config)
        relay_outbox(conn, app.publisher())
    return correction


def _reprice(
    conn: store.Conn,
    app: Wiring,
    session_id: str,
    waive: frozenset[Dimension],
    reason: str,
    config: SessionsConfig,
) -> Correction:
    s = store.lock_session(conn, session_id)
    if s is None:
        raise UnknownSession("no such session", session_id=session_id)
    if s.status != SessionStatus.BILLED or s.tariff_version is None:
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
    tx = Effects(postgres_batch(conn), app.publisher().serde.encode, GROUP, s.network_id)
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
        cdr_issued(envelope("cdr-reissued"), s, new_id, version.version, repriced, current.cdr_id)
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
        cdr_row(
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


def release(
    app: Wiring,
    session_id: str,
    reason: str,
    *,
    database_url: str | None = None,
    config: SessionsConfig | None = None,
) -> str:
    """Bill a session held for a blocking meter flag, after review, as the meter reads without
    the flagged readings (a decrease or reset, a reading outside the session or of only some
    phases delivers no energy; implausible energy is billed as measured). Emits like a stop
    would, with ids derived from the stop; returns the new status.

    Raises UnknownSession, SessionNotHeld, UnknownTariff, InvalidHold (the payment has no hold
    the ledger accepts: the session stays held with that reason, which is saved)."""
    from connectors.postgres import connect

    config = config or SessionsConfig()
    invalid: InvalidHold | None = None
    with connect(database_url or app.database_url) as conn:
        with conn.transaction():
            s = store.lock_session(conn, session_id)
            if s is None:
                raise UnknownSession("no such session", session_id=session_id)
            if s.status != SessionStatus.HELD or s.stopped_event_id is None or s.stopped_at is None:
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
            tx = Effects(postgres_batch(conn), app.publisher().serde.encode, GROUP, s.network_id)
            priced = price_session(tariff, metered)
            cause_id = derived_id(s.stopped_event_id, "release")
            try:
                hold = hold_for(s, tariff, holds, config)
                rows = bill(tx, s, found.version, priced, hold, config, cause_id)
            except InvalidHold as exc:
                mark(s, SessionStatus.HELD, exc.code, str(exc))
                invalid, rows = exc, []
            store.insert_cdrs(conn, [dataclasses.replace(r, reason=reason) for r in rows])
            store.save_sessions(conn, [s])
        relay_outbox(conn, app.publisher())
    if invalid is not None:
        raise invalid
    return s.status


def waivable(names: Collection[str]) -> frozenset[Dimension]:
    """Dimensions named on the command line (ENERGY, TIME, PARKING_TIME, FLAT)."""
    try:
        return frozenset(Dimension(name.upper()) for name in names)
    except ValueError:
        raise ValidationError("unknown tariff dimension", names=",".join(names)) from None
