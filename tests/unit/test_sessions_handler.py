"""Pure parts of the sessions processor: scaling revenue lines to a capped capture, tariff
resolution at session start, deterministic ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.dimensions import Dimension
from ledger.events import RevenueLine
from ledger.pricing.tariffs import UnknownTariff
from ledger.sessions.billing import derived_id, resolve_tariff, scale_lines
from ledger.sessions.session import TariffVersion

T0 = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)


def line(dim: Dimension, net: int, vat: int) -> RevenueLine:
    return RevenueLine(dim, net, vat, "20", "1")


def test_capped_lines_sum_to_the_capture_and_keep_their_vat_ratio() -> None:
    lines = [line(Dimension.ENERGY, 1000, 200), line(Dimension.PARKING_TIME, 500, 100)]
    scaled = scale_lines(lines, 1000)  # 1800 -> 1000: 2/3 and 1/3 of the hold
    assert [(x.amount_excl_vat, x.vat_amount) for x in scaled] == [(556, 111), (278, 55)]
    assert sum(x.amount_excl_vat + x.vat_amount for x in scaled) == 1000
    assert [x.dimension for x in scaled] == [Dimension.ENERGY, Dimension.PARKING_TIME]


def test_lines_are_untouched_when_the_hold_covers_the_total() -> None:
    lines = [line(Dimension.ENERGY, 360, 72)]
    assert scale_lines(lines, 432) == lines


@given(
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 10**5)), min_size=1, max_size=6),
    st.integers(0, 10**6),
)
def test_scaled_lines_always_sum_exactly_to_the_target(
    amounts: list[tuple[int, int]], target: int
) -> None:
    lines = [line(Dimension.ENERGY, net, vat) for net, vat in amounts]
    total = sum(net + vat for net, vat in amounts)
    scaled = scale_lines(lines, target)
    expected = min(target, total) if total else 0
    assert sum(x.amount_excl_vat + x.vat_amount for x in scaled) == expected
    assert all(x.amount_excl_vat >= 0 and x.vat_amount >= 0 for x in scaled)


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
