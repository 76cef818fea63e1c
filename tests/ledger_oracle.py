"""An independent recomputation of the ledger projection, and the streams the tests feed it.

``recompute(records)`` folds consumed records one at a time, in memory, with the same rules the
processor base and the domain promise (docs/accounting.md, docs/errors.md): undecodable →
rejected; a payment event whose event_id was already applied to its payment → duplicate (a
rejected one is tried again: that is how a re-drive applies); any other event whose event_id was
seen before (applied or rejected) → duplicate; otherwise ``ledger.payments.apply`` /
``posting_rules.payout`` / not posted, or rejected with the domain's code. Balances are
summed posting by posting into plain dicts. It shares nothing with the projector's batching,
state loading, SQL, locking or aggregation, which is what the integration tests check against it.

``mixed_stream`` builds a deterministic stream with every flow the ledger books, plus the bad
input it must refuse.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from confluent_kafka import TopicPartition

from connectors.kafka import Consumed
from entrypoints.bootstrap import App
from ledger import payments
from ledger.accounting import posting_rules as rules
from ledger.dimensions import Dimension
from ledger.envelope import Envelope, Source
from ledger.errors import ValidationError
from ledger.events import (
    AuthorizationExpired,
    AuthorizationFailed,
    AuthorizationIncremented,
    CdrIssued,
    DisputeOpened,
    DisputeOutcome,
    DisputeResolved,
    ExternalRefundReported,
    PaymentAuthorized,
    PaymentCaptured,
    PaymentRefunded,
    PaymentVoided,
    PayoutPaid,
    ProviderDisputeUpdated,
    ProviderRouted,
    RefundFailed,
    RevenueLine,
)
from ledger.money import Money
from ledger.payments.state import PaymentState

PAYMENT_EVENTS: tuple[type, ...] = payments.PaymentEvent.__args__


@dataclass
class Book:
    """What the projection must hold after the records."""

    balances: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    """(account, currency) -> [debit, credit]"""
    states: dict[str, PaymentState] = field(default_factory=dict)
    references: dict[tuple[str, str], str] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    """event_ids of the events that are not payment events (deduplicated by processed_events)"""
    applied_to: dict[str, set[str]] = field(default_factory=dict)
    """payment_id -> event_ids applied to that payment"""
    entry_ids: list[str] = field(default_factory=list)
    applied: int = 0
    duplicates: int = 0
    rejected: int = 0
    rejections: dict[str, str] = field(default_factory=dict)
    """event_id (or topic/partition/offset when undecodable) -> reason code"""

    def nets(self) -> dict[tuple[str, str], int]:
        return {k: d - c for k, (d, c) in self.balances.items() if d - c}

    def _post(self, entries: Iterable[Any]) -> None:
        for entry in entries:
            self.entry_ids.append(entry.entry_id)
            for p in entry.postings:
                row = self.balances.setdefault((p.account.code, p.amount.currency), [0, 0])
                amount = p.amount.amount_minor
                if amount > 0:
                    row[0] += amount
                else:
                    row[1] -= amount

    def feed(self, record: Consumed) -> None:
        if record.error is not None:
            self.rejected += 1
            self.rejections[f"{record.topic}/{record.partition}/{record.offset}"] = (
                record.error.code
            )
            return
        event = record.event
        event_id = event.envelope.event_id
        if isinstance(event, PAYMENT_EVENTS):
            if event_id in self.applied_to.get(self._payment_of(event) or "", ()):
                self.duplicates += 1
                return
        elif event_id in self.seen:
            self.duplicates += 1
            return
        else:
            self.seen.add(event_id)
        try:
            self._book(event)
        except ValidationError as exc:
            self.rejected += 1
            self.rejections.setdefault(event_id, exc.code)  # a re-driven copy may fail again
            return
        self.applied += 1

    def _payment_of(self, event: Any) -> str | None:
        if isinstance(event, ExternalRefundReported):
            return self.references.get((event.provider, event.provider_reference))
        return cast(str, event.payment_id)

    def _book(self, event: Any) -> None:  # Any: isinstance on a runtime tuple narrows to object
        if isinstance(event, PayoutPaid):
            self._post(rules.payout(event))
            return
        if isinstance(event, (*rules.NOT_POSTED, ProviderRouted, AuthorizationFailed)):
            return  # informational: applied, no entries, no payment state
        if not isinstance(event, PAYMENT_EVENTS):
            raise ValidationError(f"not booked: {type(event).__name__}")
        pid = self._payment_of(event)
        money_event: payments.PaymentEvent = cast(payments.PaymentEvent, event)
        result = payments.apply(self.states.get(pid) if pid else None, money_event)
        state = result.state
        self.applied_to.setdefault(state.payment_id, set()).add(event.envelope.event_id)
        self.states[state.payment_id] = state
        for ref in state.provider_references:
            self.references.setdefault((state.provider, ref), state.payment_id)
        self._post(result.entries)


def recompute(records: Iterable[Consumed]) -> Book:
    """The book after ``records``: payments and billing first, then provider events (the tests
    publish provider events only after the payments they refer to were projected)."""
    ordered = sorted(records, key=lambda r: r.topic == "provider.events")  # stable
    book = Book()
    for record in ordered:
        book.feed(record)
    return book


# -- reading back exactly what a group consumed -------------------------------------------------
def read_range(
    app: App, starts: dict[tuple[str, int], int], stops: dict[tuple[str, int], int]
) -> list[Consumed]:
    """Every record in [start, stop) of each partition, in partition order."""
    wanted = {
        tp: (starts.get(tp, 0), stop) for tp, stop in stops.items() if stop > starts.get(tp, 0)
    }
    if not wanted:
        return []
    consumer = app.consumer(f"oracle-{time.time_ns()}")
    consumer.assign_at({tp: start for tp, (start, _) in wanted.items()})
    out: list[Consumed] = []
    pending = set(wanted)
    deadline = time.monotonic() + 120
    try:
        while pending and time.monotonic() < deadline:
            for r in consumer.poll(5000, 0.5):
                if r.offset < wanted[(r.topic, r.partition)][1]:
                    out.append(r)
            positions = consumer.consumer.position([TopicPartition(t, p) for t, p in pending])
            pending = {(tp.topic, tp.partition) for tp in positions
                       if tp.offset < wanted[(tp.topic, tp.partition)][1]}  # fmt: skip
    finally:
        consumer.close()
    if pending:
        raise AssertionError(f"could not read back partitions {sorted(pending)}")
    return out


# -- the mixed stream ---------------------------------------------------------------------------
@dataclass
class Stream:
    """Events in publish order; ``phase2`` refers to payments in ``phase1`` (provider events)."""

    phase1: list[Any] = field(default_factory=list)
    phase2: list[Any] = field(default_factory=list)
    expect_rejected: dict[str, str] = field(default_factory=dict)
    """event_id -> the reason code the ledger must give it"""
    duplicates: int = 0


COUNTRIES = {"DE": 19, "NL": 21, "FR": 20}


def _line(dimension: Dimension, gross: int, country: str) -> RevenueLine:
    net = gross * 100 // (100 + COUNTRIES[country])
    return RevenueLine(dimension, net, gross - net, str(COUNTRIES[country]))


@dataclass(frozen=True)
class _Maker:
    """Builds one payment's events."""

    network_id: str
    pid: str
    provider: str
    country: str
    station: str
    at: datetime

    def env(self, minutes: int, source: Source = Source.psp) -> Envelope:
        return Envelope.new(
            self.network_id, source, occurred_at=self.at + timedelta(minutes=minutes)
        )

    def capture(
        self, minutes: int, gross: int, final: bool, fee: int | None = None, cid: str | None = None
    ) -> PaymentCaptured:
        energy = gross * 4 // 5
        lines = [
            _line(Dimension.ENERGY, energy, self.country),
            _line(Dimension.TIME, gross - energy, self.country),
        ]
        pid = self.pid
        return PaymentCaptured(self.env(minutes), pid, cid or f"C-{pid}-{minutes}",
                               Money(gross, "EUR"), lines, final, self.provider,
                               f"ch-{pid}-{minutes}", Money(fee, "EUR") if fee else None,
                               self.station, self.country)  # fmt: skip


def mixed_stream(network_id: str, payments_count: int, seed: int = 7) -> Stream:
    """Authorizations, increments, partial and final captures with fees, voids, expiries,
    refunds (pro rata, by line, failed after success, external), disputes won and lost, CDRs,
    payouts; plus over-captures, over-refunds, business duplicates, redelivered event ids and
    events before their authorization."""
    rng = random.Random(seed)
    s = Stream()
    start = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)
    captured_by_provider: dict[str, int] = {}
    for i in range(payments_count):
        pid = f"P-{network_id}-{i:06d}"
        provider = ("sandbox", "stripe")[i % 2]
        country = list(COUNTRIES)[i % 3]
        station = f"{country}*EVL*E{i % 7:04d}"
        at = start + timedelta(hours=7 * i % (24 * 20), minutes=i % 60)

        env = _Maker(network_id, pid, provider, country, station, at).env

        scale = rng.randint(1, 6)
        hold = 2000 * scale
        auth = PaymentAuthorized(env(0, Source.terminal), pid, provider, f"ref-{pid}",
                                 Money(hold, "EUR"), "card", f"S-{pid}", station)  # fmt: skip
        pattern = i % 8
        events: list[Any] = []
        capture_total = 0
        capture = _Maker(network_id, pid, provider, country, station, at).capture

        if pattern == 0:  # partial + final capture, pro rata refund, line refund that then fails
            c1, c2 = capture(30, hold // 4, False), capture(60, hold // 2, True, fee=25 * scale)
            time_line = _line(Dimension.TIME, 100, country)
            r2 = PaymentRefunded(env(200), pid, f"R2-{pid}", Money(100, "EUR"), [time_line])
            r1 = PaymentRefunded(env(120), pid, f"R1-{pid}", Money(hold // 8, "EUR"))
            failed = RefundFailed(env(260), pid, r2.refund_id, Money(100, "EUR"), "PSP", "late")
            events += [auth, c1, c2, r1, r2, failed]
            capture_total += hold // 4 + hold // 2 - 25 * scale
        elif pattern == 1:  # void, then a late expiry timer (applied, posts nothing)
            events += [
                auth,
                PaymentVoided(env(15), pid, "cancelled"),
                AuthorizationExpired(env(99), pid),
            ]
        elif pattern == 2:  # increment, final capture of all of it, over-refund
            inc = AuthorizationIncremented(env(5), pid, Money(1000, "EUR"))
            c = capture(40, hold + 1000, True)
            over = PaymentRefunded(env(90), pid, f"R-{pid}", Money(hold + 1001, "EUR"))
            events += [auth, inc, c, over]
            s.expect_rejected[over.envelope.event_id] = "REFUND_EXCEEDS_CAPTURED"
            capture_total += hold + 1000
        elif pattern == 3:  # over-capture, then a capture that fits
            too_much = capture(20, hold + 1, False)
            events += [auth, too_much, capture(25, hold, True)]
            s.expect_rejected[too_much.envelope.event_id] = "CAPTURE_EXCEEDS_AUTHORIZATION"
            capture_total += hold
        elif pattern == 4:  # capture before its authorization (out of order), then expiry
            early = capture(1, hold // 2, True)
            events += [early, auth, AuthorizationExpired(env(7 * 24 * 60), pid)]
            s.expect_rejected[early.envelope.event_id] = "UNKNOWN_PAYMENT"
        elif pattern == 5:  # partial capture, void of the rest, dispute won or lost
            c = capture(10, hold // 2, False)
            opened = DisputeOpened(env(500), pid, f"D-{pid}", Money(hold // 4, "EUR"), "fraudulent")
            outcome = DisputeOutcome.WON if i % 16 == 5 else DisputeOutcome.LOST
            events += [auth, c, PaymentVoided(env(11), pid),
                       opened, DisputeResolved(env(900), pid, opened.dispute_id, outcome,
                                               Money(hold // 4, "EUR"))]  # fmt: skip
            capture_total += hold // 2 - (hold // 4 if outcome is DisputeOutcome.LOST else 0)
        elif pattern == 6:  # final capture; refunded later at the provider's dashboard
            c = capture(45, hold - 500, True, fee=30)
            events += [auth, c]
            s.phase2.append(ExternalRefundReported(env(2000), provider, c.provider_reference or "",
                                                   f"re-{pid}", Money(700, "EUR")))  # fmt: skip
            s.phase2.append(ProviderDisputeUpdated(env(2100), provider, c.provider_reference or "",
                                                   f"PD-{pid}", "needs_response",
                                                   Money(100, "EUR")))  # fmt: skip
            capture_total += hold - 500 - 30 - 700
        else:  # capture, business duplicate (same capture_id), CDR
            c = capture(50, hold // 3, False, cid=f"C-{pid}")
            again = capture(51, hold // 3, False, cid=f"C-{pid}")
            net = Money(sum(x.amount_excl_vat for x in c.lines), "EUR")
            cdr = CdrIssued(env(49, Source.internal), f"S-{pid}", f"CDR-{pid}", station,
                            "TARIFF-STD", 1, country, 12_000, 3600, 0, list(c.lines), net,
                            c.amount, pid)  # fmt: skip
            events += [auth, cdr, c, again]
            s.expect_rejected[again.envelope.event_id] = "DUPLICATE_CAPTURE"
            capture_total += hold // 3
        if rng.random() < 0.2:  # a flaky upstream redelivers an event: same event_id
            again = rng.choice(events)
            events.append(again)
            # A repeat of an applied event is a duplicate; one of a rejected event is judged
            # again (that is how a re-drive applies), against the payment as it is by then.
            s.duplicates += again.envelope.event_id not in s.expect_rejected
        s.phase1 += events
        captured_by_provider[provider] = captured_by_provider.get(provider, 0) + capture_total
    for n, (provider, total) in enumerate(sorted(captured_by_provider.items())):
        paid = total // 2
        s.phase2.append(PayoutPaid(Envelope.new(network_id, Source.psp,
                                                occurred_at=start + timedelta(days=25)),
                                   provider, f"po-{network_id}-{n}", Money(paid - 40, "EUR"),
                                   Money(40, "EUR")))  # fmt: skip
    return s


def events_by_id(stream: Stream) -> Iterator[tuple[str, Any]]:
    for event in [*stream.phase1, *stream.phase2]:
        yield event.envelope.event_id, event
