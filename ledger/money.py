"""Money as integer minor units plus an ISO 4217 currency code. Never a float.

``Decimal`` appears only at the edges: parsing a decimal string and rounding a computed price
once, half-up, to minor units (see docs/tariffs.md for where that happens).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import NoReturn

from ledger.errors import CurrencyMismatch, UnknownCurrency, ValidationError
from ledger.fastpaths import slot_setters

# ISO 4217 minor-unit exponents for the currencies a charging network is likely to meet.
# Source: ISO 4217 amendment list (JPY/KRW/CLP/ISK 0, the Gulf dinars 3).
EXPONENTS: dict[str, int] = {
    "AED": 2, "AUD": 2, "BGN": 2, "BHD": 3, "BRL": 2, "CAD": 2, "CHF": 2, "CLP": 0, "CNY": 2,
    "CZK": 2, "DKK": 2, "EUR": 2, "GBP": 2, "HKD": 2, "HUF": 2, "IDR": 2, "ILS": 2, "INR": 2,
    "ISK": 0, "JOD": 3, "JPY": 0, "KRW": 0, "KWD": 3, "MXN": 2, "MYR": 2, "NOK": 2, "NZD": 2,
    "OMR": 3, "PLN": 2, "QAR": 2, "RON": 2, "SAR": 2, "SEK": 2, "SGD": 2, "THB": 2, "TND": 3,
    "TRY": 2, "TWD": 2, "UAH": 2, "USD": 2, "VND": 0, "ZAR": 2,
}  # fmt: skip


def exponent(currency: str) -> int:
    """Minor-unit exponent of ``currency``. Raises UnknownCurrency for codes we do not carry."""
    try:
        return EXPONENTS[currency]
    except KeyError:
        raise UnknownCurrency(
            f"unknown ISO 4217 currency {currency!r}", currency=currency
        ) from None


@dataclass(frozen=True, slots=True, order=False)
class Money:
    """An amount in integer minor units of one currency (EUR 12.34 is ``Money(1234, "EUR")``)."""

    amount_minor: int
    currency: str

    def __init__(self, amount_minor: int, currency: str) -> None:
        # Hand-written (see ledger.fastpaths.slot_setters): one check and two slot writes instead of
        # the generated __init__ plus __post_init__; Money is built ~9 times an event.
        if type(amount_minor) is not int or currency not in EXPONENTS:
            _invalid(amount_minor, currency)
        _set_amount_minor(self, amount_minor)
        _set_currency(self, currency)

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(0, currency)

    @classmethod
    def of(cls, amount: str | Decimal | int, currency: str) -> Money:
        """Parse a major-unit amount exactly ("12.34" EUR -> 1234). Raises if it has more
        decimals than the currency allows, so no value is silently rounded."""
        try:
            value = Decimal(str(amount)) if not isinstance(amount, Decimal) else amount
        except InvalidOperation:
            raise ValidationError(f"not a decimal amount: {amount!r}") from None
        scaled = value.scaleb(exponent(currency))
        if scaled != scaled.to_integral_value():
            raise ValidationError(
                f"{amount} has more decimals than {currency} allows",
                currency=currency,
                exponent=exponent(currency),
            )
        return cls(int(scaled), currency)

    @classmethod
    def round_half_up(cls, value: Decimal, currency: str) -> Money:
        """Round a major-unit Decimal once, half-up (away from zero on .5), to minor units."""
        scaled = value.scaleb(exponent(currency)).quantize(Decimal(1), rounding=ROUND_HALF_UP)
        return cls(int(scaled), currency)

    # -- arithmetic -------------------------------------------------------------------------
    def _same(self, other: Money) -> None:
        if self.currency != other.currency:
            raise CurrencyMismatch(
                f"cannot combine {self.currency} and {other.currency}",
                left=self.currency,
                right=other.currency,
            )

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount_minor + other.amount_minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount_minor - other.amount_minor, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount_minor, self.currency)

    def __lt__(self, other: Money) -> bool:
        self._same(other)
        return self.amount_minor < other.amount_minor

    def __le__(self, other: Money) -> bool:
        self._same(other)
        return self.amount_minor <= other.amount_minor

    def __gt__(self, other: Money) -> bool:
        self._same(other)
        return self.amount_minor > other.amount_minor

    def __ge__(self, other: Money) -> bool:
        self._same(other)
        return self.amount_minor >= other.amount_minor

    def min(self, other: Money) -> Money:
        return self if self <= other else other

    @property
    def is_zero(self) -> bool:
        return self.amount_minor == 0

    @property
    def is_negative(self) -> bool:
        return self.amount_minor < 0

    # -- presentation -----------------------------------------------------------------------
    def to_decimal(self) -> Decimal:
        return Decimal(self.amount_minor).scaleb(-exponent(self.currency))

    def __str__(self) -> str:
        exp = exponent(self.currency)
        return f"{self.currency} {self.to_decimal():.{exp}f}"


_set_amount_minor, _set_currency = slot_setters(Money)


def _invalid(amount_minor: object, currency: str) -> NoReturn:
    """Raise what an invalid Money raises: a non-int amount first, then an unknown currency."""
    if type(amount_minor) is not int:
        raise ValidationError("money amounts are integer minor units", value=repr(amount_minor))
    exponent(currency)
    raise AssertionError("unreachable: the currency is known")  # pragma: no cover
