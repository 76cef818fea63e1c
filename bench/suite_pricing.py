"""Pricing throughput: sessions priced per second, in process, under a realistic tariff.

The tariff has time-of-day energy prices, a charging-time fee with a step size, a parking fee
with a step size, a FLAT fee, min/max price and VAT; each session has ~20 meter intervals and
ends parked. The baseline prices the same sessions as a bare loop, ``sum(kWh) * price`` in
Decimal, so the ratio says what the OCPI rules cost. Target: >= 20,000 sessions/s.

Standalone: python -c "from bench import suite_pricing; from bench.harness import *;
write_results('pricing', suite_pricing.run(BenchContext()))"
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bench.harness import BenchContext, Metric, rate
from ledger.envelope import Envelope
from ledger.events import (
    ChargingState,
    ChargingStateChanged,
    MeterValueRecorded,
    SampledValue,
    SessionStarted,
    SessionStopped,
)
from ledger.pricing.price import price_session
from ledger.pricing.tariffs import Tariff, parse_tariff
from ledger.sessions.billing import Known, TariffCache
from ledger.sessions.lifecycle import SessionEvent, apply
from ledger.sessions.metering import MeteredInterval, MeteredSession
from ledger.sessions.rules import SessionsConfig
from ledger.sessions.session import MeterKey, Session, SessionFacts, SessionReading, TariffVersion
from ledger.sessions.signed import SignedValue, check_session

TARGET_PER_S = 20_000
ZONE = "Europe/Amsterdam"

REALISTIC_TARIFF = {
    "id": "BENCH-TOU",
    "currency": "EUR",
    "type": "REGULAR",
    "min_price": {"excl_vat": "0.50", "incl_vat": "0.61"},
    "max_price": {"excl_vat": "150.00"},
    "elements": [
        {"price_components": [{"type": "FLAT", "price": "0.35", "vat": "21", "step_size": 1}]},
        {
            "price_components": [{"type": "ENERGY", "price": "0.29", "vat": "21", "step_size": 1}],
            "restrictions": {"start_time": "23:00", "end_time": "07:00"},
        },
        {
            "price_components": [{"type": "ENERGY", "price": "0.49", "vat": "21", "step_size": 1}],
            "restrictions": {
                "start_time": "17:00",
                "end_time": "21:00",
                "day_of_week": ["MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY"],
            },
        },
        {
            "price_components": [
                {"type": "ENERGY", "price": "0.39", "vat": "21", "step_size": 1},
                {"type": "TIME", "price": "0.60", "vat": "21", "step_size": 60},
            ]
        },
        {
            "price_components": [
                {"type": "PARKING_TIME", "price": "9.00", "vat": "21", "step_size": 300}
            ],
            "restrictions": {"start_time": "07:00", "end_time": "23:00"},
        },
    ],
}


def make_sessions(n: int, seed: int = 42) -> list[MeteredSession]:
    """``n`` sessions of 20 intervals (17 charging, 3 parked) spread over a month of days."""
    rng = random.Random(seed)
    sessions = []
    base = datetime(2026, 3, 1, tzinfo=UTC)
    for k in range(n):
        start = base + timedelta(days=rng.randrange(31), minutes=rng.randrange(24 * 60))
        power_w = rng.choice([7_400, 11_000, 22_000, 50_000])
        intervals = []
        at = start
        for i in range(20):
            duration = timedelta(seconds=rng.randrange(120, 600))
            charging = i < 17
            wh = power_w * int(duration.total_seconds()) // 3600 if charging else 0
            intervals.append(MeteredInterval(at, at + duration, wh, charging))
            at += duration
        sessions.append(MeteredSession(f"B-{k}", start, at, ZONE, tuple(intervals)))
    return sessions


def baseline_total(sessions: list[MeteredSession], price: Decimal) -> Decimal:
    """The trivial loop: energy in kWh times one price, in Decimal."""
    total = Decimal(0)
    for s in sessions:
        kwh = sum((Decimal(i.energy_wh) for i in s.intervals), Decimal(0)) / 1000
        total += kwh * price
    return total


def price_all(tariff: Tariff, sessions: list[MeteredSession]) -> int:
    total = 0
    for s in sessions:
        total += price_session(tariff, s).total_incl_vat.amount_minor
    return total


def session_events(sessions: list[MeteredSession]) -> list[list[SessionEvent]]:
    """Each metered session as the station reports it: SessionStarted, Charging, one
    MeterValueRecorded per interval end (the register), SuspendedEV when parking starts,
    SessionStopped."""
    out = []
    for s in sessions:

        def env(at: datetime) -> Envelope:
            return Envelope.new("bench", occurred_at=at)

        sid = s.session_id
        events: list[SessionEvent] = [
            SessionStarted(
                env(s.started_at),
                sid,
                "CS",
                "CS*1",
                "1",
                f"TX-{sid}",
                "BENCH-TOU",
                "NL",
                ZONE,
                None,
                0,
            ),
            ChargingStateChanged(env(s.started_at), sid, ChargingState.Charging, s.started_at),
        ]
        register = 0
        for seq, i in enumerate(s.intervals, 1):
            register += int(i.energy_wh)
            if not i.charging and s.intervals[seq - 2].charging:
                events.append(
                    ChargingStateChanged(env(i.start), sid, ChargingState.SuspendedEV, i.start)
                )
            events.append(
                MeterValueRecorded(
                    env(i.end), sid, "CS", f"TX-{sid}", seq, i.end, [SampledValue(str(register))]
                )
            )
        events.append(SessionStopped(env(s.stopped_at), sid, s.stopped_at, register))
        out.append(events)
    return out


def apply_all(known: Known, sessions: list[list[SessionEvent]]) -> int:
    """Fold every session's events through the session rules, as the processor does between
    its loads and stores; returns the sum of what was billed (minor units)."""
    total = 0
    for events in sessions:
        session: Session | None = None
        readings: dict[MeterKey, SessionReading] = {}
        states: list[tuple[datetime, ChargingState]] = []
        for event in events:
            applied = apply(SessionFacts(event.session_id, session, readings, states), event, known)
            if applied.session is not None:
                session = applied.session
            if applied.reading is not None:
                readings[applied.reading.key] = applied.reading
            if applied.state is not None:
                states.append(applied.state)
            total += sum(c.total_incl_vat for c in applied.cdrs)
    return total


def signed_sessions(count: int) -> tuple[list[tuple[SignedValue, SignedValue]], str]:
    """``count`` sessions' signed start and end records (OCMF, ECDSA secp256r1, as a meter
    signs them), one meter key for all; and that key (DER hex)."""
    private = ec.generate_private_key(ec.SECP256R1())
    key = (
        private.public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        .hex()
    )

    def record(tx: str, kwh: float, at: str) -> SignedValue:
        reading = {"TM": f"{at},000+0000 S", "TX": tx, "RV": kwh, "RI": "1-b:1.8.0", "RU": "kWh",
                   "RT": "AC", "ST": "G"}  # fmt: skip
        payload = json.dumps(
            {"FV": "1.0", "GI": "bench", "GS": "B-1", "GV": "1", "PG": "T1", "MV": "Bench",
             "MM": "M1", "MS": "METER-1", "IS": False, "IL": "NONE", "IF": [], "IT": "NONE",
             "ID": "", "RD": [reading]},
            separators=(",", ":"),
        )  # fmt: skip
        signature = private.sign(payload.encode(), ec.ECDSA(hashes.SHA256()))
        return SignedValue(
            f'OCMF|{payload}|{{"SA":"ECDSA-secp256r1-SHA256","SD":"{signature.hex()}"}}'
        )

    out = []
    for n in range(count):
        kwh = 5 + n % 40
        out.append((record("B", 100.0, "2026-11-20T10:00:00"),
                    record("E", 100.0 + kwh, "2026-11-20T11:00:00")))  # fmt: skip
    return out, key


def verify_all(sessions: list[tuple[SignedValue, SignedValue]], key: str) -> int:
    """Check every session's signed records as the sessions processor does; how many verified."""
    verified = 0
    for n, (start, end) in enumerate(sessions):
        billed = Decimal((5 + n % 40) * 1000)
        verified += check_session((start, end), [key], billed, Decimal(1)).verified
    return verified


def run(ctx: BenchContext) -> list[Metric]:
    tariff = parse_tariff(REALISTIC_TARIFF)
    sessions = make_sessions(ctx.n(5_000))
    price_all(tariff, sessions[:200])  # warm the plan's day cache as a running processor would
    baseline = Metric(
        "baseline_sum_kwh_times_price",
        rate(len(sessions), lambda: baseline_total(sessions, Decimal("0.39"))),
        "sessions/s",
        note="Decimal sum(kWh) * price per session, same sessions",
    )
    priced = rate(len(sessions), lambda: price_all(tariff, sessions))
    cold = rate(len(sessions), lambda: price_all(parse_tariff(REALISTIC_TARIFF), sessions), 1)
    verdict = "meets" if priced >= TARGET_PER_S else "BELOW"
    version = TariffVersion(
        "BENCH-TOU", 1, "EUR", json.dumps(REALISTIC_TARIFF), datetime(2026, 1, 1, tzinfo=UTC), "t"
    )
    known = Known({"BENCH-TOU": [version]}, {}, TariffCache(), SessionsConfig())
    reported = session_events(sessions)
    assert apply_all(known, reported[:50]) == price_all(tariff, sessions[:50])
    through_rules = rate(len(sessions), lambda: apply_all(known, reported))
    priced_metric = Metric("sessions_priced_per_s", priced, "sessions/s")
    signed, key = signed_sessions(ctx.n(300))
    assert verify_all(signed[:20], key) == 20  # a bench of failures would measure nothing
    verified = rate(len(signed), lambda: verify_all(signed, key))
    return [
        baseline,
        Metric.against(
            "sessions_priced_per_s",
            priced,
            "sessions/s",
            baseline,
            note=f"OCPI tariff (TOU energy, TIME, PARKING_TIME, FLAT, min/max, VAT), 20 intervals;"
            f" {verdict} target {TARGET_PER_S:,}/s",
        ),
        Metric.against(
            "sessions_priced_per_s_cold_tariff",
            cold,
            "sessions/s",
            baseline,
            note="freshly parsed tariff: plan and per-day local-time boundaries built on the way",
        ),
        Metric.against(
            "sessions_through_rules_per_s",
            through_rules,
            "sessions/s",
            priced_metric,
            note="ledger.sessions.lifecycle.apply over each session's 24 events (start, states,"
            " 20 readings, stop: meter rebuilt, priced, CDR and event built); ratio to pricing"
            " the same sessions alone",
        ),
        Metric.against(
            "signed_sessions_verified_per_s",
            verified,
            "sessions/s",
            priced_metric,
            note=f"two OCMF records per session (ECDSA secp256r1, pyocmf) parsed, verified and"
            f" compared with the billed energy: {1000 / verified:.2f} ms per session; ratio to"
            " pricing a session",
        ),
    ]
