"""Journal entries: balanced sets of postings, one or more per applied event.

Sign convention: a posting's amount is signed, **debit positive, credit negative**. An entry
balances when its postings sum to zero in every currency. An entry is either wholly *posted*
(money) or wholly *memo* (pending authorization holds), never a mix, so each ledger balances on
its own.

Entry ids are UUIDv5 of ``event_id`` and the entry kind, so replaying an event yields the same ids
and the database can refuse a second insert.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import NoReturn

from ledger import ids
from ledger.accounting.accounts import Account, is_memo_code
from ledger.errors import ValidationError
from ledger.fastpaths import slot_setters
from ledger.money import Money

ENTRY_NAMESPACE = ids.JOURNAL_ENTRIES.namespace
"""UUIDv5 namespace of journal entry ids (``ledger.ids``). Never change it: stored entry ids
depend on it."""

_NAMESPACE_BYTES = ENTRY_NAMESPACE.bytes
_VARIANT_HEX = {c: "89ab"[int(c, 16) & 0b11] for c in "0123456789abcdef"}
"""First hex digit of the fourth UUID group once the RFC 4122 variant bits (10xx) are set."""


class EntryKind(StrEnum):
    HOLD_PLACED = "HOLD_PLACED"
    HOLD_INCREASED = "HOLD_INCREASED"
    HOLD_RELEASED = "HOLD_RELEASED"
    CAPTURE = "CAPTURE"
    CAPTURE_SETTLED = "CAPTURE_SETTLED"
    RECEIVABLE = "RECEIVABLE"
    RECEIVABLE_COLLECTED = "RECEIVABLE_COLLECTED"
    BAD_DEBT = "BAD_DEBT"
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
    """One line of an entry: ``amount`` is positive for a debit, negative for a credit.

    ``station`` is a dimension of the posting, not part of the account: the charging station a
    revenue, refund or VAT posting belongs to (None on postings no station owns)."""

    account: Account
    amount: Money
    station: str | None

    def __init__(self, account: Account, amount: Money, station: str | None = None) -> None:
        # Hand-written (see ledger.fastpaths.slot_setters); several postings are built per event.
        _set_account(self, account)
        _set_amount(self, amount)
        _set_station(self, station)

    @classmethod
    def debit(cls, account: Account, amount: Money, station: str | None = None) -> Posting:
        return cls(account, amount, station)

    @classmethod
    def credit(cls, account: Account, amount: Money, station: str | None = None) -> Posting:
        return cls(account, -amount, station)

    @property
    def is_debit(self) -> bool:
        return self.amount.amount_minor > 0


def entry_id_for(event_id: str, kind: EntryKind) -> str:
    """The deterministic id of the ``kind`` entry caused by ``event_id``.

    Equal to ``str(uuid.uuid5(ENTRY_NAMESPACE, f"{event_id}:{kind.value}"))`` (a property test
    holds it to that), built from the SHA-1 hex digest directly: 3x cheaper than via uuid.UUID.
    """
    # f"{kind}" is kind.value (a StrEnum formats as its value) without the slow Enum descriptor.
    digest = hashlib.sha1(
        _NAMESPACE_BYTES + f"{event_id}:{kind}".encode(), usedforsecurity=False
    ).hexdigest()  # a UUIDv5 (RFC 4122 names SHA-1), not a security use
    # UUIDv5 layout: version nibble 5 at hex digit 12, variant bits in hex digit 16.
    return (
        f"{digest[:8]}-{digest[8:12]}-5{digest[13:16]}-"
        f"{_VARIANT_HEX[digest[16]]}{digest[17:20]}-{digest[20:32]}"
    )


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

    def __init__(
        self,
        entry_id: str,
        event_id: str,
        payment_id: str | None,
        network_id: str,
        occurred_at: datetime,
        kind: EntryKind,
        postings: tuple[Posting, ...],
    ) -> None:
        # Hand-written (ledger.fastpaths.slot_setters); one to three entries are built per event.
        _set_entry_id(self, entry_id)
        _set_event_id(self, event_id)
        _set_payment_id(self, payment_id)
        _set_network_id(self, network_id)
        _set_occurred_at(self, occurred_at)
        _set_kind(self, kind)
        _set_postings(self, postings)
        self._validate()

    def _validate(self) -> None:
        # One pass over the postings (entries are built on every event); the checks still
        # fail in the order of the class docstring: count, zeros, memo mix, balance.
        postings = self.postings
        if len(postings) < 2:
            self._reject(MalformedEntry, "an entry needs at least two postings")
        memo = is_memo_code(postings[0].account.code)
        currency = postings[0].amount.currency
        has_zero = mixed = several_currencies = False
        total = 0
        for p in postings:
            amount = p.amount
            minor = amount.amount_minor
            if not minor:
                has_zero = True
            # is_memo_code(code) is Account.is_memo without a property call per posting.
            if is_memo_code(p.account.code) is not memo:
                mixed = True
            if amount.currency != currency:
                several_currencies = True
            total += minor
        if has_zero:
            self._reject(MalformedEntry, "zero postings are not recorded")
        if mixed:
            self._reject(MalformedEntry, "memo and posted accounts cannot share an entry")
        if several_currencies:
            for currency, total in _totals(postings).items():
                if total != 0:
                    self._unbalanced(currency, total)
        elif total != 0:
            self._unbalanced(currency, total)

    def _unbalanced(self, currency: str, total: int) -> NoReturn:
        message = f"postings sum to {total} minor units of {currency}"
        self._reject(UnbalancedEntry, message, currency=currency)

    def _reject(self, error: type[ValidationError], message: str, **context: object) -> NoReturn:
        # The ids go after ``context``: that order shows in the message (and always has).
        raise error(message, **context, entry_id=self.entry_id, event_id=self.event_id)

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
            entry_id_for(event_id, kind),
            event_id,
            payment_id,
            network_id,
            occurred_at,
            kind,
            merge(postings),
        )

    @property
    def is_memo(self) -> bool:
        return self.postings[0].account.is_memo

    @property
    def currencies(self) -> frozenset[str]:
        return frozenset(p.amount.currency for p in self.postings)


_set_account, _set_amount, _set_station = slot_setters(Posting)
(
    _set_entry_id,
    _set_event_id,
    _set_payment_id,
    _set_network_id,
    _set_occurred_at,
    _set_kind,
    _set_postings,
) = slot_setters(JournalEntry)


def merge(postings: Iterable[Posting]) -> tuple[Posting, ...]:
    """Sum postings to the same account, currency and station, drop zeros, keep first-seen
    order."""
    given = tuple(postings)
    # Posting rules rarely repeat an account or post a zero: then there is nothing to do, so
    # keep the postings as they are (equal values) rather than rebuild each one. One key per
    # non-zero posting, all distinct, means exactly that. Codes hash faster than Accounts,
    # and two Accounts are equal exactly when their codes are.
    keys = {(p.account.code, p.amount.currency, p.station) for p in given if p.amount.amount_minor}
    if len(keys) == len(given):
        return given
    sums: dict[tuple[Account, str, str | None], int] = {}
    for p in given:
        key = (p.account, p.amount.currency, p.station)
        sums[key] = sums.get(key, 0) + p.amount.amount_minor
    return tuple(
        Posting(account, Money(amount, currency), station)
        for (account, currency, station), amount in sums.items()
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
        postings=(Posting(p.account, -p.amount, p.station) for p in entry.postings),
    )
