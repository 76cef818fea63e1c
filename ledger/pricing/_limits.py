"""Tariff min_price / max_price and VAT per rate (OCPI 2.2.1 11.3.1 notes; EN 16931 BR-CO-17).

OCPI: "the total cost of a Charging Session excluding VAT can never be lower than the
min_price excluding VAT" and the same including VAT; likewise for max_price. We find the
smallest whole-minor-unit adjustment of the net total that satisfies both bounds and spread it
over the lines in proportion to their nets (largest remainder), so revenue stays split by
dimension and no line goes negative.

VAT is computed per VAT rate, on the sum of that rate's rounded line nets, rounded once
(EN 16931 BR-CO-17: "VAT category tax amount = VAT category taxable amount x VAT rate",
rounded to two decimals), then allocated to the rate's lines in proportion to their nets
(largest remainder), so the lines add up to the per-rate total.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from ledger.dimensions import Dimension
from ledger.money import Money
from ledger.pricing.tariffs import Tariff

_HUNDRED = Decimal(100)


@dataclass(slots=True)
class LineDraft:
    """A price line before min/max: amounts in minor units of the tariff currency."""

    dimension: Dimension
    vat_rate: Decimal | None
    quantity: Decimal
    net: int
    adjustment: int = 0
    vat: int = 0


@dataclass(frozen=True, slots=True)
class PriceLimits:
    """A tariff's min_price / max_price in minor units (rounded once, half-up)."""

    min_excl: int | None = None
    min_incl: int | None = None
    max_excl: int | None = None
    max_incl: int | None = None

    @classmethod
    def of(cls, tariff: Tariff) -> PriceLimits:
        def minor(value: Decimal | None) -> int | None:
            return (
                None if value is None else Money.round_half_up(value, tariff.currency).amount_minor
            )

        low, high = tariff.min_price, tariff.max_price
        return cls(
            minor(low.excl_vat) if low else None,
            minor(low.incl_vat) if low else None,
            minor(high.excl_vat) if high else None,
            minor(high.incl_vat) if high else None,
        )


def vat_minor(net_minor: int, rate: Decimal | None) -> int:
    """VAT on a rounded net, rounded once half-up; 0 when the tariff gives no VAT (None)."""
    if rate is None or not net_minor:
        return 0
    return int((net_minor * rate / _HUNDRED).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def vat_per_rate(
    nets: Sequence[int], rates: Sequence[Decimal | None]
) -> dict[Decimal | None, tuple[int, int]]:
    """Per VAT rate (first appearance order): the sum of its nets and the VAT on that sum,
    rounded once half-up (EN 16931 BR-CO-17). ``None`` (no VAT applicable) has VAT 0."""
    taxable: dict[Decimal | None, int] = {}
    for net, rate in zip(nets, rates, strict=True):
        taxable[rate] = taxable.get(rate, 0) + net
    return {rate: (net, vat_minor(net, rate)) for rate, net in taxable.items()}


def allocate_vat(nets: Sequence[int], rates: Sequence[Decimal | None]) -> list[int]:
    """Line VAT amounts that add up, per rate, to ``vat_per_rate``: each rate's VAT spread over
    its lines in proportion to their nets (largest remainder, ties to the earlier line)."""
    out = [0] * len(nets)
    members: dict[Decimal | None, list[int]] = {}
    for i, rate in enumerate(rates):
        members.setdefault(rate, []).append(i)
    for rate, idx in members.items():
        group = [nets[i] for i in idx]
        vat = vat_minor(sum(group), rate)
        if not vat:
            continue
        if len(idx) == 1:
            out[idx[0]] = vat
            continue
        for i, share in zip(idx, _shares(group, vat), strict=True):
            out[i] = share
    return out


def _shares(nets: list[int], amount: int) -> list[int]:
    """Split ``amount`` over lines in proportion to ``nets`` (largest remainder, ties to the
    earlier line); all of it to the first line (FLAT when there is one) when every net is 0."""
    total = sum(nets)
    if total == 0:
        return [amount if i == 0 else 0 for i in range(len(nets))]
    floors = [amount * n // total for n in nets]
    rest = amount - sum(floors)
    order = sorted(range(len(nets)), key=lambda i: (-(amount * nets[i] % total), i))
    for i in order[:rest]:
        floors[i] += 1
    return floors


def _gross(nets: list[int], rates: list[Decimal | None]) -> int:
    return sum(net + vat for net, vat in vat_per_rate(nets, rates).values())


def _smallest(ok: Callable[[int], bool], lo: int, hi: int) -> int:
    """Smallest x in [lo, hi] with ok(x), given ok(hi)."""
    while lo < hi:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def apply_price_limits(drafts: list[LineDraft], limits: PriceLimits) -> tuple[bool, bool]:
    """Raise to min_price / cap at max_price (both excl. and incl. VAT where given), then set
    the VAT per rate from the final nets and allocate it to the lines. Adjusts ``drafts`` in
    place; returns whether the min / max price applied."""
    rates = [d.vat_rate for d in drafts]
    nets = [d.net for d in drafts]
    net = sum(nets)
    gross = _gross(nets, rates)
    min_applied = max_applied = False
    if drafts and limits.min_excl is not None:
        x = max(0, limits.min_excl - net)
        floor_incl = limits.min_incl
        if floor_incl is not None:
            short = floor_incl - (_gross(_after(nets, 1, x), rates) if x else gross)
            if short > 0:
                x = _smallest(
                    lambda v: _gross(_after(nets, 1, v), rates) >= floor_incl, x, x + short
                )
        if x > 0:
            _settle(drafts, 1, x)
            min_applied = True
            nets = [d.net for d in drafts]
            net, gross = sum(nets), _gross(nets, rates)
    if drafts and limits.max_excl is not None:
        y = max(0, net - limits.max_excl)
        cap_incl = limits.max_incl
        if cap_incl is not None:
            excess = (_gross(_after(nets, -1, y), rates) if y else gross) - cap_incl
            if excess > 0:
                top = min(net, y + excess)
                y = _smallest(lambda v: _gross(_after(nets, -1, v), rates) <= cap_incl, y, top)
        if y > 0:
            _settle(drafts, -1, y)
            max_applied = True
    for d, vat in zip(drafts, allocate_vat([d.net for d in drafts], rates), strict=True):
        d.vat = vat
    return min_applied, max_applied


def _after(nets: list[int], sign: int, x: int) -> list[int]:
    return [n + sign * s for n, s in zip(nets, _shares(nets, x), strict=True)]


def _settle(drafts: list[LineDraft], sign: int, x: int) -> None:
    nets = [d.net for d in drafts]
    for d, s in zip(drafts, _shares(nets, x), strict=True):
        d.net += sign * s
        d.adjustment += sign * s
