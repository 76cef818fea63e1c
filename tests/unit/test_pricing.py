"""Pricing sessions under OCPI 2.2.1 tariffs; pre-authorization sizing; corrections.

Amounts from the OCPI 2.2.1 specification's worked examples (module Tariffs) are quoted so a
reader can check them against the spec text.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from ledger.dimensions import Dimension
from ledger.errors import ValidationError
from ledger.money import Money
from ledger.pricing._plan import UnknownTimeZone
from ledger.pricing.preauth import preauthorization_amount
from ledger.pricing.price import InvalidMeteredSession, PricedSession, price_session
from ledger.pricing.tariffs import Tariff, parse_tariff
from ledger.sessions.corrections import SettlementKind, correct_cdr
from ledger.sessions.metering import MeteredInterval, MeteredSession

AMS = "Europe/Amsterdam"


def tariff(*elements: dict[str, Any], **extra: Any) -> Tariff:
    return parse_tariff({"id": "T", "currency": "EUR", "elements": list(elements), **extra})


def el(*components: dict[str, Any], **restrictions: Any) -> dict[str, Any]:
    element: dict[str, Any] = {"price_components": list(components)}
    if restrictions:
        element["restrictions"] = restrictions
    return element


def pc(type_: str, price: str, step: int = 1, vat: str | None = None) -> dict[str, Any]:
    comp: dict[str, Any] = {"type": type_, "price": Decimal(price), "step_size": step}
    if vat is not None:
        comp["vat"] = Decimal(vat)
    return comp


def session(
    start: datetime, *parts: tuple[timedelta, Decimal | int, bool], zone: str = AMS, **kw: Any
) -> MeteredSession:
    """Contiguous intervals from ``start``: (duration, energy Wh, charging)."""
    intervals = []
    at = start
    for duration, wh, charging in parts:
        intervals.append(MeteredInterval(at, at + duration, wh, charging, **kw))
        at += duration
    return MeteredSession("S-1", start, at, zone, tuple(intervals))


def eur(amount: str) -> Money:
    return Money.of(amount, "EUR")


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


# 2026-06-01 is a Monday; Amsterdam is UTC+2 in summer.
def local(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 6, 1, hour, minute, tzinfo=UTC) - timedelta(hours=2)


# ------------------------------------------------------------------------- time of day
def test_a_session_crossing_a_time_of_day_price_change_is_split_at_the_boundary() -> None:
    t = tariff(el(pc("ENERGY", "0.25"), end_time="17:00"), el(pc("ENERGY", "0.40")))
    # 16:30-17:30 local at constant power: 5 kWh before 17:00, 5 kWh after.
    priced = price_session(t, session(local(16, 30), (minutes(60), 10_000, True)))
    assert priced.total_excl_vat == eur("3.25")  # 5 x 0.25 + 5 x 0.40
    assert [p.start for p in priced.periods] == [local(16, 30), local(17)]
    assert [(d.element, d.volume) for p in priced.periods for d in p.dimensions] == [
        (0, Decimal(5)),
        (1, Decimal(5)),
    ]


def test_time_window_wrapping_past_midnight() -> None:
    t = tariff(el(pc("TIME", "1.00"), start_time="23:00", end_time="01:00"), el(pc("TIME", "0")))
    priced = price_session(t, session(local(22), (timedelta(hours=4), 0, True)))
    assert priced.total_excl_vat == eur("2.00")  # 23:00-01:00 only


def test_day_of_week_is_the_local_weekday() -> None:
    # Sunday 2026-05-31 23:30 local is Sunday 21:30 UTC; Monday 00:00-00:30 local.
    t = tariff(el(pc("TIME", "2.00"), day_of_week=["MONDAY"]), el(pc("TIME", "0")))
    priced = price_session(t, session(local(0) - minutes(30), (minutes(60), 0, True)))
    assert priced.total_excl_vat == eur("1.00")


# ------------------------------------------------------------------------- step_size
STEP_TARIFF = tariff(  # OCPI 2.2.1 example tariff_14 (step_size when switching elements)
    el(pc("TIME", "1.20", 1800), end_time="17:00"),
    el(pc("TIME", "2.40", 900), start_time="17:00"),
    el(pc("PARKING_TIME", "1.00", 900), end_time="20:00"),
)


def test_ocpi_step_size_example_2_last_element_bills_the_rounded_up_rest() -> None:
    priced = price_session(STEP_TARIFF, session(local(16, 35), (minutes(35), 5_000, True)))
    assert priced.total_excl_vat == eur("1.30")  # spec: 0.50 + 0.80
    (line,) = priced.lines
    assert (line.dimension, line.quantity) == (Dimension.TIME, Decimal("0.75"))  # 45 min


def test_ocpi_step_size_example_free_parking_after_the_last_parking_element() -> None:
    priced = price_session(
        STEP_TARIFF, session(local(19, 55), (minutes(10), 2_000, True), (minutes(2), 0, False))
    )
    assert priced.total_excl_vat == eur("0.60")  # spec: 0.20 + 0.40, parking after 20:00 free


def test_with_parking_only_the_parking_total_is_rounded_not_the_charging_time() -> None:
    # OCPI 2.2.1 mod_cdrs step_size: once for TIME and PARKING_TIME combined; when both are
    # billed, only the parking duration is rounded up. Charging 16:55-17:05: 5 min x 1.20/h
    # + 5 min x 2.40/h = 0.30 (not rounded); 2 min parking -> 15 min x 1.00/h = 0.25.
    priced = price_session(
        STEP_TARIFF, session(local(16, 55), (minutes(10), 2_000, True), (minutes(2), 0, False))
    )
    assert priced.net_of(Dimension.TIME) == eur("0.30")
    assert priced.net_of(Dimension.PARKING_TIME) == eur("0.25")
    time_line = next(x for x in priced.lines if x.dimension is Dimension.TIME)
    assert time_line.quantity == Decimal("0.166667")  # 10 min, not rounded to 15 or 30


def test_a_parking_waiver_does_not_change_what_charging_time_costs() -> None:
    session_ = session(local(16, 55), (minutes(10), 2_000, True), (minutes(2), 0, False))
    full = price_session(STEP_TARIFF, session_)
    waived = price_session(STEP_TARIFF, session_, waive={Dimension.PARKING_TIME})
    assert waived.net_of(Dimension.TIME) == full.net_of(Dimension.TIME) == eur("0.30")


@pytest.mark.parametrize(
    ("step", "expected"),
    [(1, "0.03"), (25, "0.03"), (500, "0.13")],  # spec: 0.029, 0.031, 0.125 before rounding
)
def test_step_size_on_energy(step: int, expected: str) -> None:
    t = tariff(el(pc("ENERGY", "0.25", step)))
    priced = price_session(t, session(local(10), (minutes(1), Decimal("115.2"), True)))
    assert priced.total_excl_vat == eur(expected)


def test_step_size_on_parking_rounds_the_session_total_up_once() -> None:
    t = tariff(el(pc("ENERGY", "0.30"), pc("PARKING_TIME", "6.00", 300)))
    priced = price_session(
        t,
        session(
            local(10),
            (minutes(30), 11_000, True),
            (minutes(4), 0, False),
            (minutes(1), 0, True),
            (minutes(4), 0, False),
        ),
    )
    assert priced.net_of(Dimension.PARKING_TIME) == eur("1.00")  # 8 min -> 10 min at 6.00/h
    assert priced.parking_s == Decimal(480)
    assert priced.net_of(Dimension.ENERGY) == eur("3.30")


# ------------------------------------------------------------------------- min / max price
def test_min_price_raises_a_cheap_session() -> None:
    t = tariff(el(pc("ENERGY", "0.25", vat="21")), min_price={"excl_vat": Decimal("1.00")})
    priced = price_session(t, session(local(10), (minutes(5), 2_000, True)))
    assert priced.min_price_applied
    (line,) = priced.lines
    assert (line.net, line.adjustment, line.vat) == (eur("1.00"), eur("0.50"), eur("0.21"))
    assert priced.total_incl_vat == eur("1.21")


def test_min_price_incl_vat_binds_too() -> None:
    t = tariff(
        el(pc("ENERGY", "0.25", vat="21")),
        min_price={"excl_vat": Decimal("1.00"), "incl_vat": Decimal("1.50")},
    )
    priced = price_session(t, session(local(10), (minutes(5), 2_000, True)))
    # smallest net with net + 21% VAT >= 1.50: 1.24 + 0.26 = 1.50
    assert (priced.total_excl_vat, priced.total_incl_vat) == (eur("1.24"), eur("1.50"))


def test_min_price_on_a_free_session_becomes_a_flat_line() -> None:
    t = tariff(el(pc("ENERGY", "0.25", vat="9")), min_price={"excl_vat": Decimal("2.00")})
    priced = price_session(t, session(local(10), (minutes(5), 0, True)))
    (line,) = priced.lines
    assert (line.dimension, line.net, line.vat, line.vat_rate) == (
        Dimension.FLAT,
        eur("2.00"),
        eur("0.18"),
        Decimal(9),
    )


def test_max_price_caps_and_is_spread_over_dimensions_by_net() -> None:
    t = tariff(
        el(pc("ENERGY", "0.50", vat="21"), pc("TIME", "3.00", vat="21")),
        max_price={"excl_vat": Decimal("20.00")},
    )
    # 2 h, 30 kWh: energy 15.00 + time 6.00 = 21.00 -> 20.00
    priced = price_session(t, session(local(10), (timedelta(hours=2), 30_000, True)))
    assert priced.max_price_applied
    assert priced.total_excl_vat == eur("20.00")
    energy, time = priced.lines
    assert (energy.adjustment, time.adjustment) == (eur("-0.71"), eur("-0.29"))
    assert priced.total_vat == energy.vat + time.vat == eur("4.20")


def test_max_price_incl_vat_binds_too() -> None:
    t = tariff(
        el(pc("ENERGY", "0.50", vat="21")),
        max_price={"excl_vat": Decimal("20.00"), "incl_vat": Decimal("22.00")},
    )
    priced = price_session(t, session(local(10), (timedelta(hours=2), 40_000, True)))
    assert priced.total_incl_vat <= eur("22.00")
    assert priced.total_excl_vat == eur("18.18")  # 18.18 + 3.82 = 22.00


# ------------------------------------------------------------------------- VAT
@pytest.mark.parametrize(
    ("vat", "rate", "vat_amount", "incl"),
    [
        ("21", Decimal(21), "0.53", "3.03"),  # 21% of 2.50 = 0.525 -> 0.53 (half-up)
        ("0", Decimal(0), "0.00", "2.50"),
        (None, None, "0.00", "2.50"),
    ],
)
def test_vat_present_zero_and_absent(
    vat: str | None, rate: Decimal | None, vat_amount: str, incl: str
) -> None:
    t = tariff(el(pc("ENERGY", "0.25", vat=vat)))
    priced = price_session(t, session(local(10), (minutes(60), 10_000, True)))
    (line,) = priced.lines
    assert line.vat_rate == rate and (line.vat_rate is None) == (vat is None)
    assert (line.net, line.vat, priced.total_incl_vat) == (eur("2.50"), eur(vat_amount), eur(incl))
    (revenue,) = priced.revenue_lines()
    assert revenue.vat_rate == (None if vat is None else vat)


def test_vat_is_computed_per_line_from_the_rounded_net() -> None:
    # 7.777 kWh x 0.3333 = 2.59207... -> 2.59 net; 21% of 2.59 = 0.5439 -> 0.54
    t = tariff(el(pc("ENERGY", "0.3333", vat="21")))
    priced = price_session(t, session(local(10), (minutes(60), 7_777, True)))
    assert (priced.total_excl_vat, priced.total_vat) == (eur("2.59"), eur("0.54"))


# ------------------------------------------------------------------------- DST
NIGHT = tariff(
    el(pc("ENERGY", "0.20"), start_time="00:00", end_time="07:00"), el(pc("ENERGY", "0.40"))
)


def test_dst_spring_forward_uses_the_local_wall_clock() -> None:
    # 2026-03-29: 02:00 CET -> 03:00 CEST at 01:00 UTC. 00:00-06:00 UTC is 01:00 CET-08:00 CEST;
    # the night rate ends at 07:00 CEST = 05:00 UTC: 5 h night, 1 h day at 10 kW.
    start = datetime(2026, 3, 29, 0, 0, tzinfo=UTC)
    priced = price_session(NIGHT, session(start, (timedelta(hours=6), 60_000, True)))
    assert priced.total_excl_vat == eur("14.00")  # 50 kWh x 0.20 + 10 kWh x 0.40
    assert [p.start.hour for p in priced.periods] == [0, 5]


def test_dst_gap_starts_an_element_at_the_jump() -> None:
    # start_time 02:30 does not exist on 2026-03-29; the wall clock jumps past it at 01:00 UTC.
    t = tariff(el(pc("TIME", "1.00"), start_time="02:30", end_time="05:00"), el(pc("TIME", "0")))
    start = datetime(2026, 3, 29, 0, 0, tzinfo=UTC)
    priced = price_session(t, session(start, (timedelta(hours=4), 0, True)))
    assert priced.total_excl_vat == eur("2.00")  # 03:00-05:00 CEST = 01:00-03:00 UTC


def test_dst_fall_back_bills_the_repeated_hour_twice() -> None:
    # 2026-10-25: 03:00 CEST -> 02:00 CET at 01:00 UTC, so 02:00-03:00 local happens twice.
    t = tariff(el(pc("TIME", "1.00"), start_time="02:00", end_time="03:00"), el(pc("TIME", "0")))
    start = datetime(2026, 10, 24, 23, 0, tzinfo=UTC)  # 01:00 CEST
    priced = price_session(t, session(start, (timedelta(hours=4), 0, True)))
    assert priced.total_excl_vat == eur("2.00")


# ------------------------------------------------------------------------- other restrictions
def test_ocpi_max_duration_example() -> None:
    # Spec: first 30 min free, 0.25/kWh after 30 min, 0.40/kWh after 60 min; 40 min session,
    # 5 kWh in the first 30 min and 1.2 kWh in the last 10: 0.30 euro.
    t = tariff(
        el(pc("ENERGY", "0.00"), max_duration=1800),
        el(pc("ENERGY", "0.25"), max_duration=3600),
        el(pc("ENERGY", "0.40")),
    )
    priced = price_session(
        t, session(local(10), (minutes(30), 5_000, True), (minutes(10), 1_200, True))
    )
    assert priced.total_excl_vat == eur("0.30")


def test_ocpi_max_power_example() -> None:
    # Spec: 0.20 below 16 kW, 0.35 for 16-32 kW, 0.50 otherwise: 1 kWh at 6 kW, 40 kWh at
    # 48 kW, 0.5 kWh at 4 kW -> 20.30 euro.
    t = tariff(
        el(pc("ENERGY", "0.20"), max_power=16),
        el(pc("ENERGY", "0.35"), max_power=32),
        el(pc("ENERGY", "0.50")),
    )
    priced = price_session(
        t,
        session(local(10), (minutes(10), 1_000, True), (minutes(50), 40_000, True),
                (minutes(7.5), 500, True)),
    )  # fmt: skip
    assert priced.total_excl_vat == eur("20.30")


def test_min_kwh_splits_an_interval_at_the_exact_energy() -> None:
    t = tariff(el(pc("ENERGY", "0.30"), max_kwh=20), el(pc("ENERGY", "0.10")))
    priced = price_session(
        t, session(local(10), (minutes(30), 15_000, True), (minutes(30), 15_000, True))
    )
    assert priced.total_excl_vat == eur("7.00")  # 20 kWh x 0.30 + 10 kWh x 0.10


def test_current_restriction_does_not_match_when_current_is_unknown() -> None:
    t = tariff(el(pc("ENERGY", "0.10"), min_current=16), el(pc("ENERGY", "0.50")))
    unknown = price_session(t, session(local(10), (minutes(60), 10_000, True)))
    measured = price_session(
        t, session(local(10), (minutes(60), 10_000, True), current_a=Decimal(32))
    )
    assert (unknown.total_excl_vat, measured.total_excl_vat) == (eur("5.00"), eur("1.00"))


def test_reservation_elements_never_price_a_session() -> None:
    t = tariff(el(pc("TIME", "9.00"), reservation="RESERVATION"), el(pc("TIME", "1.00")))
    priced = price_session(t, session(local(10), (minutes(60), 0, True)))
    assert priced.total_excl_vat == eur("1.00")


def test_flat_is_billed_once_by_the_element_active_at_start() -> None:
    t = tariff(el(pc("FLAT", "0.50"), end_time="17:00"), el(pc("FLAT", "1.00"), pc("ENERGY", "0")))
    priced = price_session(t, session(local(16, 30), (minutes(60), 1_000, True)))
    assert priced.net_of(Dimension.FLAT) == eur("0.50")
    empty = MeteredSession("S-0", local(18), local(18), AMS, ())
    assert price_session(t, empty).total_excl_vat == eur("1.00")


def test_waiving_a_dimension_drops_it() -> None:
    t = tariff(el(pc("ENERGY", "0.30"), pc("PARKING_TIME", "6.00")))
    s = session(local(10), (minutes(30), 10_000, True), (minutes(30), 0, False))
    assert price_session(t, s).total_excl_vat == eur("6.00")
    waived = price_session(t, s, waive={Dimension.PARKING_TIME})
    assert waived.total_excl_vat == eur("3.00") and waived.waived == {Dimension.PARKING_TIME}


def test_gapped_intervals_are_rejected() -> None:
    t = tariff(el(pc("ENERGY", "0.30")))
    broken = MeteredSession(
        "S-1", local(10), local(12), AMS, (MeteredInterval(local(10, 30), local(12), 1, True),)
    )
    with pytest.raises(InvalidMeteredSession) as err:
        price_session(t, broken)
    assert err.value.code == "INVALID_METERED_SESSION" and err.value.context["session_id"] == "S-1"


def test_unknown_time_zone_is_rejected() -> None:
    t = tariff(el(pc("ENERGY", "0.30"), start_time="10:00"))
    with pytest.raises(UnknownTimeZone):
        price_session(t, session(local(10), (minutes(5), 1, True), zone="Mars/Olympus"))


# ------------------------------------------------------------------------- pre-authorization
def test_preauth_uses_the_extension_amount_when_present() -> None:
    t = tariff(el(pc("ENERGY", "0.30")), evledger_preauthorize_amount=Decimal("25.005"))
    amount = preauthorization_amount(t, starts_at=local(10), time_zone=AMS)
    assert amount == eur("25.01")


def test_preauth_estimates_max_power_for_max_duration_and_caps() -> None:
    t = tariff(el(pc("ENERGY", "0.50", vat="21"), pc("FLAT", "1.00", vat="21")))
    estimate = preauthorization_amount(
        t, starts_at=local(10), time_zone=AMS, max_power_kw=Decimal(11),
        max_duration=timedelta(hours=2),
    )  # fmt: skip
    assert estimate == eur("14.52")  # (22 kWh x 0.50 + 1.00) x 1.21
    capped = preauthorization_amount(
        t, starts_at=local(10), time_zone=AMS, max_power_kw=Decimal(150), cap=eur("50")
    )
    assert capped == eur("50.00")
    with pytest.raises(ValidationError):
        preauthorization_amount(t, starts_at=local(10), time_zone=AMS, cap=Money(1, "USD"))


# ------------------------------------------------------------------------- corrections
IDLE = tariff(el(pc("ENERGY", "0.40", vat="21"), pc("PARKING_TIME", "12.00", vat="21")))
IDLE_SESSION = session(local(10), (minutes(60), 20_000, True), (minutes(30), 0, False))


def test_idle_fee_waiver_refunds_the_parking_part() -> None:
    original = price_session(IDLE, IDLE_SESSION)
    repriced = price_session(IDLE, IDLE_SESSION, waive={Dimension.PARKING_TIME})
    assert original.total_incl_vat == eur("16.94")  # (8.00 + 6.00) x 1.21
    correction = correct_cdr(original, repriced, original.total_incl_vat, "idle fee waived")
    assert correction.kind is SettlementKind.REFUND
    assert correction.credit.total_incl_vat == eur("16.94")
    assert correction.new_cdr.total_incl_vat == eur("9.68")
    assert correction.refund == eur("7.26")
    assert correction.captured - correction.refund == repriced.total_incl_vat
    (line,) = correction.refund_lines
    assert (line.dimension, line.amount_excl_vat, line.vat_amount) == (
        Dimension.PARKING_TIME,
        600,
        126,
    )


def test_partial_capture_refunds_only_what_exceeds_the_new_total() -> None:
    original = price_session(IDLE, IDLE_SESSION)
    repriced = price_session(IDLE, IDLE_SESSION, waive={Dimension.PARKING_TIME})
    correction = correct_cdr(original, repriced, eur("10.00"), "idle fee waived")
    assert (correction.kind, correction.refund, correction.refund_lines) == (
        SettlementKind.REFUND,
        eur("0.32"),
        (),
    )


def test_a_higher_new_total_is_an_additional_charge_never_a_negative_refund() -> None:
    cheap = price_session(IDLE, IDLE_SESSION, waive={Dimension.PARKING_TIME})
    full = price_session(IDLE, IDLE_SESSION)
    correction = correct_cdr(cheap, full, cheap.total_incl_vat, "meter fault corrected")
    assert correction.kind is SettlementKind.ADDITIONAL_CHARGE
    assert (correction.refund, correction.additional_charge) == (eur("0"), eur("7.26"))


def test_correction_checks_session_and_currency() -> None:
    original = price_session(IDLE, IDLE_SESSION)
    other: PricedSession = price_session(IDLE, MeteredSession("S-2", local(10), local(10), AMS, ()))
    with pytest.raises(ValidationError):
        correct_cdr(original, other, original.total_incl_vat, "x")
    with pytest.raises(ValidationError):
        correct_cdr(original, original, Money(1, "USD"), "x")


def test_the_standing_bill_is_the_last_issued_cdr_no_credit_cancels() -> None:
    from ledger.sessions.session import CdrKind, CdrRecord, standing_cdr

    def cdr(cdr_id: str, kind: CdrKind, credits: str | None = None) -> CdrRecord:
        return CdrRecord(cdr_id, "S-1", kind, f"e-{cdr_id}", "T", 1, (), "EUR", 100, 119, (),
                         credited_cdr_id=credits)  # fmt: skip

    first, credit = cdr("C1", CdrKind.ISSUED), cdr("C1-credit", CdrKind.CREDITED, "C1")
    second = cdr("C2", CdrKind.ISSUED)
    assert standing_cdr([]) is None
    assert standing_cdr([first]) == first
    assert standing_cdr([first, credit]) is None  # credited, not (yet) replaced
    assert standing_cdr([first, credit, second]) == second
