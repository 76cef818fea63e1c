"""Chart of accounts and journal entries: grammar, types, signs, balancing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ledger.accounting import accounts
from ledger.accounting.accounts import Account, AccountType, InvalidAccount, Side, segment
from ledger.accounting.journal import (
    EntryKind,
    JournalEntry,
    MalformedEntry,
    Posting,
    UnbalancedEntry,
    entry_id_for,
    merge,
    reversal,
)
from ledger.dimensions import Dimension
from ledger.money import Money

AT = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def eur(minor: int) -> Money:
    return Money(minor, "EUR")


def entry(*postings: Posting, kind: EntryKind = EntryKind.CAPTURE) -> JournalEntry:
    return JournalEntry.for_event(
        event_id="ev-1",
        kind=kind,
        payment_id="pay-1",
        network_id="acme",
        occurred_at=AT,
        postings=postings,
    )


# -- chart ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("account", "code", "type_", "normal"),
    [
        (accounts.bank(), "assets:bank", AccountType.ASSET, Side.DEBIT),
        (
            accounts.provider_clearing("stripe"),
            "assets:provider_clearing:stripe",
            AccountType.ASSET,
            Side.DEBIT,
        ),
        (
            accounts.disputes_receivable("stripe"),
            "assets:disputes_receivable:stripe",
            AccountType.ASSET,
            Side.DEBIT,
        ),
        (
            accounts.vat_payable("de", "19.00"),
            "liabilities:vat_payable:DE:19",
            AccountType.LIABILITY,
            Side.CREDIT,
        ),
        (
            accounts.revenue(Dimension.ENERGY, "DE", "19"),
            "revenue:energy:DE:19",
            AccountType.REVENUE,
            Side.CREDIT,
        ),
        (
            accounts.refunds(Dimension.PARKING_TIME, "FR", "5.50"),
            "contra_revenue:refunds:parking_time:FR:5.5",
            AccountType.REVENUE,
            Side.DEBIT,
        ),
        (
            accounts.provider_fees("braintree"),
            "expenses:provider_fees:braintree",
            AccountType.EXPENSE,
            Side.DEBIT,
        ),
        (
            accounts.dispute_losses("stripe"),
            "expenses:dispute_losses:stripe",
            AccountType.EXPENSE,
            Side.DEBIT,
        ),
        (
            accounts.write_offs("shortfall"),
            "expenses:write_offs:shortfall",
            AccountType.EXPENSE,
            Side.DEBIT,
        ),
        (accounts.opening_balances(), "equity:opening_balances", AccountType.EQUITY, Side.CREDIT),
        (
            accounts.authorization_holds("stripe"),
            "memo:authorization_holds:stripe",
            AccountType.MEMO,
            Side.DEBIT,
        ),
        (
            accounts.hold_commitments("stripe"),
            "memo:hold_commitments:stripe",
            AccountType.MEMO,
            Side.CREDIT,
        ),
    ],
)
def test_accounts_have_a_code_type_and_normal_balance(
    account: Account, code: str, type_: AccountType, normal: Side
) -> None:
    assert account.code == code
    assert account.type is type_
    assert account.normal_balance is normal
    assert Account(code) == account
    assert account.is_memo == (type_ is AccountType.MEMO)


def test_accounts_contra_revenue_is_the_only_contra_family() -> None:
    contra = {key for key, family in accounts.FAMILIES.items() if family.is_contra}
    assert contra == {("contra_revenue", "refunds")}


def test_accounts_revenue_family_per_dimension() -> None:
    for dimension in Dimension:
        account = accounts.revenue(dimension, "DE", "19")
        assert account.code.split(":")[1] == dimension.value.lower()


def test_accounts_missing_country_or_rate_is_unassigned_not_guessed() -> None:
    assert accounts.revenue(Dimension.FLAT, "DE", None).code == "revenue:flat:DE:unassigned"
    assert accounts.revenue(Dimension.FLAT, None, "19").code == "revenue:flat:unassigned:19"
    assert accounts.vat_payable(None, None).code == "liabilities:vat_payable:unassigned:unassigned"


@pytest.mark.parametrize(
    ("given", "segment_"),
    [("19", "19"), ("19.00", "19"), ("5.5", "5.5"), ("5.50", "5.5"), ("0", "0"), ("0.0", "0"),
     ("100", "100"), ("1E1", "10"), (" 7 ", "7"), (None, "unassigned"), ("", "unassigned"),
     ("-1", "unassigned"), ("100.01", "unassigned"), ("NaN", "unassigned"),
     ("Infinity", "unassigned"), ("nineteen", "unassigned"), ("19%", "unassigned")],
)  # fmt: skip
def test_accounts_rate_segment_is_a_canonical_decimal_or_unassigned(
    given: str | None, segment_: str
) -> None:
    assert accounts.rate_segment(given) == segment_


@pytest.mark.parametrize("country", ["Germany", "D", "D1", "DE:1", "ST-1", "4111111111111111"])
def test_accounts_free_text_never_becomes_a_country_segment(country: str) -> None:
    """The old chart put upstream station ids into account codes; the new one takes two
    letters or nothing."""
    assert accounts.revenue(Dimension.ENERGY, country, "19").code == (
        "revenue:energy:unassigned:19"
    )


def test_accounts_chart_does_not_grow_with_stations() -> None:
    """One account per dimension, country and rate, however many stations post to it."""
    codes = {
        accounts.revenue(dimension, country, "19").code
        for dimension in (Dimension.ENERGY, Dimension.TIME)
        for country in ("DE", "AT")
        for _station in range(500)
    }
    assert len(codes) == 4


def test_accounts_segment_escapes_only_grammar_characters() -> None:
    assert segment("DE*ABC*E123*1") == "DE*ABC*E123*1"
    assert segment("a:b") == "a%3Ab"
    assert segment("a%3Ab") == "a%253Ab"  # injective: an escaped id never meets an escape
    assert segment("st 1") == "st%201"
    assert accounts.provider_fees("psp:1").code == "expenses:provider_fees:psp%3A1"


@pytest.mark.parametrize(
    "code",
    [
        "",
        "assets",
        "assets:cash",
        "assets:provider_clearing",
        "assets:provider_clearing:stripe:extra",
        "assets:provider_clearing:",
        "revenue:energy:acme",
        "income:energy:acme:st",
        "memo:authorization_holds",
    ],
)
def test_accounts_reject_codes_outside_the_grammar(code: str) -> None:
    with pytest.raises(InvalidAccount) as caught:
        Account(code)
    assert caught.value.code == "INVALID_ACCOUNT"


def test_accounts_empty_segment_rejected() -> None:
    with pytest.raises(InvalidAccount):
        accounts.provider_clearing("")


# -- journal --------------------------------------------------------------------------------------
def test_journal_debit_positive_credit_negative() -> None:
    clearing = accounts.provider_clearing("stripe")
    assert Posting.debit(clearing, eur(100)).amount == eur(100)
    assert Posting.credit(clearing, eur(100)).amount == eur(-100)
    assert Posting.debit(clearing, eur(100)).is_debit


def test_journal_balanced_entry_is_accepted() -> None:
    e = entry(
        Posting.debit(accounts.provider_clearing("stripe"), eur(119)),
        Posting.credit(accounts.revenue(Dimension.ENERGY, "DE", "19"), eur(100), "ST-1"),
        Posting.credit(accounts.vat_payable("DE", "19"), eur(19), "ST-1"),
    )
    assert sum(p.amount.amount_minor for p in e.postings) == 0
    assert not e.is_memo
    assert e.currencies == frozenset({"EUR"})


def test_journal_unbalanced_entry_raises_with_code() -> None:
    with pytest.raises(UnbalancedEntry) as caught:
        entry(
            Posting.debit(accounts.provider_clearing("stripe"), eur(119)),
            Posting.credit(accounts.vat_payable("DE", "19"), eur(19)),
        )
    assert caught.value.code == "UNBALANCED_ENTRY"
    assert caught.value.context["event_id"] == "ev-1"


def test_journal_balances_per_currency_not_across() -> None:
    clearing, fees = accounts.provider_clearing("stripe"), accounts.provider_fees("stripe")
    entry(
        Posting.debit(fees, eur(5)),
        Posting.credit(clearing, eur(5)),
        Posting.debit(fees, Money(7, "JPY")),
        Posting.credit(clearing, Money(7, "JPY")),
    )
    with pytest.raises(UnbalancedEntry):
        entry(Posting.debit(fees, eur(5)), Posting.credit(clearing, Money(5, "JPY")))


def test_journal_memo_and_posted_accounts_never_share_an_entry() -> None:
    with pytest.raises(MalformedEntry):
        entry(
            Posting.debit(accounts.authorization_holds("stripe"), eur(5)),
            Posting.credit(accounts.provider_clearing("stripe"), eur(5)),
        )


def test_journal_needs_two_non_zero_postings() -> None:
    with pytest.raises(MalformedEntry):
        entry(Posting.debit(accounts.bank(), eur(0)), Posting.credit(accounts.bank(), eur(0)))
    with pytest.raises(MalformedEntry):
        JournalEntry(
            entry_id="x",
            event_id="ev-1",
            payment_id=None,
            network_id="acme",
            occurred_at=AT,
            kind=EntryKind.PAYOUT,
            postings=(Posting.debit(accounts.bank(), eur(5)),),
        )


def test_journal_merge_sums_same_account_and_drops_zeros() -> None:
    vat = accounts.vat_payable("DE", "19")
    clearing = accounts.provider_clearing("stripe")
    merged = merge(
        [
            Posting.credit(vat, eur(10)),
            Posting.debit(clearing, eur(0)),
            Posting.credit(vat, eur(9)),
        ]
    )
    assert merged == (Posting.credit(vat, eur(19)),)


def test_journal_merge_keeps_postings_of_different_stations_apart() -> None:
    vat = accounts.vat_payable("DE", "19")
    merged = merge(
        [
            Posting.credit(vat, eur(10), "ST-1"),
            Posting.credit(vat, eur(9), "ST-2"),
            Posting.credit(vat, eur(1), "ST-1"),
        ]
    )
    assert merged == (Posting.credit(vat, eur(11), "ST-1"), Posting.credit(vat, eur(9), "ST-2"))


def test_journal_entry_ids_are_deterministic_per_event_and_kind() -> None:
    assert entry_id_for("ev-1", EntryKind.CAPTURE) == entry_id_for("ev-1", EntryKind.CAPTURE)
    assert entry_id_for("ev-1", EntryKind.CAPTURE) != entry_id_for("ev-1", EntryKind.HOLD_RELEASED)
    assert entry_id_for("ev-1", EntryKind.CAPTURE) != entry_id_for("ev-2", EntryKind.CAPTURE)
    # Frozen value: a stored id must never change with a refactoring.
    assert entry_id_for("ev-1", EntryKind.CAPTURE) == "ceec2cf1-6f5f-505b-a164-2d04c4332d4c"


def test_journal_reversal_negates_every_posting_under_a_new_id() -> None:
    original = entry(
        Posting.debit(accounts.provider_clearing("stripe"), eur(119)),
        Posting.credit(accounts.vat_payable("DE", "19"), eur(119)),
    )
    undo = reversal(original, event_id="ev-2", kind=EntryKind.REFUND_REVERSAL, occurred_at=AT)
    assert [p.amount for p in undo.postings] == [eur(-119), eur(119)]
    assert undo.entry_id == entry_id_for("ev-2", EntryKind.REFUND_REVERSAL)
    assert undo.payment_id == original.payment_id
