"""Price a metered charging session under an OCPI 2.2.1 tariff (see docs/tariffs.md).

The session timeline is cut wherever the active tariff element could change (local time of day,
local date, DST, session duration, session energy) and where charging turns into parking. Per
piece the first matching element of each dimension bills it: ENERGY (kWh), TIME (hours while
charging), PARKING_TIME (hours while not charging); FLAT once, by the element active at start.

Quantities are exact (Wh, microseconds) until the end. Then, per dimension, ``step_size`` of
the last element that billed it rounds the session total up (OCPI 11.4.2, PriceComponent), and
each (dimension, VAT rate) line is rounded once, half-up, to minor units. VAT is computed per line
from that rounded net, rounded once half-up. min_price/max_price then adjust the nets.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_CEILING, Decimal

from ledger.dimensions import Dimension
from ledger.errors import ValidationError
from ledger.events import RevenueLine
from ledger.metering import MeteredSession
from ledger.money import Money, exponent
from ledger.pricing_limits import LineDraft, apply_price_limits, vat_minor
from ledger.pricing_plan import METERED, US_PER_S, from_us, plan_for, to_us
from ledger.tariffs import PriceComponent, Tariff, components_of

_DIVISOR = {Dimension.ENERGY: Decimal(1000), Dimension.TIME: Decimal(3600 * US_PER_S)}
_DIVISOR[Dimension.PARKING_TIME] = _DIVISOR[Dimension.TIME]
_STEP_UNIT = {Dimension.ENERGY: 1, Dimension.TIME: US_PER_S, Dimension.PARKING_TIME: US_PER_S}
_LINE_ORDER = {Dimension.FLAT: 0, Dimension.ENERGY: 1, Dimension.TIME: 2, Dimension.PARKING_TIME: 3}
_ZERO = Decimal(0)
#: Quantities are shown to 6 decimals (1 mWh, 3.6 ms); money uses the exact values.
_SHOWN = Decimal("0.000001")
_ONE = Decimal(1)


class InvalidMeteredSession(ValidationError):
    """The intervals do not cover the session contiguously from start to stop."""

    code = "INVALID_METERED_SESSION"


@dataclass(frozen=True, slots=True)
class PeriodDimension:
    """What one dimension billed in a charging period: the element and the volume (kWh, h)."""

    dimension: Dimension
    element: int
    volume: Decimal


@dataclass(frozen=True, slots=True)
class ChargingPeriod:
    """A stretch with one set of active elements (OCPI CDR ChargingPeriod), before step_size."""

    start: datetime
    end: datetime
    charging: bool
    dimensions: tuple[PeriodDimension, ...]


@dataclass(frozen=True, slots=True)
class PricedLine:
    """One (dimension, VAT rate) of the price. ``net`` includes ``adjustment`` (min/max price);
    ``quantity`` is the billed volume after step_size: kWh, hours, or 1 for FLAT."""

    dimension: Dimension
    vat_rate: Decimal | None
    quantity: Decimal
    net: Money
    vat: Money
    adjustment: Money

    @property
    def gross(self) -> Money:
        return self.net + self.vat

    def revenue_line(self) -> RevenueLine:
        return RevenueLine(
            dimension=self.dimension,
            amount_excl_vat=self.net.amount_minor,
            vat_amount=self.vat.amount_minor,
            vat_rate=None if self.vat_rate is None else str(self.vat_rate),
            quantity=str(self.quantity),
        )


@dataclass(frozen=True, slots=True)
class PricedSession:
    """A priced session (the content of a CDR). Totals are exactly the sums of ``lines``."""

    session_id: str
    tariff_id: str
    currency: str
    lines: tuple[PricedLine, ...]
    periods: tuple[ChargingPeriod, ...]
    total_excl_vat: Money
    total_vat: Money
    total_incl_vat: Money
    energy_wh: Decimal
    duration_s: Decimal
    charging_s: Decimal
    parking_s: Decimal
    min_price_applied: bool = False
    max_price_applied: bool = False
    waived: frozenset[Dimension] = frozenset()

    def revenue_lines(self) -> list[RevenueLine]:
        """Lines as the event type used by CdrIssued and CaptureRequested."""
        return [line.revenue_line() for line in self.lines]

    def net_of(self, dimension: Dimension) -> Money:
        """Net amount billed for ``dimension`` (all VAT rates together)."""
        total = sum(line.net.amount_minor for line in self.lines if line.dimension is dimension)
        return Money(total, self.currency)


def price_session(
    tariff: Tariff, session: MeteredSession, *, waive: Collection[Dimension] = ()
) -> PricedSession:
    """Price ``session`` under ``tariff`` in the session's time zone; ``waive`` drops dimensions
    (e.g. PARKING_TIME for an idle-fee waiver) before min/max price apply.

    Raises InvalidMeteredSession, UnknownTimeZone.
    """
    plan = plan_for(tariff, session.time_zone)
    start_us = to_us(session.started_at)
    end_us = to_us(session.stopped_at)
    if end_us < start_us:
        raise InvalidMeteredSession("session stops before it starts", session_id=session.session_id)
    seg_starts, seg_masks = plan.segments(start_us, end_us)
    n_seg = len(seg_starts)
    n_el = len(tariff.elements)
    acc: dict[Dimension, list[Decimal | int]] = {d: [0] * n_el for d in METERED}
    acc_energy, acc_time, acc_parking = (
        acc[Dimension.ENERGY],
        acc[Dimension.TIME],
        acc[Dimension.PARKING_TIME],
    )
    last = {d: -1 for d in METERED}
    energy_th, duration_th, power_th, current_th = (
        plan.energy,
        plan.duration,
        plan.power,
        plan.current,
    )
    e_points, d_points = energy_th.points, duration_th.points
    use_power, use_current = power_th.active, current_th.active
    periods: list[list[object]] = []  # [start_us, end_us, charging, (e, t, p), e_wh, dt_us]
    period_key: tuple[bool, tuple[int, int, int]] | None = None
    cum: Decimal | int = 0
    charging_us = parking_us = 0
    seg = 0
    prev_end = session.started_at
    prev_us = start_us
    first_mask = -1
    for iv in session.intervals:
        if iv.start != prev_end or iv.end < iv.start:
            raise InvalidMeteredSession(
                "intervals must be contiguous from start to stop",
                session_id=session.session_id,
                at=str(iv.start),
            )
        a, b = prev_us, to_us(iv.end)
        prev_end, prev_us = iv.end, b
        energy, charging = iv.energy_wh, iv.charging
        fixed = plan.all_mask
        if use_power:
            if iv.power_kw is not None:
                fixed &= power_th.mask(iv.power_kw)
            elif b > a:
                fixed &= power_th.mask(Decimal(energy) * 3600 * US_PER_S / 1000 / (b - a))
            else:
                fixed &= power_th.unknown
        if use_current:
            fixed &= current_th.unknown if iv.current_a is None else current_th.mask(iv.current_a)
        # Cut points inside (a, b): local-time segments, duration and energy thresholds.
        cuts: list[tuple[int, Decimal | int]] | None = None
        if (seg + 1 < n_seg and seg_starts[seg + 1] < b) or (
            d_points
            and bisect_right(d_points, a - start_us) != bisect_right(d_points, b - start_us)
        ):
            cuts = _time_cuts(a, b, start_us, seg_starts, seg, d_points, cum, energy)
        if (
            e_points
            and energy
            and bisect_right(e_points, cum) != bisect_right(e_points, cum + energy)
        ):
            cuts = _energy_cuts(a, b, cum, energy, e_points, cuts)
        pieces = cuts if cuts is not None else ((a, cum), (b, cum + energy))
        for k in range(len(pieces) - 1):
            t0, c0 = pieces[k]
            t1, c1 = pieces[k + 1]
            while seg + 1 < n_seg and seg_starts[seg + 1] <= t0:
                seg += 1
            mask = seg_masks[seg] & fixed
            if e_points:
                mask &= energy_th.mask(c0)
            if d_points:
                mask &= duration_th.mask(t0 - start_us)
            if first_mask < 0:
                first_mask = mask
            el = plan.active(mask)
            de, dt = c1 - c0, t1 - t0
            if de and el[0] >= 0:
                acc_energy[el[0]] += de
                last[Dimension.ENERGY] = el[0]
            if dt:
                if charging:
                    charging_us += dt
                    if el[1] >= 0:
                        acc_time[el[1]] += dt
                        last[Dimension.TIME] = el[1]
                else:
                    parking_us += dt
                    if el[2] >= 0:
                        acc_parking[el[2]] += dt
                        last[Dimension.PARKING_TIME] = el[2]
            key = (charging, el)
            if key == period_key:
                p = periods[-1]
                p[1] = t1
                p[4] += de  # type: ignore[operator]
                p[5] += dt  # type: ignore[operator]
            else:
                periods.append([t0, t1, charging, el, de, dt])
                period_key = key
        cum += energy
    if prev_us != end_us:
        raise InvalidMeteredSession(
            "intervals must end when the session stops", session_id=session.session_id
        )
    if first_mask < 0:  # no intervals: FLAT is judged at the start instant
        first_mask = seg_masks[0] & energy_th.mask(0) & duration_th.mask(0)
        first_mask &= power_th.unknown & current_th.unknown
    waived = frozenset(waive)
    drafts = _drafts(plan.components, acc, last, plan.flat(first_mask), waived, tariff)
    lines, min_applied, max_applied = apply_price_limits(drafts, tariff)
    return _result(
        session,
        tariff,
        lines,
        periods,
        cum,
        start_us,
        end_us,
        charging_us,
        parking_us,
        min_applied,
        max_applied,
        waived,
    )


def _time_cuts(
    a: int,
    b: int,
    start_us: int,
    seg_starts: list[int],
    seg: int,
    d_points: list[Decimal | int],
    cum: Decimal | int,
    energy: Decimal | int,
) -> list[tuple[int, Decimal | int]]:
    """Cut [a, b) at segment starts and duration thresholds; energy is shared in proportion to
    time (constant power within a meter interval)."""
    times = {t for t in seg_starts[seg + 1 :] if a < t < b}
    times.update(int(start_us + d) for d in d_points if a < start_us + d < b)
    span = b - a
    cuts: list[tuple[int, Decimal | int]] = [(a, cum)]
    for t in sorted(times):
        cuts.append((t, cum + Decimal(energy) * (t - a) / span if energy else cum))
    cuts.append((b, cum + energy))
    return cuts


def _energy_cuts(
    a: int,
    b: int,
    cum: Decimal | int,
    energy: Decimal | int,
    e_points: list[Decimal | int],
    cuts: list[tuple[int, Decimal | int]] | None,
) -> list[tuple[int, Decimal | int]]:
    """Add cuts where the session energy crosses a min_kwh/max_kwh bound (exact energy, time
    interpolated to the microsecond)."""
    merged = list(cuts) if cuts is not None else [(a, cum), (b, cum + energy)]
    end = cum + energy
    for point in e_points:
        if cum < point < end:
            t = a + int((b - a) * (point - Decimal(cum)) / Decimal(energy))
            merged.append((t, point))
    merged.sort(key=lambda c: (c[0], c[1]))
    monotone: list[tuple[int, Decimal | int]] = []
    high: Decimal | int = cum
    for t, c in merged:
        high = max(high, c)
        monotone.append((t, high))
    return monotone


def _drafts(
    comps: list[dict[Dimension, PriceComponent]],
    acc: dict[Dimension, list[Decimal | int]],
    last: dict[Dimension, int],
    flat_element: int,
    waived: frozenset[Dimension],
    tariff: Tariff,
) -> list[LineDraft]:
    """Per (dimension, VAT rate): exact amount, rounded once half-up to minor units."""
    currency = tariff.currency
    drafts: list[LineDraft] = []
    if flat_element >= 0 and Dimension.FLAT not in waived:
        pc = comps[flat_element][Dimension.FLAT]
        net = Money.round_half_up(pc.price, currency).amount_minor
        drafts.append(LineDraft(Dimension.FLAT, pc.vat, _ONE, net))
    for dim in METERED:
        final = last[dim]
        if final < 0 or dim in waived:
            continue
        quantities = list(acc[dim])
        total = Decimal(sum(quantities, _ZERO))
        step = comps[final][dim].step_size * _STEP_UNIT[dim]
        billed = (total / step).to_integral_value(ROUND_CEILING) * step
        # OCPI 2.2.1 11.4.2: the last element billing the dimension bills the rounded-up rest.
        quantities[final] += billed - total
        groups: dict[Decimal | None, tuple[Decimal, Decimal]] = {}
        for i, q in enumerate(quantities):
            if q:
                pc = comps[i][dim]
                amount, volume = groups.get(pc.vat, (_ZERO, _ZERO))
                groups[pc.vat] = (amount + q * pc.price, volume + q)
        divisor = _DIVISOR[dim]
        for vat, (amount, volume) in groups.items():
            net = Money.round_half_up(amount / divisor, currency).amount_minor
            drafts.append(LineDraft(dim, vat, (volume / divisor).quantize(_SHOWN).normalize(), net))
    drafts.sort(key=lambda d: _LINE_ORDER[d.dimension])
    if not drafts and tariff.min_price is not None:
        fallback = components_of(tariff)[0].vat
        flats = [pc for pc in components_of(tariff) if pc.dimension is Dimension.FLAT]
        drafts.append(LineDraft(Dimension.FLAT, flats[0].vat if flats else fallback, _ONE, 0))
    return drafts


def _result(
    session: MeteredSession,
    tariff: Tariff,
    drafts: list[LineDraft],
    periods: list[list[object]],
    energy: Decimal | int,
    start_us: int,
    end_us: int,
    charging_us: int,
    parking_us: int,
    min_applied: bool,
    max_applied: bool,
    waived: frozenset[Dimension],
) -> PricedSession:
    currency = tariff.currency
    exponent(currency)
    lines = tuple(
        PricedLine(
            d.dimension,
            d.vat_rate,
            d.quantity,
            Money(d.net, currency),
            Money(vat_minor(d.net, d.vat_rate), currency),
            Money(d.adjustment, currency),
        )
        for d in drafts
    )
    net = sum(line.net.amount_minor for line in lines)
    vat = sum(line.vat.amount_minor for line in lines)
    return PricedSession(
        session_id=session.session_id,
        tariff_id=tariff.id,
        currency=currency,
        lines=lines,
        periods=tuple(_period(p) for p in periods),
        total_excl_vat=Money(net, currency),
        total_vat=Money(vat, currency),
        total_incl_vat=Money(net + vat, currency),
        energy_wh=Decimal(energy),
        duration_s=Decimal(end_us - start_us).scaleb(-6),
        charging_s=Decimal(charging_us).scaleb(-6),
        parking_s=Decimal(parking_us).scaleb(-6),
        min_price_applied=min_applied,
        max_price_applied=max_applied,
        waived=waived,
    )


def _period(p: list[object]) -> ChargingPeriod:
    t0, t1, charging, el, de, dt = p
    assert isinstance(t0, int) and isinstance(t1, int) and isinstance(el, tuple)
    assert isinstance(dt, int) and isinstance(de, Decimal | int)
    dims: list[PeriodDimension] = []
    if el[0] >= 0 and de:
        dims.append(PeriodDimension(Dimension.ENERGY, el[0], _shown(Decimal(de) / 1000)))
    time_dim, time_el = (Dimension.TIME, el[1]) if charging else (Dimension.PARKING_TIME, el[2])
    if time_el >= 0 and dt:
        dims.append(PeriodDimension(time_dim, time_el, _shown(Decimal(dt) / _DIVISOR[time_dim])))
    return ChargingPeriod(from_us(t0), from_us(t1), bool(charging), tuple(dims))


def _shown(value: Decimal) -> Decimal:
    return value.quantize(_SHOWN).normalize()
