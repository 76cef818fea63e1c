"""Parsing and validating the OCPI 2.2.1 Tariff JSON object into ``ledger.pricing.tariffs`` values.

Every error is an ``InvalidTariff`` naming the ``tariff_id`` and the JSON ``path`` at fault.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, TypeVar

from ledger.dimensions import Dimension
from ledger.errors import UnknownCurrency
from ledger.money import exponent
from ledger.pricing.tariffs import (
    PREAUTHORIZE_EXTENSION,
    PRICE_COMPONENT_DIMENSIONS,
    DayOfWeek,
    InvalidTariff,
    Price,
    PriceComponent,
    ReservationRestriction,
    Tariff,
    TariffElement,
    TariffRestrictions,
    TariffType,
)

_E = TypeVar("_E", bound=StrEnum)

_HH_MM = re.compile(r"^([0-1][0-9]|2[0-3]):([0-5][0-9])$")
_DATE = re.compile(r"^[12][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")


def parse_tariff_text(text: str | bytes) -> Tariff:
    """Parse the OCPI Tariff JSON text (numbers read as Decimal). Raises InvalidTariff."""
    try:
        data = json.loads(text, parse_float=Decimal)
    except ValueError as exc:
        raise InvalidTariff(f"tariff is not valid JSON: {exc}") from exc
    return parse_tariff_object(data)


def parse_tariff_object(data: Mapping[str, Any]) -> Tariff:
    """Build a Tariff from an OCPI 2.2.1 Tariff object (a JSON dict). Raises InvalidTariff.

    Fields that do not affect pricing (tariff_alt_text, energy_mix, ...) are accepted and ignored.
    """
    if not isinstance(data, Mapping):
        raise InvalidTariff("tariff must be a JSON object")
    tariff_id = _string(data, "id", "id", max_len=36)
    ctx = {"tariff_id": tariff_id}
    currency = _string(data, "currency", "currency", max_len=3, **ctx)
    try:
        exponent(currency)
    except UnknownCurrency:
        raise InvalidTariff(f"unknown currency {currency!r}", path="currency", **ctx) from None
    raw_elements = data.get("elements")
    if not isinstance(raw_elements, list) or not raw_elements:
        raise InvalidTariff("elements must be a non-empty list", path="elements", **ctx)
    elements = tuple(
        _element(raw, f"elements[{i}]", tariff_id) for i, raw in enumerate(raw_elements)
    )
    min_price = _price(data.get("min_price"), "min_price", tariff_id)
    max_price = _price(data.get("max_price"), "max_price", tariff_id)
    if min_price and max_price and min_price.excl_vat > max_price.excl_vat:
        raise InvalidTariff("min_price exceeds max_price", path="min_price", **ctx)
    raw_type = data.get("type")
    return Tariff(
        id=tariff_id,
        currency=currency,
        elements=elements,
        type=_enum(TariffType, raw_type, "type", tariff_id) if raw_type is not None else None,
        min_price=min_price,
        max_price=max_price,
        start_date_time=_datetime(data.get("start_date_time"), "start_date_time", tariff_id),
        end_date_time=_datetime(data.get("end_date_time"), "end_date_time", tariff_id),
        country_code=_optional_string(data, "country_code", tariff_id),
        party_id=_optional_string(data, "party_id", tariff_id),
        last_updated=_datetime(data.get("last_updated"), "last_updated", tariff_id),
        preauthorize_amount=_number(
            data.get(PREAUTHORIZE_EXTENSION), PREAUTHORIZE_EXTENSION, tariff_id, optional=True
        ),
    )


def _element(raw: Any, path: str, tariff_id: str) -> TariffElement:
    if not isinstance(raw, Mapping):
        raise InvalidTariff("tariff element must be an object", path=path, tariff_id=tariff_id)
    comps = raw.get("price_components")
    if not isinstance(comps, list) or not comps:
        raise InvalidTariff(
            "price_components must be a non-empty list",
            path=f"{path}.price_components",
            tariff_id=tariff_id,
        )
    components = tuple(
        _component(c, f"{path}.price_components[{i}]", tariff_id) for i, c in enumerate(comps)
    )
    seen = [c.dimension for c in components]
    if len(set(seen)) != len(seen):
        raise InvalidTariff(
            "an element has at most one price component per dimension",
            path=f"{path}.price_components",
            tariff_id=tariff_id,
        )
    restrictions = raw.get("restrictions")
    return TariffElement(
        components,
        None if restrictions is None else _restrictions(restrictions, path, tariff_id),
    )


def _component(raw: Any, path: str, tariff_id: str) -> PriceComponent:
    if not isinstance(raw, Mapping):
        raise InvalidTariff("price component must be an object", path=path, tariff_id=tariff_id)
    dimension = _enum(Dimension, raw.get("type"), f"{path}.type", tariff_id)
    if dimension not in PRICE_COMPONENT_DIMENSIONS:
        raise InvalidTariff(
            f"{dimension} is not an OCPI TariffDimensionType",
            path=f"{path}.type",
            tariff_id=tariff_id,
        )
    price = _number(raw.get("price"), f"{path}.price", tariff_id)
    vat = _number(raw.get("vat"), f"{path}.vat", tariff_id, optional=True)
    step = raw.get("step_size", 1)
    if type(step) is not int or step < 0:
        raise InvalidTariff(
            "step_size must be a non-negative integer",
            path=f"{path}.step_size",
            tariff_id=tariff_id,
        )
    assert price is not None
    # step_size 0 is read as 1: bill in whole Wh / whole seconds (the finest OCPI step).
    return PriceComponent(dimension, price, max(step, 1), vat)


def _restrictions(raw: Any, path: str, tariff_id: str) -> TariffRestrictions:
    path = f"{path}.restrictions"
    if not isinstance(raw, Mapping):
        raise InvalidTariff("restrictions must be an object", path=path, tariff_id=tariff_id)

    def num(key: str) -> Decimal | None:
        return _number(raw.get(key), f"{path}.{key}", tariff_id, optional=True)

    def seconds(key: str) -> int | None:
        value = raw.get(key)
        if value is None:
            return None
        if type(value) is not int or value < 0:
            raise InvalidTariff(
                f"{key} must be a non-negative integer (seconds)",
                path=f"{path}.{key}",
                tariff_id=tariff_id,
            )
        return value

    days = raw.get("day_of_week") or []
    if not isinstance(days, list):
        raise InvalidTariff(
            "day_of_week must be a list", path=f"{path}.day_of_week", tariff_id=tariff_id
        )
    reservation = raw.get("reservation")
    result = TariffRestrictions(
        start_minute=_minute(raw.get("start_time"), f"{path}.start_time", tariff_id),
        end_minute=_minute(raw.get("end_time"), f"{path}.end_time", tariff_id),
        start_date=_date(raw.get("start_date"), f"{path}.start_date", tariff_id),
        end_date=_date(raw.get("end_date"), f"{path}.end_date", tariff_id),
        min_kwh=num("min_kwh"),
        max_kwh=num("max_kwh"),
        min_current=num("min_current"),
        max_current=num("max_current"),
        min_power=num("min_power"),
        max_power=num("max_power"),
        min_duration=seconds("min_duration"),
        max_duration=seconds("max_duration"),
        day_of_week=frozenset(_enum(DayOfWeek, d, f"{path}.day_of_week", tariff_id) for d in days),
        reservation=(
            None
            if reservation is None
            else _enum(ReservationRestriction, reservation, f"{path}.reservation", tariff_id)
        ),
    )
    _check_ranges(result, path, tariff_id)
    return result


def _check_ranges(r: TariffRestrictions, path: str, tariff_id: str) -> None:
    pairs: Iterable[tuple[str, Any, Any]] = (
        ("date", r.start_date, r.end_date),
        ("kwh", r.min_kwh, r.max_kwh),
        ("current", r.min_current, r.max_current),
        ("power", r.min_power, r.max_power),
        ("duration", r.min_duration, r.max_duration),
    )
    for name, low, high in pairs:
        if low is not None and high is not None and low >= high:
            raise InvalidTariff(
                f"{name} restriction is empty: lower bound must be below the upper bound",
                path=path,
                tariff_id=tariff_id,
            )


def _price(raw: Any, path: str, tariff_id: str) -> Price | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise InvalidTariff("price must be an object", path=path, tariff_id=tariff_id)
    excl = _number(raw.get("excl_vat"), f"{path}.excl_vat", tariff_id)
    incl = _number(raw.get("incl_vat"), f"{path}.incl_vat", tariff_id, optional=True)
    assert excl is not None
    if incl is not None and incl < excl:
        raise InvalidTariff("incl_vat is below excl_vat", path=path, tariff_id=tariff_id)
    return Price(excl, incl)


def _number(raw: Any, path: str, tariff_id: str, *, optional: bool = False) -> Decimal | None:
    if raw is None:
        if optional:
            return None
        raise InvalidTariff("required number is missing", path=path, tariff_id=tariff_id)
    if isinstance(raw, bool) or not isinstance(raw, int | float | Decimal | str):
        raise InvalidTariff(f"not a number: {raw!r}", path=path, tariff_id=tariff_id)
    try:
        value = raw if isinstance(raw, Decimal) else Decimal(str(raw))
    except InvalidOperation:
        raise InvalidTariff(f"not a number: {raw!r}", path=path, tariff_id=tariff_id) from None
    if not value.is_finite() or value < 0:
        raise InvalidTariff(
            f"must be a finite number >= 0: {raw!r}", path=path, tariff_id=tariff_id
        )
    return value


def _minute(raw: Any, path: str, tariff_id: str) -> int | None:
    if raw is None:
        return None
    match = _HH_MM.match(raw) if isinstance(raw, str) else None
    if match is None:
        raise InvalidTariff(f"time must be HH:MM (24h): {raw!r}", path=path, tariff_id=tariff_id)
    return int(match[1]) * 60 + int(match[2])


def _date(raw: Any, path: str, tariff_id: str) -> date | None:
    if raw is None:
        return None
    if not isinstance(raw, str) or not _DATE.match(raw):
        raise InvalidTariff(f"date must be YYYY-MM-DD: {raw!r}", path=path, tariff_id=tariff_id)
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise InvalidTariff(f"no such date: {raw!r}", path=path, tariff_id=tariff_id) from None


def _datetime(raw: Any, path: str, tariff_id: str) -> datetime | None:
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw) if isinstance(raw, str) else None
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        raise InvalidTariff(
            f"must be an ISO 8601 UTC date-time: {raw!r}", path=path, tariff_id=tariff_id
        )
    return value


def _enum(cls: type[_E], raw: Any, path: str, tariff_id: str) -> _E:
    try:
        return cls(raw)
    except ValueError:
        allowed = ", ".join(m.value for m in cls)
        raise InvalidTariff(
            f"{raw!r} is not one of {allowed}", path=path, tariff_id=tariff_id
        ) from None


def _string(data: Mapping[str, Any], key: str, path: str, *, max_len: int, **ctx: Any) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise InvalidTariff(
            f"{key} must be a non-empty string of at most {max_len} characters", path=path, **ctx
        )
    return value


def _optional_string(data: Mapping[str, Any], key: str, tariff_id: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidTariff(f"{key} must be a string", path=key, tariff_id=tariff_id)
    return value
