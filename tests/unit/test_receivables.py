"""A billed supply whose capture failed is in the books: a receivable from the customer with its
revenue and VAT on the supply date; later a capture, money another way, or a write-off (with VAT
relief where the law allows) settles it. Before, a declined capture booked nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.accounting import accounts
from ledger.accounting.balances import Balances, View
from ledger.accounting.journal import EntryKind, JournalEntry
from ledger.dimensions import Dimension
from ledger.envelope import Envelope, Source
from ledger.events import (
    CaptureFailed,
    CaptureRequested,
    PaymentAuthorized,
    PaymentCaptured,
    ReceivableCollected,
    ReceivableWrittenOff,
    RevenueLine,
)
from ledger.money import Money
from ledger.payments.errors import PaymentRejected
from ledger.payments.rules import PaymentEvent, apply
from ledger.payments.state import PaymentState
from ledger.settlement.outcomes import SettledAttempt, outcome_events

SUPPLIED = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)
DECLINED = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
ST = "NL*EVL*E1"
# 33.28 incl. 5.32 VAT at 19 %: energy 25.00 + 4.75, parking 2.96 + 0.57.
LINES = [
    RevenueLine(Dimension.ENERGY, 2500, 475, "19"),
    RevenueLine(Dimension.PARKING_TIME, 296, 57, "19"),
]
TOTAL = 3328
RECEIVABLES = accounts.customer_receivables()
BAD_DEBTS = accounts.bad_debts()
CLEARING = accounts.provider_clearing("sandbox")
BANK = accounts.bank()
VAT = accounts.vat_payable("NL", "19")
ENERGY = accounts.revenue(Dimension.ENERGY, "NL", "19")


class Book:
    """One payment's events applied in order, every entry kept."""

    def __init__(self) -> None:
        self.state: PaymentState | None = None
        self.entries: list[JournalEntry] = []
        self.n = 0
        self.send(PaymentAuthorized(self.env(SUPPLIED - timedelta(hours=1)), "P-1", "sandbox",
                                    "pi_1", Money(5000, "EUR"), "card"))  # fmt: skip

    def env(self, at: datetime) -> Envelope:
        self.n += 1
        return Envelope(f"ev-{self.n}", at, at, Source.psp, "net")

    def send(self, event: PaymentEvent) -> list[JournalEntry]:
        applied = apply(self.state, event)
        self.state = applied.state
        self.entries += applied.entries
        return list(applied.entries)

    def decline(self, cdr: str = "cdr-1") -> list[JournalEntry]:
        return self.send(CaptureFailed(self.env(DECLINED), "P-1", Money(TOTAL, "EUR"),
                                       "CARD_DECLINED", "do not honor", cdr, LINES, ST, "NL",
                                       SUPPLIED))  # fmt: skip

    def capture(self, amount: int, cdr: str = "cdr-1") -> list[JournalEntry]:
        """A later capture for the CDR (final), its lines the CDR's or, for part of it, one."""
        lines = LINES if amount == TOTAL else [RevenueLine(Dimension.ENERGY, amount, 0, "0")]
        at = self.env(DECLINED + timedelta(days=1))
        return self.send(PaymentCaptured(at, "P-1", f"cap-{self.n}", Money(amount, "EUR"), lines,
                                         True, "sandbox", "ch_2", None, ST, "NL", SUPPLIED,
                                         cdr))  # fmt: skip

    def collect(self, amount: int, cdr: str = "cdr-1") -> list[JournalEntry]:
        at = self.env(DECLINED + timedelta(days=9))
        return self.send(ReceivableCollected(at, "P-1", cdr, Money(amount, "EUR"), "bank tx 4711"))

    def write_off(self, amount: int, relief: bool, cdr: str = "cdr-1") -> list[JournalEntry]:
        at = self.env(DECLINED + timedelta(days=90))
        return self.send(
            ReceivableWrittenOff(at, "P-1", cdr, Money(amount, "EUR"), "insolvent", relief)
        )

    def balance(self, account: accounts.Account, until: datetime | None = None) -> int:
        chosen = [e for e in self.entries if until is None or e.occurred_at <= until]
        return Balances.of(chosen).balance(account, "EUR").amount_minor

    @property
    def balanced(self) -> bool:
        return Balances.of(self.entries).trial_balance(View.POSTED).is_balanced


def test_a_declined_capture_of_a_cdr_books_a_receivable_on_the_supply_date() -> None:
    book = Book()
    (entry,) = book.decline()
    assert (entry.kind, entry.occurred_at) == (EntryKind.RECEIVABLE, SUPPLIED)
    november = datetime(2026, 11, 30, tzinfo=UTC)
    assert book.balance(RECEIVABLES, november) == TOTAL
    assert book.balance(VAT, november) == -532
    assert book.balance(ENERGY, november) == -2500
    assert book.state is not None and book.state.receivable == TOTAL and book.balanced


def test_a_failure_without_a_cdr_is_informational_and_a_second_one_books_nothing_more() -> None:
    book = Book()
    failed = CaptureFailed(book.env(DECLINED), "P-1", Money(TOTAL, "EUR"), "X", "no cdr")
    assert book.send(failed) == []
    book.decline()
    assert book.decline() == []  # the retried instruction failed again
    assert book.state is not None and book.state.receivable == TOTAL


def test_a_later_capture_of_the_cdr_collects_it_without_recognizing_revenue_again() -> None:
    book = Book()
    book.decline()
    kinds = [e.kind for e in book.capture(TOTAL)]
    assert kinds == [EntryKind.RECEIVABLE_COLLECTED, EntryKind.HOLD_RELEASED]
    assert book.balance(RECEIVABLES) == 0 and book.balance(CLEARING) == TOTAL
    assert book.balance(ENERGY) == -2500 and book.balance(VAT) == -532
    assert book.state is not None and book.state.captured == TOTAL and book.balanced
    # The collected revenue is refundable like any captured revenue.
    assert sum(s.gross for s in book.state.revenue) == TOTAL


def test_money_another_way_and_a_write_off_with_and_without_vat_relief() -> None:
    book = Book()
    book.decline()
    book.collect(1000)
    assert book.balance(BANK) == 1000 and book.balance(RECEIVABLES) == TOTAL - 1000
    (relieved,) = book.write_off(1328, relief=True)
    postings = {p.account.code: p.amount.amount_minor for p in relieved.postings}
    assert postings[RECEIVABLES.code] == -1328
    assert postings[VAT.code] > 0 and postings[BAD_DEBTS.code] + postings[VAT.code] == 1328
    book2 = Book()
    book2.decline()
    (plain,) = book2.write_off(TOTAL, relief=False)
    assert {p.account.code: p.amount.amount_minor for p in plain.postings} == {
        BAD_DEBTS.code: TOTAL,
        RECEIVABLES.code: -TOTAL,
    }
    assert book2.balance(VAT) == -532  # no relief: the VAT stays payable


@pytest.mark.parametrize(
    ("step", "code"),
    [
        (lambda b: b.collect(TOTAL + 1), "RECEIVABLE_EXCEEDED"),
        (lambda b: b.write_off(1, relief=False, cdr="cdr-other"), "UNKNOWN_RECEIVABLE"),
        (lambda b: b.capture(TOTAL + 1), "RECEIVABLE_EXCEEDED"),
    ],
)
def test_more_than_is_open_or_an_unknown_cdr_is_refused(step: object, code: str) -> None:
    book = Book()
    book.decline()
    before = book.state
    with pytest.raises(PaymentRejected) as caught:
        step(book)  # type: ignore[operator]
    assert caught.value.code == code and book.state == before


def test_the_failed_capture_outcome_carries_what_the_receivable_needs() -> None:
    request = CaptureRequested(Envelope.new("net", occurred_at=SUPPLIED), "P-1",
                               Money(TOTAL, "EUR"), LINES, True, "cdr-9", ST, "NL")  # fmt: skip
    settled = SettledAttempt(False, "sandbox", None, None, "CARD_DECLINED", "declined", ())
    (event,), _ = outcome_events(request, settled)
    assert isinstance(event, CaptureFailed)
    assert (event.cdr_id, event.lines, event.station_id, event.country, event.supplied_at) == (
        "cdr-9", LINES, ST, "NL", SUPPLIED,
    )  # fmt: skip


STEPS = st.lists(
    st.tuples(
        st.sampled_from(["capture", "collect", "write_off", "relief"]), st.integers(1, TOTAL)
    ),
    max_size=6,
)


@settings(max_examples=200, deadline=None)
@given(STEPS)
def test_every_cdr_amount_is_captured_open_or_written_off_and_the_books_balance(
    steps: list[tuple[str, int]],
) -> None:
    book = Book()
    book.decline()
    for kind, amount in steps:
        state = book.state
        assert state is not None
        try:
            if kind == "capture":
                book.capture(amount)
            elif kind == "collect":
                book.collect(amount)
            else:
                book.write_off(amount, relief=kind == "relief")
        except PaymentRejected as exc:
            assert exc.code in {"RECEIVABLE_EXCEEDED", "PAYMENT_FINALIZED", "DUPLICATE_CAPTURE"}
            assert book.state == state
    state = book.state
    assert state is not None
    (owed,) = state.receivables
    assert owed.collected + owed.written_off + owed.open == TOTAL
    assert (
        state.captured + (owed.collected - state.captured) + owed.written_off + owed.open == TOTAL
    )
    assert book.balance(RECEIVABLES) == owed.open
    assert book.balance(CLEARING) + book.balance(BANK) == owed.collected
    assert book.balance(BAD_DEBTS) - sum(-p for p in []) <= owed.written_off
    assert sum(s.gross for s in owed.remaining) == owed.open
    assert book.balanced
