"""Hypothesis properties of the ledger over random event sequences, valid and invalid alike."""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.payment_state_form import state_from_dict, state_to_dict
from ledger.accounting import accounts
from ledger.accounting.accounts import AccountType
from ledger.accounting.balances import Balances, View, aggregate
from ledger.accounting.journal import JournalEntry
from ledger.accounting.posting_rules import split_pro_rata
from ledger.dimensions import Dimension
from ledger.envelope import Envelope, Source
from ledger.events import (
    AuthorizationExpired,
    AuthorizationIncremented,
    CaptureFailed,
    DisputeOpened,
    DisputeOutcome,
    DisputeResolved,
    ExternalRefundReported,
    PaymentAuthorized,
    PaymentCaptured,
    PaymentRefunded,
    PaymentVoided,
    RefundFailed,
    RevenueLine,
)
from ledger.money import Money
from ledger.payments.errors import PaymentRejected
from ledger.payments.rules import PaymentEvent, apply
from ledger.payments.state import PaymentState, PaymentStatus

AT = datetime(2025, 3, 1, tzinfo=UTC)
PROVIDERS = {"p1": "stripe", "p2": "braintree"}
SMALL_AMOUNTS = st.sampled_from([1, 100, 333, 1000, 2500])
AMOUNTS = st.one_of(SMALL_AMOUNTS, st.integers(0, 6000))


@st.composite
def lines(draw: st.DrawFn) -> list[RevenueLine]:
    return draw(
        st.lists(
            st.builds(
                RevenueLine,
                st.sampled_from(list(Dimension)),
                st.integers(0, 900),
                st.integers(0, 170),
            ),
            max_size=3,
        )
    )


KINDS = st.sampled_from(
    ["capture"] * 4
    + ["refund"] * 3
    + ["dispute", "resolve", "resolve", "refund_failed", "external_refund"]
    + ["increment", "void", "expire", "capture_failed", "authorize"]
)
REFUND_AMOUNTS = {"r1": 33, "r2": 100, "r3": 250}
DISPUTE_AMOUNTS = {"d1": 50, "d2": 10}


@st.composite
def payment_events(draw: st.DrawFn) -> list[PaymentEvent]:
    """Events for two payments: mostly a plausible flow after an authorization, with wrong
    amounts, currencies, ids and orders mixed in often enough to reach every rule."""
    currencies = {"p1": draw(st.sampled_from(["EUR", "JPY", "KWD"])), "p2": "EUR"}
    count = draw(st.integers(1, 30))
    events: list[PaymentEvent] = []
    for i in range(count):
        pid = draw(st.sampled_from(["p1", "p1", "p2"]))
        currency = draw(st.sampled_from([currencies[pid]] * 12 + ["USD"]))
        env = Envelope(f"{pid}-ev-{i}", AT, AT, Source.psp, "acme")
        provider = PROVIDERS[pid]

        def money(minor: int, currency: str = currency) -> Money:
            return Money(minor, currency)

        def usually(value: int) -> int:
            return draw(st.sampled_from([value] * 8 + [1, 2500]))

        kind = draw(KINDS)
        event: PaymentEvent
        if kind == "authorize":
            amount = money(draw(st.integers(0, 8000)))
            event = PaymentAuthorized(env, pid, provider, f"{pid}-ref", amount, "card")
        elif kind == "increment":
            event = AuthorizationIncremented(env, pid, money(draw(AMOUNTS)))
        elif kind == "capture":
            capture_lines = draw(lines().filter(bool) | lines())
            total = sum(line.amount_excl_vat + line.vat_amount for line in capture_lines)
            total += draw(st.sampled_from([0] * 9 + [1]))
            fee = draw(st.none() | st.integers(0, 90).map(money))
            event = PaymentCaptured(
                env,
                pid,
                draw(st.sampled_from(["c1", "c2", "c3", "c4"])),
                money(total),
                capture_lines,
                draw(st.sampled_from([False, False, True])),
                provider,
                f"{pid}-charge",
                fee,
                draw(st.sampled_from(["s1", "s2", None])),
                draw(st.sampled_from(["DE", "FR", None])),
            )
        elif kind == "void":
            event = PaymentVoided(env, pid)
        elif kind == "expire":
            event = AuthorizationExpired(env, pid)
        elif kind == "refund":
            rid = draw(st.sampled_from(sorted(REFUND_AMOUNTS)))
            refund_lines = draw(st.sampled_from([[], [], []]) | lines())
            total = sum(line.amount_excl_vat + line.vat_amount for line in refund_lines)
            total = total if refund_lines else usually(REFUND_AMOUNTS[rid])
            event = PaymentRefunded(env, pid, rid, money(total), refund_lines)
        elif kind == "refund_failed":
            rid = draw(st.sampled_from(sorted(REFUND_AMOUNTS)))
            amount = money(usually(REFUND_AMOUNTS[rid]))
            event = RefundFailed(env, pid, rid, amount, "failed", "x")
        elif kind == "dispute":
            dispute_id = draw(st.sampled_from(sorted(DISPUTE_AMOUNTS)))
            amount = money(usually(DISPUTE_AMOUNTS[dispute_id]))
            event = DisputeOpened(env, pid, dispute_id, amount)
        elif kind == "resolve":
            dispute_id = draw(st.sampled_from(sorted(DISPUTE_AMOUNTS)))
            outcome = draw(st.sampled_from(list(DisputeOutcome)))
            amount = money(usually(DISPUTE_AMOUNTS[dispute_id]))
            event = DisputeResolved(env, pid, dispute_id, outcome, amount)
        elif kind == "external_refund":
            reference = draw(st.sampled_from([f"{pid}-ref", f"{pid}-charge", "nope"]))
            refund_ref = draw(st.sampled_from(["x1", "x2"]))
            event = ExternalRefundReported(env, provider, reference, refund_ref, money(100))
        else:
            event = CaptureFailed(env, pid, money(draw(AMOUNTS)), "declined", "x")
        events.append(event)
    # Most payments start with their authorization; some get it late or never (out of order).
    for pid in ("p1", "p2"):
        where = draw(st.sampled_from(["first"] * 8 + ["later", "never"]))
        if where == "never":
            continue
        amount = Money(draw(st.integers(1000, 8000)), currencies[pid])
        env = Envelope(f"{pid}-auth", AT, AT, Source.psp, "acme")
        auth = PaymentAuthorized(env, pid, PROVIDERS[pid], f"{pid}-ref", amount, "card")
        position = 0 if where == "first" else draw(st.integers(0, len(events)))
        events.insert(position, auth)
    return events


@st.composite
def coherent_flow(draw: st.DrawFn) -> list[PaymentEvent]:
    """One payment through a valid life: hold, increments, captures, refunds (pro rata and by
    line), a refund that fails after success, a dispute won or lost, release."""
    currency = draw(st.sampled_from(["EUR", "JPY", "KWD"]))
    counter = itertools.count()

    def env() -> Envelope:
        return Envelope(f"flow-{next(counter)}", AT, AT, Source.psp, "acme")

    def money(minor: int) -> Money:
        return Money(minor, currency)

    authorized = draw(st.integers(1, 10_000))
    events: list[PaymentEvent] = [
        PaymentAuthorized(env(), "p1", "stripe", "p1-ref", money(authorized), "card")
    ]
    for increment in draw(st.lists(st.integers(1, 3000), max_size=2)):
        events.append(AuthorizationIncremented(env(), "p1", money(increment)))
        authorized += increment
    captured: list[RevenueLine] = []
    for n in range(draw(st.integers(1, 3))):
        capture_lines = draw(lines().filter(bool))
        total = sum(line.amount_excl_vat + line.vat_amount for line in capture_lines)
        if sum(line.amount_excl_vat + line.vat_amount for line in captured) + total > authorized:
            break
        captured += capture_lines
        fee = money(draw(st.integers(0, 50)))
        station = draw(st.sampled_from(["s1", "s2"]))
        capture = PaymentCaptured(
            env(), "p1", f"c{n}", money(total), capture_lines, False, "stripe", None, fee, station
        )
        events.append(capture)
    release = draw(st.sampled_from(["void", "expire", "final"]))
    if release == "void":
        events.append(PaymentVoided(env(), "p1"))
    elif release == "expire":
        events.append(AuthorizationExpired(env(), "p1"))
    else:
        events.append(PaymentCaptured(env(), "p1", "final", money(0), [], True, "stripe"))
    refundable = sum(line.amount_excl_vat + line.vat_amount for line in captured)
    for n in range(draw(st.integers(0, 3))):
        if refundable == 0:
            break
        if draw(st.booleans()) and captured:
            source = draw(st.sampled_from(captured))
            part = RevenueLine(
                source.dimension,
                draw(st.integers(0, source.amount_excl_vat)),
                draw(st.integers(0, source.vat_amount)),
            )
            amount = part.amount_excl_vat + part.vat_amount
            refund_lines = [part]
        else:
            amount, refund_lines = draw(st.integers(1, refundable)), []
        events.append(PaymentRefunded(env(), "p1", f"r{n}", money(amount), refund_lines))
        if draw(st.booleans()):
            events.append(RefundFailed(env(), "p1", f"r{n}", money(amount), "failed", "x"))
        elif amount <= refundable:
            refundable -= amount
    if refundable:
        disputed = draw(st.integers(1, refundable))
        outcome = draw(st.sampled_from(list(DisputeOutcome)))
        events.append(DisputeOpened(env(), "p1", "d1", money(disputed)))
        events.append(DisputeResolved(env(), "p1", "d1", outcome, money(disputed)))
    return events


EVENTS = st.one_of(payment_events(), coherent_flow())


@dataclass
class Run:
    states: dict[str, PaymentState] = field(default_factory=dict)
    entries: list[JournalEntry] = field(default_factory=list)
    outcomes: list[str] = field(default_factory=list)
    fees: dict[tuple[str, str], int] = field(default_factory=dict)


def payment_of(run: Run, event: PaymentEvent) -> str:
    if isinstance(event, ExternalRefundReported):
        matches = [
            pid
            for pid, state in run.states.items()
            if event.provider_reference in state.provider_references
        ]
        return matches[0] if matches else "unknown"
    return event.payment_id


def replay(events: Sequence[PaymentEvent], check: bool = False) -> Run:
    run = Run()
    for event in events:
        pid = payment_of(run, event)
        try:
            result = apply(run.states.get(pid), event)
        except PaymentRejected as rejected:
            run.outcomes.append(rejected.code)
            continue
        run.outcomes.append("duplicate" if result.duplicate else "applied")
        run.states[pid] = result.state
        run.entries.extend(result.entries)
        if isinstance(event, PaymentCaptured) and event.fee and not result.duplicate:
            key = (result.state.provider, event.fee.currency)
            run.fees[key] = run.fees.get(key, 0) + event.fee.amount_minor
        if check:
            assert_invariants(result.state)
    return run


def assert_invariants(state: PaymentState) -> None:
    assert 0 <= state.captured <= state.authorized_total
    assert 0 <= state.refunded <= state.captured
    assert state.refundable >= 0
    if state.status is PaymentStatus.AUTHORIZED:
        assert state.hold == state.authorized_total - state.captured
    else:
        assert state.hold == 0
    assert all(s.net >= 0 and s.vat >= 0 for s in state.revenue)
    assert sum(s.gross for s in state.revenue) == state.captured - state.refunded


@settings(max_examples=300, deadline=None)
@given(EVENTS)
def test_ledger_every_entry_balances_per_currency(events: list[PaymentEvent]) -> None:
    for entry in replay(events).entries:
        totals: dict[str, int] = {}
        for p in entry.postings:
            totals[p.amount.currency] = totals.get(p.amount.currency, 0) + p.amount.amount_minor
        assert set(totals.values()) == {0}
        assert len({p.account.is_memo for p in entry.postings}) == 1


@settings(max_examples=300, deadline=None)
@given(EVENTS)
def test_ledger_state_invariants_hold_after_every_event(events: list[PaymentEvent]) -> None:
    replay(events, check=True)


@settings(max_examples=200, deadline=None)
@given(EVENTS)
def test_ledger_replay_is_deterministic(events: list[PaymentEvent]) -> None:
    first, second = replay(events), replay(events)
    assert first.entries == second.entries
    assert first.states == second.states
    assert Balances.of(first.entries) == Balances.of(second.entries)
    assert len({e.entry_id for e in first.entries}) == len(first.entries)


@settings(max_examples=200, deadline=None)
@given(EVENTS)
def test_ledger_applying_an_event_twice_changes_nothing(events: list[PaymentEvent]) -> None:
    once = replay(events)
    twice = replay([e for event in events for e in (event, event)])
    assert twice.entries == once.entries
    assert twice.states == once.states
    second_outcomes = twice.outcomes[1::2]
    for first, second in zip(once.outcomes, second_outcomes, strict=True):
        # An applied event comes back as a duplicate; a rejected one is rejected again.
        assert second == ("duplicate" if first in ("applied", "duplicate") else first)


@settings(max_examples=300, deadline=None)
@given(EVENTS)
def test_ledger_trial_balance_sums_to_zero_per_currency(events: list[PaymentEvent]) -> None:
    balances = Balances.of(replay(events).entries)
    for view in View:
        trial = balances.trial_balance(view)
        assert trial.is_balanced
        sums: dict[str, int] = {}
        for row in trial.rows:
            sums[row.currency] = sums.get(row.currency, 0) + row.net
        assert set(sums.values()) <= {0}


@settings(max_examples=300, deadline=None)
@given(EVENTS)
def test_ledger_balances_agree_with_payment_state(events: list[PaymentEvent]) -> None:
    run = replay(events)
    balances = Balances.of(run.entries)
    for stored in run.states.values():
        assert state_from_dict(json.loads(json.dumps(state_to_dict(stored)))) == stored
    for pid, provider in PROVIDERS.items():
        state = run.states.get(pid)
        if state is None:
            continue
        c = state.currency
        hold = balances.balance(accounts.authorization_holds(provider), c).amount_minor
        assert hold == state.hold
        open_disputes = sum(d.amount for d in state.disputes if d.outcome is None)
        lost = sum(d.amount for d in state.disputes if d.outcome is DisputeOutcome.LOST)
        receivable = balances.balance(accounts.disputes_receivable(provider), c)
        assert receivable.amount_minor == open_disputes
        assert balances.balance(accounts.dispute_losses(provider), c).amount_minor == lost
        clearing = balances.balance(accounts.provider_clearing(provider), c).amount_minor
        fees = run.fees.get((provider, c), 0)
        assert clearing == state.captured - state.refunded - fees - open_disputes - lost
    # Revenue net of refunds plus VAT owed is what customers paid and kept, per currency.
    kept: dict[str, int] = {}
    for state in run.states.values():
        kept[state.currency] = kept.get(state.currency, 0) + state.captured - state.refunded
    income: dict[str, int] = {}
    for (account, currency), net in balances.nets(View.POSTED).items():
        if account.type in (AccountType.REVENUE, AccountType.LIABILITY):
            income[currency] = income.get(currency, 0) - net
    assert {c: v for c, v in income.items() if v} == {c: v for c, v in kept.items() if v}


@settings(max_examples=200, deadline=None)
@given(EVENTS, st.lists(st.integers(0, 60), max_size=4))
def test_ledger_batch_aggregation_matches_entry_by_entry(
    events: list[PaymentEvent], cuts: list[int]
) -> None:
    entries = replay(events).entries
    bounds = [0, *sorted(min(c, len(entries)) for c in cuts), len(entries)]
    batched = Balances()
    for start, end in itertools.pairwise(bounds):
        batched = batched.with_deltas(aggregate(entries[start:end]))
    one_by_one = Balances()
    for entry in entries:
        one_by_one = one_by_one.applying([entry])
    assert batched == one_by_one == Balances.of(entries)


@given(st.lists(st.integers(0, 10_000), min_size=1, max_size=8), st.data())
def test_ledger_split_pro_rata_is_exact_and_capped(weights: list[int], data: st.DataObject) -> None:
    total_weight = sum(weights)
    if total_weight == 0:
        return
    total = data.draw(st.integers(0, total_weight))
    parts = split_pro_rata(total, weights)
    assert sum(parts) == total
    for part, weight in zip(parts, weights, strict=True):
        assert 0 <= part <= weight
        assert abs(part * total_weight - total * weight) < total_weight
