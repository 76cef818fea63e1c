"""A tariff compiled for one time zone: which elements are active, as bit masks, and where.

OCPI restrictions are half-open ranges ([min, max)) over local time, date, weekday, session
energy, duration, power and current. Pricing splits the session wherever one of them can change
and asks this plan, per piece, for the first active element of each dimension (OCPI 2.2.1
11.3.1: "the first Tariff Element with that Dimension in the list with matching Tariff
Restrictions will be used"). Masks and the local-time boundaries of each day are computed once
and cached, which is what makes pricing fast.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ledger.dimensions import Dimension
from ledger.errors import ValidationError
from ledger.pricing._limits import PriceLimits
from ledger.pricing.tariffs import PriceComponent, Tariff, TariffRestrictions

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_US = timedelta(microseconds=1)
US_PER_S = 1_000_000
_MAX_CACHED_DAYS = 2048
_MAX_COVERED_DAYS = 400
_ZERO = Decimal(0)

#: Dimensions billed per piece of the timeline; FLAT is billed once per session.
METERED = (Dimension.ENERGY, Dimension.TIME, Dimension.PARKING_TIME)


class UnknownTimeZone(ValidationError):
    code = "UNKNOWN_TIME_ZONE"


def to_us(moment: datetime) -> int:
    """Microseconds since the Unix epoch (exact; ``moment`` must be aware)."""
    return (moment - EPOCH) // ONE_US


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


class _Thresholds:
    """Masks of elements whose [min, max) range holds, per bucket of a one-dimensional value."""

    def __init__(
        self,
        ranges: Sequence[tuple[int, Decimal | int | None, Decimal | int | None]],
        all_mask: int,
    ) -> None:
        self.points: list[Decimal | int] = sorted(
            {v for _, lo, hi in ranges for v in (lo, hi) if v is not None}
        )
        self.active = bool(ranges)
        free = all_mask
        for bit, _, _ in ranges:
            free &= ~bit
        # A value in bucket k lies in [points[k-1], points[k]); bucket 0 lies below every bound.
        self.masks: list[int] = []
        for k in range(len(self.points) + 1):
            mask = free
            for bit, lo, hi in ranges:
                if k == 0:
                    holds = lo is None
                else:
                    v = self.points[k - 1]
                    holds = (lo is None or lo <= v) and (hi is None or v < hi)
                if holds:
                    mask |= bit
            self.masks.append(mask)
        #: Mask when the value is unknown: a restriction on it cannot be satisfied.
        self.unknown = free

    def mask(self, value: Decimal | int) -> int:
        return self.masks[bisect_right(self.points, value)]


class PricingPlan:
    """``tariff`` compiled for ``time_zone``. Build with ``plan_for``; immutable once built."""

    def __init__(self, tariff: Tariff, time_zone: str) -> None:
        try:
            self.zone = ZoneInfo(time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise UnknownTimeZone(
                f"unknown IANA time zone {time_zone!r}", time_zone=time_zone, tariff_id=tariff.id
            ) from None
        self.tariff = tariff
        self.currency = tariff.currency
        elements = tariff.elements
        self.all_mask = (1 << len(elements)) - 1
        restrictions: list[tuple[int, TariffRestrictions]] = []
        usable = 0
        for i, element in enumerate(elements):
            r = element.restrictions
            # Elements with a reservation restriction price reservations, never a session.
            if r is None or r.reservation is None:
                usable |= 1 << i
            if r is not None:
                restrictions.append((1 << i, r))
        self.usable_mask = usable
        #: Element indices carrying a component of each dimension, in tariff order.
        self.by_dimension: dict[Dimension, list[int]] = {
            d: [i for i, e in enumerate(elements) if e.component(d) is not None]
            for d in (*METERED, Dimension.FLAT)
        }
        self.components: list[dict[Dimension, PriceComponent]] = [
            {pc.dimension: pc for pc in e.price_components} for e in elements
        ]
        self.local_time = [(bit, r) for bit, r in restrictions if r.has_local_time]
        self.minutes = sorted(
            {0}
            | {
                m
                for _, r in self.local_time
                for m in (r.start_minute, r.end_minute)
                if m is not None
            }
        )
        self.energy = _Thresholds(
            [
                (b, _wh(r.min_kwh), _wh(r.max_kwh))
                for b, r in restrictions
                if r.min_kwh is not None or r.max_kwh is not None
            ],
            self.all_mask,
        )
        self.duration = _Thresholds(
            [
                (b, _us(r.min_duration), _us(r.max_duration))
                for b, r in restrictions
                if r.min_duration is not None or r.max_duration is not None
            ],
            self.all_mask,
        )
        self.power = _Thresholds(
            [
                (b, r.min_power, r.max_power)
                for b, r in restrictions
                if r.min_power is not None or r.max_power is not None
            ],
            self.all_mask,
        )
        self.current = _Thresholds(
            [
                (b, r.min_current, r.max_current)
                for b, r in restrictions
                if r.min_current is not None or r.max_current is not None
            ],
            self.all_mask,
        )
        self.limits = PriceLimits.of(tariff)
        #: Only local time and charging state pick elements: intervals can be billed in runs.
        self.runs_allowed = not (
            self.energy.active or self.duration.active or self.power.active or self.current.active
        )
        self._days: dict[date, list[tuple[int, int]]] = {}
        self._active: dict[int, tuple[int, int, int]] = {}
        self._starts: list[int] = []
        self._masks: list[int] = []
        self._first: date | None = None
        self._last: date | None = None
        self._lo_us = self._hi_us = 0
        # Per metered dimension (ENERGY, TIME, PARKING_TIME) and element: price, VAT, step in
        # the dimension's base unit (Wh, µs). Indexed by int so the hot loop avoids enum hashing.
        self.prices: list[list[Decimal]] = []
        self.vats: list[list[Decimal | None]] = []
        self.steps: list[list[int]] = []
        for d in METERED:
            unit = 1 if d is Dimension.ENERGY else US_PER_S
            comps = [c.get(d) for c in self.components]
            self.prices.append([_ZERO if c is None else c.price for c in comps])
            self.vats.append([None if c is None else c.vat for c in comps])
            self.steps.append([1 if c is None else c.step_size * unit for c in comps])

    # -- element choice ---------------------------------------------------------------------
    def active(self, mask: int) -> tuple[int, int, int]:
        """First active element index for ENERGY, TIME, PARKING_TIME (-1: none, not billed)."""
        found = self._active.get(mask)
        if found is None:
            mask &= self.usable_mask
            e, t, p = (
                next((i for i in self.by_dimension[d] if mask >> i & 1), -1) for d in METERED
            )
            found = self._active[mask] = (e, t, p)
        return found

    def flat(self, mask: int) -> int:
        mask &= self.usable_mask
        return next((i for i in self.by_dimension[Dimension.FLAT] if mask >> i & 1), -1)

    # -- local time -------------------------------------------------------------------------
    def segments(self, start_us: int, end_us: int) -> tuple[list[int], list[int], int]:
        """Local-time segments covering [start, end]: instants (µs) from which a mask holds,
        the masks, and the index of the segment containing ``start_us``.

        The mask of segment k holds on [starts[k], starts[k+1]). The lists are shared (do not
        mutate); they cover a span of days that grows as sessions need it.
        """
        if not self.local_time:
            return [start_us], [self.all_mask], 0
        if not (self._lo_us <= start_us and end_us < self._hi_us):
            self._cover(start_us, end_us)
        starts = self._starts
        return starts, self._masks, bisect_right(starts, start_us) - 1

    def _cover(self, start_us: int, end_us: int) -> None:
        """Extend the covered days to include [start, end] and rebuild the merged boundaries."""
        first = from_us(start_us).astimezone(self.zone).date()
        last = from_us(end_us).astimezone(self.zone).date()
        if self._first is not None and self._last is not None:
            lo, hi = min(first, self._first), max(last, self._last)
            if (hi - lo).days <= _MAX_COVERED_DAYS:
                first, last = lo, hi
        points: list[tuple[int, int]] = []
        day = first - timedelta(days=1)
        while day <= last + timedelta(days=1):
            points.extend(self._day(day))
            day += timedelta(days=1)
        points.sort()
        starts: list[int] = []
        masks: list[int] = []
        for at, mask in points:
            if starts and at == starts[-1]:
                masks[-1] = mask
            elif not masks or mask != masks[-1]:
                starts.append(at)
                masks.append(mask)
        self._starts, self._masks = starts, masks
        self._first, self._last = first, last
        self._lo_us = self._midnight_us(first)
        self._hi_us = self._midnight_us(last + timedelta(days=1))

    def _midnight_us(self, day: date) -> int:
        return to_us(datetime(day.year, day.month, day.day, tzinfo=self.zone))

    def _day(self, day: date) -> list[tuple[int, int]]:
        """Candidate change instants of ``day`` with the mask from each: every restriction
        minute in both folds (DST overlap) and the DST transitions (a gap skips minutes)."""
        cached = self._days.get(day)
        if cached is not None:
            return cached
        instants: set[int] = set()
        for minute in self.minutes:
            naive = datetime(day.year, day.month, day.day, minute // 60, minute % 60)
            for fold in (0, 1):
                instants.add(to_us(naive.replace(tzinfo=self.zone, fold=fold)))
        instants.update(self._transitions(day))
        result = sorted((at, self.local_mask(at)) for at in instants)
        if len(self._days) >= _MAX_CACHED_DAYS:
            self._days.clear()
        self._days[day] = result
        return result

    def _transitions(self, day: date) -> list[int]:
        begin = to_us(datetime(day.year, day.month, day.day, tzinfo=self.zone)) - 3600 * US_PER_S
        end = begin + 27 * 3600 * US_PER_S

        def offset(us: int) -> timedelta | None:
            return from_us(us).astimezone(self.zone).utcoffset()

        if offset(begin) == offset(end):
            return []
        lo, hi = begin // US_PER_S, end // US_PER_S  # offset(lo) != offset(hi); find the switch
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if offset(mid * US_PER_S) == offset(lo * US_PER_S):
                lo = mid
            else:
                hi = mid
        return [hi * US_PER_S]

    def local_mask(self, at_us: int) -> int:
        """Elements whose time-of-day, date and weekday restrictions hold at ``at_us``."""
        local = from_us(at_us).astimezone(self.zone)
        today = local.date()
        weekday = today.weekday()
        minute = local.hour * 60 + local.minute
        mask = self.all_mask
        for bit, r in self.local_time:
            if not _holds_locally(r, today, weekday, minute):
                mask &= ~bit
        return mask


def _holds_locally(r: TariffRestrictions, today: date, weekday: int, minute: int) -> bool:
    if r.start_date is not None and today < r.start_date:
        return False
    if r.end_date is not None and today >= r.end_date:
        return False
    if r.day_of_week and not any(d.weekday == weekday for d in r.day_of_week):
        return False
    start, end = r.start_minute, r.end_minute
    if start is None:
        return end is None or minute < end
    if end is None:
        return minute >= start
    if start == end:  # read as the whole day
        return True
    if start < end:
        return start <= minute < end
    return minute >= start or minute < end  # wraps past midnight


def _wh(kwh: Decimal | None) -> Decimal | None:
    return None if kwh is None else kwh * 1000


def _us(seconds: int | None) -> int | None:
    return None if seconds is None else seconds * US_PER_S


def plan_for(tariff: Tariff, time_zone: str) -> PricingPlan:
    """The (cached) plan of ``tariff`` in ``time_zone``. Raises UnknownTimeZone."""
    plan: PricingPlan | None = tariff._plans.get(time_zone)
    if plan is None:
        plan = tariff._plans[time_zone] = PricingPlan(tariff, time_zone)
    return plan
