"""The session rules as properties, with no Kafka and no database: a session's meter readings
price the same whatever order they arrive in and however often they are redelivered, and what a
session is billed never exceeds what its meter says was delivered."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from entrypoints.simulate import demo_tariff
from ledger.envelope import Envelope
from ledger.events import ChargingState, MeterValueRecorded, SampledValue
from ledger.pricing import price_session
from ledger.pricing.tariffs import parse_tariff
from ledger.sessions.metering import SessionMeter
from tests.strategies import plausible_meter

T0 = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)
TARIFF = parse_tariff(demo_tariff())


def reading(seq: int, minutes: int, register_wh: int) -> MeterValueRecorded:
    at = T0 + timedelta(minutes=minutes)
    return MeterValueRecorded(Envelope.new("net", occurred_at=at), "S-1", "CS-1", "TX-1", seq, at,
                              [SampledValue(str(register_wh))])  # fmt: skip


@st.composite
def sessions(draw: st.DrawFn) -> tuple[list[MeterValueRecorded], int, int]:
    """Readings of one plausible session, its length in minutes and the register at the stop."""
    readings, stop, register = draw(plausible_meter())
    return [reading(*r) for r in readings], stop, register


def price(events: list[MeterValueRecorded], stop: int, meter_stop: int) -> tuple[object, ...]:
    meter = SessionMeter("S-1", T0, meter_start_wh=0)
    meter.record_state(ChargingState.Charging, T0)
    for event in events:
        meter.record(event)
    metered = meter.metered_session(T0 + timedelta(minutes=stop), "Europe/Berlin", meter_stop)
    priced = price_session(TARIFF, metered)
    return metered.energy_wh, metered.flags, priced.total_excl_vat, priced.total_incl_vat


@settings(max_examples=150, deadline=None)
@given(sessions(), st.randoms(use_true_random=False), st.data())
def test_readings_in_any_order_and_redelivered_price_the_same(
    session: tuple[list[MeterValueRecorded], int, int], rng: random.Random, data: st.DataObject
) -> None:
    events, stop, meter_stop = session
    # Redeliveries: the same reading under a new event id.
    again = data.draw(st.lists(st.sampled_from(events), max_size=10))
    arrived = events + [dataclasses.replace(e, envelope=Envelope.new("net")) for e in again]
    rng.shuffle(arrived)
    assert price(arrived, stop, meter_stop) == price(events, stop, meter_stop)


@settings(max_examples=150, deadline=None)
@given(sessions())
def test_what_is_priced_is_what_the_meter_delivered(
    session: tuple[list[MeterValueRecorded], int, int],
) -> None:
    events, stop, meter_stop = session
    energy, flags, excl, incl = price(events, stop, meter_stop)
    assert energy == meter_stop and flags == ()
    assert 0 <= excl.amount_minor <= incl.amount_minor  # type: ignore[attr-defined]
