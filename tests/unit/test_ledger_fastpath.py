"""The ledger's fast paths give exactly what the plain versions they replace gave.

``payments.apply`` runs for every money event, so ``Money``, ``Posting`` and ``JournalEntry`` are
built without dataclass overheads, entry ids are hashed without ``uuid.UUID``, ``merge`` keeps
postings it need not rebuild, and a state is updated without ``dataclasses.replace``. Each test
holds one of those to the slower code it stands in for.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle
import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.payment_state_form import state_from_dict, state_to_dict
from ledger.accounting import accounts
from ledger.accounting.journal import (
    ENTRY_NAMESPACE,
    EntryKind,
    JournalEntry,
    MalformedEntry,
    Posting,
    UnbalancedEntry,
    entry_id_for,
    merge,
)
from ledger.accounting.posting_rules import EntryContext, RevenueShare
from ledger.dimensions import Dimension
from ledger.errors import UnknownCurrency, ValidationError
from ledger.events import DisputeOutcome
from ledger.money import Money
from ledger.payments.state import (
    DisputeRecord,
    PaymentState,
    PaymentStatus,
    ReceivableRecord,
    RefundRecord,
)

AT = datetime(2025, 3, 1, tzinfo=UTC)


# -- entry ids ----------------------------------------------------------------------------------
@settings(max_examples=500, deadline=None)
@given(st.text(), st.sampled_from(list(EntryKind)))
def test_entry_id_is_the_uuid5_of_event_and_kind(event_id: str, kind: EntryKind) -> None:
    expected = str(uuid.uuid5(ENTRY_NAMESPACE, f"{event_id}:{kind.value}"))
    assert entry_id_for(event_id, kind) == expected


def test_entry_id_of_a_uuid7_event_id_is_unchanged() -> None:
    event_id = "01a20d05-7c66-7e07-8665-950b0a85b3f0"
    for kind in EntryKind:
        expected = str(uuid.uuid5(ENTRY_NAMESPACE, f"{event_id}:{kind.value}"))
        assert entry_id_for(event_id, kind) == expected


# -- money --------------------------------------------------------------------------------------
def test_money_is_an_immutable_value() -> None:
    money = Money(1234, "EUR")
    assert money == Money(amount_minor=1234, currency="EUR")
    assert hash(money) == hash(Money(1234, "EUR"))
    assert money != Money(1234, "USD")
    assert repr(money) == "Money(amount_minor=1234, currency='EUR')"
    with pytest.raises(dataclasses.FrozenInstanceError):
        money.amount_minor = 1  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(money)) == money
    assert copy.deepcopy(money) == money
    assert dataclasses.replace(money, amount_minor=5) == Money(5, "EUR")
    assert dataclasses.asdict(money) == {"amount_minor": 1234, "currency": "EUR"}


@pytest.mark.parametrize("amount", [1.0, True, "12", None])
def test_money_rejects_an_amount_that_is_not_an_int(amount: object) -> None:
    with pytest.raises(ValidationError, match="integer minor units"):
        Money(amount, "EUR")  # type: ignore[arg-type]
    # The amount is checked before the currency, as before.
    with pytest.raises(ValidationError, match="integer minor units"):
        Money(amount, "XXX")  # type: ignore[arg-type]


def test_money_rejects_an_unknown_currency() -> None:
    with pytest.raises(UnknownCurrency):
        Money(1, "XXX")
    with pytest.raises(UnknownCurrency):
        Money(1, None)  # type: ignore[arg-type]


def test_money_dataclass_replace_validates() -> None:
    with pytest.raises(UnknownCurrency):
        dataclasses.replace(Money(1, "EUR"), currency="XXX")


# -- merge --------------------------------------------------------------------------------------
ACCOUNTS = [
    accounts.provider_clearing("stripe"),
    accounts.vat_payable("DE", "19"),
    accounts.revenue(Dimension.ENERGY, "DE", "19"),
    accounts.provider_fees("stripe"),
]


def merged_the_plain_way(postings: list[Posting]) -> tuple[Posting, ...]:
    """merge() as it was before its fast path: sum per (account, currency), drop zeros."""
    sums: dict[tuple[accounts.Account, str], int] = {}
    for p in postings:
        key = (p.account, p.amount.currency)
        sums[key] = sums.get(key, 0) + p.amount.amount_minor
    return tuple(
        Posting(account, Money(amount, currency))
        for (account, currency), amount in sums.items()
        if amount != 0
    )


POSTINGS = st.lists(
    st.builds(
        Posting,
        st.sampled_from(ACCOUNTS),
        st.builds(Money, st.integers(-3, 3), st.sampled_from(["EUR", "USD"])),
    ),
    max_size=6,
)


@settings(max_examples=500, deadline=None)
@given(POSTINGS)
def test_merge_equals_the_plain_merge(postings: list[Posting]) -> None:
    assert merge(postings) == merged_the_plain_way(postings)
    assert merge(iter(postings)) == merged_the_plain_way(postings)


def test_merge_keeps_distinct_non_zero_postings_as_given() -> None:
    postings = [
        Posting.debit(ACCOUNTS[0], Money(5, "EUR")),
        Posting.credit(ACCOUNTS[1], Money(5, "EUR")),
    ]
    assert merge(postings) == tuple(postings)


# -- entry validation ---------------------------------------------------------------------------
def entry(*postings: Posting) -> JournalEntry:
    return JournalEntry("id", "ev", None, "acme", AT, EntryKind.CAPTURE, postings)


def test_entry_checks_fail_in_their_documented_order() -> None:
    clearing = ACCOUNTS[0]
    holds = accounts.authorization_holds("stripe")
    with pytest.raises(MalformedEntry) as short:
        entry(Posting(clearing, Money(0, "EUR")))
    assert str(short.value) == (
        "[MALFORMED_ENTRY] an entry needs at least two postings (entry_id=id, event_id=ev)"
    )
    # A zero posting is reported before a memo/posted mix and before an imbalance.
    with pytest.raises(MalformedEntry, match="zero postings"):
        entry(Posting(holds, Money(3, "EUR")), Posting(clearing, Money(0, "EUR")))
    with pytest.raises(MalformedEntry, match="memo and posted"):
        entry(Posting(holds, Money(3, "EUR")), Posting(clearing, Money(-4, "EUR")))
    with pytest.raises(MalformedEntry, match="memo and posted"):
        entry(Posting(clearing, Money(3, "EUR")), Posting(holds, Money(-3, "EUR")))


def test_unbalanced_entry_names_the_first_unbalanced_currency() -> None:
    clearing, vat = ACCOUNTS[0], ACCOUNTS[1]
    with pytest.raises(UnbalancedEntry) as single:
        entry(Posting(clearing, Money(3, "EUR")), Posting(vat, Money(-2, "EUR")))
    assert str(single.value) == (
        "[UNBALANCED_ENTRY] postings sum to 1 minor units of EUR"
        " (currency=EUR, entry_id=id, event_id=ev)"
    )
    with pytest.raises(UnbalancedEntry) as several:
        entry(
            Posting(clearing, Money(3, "EUR")),
            Posting(vat, Money(-3, "EUR")),
            Posting(clearing, Money(7, "USD")),
            Posting(vat, Money(-5, "USD")),
            Posting(vat, Money(4, "JPY")),
        )
    assert several.value.context["currency"] == "USD"
    assert "postings sum to 2 minor units of USD" in str(several.value)


def test_balanced_multi_currency_entry_is_accepted() -> None:
    clearing, vat = ACCOUNTS[0], ACCOUNTS[1]
    built = entry(
        Posting(clearing, Money(3, "EUR")),
        Posting(clearing, Money(7, "USD")),
        Posting(vat, Money(-3, "EUR")),
        Posting(vat, Money(-7, "USD")),
    )
    assert built.currencies == frozenset({"EUR", "USD"})


def test_entry_is_frozen_and_replace_revalidates() -> None:
    built = entry(
        Posting.debit(ACCOUNTS[0], Money(3, "EUR")), Posting.credit(ACCOUNTS[1], Money(3, "EUR"))
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.entry_id = "other"  # type: ignore[misc]
    with pytest.raises(MalformedEntry):
        dataclasses.replace(built, postings=built.postings[:1])
    assert pickle.loads(pickle.dumps(built)) == built


# -- payment state ------------------------------------------------------------------------------
SHARE = RevenueShare(Dimension.ENERGY, "s1", "DE", 1000, 190)

STATE = PaymentState(
    payment_id="p1",
    network_id="acme",
    provider="stripe",
    currency="EUR",
    authorized=5000,
    incremented=500,
    captured=1190,
    refunded=119,
    hold=0,
    status=PaymentStatus.FINALIZED,
    provider_references=("p1-ref", "p1-charge"),
    capture_ids=("c1",),
    revenue=(RevenueShare(Dimension.ENERGY, "s1", "DE", 900, 171, "19"),),
    refunds=(
        RefundRecord(
            "r1", 119, (RevenueShare(Dimension.ENERGY, "s1", "DE", 100, 19, "19"),), "re_1"
        ),
        RefundRecord("r2", 10, (), None, reversed=True),
    ),
    disputes=(DisputeRecord("d1", 50, DisputeOutcome.WON), DisputeRecord("d2", 10)),
    applied_event_ids=frozenset({"ev-2", "ev-1"}),
    authorized_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
)

STORED = (
    '{"payment_id": "p1", "network_id": "acme", "provider": "stripe", "currency": "EUR", '
    '"authorized": 5000, "incremented": 500, "captured": 1190, "refunded": 119, "hold": 0, '
    '"status": "FINALIZED", "provider_references": ["p1-ref", "p1-charge"], '
    '"capture_ids": ["c1"], "revenue": [{"dimension": "ENERGY", "station": "s1", '
    '"country": "DE", "net": 900, "vat": 171, "rate": "19"}], "refunds": [{"refund_id": "r1", '
    '"amount": 119, "shares": [{"dimension": "ENERGY", "station": "s1", "country": "DE", '
    '"net": 100, "vat": 19, "rate": "19"}], "provider_reference": "re_1", "reversed": false}, '
    '{"refund_id": "r2", '
    '"amount": 10, "shares": [], "provider_reference": null, "reversed": true}], '
    '"disputes": [{"dispute_id": "d1", "amount": 50, "outcome": "WON"}, '
    '{"dispute_id": "d2", "amount": 10, "outcome": null}], '
    '"applied_event_ids": ["ev-1", "ev-2"], "authorized_at": "2026-01-02T03:04:05+00:00", '
    '"receivables": []}'
)
"""A state as stored: the JSON the projector has always written. It must read back, and be
written, exactly like this."""


def test_state_storage_form_is_unchanged() -> None:
    assert json.dumps(state_to_dict(STATE)) == STORED


def test_state_stored_before_authorized_at_existed_reads_back() -> None:
    data = json.loads(STORED)
    del data["authorized_at"]
    assert state_from_dict(data) == dataclasses.replace(STATE, authorized_at=None)


def test_state_stored_before_shares_had_rates_reads_back() -> None:
    """States written before migration 024 (which fills in what it can) have no ``rate``."""
    data = json.loads(STORED.replace(', "rate": "19"', ""))
    state = state_from_dict(data)
    assert [s.rate for s in state.revenue] == [None]
    assert state.revenue[0] == dataclasses.replace(STATE.revenue[0], rate=None)


def test_state_stored_before_receivables_existed_reads_back() -> None:
    data = json.loads(STORED)
    del data["receivables"]
    assert state_from_dict(data) == STATE


def test_a_receivable_round_trips_through_the_storage_form() -> None:
    share = RevenueShare(Dimension.ENERGY, "s1", "DE", 1000, 190, "19")
    owed = ReceivableRecord("cdr-1", 1190, datetime(2026, 11, 20, tzinfo=UTC), (share,), 100, 90)
    state = dataclasses.replace(STATE, receivables=(owed,))
    stored = state_to_dict(state)
    assert stored["receivables"] == [
        {
            "cdr_id": "cdr-1",
            "amount": 1190,
            "since": "2026-11-20T00:00:00+00:00",
            "remaining": [{"dimension": "ENERGY", "station": "s1", "country": "DE", "net": 1000,
                           "vat": 190, "rate": "19"}],
            "collected": 100,
            "written_off": 90,
        }
    ]  # fmt: skip
    assert state_from_dict(json.loads(json.dumps(stored))) == state
    assert state.receivable == 1000


def test_stored_state_reads_back_equal_with_enum_members() -> None:
    state = state_from_dict(json.loads(STORED))
    assert state == STATE
    assert state.status is PaymentStatus.FINALIZED
    assert state.revenue[0].dimension is Dimension.ENERGY
    assert state.disputes[0].outcome is DisputeOutcome.WON
    assert isinstance(state.applied_event_ids, frozenset)


def test_stored_state_with_an_unknown_status_is_refused() -> None:
    data = json.loads(STORED)
    data["status"] = "LOST"
    with pytest.raises(ValueError):
        state_from_dict(data)
    data = json.loads(STORED)
    data["revenue"][0]["dimension"] = ["not", "hashable"]
    with pytest.raises(ValueError):
        state_from_dict(data)


def test_state_updated_equals_dataclasses_replace() -> None:
    changes = {"hold": 7, "status": PaymentStatus.VOIDED, "capture_ids": ("c1", "c2")}
    assert STATE.updated(changes) == dataclasses.replace(STATE, **changes)  # type: ignore[arg-type]
    assert STATE.updated({}) == STATE


def test_updated_state_is_a_frozen_equal_value() -> None:
    updated = STATE.updated({"hold": 7})
    assert updated == dataclasses.replace(STATE, hold=7)
    assert hash(updated.applied_event_ids) == hash(STATE.applied_event_ids)
    with pytest.raises(dataclasses.FrozenInstanceError):
        updated.hold = 8  # type: ignore[misc]


# -- small values with hand-written constructors ------------------------------------------------
def test_revenue_share_and_entry_context_stay_frozen_values() -> None:
    assert SHARE.with_amounts(1, 2) == dataclasses.replace(SHARE, net=1, vat=2)
    assert (
        RevenueShare(dimension=Dimension.ENERGY, station="s1", country="DE", net=1000, vat=190)
        == SHARE
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        SHARE.net = 1  # type: ignore[misc]
    context = EntryContext("ev", None, "acme", AT)
    assert context == EntryContext(
        event_id="ev", payment_id=None, network_id="acme", occurred_at=AT
    )
    assert repr(context).startswith("EntryContext(event_id='ev', payment_id=None")
    with pytest.raises(dataclasses.FrozenInstanceError):
        context.event_id = "other"  # type: ignore[misc]


def test_is_memo_code_agrees_with_the_account_family() -> None:
    for (root, category), family in accounts.FAMILIES.items():
        account = accounts.Account(":".join([root, category, *("x" for _ in family.segments)]))
        assert accounts.is_memo_code(account.code) is account.is_memo
        assert account.is_memo is (family.type is accounts.AccountType.MEMO)
