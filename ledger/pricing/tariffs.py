"""OCPI 2.2.1 tariffs (module Tariffs, section 11): the model, parsed and validated from OCPI JSON.

A tariff is a list of elements; each element has price components (one per dimension) and
optional restrictions saying when the element is active. Pricing lives in ``ledger.pricing``;
this module only turns an OCPI Tariff object into checked, typed values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from ledger.dimensions import Dimension
from ledger.errors import LedgerError, ValidationError

#: evledger extension field (OCPI 2.2.1 has no pre-authorization amount; 2.3.0 adds
#: ``preauthorize_amount``). A number in major units of ``currency``, VAT included.
PREAUTHORIZE_EXTENSION = "evledger_preauthorize_amount"


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


def components_of(tariff: Tariff) -> Sequence[PriceComponent]:
    """Every price component in element order (used for fallbacks such as the VAT rate)."""
    return [pc for element in tariff.elements for pc in element.price_components]


def parse_tariff(data: Mapping[str, Any]) -> Tariff:
    """Build a Tariff from an OCPI 2.2.1 Tariff object (a JSON dict). Raises InvalidTariff.

    The rules live in ``ledger.pricing.tariff_json``; this is the entry point callers use.
    """
    from ledger.pricing.tariff_json import parse_tariff_object

    return parse_tariff_object(data)


def parse_tariff_json(text: str | bytes) -> Tariff:
    """Parse OCPI Tariff JSON text (numbers read as Decimal, never float). Raises InvalidTariff."""
    from ledger.pricing.tariff_json import parse_tariff_text

    return parse_tariff_text(text)
