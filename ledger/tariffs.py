"""OCPI 2.2.1 tariffs (module Tariffs, section 11): the model, parsed and validated from OCPI JSON.

A tariff is a list of elements; each element has price components (one per dimension) and
optional restrictions saying when the element is active. Pricing lives in ``ledger.pricing``;
this module only turns an OCPI Tariff object into checked, typed values.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, TypeVar

from ledger.dimensions import Dimension
from ledger.errors import LedgerError, UnknownCurrency, ValidationError
from ledger.money import exponent

#: evledger extension field (OCPI 2.2.1 has no pre-authorization amount; 2.3.0 adds
#: ``preauthorize_amount``). A number in major units of ``currency``, VAT included.
PREAUTHORIZE_EXTENSION = "evledger_preauthorize_amount"

_E = TypeVar("_E", bound=StrEnum)

_HH_MM = re.compile(r"^([0-1][0-9]|2[0-3]):([0-5][0-9])$")
_DATE = re.compile(r"^[12][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")


class InvalidTariff(ValidationError):
    """The OCPI tariff JSON breaks the 2.2.1 rules (``path`` says where)."""

    code = "INVALID_TARIFF"


class UnknownTariff(LedgerError):
    """A session refers to a tariff (version) that was never published."""

    code = "UNKNOWN_TARIFF"


class TariffType(StrEnum):
    """OCPI 2.2.1 TariffType (11.4.7)."""

    AD_HOC_PAYMENT = "AD_HOC_PAYMENT"
    PROFILE_CHEAP = "PROFILE_CHEAP"
    PROFILE_FAST = "PROFILE_FAST"
    PROFILE_GREEN = "PROFILE_GREEN"
    REGULAR = "REGULAR"


class DayOfWeek(StrEnum):
    """OCPI 2.2.1 DayOfWeek (11.4.1); ``weekday`` matches ``date.weekday()``."""

    MONDAY = "MONDAY"
    TUESDAY = "TUESDAY"
    WEDNESDAY = "WEDNESDAY"
    THURSDAY = "THURSDAY"
    FRIDAY = "FRIDAY"
    SATURDAY = "SATURDAY"
    SUNDAY = "SUNDAY"

    @property
    def weekday(self) -> int:
        return _WEEKDAYS.index(self.value)


_WEEKDAYS = [d.value for d in DayOfWeek]


class ReservationRestriction(StrEnum):
    """OCPI 2.2.1 ReservationRestrictionType (11.4.3)."""

    RESERVATION = "RESERVATION"
    RESERVATION_EXPIRES = "RESERVATION_EXPIRES"


#: The dimensions a PriceComponent may carry (OCPI TariffDimensionType, 11.4.5).
PRICE_COMPONENT_DIMENSIONS = frozenset(
    {Dimension.ENERGY, Dimension.FLAT, Dimension.PARKING_TIME, Dimension.TIME}
)


@dataclass(frozen=True, slots=True)
class Price:
    """OCPI Price (types 16.4): major-unit amounts; ``incl_vat`` is optional."""

    excl_vat: Decimal
    incl_vat: Decimal | None = None


@dataclass(frozen=True, slots=True)
class PriceComponent:
    """Price per unit excl. VAT (kWh, hour, or per session for FLAT), VAT percent, step size.

    ``vat`` None means "no VAT applicable", which OCPI distinguishes from ``Decimal(0)``.
    ``step_size`` is in Wh (ENERGY) or seconds (TIME, PARKING_TIME); ignored for FLAT.
    """

    dimension: Dimension
    price: Decimal
    step_size: int = 1
    vat: Decimal | None = None


@dataclass(frozen=True, slots=True)
class TariffRestrictions:
    """When an element is active (11.4.6). Minutes are minutes after local midnight.

    Lower bounds are inclusive, upper bounds exclusive. ``end_minute < start_minute`` wraps past
    midnight. Time and date restrictions are in the location's local time.
    """

    start_minute: int | None = None
    end_minute: int | None = None
    start_date: date | None = None
    end_date: date | None = None
    min_kwh: Decimal | None = None
    max_kwh: Decimal | None = None
    min_current: Decimal | None = None
    max_current: Decimal | None = None
    min_power: Decimal | None = None
    max_power: Decimal | None = None
    min_duration: int | None = None
    max_duration: int | None = None
    day_of_week: frozenset[DayOfWeek] = frozenset()
    reservation: ReservationRestriction | None = None

    @property
    def has_local_time(self) -> bool:
        """True when the element's activity depends on local time of day, date or weekday."""
        return (
            self.start_minute is not None
            or self.end_minute is not None
            or self.start_date is not None
            or self.end_date is not None
            or bool(self.day_of_week)
        )


@dataclass(frozen=True, slots=True)
class TariffElement:
    """Price components that share one set of restrictions (11.4.4)."""

    price_components: tuple[PriceComponent, ...]
    restrictions: TariffRestrictions | None = None

    def component(self, dimension: Dimension) -> PriceComponent | None:
        """The element's component for ``dimension`` (OCPI allows one per dimension)."""
        for pc in self.price_components:
            if pc.dimension is dimension:
                return pc
        return None


@dataclass(frozen=True)
class Tariff:
    """An OCPI 2.2.1 Tariff object (11.3.1), validated. Prices are major units excl. VAT."""

    id: str
    currency: str
    elements: tuple[TariffElement, ...]
    type: TariffType | None = None
    min_price: Price | None = None
    max_price: Price | None = None
    start_date_time: datetime | None = None
    end_date_time: datetime | None = None
    country_code: str | None = None
    party_id: str | None = None
    last_updated: datetime | None = None
    preauthorize_amount: Decimal | None = None
    # Derived pricing plans per time zone (ledger.pricing); a cache, not part of the value.
    _plans: dict[str, Any] = field(default_factory=dict, compare=False, repr=False, hash=False)

    def is_active_at(self, moment: datetime) -> bool:
        """Whether ``moment`` (aware) lies in [start_date_time, end_date_time)."""
        if self.start_date_time is not None and moment < self.start_date_time:
            return False
        return self.end_date_time is None or moment < self.end_date_time


class TariffCatalog:
    """Published tariff versions by (tariff_id, version); the latest when no version is asked."""

    def __init__(self) -> None:
        self._versions: dict[str, dict[int, Tariff]] = {}

    def publish(self, tariff_id: str, version: int, tariff: Tariff) -> None:
        """Record an immutable tariff version (re-publishing the same version is idempotent)."""
        if tariff.id != tariff_id:
            raise InvalidTariff(
                "tariff id does not match the published key", tariff_id=tariff_id, id=tariff.id
            )
        self._versions.setdefault(tariff_id, {})[version] = tariff

    def get(self, tariff_id: str, version: int | None = None) -> Tariff:
        """The tariff version (latest when ``version`` is None). Raises UnknownTariff."""
        versions = self._versions.get(tariff_id)
        if not versions or (version is not None and version not in versions):
            raise UnknownTariff(
                "tariff was never published", tariff_id=tariff_id, tariff_version=version
            )
        return versions[max(versions) if version is None else version]


# ---------------------------------------------------------------------------------- parsing
def parse_tariff_json(text: str | bytes) -> Tariff:
    """Parse the OCPI Tariff JSON text (numbers read as Decimal). Raises InvalidTariff."""
    try:
        data = json.loads(text, parse_float=Decimal)
    except ValueError as exc:
        raise InvalidTariff(f"tariff is not valid JSON: {exc}") from exc
    return parse_tariff(data)


def parse_tariff(data: Mapping[str, Any]) -> Tariff:
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


def components_of(tariff: Tariff) -> Sequence[PriceComponent]:
    """Every price component in element order (used for fallbacks such as the VAT rate)."""
    return [pc for element in tariff.elements for pc in element.price_components]
