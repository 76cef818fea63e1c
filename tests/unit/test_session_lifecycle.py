"""The session rules through ``ledger.sessions.lifecycle.apply``, with no Kafka and no database:
a small in-memory fold stands where the processor loads and stores, so what is tested here is
what the processor runs. Properties: readings in any order and redelivered bill the same (same
events, same ids, same final session); what is captured never exceeds the hold."""

from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from entrypoints.simulate import demo_tariff
from ledger.envelope import Envelope
from ledger.errors import LedgerError
from ledger.events import (
    CaptureRequested,
    CdrIssued,
    ChargingState,
    ChargingStateChanged,
    MeterValueRecorded,
    PaymentAuthorized,
    SampledValue,
    SessionStarted,
    SessionStopped,
    TariffPublished,
    VoidRequested,
)
from ledger.money import Money
from ledger.sessions.billing import Known, TariffCache, derived_id, price_and_bill
from ledger.sessions.holds import apply_hold_event
from ledger.sessions.lifecycle import SessionEvent, apply, check_tariff
from ledger.sessions.rules import SessionsConfig, SessionStatus
from ledger.sessions.session import (
    MeterKey,
    PaymentHold,
    Session,
    SessionFacts,
    SessionReading,
    StateChange,
    TariffVersion,
)
from tests.strategies import plausible_meter

T0 = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)
TARIFF_JSON = json.dumps(demo_tariff("T-1"))


def env(minutes: float = 0) -> Envelope:
    return Envelope.new("net", occurred_at=T0 + timedelta(minutes=minutes))


def tariff_version(version: int = 1, text: str = TARIFF_JSON) -> TariffVersion:
    return TariffVersion("T-1", version, "EUR", text, T0 - timedelta(days=1), f"e-tariff-{version}")


def started(payment_id: str | None = "P-1", sid: str = "S-1") -> SessionStarted:
    return SessionStarted(
        env(), sid, "CS-1", "CS-1*1", "1", "TX-1", "T-1", "DE", "Europe/Berlin", payment_id, 0
    )


def reading(seq: int, minutes: int, register_wh: int, sid: str = "S-1") -> MeterValueRecorded:
    at = T0 + timedelta(minutes=minutes)
    return MeterValueRecorded(env(minutes), sid, "CS-1", "TX-1", seq, at,
                              [SampledValue(str(register_wh))])  # fmt: skip


def stopped(minutes: int, register_wh: int, sid: str = "S-1") -> SessionStopped:
    return SessionStopped(env(minutes), sid, T0 + timedelta(minutes=minutes), register_wh)


def charging(sid: str = "S-1") -> ChargingStateChanged:
    return ChargingStateChanged(env(), sid, ChargingState.Charging, T0)


@dataclass
class Fold:
    """The processor's load → apply → store → emit, in memory: one session's state, readings
    and states kept between events, emitted events and rejections collected."""

    known: Known
    sessions: dict[str, Session] = field(default_factory=dict)
    readings: dict[str, dict[MeterKey, SessionReading]] = field(default_factory=dict)
    states: dict[str, list[StateChange]] = field(default_factory=dict)
    emitted: list[Any] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)

    def feed(self, *events: SessionEvent) -> Fold:
        for event in events:
            sid = event.session_id
            facts = SessionFacts(
                sid,
                self.sessions.get(sid),
                dict(self.readings.get(sid, {})),
                tuple(self.states.get(sid, [])),
            )
            try:
                applied = apply(facts, event, self.known)
            except LedgerError as exc:
                self.rejected.append((type(event).__name__, exc.code))
                continue
            if applied.session is not None:
                self.sessions[sid] = applied.session
            if applied.reading is not None:
                self.readings.setdefault(sid, {})[applied.reading.key] = applied.reading
            if applied.state is not None:
                self.states.setdefault(sid, []).append(applied.state)
            self.emitted += applied.events
            if applied.rejection is not None:
                self.rejected.append((type(event).__name__, applied.rejection.code))
        return self

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.emitted if isinstance(e, kind)]


def known(
    holds: dict[str, PaymentHold] | None = None,
    versions: tuple[TariffVersion, ...] = (tariff_version(),),
    config: SessionsConfig | None = None,
) -> Known:
    return Known({"T-1": versions}, holds or {}, TariffCache(), config or SessionsConfig())


def hold(amount: int) -> dict[str, PaymentHold]:
    authorization = PaymentAuthorized(
        env(-1), "P-1", "sandbox", "ref", Money(amount, "EUR"), "card", "S-1"
    )
    applied = apply_hold_event(None, authorization)
    assert applied.hold is not None and applied.rejection is None
    return {"P-1": applied.hold}


# ----------------------------------------------------------------------------- one session
def test_a_session_is_billed_on_its_stop_with_ids_derived_from_the_stop() -> None:
    stop = stopped(60, 20_000)
    fold = Fold(known(hold(5000))).feed(
        started(), charging(), reading(1, 30, 10_000), reading(2, 60, 20_000), stop
    )
    (cdr,) = fold.of(CdrIssued)
    (capture,) = fold.of(CaptureRequested)
    assert cdr.envelope.event_id == derived_id(stop.envelope.event_id, "cdr-issued")
    assert capture.envelope.event_id == derived_id(stop.envelope.event_id, "capture")
    assert capture.amount == cdr.total_incl_vat and capture.cdr_id == cdr.cdr_id
    s = fold.sessions["S-1"]
    assert s.status is SessionStatus.BILLED and s.captured_minor == capture.amount.amount_minor
    assert (s.tariff_version, s.hold_source, s.reason_code) == (1, "authorized", None)
    assert fold.rejected == []


def test_the_state_is_a_frozen_value_and_apply_leaves_its_input_alone() -> None:
    fold = Fold(known(hold(5000))).feed(started())
    before = fold.sessions["S-1"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        before.status = SessionStatus.BILLED  # type: ignore[misc]
    fold.feed(reading(1, 30, 10_000), stopped(30, 10_000))
    assert before.status is SessionStatus.OPEN and before.stopped_at is None
    assert fold.sessions["S-1"].status is SessionStatus.BILLED


def test_the_capture_is_capped_at_the_hold_and_the_rest_written_off() -> None:
    fold = Fold(known(hold(100))).feed(started(), reading(1, 60, 40_000), stopped(60, 40_000))
    (cdr,) = fold.of(CdrIssued)
    (capture,) = fold.of(CaptureRequested)
    assert capture.amount == Money(100, "EUR")
    assert capture.shortfall == cdr.total_incl_vat - Money(100, "EUR")
    assert sum(x.amount_excl_vat + x.vat_amount for x in capture.lines) == 100
    s = fold.sessions["S-1"]
    assert (s.shortfall_minor, s.shortfall_status) == (
        capture.shortfall.amount_minor,
        "written_off",
    )


def test_no_energy_voids_the_hold() -> None:
    fold = Fold(known(hold(5000))).feed(started(), reading(1, 10, 0), stopped(10, 0))
    (void,) = fold.of(VoidRequested)
    assert void.reason == "NO_ENERGY_DELIVERED" and not fold.of(CdrIssued)
    assert fold.sessions["S-1"].status is SessionStatus.VOIDED


def test_rules_that_change_nothing_refuse_the_event() -> None:
    fold = Fold(known(hold(5000))).feed(
        stopped(5, 0, sid="S-unknown"),
        started(),
        started(),
        reading(1, 30, 10_000),
        dataclasses.replace(reading(1, 30, 10_000), samples=[SampledValue("9999")]),
        reading(2, -30, 0),
        stopped(30, 10_000),
        reading(3, 40, 11_000),
    )
    assert fold.rejected == [
        ("SessionStopped", "UNKNOWN_SESSION"),
        ("SessionStarted", "SESSION_ALREADY_STARTED"),
        ("MeterValueRecorded", "METER_CONFLICTING_DUPLICATE"),
        ("MeterValueRecorded", "METER_READING_OUTSIDE_SESSION"),
        ("MeterValueRecorded", "SESSION_ALREADY_STOPPED"),
    ]
    assert len(fold.of(CdrIssued)) == 1


def test_a_stop_waits_for_its_tariff_and_bills_as_on_time_when_it_arrives() -> None:
    events = (started(), reading(1, 30, 10_000), stopped(30, 10_000))
    late = Fold(known(hold(5000), versions=())).feed(*events)
    s = late.sessions["S-1"]
    assert s.status is SessionStatus.AWAITING_TARIFF and s.reason_code == "UNKNOWN_TARIFF"
    assert late.rejected == [("SessionStopped", "UNKNOWN_TARIFF")] and not late.emitted
    assert s.reason_action is not None and "tariffs publish" in s.reason_action
    arrived = known(hold(5000))
    billed = price_and_bill(s, late.readings["S-1"].values(), (), arrived)
    on_time = Fold(known(hold(5000))).feed(*events)
    assert [e.envelope.event_id for e in billed.events] == [
        e.envelope.event_id for e in on_time.emitted
    ]
    assert billed.session == on_time.sessions["S-1"]


def test_a_refused_authorization_holds_the_session_instead_of_billing_it() -> None:
    refused = apply_hold_event(
        None, PaymentAuthorized(env(-1), "P-1", "sandbox", "r", Money(0, "EUR"), "card", "S-1")
    )
    assert refused.hold is not None and refused.rejection is not None
    assert refused.rejection.code == "INVALID_AMOUNT"
    fold = Fold(known({"P-1": refused.hold})).feed(
        started(), reading(1, 30, 10_000), stopped(30, 10_000)
    )
    assert fold.sessions["S-1"].status is SessionStatus.HELD
    assert fold.rejected == [("SessionStopped", "INVALID_HOLD")] and not fold.emitted


def test_a_register_that_goes_down_holds_the_cdr_for_review() -> None:
    fold = Fold(known(hold(5000))).feed(
        started(), reading(1, 10, 10_000), reading(2, 20, 5_000), stopped(30, 12_000)
    )
    s = fold.sessions["S-1"]
    assert s.status is SessionStatus.HELD and s.reason_code == "METER_REGISTER_DECREASED"
    assert [f.code.value for f in s.flags] == ["METER_REGISTER_DECREASED"]
    assert not fold.emitted


def test_a_published_tariff_version_is_checked_and_immutable() -> None:
    publish = TariffPublished(env(), "T-1", 1, "EUR", TARIFF_JSON)
    assert check_tariff(publish, None).ocpi_json == TARIFF_JSON
    assert check_tariff(publish, tariff_version()).version == 1  # the same again: fine
    other = json.dumps({**demo_tariff("T-1"), "type": "AD_HOC_PAYMENT"})
    with pytest.raises(LedgerError) as conflict:
        check_tariff(publish, tariff_version(text=other))
    assert conflict.value.code == "TARIFF_VERSION_CONFLICT"
    with pytest.raises(LedgerError) as mismatch:
        check_tariff(dataclasses.replace(publish, currency="GBP"), None)
    assert mismatch.value.code == "INVALID_TARIFF"


# ----------------------------------------------------------------------------- properties
@st.composite
def charged_sessions(draw: st.DrawFn) -> tuple[list[MeterValueRecorded], SessionStopped]:
    """Readings of one plausible session and its stop."""
    readings, stop, register = draw(plausible_meter(max_readings=15))
    return [reading(*r) for r in readings], stopped(stop, register)


def billed(fold: Fold) -> tuple[object, ...]:
    return (
        [(type(e).__name__, e.envelope.event_id) for e in fold.emitted],
        [(c.total_excl_vat, c.total_incl_vat, c.total_energy_wh) for c in fold.of(CdrIssued)],
        [(c.amount, c.shortfall) for c in fold.of(CaptureRequested)],
        fold.sessions["S-1"],
        fold.rejected,
    )


@settings(max_examples=100, deadline=None)
@given(charged_sessions(), st.integers(1, 20_000), st.randoms(use_true_random=False), st.data())
def test_readings_in_any_order_and_redelivered_bill_the_same(
    session: tuple[list[MeterValueRecorded], SessionStopped],
    held: int,
    rng: random.Random,
    data: st.DataObject,
) -> None:
    readings, stop = session
    again = data.draw(st.lists(st.sampled_from(readings), max_size=8))
    redelivered = [dataclasses.replace(r, envelope=Envelope.new("net")) for r in again]
    arrived = readings + redelivered
    rng.shuffle(arrived)
    # Readings may also come before their SessionStarted (another partition's lag).
    early = data.draw(st.integers(0, len(arrived)))
    start, state = started(), charging()
    in_order = Fold(known(hold(held))).feed(start, state, *readings, stop)
    shuffled = Fold(known(hold(held))).feed(*arrived[:early], start, state, *arrived[early:], stop)
    assert billed(shuffled) == billed(in_order)


@settings(max_examples=100, deadline=None)
@given(charged_sessions(), st.integers(1, 20_000))
def test_the_capture_never_exceeds_the_hold_and_covers_the_bill_or_the_hold(
    session: tuple[list[MeterValueRecorded], SessionStopped], held: int
) -> None:
    readings, stop = session
    fold = Fold(known(hold(held))).feed(started(), charging(), *readings, stop)
    s = fold.sessions["S-1"]
    captures = fold.of(CaptureRequested)
    if s.status is SessionStatus.VOIDED or not captures:
        assert not captures
        return
    (capture,) = captures
    (cdr,) = fold.of(CdrIssued)
    assert capture.amount.amount_minor <= held
    # Capped at the hold, or a cent under it where no split of the hold keeps VAT per rate
    # (ledger.sessions.billing.scale_lines); the capture is exactly what its lines add up to.
    cap = cdr.total_incl_vat.min(Money(held, "EUR"))
    assert cap.amount_minor - capture.amount.amount_minor in (
        (0, 1) if cap < cdr.total_incl_vat else (0,)
    )
    assert capture.amount.amount_minor == sum(
        x.amount_excl_vat + x.vat_amount for x in capture.lines
    )
    assert s.captured_minor + s.shortfall_minor == cdr.total_incl_vat.amount_minor


def test_a_line_taxed_at_another_rate_than_the_country_s_is_flagged_or_held_by_policy() -> None:
    def dutch(config: SessionsConfig) -> Fold:
        start = dataclasses.replace(started(), country="NL")  # the tariff says 19 %, NL is 21 %
        return Fold(known(hold(5000), config=config)).feed(
            start, reading(1, 30, 10_000), stopped(30, 10_000)
        )

    billed = dutch(SessionsConfig())
    s = billed.sessions["S-1"]
    assert s.status is SessionStatus.BILLED and billed.of(CaptureRequested)
    (flag,) = [f for f in s.flags if f.code.value == "VAT_RATE_MISMATCH"]
    assert "standard rate 21 %" in flag.detail
    held = dutch(SessionsConfig(vat_hold_networks=frozenset({"net"})))
    assert held.sessions["S-1"].status is SessionStatus.HELD and not held.emitted
    assert held.rejected == [("SessionStopped", "VAT_RATE_MISMATCH")]
    german = Fold(known(hold(5000))).feed(started(), reading(1, 30, 10_000), stopped(30, 10_000))
    assert german.sessions["S-1"].flags == ()
