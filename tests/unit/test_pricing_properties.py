"""Properties of pricing that hold for every tariff and session hypothesis can think of."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.dimensions import Dimension
from ledger.money import Money
from ledger.pricing.price import PricedSession, price_session
from ledger.pricing.tariffs import Tariff, parse_tariff
from ledger.sessions.metering import MeteredInterval, MeteredSession

ZONES = ["UTC", "Europe/Amsterdam", "America/New_York", "Australia/Sydney"]
VATS = st.sampled_from([None, Decimal(0), Decimal(9), Decimal("20"), Decimal("21")])
PRICES = st.decimals(min_value=0, max_value=3, places=4)
TIME_STEPS = st.sampled_from([1, 60, 300, 900, 1800])
ENERGY_STEPS = st.sampled_from([1, 25, 100, 500, 1000])


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@st.composite
def components(draw: st.DrawFn, vat: Decimal | None = None, fixed_vat: bool = False) -> list[Any]:
    kinds = draw(st.sets(st.sampled_from(["ENERGY", "TIME", "PARKING_TIME", "FLAT"]), min_size=1))
    result = []
    for kind in sorted(kinds):
        step = draw(ENERGY_STEPS if kind == "ENERGY" else TIME_STEPS)
        comp: dict[str, Any] = {"type": kind, "price": draw(PRICES), "step_size": step}
        rate = vat if fixed_vat else draw(VATS)
        if rate is not None:
            comp["vat"] = rate
        result.append(comp)
    return result


@st.composite
def restrictions(draw: st.DrawFn, energy_and_power: bool = True) -> dict[str, Any]:
    r: dict[str, Any] = {}
    if draw(st.booleans()):
        r["start_time"] = _hhmm(draw(st.integers(0, 95)) * 15)
    if draw(st.booleans()):
        r["end_time"] = _hhmm(draw(st.integers(0, 95)) * 15)
    if draw(st.booleans()):
        r["day_of_week"] = draw(st.lists(st.sampled_from(
            ["MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY"]),
            min_size=1, unique=True))  # fmt: skip
    if draw(st.booleans()):
        r["max_duration"] = draw(st.integers(1, 8)) * 1800
    if energy_and_power and draw(st.booleans()):
        r["min_kwh"] = draw(st.integers(1, 40))
    if energy_and_power and draw(st.booleans()):
        r["max_power"] = draw(st.integers(3, 50))
    return r


@st.composite
def tariffs(draw: st.DrawFn) -> Tariff:
    elements = []
    for _ in range(draw(st.integers(1, 4))):
        element: dict[str, Any] = {"price_components": draw(components())}
        r = draw(restrictions())
        if r:
            element["restrictions"] = r
        elements.append(element)
    data: dict[str, Any] = {"id": "P", "currency": "EUR", "elements": elements}
    low = draw(st.none() | st.decimals(min_value=0, max_value=5, places=2))
    if low is not None:
        data["min_price"] = {"excl_vat": low, "incl_vat": low * Decimal("1.1")}
    high = draw(st.none() | st.decimals(min_value=5, max_value=80, places=2))
    if high is not None:
        data["max_price"] = {"excl_vat": high}
    return parse_tariff(data)


@st.composite
def uniform_energy_tariffs(draw: st.DrawFn) -> Tariff:
    """Same ENERGY component in every element and one VAT rate: the tariffs for which more
    energy can never cost less (see docs/tariffs.md, "Monotonicity")."""
    vat = draw(VATS)
    energy: dict[str, Any] = {"type": "ENERGY", "price": draw(PRICES),
                              "step_size": draw(ENERGY_STEPS)}  # fmt: skip
    if vat is not None:
        energy["vat"] = vat
    elements = []
    for _ in range(draw(st.integers(1, 4))):
        others = [c for c in draw(components(vat, fixed_vat=True)) if c["type"] != "ENERGY"]
        element: dict[str, Any] = {"price_components": [energy, *others]}
        r = draw(restrictions(energy_and_power=False))
        if r:
            element["restrictions"] = r
        elements.append(element)
    data: dict[str, Any] = {"id": "U", "currency": "EUR", "elements": elements}
    if draw(st.booleans()):
        data["min_price"] = {"excl_vat": draw(st.decimals(min_value=0, max_value=5, places=2))}
    if draw(st.booleans()):
        data["max_price"] = {"excl_vat": draw(st.decimals(min_value=5, max_value=80, places=2))}
    return parse_tariff(data)


@st.composite
def sessions(draw: st.DrawFn) -> MeteredSession:
    start = draw(st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2026, 12, 31),
                              timezones=st.just(UTC)))  # fmt: skip
    intervals = []
    at = start
    for _ in range(draw(st.integers(0, 20))):
        end = at + timedelta(seconds=draw(st.integers(0, 7200)))
        wh = draw(st.integers(0, 60_000) | st.decimals(min_value=0, max_value=60_000, places=1))
        intervals.append(MeteredInterval(at, end, wh, draw(st.booleans())))
        at = end
    return MeteredSession("P-1", start, at, draw(st.sampled_from(ZONES)), tuple(intervals))


FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check_sums(p: PricedSession) -> None:
    assert p.total_excl_vat.amount_minor == sum(line.net.amount_minor for line in p.lines)
    assert p.total_vat.amount_minor == sum(line.vat.amount_minor for line in p.lines)
    assert p.total_incl_vat == p.total_excl_vat + p.total_vat
    assert sum(r.amount_excl_vat + r.vat_amount for r in p.revenue_lines()) == (
        p.total_incl_vat.amount_minor
    )


@FAST
@given(tariffs(), sessions())
def test_price_is_never_negative(tariff: Tariff, session: MeteredSession) -> None:
    priced = price_session(tariff, session)
    assert not priced.total_excl_vat.is_negative and not priced.total_incl_vat.is_negative
    for line in priced.lines:
        assert not line.net.is_negative and not line.vat.is_negative


@FAST
@given(tariffs(), sessions())
def test_totals_are_the_sum_of_the_lines(tariff: Tariff, session: MeteredSession) -> None:
    _check_sums(price_session(tariff, session))


@FAST
@given(tariffs(), sessions())
def test_min_and_max_price_bind(tariff: Tariff, session: MeteredSession) -> None:
    priced = price_session(tariff, session)
    if tariff.max_price is not None:
        assert priced.total_excl_vat <= Money.round_half_up(tariff.max_price.excl_vat, "EUR")
    if tariff.min_price is not None and priced.lines and not priced.max_price_applied:
        assert priced.total_excl_vat >= Money.round_half_up(tariff.min_price.excl_vat, "EUR")
        assert tariff.min_price.incl_vat is not None
        assert priced.total_incl_vat >= Money.round_half_up(tariff.min_price.incl_vat, "EUR")


@FAST
@given(uniform_energy_tariffs(), sessions(), st.data())
def test_more_energy_never_costs_less(
    tariff: Tariff, session: MeteredSession, data: st.DataObject
) -> None:
    if not session.intervals:
        return
    k = data.draw(st.integers(0, len(session.intervals) - 1))
    extra = data.draw(st.integers(1, 20_000))
    grown = list(session.intervals)
    iv = grown[k]
    grown[k] = MeteredInterval(iv.start, iv.end, iv.energy_wh + extra, iv.charging)
    before = price_session(tariff, session)
    after = price_session(
        tariff, MeteredSession("P-1", session.started_at, session.stopped_at,
                               session.time_zone, tuple(grown))
    )  # fmt: skip
    assert after.total_excl_vat >= before.total_excl_vat
    limited = before.min_price_applied or before.max_price_applied
    if not (limited or after.min_price_applied or after.max_price_applied):
        assert after.total_incl_vat >= before.total_incl_vat


@FAST
@given(st.data(), sessions())
def test_each_line_is_rounded_once_from_the_exact_amount(
    data: st.DataObject, session: MeteredSession
) -> None:
    """A one-element tariff against a direct computation: step up (ENERGY once; TIME and
    PARKING_TIME once combined, only parking when parking is billed), multiply, round each
    line once; VAT once per rate on the sum of that rate's nets (EN 16931 BR-CO-17)."""
    comps = data.draw(components())
    tariff = parse_tariff({"id": "R", "currency": "EUR",
                          "elements": [{"price_components": comps}]})  # fmt: skip
    priced = price_session(tariff, session)
    charging = sum(((i.end - i.start) for i in session.intervals if i.charging), timedelta())
    parking = session.stopped_at - session.started_at - charging
    quantity = {
        "ENERGY": (sum((Decimal(i.energy_wh) for i in session.intervals), Decimal(0)), 1000),
        "TIME": (Decimal(charging.total_seconds()), 3600),
        "PARKING_TIME": (Decimal(parking.total_seconds()), 3600),
    }
    parking_billed = parking and any(c["type"] == "PARKING_TIME" for c in comps)
    expected: dict[Dimension, int] = {}
    taxable: dict[Decimal | None, int] = {}
    for c in comps:
        if c["type"] == "FLAT":
            net_major = c["price"]
        else:
            q, unit = quantity[c["type"]]
            if not q:
                continue
            step = 1 if c["type"] == "TIME" and parking_billed else c["step_size"]
            steps = (q / step).to_integral_value(ROUND_CEILING)
            net_major = steps * step * c["price"] / unit
        net = int((net_major * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))
        expected[Dimension(c["type"])] = net
        taxable[c.get("vat")] = taxable.get(c.get("vat"), 0) + net
    vat_expected = {
        rate: 0 if rate is None else int((net * rate / 100).quantize(Decimal(1), ROUND_HALF_UP))
        for rate, net in taxable.items()
    }
    got = {line.dimension: line.net.amount_minor for line in priced.lines}
    assert got == expected
    vat_got: dict[Decimal | None, int] = {}
    for line in priced.lines:
        vat_got[line.vat_rate] = vat_got.get(line.vat_rate, 0) + line.vat.amount_minor
    assert vat_got == vat_expected
    assert {v.rate: v.vat.amount_minor for v in priced.vat_breakdown()} == vat_expected
    _check_sums(priced)


@FAST
@given(tariffs(), sessions())
def test_pricing_is_deterministic(tariff: Tariff, session: MeteredSession) -> None:
    assert price_session(tariff, session) == price_session(tariff, session)


@FAST
@given(tariffs(), sessions())
def test_billing_runs_of_intervals_equals_billing_each_interval(
    tariff: Tariff, session: MeteredSession
) -> None:
    """An element that can never match (1,000 MWh) disables the run fast path, not the price."""
    unreachable = {"price_components": [{"type": "ENERGY", "price": 99, "step_size": 1}],
                   "restrictions": {"min_kwh": 1_000_000}}  # fmt: skip
    slow = parse_tariff(
        {
            "id": "P",
            "currency": "EUR",
            "elements": [*_as_json(tariff), unreachable],
            **_limits_json(tariff),
        }
    )
    fast_priced, slow_priced = price_session(tariff, session), price_session(slow, session)
    assert fast_priced.lines == slow_priced.lines
    assert fast_priced.total_incl_vat == slow_priced.total_incl_vat


def _as_json(tariff: Tariff) -> list[dict[str, Any]]:
    elements = []
    for element in tariff.elements:
        comps = []
        for c in element.price_components:
            comp: dict[str, Any] = {"type": c.dimension.value, "price": c.price,
                                    "step_size": c.step_size}  # fmt: skip
            if c.vat is not None:
                comp["vat"] = c.vat
            comps.append(comp)
        out: dict[str, Any] = {"price_components": comps}
        r = element.restrictions
        if r is not None:
            out["restrictions"] = {
                k: v
                for k, v in {
                    "start_time": None if r.start_minute is None else _hhmm(r.start_minute),
                    "end_time": None if r.end_minute is None else _hhmm(r.end_minute),
                    "day_of_week": sorted(d.value for d in r.day_of_week) or None,
                    "max_duration": r.max_duration,
                    "min_kwh": r.min_kwh,
                    "max_power": r.max_power,
                }.items()
                if v is not None
            }
        elements.append(out)
    return elements


def _limits_json(tariff: Tariff) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, price in (("min_price", tariff.min_price), ("max_price", tariff.max_price)):
        if price is not None:
            out[key] = {"excl_vat": price.excl_vat}
            if price.incl_vat is not None:
                out[key]["incl_vat"] = price.incl_vat
    return out
