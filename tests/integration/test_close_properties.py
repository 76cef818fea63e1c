"""Generated months of traffic through the ledger's own handler and tables (no Kafka: the
handler is driven batch by batch, in processing-time order), with each month closed a few days
after its end. Checked against an independent model of when each VAT amount must be booked:

- the close pack's VAT return equals the model's VAT for the period, per country;
- a closed period's figures never change, whatever arrives later (late captures of its
  supplies, refunds, write-offs);
- every CDR's amount is in exactly one of captured, open receivable, collected or written off;
- the trial balance balances at every period's end.
"""

from __future__ import annotations

import itertools
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors import period_close, postgres
from connectors.checkpoint import postgres_batch
from connectors.kafka import Consumed
from entrypoints.bootstrap import App
from ledger.accounting.periods import Period
from ledger.dimensions import Dimension
from ledger.envelope import Envelope, Source
from ledger.events import (
    CaptureFailed,
    PaymentAuthorized,
    PaymentCaptured,
    PaymentRefunded,
    ReceivableCollected,
    ReceivableWrittenOff,
    RevenueLine,
)
from ledger.money import Money
from processors.base import Effects
from processors.ledger_projector import LedgerHandler

START = datetime(2026, 9, 1, tzinfo=UTC)
MONTHS = ("2026-09", "2026-10", "2026-11")
CLOSE_AFTER = timedelta(days=4)
RATES = {"DE": 19, "FR": 20}


@dataclass(frozen=True)
class Sessions:
    """One payment per session: supplied on ``day``, then captured, or declined and maybe
    collected or written off, and maybe partly refunded."""

    day: int
    country: str
    net: int
    outcome: str  # captured | declined | written_off | relieved | collected
    delay: int  # days from supply to the capture (or its failure)
    refund: int  # minor units refunded after a capture (0: none)


SESSIONS = st.lists(
    st.builds(
        Sessions,
        day=st.integers(0, 88),
        country=st.sampled_from(sorted(RATES)),
        net=st.integers(100, 9_000),
        outcome=st.sampled_from(["captured", "declined", "written_off", "relieved", "collected"]),
        delay=st.integers(0, 12),
        refund=st.integers(0, 300),
    ),
    min_size=1,
    max_size=12,
)


def traffic(sessions: list[Sessions], network: str) -> list[tuple[datetime, Any, int]]:
    """(processing time, event, VAT effect in minor units) in processing-time order."""
    out: list[tuple[datetime, Any, int]] = []
    for n, s in enumerate(sessions):
        supplied = START + timedelta(days=s.day, hours=n % 20)
        vat = s.net * RATES[s.country] // 100
        gross, pid, cdr = s.net + vat, f"P-{network}-{n}", f"cdr-{n}"
        lines = [RevenueLine(Dimension.ENERGY, s.net, vat, str(RATES[s.country]))]
        at = supplied + timedelta(days=s.delay, minutes=5)

        def env(when: datetime) -> Envelope:
            return Envelope.new(network, Source.psp, occurred_at=when)

        out.append((supplied, PaymentAuthorized(env(supplied), pid, "sandbox", f"pi-{n}",
                                                Money(gross + 500, "EUR"), "card"), 0))  # fmt: skip
        if s.outcome == "captured":
            out.append((at, PaymentCaptured(env(at), pid, f"c-{n}", Money(gross, "EUR"), lines,
                                            True, "sandbox", f"ch-{n}", None, "ST", s.country,
                                            supplied, cdr), vat))  # fmt: skip
            if s.refund and s.refund < gross:
                later = at + timedelta(days=3)
                refund_vat = _refund_vat(s.refund, s.net, vat)
                refund = PaymentRefunded(env(later), pid, f"r-{n}", Money(s.refund, "EUR"), [])
                out.append((later, refund, -refund_vat))
            continue
        out.append((at, CaptureFailed(env(at), pid, Money(gross, "EUR"), "DECLINED", "no", cdr,
                                      lines, "ST", s.country, supplied), vat))  # fmt: skip
        later = at + timedelta(days=20)
        if s.outcome in ("written_off", "relieved"):
            relief = s.outcome == "relieved"
            out.append((later, ReceivableWrittenOff(env(later), pid, cdr, Money(gross, "EUR"),
                                                    "insolvent", relief),
                        -vat if relief else 0))  # fmt: skip
        elif s.outcome == "collected":
            out.append((later, ReceivableCollected(env(later), pid, cdr, Money(gross, "EUR"),
                                                   "bank"), 0))  # fmt: skip
    return sorted(out, key=lambda x: x[0])


def _refund_vat(amount: int, net: int, vat: int) -> int:
    """The VAT part of a pro-rata refund, as posting_rules.allocate_refund splits it."""
    from ledger.accounting.posting_rules import split_pro_rata

    return split_pro_rata(amount, [net, vat])[1]


def close_points() -> list[tuple[datetime, Period]]:
    return [(Period.of(m, "UTC").ends_at + CLOSE_AFTER, Period.of(m, "UTC")) for m in MONTHS]


@pytest.fixture(scope="module")
def server(app: App) -> Iterator[str]:
    yield app.database_url


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(SESSIONS)
def test_generated_months_close_to_the_model_and_never_change(
    server: str, sessions: list[Sessions]
) -> None:
    network = uuid.uuid4().hex[:8]
    name = f"close_props_{network}"
    url = postgres.create_database(server, name)
    try:
        _check(url, traffic(sessions, network), len(sessions))
    finally:
        postgres.drop_database(server, name)


def _check(url: str, events: list[tuple[datetime, Any, int]], count: int) -> None:
    handler, offsets = LedgerHandler(), itertools.count()
    expected: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    packs: dict[str, dict[str, period_close.Table]] = {}
    locked_until: datetime | None = None
    pending = close_points()
    with psycopg.connect(url) as conn:
        for at, event, vat in events:
            while pending and pending[0][0] <= at:  # a close is due before this event
                when, period = pending.pop(0)
                period_close.close(conn, period, "test", lambda t: {}, now=when)
                packs[period.name] = period_close.figures(conn, period)
                locked_until = period.ends_at
            booked = event.supplied_at if getattr(event, "supplied_at", None) else at
            if locked_until is not None and booked < locked_until:
                booked = locked_until  # relocated into the first open period
            country = getattr(event, "country", None) or _country_of(events, event)
            if vat:
                expected[f"{booked:%Y-%m}"][country] += vat
            record = Consumed("payments.events", 0, next(offsets), None, None, event)
            with conn.transaction():
                tx = Effects(postgres_batch(conn), lambda topic, e: b"", "test", "net")
                handler.handle(tx, [record])
                assert not tx.rejected, tx.rejected
        for when, period in pending:
            period_close.close(conn, period, "test", lambda t: {}, now=when)
            packs[period.name] = period_close.figures(conn, period)
        for name, pack in packs.items():
            now = period_close.figures(conn, Period.of(name, "UTC"))
            stable = {k: v for k, v in now.items() if k != "receivables_ageing"}
            assert stable == {k: v for k, v in pack.items() if k != "receivables_ageing"}, name
            payable: dict[str, int] = defaultdict(int)
            for row in pack["vat_return"][1]:  # country, rate, currency, base, ..., payable
                payable[row[0]] += row[6]
            model = {c: v for c, v in expected[name].items() if v}
            assert {c: v for c, v in payable.items() if v} == model, name
            balances: dict[str, int] = defaultdict(int)
            for _, currency, balance in pack["trial_balance"][1]:
                balances[currency] += balance
            assert all(v == 0 for v in balances.values()), name
        states = conn.execute("SELECT state FROM payments").fetchall()
    assert len(states) == count
    for (state,) in states:
        for owed in state["receivables"]:
            assert (
                owed["collected"]
                + owed["written_off"]
                + (owed["amount"] - owed["collected"] - owed["written_off"])
                == owed["amount"]
            )
            assert owed["amount"] - owed["collected"] - owed["written_off"] in (0, owed["amount"])


def _country_of(events: list[tuple[datetime, Any, int]], event: Any) -> str:
    """The country of supply of a refund or receivable settlement: its payment's capture's."""
    for _, other, _ in events:
        if getattr(other, "payment_id", None) == event.payment_id and getattr(
            other, "country", None
        ):
            return str(other.country)
    raise AssertionError(f"no country for {event}")
