"""The sessions processor on the real stack: OCPP 1.6 / 2.0.1 sessions in, CDRs and settlement
instructions out. Amounts below are worked out by hand from the tariff, not by ledger.pricing.

The module runs the processor under its own consumer group against a fresh database whose
stored offsets start at today's end of each topic, so it reads only the events it publishes.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from connectors import postgres, sessions_store
from entrypoints.bootstrap import App
from ledger.dimensions import Dimension
from ledger.envelope import Envelope, Source
from ledger.events import (
    CaptureRequested,
    CdrCredited,
    CdrIssued,
    ChargingState,
    ChargingStateChanged,
    MeterValueRecorded,
    PaymentAuthorized,
    RefundRequested,
    SampledValue,
    SessionStarted,
    SessionStopped,
    TariffPublished,
    VoidRequested,
)
from ledger.money import Money
from ledger.sessions.billing import derived_id
from ledger.sessions.session import standing_cdr
from processors.sessions import TOPICS, build_sessions_processor
from processors.sessions_corrections import release, reprice
from tests.integration.conftest import consume_from, create_database, drop_database, end_offsets

OUT = ["billing.events", "settlement.commands", "sessions.events.rejected"]
T0 = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)  # 12:00 in Amsterdam; no time restrictions used
RUN = uuid.uuid4().hex[:8]
TARIFF = f"T-SESS-{RUN}"
LATE_TARIFF = f"T-LATE-{RUN}"


def tariff_json(tariff_id: str = TARIFF) -> dict[str, Any]:
    """0.40/kWh and 12.00/h idle fee (per minute), both VAT 20%."""
    return {
        "id": tariff_id,
        "currency": "EUR",
        "country_code": "NL",
        "party_id": "EVL",
        "elements": [
            {"price_components": [{"type": "ENERGY", "price": "0.40", "vat": 20, "step_size": 1}]},
            {
                "price_components": [
                    {"type": "PARKING_TIME", "price": "12.00", "vat": 20, "step_size": 60}
                ]
            },
        ],
        "last_updated": "2026-01-01T00:00:00Z",
    }


@dataclass
class Session:
    """Builds one session's events; ``name`` keeps its ids unique per run."""

    name: str
    network: str
    source: Source = Source.ocpp16
    tariff_id: str = TARIFF
    hold: int | None = 5000
    start: datetime = T0
    events: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.id = f"S-{self.name}-{RUN}"
        self.payment_id = f"P-{self.name}-{RUN}"
        self.station = f"CS-{self.name}"

    def env(self, at: datetime, source: Source | None = None) -> Envelope:
        return Envelope.new(
            self.network, source or self.source, occurred_at=at, correlation_id=self.id
        )

    def authorized(self) -> PaymentAuthorized:
        assert self.hold is not None
        return PaymentAuthorized(
            self.env(self.start, Source.terminal),
            self.payment_id,
            "sandbox",
            f"sbx-{self.id}",
            Money(self.hold, "EUR"),
            "card",
            self.id,
            self.station,
        )

    def started(self, meter_start_wh: int | None = None) -> SessionStarted:
        return SessionStarted(
            self.env(self.start),
            self.id,
            self.station,
            f"{self.station}*1",
            "1",
            f"tx-{self.name}",
            self.tariff_id,
            "NL",
            "Europe/Amsterdam",
            self.payment_id,
            meter_start_wh,
        )

    def meter(self, seq: int, minutes: float, *samples: SampledValue) -> MeterValueRecorded:
        at = self.start + timedelta(minutes=minutes)
        return MeterValueRecorded(
            self.env(at), self.id, self.station, f"tx-{self.name}", seq, at, list(samples)
        )

    def state(self, minutes: float, state: ChargingState) -> ChargingStateChanged:
        at = self.start + timedelta(minutes=minutes)
        return ChargingStateChanged(self.env(at), self.id, state, at)

    def stopped(self, minutes: float, meter_stop_wh: int | None = None) -> SessionStopped:
        at = self.start + timedelta(minutes=minutes)
        return SessionStopped(self.env(at), self.id, at, meter_stop_wh, "EVDisconnected")


def wh(value: int) -> SampledValue:
    """OCPP 1.6: a string in Wh, no unit, no measurand."""
    return SampledValue(str(value))


def kwh(value: str, multiplier: int) -> SampledValue:
    """OCPP 2.0.1: a number in kWh with a power-of-ten multiplier."""
    return SampledValue(value, "Energy.Active.Import.Register", "kWh", multiplier)


@dataclass
class World:
    app: App
    database_url: str
    sessions: dict[str, Session]
    out: dict[str, list[Any]]
    rejected: dict[str, str]  # session id -> reason code of its rejected SessionStopped
    stops: dict[str, SessionStopped]
    starts: dict[tuple[str, int], int]


@pytest.fixture(scope="module")
def database(app: App) -> Iterator[str]:
    url = create_database(app, "evl_sessions")
    yield url
    drop_database(app, url)


@pytest.fixture(scope="module")
def world(app: App, database: str) -> World:
    net = app.settings.network_id
    group = f"test-sessions-{RUN}"
    starts = end_offsets(app, OUT)
    with postgres.connect(database) as conn:  # read only what this module publishes
        postgres.store_offsets(conn, group, end_offsets(app, list(TOPICS)))
        conn.commit()

    ocpp16 = Session("ocpp16", net)
    ocpp201 = Session("ocpp201", net, Source.ocpp201, hold=3000)
    decrease = Session("decrease", net)
    empty = Session("empty", net)
    capped = Session("capped", net, hold=1000)
    unknown = Session("unknown", net, tariff_id=f"NOPE-{RUN}")
    late = Session("late", net, tariff_id=LATE_TARIFF)
    unauthorized = Session("unauthorized", net, hold=None)
    sessions = [ocpp16, ocpp201, decrease, empty, capped, unknown, late, unauthorized]

    tariff = TariffPublished(
        Envelope.new(net, Source.ocpi, occurred_at=T0 - timedelta(days=1)),
        TARIFF,
        1,
        "EUR",
        json.dumps(tariff_json()),
    )
    first = [tariff, *(s.authorized() for s in sessions if s.hold is not None)]

    # 1.6: 1000 -> 10000 Wh while charging 10:00-10:30, parked 10:30-10:45. Seq 2 arrives late
    # (after seq 3 and the state change), seq 1 twice under two event ids, seq 3 re-published
    # with the same event id.
    s = ocpp16
    m1, m2, m3 = s.meter(1, 10, wh(4000)), s.meter(2, 20, wh(7000)), s.meter(3, 30, wh(10000))
    m1_again = MeterValueRecorded(
        s.env(m1.sampled_at), s.id, s.station, m1.transaction_id, 1, m1.sampled_at, [wh(4000)]
    )
    s.events = [
        s.started(1000),
        s.state(0, ChargingState.Charging),
        m1,
        m3,
        m1_again,
        s.state(30, ChargingState.SuspendedEV),
        m2,
        m3,
        s.stopped(45, 10000),
    ]
    # 2.0.1: 0 -> 12 kWh (0.5 x 10^1, 1.2 x 10^1 kWh), all charging.
    s = ocpp201
    s.events = [
        s.started(0),
        s.meter(1, 20, kwh("0.5", 1)),
        s.meter(2, 40, kwh("1.2", 1)),
        s.stopped(40),
    ]
    s = decrease
    s.events = [
        s.started(1000),
        s.meter(1, 10, wh(5000)),
        s.meter(2, 20, wh(3000)),
        s.meter(3, 30, wh(8000)),
        s.stopped(30, 8000),
    ]
    s = empty
    s.events = [s.started(2000), s.meter(1, 10, wh(2000)), s.stopped(15, 2000)]
    # 25 kWh in an hour: 10.00 net + 2.00 VAT = 12.00 against a 10.00 hold.
    s = capped
    s.events = [s.started(0), s.meter(1, 60, wh(25000)), s.stopped(60)]
    s = unknown
    s.events = [s.started(0), s.meter(1, 10, wh(1000)), s.stopped(10)]
    # Its tariff was published before the start but is consumed after the stop (as in a replay
    # where tariffs.events lags): 5 kWh = 2.00 + 0.40 VAT once the tariff arrives.
    s = unauthorized  # no PaymentAuthorized: the pre-authorization sizing is the assumed hold
    s.events = [s.started(0), s.meter(1, 30, wh(5000)), s.stopped(30)]
    s = late
    s.events = [s.started(0), s.meter(1, 30, wh(5000)), s.stopped(30)]
    late_tariff = TariffPublished(
        Envelope.new(net, Source.ocpi, occurred_at=T0 - timedelta(days=1)),
        LATE_TARIFF,
        1,
        "EUR",
        json.dumps(tariff_json(LATE_TARIFF)),
    )

    publisher = app.publisher()
    publisher.publish_many(first)
    publisher.flush()
    processor = build_sessions_processor(app, group=group, database_url=database)
    try:
        processor.drain(idle_seconds=2)
        for session in sessions:
            publisher.publish_many(session.events)
        publisher.flush()
        processor.drain(idle_seconds=3)
        publisher.publish(late_tariff)
        publisher.flush()
        processor.drain(idle_seconds=2)
    finally:
        processor.close()

    records = consume_from(app, OUT, starts, expected=10_000, timeout=8)
    ids = {s.id for s in sessions} | {s.payment_id for s in sessions}
    out: dict[str, list[Any]] = {}
    rejected: dict[str, str] = {}
    for record in records:
        event = record.event
        if record.topic == "sessions.events.rejected":
            if event.consumer_group == group and record.key:
                rejected[record.key.decode()] = event.reason_code
            continue
        owner = getattr(event, "session_id", None) or getattr(event, "payment_id", None)
        if owner in ids:
            out.setdefault(type(event).__name__, []).append(event)
    stops = {s.id: s.events[-1] for s in sessions}
    return World(app, database, {s.name: s for s in sessions}, out, rejected, stops, starts)


def _one(world: World, kind: str, session: Session) -> Any:
    found = [
        e
        for e in world.out.get(kind, [])
        if getattr(e, "session_id", None) == session.id
        or getattr(e, "payment_id", None) == session.payment_id
    ]
    assert len(found) == 1, f"{kind} for {session.id}: {found}"
    return found[0]


def _none(world: World, kind: str, session: Session) -> None:
    found = [
        e
        for e in world.out.get(kind, [])
        if getattr(e, "session_id", None) == session.id
        or getattr(e, "payment_id", None) == session.payment_id
    ]
    assert not found, f"unexpected {kind} for {session.id}: {found}"


def test_ocpp16_session_with_duplicates_and_late_values_is_billed_as_in_order(
    world: World,
) -> None:
    s = world.sessions["ocpp16"]
    cdr: CdrIssued = _one(world, "CdrIssued", s)
    # 9 kWh x 0.40 = 3.60 (+0.72 VAT); 15 min idle x 12.00/h = 3.00 (+0.60 VAT)
    lines = {line.dimension: (line.amount_excl_vat, line.vat_amount) for line in cdr.lines}
    assert lines == {Dimension.ENERGY: (360, 72), Dimension.PARKING_TIME: (300, 60)}
    assert cdr.total_excl_vat == Money(660, "EUR") and cdr.total_incl_vat == Money(792, "EUR")
    assert (cdr.total_energy_wh, cdr.total_time_s, cdr.total_parking_time_s) == (9000, 2700, 900)
    assert (cdr.tariff_id, cdr.tariff_version, cdr.payment_id) == (TARIFF, 1, s.payment_id)
    capture: CaptureRequested = _one(world, "CaptureRequested", s)
    assert capture.amount == Money(792, "EUR") and capture.shortfall is None
    assert capture.cdr_id == cdr.cdr_id and capture.final
    assert sum(x.amount_excl_vat + x.vat_amount for x in capture.lines) == 792
    assert s.id not in world.rejected  # the duplicates were absorbed, not refused


def test_emitted_ids_derive_from_the_stop_event(world: World) -> None:
    s = world.sessions["ocpp16"]
    stop_id = world.stops[s.id].envelope.event_id
    cdr: CdrIssued = _one(world, "CdrIssued", s)
    capture: CaptureRequested = _one(world, "CaptureRequested", s)
    assert cdr.envelope.event_id == derived_id(stop_id, "cdr-issued")
    assert cdr.cdr_id == derived_id(stop_id, "cdr")
    assert capture.envelope.event_id == derived_id(stop_id, "capture")
    assert capture.envelope.causation_id == stop_id and capture.envelope.correlation_id == s.id


def test_ocpp201_kwh_with_multiplier(world: World) -> None:
    s = world.sessions["ocpp201"]
    cdr: CdrIssued = _one(world, "CdrIssued", s)
    # 12 kWh x 0.40 = 4.80 + 0.96 VAT
    assert cdr.total_energy_wh == 12000 and cdr.total_parking_time_s == 0
    assert cdr.total_incl_vat == Money(576, "EUR")
    assert _one(world, "CaptureRequested", s).amount == Money(576, "EUR")


def test_register_decrease_holds_the_cdr_with_its_reason_code(world: World) -> None:
    s = world.sessions["decrease"]
    assert world.rejected[s.id] == "METER_REGISTER_DECREASED"
    _none(world, "CdrIssued", s)
    _none(world, "CaptureRequested", s)
    with psycopg.connect(world.database_url) as conn:
        status, reason, flags = conn.execute(
            "SELECT status, reason_code, flags FROM charging_sessions WHERE session_id = %s",
            (s.id,),
        ).fetchone() or (None, None, None)
    assert (status, reason) == ("held", "METER_REGISTER_DECREASED")
    assert [f["seq_no"] for f in flags if f["code"] == "METER_REGISTER_DECREASED"] == [2]


def test_no_energy_voids_the_hold(world: World) -> None:
    s = world.sessions["empty"]
    void: VoidRequested = _one(world, "VoidRequested", s)
    assert void.reason == "NO_ENERGY_DELIVERED"
    _none(world, "CdrIssued", s)
    _none(world, "CaptureRequested", s)


def test_total_above_the_hold_captures_the_hold_and_records_the_shortfall(world: World) -> None:
    s = world.sessions["capped"]
    cdr: CdrIssued = _one(world, "CdrIssued", s)
    assert cdr.total_incl_vat == Money(1200, "EUR")
    capture: CaptureRequested = _one(world, "CaptureRequested", s)
    assert capture.amount == Money(1000, "EUR") and capture.shortfall == Money(200, "EUR")
    # one ENERGY line 1000.00 + 200 VAT scaled to 1000: net 833 (1000 x 10/12), VAT 167
    assert [(x.amount_excl_vat, x.vat_amount) for x in capture.lines] == [(833, 167)]
    with psycopg.connect(world.database_url) as conn:
        row = conn.execute(
            "SELECT captured_minor, shortfall_minor, shortfall_status, hold_source"
            " FROM charging_sessions WHERE session_id = %s",
            (s.id,),
        ).fetchone()
    assert row == (1000, 200, "written_off", "authorized")


def test_unknown_tariff_is_rejected(world: World) -> None:
    s = world.sessions["unknown"]
    assert world.rejected[s.id] == "UNKNOWN_TARIFF"
    _none(world, "CdrIssued", s)


def test_a_stop_waiting_for_its_tariff_is_billed_when_it_arrives(world: World) -> None:
    s = world.sessions["late"]
    assert world.rejected[s.id] == "UNKNOWN_TARIFF"  # told at the stop, billed later
    cdr: CdrIssued = _one(world, "CdrIssued", s)
    assert cdr.total_incl_vat == Money(240, "EUR") and cdr.tariff_id == LATE_TARIFF
    assert cdr.envelope.event_id == derived_id(world.stops[s.id].envelope.event_id, "cdr-issued")
    assert _one(world, "CaptureRequested", s).amount == Money(240, "EUR")
    with psycopg.connect(world.database_url) as conn:
        statuses = dict(
            conn.execute(
                "SELECT session_id, status FROM charging_sessions WHERE session_id = ANY(%s)",
                ([s.id, world.sessions["unknown"].id],),
            ).fetchall()
        )
    assert statuses == {s.id: "billed", world.sessions["unknown"].id: "awaiting_tariff"}


def test_every_record_is_accounted_for(world: World) -> None:
    with psycopg.connect(world.database_url) as conn:
        counts = conn.execute(
            "SELECT applied, duplicates, rejected FROM processing_counts"
            " WHERE consumer_group LIKE 'test-sessions-%'"
        ).fetchone()
    published = 2 + len(world.sessions) - 1 + sum(len(s.events) for s in world.sessions.values())
    assert counts is not None and sum(counts) == published
    assert counts[1] == 1  # seq 3 re-published with the same event id
    assert counts[2] == 3  # the decrease and the two unknown tariffs


def test_idle_fee_waiver_credits_reissues_and_refunds(world: World) -> None:
    s = world.sessions["ocpp16"]
    original: CdrIssued = _one(world, "CdrIssued", s)
    starts = end_offsets(world.app, OUT[:2])
    with psycopg.connect(world.database_url) as conn:
        (before,) = conn.execute("SELECT now()").fetchone() or (None,)
    correction = reprice(
        world.app,
        s.id,
        {Dimension.PARKING_TIME},
        "idle fee waived",
        database_url=world.database_url,
    )
    assert correction.refund == Money(360, "EUR")
    records = consume_from(world.app, OUT[:2], starts, expected=3, timeout=15)
    mine = [
        r.event
        for r in records
        if getattr(r.event, "session_id", None) == s.id
        or getattr(r.event, "payment_id", None) == s.payment_id
    ]
    credit = [e for e in mine if isinstance(e, CdrCredited)]
    reissued = [e for e in mine if isinstance(e, CdrIssued)]
    refund = [e for e in mine if isinstance(e, RefundRequested)]
    assert len(credit) == len(reissued) == len(refund) == 1
    assert credit[0].credited_cdr_id == original.cdr_id
    assert credit[0].total_incl_vat == Money(792, "EUR")
    assert reissued[0].replaces_cdr_id == original.cdr_id
    assert reissued[0].total_incl_vat == Money(432, "EUR")  # 3.60 + 0.72 VAT
    assert refund[0].amount == Money(360, "EUR")
    captured = _one(world, "CaptureRequested", s).amount
    assert captured - refund[0].amount == reissued[0].total_incl_vat
    assert {(x.dimension, x.amount_excl_vat, x.vat_amount) for x in refund[0].lines} == {
        (Dimension.PARKING_TIME, 300, 60)
    }
    # The bill as known before the correction, and now (session_cdrs rows are never changed).
    with psycopg.connect(world.database_url) as conn:
        then = sessions_store.cdrs_of(conn, s.id, before)
        now = sessions_store.cdrs_of(conn, s.id)
    assert [c.cdr_id for c in then] == [original.cdr_id]
    was = standing_cdr(then)
    assert was is not None and was.cdr_id == original.cdr_id
    assert sorted(c.kind for c in now) == ["credited", "issued", "issued"]
    standing = standing_cdr(now)
    assert standing is not None and standing.cdr_id == reissued[0].cdr_id
    assert standing.total_incl_vat == 432
    # In business time: each row carries its event's time (the bill: the session's stop; the
    # credit and the re-issue: when the correction was made), and the bill as of the stop is
    # the original, the correction being made later.
    dated = {c.cdr_id: c.occurred_at for c in now}
    assert dated == {original.cdr_id: original.envelope.occurred_at,
                     credit[0].cdr_id: credit[0].envelope.occurred_at,
                     reissued[0].cdr_id: reissued[0].envelope.occurred_at}  # fmt: skip
    assert original.envelope.occurred_at < credit[0].envelope.occurred_at
    with psycopg.connect(world.database_url) as conn:
        at_stop = sessions_store.cdrs_of(conn, s.id, as_of=original.envelope.occurred_at)
        after = sessions_store.cdrs_of(conn, s.id, as_of=credit[0].envelope.occurred_at)
    assert [c.cdr_id for c in at_stop] == [original.cdr_id]
    assert standing_cdr(after) == standing


def test_without_a_known_hold_the_preauthorization_is_assumed(world: World) -> None:
    s = world.sessions["unauthorized"]
    assert _one(world, "CaptureRequested", s).amount == Money(240, "EUR")
    with psycopg.connect(world.database_url) as conn:
        row = conn.execute(
            "SELECT hold_minor, hold_source FROM charging_sessions WHERE session_id = %s",
            (s.id,),
        ).fetchone()
    # 22 kW x 4 h = 88 kWh x 0.40 = 35.20 + 7.04 VAT
    assert row == (4224, "assumed")


def test_a_held_session_is_released_without_the_decreased_reading(world: World) -> None:
    s = world.sessions["decrease"]
    starts = end_offsets(world.app, OUT[:2])
    assert release(world.app, s.id, "reviewed: meter glitch", database_url=world.database_url) == (
        "billed"
    )
    records = consume_from(world.app, OUT[:2], starts, expected=2, timeout=15)
    mine = [
        r.event
        for r in records
        if getattr(r.event, "session_id", None) == s.id
        or getattr(r.event, "payment_id", None) == s.payment_id
    ]
    (cdr,) = [e for e in mine if isinstance(e, CdrIssued)]
    (capture,) = [e for e in mine if isinstance(e, CaptureRequested)]
    # 1000 -> 5000 (+4000), 3000 ignored, -> 8000 (+3000): 7 kWh x 0.40 = 2.80 + 0.56 VAT
    assert cdr.total_energy_wh == 7000 and cdr.total_incl_vat == Money(336, "EUR")
    assert capture.amount == Money(336, "EUR")
    release_id = derived_id(world.stops[s.id].envelope.event_id, "release")
    assert cdr.envelope.event_id == derived_id(release_id, "cdr-issued")
