"""Price a metered charging session under an OCPI 2.2.1 tariff (see docs/tariffs.md).

The session timeline is cut wherever the active tariff element could change (local time of day,
local date, DST, session duration, session energy) and where charging turns into parking. Per
piece the first matching element of each dimension bills it: ENERGY (kWh), TIME (hours while
charging), PARKING_TIME (hours while not charging); FLAT once, by the element active at start.

Quantities are exact (Wh, microseconds) until the end. Then ``step_size`` of the last element
that billed it rounds the session total up once for ENERGY and once for TIME and PARKING_TIME
combined (OCPI 2.2.1 mod_cdrs: with parking, only the parking total), and each (dimension, VAT
rate) line is rounded once, half-up, to minor units. min_price/max_price then adjust the nets.
VAT is computed per VAT rate on the sum of that rate's line nets, rounded once half-up
(EN 16931 BR-CO-17), and allocated to the lines so that they add up to it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal

from ledger.dimensions import Dimension
from ledger.errors import ValidationError
from ledger.events import RevenueLine
from ledger.money import Money, exponent
from ledger.pricing._limits import LineDraft, apply_price_limits
from ledger.pricing._plan import METERED, US_PER_S, PricingPlan, from_us, plan_for, to_us
from ledger.pricing._sweep import PeriodData, Sweep, power_mask
from ledger.pricing.tariffs import Tariff, components_of
from ledger.sessions.metering import MeteredSession

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
    period_data: tuple[PeriodData, ...] = field(default=(), repr=False)

    @property
    def periods(self) -> tuple[ChargingPeriod, ...]:
        """Charging periods: a new one wherever the active elements or charging state change."""
        return tuple(_period(p) for p in self.period_data)

    def revenue_lines(self) -> list[RevenueLine]:
        """Lines as the event type used by CdrIssued and CaptureRequested."""
        return [line.revenue_line() for line in self.lines]

    def vat_breakdown(self) -> tuple[VatSubtotal, ...]:
        """Per VAT rate, in order of first appearance: taxable amount and VAT (EN 16931
        BG-23). Each rate's VAT is the rounded VAT of its summed nets; the lines' VAT amounts
        add up to it."""
        return vat_breakdown(self.lines)

    def net_of(self, dimension: Dimension) -> Money:
        """Net amount billed for ``dimension`` (all VAT rates together)."""
        total = sum(line.net.amount_minor for line in self.lines if line.dimension is dimension)
        return Money(total, self.currency)


@dataclass(frozen=True, slots=True)
class VatSubtotal:
    """One VAT rate of a bill (EN 16931 BG-23): the sum of its line nets and its VAT.
    ``rate`` None is "no VAT applicable" (OCPI: not the same as 0%)."""

    rate: Decimal | None
    taxable: Money
    vat: Money


def vat_breakdown(lines: Sequence[PricedLine]) -> tuple[VatSubtotal, ...]:
    """Per VAT rate of ``lines``: the summed nets and the summed line VAT (which the pricing
    allocated so that it is the rate's VAT rounded once)."""
    groups: dict[Decimal | None, tuple[Money, Money]] = {}
    for line in lines:
        zero = Money.zero(line.net.currency)
        net, vat = groups.get(line.vat_rate, (zero, zero))
        groups[line.vat_rate] = (net + line.net, vat + line.vat)
    return tuple(VatSubtotal(rate, net, vat) for rate, (net, vat) in groups.items())


_NO_WAIVER: frozenset[Dimension] = frozenset()


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
    sweep = Sweep(plan, start_us, end_us)
    power_th, current_th = plan.power, plan.current
    use_power, use_current = power_th.active, current_th.active
    # Without energy, duration, power or current restrictions only local time and the charging
    # state pick elements, so runs of intervals inside one local-time segment bill as one span.
    runs = plan.runs_allowed
    all_mask = plan.all_mask
    run_a = run_boundary = 0
    run_until = session.started_at  # run_boundary as a datetime: most intervals need no µs
    run_e: Decimal | int = 0
    run_cum: Decimal | int = 0
    run_charging: bool | None = None
    cum: Decimal | int = 0
    prev_end = session.started_at
    for iv in session.intervals:
        end = iv.end
        if iv.start != prev_end or end < prev_end:
            raise InvalidMeteredSession(
                "intervals must be contiguous from start to stop",
                session_id=session.session_id,
                at=str(iv.start),
            )
        energy, charging = iv.energy_wh, iv.charging
        if runs and charging == run_charging and end <= run_until:
            run_e += energy
        else:
            a, b = to_us(prev_end), to_us(end)
            if not runs:
                fixed = all_mask
                if use_power:
                    fixed &= power_mask(power_th, iv.power_kw, energy, b - a)
                if use_current:
                    fixed &= (
                        current_th.unknown
                        if iv.current_a is None
                        else current_th.mask(iv.current_a)
                    )
                sweep.span(a, b, cum, energy, charging, fixed)
            else:
                if run_charging is not None:
                    sweep.span(run_a, a, run_cum, run_e, run_charging, all_mask)
                run_boundary = sweep.boundary_after(a)
                if b <= run_boundary:
                    run_a, run_e, run_cum, run_charging = a, energy, cum, charging
                    run_until = from_us(min(run_boundary, end_us))
                else:
                    sweep.span(a, b, cum, energy, charging, all_mask)
                    run_charging = None
        prev_end = end
        cum += energy
    if prev_end != session.stopped_at:
        raise InvalidMeteredSession(
            "intervals must end when the session stops", session_id=session.session_id
        )
    if run_charging is not None:
        sweep.span(run_a, end_us, run_cum, run_e, run_charging, all_mask)
    sweep.close_period()
    first_mask = sweep.first_mask
    if first_mask < 0:  # no intervals: FLAT is judged at the start instant
        first_mask = sweep.seg_masks[sweep.seg] & plan.energy.mask(0) & plan.duration.mask(0)
        first_mask &= power_th.unknown & current_th.unknown
    waived = frozenset(waive) if waive else _NO_WAIVER
    drafts = _drafts(
        plan,
        (sweep.acc_e, sweep.acc_t, sweep.acc_p),
        (sweep.last_e, sweep.last_t, sweep.last_p),
        plan.flat(first_mask),
        waived,
    )
    min_applied, max_applied = apply_price_limits(drafts, plan.limits)
    currency = tariff.currency
    zero = Money(0, currency)
    lines = tuple(
        PricedLine(
            d.dimension,
            d.vat_rate,
            d.quantity,
            Money(d.net, currency),
            Money(d.vat, currency),
            Money(d.adjustment, currency) if d.adjustment else zero,
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
        total_excl_vat=Money(net, currency),
        total_vat=Money(vat, currency),
        total_incl_vat=Money(net + vat, currency),
        energy_wh=Decimal(cum),
        duration_s=Decimal(end_us - start_us).scaleb(-6),
        charging_s=Decimal(sweep.charging_us).scaleb(-6),
        parking_s=Decimal(sweep.parking_us).scaleb(-6),
        min_price_applied=min_applied,
        max_price_applied=max_applied,
        waived=waived,
        period_data=tuple(sweep.periods),
    )


_SCALE = {e: Decimal(10) ** e for e in range(4)}
_DIVISORS = (Decimal(1000), Decimal(3600 * US_PER_S), Decimal(3600 * US_PER_S))


def _drafts(
    plan: PricingPlan,
    acc: tuple[list[Decimal | int], list[int], list[int]],
    last: tuple[int, int, int],
    flat_element: int,
    waived: frozenset[Dimension],
) -> list[LineDraft]:
    """Per (dimension, VAT rate): the exact amount, rounded once half-up to minor units."""
    tariff = plan.tariff
    scale = _SCALE[exponent(tariff.currency)]
    drafts: list[LineDraft] = []
    if flat_element >= 0 and Dimension.FLAT not in waived:
        pc = plan.components[flat_element][Dimension.FLAT]
        drafts.append(LineDraft(Dimension.FLAT, pc.vat, _ONE, _round(pc.price * scale)))
    # OCPI 2.2.1 mod_cdrs "step_size": once per session for ENERGY, and once for TIME and
    # PARKING_TIME combined; when both are billed, only the parking total is rounded up (the
    # charging time is not rounded at the switch to parking). Decided before any waiver, so
    # waiving parking never changes what charging time costs.
    stepped = (0, 2 if last[2] >= 0 else 1)
    for k, dim in enumerate(METERED):
        final = last[k]
        if final < 0 or dim in waived:
            continue
        quantities: list[Decimal | int] = list(acc[k])
        if k in stepped:
            total = sum(quantities)
            step = plan.steps[k][final]
            if isinstance(total, int):
                billed: Decimal | int = -(-total // step) * step
            else:
                billed = (total / step).to_integral_value(ROUND_CEILING) * step
            # The step_size of the last element billing the dimension; that element bills the
            # rounded-up rest of the session total.
            quantities[final] += billed - total
        prices, vats = plan.prices[k], plan.vats[k]
        groups: dict[Decimal | None, list[Decimal | int]] = {}
        for i, q in enumerate(quantities):
            if q:
                group = groups.setdefault(vats[i], [_ZERO, 0])
                group[0] += q * prices[i]
                group[1] += q
        divisor = _DIVISORS[k]
        for vat, (amount, volume) in groups.items():
            net = _round(amount * scale / divisor)
            drafts.append(LineDraft(dim, vat, _shown(Decimal(volume) / divisor), net))
    if not drafts and tariff.min_price is not None:
        every = components_of(tariff)
        flats = [pc for pc in every if pc.dimension is Dimension.FLAT]
        drafts.append(LineDraft(Dimension.FLAT, (flats or every)[0].vat, _ONE, 0))
    return drafts


def _round(minor: Decimal) -> int:
    return int(minor.quantize(_ONE, rounding=ROUND_HALF_UP))


def _period(p: PeriodData) -> ChargingPeriod:
    t0, t1, charging, el, de, dt = p
    dims: list[PeriodDimension] = []
    if el[0] >= 0 and de:
        dims.append(PeriodDimension(Dimension.ENERGY, el[0], _shown(Decimal(de) / 1000)))
    time_dim, time_el = (Dimension.TIME, el[1]) if charging else (Dimension.PARKING_TIME, el[2])
    if time_el >= 0 and dt:
        dims.append(PeriodDimension(time_dim, time_el, _shown(Decimal(dt) / (3600 * US_PER_S))))
    return ChargingPeriod(from_us(t0), from_us(t1), charging, tuple(dims))


def _shown(value: Decimal) -> Decimal:
    return value.quantize(_SHOWN).normalize()
