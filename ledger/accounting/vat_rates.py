"""Standard VAT rates by country of supply and date, and the check of a bill's rates against them.

Public charging is taxed at the standard rate of the country where the energy is supplied. The
defaults are the EU member states' standard rates (with the changes of recent years), plus a few
neighbours; an operator replaces or extends them with a TOML file (``EVLEDGER_VAT_RATES``):

    [DE]
    "2020-07-01" = "16"
    "2021-01-01" = "19"

each country a table of the date a rate took effect and the rate in percent.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation

from ledger.errors import ValidationError

_SINCE_EVER = "2000-01-01"

#: country -> {effective date (ISO): standard rate in percent}
DEFAULT_RATES: dict[str, dict[str, str]] = {
    "AT": {_SINCE_EVER: "20"},
    "BE": {_SINCE_EVER: "21"},
    "BG": {_SINCE_EVER: "20"},
    "CY": {_SINCE_EVER: "19"},
    "CZ": {_SINCE_EVER: "21"},
    "DE": {_SINCE_EVER: "19", "2020-07-01": "16", "2021-01-01": "19"},
    "DK": {_SINCE_EVER: "25"},
    "EE": {_SINCE_EVER: "20", "2024-01-01": "22", "2025-07-01": "24"},
    "ES": {_SINCE_EVER: "21"},
    "FI": {_SINCE_EVER: "24", "2024-09-01": "25.5"},
    "FR": {_SINCE_EVER: "20"},
    "GR": {_SINCE_EVER: "24"},
    "HR": {_SINCE_EVER: "25"},
    "HU": {_SINCE_EVER: "27"},
    "IE": {_SINCE_EVER: "23"},
    "IT": {_SINCE_EVER: "22"},
    "LT": {_SINCE_EVER: "21"},
    "LU": {_SINCE_EVER: "17", "2023-01-01": "16", "2024-01-01": "17"},
    "LV": {_SINCE_EVER: "21"},
    "MT": {_SINCE_EVER: "18"},
    "NL": {_SINCE_EVER: "21"},
    "PL": {_SINCE_EVER: "23"},
    "PT": {_SINCE_EVER: "23"},
    "RO": {_SINCE_EVER: "19", "2025-08-01": "21"},
    "SE": {_SINCE_EVER: "25"},
    "SI": {_SINCE_EVER: "22"},
    "SK": {_SINCE_EVER: "20", "2025-01-01": "23"},
    "CH": {_SINCE_EVER: "7.7", "2024-01-01": "8.1"},
    "GB": {_SINCE_EVER: "20"},
    "NO": {_SINCE_EVER: "25"},
}


class InvalidVatRates(ValidationError):
    code = "VAT_RATES_INVALID"


class UnknownVatCountry(ValidationError):
    """No rate is known for the country of supply (add it to the rate table)."""

    code = "VAT_COUNTRY_UNKNOWN"


@dataclass(frozen=True, slots=True)
class RateMismatch:
    """A bill line taxed at another rate than the country's standard rate on the supply date."""

    dimension: str
    billed: Decimal | None
    expected: Decimal

    def __str__(self) -> str:
        billed = "no rate" if self.billed is None else f"{self.billed} %"
        return f"{self.dimension} at {billed}, standard rate {self.expected} %"


@dataclass(frozen=True)
class VatRates:
    """Standard rates by country, each a list of (effective date, rate) in date order."""

    by_country: Mapping[str, tuple[tuple[date, Decimal], ...]]

    @classmethod
    def of(cls, table: Mapping[str, Mapping[str, object]]) -> VatRates:
        """From ``{country: {date: rate}}``. Raises InvalidVatRates."""
        out: dict[str, tuple[tuple[date, Decimal], ...]] = {}
        for country, rates in table.items():
            if len(country) != 2 or not country.isalpha() or not country.isupper():
                raise InvalidVatRates("a country is ISO 3166-1 alpha-2, e.g. DE", country=country)
            if not isinstance(rates, Mapping) or not rates:
                raise InvalidVatRates("each country maps dates to rates", country=country)
            parsed = []
            for day, rate in rates.items():
                try:
                    value = Decimal(str(rate))
                    parsed.append((date.fromisoformat(str(day)), value))
                except (ValueError, InvalidOperation):
                    raise InvalidVatRates(
                        "dates are YYYY-MM-DD, rates percent numbers", country=country, entry=day
                    ) from None
                if not Decimal(0) <= value < Decimal(100):
                    raise InvalidVatRates("a rate is a percentage", country=country, rate=rate)
            out[country] = tuple(sorted(parsed))
        return cls(out)

    @classmethod
    def default(cls) -> VatRates:
        return cls.of(DEFAULT_RATES)

    @classmethod
    def parse(cls, text: str, *, extend_defaults: bool = True) -> VatRates:
        """From TOML; its countries replace the defaults' (others keep theirs unless
        ``extend_defaults`` is false). Raises InvalidVatRates."""
        try:
            table = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise InvalidVatRates(f"the rate table is not valid TOML: {exc}") from None
        merged: dict[str, Mapping[str, object]] = dict(DEFAULT_RATES) if extend_defaults else {}
        merged.update(table)
        return cls.of(merged)

    def standard_rate(self, country: str, on: date) -> Decimal:
        """The standard rate in ``country`` on ``on``. Raises UnknownVatCountry."""
        rates = self.by_country.get(country.upper())
        current = None
        for since, rate in rates or ():
            if since <= on:
                current = rate
        if current is None:
            raise UnknownVatCountry(
                "no VAT rate known for the country of supply on that date",
                country=country,
                date=on.isoformat(),
            )
        return current

    def mismatches(
        self, lines: Iterable[tuple[str, str | None]], country: str, on: date
    ) -> list[RateMismatch]:
        """The lines, given as (dimension, rate percent as text or None), whose rate is not the
        standard rate of ``country`` on ``on``; lines without VAT at all are mismatches too
        (a public charge is never VAT-exempt)."""
        expected = self.standard_rate(country, on)
        out = []
        for dimension, rate in lines:
            billed = None if rate is None else Decimal(rate)
            if billed != expected:
                out.append(RateMismatch(dimension, billed, expected))
        return out
