"""The sweep over a session's timeline: cut it into pieces, pick the active elements per piece
and accumulate what each element bills. Used by ``ledger.pricing``; exact integers (µs, Wh) and
Decimal energy only, no rounding here.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from decimal import Decimal

from ledger.pricing._plan import US_PER_S, PricingPlan, _Thresholds

#: (start µs, end µs, charging, (energy, time, parking) element, energy Wh, duration µs)
PeriodData = tuple[int, int, bool, tuple[int, int, int], Decimal | int, int]
Piece = tuple[int, int, Decimal | int, Decimal | int]  # start µs, end µs, energy before, energy
_FAR = 1 << 62


class Sweep:
    """Accumulators for one session; feed it contiguous spans in time order."""

    __slots__ = (
        "acc_e", "acc_p", "acc_t", "active", "active_get", "charging_us", "d_points", "duration",
        "e_points", "energy", "first_mask", "last_e", "last_p", "last_t", "n_seg", "p_charging",
        "p_de", "p_dt", "p_el", "p_t0", "p_t1", "parking_us", "periods", "seg", "seg_masks",
        "seg_starts", "start_us",
    )  # fmt: skip

    def __init__(self, plan: PricingPlan, start_us: int, end_us: int) -> None:
        self.seg_starts, self.seg_masks, self.seg = plan.segments(start_us, end_us)
        self.n_seg = len(self.seg_starts)
        self.start_us = start_us
        n = len(plan.tariff.elements)
        self.acc_e: list[Decimal | int] = [0] * n
        self.acc_t = [0] * n
        self.acc_p = [0] * n
        self.last_e = self.last_t = self.last_p = -1
        self.energy, self.duration = plan.energy, plan.duration
        self.e_points, self.d_points = plan.energy.points, plan.duration.points
        self.active_get, self.active = plan._active.get, plan.active
        self.periods: list[PeriodData] = []
        self.p_t0 = self.p_t1 = self.p_dt = 0
        self.p_de: Decimal | int = 0
        self.p_charging = True
        self.p_el: tuple[int, int, int] | None = None
        self.charging_us = self.parking_us = 0
        self.first_mask = -1

    def boundary_after(self, at: int) -> int:
        """The first local-time segment start after ``at`` (moves the segment pointer)."""
        starts, seg, n = self.seg_starts, self.seg, self.n_seg
        while seg + 1 < n and starts[seg + 1] <= at:
            seg += 1
        self.seg = seg
        return starts[seg + 1] if seg + 1 < n else _FAR

    def span(
        self, a: int, b: int, cum: Decimal | int, energy: Decimal | int, charging: bool, fixed: int
    ) -> None:
        """Bill [a, b) with ``energy`` Wh delivered in it and ``cum`` Wh before it; ``fixed``
        is the mask of elements whose power/current restrictions hold throughout."""
        starts, n_seg, seg = self.seg_starts, self.n_seg, self.seg
        e_points, d_points, start_us = self.e_points, self.d_points, self.start_us
        pieces: Sequence[Piece]
        if (
            (seg + 1 < n_seg and starts[seg + 1] < b)
            or (d_points and _crosses(d_points, a - start_us, b - start_us))
            or (e_points and energy and _crosses(e_points, cum, cum + energy))
        ):
            pieces = _cut(a, b, cum, energy, starts, seg + 1, start_us, d_points, e_points)
        else:
            pieces = ((a, b, cum, energy),)
        masks = self.seg_masks
        for t0, t1, c0, de in pieces:
            while seg + 1 < n_seg and starts[seg + 1] <= t0:
                seg += 1
            mask = masks[seg] & fixed
            if e_points:
                mask &= self.energy.mask(c0)
            if d_points:
                mask &= self.duration.mask(t0 - start_us)
            if self.first_mask < 0:
                self.first_mask = mask
            el = self.active_get(mask) or self.active(mask)
            if de and el[0] >= 0:
                self.acc_e[el[0]] += de
                self.last_e = el[0]
            dt = t1 - t0
            if dt:
                if charging:
                    self.charging_us += dt
                    if el[1] >= 0:
                        self.acc_t[el[1]] += dt
                        self.last_t = el[1]
                else:
                    self.parking_us += dt
                    if el[2] >= 0:
                        self.acc_p[el[2]] += dt
                        self.last_p = el[2]
            if el is not self.p_el or charging != self.p_charging:
                self.close_period()
                self.p_t0, self.p_charging, self.p_el, self.p_de, self.p_dt = t0, charging, el, 0, 0
            self.p_t1 = t1
            self.p_de += de
            self.p_dt += dt
        self.seg = seg

    def close_period(self) -> None:
        if self.p_el is not None:
            self.periods.append(
                (self.p_t0, self.p_t1, self.p_charging, self.p_el, self.p_de, self.p_dt)
            )
            self.p_el = None


def power_mask(th: _Thresholds, power_kw: Decimal | None, energy: Decimal | int, us: int) -> int:
    """Mask for an interval's power: the measured one, else the average energy / duration."""
    if power_kw is not None:
        return th.mask(power_kw)
    if us > 0:
        return th.mask(Decimal(energy) * 3600 * US_PER_S / 1000 / us)
    return th.unknown


def _crosses(points: list[Decimal | int], low: Decimal | int, high: Decimal | int) -> bool:
    return bisect_right(points, low) != bisect_right(points, high)


def _cut(
    a: int,
    b: int,
    cum: Decimal | int,
    energy: Decimal | int,
    seg_starts: list[int],
    seg: int,
    start_us: int,
    d_points: list[Decimal | int],
    e_points: list[Decimal | int],
) -> list[Piece]:
    """Cut [a, b) where a local-time segment starts, a duration bound passes or the session
    energy crosses a kWh bound. Energy is shared in proportion to time (constant power within a
    meter interval); at a kWh bound it is exact and the time is interpolated to the µs."""
    span = b - a
    points: dict[int, Decimal | int] = {}
    times: list[int] = []
    while seg < len(seg_starts) and seg_starts[seg] < b:
        if seg_starts[seg] > a:
            times.append(seg_starts[seg])
        seg += 1
    times += [int(start_us + d) for d in d_points if a < start_us + d < b]
    for t in times:
        points[t] = cum + Decimal(energy) * (t - a) / span if energy and span else cum
    end = cum + energy
    for point in e_points:
        if cum < point < end:
            t = a + int(span * (point - Decimal(cum)) / Decimal(energy))
            points[t] = max(points.get(t, point), point)
    pieces: list[Piece] = []
    t0, c0 = a, cum
    for t, c in [*sorted(points.items()), (b, end)]:
        c = max(c, c0)  # never let interpolation run backwards
        pieces.append((t0, t, c0, c - c0))
        t0, c0 = t, c
    return pieces
