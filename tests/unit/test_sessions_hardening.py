"""Sessions processor hardening, the pure parts: holds by the ledger's rules, readings outside the
session, a stop before the start, partial phases, and an action for every held reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from ledger.envelope import Envelope, Source
from ledger.events import (
    AuthorizationIncremented,
    MeterValueRecorded,
    PaymentAuthorized,
    SampledValue,
)
from ledger.money import Money
from ledger.payments import errors as err
from ledger.pricing.tariffs import parse_tariff_json
from ledger.sessions.holds import apply_hold, hold_for, hold_rejection_detail
from ledger.sessions.metering import (
    BLOCKING_FLAGS,
    MeterFlagCode,
    SessionMeter,
    StopBeforeStart,
    energy_phases,
    energy_register_wh,
    phases_complete,
)
from ledger.sessions.rules import (
    RELEASE_ACTIONS,
    InvalidHold,
    SessionsConfig,
    connector_key,
    release_action,
)
from ledger.sessions.session import HoldStatus, PaymentHold, Session

T0 = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)
TARIFF = parse_tariff_json(
    '{"id": "T", "currency": "EUR", "country_code": "NL", "party_id": "EVL", "elements":'
    ' [{"price_components": [{"type": "ENERGY", "price": "0.40", "vat": 20, "step_size": 1}]}],'
    ' "last_updated": "2026-01-01T00:00:00Z"}'
)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def env(minutes: float = 0, network: str = "net") -> Envelope:
    return Envelope.new(network, Source.terminal, occurred_at=at(minutes))


def authorized(amount: int, currency: str = "EUR", minutes: float = 0) -> PaymentAuthorized:
    return PaymentAuthorized(
        env(minutes), "P-1", "sandbox", "ref", Money(amount, currency), "card", "S-1"
    )


def incremented(
    amount: int, currency: str = "EUR", minutes: float = 5, network: str = "net"
) -> AuthorizationIncremented:
    return AuthorizationIncremented(env(minutes, network), "P-1", Money(amount, currency))


# ------------------------------------------------------------------------- holds (defect 1)
@pytest.mark.parametrize("amount", [-100, 0])
def test_a_hold_the_ledger_refuses_is_refused_here_too(amount: int) -> None:
    event = authorized(amount)
    with pytest.raises(err.InvalidAmount) as caught:
        apply_hold(None, event)
    detail = hold_rejection_detail(event, caught.value)
    assert detail.startswith(f"PaymentAuthorized.amount={amount} EUR: [INVALID_AMOUNT]")
    assert "payment_id=P-1" in detail and event.envelope.event_id in detail


def test_a_second_authorization_does_not_replace_or_raise_the_hold() -> None:
    hold = apply_hold(None, authorized(1000))
    with pytest.raises(err.DuplicateAuthorization):
        apply_hold(hold, authorized(5000))
    assert hold.held_minor == 1000


def test_an_increment_raises_only_an_accepted_hold_in_its_currency() -> None:
    with pytest.raises(err.UnknownPayment):
        apply_hold(None, incremented(500))
    refused = PaymentHold("P-1", "EUR", 0, HoldStatus.REJECTED, "INVALID_AMOUNT", "amount=-100 EUR")
    with pytest.raises(err.UnknownPayment):
        apply_hold(refused, incremented(500))
    hold = apply_hold(None, authorized(1000))
    with pytest.raises(err.PaymentCurrencyMismatch):
        apply_hold(hold, incremented(500, "GBP"))
    with pytest.raises(err.InvalidAmount):
        apply_hold(hold, incremented(-500))
    with pytest.raises(err.NetworkMismatch):
        apply_hold(hold, incremented(500, network="other"))
    with pytest.raises(err.BeforeAuthorization):
        apply_hold(hold, incremented(500, minutes=-5))
    assert apply_hold(hold, incremented(500)).held_minor == 1500


def test_an_authorization_after_a_refused_one_is_the_hold() -> None:
    refused = PaymentHold("P-1", "EUR", 0, HoldStatus.REJECTED, "INVALID_AMOUNT", "amount=-100 EUR")
    hold = apply_hold(refused, authorized(2000))
    assert (hold.status, hold.held_minor) == ("authorized", 2000)


def session(payment_id: str | None = "P-1") -> Session:
    return Session(
        "S-1", "net", "e-start", None, "CS-1", "CS-1*1", "1", "tx-1", "NL",
        "Europe/Amsterdam", "T", 1, payment_id, 0, T0,
    )  # fmt: skip


def test_a_session_is_never_billed_against_a_refused_or_non_positive_hold() -> None:
    config = SessionsConfig()
    refused = PaymentHold("P-1", "EUR", 0, HoldStatus.REJECTED, "INVALID_AMOUNT", "amount=-100 EUR")
    with pytest.raises(InvalidHold) as caught:
        hold_for(session(), TARIFF, {"P-1": refused}, config)
    assert caught.value.code == "INVALID_HOLD" and "INVALID_AMOUNT" in str(caught.value)
    for amount in (-100, 0):  # rows summed before migration 021
        with pytest.raises(InvalidHold):
            hold_for(session(), TARIFF, {"P-1": PaymentHold("P-1", "EUR", amount)}, config)
    assert hold_for(session(), TARIFF, {"P-1": PaymentHold("P-1", "EUR", 700)}, config) == (
        Money(700, "EUR"),
        "authorized",
    )


# ------------------------------------------------------------------------- time (defect 2)
def reading(seq: int, minutes: float, *samples: SampledValue) -> MeterValueRecorded:
    return MeterValueRecorded(env(minutes), "S-1", "CS-1", "TX-1", seq, at(minutes), list(samples))


def test_a_reading_an_hour_before_the_start_is_not_billed_but_holds_the_session() -> None:
    meter = SessionMeter("S-1", at(0))
    meter.record(reading(1, -60, SampledValue("1000")))  # the register an hour before start
    meter.record(reading(2, 30, SampledValue("6000")))
    metered = meter.metered_session(at(30), "UTC", meter_stop_wh=6000)
    assert [f.code for f in metered.blocking_flags] == [MeterFlagCode.METER_READING_OUTSIDE_SESSION]
    assert metered.blocking_flags[0].seq_no == 1
    assert metered.energy_wh == 0  # the baseline is the first reading inside the session
    assert metered.intervals[0].start == at(0)


def test_a_reading_after_the_stop_is_not_clamped_into_the_bill() -> None:
    meter = SessionMeter("S-1", at(0), meter_start_wh=0)
    meter.record(reading(1, 20, SampledValue("2000")))
    meter.record(reading(2, 40, SampledValue("9000")))  # after the stop at 30
    metered = meter.metered_session(at(30), "UTC")
    assert [(f.code, f.seq_no) for f in metered.blocking_flags] == [
        (MeterFlagCode.METER_READING_OUTSIDE_SESSION, 2)
    ]
    assert metered.energy_wh == 2000


def test_a_stop_before_the_start_has_its_own_code_naming_both_times() -> None:
    meter = SessionMeter("S-7", at(0))
    with pytest.raises(StopBeforeStart) as caught:
        meter.metered_session(at(-1), "UTC")
    text = str(caught.value)
    assert caught.value.code == "STOP_BEFORE_START"
    assert at(0).isoformat() in text and at(-1).isoformat() in text and "S-7" in text


# ------------------------------------------------------------------------- phases (defect 3)
def phase(value: str, name: str) -> SampledValue:
    return SampledValue(value, phase=name)


def test_energy_phases_are_what_was_summed() -> None:
    assert energy_phases([phase("100", "L1")]) == ("L1",)
    assert energy_phases([phase("1", "L2"), phase("2", "L1"), phase("0", "N")]) == ("L1", "L2")
    assert energy_phases([SampledValue("300"), phase("100", "L1")]) == ()  # a total was sent
    assert energy_phases([SampledValue("16", "Current.Import", "A", phase="L1")]) == ()


def test_phases_are_complete_for_three_lines_a_total_or_a_single_phase_connector() -> None:
    assert phases_complete((), single_phase=False)
    assert phases_complete(("L1", "L2", "L3"), single_phase=False)
    assert phases_complete(("L1-N", "L2-N", "L3-N"), single_phase=False)
    assert phases_complete(("L1-L2", "L2-L3", "L3-L1"), single_phase=False)
    assert not phases_complete(("L1",), single_phase=False)
    assert not phases_complete(("L1", "L2"), single_phase=False)
    assert phases_complete(("L1",), single_phase=True)


@pytest.mark.parametrize("phases", [("L1",), ("L1", "L2")])
def test_a_partial_set_of_phases_is_not_billed_as_the_total(phases: tuple[str, ...]) -> None:
    meter = SessionMeter("S-1", at(0), meter_start_wh=0)
    meter.record(reading(1, 30, *(phase("4000", p) for p in phases)))
    metered = meter.metered_session(at(30), "UTC")
    assert [(f.code, f.seq_no) for f in metered.blocking_flags] == [
        (MeterFlagCode.PARTIAL_PHASES, 1)
    ]
    assert metered.energy_wh == 0


def test_all_three_phases_or_a_single_phase_connector_is_billed() -> None:
    three = SessionMeter("S-1", at(0), meter_start_wh=0)
    three.record(reading(1, 30, phase("1000", "L1"), phase("1000", "L2"), phase("1000", "L3")))
    assert three.metered_session(at(30), "UTC").energy_wh == 3000
    single = SessionMeter("S-1", at(0), meter_start_wh=0, single_phase=True)
    single.record(reading(1, 30, phase("3000", "L1")))
    metered = single.metered_session(at(30), "UTC")
    assert metered.energy_wh == 3000 and not metered.flags
    assert energy_register_wh([phase("3000", "L1")]) == Decimal(3000)


def test_single_phase_connectors_are_declared_by_station_and_connector() -> None:
    config = SessionsConfig(single_phase_connectors=frozenset({connector_key("CS-1", "2")}))
    assert config.single_phase("CS-1", "2") and not config.single_phase("CS-1", "1")


# ------------------------------------------------------------------------- visibility (4)
def test_every_held_reason_has_a_releasing_action() -> None:
    for code in {str(c) for c in BLOCKING_FLAGS} | {"INVALID_HOLD", "UNKNOWN_TARIFF"}:
        assert code in RELEASE_ACTIONS, code
    assert "release" in release_action("PARTIAL_PHASES")
    assert "STOP_FOO" in release_action("STOP_FOO")  # an unknown code still says what to do
