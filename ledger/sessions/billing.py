"""Pricing and billing a stopped session: the tariff frozen at start, the meter rebuilt from its
readings, the payment's hold, then CdrIssued and CaptureRequested (capped at the hold; the
shortfall written off or kept) or VoidRequested; or the reason the session is held.

Everything here returns values: the session's next state, the events to emit and the CDRs to
keep (``Applied``). Event ids derive from the causing event id (``derived_id``), so a replay
emits the same ids and downstream deduplicates them.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from ledger.accounting.vat_rates import UnknownVatCountry
from ledger.envelope import Envelope, Source
from ledger.errors import CurrencyMismatch, LedgerError
from ledger.events import CaptureRequested, CdrIssued, RevenueLine, VoidRequested
from ledger.ids import SESSION_EFFECTS
from ledger.money import Money
from ledger.pricing._limits import vat_minor
from ledger.pricing.price import PricedSession, price_session
from ledger.pricing.tariffs import Tariff, UnknownTariff, parse_tariff_json
from ledger.sessions.holds import hold_for, positive_hold
from ledger.sessions.metering import (
    METER_ANOMALIES,
    MeteredSession,
    MeterFlag,
    MeterFlagCode,
    SessionMeter,
)
from ledger.sessions.rules import (
    InvalidHold,
    SessionsConfig,
    SessionStatus,
    ShortfallPolicy,
    release_action,
)
from ledger.sessions.session import (
    Applied,
    CdrKind,
    CdrRecord,
    PaymentHold,
    Rejection,
    Session,
    SessionReading,
    StateChange,
    TariffVersion,
)
from ledger.sessions.signed import SignedReasonCode, check_session


def derived_id(cause_event_id: str, kind: str) -> str:
    """Deterministic id of what ``cause_event_id`` caused (uuid5), so retries re-emit it."""
    return SESSION_EFFECTS.derive(cause_event_id, kind)


def resolve_tariff(
    versions: Sequence[TariffVersion], tariff_id: str, requested: int | None, at: datetime
) -> TariffVersion:
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


class TariffCache:
    """Parsed tariffs by (id, version); versions are immutable, so caching is safe."""

    def __init__(self) -> None:
        self._parsed: dict[tuple[str, int], Tariff] = {}

    def get(self, version: TariffVersion) -> Tariff:
        key = (version.tariff_id, version.version)
        tariff = self._parsed.get(key)
        if tariff is None:
            tariff = self._parsed[key] = parse_tariff_json(version.ocpi_json)
        return tariff


@dataclasses.dataclass(frozen=True, slots=True)
class Known:
    """What the session rules read besides the session: the published versions of each tariff
    (oldest first), the holds payments.events told, the parsed tariffs and the rules' knobs."""

    tariffs: Mapping[str, Sequence[TariffVersion]]
    holds: Mapping[str, PaymentHold]
    parsed: TariffCache
    config: SessionsConfig
    #: Registered meter keys (lowercase hex DER) by station id (evledger stations register-key).
    meter_keys: Mapping[str, Sequence[str]] = dataclasses.field(default_factory=dict)

    def versions(self, tariff_id: str) -> Sequence[TariffVersion]:
        return self.tariffs.get(tariff_id, ())


def scale_lines(lines: Sequence[RevenueLine], target: int) -> list[RevenueLine]:
    """Revenue lines scaled down to a capture of at most ``target`` (minor units, VAT incl.).

    VAT stays per rate (EN 16931 BR-CO-17, as in pricing): the target is shared over the VAT
    rates by gross (largest remainder, ties to the earlier rate); each rate gets the largest
    net whose net + VAT (rounded once on that net) fits its share, and a cent a rate cannot
    take (its gross steps by 2 there) goes to another rate that can. A rate's net is split
    over its lines by their nets and its VAT by the new nets (largest remainder). The result
    sums to ``target``, or to less (by at most a cent per positive VAT rate) where no split of
    ``target`` has every rate's VAT equal to its net times the rate: the capture is then that
    sum, never a VAT that disagrees with the bill."""
    gross = [line.amount_excl_vat + line.vat_amount for line in lines]
    total = sum(gross)
    if total <= 0 or target >= total:
        return list(lines)
    members: dict[str | None, list[int]] = {}
    for i, line in enumerate(lines):
        members.setdefault(line.vat_rate, []).append(i)
    rates = list(members)
    decimal_rates = [None if r is None else Decimal(r) for r in rates]
    caps = [sum(lines[i].amount_excl_vat for i in members[r]) for r in rates]
    shares = _largest_remainder([sum(gross[i] for i in members[r]) for r in rates], target)
    nets = [
        _largest_net_within(share, rate, cap)
        for share, rate, cap in zip(shares, decimal_rates, caps, strict=True)
    ]
    left = target - sum(n + vat_minor(n, r) for n, r in zip(nets, decimal_rates, strict=True))
    moved = True
    while left > 0 and moved:  # cents a rate could not take: give them to one that can
        moved = False
        for k, decimal_rate in enumerate(decimal_rates):
            if nets[k] < caps[k]:
                step = 1 + vat_minor(nets[k] + 1, decimal_rate) - vat_minor(nets[k], decimal_rate)
                if step <= left:
                    nets[k] += 1
                    left -= step
                    moved = True
                    if not left:
                        break
    scaled: list[RevenueLine | None] = [None] * len(lines)
    for key, net, decimal_rate in zip(rates, nets, decimal_rates, strict=True):
        idx = members[key]
        line_nets = _largest_remainder([lines[i].amount_excl_vat for i in idx], net)
        line_vats = _largest_remainder(line_nets, vat_minor(net, decimal_rate))
        for i, n, v in zip(idx, line_nets, line_vats, strict=True):
            line = lines[i]
            scaled[i] = RevenueLine(line.dimension, n, v, line.vat_rate, line.quantity)
    return [line for line in scaled if line is not None]


def _largest_remainder(weights: Sequence[int], amount: int) -> list[int]:
    """``amount`` split in proportion to ``weights`` (largest remainder, ties to the earlier);
    all of it to the first when every weight is 0."""
    total = sum(weights)
    if total <= 0:
        return [amount if i == 0 else 0 for i in range(len(weights))]
    shares = [w * amount // total for w in weights]
    order = sorted(range(len(weights)), key=lambda i: (-(weights[i] * amount % total), i))
    for i in order[: amount - sum(shares)]:
        shares[i] += 1
    return shares


def _largest_net_within(gross: int, rate: Decimal | None, cap: int) -> int:
    """The largest net in [0, cap] whose net + VAT (rounded once) is at most ``gross``."""
    lo, hi = 0, min(cap, gross)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if mid + vat_minor(mid, rate) <= gross:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _whole(value: Decimal) -> int:
    """CDR quantities (Wh, seconds) are integers: rounded once, half-up."""
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def metered_session(
    s: Session,
    readings: Iterable[SessionReading],
    states: Iterable[StateChange],
    config: SessionsConfig,
) -> MeteredSession:
    """Rebuild the stopped session's meter from its readings and states (any order)."""
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


def marked(s: Session, status: SessionStatus, code: str, detail: str) -> Session:
    """``s`` in a waiting ``status`` (held, awaiting_tariff, rejected) for ``code``, with what
    happened and what releases it."""
    return dataclasses.replace(
        s, status=status, reason_code=code, reason_detail=detail, reason_action=release_action(code)
    )


def _cleared(s: Session, status: SessionStatus, version: int, currency: str) -> Session:
    """``s`` billed or voided under tariff ``version``: no reason waits any more."""
    return dataclasses.replace(
        s,
        status=status,
        reason_code=None,
        reason_detail=None,
        reason_action=None,
        tariff_version=version,
        currency=currency,
    )


def bill(
    s: Session,
    version: int,
    priced: PricedSession,
    hold: tuple[Money, str] | None,
    config: SessionsConfig,
    cause_id: str,
) -> Applied:
    """What a priced session owes: CdrIssued + CaptureRequested (capped at the hold), or
    VoidRequested when no energy was delivered; the session billed or voided, and the CDR to
    keep. Event ids derive from ``cause_id`` (the SessionStopped event id).

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
        positive_hold(s, hold[0])  # a capture follows: never one of zero or less
    if priced.energy_wh == 0:
        voided = _cleared(s, SessionStatus.VOIDED, version, priced.currency)
        if s.payment_id is None:
            return Applied(voided)
        void = VoidRequested(envelope("void"), s.payment_id, "NO_ENERGY_DELIVERED")
        return Applied(voided, events=(void,))
    cdr_id = derived_id(cause_id, "cdr")
    billed = _cleared(s, SessionStatus.BILLED, version, priced.currency)
    issued = cdr_issued(envelope("cdr-issued"), billed, cdr_id, version, priced, None)
    cdr = cdr_record(cdr_id, billed, derived_id(cause_id, "cdr-issued"), version, priced,
                     occurred_at=issued.envelope.occurred_at)  # fmt: skip
    if s.payment_id is None or hold is None:
        return Applied(billed, events=(issued,), cdrs=(cdr,))
    held, source = hold
    billed = dataclasses.replace(billed, hold_source=source, hold_minor=held.amount_minor)
    total = priced.total_incl_vat
    if total.is_zero:
        void = VoidRequested(envelope("void"), s.payment_id, "NOTHING_TO_CAPTURE")
        return Applied(billed, events=(issued, void), cdrs=(cdr,))
    lines = priced.revenue_lines()
    capture = total.min(held)
    if capture != total:
        # Capped: the capture is what the scaled lines add up to, so the bill's lines and VAT
        # per rate are exactly what is captured (a cent under the hold where VAT needs it).
        lines = scale_lines(lines, capture.amount_minor)
        capture = Money(sum(x.amount_excl_vat + x.vat_amount for x in lines), total.currency)
    shortfall = total - capture
    if not shortfall.is_zero:
        billed = dataclasses.replace(
            billed,
            shortfall_minor=shortfall.amount_minor,
            shortfall_status=(
                "to_collect" if config.shortfall_policy is ShortfallPolicy.CHARGE else "written_off"
            ),
        )
    request = CaptureRequested(
        envelope("capture"),
        s.payment_id,
        capture,
        lines,
        True,
        cdr_id,
        s.station_id,
        s.country,
        None if shortfall.is_zero else shortfall,
        _sha256(s.signed_data),
    )
    billed = dataclasses.replace(billed, captured_minor=capture.amount_minor)
    return Applied(billed, events=(issued, request), cdrs=(cdr,))


def cdr_issued(
    env: Envelope,
    s: Session,
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
        signed_data=s.signed_data,
        signed_status=s.signed_status,
        meter_flags=sorted({f.code.value for f in s.flags if f.code in METER_ANOMALIES}),
    )


def cdr_record(
    cdr_id: str,
    s: Session,
    event_id: str,
    version: int,
    priced: PricedSession,
    replaces: str | None = None,
    *,
    occurred_at: datetime,
) -> CdrRecord:
    """The issued CDR of ``priced``, as kept with the session; ``occurred_at``: its event's
    business time."""
    return CdrRecord(
        cdr_id,
        s.session_id,
        CdrKind.ISSUED,
        event_id,
        s.tariff_id,
        version,
        tuple(sorted(d.value for d in priced.waived)),
        priced.currency,
        priced.total_excl_vat.amount_minor,
        priced.total_incl_vat.amount_minor,
        tuple(priced.revenue_lines()),
        replaces,
        signed_data=s.signed_data,
        signed_status=s.signed_status,
        occurred_at=occurred_at,
    )


_SIGNED_FLAGS = frozenset(MeterFlagCode(code.value) for code in SignedReasonCode)


def _sha256(text: str | None) -> str | None:
    return None if text is None else hashlib.sha256(text.encode()).hexdigest()


def check_signed(
    s: Session, readings: Iterable[SessionReading], billed_wh: Decimal, known: Known
) -> tuple[Session, Rejection | None]:
    """``s`` with its signed meter values checked (``ledger.sessions.signed``): the status, the
    OCPI signed_data and a flag per problem; and, when a problem was found, the rejection that
    holds it where the network's policy says so. A session without signed values is returned
    as it is (unsigned)."""
    ordered = sorted(readings, key=lambda r: (r.reading.sampled_at, r.reading.seq_no))
    values = tuple(v for r in ordered for v in r.signed)
    if not values:
        return s, None
    check = check_session(
        values,
        known.meter_keys.get(s.station_id, ()),
        billed_wh,
        known.config.signed_energy_tolerance_wh,
    )
    flags = tuple(f for f in s.flags if f.code not in _SIGNED_FLAGS) + tuple(
        MeterFlag(MeterFlagCode(code.value), s.session_id, None, None, detail)
        for code, detail in check.problems
    )
    s = dataclasses.replace(
        s, flags=flags, signed_status=check.status, signed_data=check.signed_data
    )
    if check.verified:
        return s, None
    detail = "; ".join(f"{code.value}: {text}" for code, text in check.problems)
    return s, Rejection(check.status, f"signed meter values not verified: {detail}")


def check_vat(
    s: Session, priced: PricedSession, config: SessionsConfig
) -> tuple[Session, Rejection | None]:
    """``s`` flagged VAT_RATE_MISMATCH for each priced line whose VAT rate is not the standard
    rate of its country of supply on the supply date (``ledger.accounting.vat_rates``), and the
    rejection that holds it where the network's policy says so. A country the rate table does
    not know is not checked."""
    if config.vat_rates is None or s.stopped_at is None:
        return s, None
    lines = [(line.dimension.value, line.vat_rate) for line in priced.revenue_lines()]
    try:
        found = config.vat_rates.mismatches(lines, s.country, s.stopped_at.date())
    except UnknownVatCountry:
        return s, None
    if not found:
        return s, None
    detail = "; ".join(str(m) for m in found)
    flag = MeterFlag(MeterFlagCode.VAT_RATE_MISMATCH, s.session_id, None, None,
                     f"{s.country}: {detail}")  # fmt: skip
    s = dataclasses.replace(s, flags=(*s.flags, flag))
    if s.network_id not in config.vat_hold_networks:
        return s, None
    return s, Rejection(
        MeterFlagCode.VAT_RATE_MISMATCH.value,
        f"taxed at another rate than {s.country}'s standard rate: {detail}; correct the tariff",
    )


def price_and_bill(
    s: Session,
    readings: Iterable[SessionReading],
    states: Iterable[StateChange],
    known: Known,
) -> Applied:
    """Price and bill a stopped session (``s.stopped_event_id`` is the cause of what it emits).

    The session ends billed or voided; or held (blocking meter flags, INVALID_HOLD),
    awaiting_tariff (UNKNOWN_TARIFF: billed when the tariff arrives) or rejected (any other
    rule pricing breaks), each with a ``rejection`` saying why."""
    cause = s.stopped_event_id
    assert cause is not None
    readings = list(readings)
    try:
        found = resolve_tariff(
            known.versions(s.tariff_id), s.tariff_id, s.tariff_version, s.started_at
        )
    except UnknownTariff as exc:
        return Applied(
            marked(s, SessionStatus.AWAITING_TARIFF, exc.code, str(exc)),
            rejection=Rejection.of(exc),
        )
    try:
        tariff = known.parsed.get(found)
        metered = metered_session(s, readings, states, known.config)
        s = dataclasses.replace(s, flags=metered.flags)
        blocking = metered.blocking_flags
        if blocking:
            flags = "; ".join(f"{f.code.value} seq_no={f.seq_no}: {f.detail}" for f in blocking)
            held = Rejection(blocking[0].code.value, f"CDR held for review: {flags}")
            return Applied(marked(s, SessionStatus.HELD, held.code, held.detail), rejection=held)
        priced = price_session(tariff, metered)
        s, unverified = check_signed(s, readings, priced.energy_wh, known)
        if unverified is not None and known.config.holds_unverified(s.network_id):
            return Applied(
                marked(s, SessionStatus.HELD, unverified.code, unverified.detail),
                rejection=unverified,
            )
        s, mistaxed = check_vat(s, priced, known.config)
        if mistaxed is not None:
            return Applied(
                marked(s, SessionStatus.HELD, mistaxed.code, mistaxed.detail), rejection=mistaxed
            )
        hold = hold_for(s, tariff, known.holds, known.config)
        return bill(s, found.version, priced, hold, known.config, cause)
    except InvalidHold as exc:
        return Applied(
            marked(s, SessionStatus.HELD, exc.code, str(exc)), rejection=Rejection.of(exc)
        )
    except LedgerError as exc:
        return Applied(
            marked(s, SessionStatus.REJECTED, exc.code, str(exc)), rejection=Rejection.of(exc)
        )
