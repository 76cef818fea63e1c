"""The input rules (ledger.validation): bounded printable strings, amount signs, plausible times.

Each defect the hostile-input review found has a test here; the generated checkers are held
against a plain reference implementation of the same rules by property tests."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import validation
from ledger.dimensions import Dimension
from ledger.envelope import Envelope, Source
from ledger.events import (
    EventRejected,
    MeterValueRecorded,
    PaymentAuthorized,
    PaymentCaptured,
    PayoutPaid,
    RevenueLine,
    SampledValue,
    SessionStarted,
    TariffPublished,
)
from ledger.money import Money
from ledger.validation import check

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
LATEST = NOW + timedelta(seconds=300)


def envelope(**changes: Any) -> Envelope:
    base = Envelope("0190a0b0-0000-7000-8000-000000000001", NOW, NOW, Source.psp, "net-1")
    return dataclasses.replace(base, **changes)


def authorized(**changes: Any) -> PaymentAuthorized:
    event = PaymentAuthorized(
        envelope(), "pay-1", "stripe", "pi_123", Money(5000, "EUR"), "card", "s-1", "ST-1"
    )
    return dataclasses.replace(event, **changes)


def captured(**changes: Any) -> PaymentCaptured:
    line = RevenueLine(Dimension.ENERGY, 4202, 798, "19", "12.5")
    event = PaymentCaptured(
        envelope(), "pay-1", "cap-1", Money(5000, "EUR"), [line], True, "stripe", "ch_1",
        Money(30, "EUR"), "ST-1", "DE",
    )  # fmt: skip
    return dataclasses.replace(event, **changes)


def refused(event: Any, latest: datetime = LATEST) -> validation.InvalidInput:
    with pytest.raises(validation.InvalidInput) as info:
        check(event, latest)
    return info.value


def test_good_events_pass() -> None:
    check(authorized(), LATEST)
    check(captured(), LATEST)
    check(PayoutPaid(envelope(), "stripe", "po_1", Money(-1500, "EUR"), Money(0, "EUR")), LATEST)


# -- strings ------------------------------------------------------------------------------------
def test_a_10000_character_payment_id_is_refused_naming_the_field() -> None:
    error = refused(authorized(payment_id="x" * 10_000))
    assert error.code == "FIELD_TOO_LONG"
    assert error.context["field"] == "payment_id"
    assert "10000 characters" in str(error) and "at most 255" in str(error)
    assert len(str(error)) < 600  # the value is shown truncated, not whole


def test_a_10000_character_station_id_is_refused() -> None:
    start = SessionStarted(envelope(), "s-1", "S" * 10_000, "E-1", "1", "tx-1", "T-1", "DE",
                           "Europe/Berlin")  # fmt: skip
    assert refused(start).context["field"] == "station_id"


@pytest.mark.parametrize("char", ["\u202e", "\u2066", "\u200f", "\u061c", "\x00", "\x1b", "\n"])
def test_control_and_bidi_characters_are_refused_in_ids(char: str) -> None:
    error = refused(authorized(station_id=f"ST{char}1"))
    assert error.code == "INVALID_CHARACTERS"
    assert f"U+{ord(char):04X} at position 2" in str(error)
    assert char not in str(error)  # shown escaped, so the reason itself is safe to display


def test_empty_and_blank_ids_are_refused() -> None:
    assert refused(authorized(provider_reference="")).code == "EMPTY_FIELD"
    assert refused(authorized(payment_method="ca rd")).code == "INVALID_CHARACTERS"


def test_ids_in_nested_records_name_their_path() -> None:
    samples = [SampledValue("12.5"), SampledValue("1", phase="L1\u202e")]
    reading = MeterValueRecorded(envelope(), "s-1", "ST-1", "tx-1", 1, NOW, samples)
    error = refused(reading)
    assert error.context["field"] == "samples[1].phase"


def test_free_text_allows_line_breaks_but_no_bidi_and_is_bounded() -> None:
    check(captured(), LATEST)
    voided = dataclasses.replace(
        TariffPublished(envelope(), "T-1", 1, "EUR", '{\n  "id": "T-1"\n}'),
    )
    check(voided, LATEST)
    assert refused(dataclasses.replace(voided, ocpi_tariff_json="x" * 1_000_001)).code == (
        "FIELD_TOO_LONG"
    )
    assert refused(dataclasses.replace(voided, ocpi_tariff_json="a\u202eb")).code == (
        "INVALID_CHARACTERS"
    )


def test_the_payment_token_is_masked_in_reasons() -> None:
    from ledger.events import AuthorizeRequested

    secret = "tok_visa_4242424242424242\u202e"
    request = AuthorizeRequested(envelope(), "pay-1", Money(100, "EUR"), "card", secret)
    error = refused(request)
    assert "4242424242" not in str(error)
    assert "26 characters" in str(error)


@pytest.mark.parametrize("rate", ["nineteen", "19%", "-1", "101", "NaN", ""])
def test_vat_rate_is_a_percentage(rate: str) -> None:
    """The rate names the revenue and VAT accounts: free text never gets that far."""
    line = RevenueLine(Dimension.ENERGY, 4202, 798, rate)
    error = refused(captured(lines=[line]))
    assert error.code == "INVALID_VAT_RATE"
    assert error.context["field"] == "lines[0].vat_rate"


@pytest.mark.parametrize("rate", ["19", "5.5", "0", "19.00", None])
def test_vat_rates_that_are_percentages_pass(rate: str | None) -> None:
    check(captured(lines=[RevenueLine(Dimension.ENERGY, 4202, 798, rate)]), LATEST)


def test_country_is_two_capitals() -> None:
    assert refused(captured(country="Germany")).code == "INVALID_COUNTRY"
    assert refused(captured(country="de")).code == "INVALID_COUNTRY"


# -- amounts ------------------------------------------------------------------------------------
def test_a_zero_authorization_is_refused() -> None:
    error = refused(authorized(amount=Money(0, "EUR")))
    assert error.code == "INVALID_AMOUNT" and "> 0" in str(error)


def test_a_negative_authorization_is_refused() -> None:
    assert refused(authorized(amount=Money(-100, "EUR"))).code == "INVALID_AMOUNT"


def test_a_negative_payout_is_allowed_and_negative_fees_are_not() -> None:
    payout = PayoutPaid(envelope(), "stripe", "po_1", Money(-1500, "EUR"), Money(0, "EUR"))
    check(payout, LATEST)
    assert refused(dataclasses.replace(payout, fees=Money(-1, "EUR"))).code == "INVALID_AMOUNT"


def test_extreme_amounts_are_out_of_range() -> None:
    assert refused(authorized(amount=Money(2**62, "EUR"))).code == "AMOUNT_OUT_OF_RANGE"
    payout = PayoutPaid(envelope(), "stripe", "po_1", Money(-(2**62), "EUR"), Money(0, "EUR"))
    assert refused(payout).code == "AMOUNT_OUT_OF_RANGE"


def test_negative_line_amounts_are_refused_with_their_index() -> None:
    lines = [RevenueLine(Dimension.ENERGY, 10, 2), RevenueLine(Dimension.TIME, 10, -2)]
    error = refused(captured(lines=lines))
    assert error.code == "NEGATIVE_QUANTITY" and error.context["field"] == "lines[1].vat_amount"


# -- time ---------------------------------------------------------------------------------------
def test_occurred_at_ten_years_ahead_is_a_future_timestamp() -> None:
    event = authorized(envelope=envelope(occurred_at=NOW + timedelta(days=3652)))
    error = refused(event)
    assert error.code == "FUTURE_TIMESTAMP" and error.context["field"] == "envelope.occurred_at"


def test_times_within_the_skew_pass_and_just_past_it_do_not() -> None:
    check(authorized(envelope=envelope(occurred_at=LATEST)), LATEST)
    late = authorized(envelope=envelope(occurred_at=LATEST + timedelta(microseconds=1)))
    assert refused(late).code == "FUTURE_TIMESTAMP"


def test_a_reset_device_clock_is_too_old_and_expiry_may_lie_ahead() -> None:
    reset = authorized(envelope=envelope(occurred_at=datetime(1970, 1, 1, tzinfo=UTC)))
    assert refused(reset).code == "TIMESTAMP_TOO_OLD"
    check(authorized(expires_at=NOW + timedelta(days=7)), LATEST)


def test_a_naive_timestamp_is_refused() -> None:
    naive = authorized(envelope=envelope(occurred_at=datetime(2026, 12, 3, 12, 0)))
    assert refused(naive).code == "NAIVE_TIMESTAMP"


def test_events_evledger_writes_around_foreign_bytes_are_not_checked() -> None:
    rejected = EventRejected(envelope(), "payments.events", 0, 1, "X", "\u202e" * 5000, "g")
    check(rejected, LATEST)


# -- the generated checker agrees with the rules written plainly ---------------------------------
def reference_identifier_ok(value: str) -> bool:
    return (
        0 < len(value) <= validation.ID_MAX
        and all(c.isprintable() and c != " " for c in value)
        and not set(value) & validation.BIDI_CONTROLS
    )


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_identifier_rule_matches_the_reference(value: str) -> None:
    event = authorized(provider_reference=value)
    if reference_identifier_ok(value):
        check(event, LATEST)
        assert validation.is_identifier(value)
    else:
        assert refused(event).code in {"FIELD_TOO_LONG", "EMPTY_FIELD", "INVALID_CHARACTERS"}
        assert not validation.is_identifier(value)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_amount_rules_match_the_table(amount: int) -> None:
    auth = authorized(amount=Money(amount, "EUR"))
    payout = PayoutPaid(envelope(), "stripe", "po_1", Money(amount, "EUR"), Money(0, "EUR"))
    in_range = abs(amount) <= validation.AMOUNT_MAX
    for event, ok in ((auth, amount > 0 and in_range), (payout, in_range)):
        if ok:
            check(event, LATEST)
        else:
            assert refused(event).code in {"INVALID_AMOUNT", "AMOUNT_OUT_OF_RANGE"}


def test_every_amount_rule_names_a_money_field_of_its_event() -> None:
    for (cls, name), rule in validation.AMOUNT_RULES.items():
        field_types = {f.name: f.type for f in dataclasses.fields(cls)}
        assert name in field_types and "Money" in str(field_types[name]), (cls, name)
        assert rule in {validation.POSITIVE, validation.NON_NEGATIVE, validation.ANY_SIGN}


# -- locations: where a station is and what its EVSEs deliver (the fraud rules' facts) -------
def location(lat: str = "52.520008", lon: str = "13.404954", power: int = 22_000,
             power_type: str = "AC_3_PHASE") -> Any:  # fmt: skip
    from ledger.events import LocationEvse, LocationPublished

    evse = LocationEvse("E-1", "ST-1", power, power_type)
    return LocationPublished(envelope(), "LOC-1", "Alexanderplatz", "DE", lat, lon,
                             "Europe/Berlin", [evse])  # fmt: skip


def test_a_plausible_location_passes() -> None:
    check(location(), LATEST)
    check(location(lat="-33.8688", lon="151.2093", power=350_000, power_type="DC"), LATEST)
    check(location(lat="90", lon="-180"), LATEST)  # the edges are places too


@pytest.mark.parametrize(
    ("changes", "code", "field"),
    [
        ({"lat": "91.0"}, "INVALID_COORDINATE", "latitude"),
        ({"lon": "-180.000001"}, "INVALID_COORDINATE", "longitude"),
        ({"lat": "52,520008"}, "INVALID_COORDINATE", "latitude"),  # a decimal comma
        ({"lat": "nan"}, "INVALID_COORDINATE", "latitude"),
        ({"lon": "1e2"}, "INVALID_COORDINATE", "longitude"),
        ({"lat": ""}, "INVALID_COORDINATE", "latitude"),
        ({"power": 0}, "INVALID_POWER", "evses[0].max_electric_power_w"),
        ({"power": -11_000}, "INVALID_POWER", "evses[0].max_electric_power_w"),
        ({"power": 40_000_000}, "INVALID_POWER", "evses[0].max_electric_power_w"),
        ({"power_type": "AC"}, "INVALID_CHOICE", "evses[0].power_type"),
    ],
)
def test_an_implausible_location_is_refused_naming_the_field(
    changes: dict[str, Any], code: str, field: str
) -> None:
    with pytest.raises(validation.InvalidInput) as refused:
        check(location(**changes), LATEST)
    assert refused.value.code == code
    assert refused.value.context["field"] == field
