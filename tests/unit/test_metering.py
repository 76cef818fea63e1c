"""Meter value normalization and the session meter."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from ledger.envelope import Envelope
from ledger.events import ChargingState, MeterValueRecorded, SampledValue
from ledger.sessions.metering import (
    InvalidMeterValue,
    MeterFlagCode,
    MeterReading,
    MeterRegisterDecreased,
    RecordResult,
    SessionMeter,
    current_a,
    energy_register_wh,
    power_kw,
)

T0 = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)


def at(minute: float) -> datetime:
    return T0 + timedelta(minutes=minute)


def envelope() -> Envelope:
    return Envelope.new("net", occurred_at=T0)


def meter_event(seq: int, minute: float, *samples: SampledValue) -> MeterValueRecorded:
    return MeterValueRecorded(
        envelope=envelope(),
        session_id="S-1",
        station_id="CS-1",
        transaction_id="TX-1",
        seq_no=seq,
        sampled_at=at(minute),
        samples=list(samples),
    )


def wh(value: str) -> SampledValue:
    return SampledValue(value=value)


# ------------------------------------------------------------------------- normalization
def test_ocpp16_string_defaults_to_energy_register_in_wh() -> None:
    assert energy_register_wh([SampledValue(value="12345")]) == Decimal(12345)


def test_ocpp201_kwh_with_multiplier() -> None:
    sample = SampledValue(value="12.3456", unit="kWh", multiplier=1)  # 123.456 kWh
    assert energy_register_wh([sample]) == Decimal("123456.000")
    assert energy_register_wh([SampledValue(value="5", unit="Wh", multiplier=3)]) == 5000


def test_per_phase_values_are_summed_when_no_total_is_sent() -> None:
    samples = [
        SampledValue(value="100", phase="L1"),
        SampledValue(value="200", phase="L2"),
        SampledValue(value="300", phase="L3"),
        SampledValue(value="7", phase="N"),
    ]
    assert energy_register_wh(samples) == 600
    assert energy_register_wh([*samples, SampledValue(value="650")]) == 650  # the total wins


def test_non_energy_measurands_are_ignored_for_energy_but_feed_power_and_current() -> None:
    samples = [
        SampledValue(value="7400", measurand="Power.Active.Import", unit="W"),
        SampledValue(value="16", measurand="Current.Import", unit="A", phase="L1"),
        SampledValue(value="16", measurand="Current.Import", unit="A", phase="L2"),
        SampledValue(value="230", measurand="Voltage", unit="V"),
        SampledValue(value="2000", measurand="Energy.Active.Import.Register", unit="Wh"),
    ]
    assert energy_register_wh(samples) == 2000
    assert power_kw(samples) == Decimal("7.4")
    assert current_a(samples) == 32
    assert energy_register_wh(samples[:4]) is None


@pytest.mark.parametrize(
    "sample",
    [SampledValue(value="abc"), SampledValue(value="1", unit="kW"), SampledValue(value="NaN")],
)
def test_unreadable_values_are_rejected(sample: SampledValue) -> None:
    with pytest.raises(InvalidMeterValue) as err:
        energy_register_wh([sample])
    assert err.value.code == "INVALID_METER_VALUE"


# ------------------------------------------------------------------------- session meter
def meter(**kw: object) -> SessionMeter:
    return SessionMeter("S-1", T0, **kw)  # type: ignore[arg-type]


def test_duplicates_by_station_transaction_and_seq_no_are_skipped() -> None:
    m = meter(meter_start_wh=0)
    assert m.record(meter_event(1, 10, wh("1000"))) is RecordResult.APPLIED
    assert m.record(meter_event(1, 10, wh("1000"))) is RecordResult.DUPLICATE
    assert m.record(meter_event(1, 12, wh("9999"))) is RecordResult.DUPLICATE
    session = m.metered_session(at(20), "Europe/Amsterdam")
    assert session.energy_wh == 1000
    assert [f.code for f in session.flags] == [MeterFlagCode.METER_CONFLICTING_DUPLICATE]


def test_late_and_out_of_order_readings_give_the_same_session() -> None:
    events = [meter_event(i, 10 * i, wh(str(1000 * i))) for i in range(1, 7)]
    shuffled = events[:]
    random.Random(7).shuffle(shuffled)
    in_order, late = meter(meter_start_wh=0), meter(meter_start_wh=0)
    for e in events:
        in_order.record(e)
    for e in shuffled:
        late.record(e)
    a = in_order.metered_session(at(60), "UTC")
    b = late.metered_session(at(60), "UTC")
    assert a == b
    assert a.energy_wh == 6000 and not a.flags
    assert [i.energy_wh for i in a.intervals] == [1000] * 6


def test_register_decrease_is_flagged_and_never_billed() -> None:
    m = meter(meter_start_wh=5000)
    m.record(meter_event(1, 10, wh("6000")))
    m.record(meter_event(2, 20, wh("5500")))  # went down
    m.record(meter_event(3, 30, wh("7000")))
    session = m.metered_session(at(30), "UTC")
    assert session.energy_wh == 2000  # 5000 -> 6000 -> (5500 ignored) -> 7000
    (flag,) = session.flags
    assert (flag.code, flag.seq_no, flag.session_id) == (
        MeterFlagCode.METER_REGISTER_DECREASED,
        2,
        "S-1",
    )
    with pytest.raises(MeterRegisterDecreased) as err:
        m.require_clean(session)
    assert err.value.code == "METER_REGISTER_DECREASED"


def test_register_reset_is_flagged_and_counting_restarts() -> None:
    m = meter(meter_start_wh=80_000)
    m.record(meter_event(1, 10, wh("81000")))
    m.record(meter_event(2, 20, wh("200")))  # the meter restarted near zero
    m.record(meter_event(3, 30, wh("1200")))
    session = m.metered_session(at(30), "UTC")
    assert session.energy_wh == 2000  # 1000 before, (reset not billed), 1000 after
    assert [f.code for f in session.flags] == [MeterFlagCode.METER_REGISTER_RESET]


def test_implausible_energy_is_flagged() -> None:
    m = meter(meter_start_wh=0, max_power_kw=Decimal(400))
    m.record(meter_event(1, 1, wh("10000")))  # 10 kWh in one minute = 600 kW
    session = m.metered_session(at(5), "UTC")
    assert [f.code for f in session.blocking_flags] == [MeterFlagCode.METER_IMPLAUSIBLE_ENERGY]


def test_a_reading_after_the_stop_is_left_out_and_holds_the_session() -> None:
    m = meter(meter_start_wh=0)
    m.record(meter_event(1, 40, wh("1000")))
    session = m.metered_session(at(30), "UTC", meter_stop_wh=1000)
    assert session.intervals[-1].end == at(30)
    assert MeterFlagCode.METER_READING_OUTSIDE_SESSION in [f.code for f in session.blocking_flags]


def test_charging_states_split_charging_from_parking() -> None:
    m = meter(meter_start_wh=0)
    m.record_state(ChargingState.EVConnected, at(0))
    m.record_state(ChargingState.Charging, at(2))
    m.record(meter_event(1, 30, wh("10000")))
    m.record_state(ChargingState.SuspendedEV, at(45))
    m.record(meter_event(2, 60, wh("14000")))
    m.record_state(ChargingState.SuspendedEV, at(45))  # duplicate state event
    session = m.metered_session(at(90), "UTC", meter_stop_wh=14000)
    summary = [(i.start, i.end, i.energy_wh, i.charging) for i in session.intervals]
    assert summary == [
        (at(0), at(30), 10000, True),  # waiting before the first Charging counts as charging
        (at(30), at(45), 4000, True),  # energy of 30-60 goes to its charging part
        (at(45), at(60), 0, False),
        (at(60), at(90), 0, False),
    ]


def test_meter_start_missing_uses_the_first_reading_as_baseline() -> None:
    m = meter()
    m.record(meter_event(1, 0, wh("50000")))
    m.record(meter_event(2, 30, wh("53000")))
    assert m.metered_session(at(30), "UTC").energy_wh == 3000


def test_readings_carry_power_and_current_into_intervals() -> None:
    m = meter(meter_start_wh=0)
    m.record_reading(
        "CS-1", "TX-1", MeterReading(1, at(30), Decimal(5000), Decimal(10), Decimal(16))
    )
    (interval,) = m.metered_session(at(30), "UTC").intervals
    assert (interval.power_kw, interval.current_a) == (10, 16)
