"""Revenue and VAT on the date of supply (issue: a session that stopped on 20 November and was
captured on 2 December belongs to November's revenue and VAT), the provider clearing on the
date the provider captured."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ledger.accounting import accounts
from ledger.accounting.balances import Balances, View
from ledger.accounting.journal import EntryKind, JournalEntry
from ledger.dimensions import Dimension
from ledger.envelope import Envelope, Source
from ledger.events import (
    CaptureRequested,
    PaymentAuthorized,
    PaymentCaptured,
    RevenueLine,
)
from ledger.money import Money
from ledger.payments.rules import apply
from ledger.settlement.outcomes import SettledAttempt, outcome_events

SUPPLIED = datetime(2026, 11, 20, 18, 30, tzinfo=UTC)
CAPTURED = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
ST = "DE*EVL*E1"
LINES = [RevenueLine(Dimension.ENERGY, 2500, 475, "19"), RevenueLine(Dimension.TIME, 500, 95, "19")]
CLEARING = accounts.provider_clearing("sandbox")
RECEIVABLE = accounts.settlement_receivable("sandbox")
ENERGY = accounts.revenue(Dimension.ENERGY, "DE", "19")
VAT_DE = accounts.vat_payable("DE", "19")


def env(at: datetime, event_id: str) -> Envelope:
    return Envelope(event_id, at, at, Source.psp, "net")


def capture(supplied_at: datetime | None) -> list[JournalEntry]:
    authorized = apply(
        None,
        PaymentAuthorized(
            env(SUPPLIED - timedelta(hours=1), "e-auth"),
            "P-1",
            "sandbox",
            "ref",
            Money(5000, "EUR"),
            "card",
        ),
    )
    event = PaymentCaptured(
        env(CAPTURED, "e-cap"),
        "P-1",
        "cap-1",
        Money(3570, "EUR"),
        LINES,
        True,
        "sandbox",
        "ch_1",
        None,
        ST,
        "DE",
        supplied_at,
    )
    return [*authorized.entries, *apply(authorized.state, event).entries]


def as_of(entries: list[JournalEntry], day: datetime) -> Balances:
    return Balances.of([e for e in entries if e.occurred_at <= day])


def test_revenue_and_vat_fall_in_the_month_of_supply_and_clearing_in_the_month_of_capture() -> None:
    entries = capture(SUPPLIED)
    november = as_of(entries, datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC))
    assert november.balance(ENERGY, "EUR").amount_minor == -2500
    assert november.balance(VAT_DE, "EUR").amount_minor == -570
    assert november.balance(RECEIVABLE, "EUR").amount_minor == 3570
    assert november.balance(CLEARING, "EUR").amount_minor == 0
    assert november.trial_balance(View.POSTED).is_balanced
    december = as_of(entries, CAPTURED)
    assert december.balance(CLEARING, "EUR").amount_minor == 3570
    assert december.balance(RECEIVABLE, "EUR").amount_minor == 0
    assert december.balance(ENERGY, "EUR").amount_minor == -2500
    kinds = {e.kind: e.occurred_at for e in entries if not e.is_memo}
    assert kinds == {EntryKind.CAPTURE: SUPPLIED, EntryKind.CAPTURE_SETTLED: CAPTURED}


def test_a_capture_without_a_supply_date_or_on_it_is_one_entry_as_before() -> None:
    for supplied in (None, CAPTURED, CAPTURED + timedelta(minutes=5)):
        posted = [e for e in capture(supplied) if not e.is_memo]
        assert [(e.kind, e.occurred_at) for e in posted] == [(EntryKind.CAPTURE, CAPTURED)]
        postings = {p.account.code: p.amount.amount_minor for p in posted[0].postings}
        assert postings[CLEARING.code] == 3570 and RECEIVABLE.code not in postings


def test_the_capture_outcome_carries_the_supply_date_of_its_instruction() -> None:
    request = CaptureRequested(
        Envelope.new("net", occurred_at=SUPPLIED), "P-1", Money(3570, "EUR"), LINES, True,
        "cdr-1", ST, "DE",
    )  # fmt: skip
    settled = SettledAttempt(True, "sandbox", "pi_1", "ch_1", None, None, ())
    (event,), refusal = outcome_events(request, settled)
    assert refusal is None and isinstance(event, PaymentCaptured)
    assert event.supplied_at == SUPPLIED and event.envelope.occurred_at > SUPPLIED
