"""OCPI 2.2.1 tariff parsing and validation."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from ledger.dimensions import Dimension
from ledger.pricing.tariffs import (
    PREAUTHORIZE_EXTENSION,
    DayOfWeek,
    InvalidTariff,
    Price,
    TariffCatalog,
    TariffType,
    UnknownTariff,
    parse_tariff,
    parse_tariff_json,
)

FULL = """{
  "country_code": "NL", "party_id": "EVL", "id": "T-1", "currency": "EUR", "type": "REGULAR",
  "min_price": {"excl_vat": 0.50, "incl_vat": 0.61},
  "max_price": {"excl_vat": 50.00},
  "tariff_alt_text": [{"language": "en", "text": "ignored"}],
  "elements": [
    {"price_components": [{"type": "ENERGY", "price": 0.30, "vat": 21.0, "step_size": 1},
                          {"type": "TIME", "price": 1.20, "step_size": 60}],
     "restrictions": {"start_time": "22:00", "end_time": "06:00",
                      "day_of_week": ["MONDAY", "TUESDAY"], "min_kwh": 0, "max_kwh": 50.5,
                      "min_power": 0, "max_power": 22, "min_current": 6, "max_current": 32,
                      "min_duration": 0, "max_duration": 3600,
                      "start_date": "2026-01-01", "end_date": "2027-01-01"}},
    {"price_components": [{"type": "ENERGY", "price": 0.40, "vat": 0, "step_size": 1},
                          {"type": "PARKING_TIME", "price": 5.00, "step_size": 300},
                          {"type": "FLAT", "price": 0.99, "step_size": 1}]}
  ],
  "start_date_time": "2026-01-01T00:00:00Z",
  "end_date_time": "2027-01-01T00:00:00Z",
  "last_updated": "2025-12-01T10:00:00Z",
  "evledger_preauthorize_amount": 40
}"""


def tariff_dict(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "T",
        "currency": "EUR",
        "elements": [{"price_components": [{"type": "ENERGY", "price": 0.25, "step_size": 1}]}],
    }
    base.update(overrides)
    return base


def test_parses_every_field_of_a_full_tariff() -> None:
    t = parse_tariff_json(FULL)
    assert (t.id, t.currency, t.type, t.country_code, t.party_id) == (
        "T-1",
        "EUR",
        TariffType.REGULAR,
        "NL",
        "EVL",
    )
    assert t.min_price == Price(Decimal("0.50"), Decimal("0.61"))
    assert t.max_price == Price(Decimal("50.00"), None)
    assert t.preauthorize_amount == Decimal(40)
    first, second = t.elements
    energy = first.component(Dimension.ENERGY)
    assert energy is not None and energy.price == Decimal("0.30") and energy.vat == Decimal(21)
    r = first.restrictions
    assert r is not None
    assert (r.start_minute, r.end_minute) == (22 * 60, 6 * 60)
    assert r.day_of_week == frozenset({DayOfWeek.MONDAY, DayOfWeek.TUESDAY})
    assert (r.min_kwh, r.max_kwh, r.max_power, r.max_duration) == (0, Decimal("50.5"), 22, 3600)
    assert (r.start_date, r.end_date) == (date(2026, 1, 1), date(2027, 1, 1))
    assert second.restrictions is None
    assert t.is_active_at(datetime(2026, 6, 1, tzinfo=UTC))
    assert not t.is_active_at(datetime(2027, 1, 1, tzinfo=UTC))


def test_float_prices_are_read_exactly() -> None:
    t = parse_tariff(tariff_dict(elements=[{"price_components": [
        {"type": "ENERGY", "price": 0.1, "step_size": 1}]}]))  # fmt: skip
    pc = t.elements[0].component(Dimension.ENERGY)
    assert pc is not None and pc.price == Decimal("0.1")


def test_absent_vat_differs_from_zero_vat() -> None:
    t = parse_tariff_json(FULL)
    time = t.elements[0].component(Dimension.TIME)
    zero = t.elements[1].component(Dimension.ENERGY)
    assert time is not None and time.vat is None
    assert zero is not None and zero.vat == Decimal(0) and zero.vat is not None


def test_step_size_zero_reads_as_one() -> None:
    t = parse_tariff(tariff_dict(elements=[{"price_components": [
        {"type": "TIME", "price": 1, "step_size": 0}]}]))  # fmt: skip
    pc = t.elements[0].component(Dimension.TIME)
    assert pc is not None and pc.step_size == 1


@pytest.mark.parametrize(
    ("overrides", "path"),
    [
        ({"elements": []}, "elements"),
        ({"currency": "XXX"}, "currency"),
        ({"id": ""}, "id"),
        ({"elements": [{"price_components": [{"type": "KWH", "price": 1}]}]},
         "elements[0].price_components[0].type"),
        ({"elements": [{"price_components": [{"type": "RESERVATION", "price": 1}]}]},
         "elements[0].price_components[0].type"),
        ({"elements": [{"price_components": [{"type": "ENERGY", "price": -1}]}]},
         "elements[0].price_components[0].price"),
        ({"elements": [{"price_components": [{"type": "ENERGY", "price": True}]}]},
         "elements[0].price_components[0].price"),
        ({"elements": [{"price_components": [{"type": "ENERGY", "price": 1, "step_size": 1.5}]}]},
         "elements[0].price_components[0].step_size"),
        ({"elements": [{"price_components": [{"type": "ENERGY", "price": 1},
                                             {"type": "ENERGY", "price": 2}]}]},
         "elements[0].price_components"),
        ({"elements": [{"price_components": [{"type": "ENERGY", "price": 1}],
                        "restrictions": {"start_time": "24:00"}}]},
         "elements[0].restrictions.start_time"),
        ({"elements": [{"price_components": [{"type": "ENERGY", "price": 1}],
                        "restrictions": {"start_date": "2026-02-30"}}]},
         "elements[0].restrictions.start_date"),
        ({"elements": [{"price_components": [{"type": "ENERGY", "price": 1}],
                        "restrictions": {"day_of_week": ["FUNDAY"]}}]},
         "elements[0].restrictions.day_of_week"),
        ({"elements": [{"price_components": [{"type": "ENERGY", "price": 1}],
                        "restrictions": {"min_kwh": 10, "max_kwh": 5}}]},
         "elements[0].restrictions"),
        ({"min_price": {"excl_vat": 10}, "max_price": {"excl_vat": 5}}, "min_price"),
        ({"min_price": {"excl_vat": 10, "incl_vat": 9}}, "min_price"),
        ({"type": "CHEAP"}, "type"),
        ({"start_date_time": "2026-01-01T00:00:00"}, "start_date_time"),
    ],
)  # fmt: skip
def test_invalid_tariffs_name_the_offending_field(overrides: dict[str, Any], path: str) -> None:
    with pytest.raises(InvalidTariff) as err:
        parse_tariff(tariff_dict(**overrides))
    assert err.value.code == "INVALID_TARIFF"
    assert err.value.context["path"] == path


def test_invalid_json_is_an_invalid_tariff() -> None:
    with pytest.raises(InvalidTariff):
        parse_tariff_json("{not json")


def test_preauthorize_extension_is_optional() -> None:
    assert parse_tariff(tariff_dict()).preauthorize_amount is None
    t = parse_tariff(tariff_dict(**{PREAUTHORIZE_EXTENSION: "25.00"}))
    assert t.preauthorize_amount == Decimal("25.00")


def test_catalog_returns_versions_and_rejects_unknown() -> None:
    catalog = TariffCatalog()
    v1, v2 = parse_tariff(tariff_dict()), parse_tariff(tariff_dict(currency="USD"))
    catalog.publish("T", 1, v1)
    catalog.publish("T", 2, v2)
    assert catalog.get("T", 1) is v1
    assert catalog.get("T") is v2
    with pytest.raises(UnknownTariff) as err:
        catalog.get("T", 3)
    assert err.value.code == "UNKNOWN_TARIFF" and err.value.context["tariff_id"] == "T"
    with pytest.raises(UnknownTariff):
        catalog.get("nope")
    with pytest.raises(InvalidTariff):
        catalog.publish("other", 1, v1)


def test_tariffs_compare_by_value() -> None:
    assert parse_tariff(tariff_dict()) == parse_tariff(tariff_dict())
