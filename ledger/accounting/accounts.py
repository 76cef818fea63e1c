"""The chart of accounts: structured account codes, their type and normal balance.

An account code is ``root:category[:segment...]`` (grammar in docs/accounting.md). The root and
category name a *family* with a fixed type, normal balance and number of variable segments; the
variable segments carry the provider, country or VAT rate the balance belongs to.

Revenue and VAT accounts are per tariff dimension, country of supply and VAT rate only
(``revenue:energy:DE:19``): the chart stays the same size however many stations a network runs,
and no free text from upstream becomes an account code. Station (and, through the CDR an entry
references, EVSE, tariff and session) is a dimension on the posting (``journal.Posting.station``).
Countries must be ISO 3166-1 alpha-2 codes and rates decimal percentages, or the posting is
booked under ``unassigned``; ``segment()`` percent-encodes the few characters that would break
the grammar (``:``, ``%``, whitespace) in the other segments (provider names, reasons).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from functools import lru_cache

from ledger.dimensions import Dimension
from ledger.errors import ValidationError

UNASSIGNED = "unassigned"
"""Segment used when an event leaves the VAT country or rate out: visible, never guessed."""


class AccountType(StrEnum):
    ASSET = "ASSET"
    LIABILITY = "LIABILITY"
    EQUITY = "EQUITY"
    REVENUE = "REVENUE"
    EXPENSE = "EXPENSE"
    MEMO = "MEMO"
    """Off-balance-sheet (pending) amounts: authorization holds. Never mixed with posted ones."""


class Side(StrEnum):
    DEBIT = "DEBIT"
    CREDIT = "CREDIT"


class InvalidAccount(ValidationError):
    code = "INVALID_ACCOUNT"


@dataclass(frozen=True, slots=True)
class Family:
    """What every account with one ``root:category`` prefix has in common."""

    type: AccountType
    normal_balance: Side
    segments: tuple[str, ...]
    """Names of the variable segments after ``root:category`` (documentation and validation)."""
    description: str

    @property
    def is_contra(self) -> bool:
        natural = Side.DEBIT if self.type in _DEBIT_TYPES else Side.CREDIT
        return self.type is not AccountType.MEMO and self.normal_balance is not natural


_DEBIT_TYPES = frozenset({AccountType.ASSET, AccountType.EXPENSE})

_REVENUE_SEGMENTS = ("country", "vat_rate")

FAMILIES: dict[tuple[str, str], Family] = {
    ("assets", "bank"): Family(
        AccountType.ASSET, Side.DEBIT, (), "Operator bank account: provider payouts land here"
    ),
    ("assets", "provider_clearing"): Family(
        AccountType.ASSET,
        Side.DEBIT,
        ("provider",),
        "Captured money the provider owes us until it pays it out",
    ),
    ("assets", "settlement_receivable"): Family(
        AccountType.ASSET,
        Side.DEBIT,
        ("provider",),
        "Charges supplied and billed whose capture the provider has not confirmed yet",
    ),
    ("assets", "customer_receivables"): Family(
        AccountType.ASSET,
        Side.DEBIT,
        (),
        "Billed supplies whose capture failed: owed by the driver or the eMSP (by payment and CDR"
        " on the entry)",
    ),
    ("assets", "disputes_receivable"): Family(
        AccountType.ASSET,
        Side.DEBIT,
        ("provider",),
        "Money the provider withdrew for an open dispute; returns if the dispute is won",
    ),
    ("liabilities", "vat_payable"): Family(
        AccountType.LIABILITY,
        Side.CREDIT,
        _REVENUE_SEGMENTS,
        "VAT collected at one rate, owed to the tax authority of the country of supply",
    ),
    **{
        ("revenue", dimension.value.lower()): Family(
            AccountType.REVENUE,
            Side.CREDIT,
            _REVENUE_SEGMENTS,
            f"Net revenue recognized on supply, tariff dimension {dimension.value}, per country"
            " of supply and VAT rate",
        )
        for dimension in Dimension
    },
    ("contra_revenue", "refunds"): Family(
        AccountType.REVENUE,
        Side.DEBIT,
        ("dimension", *_REVENUE_SEGMENTS),
        "Net revenue given back by refunds; gross revenue stays as recognized",
    ),
    ("expenses", "provider_fees"): Family(
        AccountType.EXPENSE, Side.DEBIT, ("provider",), "Provider processing and payout fees"
    ),
    ("expenses", "dispute_losses"): Family(
        AccountType.EXPENSE, Side.DEBIT, ("provider",), "Disputes lost to the cardholder"
    ),
    ("expenses", "bad_debts"): Family(
        AccountType.EXPENSE,
        Side.DEBIT,
        (),
        "Customer receivables given up (net, when the VAT in them is reclaimed)",
    ),
    ("expenses", "write_offs"): Family(
        AccountType.EXPENSE,
        Side.DEBIT,
        ("reason",),
        "Shortfalls and residuals written off by an explicit, reasoned decision",
    ),
    ("equity", "opening_balances"): Family(
        AccountType.EQUITY, Side.CREDIT, (), "Counterpart of balances migrated from a previous book"
    ),
    ("memo", "authorization_holds"): Family(
        AccountType.MEMO, Side.DEBIT, ("provider",), "Open authorization holds (pending, not money)"
    ),
    ("memo", "hold_commitments"): Family(
        AccountType.MEMO,
        Side.CREDIT,
        ("provider",),
        "Counterpart of authorization_holds, so the pending ledger balances too",
    ),
}
"""Every account family the ledger knows. A code outside this table is rejected."""


def segment(value: str) -> str:
    """Encode an outside id as one account-code segment; injective, and readable for sane ids."""
    if not value:
        raise InvalidAccount("an account segment cannot be empty")
    out: list[str] = []
    for ch in value:
        if ch in ":%" or ch.isspace() or not ch.isprintable():
            out.extend(f"%{byte:02X}" for byte in ch.encode())
        else:
            out.append(ch)
    return "".join(out)


@dataclass(frozen=True, slots=True, order=True)
class Account:
    """A ledger account, identified by its code (``assets:provider_clearing:stripe``)."""

    code: str

    def __post_init__(self) -> None:
        parts = self.code.split(":")
        family = FAMILIES.get((parts[0], parts[1])) if len(parts) >= 2 else None
        if family is None:
            raise InvalidAccount(f"no account family for {self.code!r}", account=self.code)
        variable = parts[2:]
        if len(variable) != len(family.segments) or not all(variable):
            raise InvalidAccount(
                f"{parts[0]}:{parts[1]} takes segments {family.segments}",
                account=self.code,
            )

    @property
    def family(self) -> Family:
        return _family_of(self.code)

    @property
    def type(self) -> AccountType:
        return self.family.type

    @property
    def normal_balance(self) -> Side:
        return self.family.normal_balance

    @property
    def is_memo(self) -> bool:
        return is_memo_code(self.code)

    def __str__(self) -> str:
        return self.code


@lru_cache(maxsize=65_536)
def _make(root: str, category: str, *segments: str) -> Account:
    # Accounts are immutable values and a network has a bounded set of them (providers,
    # stations, countries): build and validate each once, not on every posting.
    return Account(":".join([root, category, *(segment(s) for s in segments)]))


@lru_cache(maxsize=65_536)
def _family_of(code: str) -> Family:
    root, category = code.split(":", 2)[:2]
    return FAMILIES[(root, category)]


@lru_cache(maxsize=65_536)
def is_memo_code(code: str) -> bool:
    """``Account(code).is_memo`` for a valid code, as one cached call: journal entry validation
    asks it of every posting."""
    return _family_of(code).type is AccountType.MEMO


# -- constructors, one per family; the only way posting rules name accounts -------------------
def bank() -> Account:
    return _make("assets", "bank")


def provider_clearing(provider: str) -> Account:
    return _make("assets", "provider_clearing", provider)


def settlement_receivable(provider: str) -> Account:
    return _make("assets", "settlement_receivable", provider)


def customer_receivables() -> Account:
    return _make("assets", "customer_receivables")


def bad_debts() -> Account:
    return _make("expenses", "bad_debts")


def disputes_receivable(provider: str) -> Account:
    return _make("assets", "disputes_receivable", provider)


_COUNTRY = re.compile(r"[A-Za-z]{2}")


@lru_cache(maxsize=4096)
def country_segment(country: str | None) -> str:
    """The account segment of a country of supply: its ISO 3166-1 alpha-2 code in capitals, or
    ``unassigned`` for none or anything that is not two letters (never free text)."""
    return country.upper() if country and _COUNTRY.fullmatch(country) else UNASSIGNED


@lru_cache(maxsize=4096)
def rate_segment(rate: str | None) -> str:
    """The account segment of a VAT rate in percent: the decimal without trailing zeros
    (``"19.00"`` and ``"19"`` are ``19``, ``"5.50"`` is ``5.5``), or ``unassigned`` for none or
    anything that is not a number from 0 to 100."""
    if rate is None:
        return UNASSIGNED
    try:
        value = Decimal(rate.strip())
    except InvalidOperation:
        return UNASSIGNED
    if not value.is_finite() or not 0 <= value <= 100:
        return UNASSIGNED
    text = format(value.normalize(), "f")
    return text if text != "-0" else "0"


def vat_payable(country: str | None, rate: str | None) -> Account:
    return _make("liabilities", "vat_payable", country_segment(country), rate_segment(rate))


def revenue(dimension: Dimension, country: str | None, rate: str | None) -> Account:
    return _make("revenue", dimension.value.lower(), country_segment(country), rate_segment(rate))


def refunds(dimension: Dimension, country: str | None, rate: str | None) -> Account:
    """Contra-revenue: refunds never edit or directly reverse the revenue account."""
    return _make(
        "contra_revenue",
        "refunds",
        dimension.value.lower(),
        country_segment(country),
        rate_segment(rate),
    )


def provider_fees(provider: str) -> Account:
    return _make("expenses", "provider_fees", provider)


def dispute_losses(provider: str) -> Account:
    return _make("expenses", "dispute_losses", provider)


def write_offs(reason: str) -> Account:
    return _make("expenses", "write_offs", reason)


def opening_balances() -> Account:
    return _make("equity", "opening_balances")


def authorization_holds(provider: str) -> Account:
    return _make("memo", "authorization_holds", provider)


def hold_commitments(provider: str) -> Account:
    return _make("memo", "hold_commitments", provider)
