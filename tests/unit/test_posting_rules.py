"""Posting rules and payment validation, one flow at a time (numbers as in docs/accounting.md)."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from connectors.payment_state_form import state_from_dict, state_to_dict
from ledger.accounting import accounts
from ledger.accounting.balances import Balances, View, aggregate
from ledger.accounting.journal import EntryKind, JournalEntry
from ledger.accounting.posting_rules import (
    EntryContext,
    RevenueShare,
    allocate_refund,
    payout,
    split_pro_rata,
    write_off,
)
from ledger.dimensions import Dimension
from ledger.envelope import Envelope, Source
from ledger.errors import CurrencyMismatch
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
    PayoutPaid,
    RefundFailed,
    RevenueLine,
)
from ledger.money import Money
from ledger.payments import errors as payment_errors
from ledger.payments.errors import PaymentRejected
from ledger.payments.rules import PaymentEvent, apply
from ledger.payments.state import PaymentState, PaymentStatus

AT = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
ST = "DE*ACM*E1"
CLEARING = accounts.provider_clearing("stripe")
FEES = accounts.provider_fees("stripe")
HOLDS = accounts.authorization_holds("stripe")
COMMITMENTS = accounts.hold_commitments("stripe")
VAT_DE = accounts.vat_payable("DE", "19")
ENERGY = accounts.revenue(Dimension.ENERGY, "DE", "19")
TIME = accounts.revenue(Dimension.TIME, "DE", "19")
REFUNDS_ENERGY = accounts.refunds(Dimension.ENERGY, "DE", "19")
REFUNDS_TIME = accounts.refunds(Dimension.TIME, "DE", "19")
RECEIVABLE = accounts.disputes_receivable("stripe")
LOSSES = accounts.dispute_losses("stripe")

_ids = itertools.count(1)


def env(network: str = "acme") -> Envelope:
    return Envelope(f"ev-{next(_ids)}", AT, AT, Source.psp, network)


def line(dimension: Dimension, net: int, vat: int) -> RevenueLine:
    return RevenueLine(dimension, net, vat, "19")


# Capture of EUR 35.70: energy 25.00 + 4.75 VAT, time 5.00 + 0.95 VAT (19 % DE).
LINES = [line(Dimension.ENERGY, 2500, 475), line(Dimension.TIME, 500, 95)]


class Flow:
    """One payment driven event by event; collects every entry for balance checks."""

    def __init__(self, currency: str = "EUR") -> None:
        self.currency = currency
        self.state: PaymentState | None = None
        self.entries: list[JournalEntry] = []
        self.last: list[JournalEntry] = []

    def m(self, minor: int) -> Money:
        return Money(minor, self.currency)

    def send(self, event: PaymentEvent) -> list[JournalEntry]:
        result = apply(self.state, event)
        self.state = result.state
        self.last = list(result.entries)
        self.entries += result.entries
        return self.last

    def authorize(self, minor: int) -> list[JournalEntry]:
        return self.send(PaymentAuthorized(env(), "pay-1", "stripe", "pi_1", self.m(minor), "card"))

    def increment(self, minor: int) -> list[JournalEntry]:
        return self.send(AuthorizationIncremented(env(), "pay-1", self.m(minor)))

    def capture(
        self,
        minor: int,
        lines: list[RevenueLine],
        *,
        final: bool = True,
        fee: Money | None = None,
        capture_id: str | None = None,
    ) -> list[JournalEntry]:
        event = PaymentCaptured(
            env(),
            "pay-1",
            capture_id or f"cap-{next(_ids)}",
            self.m(minor),
            lines,
            final,
            "stripe",
            "ch_1",
            fee,
            ST,
            "DE",
        )
        return self.send(event)

    def refund(self, minor: int, lines: list[RevenueLine] | None = None, rid: str = "r-1") -> Any:
        return self.send(PaymentRefunded(env(), "pay-1", rid, self.m(minor), lines or []))

    @property
    def balances(self) -> Balances:
        return Balances.of(self.entries)

    def balance(self, account: accounts.Account) -> int:
        return self.balances.balance(account, self.currency).amount_minor

    def postings(self, kind: EntryKind) -> dict[str, int]:
        (found,) = [e for e in self.last if e.kind is kind]
        return {p.account.code: p.amount.amount_minor for p in found.postings}


def rejected(flow: Flow, event: PaymentEvent, code: str) -> PaymentRejected:
    before = flow.state
    with pytest.raises(PaymentRejected) as caught:
        flow.send(event)
    assert caught.value.code == code
    assert caught.value.context["event_id"] == event.envelope.event_id
    assert flow.state == before
    return caught.value


# -- authorize, increment, capture, release -----------------------------------------------------
def test_posting_authorization_is_a_memo_hold_not_revenue() -> None:
    flow = Flow()
    (hold,) = flow.authorize(5000)
    assert hold.kind is EntryKind.HOLD_PLACED and hold.is_memo
    assert flow.postings(EntryKind.HOLD_PLACED) == {HOLDS.code: 5000, COMMITMENTS.code: -5000}
    assert flow.balances.trial_balance(View.POSTED).rows == ()


def test_posting_partial_then_final_capture_releases_the_rest_of_the_hold() -> None:
    flow = Flow()
    flow.authorize(5000)
    flow.capture(1190, [line(Dimension.ENERGY, 1000, 190)], final=False)
    assert flow.postings(EntryKind.HOLD_RELEASED) == {HOLDS.code: -1190, COMMITMENTS.code: 1190}
    assert flow.balance(HOLDS) == 3810
    partly = flow.state
    assert partly is not None and partly.status is PaymentStatus.AUTHORIZED

    flow.capture(2380, [line(Dimension.ENERGY, 2000, 380)], final=True)
    assert flow.postings(EntryKind.HOLD_RELEASED) == {HOLDS.code: -3810, COMMITMENTS.code: 3810}
    assert flow.balance(HOLDS) == 0 and flow.balance(COMMITMENTS) == 0
    assert flow.balance(CLEARING) == 3570
    assert flow.balance(ENERGY) == -3000
    assert flow.balance(VAT_DE) == -570
    final = flow.state
    assert final is not None and final.status is PaymentStatus.FINALIZED
    assert final.captured == 3570 and final.hold == 0


def test_posting_capture_recognizes_revenue_by_dimension_and_vat_by_country() -> None:
    flow = Flow()
    flow.authorize(5000)
    flow.capture(3570, LINES, fee=Money(55, "EUR"))
    assert flow.postings(EntryKind.CAPTURE) == {
        CLEARING.code: 3570,
        ENERGY.code: -2500,
        VAT_DE.code: -570,
        TIME.code: -500,
    }
    assert flow.postings(EntryKind.PROVIDER_FEE) == {FEES.code: 55, CLEARING.code: -55}
    assert flow.postings(EntryKind.HOLD_RELEASED) == {HOLDS.code: -5000, COMMITMENTS.code: 5000}
    assert [e.kind for e in flow.last] == [
        EntryKind.CAPTURE,
        EntryKind.PROVIDER_FEE,
        EntryKind.HOLD_RELEASED,
    ]


def test_posting_increment_raises_the_hold_and_the_capture_limit() -> None:
    flow = Flow()
    flow.authorize(3000)
    flow.increment(1000)
    assert flow.postings(EntryKind.HOLD_INCREASED) == {HOLDS.code: 1000, COMMITMENTS.code: -1000}
    flow.capture(3570, LINES)
    assert flow.balance(HOLDS) == 0
    assert flow.state is not None and flow.state.authorized_total == 4000


def test_posting_zero_final_capture_only_releases_the_hold() -> None:
    flow = Flow()
    flow.authorize(2000)
    entries = flow.capture(0, [])
    assert [e.kind for e in entries] == [EntryKind.HOLD_RELEASED]
    assert flow.balances.nets() == {}


def test_posting_void_releases_the_hold_and_blocks_captures() -> None:
    flow = Flow()
    flow.authorize(5000)
    flow.send(PaymentVoided(env(), "pay-1", "no energy delivered"))
    assert flow.postings(EntryKind.HOLD_RELEASED) == {HOLDS.code: -5000, COMMITMENTS.code: 5000}
    assert flow.balances.nets() == {}
    event = PaymentCaptured(env(), "pay-1", "c", flow.m(100), [], True, "stripe")
    rejected(flow, event, "PAYMENT_VOIDED")
    rejected(flow, AuthorizationIncremented(env(), "pay-1", flow.m(1)), "PAYMENT_VOIDED")


def test_posting_expiry_releases_the_hold_and_blocks_captures() -> None:
    flow = Flow()
    flow.authorize(5000)
    flow.send(AuthorizationExpired(env(), "pay-1"))
    assert flow.balance(HOLDS) == 0
    event = PaymentCaptured(env(), "pay-1", "c", flow.m(100), [], True, "stripe")
    rejected(flow, event, "AUTHORIZATION_EXPIRED")


def test_posting_expiry_or_void_after_the_hold_is_gone_changes_nothing() -> None:
    flow = Flow()
    flow.authorize(5000)
    flow.capture(3570, LINES)
    assert flow.send(AuthorizationExpired(env(), "pay-1")) == []
    rejected(flow, PaymentVoided(env(), "pay-1"), "PAYMENT_FINALIZED")

    voided = Flow()
    voided.authorize(100)
    voided.send(PaymentVoided(env(), "pay-1"))
    assert voided.send(AuthorizationExpired(env(), "pay-1")) == []
    assert voided.send(PaymentVoided(env(), "pay-1")) == []
    assert voided.state is not None and voided.state.status is PaymentStatus.VOIDED


def test_posting_void_after_partial_capture_releases_only_the_rest() -> None:
    flow = Flow()
    flow.authorize(5000)
    flow.capture(1190, [line(Dimension.ENERGY, 1000, 190)], final=False)
    flow.send(PaymentVoided(env(), "pay-1"))
    assert flow.postings(EntryKind.HOLD_RELEASED) == {HOLDS.code: -3810, COMMITMENTS.code: 3810}
    flow.refund(1190)  # captured money stays refundable after the void
    assert flow.balance(CLEARING) == 0


def test_posting_capture_failed_is_informational() -> None:
    flow = Flow()
    flow.authorize(5000)
    assert flow.send(CaptureFailed(env(), "pay-1", flow.m(3570), "card_declined", "x")) == []
    assert flow.state is not None and flow.state.hold == 5000


# -- validation ---------------------------------------------------------------------------------
def test_posting_over_capture_rejected_with_code_and_ids() -> None:
    flow = Flow()
    flow.authorize(3000)
    event = PaymentCaptured(env(), "pay-1", "c", flow.m(3570), LINES, True, "stripe")
    error = rejected(flow, event, "CAPTURE_EXCEEDS_AUTHORIZATION")
    assert error.context["payment_id"] == "pay-1"
    assert isinstance(error, payment_errors.CaptureExceedsAuthorization)
    assert "CAPTURE_EXCEEDS_AUTHORIZATION" in str(error)


def test_posting_capture_before_authorization_is_unknown_payment_out_of_order() -> None:
    event = PaymentCaptured(env(), "pay-9", "c", Money(100, "EUR"), [], True, "stripe")
    with pytest.raises(payment_errors.UnknownPayment) as caught:
        apply(None, event)
    assert caught.value.code == "UNKNOWN_PAYMENT"
    assert caught.value.out_of_order
    assert caught.value.payment_id == "pay-9"


def test_posting_duplicate_authorization_and_duplicate_event_id() -> None:
    flow = Flow()
    first = PaymentAuthorized(env(), "pay-1", "stripe", "pi_1", flow.m(5000), "card")
    flow.send(first)
    state = flow.state
    again = apply(state, first)
    assert again.duplicate and again.entries == () and again.state == state
    other = PaymentAuthorized(env(), "pay-1", "stripe", "pi_1", flow.m(5000), "card")
    rejected(flow, other, "DUPLICATE_AUTHORIZATION")


def test_posting_duplicate_capture_id_rejected() -> None:
    flow = Flow()
    flow.authorize(5000)
    flow.capture(1190, [line(Dimension.ENERGY, 1000, 190)], final=False, capture_id="cap-x")
    event = PaymentCaptured(env(), "pay-1", "cap-x", flow.m(1190), [], False, "stripe")
    rejected(flow, event, "DUPLICATE_CAPTURE")


def test_posting_currency_mismatch_rejected() -> None:
    flow = Flow()
    flow.authorize(5000)
    rejected(flow, AuthorizationIncremented(env(), "pay-1", Money(100, "USD")), "CURRENCY_MISMATCH")
    event = PaymentRefunded(env(), "pay-1", "r", Money(1, "GBP"))
    error = rejected(flow, event, "CURRENCY_MISMATCH")
    assert isinstance(error, payment_errors.PaymentCurrencyMismatch)


def test_posting_lines_must_sum_to_the_amount() -> None:
    flow = Flow()
    flow.authorize(5000)
    event = PaymentCaptured(env(), "pay-1", "c", flow.m(3571), LINES, True, "stripe")
    rejected(flow, event, "LINES_DO_NOT_SUM")


def test_posting_negative_amounts_rejected() -> None:
    flow = Flow()
    flow.authorize(5000)
    rejected(flow, AuthorizationIncremented(env(), "pay-1", flow.m(-1)), "INVALID_AMOUNT")
    bad_line = [line(Dimension.ENERGY, 1100, -10)]
    event = PaymentCaptured(env(), "pay-1", "c", flow.m(1090), bad_line, True, "stripe")
    rejected(flow, event, "INVALID_AMOUNT")


def test_posting_other_network_or_provider_rejected() -> None:
    flow = Flow()
    flow.authorize(5000)
    rejected(flow, PaymentVoided(env("other"), "pay-1"), "NETWORK_MISMATCH")
    event = PaymentCaptured(env(), "pay-1", "c", flow.m(100), [], True, "braintree")
    rejected(flow, event, "PROVIDER_MISMATCH")


# -- refunds ------------------------------------------------------------------------------------
def test_posting_partial_refund_with_lines_uses_contra_revenue() -> None:
    flow = Flow()
    flow.authorize(5000)
    flow.capture(3570, LINES)
    flow.refund(595, [line(Dimension.TIME, 500, 95)])
    assert flow.postings(EntryKind.REFUND) == {
        CLEARING.code: -595,
        REFUNDS_TIME.code: 500,
        VAT_DE.code: 95,
    }
    assert flow.balance(TIME) == -500  # gross revenue stays as recognized
    assert flow.state is not None and flow.state.refunded == 595


def test_posting_pro_rata_refund_splits_exactly_by_largest_remainder() -> None:
    flow = Flow()
    flow.authorize(5000)
    flow.capture(3570, LINES)
    flow.refund(1190)  # a third of 35.70
    postings = flow.postings(EntryKind.REFUND)
    assert postings == {
        CLEARING.code: -1190,
        REFUNDS_ENERGY.code: 834,
        VAT_DE.code: 158 + 32,
        REFUNDS_TIME.code: 166,
    }
    assert sum(postings.values()) == 0


def test_posting_full_refund_nets_revenue_vat_and_clearing_to_zero() -> None:
    flow = Flow()
    flow.authorize(5000)
    flow.capture(3570, LINES)
    flow.refund(1000, rid="r-1")
    flow.refund(2570, rid="r-2")
    assert flow.balance(CLEARING) == 0
    assert flow.balance(VAT_DE) == 0
    assert flow.balance(ENERGY) + flow.balance(REFUNDS_ENERGY) == 0
    assert flow.balance(TIME) + flow.balance(REFUNDS_TIME) == 0
    assert flow.state is not None and flow.state.refundable == 0


def test_posting_over_refund_rejected_in_total_and_per_dimension() -> None:
    flow = Flow()
    flow.authorize(5000)
    flow.capture(3570, LINES)
    rejected(flow, PaymentRefunded(env(), "pay-1", "r", flow.m(3571)), "REFUND_EXCEEDS_CAPTURED")
    too_much_time = [line(Dimension.TIME, 600, 114)]
    event = PaymentRefunded(env(), "pay-1", "r", flow.m(714), too_much_time)
    rejected(flow, event, "REFUND_EXCEEDS_CAPTURED")
    flow.refund(3570)
    rejected(flow, PaymentRefunded(env(), "pay-1", "r2", flow.m(1)), "REFUND_EXCEEDS_CAPTURED")


def test_posting_refund_id_applied_once() -> None:
    flow = Flow()
    flow.authorize(5000)
    flow.capture(3570, LINES)
    flow.refund(100, rid="r-1")
    rejected(flow, PaymentRefunded(env(), "pay-1", "r-1", flow.m(100)), "DUPLICATE_REFUND")


def test_posting_refund_failed_after_success_reverses_it_exactly() -> None:
    flow = Flow()
    flow.authorize(5000)
    flow.capture(3570, LINES)
    after_capture = flow.balances.nets()
    flow.refund(1190, rid="r-1")
    refund_postings = flow.postings(EntryKind.REFUND)
    flow.send(RefundFailed(env(), "pay-1", "r-1", flow.m(1190), "bank_rejected", "x"))
    reversal = flow.postings(EntryKind.REFUND_REVERSAL)
    assert reversal == {code: -amount for code, amount in refund_postings.items()}
    assert flow.balances.nets() == after_capture
    assert flow.state is not None and flow.state.refunded == 0
    assert flow.send(RefundFailed(env(), "pay-1", "r-1", flow.m(1190), "again", "x")) == []


def test_posting_refund_failed_before_success_is_informational() -> None:
    flow = Flow()
    flow.authorize(5000)
    flow.capture(3570, LINES)
    assert flow.send(RefundFailed(env(), "pay-1", "r-9", flow.m(100), "x", "y")) == []
    flow.refund(100, rid="r-1")
    event = RefundFailed(env(), "pay-1", "r-1", flow.m(99), "x", "y")
    rejected(flow, event, "REFUND_AMOUNT_MISMATCH")


def test_posting_external_refund_is_a_pro_rata_refund_matched_by_provider_reference() -> None:
    flow = Flow()
    flow.authorize(5000)
    flow.capture(3570, LINES)
    flow.send(ExternalRefundReported(env(), "stripe", "ch_1", "re_1", flow.m(1190)))
    assert flow.postings(EntryKind.REFUND)[CLEARING.code] == -1190
    unknown_ref = ExternalRefundReported(env(), "stripe", "ch_other", "re_2", flow.m(1))
    rejected(flow, unknown_ref, "PROVIDER_REFERENCE_MISMATCH")
    again = ExternalRefundReported(env(), "stripe", "pi_1", "re_1", flow.m(1190))
    rejected(flow, again, "DUPLICATE_REFUND")


# -- disputes -----------------------------------------------------------------------------------
def _disputed(amount: int) -> Flow:
    flow = Flow()
    flow.authorize(5000)
    flow.capture(3570, LINES)
    flow.send(DisputeOpened(env(), "pay-1", "dp-1", flow.m(amount), "fraudulent"))
    return flow


def test_posting_dispute_opened_moves_clearing_to_receivable() -> None:
    flow = _disputed(3570)
    assert flow.postings(EntryKind.DISPUTE_OPENED) == {RECEIVABLE.code: 3570, CLEARING.code: -3570}
    assert flow.state is not None and flow.state.refundable == 0
    rejected(flow, PaymentRefunded(env(), "pay-1", "r", flow.m(1)), "REFUND_EXCEEDS_CAPTURED")


def test_posting_dispute_won_returns_the_money() -> None:
    flow = _disputed(3570)
    flow.send(DisputeResolved(env(), "pay-1", "dp-1", DisputeOutcome.WON, flow.m(3570)))
    assert flow.postings(EntryKind.DISPUTE_WON) == {CLEARING.code: 3570, RECEIVABLE.code: -3570}
    assert flow.balance(CLEARING) == 3570 and flow.balance(RECEIVABLE) == 0
    assert flow.state is not None and flow.state.refundable == 3570


def test_posting_dispute_lost_is_an_expense() -> None:
    flow = _disputed(3570)
    flow.send(DisputeResolved(env(), "pay-1", "dp-1", DisputeOutcome.LOST, flow.m(3570)))
    assert flow.postings(EntryKind.DISPUTE_LOST) == {LOSSES.code: 3570, RECEIVABLE.code: -3570}
    assert flow.balance(CLEARING) == 0 and flow.balance(ENERGY) == -2500
    resolve_again = DisputeResolved(env(), "pay-1", "dp-1", DisputeOutcome.WON, flow.m(3570))
    rejected(flow, resolve_again, "DISPUTE_ALREADY_RESOLVED")


def test_posting_dispute_rules() -> None:
    flow = _disputed(1000)
    rejected(flow, DisputeOpened(env(), "pay-1", "dp-1", flow.m(10)), "DUPLICATE_DISPUTE")
    rejected(flow, DisputeOpened(env(), "pay-1", "dp-2", flow.m(2571)), "DISPUTE_EXCEEDS_CAPTURED")
    unknown = DisputeResolved(env(), "pay-1", "dp-9", DisputeOutcome.WON, flow.m(1000))
    assert rejected(flow, unknown, "UNKNOWN_DISPUTE").out_of_order
    partial = DisputeResolved(env(), "pay-1", "dp-1", DisputeOutcome.WON, flow.m(999))
    rejected(flow, partial, "DISPUTE_AMOUNT_MISMATCH")


# -- payouts and write-offs ---------------------------------------------------------------------
def test_posting_payout_moves_clearing_to_bank_with_fees_as_expense() -> None:
    event = PayoutPaid(env(), "stripe", "po_1", Money(2000, "EUR"), Money(25, "EUR"))
    (entry,) = payout(event)
    assert entry.payment_id is None and entry.kind is EntryKind.PAYOUT
    postings = {p.account.code: p.amount.amount_minor for p in entry.postings}
    assert postings == {"assets:bank": 2000, FEES.code: 25, CLEARING.code: -2025}


def test_posting_payout_fee_in_another_currency_is_rejected_by_money() -> None:
    event = PayoutPaid(env(), "stripe", "po_1", Money(2000, "EUR"), Money(25, "USD"))
    with pytest.raises(CurrencyMismatch):
        payout(event)


def test_posting_write_off_clears_a_residual() -> None:
    ctx = EntryContext("ev-w", None, "acme", AT)
    (entry,) = write_off(ctx, CLEARING, Money(3, "EUR"), "clearing_residual")
    postings = {p.account.code: p.amount.amount_minor for p in entry.postings}
    assert postings == {"expenses:write_offs:clearing_residual": 3, CLEARING.code: -3}


# -- currencies with other exponents --------------------------------------------------------------
@pytest.mark.parametrize(
    ("currency", "authorized", "net", "vat"),
    [("JPY", 3000, 2728, 272), ("KWD", 5000, 4348, 652)],
)
def test_posting_minor_units_of_jpy_and_kwd(
    currency: str, authorized: int, net: int, vat: int
) -> None:
    flow = Flow(currency)
    flow.authorize(authorized)
    flow.capture(net + vat, [line(Dimension.ENERGY, net, vat)], fee=Money(7, currency))
    flow.refund(1001)
    balances = flow.balances
    assert balances.trial_balance().is_balanced
    assert balances.balance(CLEARING, currency).amount_minor == net + vat - 7 - 1001
    assert {c for _, c in balances.nets()} == {currency}


# -- helpers --------------------------------------------------------------------------------------
def test_posting_split_pro_rata_examples() -> None:
    assert split_pro_rata(100, [1, 1, 1]) == [34, 33, 33]
    assert split_pro_rata(2, [1, 1, 1]) == [1, 1, 0]
    assert split_pro_rata(1190, [2975, 595]) == [992, 198]
    assert split_pro_rata(0, [5, 5]) == [0, 0]
    with pytest.raises(ValueError):
        split_pro_rata(1, [0, 0])


def test_posting_allocate_refund_never_exceeds_what_remains() -> None:
    remaining = [
        RevenueShare(Dimension.ENERGY, ST, "DE", 2500, 475),
        RevenueShare(Dimension.TIME, ST, "DE", 0, 0),
    ]
    (share,) = allocate_refund(remaining, 2975)
    assert (share.net, share.vat) == (2500, 475)


def test_posting_aggregate_sums_a_batch_per_account_in_sorted_order() -> None:
    flow = Flow()
    flow.authorize(5000)
    flow.capture(3570, LINES, fee=Money(55, "EUR"))
    deltas = aggregate(flow.entries)
    assert [(d.account, d.currency) for d in deltas] == sorted(
        (d.account, d.currency) for d in deltas
    )
    clearing = next(d for d in deltas if d.account == CLEARING)
    assert (clearing.debit, clearing.credit, clearing.net, clearing.postings) == (3570, 55, 3515, 2)
    revenue = next(d for d in deltas if d.account == ENERGY)
    assert revenue.normal == 2500


def test_posting_trial_balance_and_views() -> None:
    flow = Flow()
    flow.authorize(5000)
    flow.capture(1190, [line(Dimension.ENERGY, 1000, 190)], final=False)
    balances = flow.balances
    assert balances.trial_balance().is_balanced
    assert balances.trial_balance().totals() == {"EUR": (1190, 1190)}
    pending = balances.trial_balance(View.PENDING)
    assert pending.totals() == {"EUR": (3810, 3810)}
    assert all(r.account.is_memo for r in pending.rows)


def test_posting_state_round_trips_through_json() -> None:
    flow = Flow()
    flow.authorize(5000)
    flow.capture(3570, LINES)
    flow.refund(1190)
    flow.send(DisputeOpened(env(), "pay-1", "dp-1", flow.m(100)))
    assert flow.state is not None
    stored = json.loads(json.dumps(state_to_dict(flow.state)))
    assert state_from_dict(stored) == flow.state


def test_posting_worked_example_in_docs() -> None:
    """The story told in docs/accounting.md, ending in its trial balance."""
    flow = Flow()
    flow.authorize(5000)
    flow.increment(1000)
    flow.capture(1190, [line(Dimension.ENERGY, 1000, 190)], final=False)
    flow.capture(3570, LINES, fee=Money(55, "EUR"))
    flow.refund(1190, rid="r-1")
    assert flow.postings(EntryKind.REFUND) == {
        CLEARING.code: -1190,
        REFUNDS_ENERGY.code: 875,
        VAT_DE.code: 190,
        REFUNDS_TIME.code: 125,
    }
    flow.refund(238, [line(Dimension.TIME, 200, 38)], rid="r-2")
    flow.send(RefundFailed(env(), "pay-1", "r-2", flow.m(238), "bank_rejected", "x"))
    flow.send(DisputeOpened(env(), "pay-1", "dp-1", flow.m(1000)))
    flow.send(DisputeResolved(env(), "pay-1", "dp-1", DisputeOutcome.LOST, flow.m(1000)))
    flow.entries += payout(PayoutPaid(env(), "stripe", "po_1", flow.m(2000), flow.m(25)))
    trial = flow.balances.trial_balance()
    assert {r.account.code: r.net for r in trial.rows} == {
        "assets:bank": 2000,
        CLEARING.code: 490,
        REFUNDS_ENERGY.code: 875,
        REFUNDS_TIME.code: 125,
        LOSSES.code: 1000,
        FEES.code: 80,
        VAT_DE.code: -570,
        ENERGY.code: -3500,
        TIME.code: -500,
    }
    assert trial.totals() == {"EUR": (4570, 4570)}
    assert flow.balances.trial_balance(View.PENDING).rows == ()
