"""Sessions processor hardening against PostgreSQL: the handler applies batches as the shared loop
would (one transaction, one ``Effects``), so each defect of the hostile-input review is replayed
record by record and its outcome read back from the tables, the emitted events and the
rejections.

Emitted events are captured by the test's encoder and the outbox rows are dropped, so nothing
here reaches Kafka except what ``release`` relays (real events of this module's own ids).
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from connectors import sessions_store as store
from connectors.checkpoint import postgres_batch
from connectors.kafka import TOPIC_OF, Consumed, key_of
from entrypoints.api import create_app
from entrypoints.bootstrap import App
from entrypoints.cli import app as cli
from ledger.envelope import Envelope, Source
from ledger.events import (
    AuthorizationIncremented,
    CaptureRequested,
    CdrIssued,
    MeterValueRecorded,
    PaymentAuthorized,
    SampledValue,
    SessionStarted,
    SessionStopped,
    TariffPublished,
)
from ledger.money import Money
from ledger.sessions import session as domain
from ledger.sessions.billing import derived_id
from ledger.sessions.rules import SessionsConfig, connector_key
from processors.base import Effects
from processors.sessions import SessionsHandler
from processors.sessions_corrections import release
from tests.integration.conftest import api_key, create_database, drop_database

T0 = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)
RUN = uuid.uuid4().hex[:8]
NET = f"net-hard-{RUN}"
TARIFF = f"T-HARD-{RUN}"


def tariff_event(tariff_id: str = TARIFF) -> TariffPublished:
    """0.40/kWh, VAT 20%: 5 kWh = 2.00 + 0.40 = 240 minor units."""
    tariff = {
        "id": tariff_id,
        "currency": "EUR",
        "country_code": "NL",
        "party_id": "EVL",
        "elements": [
            {"price_components": [{"type": "ENERGY", "price": "0.40", "vat": 20, "step_size": 1}]}
        ],
        "last_updated": "2026-01-01T00:00:00Z",
    }
    env = Envelope.new(NET, Source.ocpi, occurred_at=T0 - timedelta(days=1))
    return TariffPublished(env, tariff_id, 1, "EUR", json.dumps(tariff))


@dataclass
class Session:
    name: str
    tariff_id: str = TARIFF
    connector: str = "1"

    def __post_init__(self) -> None:
        self.id = f"S-{self.name}-{RUN}"
        self.payment_id = f"P-{self.name}-{RUN}"
        self.station = f"CS-{self.name}-{RUN}"

    def env(self, minutes: float, source: Source = Source.ocpp16) -> Envelope:
        at = T0 + timedelta(minutes=minutes)
        return Envelope.new(NET, source, occurred_at=at, correlation_id=self.id)

    def authorized(self, amount: int, currency: str = "EUR") -> PaymentAuthorized:
        return PaymentAuthorized(
            self.env(0, Source.terminal),
            self.payment_id,
            "sandbox",
            f"sbx-{self.id}",
            Money(amount, currency),
            "card",
            self.id,
        )

    def incremented(self, amount: int, currency: str = "EUR") -> AuthorizationIncremented:
        return AuthorizationIncremented(
            self.env(1, Source.terminal), self.payment_id, Money(amount, currency)
        )

    def started(self, meter_start_wh: int | None = 0) -> SessionStarted:
        return SessionStarted(
            self.env(0),
            self.id,
            self.station,
            f"{self.station}*{self.connector}",
            self.connector,
            f"tx-{self.name}",
            self.tariff_id,
            "NL",
            "Europe/Amsterdam",
            self.payment_id,
            meter_start_wh,
        )

    def meter(self, seq: int, minutes: float, *samples: SampledValue) -> MeterValueRecorded:
        at = T0 + timedelta(minutes=minutes)
        return MeterValueRecorded(
            self.env(minutes), self.id, self.station, f"tx-{self.name}", seq, at, list(samples)
        )

    def stopped(self, minutes: float, meter_stop_wh: int | None = None) -> SessionStopped:
        at = T0 + timedelta(minutes=minutes)
        return SessionStopped(self.env(minutes), self.id, at, meter_stop_wh, "EVDisconnected")


def wh(value: int, phase: str | None = None) -> SampledValue:
    return SampledValue(str(value), phase=phase)


@dataclass
class Outcome:
    emitted: list[Any] = field(default_factory=list)
    rejected: dict[str, tuple[str, str]] = field(default_factory=dict)  # event id -> code, detail

    def of(self, kind: type, **match: Any) -> list[Any]:
        return [
            e
            for e in self.emitted
            if isinstance(e, kind) and all(getattr(e, k) == v for k, v in match.items())
        ]


@dataclass
class Harness:
    """Feeds batches to one SessionsHandler as ``PostgresProcessor`` would."""

    url: str
    config: SessionsConfig | None = None
    offsets: Iterator[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        self.handler = SessionsHandler(self.config)

    def feed(self, *events: Any) -> Outcome:
        outcome = Outcome()

        def encode(topic: str, event: Any) -> bytes:
            if not topic.endswith(".rejected"):
                outcome.emitted.append(event)
            return b"{}"

        records = [
            Consumed(TOPIC_OF[type(e)], 0, next(self.offsets), key_of(e).encode(), b"{}", e)
            for e in events
        ]
        by_offset = {r.offset: r.event_id for r in records}
        with psycopg.connect(self.url) as conn, conn.transaction():
            tx = Effects(postgres_batch(conn), encode, "test-sessions-hardening", NET)
            self.handler.handle(tx, records)
            conn.execute("DELETE FROM outbox")  # captured above; never relayed to Kafka
        for (_, _, offset), reason in tx.rejected.items():
            event_id = by_offset[offset]
            assert event_id is not None
            outcome.rejected[event_id] = reason
        return outcome

    def session(self, session_id: str) -> domain.Session:
        with psycopg.connect(self.url) as conn:
            return store.load_sessions(conn, [session_id])[session_id]

    def history(self, session_id: str) -> list[store.HeldReason]:
        with psycopg.connect(self.url) as conn:
            return store.reason_history(conn, session_id)

    def held(self) -> dict[str, store.HeldReason]:
        with psycopg.connect(self.url) as conn:
            return {r.session_id: r for r in store.held_sessions(conn, 10_000)}


@pytest.fixture(scope="module")
def database(app: App) -> Iterator[str]:
    url = create_database(app, "evl_sessions_hard")
    yield url
    drop_database(app, url)


@pytest.fixture(scope="module")
def harness(database: str) -> Harness:
    h = Harness(database)
    h.feed(tariff_event())
    return h


def charged(s: Session) -> tuple[SessionStarted, MeterValueRecorded, SessionStopped]:
    """A session that delivers 5 kWh in 30 minutes: 240 minor units."""
    return s.started(0), s.meter(1, 30, wh(5000)), s.stopped(30, 5000)


# ------------------------------------------------------------------------- 1: one truth on holds
@pytest.mark.parametrize("amount", [-100, 0])
def test_a_refused_authorization_holds_the_session_until_a_valid_one(
    harness: Harness, amount: int
) -> None:
    s = Session(f"refused{amount}")
    auth = s.authorized(amount)
    out = harness.feed(auth)
    code, detail = out.rejected[auth.envelope.event_id]
    assert code == "INVALID_AMOUNT"
    assert f"amount={amount} EUR" in detail and s.payment_id in detail

    start, reading, stop = charged(s)
    out = harness.feed(start, reading, stop)
    assert out.rejected[stop.envelope.event_id][0] == "INVALID_HOLD"
    assert out.of(CaptureRequested) == [] and out.of(CdrIssued) == []
    row = harness.session(s.id)
    assert (row.status, row.reason_code, row.shortfall_minor, row.shortfall_status) == (
        "held",
        "INVALID_HOLD",
        0,
        None,
    )
    assert "INVALID_AMOUNT" in (row.reason_detail or "")
    assert harness.held()[s.id].reason_code == "INVALID_HOLD"

    out = harness.feed(s.authorized(3000))  # the payment is authorized again, validly
    (capture,) = out.of(CaptureRequested, payment_id=s.payment_id)
    assert capture.amount == Money(240, "EUR") and capture.shortfall is None
    assert capture.envelope.event_id == derived_id(stop.envelope.event_id, "capture")
    assert harness.session(s.id).status == "billed"
    assert s.id not in harness.held()
    assert [(r.reason_code, r.cleared_by) for r in harness.history(s.id)] == [
        ("INVALID_HOLD", "billed")
    ]


def test_a_second_authorization_neither_replaces_nor_raises_the_hold(harness: Harness) -> None:
    s = Session("dupauth")
    first, second = s.authorized(100), s.authorized(5000)
    out = harness.feed(first, second)
    assert out.rejected == {second.envelope.event_id: out.rejected[second.envelope.event_id]}
    assert out.rejected[second.envelope.event_id][0] == "DUPLICATE_AUTHORIZATION"
    out = harness.feed(*charged(s))
    (capture,) = out.of(CaptureRequested, payment_id=s.payment_id)
    assert capture.amount == Money(100, "EUR") and capture.shortfall == Money(140, "EUR")


def test_increments_only_raise_an_accepted_hold_in_its_currency(harness: Harness) -> None:
    orphan = Session("orphaninc")
    inc = orphan.incremented(5000)
    out = harness.feed(inc)
    assert out.rejected[inc.envelope.event_id][0] == "UNKNOWN_PAYMENT"
    with psycopg.connect(harness.url) as conn:
        assert store.load_holds(conn, [orphan.payment_id]) == {}

    s = Session("currencyinc")
    good, foreign, negative = s.incremented(50), s.incremented(5000, "GBP"), s.incremented(-60)
    out = harness.feed(s.authorized(100), foreign, negative, good)
    assert out.rejected[foreign.envelope.event_id][0] == "CURRENCY_MISMATCH"
    assert out.rejected[negative.envelope.event_id][0] == "INVALID_AMOUNT"
    assert good.envelope.event_id not in out.rejected
    out = harness.feed(*charged(s))
    (capture,) = out.of(CaptureRequested, payment_id=s.payment_id)
    assert capture.amount == Money(150, "EUR") and capture.shortfall == Money(90, "EUR")


# ------------------------------------------------------------------------- 2: plausible time
def test_a_reading_before_the_known_start_is_rejected_and_not_billed(harness: Harness) -> None:
    s = Session("early")
    harness.feed(s.authorized(3000))
    early = s.meter(1, -60, wh(0))  # an hour before the start, register 0 (start says 2000)
    out = harness.feed(s.started(2000), early, s.meter(2, 30, wh(7000)), s.stopped(30, 7000))
    code, detail = out.rejected[early.envelope.event_id]
    assert code == "METER_READING_OUTSIDE_SESSION"
    assert early.sampled_at.isoformat() in detail and s.id in detail
    (capture,) = out.of(CaptureRequested, payment_id=s.payment_id)
    assert capture.amount == Money(240, "EUR")  # 2000 -> 7000 Wh only


def test_a_reading_outside_the_session_that_came_first_holds_it_until_release(
    app: App, harness: Harness
) -> None:
    s = Session("earlyfirst")
    harness.feed(s.authorized(3000))
    early = s.meter(1, -60, wh(0))  # consumed before its SessionStarted: judged at the stop
    stop = s.stopped(30, 5000)
    out = harness.feed(early, s.started(None), s.meter(2, 10, wh(2000)), stop)
    assert early.envelope.event_id not in out.rejected
    code, detail = out.rejected[stop.envelope.event_id]
    assert code == "METER_READING_OUTSIDE_SESSION" and "seq_no=1" in detail
    assert out.of(CaptureRequested) == [] and out.of(CdrIssued) == []
    current = harness.held()[s.id]
    assert (current.status, current.reason_code) == ("held", "METER_READING_OUTSIDE_SESSION")
    assert "release" in current.action

    assert release(app, s.id, "reviewed: clock reset", database_url=harness.url) == "billed"
    with psycopg.connect(harness.url) as conn:
        (cdr,) = store.cdrs_of(conn, s.id)
    assert cdr.total_incl_vat == 144  # 2000 -> 5000 Wh: 3 kWh, the reading before start unbilled
    assert s.id not in harness.held()
    row = harness.session(s.id)
    assert (row.reason_code, row.reason_detail, row.reason_action) == (None, None, None)


def test_a_stop_before_the_start_has_its_own_code_and_leaves_the_session_open(
    harness: Harness,
) -> None:
    s = Session("backwards")
    harness.feed(s.authorized(3000))
    start, reading, stop = charged(s)
    backwards = s.stopped(-10, 5000)
    out = harness.feed(start, reading, backwards)
    code, detail = out.rejected[backwards.envelope.event_id]
    assert code == "STOP_BEFORE_START"
    assert backwards.stopped_at.isoformat() in detail and T0.isoformat() in detail
    assert s.id in detail
    assert harness.session(s.id).status == "open"
    out = harness.feed(stop)  # the corrected stop is billed
    assert out.of(CaptureRequested, payment_id=s.payment_id)[0].amount == Money(240, "EUR")


# ------------------------------------------------------------------------- 3: phases
def test_energy_of_one_phase_holds_a_three_phase_session(harness: Harness) -> None:
    s = Session("l1only")
    harness.feed(s.authorized(3000))
    stop = s.stopped(30)
    out = harness.feed(
        s.started(None), s.meter(1, 0, wh(1000, "L1")), s.meter(2, 30, wh(6000, "L1")), stop
    )
    assert out.rejected[stop.envelope.event_id][0] == "PARTIAL_PHASES"
    assert out.of(CaptureRequested) == [] and out.of(CdrIssued) == []
    assert harness.held()[s.id].reason_code == "PARTIAL_PHASES"


def test_energy_of_one_phase_is_the_total_on_a_declared_single_phase_connector(
    database: str,
) -> None:
    s = Session("single", connector="2")
    declared = Harness(
        database, SessionsConfig(single_phase_connectors=frozenset({connector_key(s.station, "2")}))
    )
    declared.feed(tariff_event(), s.authorized(3000))
    out = declared.feed(
        s.started(None),
        s.meter(1, 0, wh(1000, "L1")),
        s.meter(2, 30, wh(6000, "L1")),
        s.stopped(30),
    )
    assert out.rejected == {}
    (capture,) = out.of(CaptureRequested, payment_id=s.payment_id)
    assert capture.amount == Money(240, "EUR")


# ------------------------------------------------------------------------- 4: visible reasons
def test_a_session_held_after_its_tariff_arrived_says_why_and_what_releases_it(
    database: str,
) -> None:
    late_tariff = f"T-LATEHARD-{RUN}"
    h = Harness(database)
    s = Session("laterdecrease", tariff_id=late_tariff)
    h.feed(s.authorized(3000))
    stop = s.stopped(30, 8000)
    out = h.feed(
        s.started(1000),
        s.meter(1, 10, wh(5000)),
        s.meter(2, 20, wh(3000)),  # the register goes down
        s.meter(3, 30, wh(8000)),
        stop,
    )
    assert out.rejected[stop.envelope.event_id][0] == "UNKNOWN_TARIFF"
    assert h.held()[s.id].reason_code == "UNKNOWN_TARIFF"

    out = h.feed(tariff_event(late_tariff))  # the tariff comes; the meter went down: held
    assert out.of(CaptureRequested) == []
    current = h.held()[s.id]
    assert (current.status, current.reason_code) == ("held", "METER_REGISTER_DECREASED")
    assert "seq_no=2" in current.detail and "release" in current.action
    assert "publish" not in current.action
    row = h.session(s.id)
    assert (row.reason_code, row.reason_detail) == ("METER_REGISTER_DECREASED", current.detail)
    history = [(r.reason_code, r.cleared_by, r.cleared_at is None) for r in h.history(s.id)]
    assert history == [("UNKNOWN_TARIFF", "held", False), ("METER_REGISTER_DECREASED", None, True)]


def test_held_sessions_are_listed_by_the_api_and_the_cli(app: App, harness: Harness) -> None:
    s = Session("listed")
    harness.feed(s.authorized(-1))
    harness.feed(*charged(s))
    headers = api_key(harness.url, NET)
    with TestClient(create_app(app.settings, database_url=harness.url), headers=headers) as client:
        answer = client.get("/sessions/held", params={"limit": 1000})
    assert answer.status_code == 200, answer.text
    (item,) = [i for i in answer.json()["items"] if i["session_id"] == s.id]
    assert item["status"] == "held" and item["reason_code"] == "INVALID_HOLD"
    assert "INVALID_AMOUNT" in item["detail"] and "authorized" in item["action"]
    assert item["since"] and item["cleared_at"] is None

    env = {"EVLEDGER_DATABASE_URL": harness.url, "COLUMNS": "3000"}  # no wrapped cells
    result = CliRunner().invoke(cli, ["sessions", "held", "--limit", "1000"], env=env)
    assert result.exit_code == 0, result.output
    (line,) = [x for x in result.output.splitlines() if s.id in x]
    assert "INVALID_HOLD" in line and "INVALID_AMOUNT" in line and "authorized" in line


def answer_of(client: TestClient, session_id: str) -> dict[str, Any]:
    answer = client.get(f"/sessions/{session_id}")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_one_session_is_shown_by_the_api_with_its_cdrs_and_signed_status(
    app: App, harness: Harness
) -> None:
    s = Session("shown")
    harness.feed(s.authorized(3000))
    harness.feed(*charged(s))
    headers = api_key(harness.url, NET)
    with TestClient(create_app(app.settings, database_url=harness.url), headers=headers) as client:
        answer = client.get(f"/sessions/{s.id}")
        before = client.get(f"/sessions/{s.id}", params={"known_at": "2000-01-01T00:00:00Z"})
        naive = client.get(f"/sessions/{s.id}", params={"known_at": "2026-01-01T00:00:00"})
        stopped = answer_of(client, s.id)["stopped_at"]
        at_stop = client.get(f"/sessions/{s.id}", params={"as_of": stopped})
        before_stop = client.get(f"/sessions/{s.id}", params={"as_of": "2000-01-01T00:00:00Z"})
        unknown = client.get("/sessions/S-nowhere")
        held = client.get("/sessions/held", params={"limit": 1})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["session_id"], body["status"], body["signed_status"]) == (s.id, "billed", None)
    (cdr,) = body["cdrs"]
    assert cdr["kind"] == "issued" and cdr["total_incl_vat"] == body["captured_minor"] > 0
    assert body["standing_cdr_id"] == cdr["cdr_id"]
    assert before.status_code == 200 and before.json()["cdrs"] == []
    assert before.json()["standing_cdr_id"] is None  # not billed yet, as known in 2000
    assert cdr["occurred_at"] == stopped  # a bill's business time is the session's stop
    assert at_stop.json()["standing_cdr_id"] == cdr["cdr_id"]
    assert before_stop.json()["cdrs"] == [] and before_stop.json()["standing_cdr_id"] is None
    assert naive.status_code == 422, naive.text
    assert unknown.status_code == 404 and unknown.json()["code"] == "UNKNOWN_SESSION"
    assert held.status_code == 200  # /sessions/held is still its own route


def test_a_declined_capture_moves_the_session_from_captured_to_receivable(
    harness: Harness,
) -> None:
    from ledger.events import ReceivableWrittenOff
    from ledger.settlement.outcomes import SettledAttempt, outcome_events

    s = Session("declined")
    harness.feed(s.authorized(3000))
    (request,) = harness.feed(*charged(s)).of(CaptureRequested, payment_id=s.payment_id)
    billed = harness.session(s.id)
    assert billed.captured_minor == request.amount.amount_minor > 0
    declined = SettledAttempt(False, "sandbox", None, None, "CARD_DECLINED", "no", ())
    (failed,), _ = outcome_events(request, declined)
    harness.feed(failed)
    owed = harness.session(s.id)
    assert (owed.captured_minor, owed.receivable_minor) == (0, request.amount.amount_minor)
    assert owed.status == "billed"  # the supply is billed all the same: a receivable
    harness.feed(
        ReceivableWrittenOff(
            Envelope.new("net", Source.internal),
            s.payment_id,
            request.cdr_id,
            request.amount,
            "insolvent",
        )
    )
    assert harness.session(s.id).receivable_minor == 0


def test_signed_values_of_a_session_started_and_stopped_in_one_batch_verify(
    harness: Harness,
) -> None:
    """The meter keys are loaded for sessions that start in the same batch as they stop (they
    were not: every such session came out METER_KEY_UNREGISTERED)."""
    import psycopg
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from entrypoints.simulate import sign_ocmf

    private = ec.generate_private_key(ec.SECP256R1())
    key = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    s = Session("signed-one-batch")
    with psycopg.connect(harness.url) as conn:
        store.register_meter_key(conn, s.station, key.hex(), "test meter")
        conn.commit()
    opening = sign_ocmf(private, f"tx-{s.name}", "B", 0, T0)
    closing = sign_ocmf(private, f"tx-{s.name}", "E", 5000, T0 + timedelta(minutes=30))
    harness.feed(s.authorized(3000))
    harness.feed(
        s.started(0),
        s.meter(1, 0, wh(0), SampledValue(opening, format="SignedData")),
        s.meter(2, 30, wh(5000), SampledValue(closing, format="SignedData")),
        s.stopped(30, 5000),
    )
    row = harness.session(s.id)
    assert (row.status, row.signed_status) == ("billed", "verified")
