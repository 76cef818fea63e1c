"""Pure parts of the sessions processor: scaling revenue lines to a capped capture, tariff
resolution at session start, deterministic ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.dimensions import Dimension
from ledger.events import RevenueLine
from ledger.pricing._limits import allocate_vat, vat_minor
from ledger.pricing.tariffs import UnknownTariff
from ledger.sessions.billing import derived_id, resolve_tariff, scale_lines
from ledger.sessions.session import TariffVersion

T0 = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)


def line(dim: Dimension, net: int, vat: int) -> RevenueLine:
    return RevenueLine(dim, net, vat, "20", "1")


def test_capped_lines_sum_to_the_capture_and_keep_their_vat_rate() -> None:
    lines = [line(Dimension.ENERGY, 1000, 200), line(Dimension.PARKING_TIME, 500, 100)]
    scaled = scale_lines(lines, 1000)  # 1800 -> 1000: 2/3 and 1/3 of the hold
    # One 20% rate: net 833 + VAT 167 (833 x 20% = 166.6, rounded once) = 1000; the net split
    # 2:1 (555 + 278), the VAT by the new nets (111 + 56).
    assert [(x.amount_excl_vat, x.vat_amount) for x in scaled] == [(555, 111), (278, 56)]
    assert sum(x.amount_excl_vat + x.vat_amount for x in scaled) == 1000
    assert [x.dimension for x in scaled] == [Dimension.ENERGY, Dimension.PARKING_TIME]


def test_a_capture_that_no_vat_consistent_split_reaches_stops_a_cent_short() -> None:
    # 21%: net 83 + VAT 17 (17.43) = 100, net 84 + VAT 18 (17.64) = 102: no net gives 101, so
    # a hold of 1.01 captures 1.00 (the shortfall grows by a cent) and VAT stays 21% of the net.
    lines = [RevenueLine(Dimension.ENERGY, 1000, 210, "21", "1")]
    assert [(x.amount_excl_vat, x.vat_amount) for x in scale_lines(lines, 101)] == [(83, 17)]
    # With a second rate the cent goes there instead: 0% takes any amount.
    mixed = [*lines, RevenueLine(Dimension.FLAT, 100, 0, "0", "1")]
    scaled = scale_lines(mixed, 101)
    assert sum(x.amount_excl_vat + x.vat_amount for x in scaled) == 101
    assert [(x.amount_excl_vat, x.vat_amount) for x in scaled] == [(77, 16), (8, 0)]  # 93 + 8


def test_lines_are_untouched_when_the_hold_covers_the_total() -> None:
    lines = [line(Dimension.ENERGY, 360, 72)]
    assert scale_lines(lines, 432) == lines


@given(
    st.lists(
        st.tuples(st.integers(0, 10**6), st.sampled_from([None, "0", "7", "20", "21"])),
        min_size=1,
        max_size=6,
    ),
    st.integers(0, 10**6),
)
def test_scaled_lines_sum_to_the_target_or_a_cent_below_with_vat_per_rate(
    amounts: list[tuple[int, str | None]], target: int
) -> None:
    rates = [None if r is None else Decimal(r) for _, r in amounts]
    vats = allocate_vat([net for net, _ in amounts], rates)
    lines = [
        RevenueLine(Dimension.ENERGY, net, vat, rate, "1")
        for (net, rate), vat in zip(amounts, vats, strict=True)
    ]
    total = sum(net for net, _ in amounts) + sum(vats)
    scaled = scale_lines(lines, target)
    captured = sum(x.amount_excl_vat + x.vat_amount for x in scaled)
    if target >= total:
        assert scaled == lines
        return
    assert target - 1 <= captured <= target  # a cent short only where VAT per rate needs it
    assert all(x.amount_excl_vat >= 0 and x.vat_amount >= 0 for x in scaled)
    by_rate: dict[str | None, list[int]] = {}
    for x in scaled:
        net, vat = by_rate.setdefault(x.vat_rate, [0, 0])
        by_rate[x.vat_rate] = [net + x.amount_excl_vat, vat + x.vat_amount]
    for rate, (net, vat) in by_rate.items():
        assert vat == vat_minor(net, None if rate is None else Decimal(rate))


def version(n: int, published: datetime) -> TariffVersion:
    return TariffVersion("T", n, "EUR", "{}", published, f"e{n}")


def test_the_tariff_is_the_latest_version_published_before_the_start() -> None:
    versions = [version(1, T0 - timedelta(days=2)), version(2, T0 + timedelta(minutes=5))]
    assert resolve_tariff(versions, "T", None, T0).version == 1  # v2 came after the start
    assert resolve_tariff(versions, "T", 2, T0).version == 2  # asked for explicitly
    with pytest.raises(UnknownTariff):
        resolve_tariff(versions, "T", 3, T0)
    with pytest.raises(UnknownTariff):
        resolve_tariff(versions, "T", None, T0 - timedelta(days=3))


def test_derived_ids_are_stable_uuids_per_cause_and_kind() -> None:
    assert derived_id("e-1", "capture") == derived_id("e-1", "capture")
    assert derived_id("e-1", "capture") != derived_id("e-1", "cdr-issued")
    assert derived_id("e-1", "capture") != derived_id("e-2", "capture")
    assert len(derived_id("e-1", "capture")) == 36
