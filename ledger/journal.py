"""Journal entries: balanced sets of postings, one or more per applied event.

Sign convention: a posting's amount is signed, **debit positive, credit negative**. An entry
balances when its postings sum to zero in every currency. An entry is either wholly *posted*
(money) or wholly *memo* (pending authorization holds), never a mix, so each ledger balances on
its own.

Entry ids are UUIDv5 of ``event_id`` and the entry kind, so replaying an event yields the same ids
and the database can refuse a second insert.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from ledger.accounts import Account
from ledger.errors import ValidationError
from ledger.money import Money

ENTRY_NAMESPACE = uuid.UUID("5b0f6a52-3d0e-4c1e-9d53-6c0e2f3e7a10")
"""UUIDv5 namespace of journal entry ids. Never change it: stored entry ids depend on it."""


class EntryKind(StrEnum):
    HOLD_PLACED = "HOLD_PLACED"
    HOLD_INCREASED = "HOLD_INCREASED"
    HOLD_RELEASED = "HOLD_RELEASED"
    CAPTURE = "CAPTURE"
    PROVIDER_FEE = "PROVIDER_FEE"
    REFUND = "REFUND"
    REFUND_REVERSAL = "REFUND_REVERSAL"
    DISPUTE_OPENED = "DISPUTE_OPENED"
    DISPUTE_WON = "DISPUTE_WON"
    DISPUTE_LOST = "DISPUTE_LOST"
    PAYOUT = "PAYOUT"
    WRITE_OFF = "WRITE_OFF"


class UnbalancedEntry(ValidationError):
    """Postings do not sum to zero per currency: a bug in a posting rule, never bad input."""

    code = "UNBALANCED_ENTRY"


class MalformedEntry(ValidationError):
    """Fewer than two postings, a zero posting, or memo and posted accounts in one entry."""

    code = "MALFORMED_ENTRY"


@dataclass(frozen=True, slots=True)
class Posting:
    """One line of an entry: ``amount`` is positive for a debit, negative for a credit."""

    account: Account
    amount: Money

    @classmethod
    def debit(cls, account: Account, amount: Money) -> Posting:
        return cls(account, amount)

    @classmethod
    def credit(cls, account: Account, amount: Money) -> Posting:
        return cls(account, -amount)

    @property
    def is_debit(self) -> bool:
        return self.amount.amount_minor > 0


def entry_id_for(event_id: str, kind: EntryKind) -> str:
    """The deterministic id of the ``kind`` entry caused by ``event_id``."""
    return str(uuid.uuid5(ENTRY_NAMESPACE, f"{event_id}:{kind.value}"))


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """A balanced, immutable journal entry. Raises UnbalancedEntry or MalformedEntry."""

    entry_id: str
    event_id: str
    payment_id: str | None
    network_id: str
    occurred_at: datetime
    kind: EntryKind
    postings: tuple[Posting, ...]

    def __post_init__(self) -> None:
        context = {"entry_id": self.entry_id, "event_id": self.event_id}
        if len(self.postings) < 2:
            raise MalformedEntry("an entry needs at least two postings", **context)
        if any(p.amount.is_zero for p in self.postings):
            raise MalformedEntry("zero postings are not recorded", **context)
        if len({p.account.is_memo for p in self.postings}) != 1:
            raise MalformedEntry("memo and posted accounts cannot share an entry", **context)
        for currency, total in _totals(self.postings).items():
            if total != 0:
                raise UnbalancedEntry(
                    f"postings sum to {total} minor units of {currency}",
                    currency=currency,
                    **context,
                )

    @classmethod
    def for_event(
        cls,
        *,
        event_id: str,
        kind: EntryKind,
        payment_id: str | None,
        network_id: str,
        occurred_at: datetime,
        postings: Iterable[Posting],
    ) -> JournalEntry:
        """Build the ``kind`` entry of an event, its id derived from ``event_id``."""
        return cls(
            entry_id=entry_id_for(event_id, kind),
            event_id=event_id,
            payment_id=payment_id,
            network_id=network_id,
            occurred_at=occurred_at,
            kind=kind,
            postings=merge(postings),
        )

    @property
    def is_memo(self) -> bool:
        return self.postings[0].account.is_memo

    @property
    def currencies(self) -> frozenset[str]:
        return frozenset(p.amount.currency for p in self.postings)


def merge(postings: Iterable[Posting]) -> tuple[Posting, ...]:
    """Sum postings to the same account and currency, drop zeros, keep first-seen order."""
    sums: dict[tuple[Account, str], int] = {}
    for p in postings:
        key = (p.account, p.amount.currency)
        sums[key] = sums.get(key, 0) + p.amount.amount_minor
    return tuple(
        Posting(account, Money(amount, currency))
        for (account, currency), amount in sums.items()
        if amount != 0
    )


def _totals(postings: Iterable[Posting]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for p in postings:
        totals[p.amount.currency] = totals.get(p.amount.currency, 0) + p.amount.amount_minor
    return totals


def reversal(
    entry: JournalEntry, *, event_id: str, kind: EntryKind, occurred_at: datetime
) -> JournalEntry:
    """A new entry that undoes ``entry`` posting by posting (corrections never edit entries)."""
    return JournalEntry.for_event(
        event_id=event_id,
        kind=kind,
        payment_id=entry.payment_id,
        network_id=entry.network_id,
        occurred_at=occurred_at,
        postings=(Posting(p.account, -p.amount) for p in entry.postings),
    )
