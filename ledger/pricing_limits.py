"""Tariff min_price / max_price and VAT on rounded line nets (OCPI 2.2.1 11.3.1, notes).

OCPI: "the total cost of a Charging Session excluding VAT can never be lower than the
min_price excluding VAT" and the same including VAT; likewise for max_price. We find the
smallest whole-minor-unit adjustment of the net total that satisfies both bounds and spread it
over the lines in proportion to their nets (largest remainder), so revenue stays split by
dimension and no line goes negative. VAT is then recomputed per line from its final net.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from ledger.dimensions import Dimension
from ledger.money import Money
from ledger.tariffs import Tariff

_HUNDRED = Decimal(100)


@dataclass(slots=True)
class LineDraft:
    """A price line before min/max: amounts in minor units of the tariff currency."""

    dimension: Dimension
    vat_rate: Decimal | None
    quantity: Decimal
    net: int
    adjustment: int = 0


def vat_minor(net_minor: int, rate: Decimal | None) -> int:
    """VAT on a rounded net, rounded once half-up; 0 when the tariff gives no VAT (None)."""
    if rate is None or not net_minor:
        return 0
    return int((net_minor * rate / _HUNDRED).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _shares(nets: list[int], amount: int, prefer: int) -> list[int]:
    """Split ``amount`` over lines in proportion to ``nets`` (largest remainder, ties to the
    earlier line); all of it to line ``prefer`` when every net is zero."""
    total = sum(nets)
    if total == 0:
        return [amount if i == prefer else 0 for i in range(len(nets))]
    floors = [amount * n // total for n in nets]
    rest = amount - sum(floors)
    order = sorted(range(len(nets)), key=lambda i: (-(amount * nets[i] % total), i))
    for i in order[:rest]:
        floors[i] += 1
    return floors


def _gross(nets: list[int], rates: list[Decimal | None]) -> int:
    return sum(n + vat_minor(n, r) for n, r in zip(nets, rates, strict=True))


def _smallest(ok: Callable[[int], bool], lo: int, hi: int) -> int:
    """Smallest x in [lo, hi] with ok(x), given ok(hi)."""
    while lo < hi:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def apply_price_limits(
    drafts: list[LineDraft], tariff: Tariff
) -> tuple[list[LineDraft], bool, bool]:
    """Raise to min_price / cap at max_price (both excl. and incl. VAT where given).

    Returns the drafts (adjusted in place) and whether min / max price applied.
    """
    if not drafts or (tariff.min_price is None and tariff.max_price is None):
        return drafts, False, False
    currency = tariff.currency
    rates = [d.vat_rate for d in drafts]
    flat = next((i for i, d in enumerate(drafts) if d.dimension is Dimension.FLAT), 0)

    def minor(value: Decimal) -> int:
        return Money.round_half_up(value, currency).amount_minor

    def after(sign: int, x: int) -> list[int]:
        nets = [d.net for d in drafts]
        return [n + sign * s for n, s in zip(nets, _shares(nets, x, flat), strict=True)]

    def settle(sign: int, x: int) -> None:
        for d, s in zip(drafts, _shares([d.net for d in drafts], x, flat), strict=True):
            d.net += sign * s
            d.adjustment += sign * s

    min_applied = max_applied = False
    net = sum(d.net for d in drafts)
    if tariff.min_price is not None:
        low = tariff.min_price
        x = max(0, minor(low.excl_vat) - net)
        if low.incl_vat is not None:
            floor_incl = minor(low.incl_vat)
            short = floor_incl - _gross(after(1, x), rates)
            if short > 0:
                x = _smallest(lambda v: _gross(after(1, v), rates) >= floor_incl, x, x + short)
        if x > 0:
            settle(1, x)
            min_applied = True
    net = sum(d.net for d in drafts)
    if tariff.max_price is not None:
        high = tariff.max_price
        y = max(0, net - minor(high.excl_vat))
        if high.incl_vat is not None:
            cap_incl = minor(high.incl_vat)
            excess = _gross(after(-1, y), rates) - cap_incl
            if excess > 0:
                top = min(net, y + excess)
                y = _smallest(lambda v: _gross(after(-1, v), rates) <= cap_incl, y, top)
        if y > 0:
            settle(-1, y)
            max_applied = True
    return drafts, min_applied, max_applied
