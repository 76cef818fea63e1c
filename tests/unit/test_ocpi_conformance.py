"""OCPI 2.2.1 conformance: the worked examples of the Tariffs module (mod_tariffs) and the
step_size rules of the CDRs module (mod_cdrs), with the figures the spec text gives, and a case
for every TariffRestriction and for choosing a tariff by TariffType.

The example tariffs are the spec's ``examples/tariff_*.json`` (OCPI 2.2.1 tag), written here as
dicts without the fields pricing ignores. Where the spec's own examples disagree with each other
or with a rule, the test names the figure the spec prints, what evledger bills and why
(docs/tariffs.md, "Conformance").

Exact figures: the spec prints unrounded amounts (0.383, 12.375); a bill is in cents. Where they
differ, ``exact()`` recomputes the unrounded amount from the bill's quantities and unit prices and
compares that with the spec, and the bill is checked for rounding each line once and the VAT once
per rate (EN 16931 BR-CO-17).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from ledger.dimensions import Dimension
from ledger.money import Money
from ledger.pricing.price import PricedSession, price_session
from ledger.pricing.reservation import Reservation, price_reservation
from ledger.pricing.selection import select_tariff
from ledger.pricing.tariffs import Tariff, TariffType, UnknownTariff, parse_tariff
from ledger.sessions.metering import MeteredInterval, MeteredSession

D = Decimal
# The spec's example tariffs carry no time zone; the Location's would apply. Berlin (the
# examples' country_code is DE).
ZONE = "Europe/Berlin"


def at(day: str, hhmm: str) -> datetime:
    """Local wall-clock time in ZONE as an aware UTC instant (June: UTC+2)."""
    hour, minute = map(int, hhmm.split(":"))
    local = datetime.fromisoformat(day).replace(hour=hour, minute=minute, tzinfo=UTC)
    return local - timedelta(hours=2)


MONDAY, SATURDAY = "2026-06-01", "2026-06-06"


def ocpi(tariff_id: str, *elements: dict[str, Any], **extra: Any) -> Tariff:
    return parse_tariff({"id": tariff_id, "currency": "EUR", "elements": list(elements), **extra})


def pc(kind: str, price: str, step: int = 1, vat: str | None = None) -> dict[str, Any]:
    comp: dict[str, Any] = {"type": kind, "price": D(price), "step_size": step}
    if vat is not None:
        comp["vat"] = D(vat)
    return comp


def el(*components: dict[str, Any], **restrictions: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"price_components": list(components)}
    if restrictions:
        out["restrictions"] = restrictions
    return out


def metered(
    start: datetime,
    *parts: tuple[float, Decimal | int, bool],
    power_kw: Decimal | None = None,
    current_a: Decimal | None = None,
) -> MeteredSession:
    """Contiguous intervals from ``start``: (minutes, Wh, charging)."""
    intervals, t = [], start
    for mins, wh, charging in parts:
        end = t + timedelta(minutes=mins)
        intervals.append(MeteredInterval(t, end, wh, charging, power_kw, current_a))
        t = end
    return MeteredSession("S", start, t, ZONE, tuple(intervals))


def eur(amount: str) -> Money:
    return Money.of(amount, "EUR")


def totals(priced: PricedSession) -> tuple[str, str]:
    return (str(priced.total_excl_vat.to_decimal()), str(priced.total_incl_vat.to_decimal()))


def net(priced: PricedSession, dim: Dimension) -> str:
    return str(priced.net_of(dim).to_decimal())


def exact(priced: PricedSession, tariff: Tariff, dim: Dimension) -> Decimal:
    """The unrounded amount of ``dim``: billed quantity x unit price, per element's share as the
    charging periods show it (one price per dimension in the tariffs where this is used)."""
    prices = {pc.price for e in tariff.elements for pc in e.price_components if pc.dimension is dim}
    (price,) = prices
    return sum((x.quantity * price for x in priced.lines if x.dimension is dim), D(0))


def check_vat_per_rate(priced: PricedSession) -> None:
    for sub in priced.vat_breakdown():
        expected = D(0) if sub.rate is None else sub.taxable.to_decimal() * sub.rate / 100
        assert sub.vat == Money.round_half_up(expected, "EUR")


# ==================================================================== mod_tariffs 11.3.1 examples
TARIFF_8 = ocpi("8", el(pc("ENERGY", "0.25", 1, "10")))  # "Simple Tariff example 0.25 euro per kWh"
TARIFF_9 = ocpi("9", el(pc("FLAT", "0.50", 1, "20"), pc("ENERGY", "0.25", 1, "10")))
TARIFF_12 = ocpi(
    "12",
    el(pc("ENERGY", "0.25", 1, "10")),
    min_price={"excl_vat": D("0.50"), "incl_vat": D("0.55")},
)
TARIFF_10 = ocpi(
    "10",
    el(
        pc("FLAT", "0.50", 1, "20"),
        pc("ENERGY", "0.25", 1, "10"),
        pc("PARKING_TIME", "2.00", 900, "20"),
    ),
)
TARIFF_6 = ocpi(
    "16",
    el(pc("FLAT", "0.50", 1, "20"), pc("ENERGY", "0.25", 1, "10")),
    max_price={"excl_vat": D("10.00"), "incl_vat": D("11.00")},
    end_date_time="2019-06-30T23:59:59Z",
)
TARIFF_1 = ocpi("12", el(pc("TIME", "2.00", 60, "10")))
TARIFF_13 = ocpi("13", el(pc("TIME", "3.00", 60, "10"), pc("PARKING_TIME", "5.00", 300, "20")))
TARIFF_2 = ocpi("13", el(pc("TIME", "1.90", 300, "5.2")), type="AD_HOC_PAYMENT")
TARIFF_3 = ocpi(
    "14", el(pc("FLAT", "0.50", 1, "20"), pc("ENERGY", "0.25", 100, "10")), type="PROFILE_CHEAP"
)
WEEKDAYS = ["MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY"]
TARIFF_4 = ocpi(
    "14",
    el(pc("FLAT", "2.50", 1, "15")),
    el(pc("TIME", "1.00", 900, "20"), max_current=D(32)),
    el(pc("TIME", "2.00", 600, "20"), min_current=D(32), day_of_week=WEEKDAYS),
    el(pc("TIME", "1.25", 600, "20"), min_current=D(32), day_of_week=["SATURDAY", "SUNDAY"]),
    el(pc("PARKING_TIME", "5.00", 300, "10"), start_time="09:00", end_time="18:00",
       day_of_week=WEEKDAYS),
    el(pc("PARKING_TIME", "6.00", 300, "10"), start_time="10:00", end_time="17:00",
       day_of_week=["SATURDAY"]),
    type="REGULAR",
)  # fmt: skip
TARIFF_5 = ocpi("15", el(pc("FLAT", "0.00", 0)))
TARIFF_7 = ocpi(
    "52",
    el(pc("PARKING_TIME", "0.00", 60), min_duration=0, max_duration=3600),
    el(pc("PARKING_TIME", "2.00", 60), min_duration=3600, max_duration=10800),
    el(pc("PARKING_TIME", "3.00", 60), min_duration=10800),
    el(pc("ENERGY", "0.00", 1), max_kwh=D("1.0")),
    el(pc("ENERGY", "0.20", 1), min_kwh=D("1.0")),
)


def test_simple_025_per_kwh_20_kwh_is_5_00_excl_5_50_incl() -> None:
    assert totals(price_session(TARIFF_8, metered(at(MONDAY, "10:00"), (60, 20_000, True)))) == (
        "5.00",
        "5.50",
    )


def test_025_per_kwh_plus_start_fee_20_kwh_is_5_50_excl_6_10_incl() -> None:
    priced = price_session(TARIFF_9, metered(at(MONDAY, "10:00"), (60, 20_000, True)))
    assert totals(priced) == ("5.50", "6.10")
    check_vat_per_rate(priced)


@pytest.mark.parametrize(
    ("wh", "expected"), [(20_000, ("5.00", "5.50")), (1_500, ("0.50", "0.55"))]
)
def test_min_price_20_kwh_is_5_00_and_under_2_kwh_is_the_minimum(
    wh: int, expected: tuple[str, str]
) -> None:
    priced = price_session(TARIFF_12, metered(at(MONDAY, "10:00"), (30, wh, True)))
    assert totals(priced) == expected
    assert priced.min_price_applied is (wh < 2_000)


def test_parking_fee_and_start_fee_20_kwh_40_min_parked_is_7_00_excl_7_90_incl() -> None:
    priced = price_session(
        TARIFF_10, metered(at(MONDAY, "10:00"), (60, 20_000, True), (40, 0, False))
    )
    assert totals(priced) == ("7.00", "7.90")
    assert net(priced, Dimension.PARKING_TIME) == "1.50"  # 45 min billed (step 15 min)
    check_vat_per_rate(priced)


def test_max_price_30_kwh_is_under_the_cap_8_00_excl_8_85_incl() -> None:
    priced = price_session(TARIFF_6, metered(at(MONDAY, "10:00"), (60, 30_000, True)))
    assert totals(priced) == ("8.00", "8.85")
    assert not priced.max_price_applied


def test_max_price_50_kwh_is_capped_at_11_00_incl_and_at_most_10_00_excl() -> None:
    """Spec: 10.00 excl. and 11.00 incl. "due to the price limit". Both bounds apply (11.3.1
    note); with the start fee at 20% VAT, 10.00 excl. would be more than 11.00 incl., so the
    incl. bound binds: 11.00 incl. exactly (the spec's figure) on a net a little under 10.00."""
    priced = price_session(TARIFF_6, metered(at(MONDAY, "10:00"), (60, 50_000, True)))
    assert priced.max_price_applied
    assert priced.total_incl_vat == eur("11.00")
    assert priced.total_excl_vat <= eur("10.00")
    check_vat_per_rate(priced)


def test_tariff_end_date_time_30_june_2019() -> None:
    assert TARIFF_6.is_active_at(datetime(2019, 6, 30, 23, 59, 58, tzinfo=UTC))
    assert not TARIFF_6.is_active_at(datetime(2019, 6, 30, 23, 59, 59, tzinfo=UTC))


def test_2_per_hour_charging_2_5_hours_is_5_00_excl_5_50_incl() -> None:
    priced = price_session(TARIFF_1, metered(at(MONDAY, "10:00"), (150, 11_000, True)))
    assert totals(priced) == ("5.00", "5.50")


def test_3_per_hour_5_per_hour_parking_150_plus_42_min_is_11_25_excl_12_75_incl() -> None:
    priced = price_session(
        TARIFF_13, metered(at(MONDAY, "10:00"), (150, 30_000, True), (42, 0, False))
    )
    assert totals(priced) == ("11.25", "12.75")
    assert net(priced, Dimension.PARKING_TIME) == "3.75"  # 45 min (step 5 min)


def test_ad_hoc_1_90_per_hour_2_5_hours_is_4_75_excl_5_00_incl() -> None:
    priced = price_session(TARIFF_2, metered(at(MONDAY, "10:00"), (150, 11_000, True)))
    assert totals(priced) == ("4.75", "5.00")


@pytest.mark.parametrize(
    ("energy_price", "energy", "total"),
    [("0.25", ("5.13", "5.64"), ("5.63", "6.24")), ("0.22", ("4.51", "4.96"), ("5.01", "5.56"))],
)
def test_alt_url_20_45_kwh_billed_as_20_5_kwh(
    energy_price: str, energy: tuple[str, str], total: tuple[str, str]
) -> None:
    """Spec: step 100 Wh bills 20.5 kWh; at 0.25: energy 5.13 / 5.64, total 5.63 / 6.24; at the
    assumed real-time price 0.22: energy 4.51 / 4.96, total 5.01 / 5.56."""
    tariff = ocpi("14", el(pc("FLAT", "0.50", 1, "20"), pc("ENERGY", energy_price, 100, "10")))
    priced = price_session(tariff, metered(at(MONDAY, "10:00"), (60, 20_450, True)))
    (line,) = [x for x in priced.lines if x.dimension is Dimension.ENERGY]
    assert line.quantity == D("20.5")
    assert (str(line.net.to_decimal()), str(line.gross.to_decimal())) == energy
    flat = next(x for x in priced.lines if x.dimension is Dimension.FLAT)
    assert (str(flat.net.to_decimal()), str(flat.gross.to_decimal())) == ("0.50", "0.60")
    assert totals(priced) == total


def test_complex_monday_09_30_165_min_at_16_a_and_42_min_parking() -> None:
    """Spec: 9.00 excl., 10.30 incl.; 165 min charging (2.75, no step_size: parking follows),
    45 min parking (3.75), start fee 2.50. The 10.30 is unrounded VAT (0.375 + 0.55 + 0.375);
    VAT rounded once per rate is 0.38 + 0.55 + 0.38, so the bill is 10.31."""
    priced = price_session(
        TARIFF_4,
        metered(at(MONDAY, "09:30"), (165, 11_000, True), (42, 0, False), current_a=D(16)),
    )
    assert (net(priced, Dimension.TIME), net(priced, Dimension.PARKING_TIME)) == ("2.75", "3.75")
    assert priced.total_excl_vat == eur("9.00")
    exact_vat = sum((x.net.to_decimal() * (x.vat_rate or 0) / 100 for x in priced.lines), D(0))
    assert priced.total_excl_vat.to_decimal() + exact_vat == D("10.30")
    assert priced.total_incl_vat == eur("10.31")
    check_vat_per_rate(priced)


def test_complex_saturday_13_30_114_min_at_43_a_and_71_min_parking() -> None:
    """Spec: 12.375 excl., 13.975 incl.; 114 min charging at 1.25/h = 2.375 (not rounded to 120:
    parking follows), 71 min parking rounded to 75 = 7.50, start fee 2.50. The bill rounds the
    TIME line once (2.38) and VAT once per rate: 12.38 excl., 13.99 incl."""
    priced = price_session(
        TARIFF_4,
        metered(at(SATURDAY, "13:30"), (114, 30_000, True), (71, 0, False), current_a=D(43)),
    )
    (time_line,) = [x for x in priced.lines if x.dimension is Dimension.TIME]
    time_elements = {d.element for p in priced.periods for d in p.dimensions
                     if d.dimension is Dimension.TIME}  # fmt: skip
    assert (time_elements, time_line.quantity) == ({3}, D("1.9"))  # weekend >= 32 A, 114 min
    exact_excl = D("2.50") + time_line.quantity * D("1.25") + D("7.50")
    assert exact_excl == D("12.375")
    exact_vat = D("2.50") * 15 / 100 + D("2.375") * 20 / 100 + D("7.50") * 10 / 100
    assert exact_excl + exact_vat == D("13.975")
    assert net(priced, Dimension.PARKING_TIME) == "7.50"
    assert totals(priced) == ("12.38", "13.99")
    check_vat_per_rate(priced)


def test_free_of_charge_tariff_costs_nothing_and_step_size_0_is_read_as_1() -> None:
    priced = price_session(TARIFF_5, metered(at(MONDAY, "10:00"), (60, 20_000, True)))
    assert totals(priced) == ("0.00", "0.00")


def test_first_kwh_and_first_hour_free_energy_is_3_80() -> None:
    """Spec: 20 kWh and 2:45 h parked -> energy 3.80 (19 kWh x 0.20) + parking 3.50 (105 min x
    2.00/h) = 7.30. min/max_duration are the *session's* duration (11.4.6: "the duration of a
    Charging Session"), so the spec's 3.50 holds when the parking starts at the session start;
    after 30 min of charging, parking runs 0:30-3:15 of the session: 0:30-1:00 free, 1:00-3:00
    at 2.00 (4.00), 3:00-3:15 at 3.00 (0.75) = 4.75."""
    priced = price_session(
        TARIFF_7, metered(at(MONDAY, "10:00"), (30, 20_000, True), (165, 0, False))
    )
    assert net(priced, Dimension.ENERGY) == "3.80"
    assert net(priced, Dimension.PARKING_TIME) == "4.75"
    parked_from_start = price_session(TARIFF_7, metered(at(MONDAY, "10:00"), (165, 0, False)))
    assert net(parked_from_start, Dimension.PARKING_TIME) == "3.50"  # the spec's figure


# ------------------------------------------------------------- step_size (PriceComponent note)
@pytest.mark.parametrize(("step", "kwh", "exact_eur"), [(1, "0.116", "0.029"),
                                                         (25, "0.125", "0.03125"),
                                                         (500, "0.5", "0.125")])  # fmt: skip
def test_energy_step_size_115_2_wh(step: int, kwh: str, exact_eur: str) -> None:
    """Spec: 115.2 Wh at 0.25 billed as 116 Wh (0.029), 125 Wh (0.031: 0.03125) and 500 Wh
    (0.125)."""
    tariff = ocpi("S", el(pc("ENERGY", "0.25", step)))
    priced = price_session(tariff, metered(at(MONDAY, "10:00"), (1, D("115.2"), True)))
    (line,) = priced.lines
    assert line.quantity == D(kwh)
    assert exact(priced, tariff, Dimension.ENERGY) == D(exact_eur)


TARIFF_14 = ocpi(
    "22",
    el(pc("TIME", "1.20", 1800), pc("PARKING_TIME", "1.00", 900), start_time="00:00",
       end_time="17:00"),
    el(pc("TIME", "2.40", 900), pc("PARKING_TIME", "1.00", 900), start_time="17:00",
       end_time="20:00"),
    el(pc("TIME", "2.40", 900), start_time="20:00", end_time="00:00"),
)  # fmt: skip


def test_step_size_switching_element_2_is_1_30() -> None:
    """Spec: 16:35, 35 min charging: 25 min x 1.20/h = 0.50 and, the total rounded up to 45 min
    by the last element's 15 min step, 20 min x 2.40/h = 0.80; 1.30."""
    priced = price_session(TARIFF_14, metered(at(MONDAY, "16:35"), (35, 5_000, True)))
    assert priced.total_excl_vat == eur("1.30")
    (line,) = priced.lines
    assert line.quantity == D("0.75")


def test_step_size_switching_element_1_charging_not_rounded_parking_rounded() -> None:
    """Spec: 16:55, 10 min charging, 2 min parking: 0.10 + 0.20 charging (the spec's figures),
    then 0.083 for parking, 0.383 in all, rounding the 12 min *together* to 15. mod_cdrs says
    step_size applies once to TIME and PARKING_TIME combined and, with parking, only to the
    parking duration: 2 min -> 15 min = 0.25. evledger follows mod_cdrs (0.55)."""
    priced = price_session(
        TARIFF_14, metered(at(MONDAY, "16:55"), (10, 2_000, True), (2, 0, False))
    )
    periods = [(p.start, d.element, d.volume) for p in priced.periods for d in p.dimensions]
    five_minutes = D("0.083333")  # hours, shown to 6 decimals
    assert periods[:2] == [(at(MONDAY, "16:55"), 0, five_minutes),
                           (at(MONDAY, "17:00"), 1, five_minutes)]  # fmt: skip
    assert net(priced, Dimension.TIME) == "0.30"  # 0.10 + 0.20 as the spec
    assert net(priced, Dimension.PARKING_TIME) == "0.25"
    assert priced.total_excl_vat == eur("0.55")


def test_step_size_switching_to_free_of_charge_element() -> None:
    """Spec: 19:40, 12 min charging (0.48, the spec's figure), 20 min parking of which 8 before
    20:00 are priced; the spec rounds charging + priced parking (20 min) to 30 and bills 18 min
    parking (0.30), 0.78. With mod_cdrs's rule the 8 min of parking round to 15: 0.25, 0.73.
    As the spec says, free parking after 20:00 has no impact on step_size."""
    priced = price_session(
        TARIFF_14, metered(at(MONDAY, "19:40"), (12, 2_000, True), (20, 0, False))
    )
    assert net(priced, Dimension.TIME) == "0.48"
    parking = next(x for x in priced.lines if x.dimension is Dimension.PARKING_TIME)
    assert (parking.quantity, str(parking.net.to_decimal())) == (D("0.25"), "0.25")
    assert priced.total_excl_vat == eur("0.73")


# ---------------------------------------------------------------------- mod_cdrs step_size
def test_cdrs_charging_21_min_is_not_rounded_and_parking_7_min_is_billed_as_10() -> None:
    tariff = ocpi("C1", el(pc("TIME", "6.00", 300), pc("PARKING_TIME", "6.00", 300)))
    priced = price_session(tariff, metered(at(MONDAY, "10:00"), (21, 5_000, True), (7, 0, False)))
    time_ = next(x for x in priced.lines if x.dimension is Dimension.TIME)
    park = next(x for x in priced.lines if x.dimension is Dimension.PARKING_TIME)
    assert (time_.quantity, park.quantity) == (D("0.35"), D("0.166667"))  # 21 min, 10 min
    assert (net(priced, Dimension.TIME), net(priced, Dimension.PARKING_TIME)) == ("2.10", "1.00")


def test_cdrs_energy_step_uses_the_session_total_4_3_plus_1_1_kwh_is_5_5_kwh() -> None:
    """0.20 before 17:00 and 0.27 after, both step 500 Wh: 4.3 + 1.1 = 5.4 kWh -> 5.5 kWh total;
    1.2 kWh after 17:00 (not 1.5)."""
    tariff = ocpi("C2", el(pc("ENERGY", "0.20", 500), end_time="17:00"),
                  el(pc("ENERGY", "0.27", 500)))  # fmt: skip
    priced = price_session(
        tariff, metered(at(MONDAY, "16:00"), (60, 4_300, True), (30, 1_100, True))
    )
    (line,) = priced.lines
    assert line.quantity == D("5.5")
    assert priced.total_excl_vat == eur("1.18")  # 4.3 x 0.20 + 1.2 x 0.27 = 0.86 + 0.324


def test_cdrs_time_step_6_plus_22_min_bills_24_min_after_17_00() -> None:
    """5/h before 17:00 and 7/h after, step 10 min: 6 + 22 = 28 -> 30 min; 24 min after 17:00
    (not 30, which would make 36)."""
    tariff = ocpi("C3", el(pc("TIME", "5.00", 600), end_time="17:00"), el(pc("TIME", "7.00", 600)))
    priced = price_session(tariff, metered(at(MONDAY, "16:54"), (28, 5_000, True)))
    (line,) = priced.lines
    assert line.quantity == D("0.5")
    assert priced.total_excl_vat == eur("3.30")  # 6 min x 5/h + 24 min x 7/h = 0.50 + 2.80


def test_cdrs_time_and_parking_only_parking_rounded_21_plus_16_is_41_min() -> None:
    """1.00/h charging and 2.00/h parking, both step 10 min: 21 min charging stays 21, 16 min
    parking -> 20; 41 min in all."""
    tariff = ocpi("C4", el(pc("TIME", "1.00", 600), pc("PARKING_TIME", "2.00", 600)))
    priced = price_session(tariff, metered(at(MONDAY, "10:00"), (21, 5_000, True), (16, 0, False)))
    hours = {x.dimension: x.quantity for x in priced.lines}
    assert hours == {Dimension.TIME: D("0.35"), Dimension.PARKING_TIME: D("0.333333")}
    assert (net(priced, Dimension.TIME), net(priced, Dimension.PARKING_TIME)) == ("0.35", "0.67")


# ------------------------------------------------------------ TariffRestrictions examples
def test_max_power_example_20_30() -> None:
    tariff = ocpi(
        "1",
        el(pc("ENERGY", "0.20", 1, "20"), max_power=D(16)),
        el(pc("ENERGY", "0.35", 1, "20"), max_power=D(32)),
        el(pc("ENERGY", "0.50", 1, "20")),
        type="REGULAR",
    )
    priced = price_session(
        tariff,
        metered(at(MONDAY, "10:00"), (10, 1_000, True), (50, 40_000, True), (7.5, 500, True)),
    )  # 6 kW, 48 kW, 4 kW
    assert priced.total_excl_vat == eur("20.30")


def test_max_duration_example_0_30() -> None:
    tariff = ocpi(
        "2",
        el(pc("ENERGY", "0.00", 1, "20"), max_duration=1800),
        el(pc("ENERGY", "0.25", 1, "20"), max_duration=3600),
        el(pc("ENERGY", "0.40", 1, "20")),
        type="REGULAR",
    )
    priced = price_session(
        tariff, metered(at(MONDAY, "10:00"), (30, 5_000, True), (10, 1_200, True))
    )
    assert priced.total_excl_vat == eur("0.30")


# ---------------------------------------------------------------- reservation examples 15-18
SESSION_20_KWH = metered(at(MONDAY, "10:00"), (60, 20_000, True))
RESERVATION_15 = ocpi(
    "20",
    el(pc("TIME", "5.00", 60, "20"), reservation="RESERVATION"),
    el(pc("FLAT", "0.50", 1, "20"), pc("ENERGY", "0.25", 1, "10")),
)
RESERVATION_16 = ocpi(
    "20",
    el(pc("FLAT", "2.00", 1, "20"), pc("TIME", "5.00", 300, "20"), reservation="RESERVATION"),
    el(pc("FLAT", "0.50", 1, "20"), pc("ENERGY", "0.25", 1, "10")),
)
RESERVATION_17 = ocpi(
    "20",
    el(pc("FLAT", "4.00", 1, "20"), reservation="RESERVATION_EXPIRES"),
    el(pc("TIME", "2.00", 600, "20"), reservation="RESERVATION"),
    el(pc("FLAT", "0.50", 1, "20"), pc("ENERGY", "0.25", 1, "10")),
)
RESERVATION_18 = ocpi(
    "20",
    el(pc("TIME", "6.00", 600, "20"), reservation="RESERVATION_EXPIRES"),
    el(pc("TIME", "3.00", 600, "20"), reservation="RESERVATION"),
    el(pc("FLAT", "0.50", 1, "20"), pc("ENERGY", "0.25", 1, "10")),
)


def reserved(minutes: int, expired: bool = False) -> Reservation:
    start = at(MONDAY, "10:00") - timedelta(minutes=minutes)
    return Reservation("R-1", start, at(MONDAY, "10:00"), expired)


def bill_total(*parts: PricedSession) -> tuple[str, str]:
    excl = sum((p.total_excl_vat.to_decimal() for p in parts), D(0))
    incl = sum((p.total_incl_vat.to_decimal() for p in parts), D(0))
    return (str(excl), str(incl))


@pytest.mark.parametrize(
    ("tariff", "minutes", "reservation_excl", "total"),
    [
        (RESERVATION_15, 15, "1.25", ("6.75", "7.60")),  # 15 min x 5.00/h
        (RESERVATION_16, 13, "3.25", ("8.75", "10.00")),  # fee 2.00 + 15 min (step 5 min)
        (RESERVATION_17, 22, "1.00", ("6.50", "7.30")),  # 30 min (step 10 min) x 2.00/h
        (RESERVATION_18, 22, "1.50", ("7.00", "7.90")),  # 30 min x 3.00/h
    ],
)
def test_reservation_followed_by_a_20_kwh_session(
    tariff: Tariff, minutes: int, reservation_excl: str, total: tuple[str, str]
) -> None:
    reservation = price_reservation(tariff, reserved(minutes), ZONE)
    session = price_session(tariff, SESSION_20_KWH)
    assert str(reservation.total_excl_vat.to_decimal()) == reservation_excl
    assert {x.dimension for x in reservation.lines} == {Dimension.RESERVATION}
    assert session.total_excl_vat == eur("5.50")  # reservation elements never price the session
    assert bill_total(reservation, session) == total
    check_vat_per_rate(reservation)


@pytest.mark.parametrize(
    ("tariff", "minutes", "total"),
    [
        (RESERVATION_17, 60, ("6.00", "7.20")),  # expiry fee 4.00 + 1 h x 2.00/h
        (RESERVATION_18, 90, ("9.00", "10.80")),  # 1.5 h x 6.00/h (RESERVATION_EXPIRES TIME)
    ],
)
def test_expired_reservation(tariff: Tariff, minutes: int, total: tuple[str, str]) -> None:
    assert totals(price_reservation(tariff, reserved(minutes, expired=True), ZONE)) == total


def test_a_reservation_under_a_tariff_without_reservation_elements_is_free() -> None:
    assert totals(price_reservation(TARIFF_8, reserved(30), ZONE)) == ("0.00", "0.00")


# ====================================================== one case per TariffRestriction field
def one(restricted: dict[str, Any], fallback: str = "0.10") -> Tariff:
    """ENERGY 1.00/kWh while the restriction holds, else ``fallback``."""
    return ocpi("R", el(pc("ENERGY", "1.00"), **restricted), el(pc("ENERGY", fallback)))


def test_day_of_week_uses_the_local_day() -> None:
    tariff = one({"day_of_week": ["SATURDAY"]})
    # Friday 23:30 to Saturday 00:30 local: 1 kWh each side of midnight.
    priced = price_session(tariff, metered(at("2026-06-05", "23:30"), (60, 2_000, True)))
    assert priced.total_excl_vat == eur("1.10")


def test_start_date_inclusive_end_date_exclusive() -> None:
    tariff = one({"start_date": "2026-06-02", "end_date": "2026-06-03"})
    before = price_session(tariff, metered(at("2026-06-01", "12:00"), (60, 1_000, True)))
    during = price_session(tariff, metered(at("2026-06-02", "12:00"), (60, 1_000, True)))
    after = price_session(tariff, metered(at("2026-06-03", "12:00"), (60, 1_000, True)))
    assert [p.total_excl_vat for p in (before, during, after)] == [eur("0.10"), eur("1.00"),
                                                                   eur("0.10")]  # fmt: skip


def test_start_time_and_end_time_local_wall_clock() -> None:
    tariff = one({"start_time": "18:00", "end_time": "19:00"})
    priced = price_session(tariff, metered(at(MONDAY, "17:30"), (120, 4_000, True)))
    assert priced.total_excl_vat == eur("2.20")  # 2 kWh 18:00-19:00 at 1.00, 2 kWh at 0.10


def test_min_kwh_inclusive_and_max_kwh_exclusive() -> None:
    tariff = one({"min_kwh": D(2), "max_kwh": D(3)})
    priced = price_session(tariff, metered(at(MONDAY, "10:00"), (40, 4_000, True)))
    assert priced.total_excl_vat == eur("1.30")  # kWh 2-3 at 1.00, 3 kWh at 0.10


@pytest.mark.parametrize(
    ("restriction", "current", "expected"),
    [({"min_current": D(16)}, D(16), "1.00"), ({"min_current": D(16)}, D("15.9"), "0.10"),
     ({"max_current": D(16)}, D("15.9"), "1.00"), ({"max_current": D(16)}, D(16), "0.10"),
     ({"min_current": D(16)}, None, "0.10")],
)  # fmt: skip
def test_min_and_max_current(
    restriction: dict[str, Any], current: Decimal | None, expected: str
) -> None:
    priced = price_session(
        one(restriction), metered(at(MONDAY, "10:00"), (60, 1_000, True), current_a=current)
    )
    assert priced.total_excl_vat == eur(expected)


@pytest.mark.parametrize(
    ("restriction", "power", "expected"),
    [({"min_power": D(11)}, D(11), "1.00"), ({"min_power": D(11)}, D("10.9"), "0.10"),
     ({"max_power": D(11)}, D("10.9"), "1.00"), ({"max_power": D(11)}, D(11), "0.10"),
     ({"max_power": D(11)}, None, "1.00")],  # unmeasured: average 1 kWh / 1 h = 1 kW
)  # fmt: skip
def test_min_and_max_power(
    restriction: dict[str, Any], power: Decimal | None, expected: str
) -> None:
    priced = price_session(
        one(restriction), metered(at(MONDAY, "10:00"), (60, 1_000, True), power_kw=power)
    )
    assert priced.total_excl_vat == eur(expected)


def test_min_duration_inclusive_and_max_duration_exclusive() -> None:
    tariff = one({"min_duration": 1800, "max_duration": 3600})
    priced = price_session(tariff, metered(at(MONDAY, "10:00"), (90, 3_000, True)))
    assert priced.total_excl_vat == eur("1.20")  # minutes 30-60: 1 kWh at 1.00, 2 kWh at 0.10


def test_reservation_restriction_prices_the_reservation_not_the_session() -> None:
    tariff = ocpi(
        "R",
        el(pc("TIME", "9.00"), reservation="RESERVATION"),
        el(pc("FLAT", "1.00"), reservation="RESERVATION_EXPIRES"),
        el(pc("TIME", "1.00")),
    )
    assert price_session(tariff, metered(at(MONDAY, "10:00"), (60, 0, True))).total_excl_vat == eur(
        "1.00"
    )
    used = price_reservation(tariff, reserved(20), ZONE)
    expired = price_reservation(tariff, reserved(20, expired=True), ZONE)
    assert (used.total_excl_vat, expired.total_excl_vat) == (eur("3.00"), eur("4.00"))


def test_reservation_elements_keep_their_other_restrictions() -> None:
    tariff = ocpi(
        "R",
        el(pc("TIME", "6.00"), reservation="RESERVATION", start_time="09:50"),
        el(pc("TIME", "1.00")),
    )
    # reserved 09:40-10:00: only 09:50-10:00 is priced by the reservation element
    assert price_reservation(tariff, reserved(20), ZONE).total_excl_vat == eur("1.00")


def test_max_price_caps_excl_and_incl() -> None:
    tariff = ocpi("M", el(pc("ENERGY", "0.50", 1, "21")), max_price={"excl_vat": D("5.00")})
    priced = price_session(tariff, metered(at(MONDAY, "10:00"), (60, 20_000, True)))
    assert (priced.total_excl_vat, priced.total_incl_vat) == (eur("5.00"), eur("6.05"))


# ============================================================== TariffType (11.4.7) selection
REGULAR = ocpi("REG", el(pc("ENERGY", "0.30")), type="REGULAR")
AD_HOC = ocpi("ADHOC", el(pc("ENERGY", "0.45")), type="AD_HOC_PAYMENT")
CHEAP = ocpi("CHEAP", el(pc("ENERGY", "0.20")), type="PROFILE_CHEAP")
UNTYPED = ocpi("ANY", el(pc("ENERGY", "0.35")))
NOW = at(MONDAY, "10:00")


def test_ad_hoc_payment_selects_the_ad_hoc_tariff_and_rfid_the_regular_one() -> None:
    tariffs = [REGULAR, AD_HOC, CHEAP]
    assert select_tariff(tariffs, NOW, ad_hoc=True) is AD_HOC
    assert select_tariff(tariffs, NOW) is REGULAR
    assert select_tariff(tariffs, NOW, profile=TariffType.PROFILE_CHEAP) is CHEAP
    assert select_tariff(tariffs, NOW, profile=TariffType.REGULAR) is REGULAR


def test_a_tariff_without_type_is_valid_for_all_sessions_after_a_typed_match() -> None:
    assert select_tariff([UNTYPED, AD_HOC], NOW, ad_hoc=True) is AD_HOC
    assert select_tariff([UNTYPED, AD_HOC], NOW) is UNTYPED
    assert select_tariff([REGULAR, UNTYPED], NOW, profile=TariffType.PROFILE_FAST) is UNTYPED


def test_a_profile_without_its_tariff_falls_back_to_regular_ad_hoc_never_does() -> None:
    assert select_tariff([REGULAR], NOW, profile=TariffType.PROFILE_GREEN) is REGULAR
    with pytest.raises(UnknownTariff):
        select_tariff([REGULAR, CHEAP], NOW, ad_hoc=True)


def test_only_tariffs_active_at_the_session_start_are_chosen() -> None:
    old = ocpi(
        "OLD", el(pc("ENERGY", "0.30")), type="REGULAR", end_date_time="2026-06-01T00:00:00Z"
    )
    new = ocpi(
        "NEW", el(pc("ENERGY", "0.32")), type="REGULAR", start_date_time="2026-06-01T00:00:00Z"
    )
    assert select_tariff([old, new], NOW) is new
    assert select_tariff([old, new], datetime(2026, 5, 31, 12, tzinfo=UTC)) is old
