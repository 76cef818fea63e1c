"""Pricing and billing a stopped session: the tariff frozen at start, the meter rebuilt from its
readings, the payment's hold as the ledger's rules allow it, then CdrIssued and CaptureRequested
(capped at the hold; the shortfall written off or kept) or VoidRequested, through the outbox; or
the reason the session is held. Used on stop, when a late tariff or hold arrives, and by the
corrections (``processors.sessions_corrections``)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from connectors import sessions_store as store
from ledger.envelope import Envelope, Source
from ledger.errors import CurrencyMismatch, LedgerError
from ledger.events import CaptureRequested, CdrIssued, ChargingState, RevenueLine, VoidRequested
from ledger.money import Money
from ledger.pricing.preauth import preauthorization_amount
from ledger.pricing.price import PricedSession, price_session
from ledger.pricing.tariffs import Tariff, UnknownTariff, parse_tariff_json
from ledger.sessions.metering import MeteredSession, SessionMeter
from ledger.sessions.rules import InvalidHold, SessionStatus, ShortfallPolicy
from processors.base import Effects
from processors.sessions_base import SessionsConfig, derived_id, release_action

log = logging.getLogger("evledger.sessions")


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
        s.session_id,
        s.started_at,
        s.meter_start_wh,
        config.max_power_kw,
        config.reset_threshold_wh,
        config.single_phase(s.station_id, s.connector_id),
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
    holds: dict[str, store.PaymentHold],
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
        if known.status != "authorized":
            raise InvalidHold(
                f"the authorization of the session's payment was rejected {known.reason_code} "
                f"({known.detail}); no CDR or capture against it",
                session_id=s.session_id,
                payment_id=s.payment_id,
            )
        return _positive(s, Money(known.held_minor, known.currency)), "authorized"
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


def _positive(s: store.SessionState, hold: Money) -> Money:
    if hold.amount_minor <= 0:
        raise InvalidHold(
            f"hold_minor={hold.amount_minor} {hold.currency}: a hold must be positive; no "
            "capture against it",
            session_id=s.session_id,
            payment_id=s.payment_id,
        )
    return hold


def mark(s: store.SessionState, status: str, code: str, detail: str) -> None:
    """Put ``s`` in a waiting ``status`` (held, awaiting_tariff, rejected) for ``code``, with
    what happened and what releases it (saved with the session's reason history)."""
    s.status, s.reason_code, s.reason_detail = status, code, detail
    s.reason_action = release_action(code)


def _clear(s: store.SessionState, status: str) -> None:
    s.status, s.reason_code, s.reason_detail, s.reason_action = status, None, None, None


def bill(
    tx: Effects,
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

    Raises CurrencyMismatch when the hold is in another currency than the tariff, InvalidHold
    when it is not positive (before anything is emitted)."""

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
    if hold is not None and priced.energy_wh and not priced.total_incl_vat.is_zero:
        _positive(s, hold[0])  # a capture follows: never one of zero or less
    s.tariff_version, s.currency = version, priced.currency
    if priced.energy_wh == 0:
        if s.payment_id is not None:
            tx.emit(VoidRequested(envelope("void"), s.payment_id, "NO_ENERGY_DELIVERED"))
        _clear(s, SessionStatus.VOIDED)
        return []
    cdr_id = derived_id(cause_id, "cdr")
    lines = priced.revenue_lines()
    tx.emit(cdr_issued(envelope("cdr-issued"), s, cdr_id, version, priced, None))
    _clear(s, SessionStatus.BILLED)
    cdr = cdr_row(cdr_id, s, "issued", derived_id(cause_id, "cdr-issued"), version, priced)
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


def cdr_issued(
    env: Envelope,
    s: store.SessionState,
    cdr_id: str,
    version: int,
    priced: PricedSession,
    replaces: str | None,
) -> CdrIssued:
    """The CdrIssued event of a priced session (``replaces``: the CDR it re-issues, if any)."""
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


def cdr_row(
    cdr_id: str,
    s: store.SessionState,
    kind: str,
    event_id: str,
    version: int,
    priced: PricedSession,
    replaces: str | None = None,
) -> store.CdrRow:
    """The stored row of a CDR as issued (``kind``) from ``priced``."""
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


# ---------------------------------------------------------------------------- settling a stop
@dataclass(frozen=True, slots=True)
class Held:
    """Why a stopped session is held instead of billed (its SessionStopped is rejected so)."""

    code: str
    detail: str


def price_and_bill(
    tx: Effects,
    s: store.SessionState,
    versions: Sequence[store.TariffVersion],
    readings: Iterable[store.MeterRow],
    states: Iterable[tuple[datetime, ChargingState]],
    holds: dict[str, store.PaymentHold],
    tariffs: TariffCache,
    config: SessionsConfig,
) -> tuple[list[store.CdrRow], Held | None]:
    """Price and bill a stopped session: the CDR rows, or why it is held (blocking meter
    flags, INVALID_HOLD).

    Sets ``s.status`` with its reason: billed / voided, held, awaiting_tariff (UnknownTariff,
    re-raised: billed when the tariff arrives) or rejected (any other LedgerError, re-raised)."""
    assert s.stopped_event_id is not None
    try:
        found = resolve_tariff(versions, s.tariff_id, s.tariff_version, s.started_at)
    except UnknownTariff as exc:
        mark(s, SessionStatus.AWAITING_TARIFF, exc.code, str(exc))
        raise
    try:
        tariff = tariffs.get(found)
        metered = metered_session(s, readings, states, config)
        s.flags = [_flag_json(f) for f in metered.flags]
        blocking = metered.blocking_flags
        if blocking:
            flags = "; ".join(f"{f.code.value} seq_no={f.seq_no}: {f.detail}" for f in blocking)
            held = Held(blocking[0].code.value, f"CDR held for review: {flags}")
            mark(s, SessionStatus.HELD, held.code, held.detail)
            return [], held
        priced = price_session(tariff, metered)
        hold = hold_for(s, tariff, holds, config)
        cdrs = bill(tx, s, found.version, priced, hold, config, s.stopped_event_id)
    except InvalidHold as exc:
        mark(s, SessionStatus.HELD, exc.code, str(exc))
        return [], Held(exc.code, str(exc))
    except LedgerError as exc:
        mark(s, SessionStatus.REJECTED, exc.code, str(exc))
        raise
    return cdrs, None


def _flag_json(flag: Any) -> dict[str, Any]:
    return {
        "code": flag.code.value,
        "seq_no": flag.seq_no,
        "sampled_at": None if flag.sampled_at is None else flag.sampled_at.isoformat(),
        "detail": flag.detail,
    }
