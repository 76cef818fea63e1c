"""Balances derived from journal entries, in memory: batch deltas, trial balance, views.

``aggregate`` is what lets the Postgres projector write hot accounts (a provider's clearing
account is hit by every capture) once per batch instead of once per event: sum the batch's
entries into one delta per (account, currency) and upsert those, in the sorted order returned, so
concurrent batches take row locks in the same order and cannot deadlock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from ledger.accounting.accounts import Account, Side
from ledger.accounting.journal import JournalEntry
from ledger.money import Money


class View(StrEnum):
    POSTED = "POSTED"
    """Money: every account but memo accounts."""
    PENDING = "PENDING"
    """Memo accounts only: open authorization holds."""
    ALL = "ALL"

    def shows(self, account: Account) -> bool:
        if self is View.ALL:
            return True
        return account.is_memo == (self is View.PENDING)


@dataclass(frozen=True, slots=True, order=True)
class BalanceDelta:
    """Movement of one account in one currency over a set of entries, in minor units."""

    account: Account
    currency: str
    debit: int
    """Sum of debit postings (>= 0)."""
    credit: int
    """Sum of credit postings, as a positive number."""
    postings: int = 0

    @property
    def net(self) -> int:
        """Signed movement, debit positive: what to add to a stored debit-positive balance."""
        return self.debit - self.credit

    @property
    def normal(self) -> int:
        """Movement in the account's normal direction (a credit raises a revenue account)."""
        return self.net if self.account.normal_balance is Side.DEBIT else -self.net

    def money(self) -> Money:
        return Money(self.net, self.currency)


Key = tuple[Account, str]


def aggregate(entries: Iterable[JournalEntry]) -> list[BalanceDelta]:
    """One delta per (account, currency) touched by ``entries``, sorted by account then currency.

    A delta whose net is zero is still returned (its debit/credit totals moved); a projector that
    stores only net balances may skip it.
    """
    # Keyed by the account's code: a str caches its hash, an Account computes it in Python on
    # every look-up. Accounts are equal, and ordered, exactly as their codes are.
    sums: dict[tuple[str, str], list[int]] = {}
    accounts: dict[str, Account] = {}
    for entry in entries:
        for p in entry.postings:
            account, amount = p.account, p.amount
            key = (account.code, amount.currency)
            row = sums.get(key)
            if row is None:
                row = sums[key] = [0, 0, 0]
                accounts[account.code] = account
            minor = amount.amount_minor
            if minor > 0:
                row[0] += minor
            else:
                row[1] -= minor
            row[2] += 1
    return [
        BalanceDelta(accounts[code], currency, debit, credit, count)
        for (code, currency), (debit, credit, count) in sorted(sums.items())
    ]


@dataclass(frozen=True, slots=True)
class TrialBalance:
    """Each account's balance in the debit or credit column; per currency the columns agree."""

    rows: tuple[BalanceDelta, ...]

    def totals(self) -> dict[str, tuple[int, int]]:
        """Per currency: (sum of debit balances, sum of credit balances)."""
        out: dict[str, tuple[int, int]] = {}
        for row in self.rows:
            debits, credits = out.get(row.currency, (0, 0))
            out[row.currency] = (debits + max(row.net, 0), credits + max(-row.net, 0))
        return out

    @property
    def is_balanced(self) -> bool:
        return all(debits == credits for debits, credits in self.totals().values())


class Balances:
    """An immutable book of balances: debit and credit totals per (account, currency)."""

    __slots__ = ("_rows",)

    def __init__(self, rows: Mapping[Key, tuple[int, int]] | None = None) -> None:
        self._rows: dict[Key, tuple[int, int]] = dict(rows or {})

    @classmethod
    def of(cls, entries: Iterable[JournalEntry]) -> Balances:
        return cls().applying(entries)

    def applying(self, entries: Iterable[JournalEntry]) -> Balances:
        """These balances plus ``entries``, through the same ``aggregate`` the projector uses."""
        return self.with_deltas(aggregate(entries))

    def with_deltas(self, deltas: Iterable[BalanceDelta]) -> Balances:
        rows = dict(self._rows)
        for delta in deltas:
            key = (delta.account, delta.currency)
            debit, credit = rows.get(key, (0, 0))
            rows[key] = (debit + delta.debit, credit + delta.credit)
        return Balances(rows)

    def balance(self, account: Account, currency: str) -> Money:
        """Signed balance, debit positive (a revenue account's balance is negative)."""
        debit, credit = self._rows.get((account, currency), (0, 0))
        return Money(debit - credit, currency)

    def rows(self, view: View = View.ALL) -> list[BalanceDelta]:
        """Every account with movement, sorted, as totals since the beginning of the book."""
        return [
            BalanceDelta(account, currency, debit, credit)
            for (account, currency), (debit, credit) in sorted(self._rows.items())
            if view.shows(account)
        ]

    def nets(self, view: View = View.ALL) -> dict[Key, int]:
        """Non-zero signed balances; two books with equal nets report the same positions."""
        return {(r.account, r.currency): r.net for r in self.rows(view) if r.net}

    def trial_balance(self, view: View = View.POSTED) -> TrialBalance:
        return TrialBalance(tuple(r for r in self.rows(view) if r.net))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Balances) and self._rows == other._rows

    def __hash__(self) -> int:
        return hash(frozenset(self._rows.items()))

    def __repr__(self) -> str:
        return f"Balances({len(self._rows)} accounts)"
