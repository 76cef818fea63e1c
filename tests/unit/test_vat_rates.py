"""The standard VAT rate of the country of supply on the supply date, and the check of a bill's
line rates against it (a 19 % tariff priced in France or the Netherlands is caught)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from ledger.accounting.vat_rates import VatRates
from ledger.errors import LedgerError

RATES = VatRates.default()


@pytest.mark.parametrize(
    ("country", "on", "rate"),
    [
        ("DE", date(2026, 11, 20), "19"),
        ("DE", date(2020, 8, 1), "16"),
        ("DE", date(2021, 1, 1), "19"),
        ("FR", date(2026, 11, 20), "20"),
        ("NL", date(2026, 11, 20), "21"),
        ("FI", date(2024, 8, 31), "24"),
        ("FI", date(2024, 9, 1), "25.5"),
        ("SK", date(2025, 1, 1), "23"),
        ("ee", date(2025, 7, 1), "24"),
    ],
)
def test_the_standard_rate_on_the_supply_date(country: str, on: date, rate: str) -> None:
    assert RATES.standard_rate(country, on) == Decimal(rate)


def test_a_19_percent_tariff_is_caught_in_france_and_the_netherlands_not_in_germany() -> None:
    lines = [("ENERGY", "19"), ("PARKING_TIME", "19.0")]
    on = date(2026, 11, 20)
    assert RATES.mismatches(lines, "DE", on) == []
    (energy, parking) = RATES.mismatches(lines, "FR", on)
    assert str(energy) == "ENERGY at 19 %, standard rate 20 %"
    assert str(parking) == "PARKING_TIME at 19.0 %, standard rate 20 %"
    assert [m.expected for m in RATES.mismatches(lines, "NL", on)] == [Decimal(21)] * 2
    assert [str(m) for m in RATES.mismatches([("FLAT", None)], "DE", on)] == [
        "FLAT at no rate, standard rate 19 %"
    ]


def test_an_operator_table_replaces_a_country_and_bad_tables_are_refused() -> None:
    custom = VatRates.parse('[DE]\n"2000-01-01" = "19"\n"2027-01-01" = "20"\n')
    assert custom.standard_rate("DE", date(2027, 2, 1)) == Decimal(20)
    assert custom.standard_rate("FR", date(2027, 2, 1)) == Decimal(20)  # defaults kept
    with pytest.raises(LedgerError) as unknown:
        RATES.standard_rate("XX", date(2026, 1, 1))
    assert unknown.value.code == "VAT_COUNTRY_UNKNOWN"
    for bad in ('[de]\n"2020-01-01" = "19"', '[DE]\n"2020-13-01" = "19"', '[DE]\n"x" = "19"',
                '[DE]\n"2020-01-01" = "150"', "[DE", "DE = 19"):  # fmt: skip
        with pytest.raises(LedgerError) as invalid:
            VatRates.parse(bad)
        assert invalid.value.code == "VAT_RATES_INVALID"
