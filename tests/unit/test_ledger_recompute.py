"""The test oracle and the projector's COPY encoding, checked without the stack."""

from __future__ import annotations

from typing import Any

from connectors.kafka import TOPIC_OF, Consumed
from connectors.ledger_store import _text
from ledger.payments.state import PaymentStatus
from tests.ledger_oracle import mixed_stream, recompute


def _records(events: list[Any]) -> list[Consumed]:
    return [Consumed(TOPIC_OF[type(e)], 0, i, None, None, e) for i, e in enumerate(events)]


def test_oracle_books_one_payment_as_computed_by_hand() -> None:
    """Pattern 0: captures of hold/4 and hold/2 (fee 25*scale), a pro rata refund of hold/8, a
    line refund of 1.00 that then fails, and a payout of half the net clearing (fees 0.40)."""
    stream = mixed_stream("hand", payments_count=1, seed=1)
    auth = stream.phase1[0]
    hold = auth.amount.amount_minor
    scale = hold // 2000
    fee = 25 * scale
    book = recompute(_records([*stream.phase1, *stream.phase2]))
    nets = book.nets()
    clearing_before_payout = hold // 4 + hold // 2 - fee - hold // 8
    paid = (hold // 4 + hold // 2 - fee) // 2
    assert nets[("assets:provider_clearing:sandbox", "EUR")] == clearing_before_payout - paid
    assert nets[("assets:bank", "EUR")] == paid - 40
    assert nets[("expenses:provider_fees:sandbox", "EUR")] == fee + 40
    assert not any(a.startswith("memo:") for a, _ in nets)  # the final capture released it all
    # Revenue and VAT recognized, less refunds: gross captured less gross refunded (the failed
    # line refund was reversed exactly).
    income = -sum(n for (a, _), n in nets.items() if a.startswith(("revenue:", "liabilities:")))
    refunds = sum(n for (a, _), n in nets.items() if a.startswith("contra_revenue:"))
    assert income - refunds == hold // 4 + hold // 2 - hold // 8
    state = book.states[auth.payment_id]
    assert (state.captured, state.refunded, state.status) == (
        hold // 4 + hold // 2, hold // 8, PaymentStatus.FINALIZED)  # fmt: skip
    assert book.rejections == {} and book.applied == len(stream.phase1) + len(stream.phase2)


def test_counts_add_up_and_duplicates_are_counted() -> None:
    stream = mixed_stream("unit2", payments_count=40, seed=4)
    records = _records([*stream.phase1, *stream.phase2])
    book = recompute(records)
    assert book.applied + book.duplicates + book.rejected == len(records)
    assert book.duplicates == stream.duplicates
    assert all(s.captured <= s.authorized_total for s in book.states.values())
    assert any(s.status is PaymentStatus.VOIDED for s in book.states.values())
    posted = sum(d - c for (a, _), (d, c) in book.balances.items() if not a.startswith("memo:"))
    assert posted == 0


def test_copy_text_escapes_only_what_it_must() -> None:
    assert _text(None) == "\\N"
    assert _text("DE*EVL*E0001") == "DE*EVL*E0001"
    assert _text("a\tb\nc\\d\re") == "a\\tb\\nc\\\\d\\re"
