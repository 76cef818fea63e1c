"""The simulated network's places and people: stations in three countries with coordinates
and power (OCPI Locations), and a population of drivers, each with an RFID token and a card,
charging one session at a time."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ledger.envelope import Envelope, Source
from ledger.events import LocationEvse, LocationPublished

STATIONS = [("DE", "Europe/Berlin"), ("NL", "Europe/Amsterdam"), ("FR", "Europe/Paris")]
VAT = {"DE": 19, "NL": 21, "FR": 20}
CITY = {"DE": (52.520, 13.405), "NL": (52.370, 4.895), "FR": (48.857, 2.352)}
"""Each country's stations stand within ~10 km of this point (Berlin, Amsterdam, Paris)."""
POWER_W = (22_000, 50_000, 150_000)
"""Station n's EVSE delivers at most POWER_W[n % 3]."""


def station_id(n: int) -> str:
    return f"{STATIONS[n % len(STATIONS)][0]}*EVL*E{n:04d}"


def station_power(n: int) -> int:
    return POWER_W[n % len(POWER_W)]


def location_of(station: str) -> str:
    return "LOC-" + station.replace("*", "-")


def terminal_of(station: str) -> str:
    return "TRM-" + station.replace("*", "-")


def place(n: int) -> tuple[float, float]:
    """Station n's coordinates: its country's city, moved by up to ~9 km."""
    lat, lon = CITY[STATIONS[n % len(STATIONS)][0]]
    return round(lat + ((n * 37) % 17 - 8) * 0.01, 5), round(lon + ((n * 53) % 17 - 8) * 0.01, 5)


def locations(network_id: str, stations: int) -> list[LocationPublished]:
    """One OCPI 2.2.1 Location per station, with one EVSE and its max power."""
    out = []
    for n in range(stations):
        country, zone = STATIONS[n % len(STATIONS)]
        sid = station_id(n)
        lat, lon = place(n)
        power = station_power(n)
        evse = LocationEvse(
            f"{sid}*1", sid, power, "DC" if power > 22_000 else "AC_3_PHASE", f"{sid}*1"
        )
        out.append(
            LocationPublished(
                Envelope.new(network_id, Source.ocpi),
                location_of(sid),
                f"Site {n:04d}",
                country,
                f"{lat:.5f}",
                f"{lon:.5f}",
                zone,
                [evse],
            )
        )
    return out


@dataclass(frozen=True)
class Driver:
    number: int
    country: str

    @property
    def token_uid(self) -> str:
        """An eMI3 contract id as on the driver's RFID card."""
        return f"{self.country}-EVL-C{self.number:08d}"

    @property
    def payment_token(self) -> str:
        """The sandbox token of the driver's card (approved)."""
        return f"tok_visa_{self.number}"


@dataclass
class Drivers:
    """The population: ``count`` drivers spread over the countries. A driver charges one
    session at a time and at most every few hours, as people do."""

    seed: int
    count: int
    rest: timedelta = timedelta(hours=3)
    busy_until: dict[int, datetime] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed * 7919 + 1)
        countries = [c for c, _ in STATIONS]
        self.home = {c: [n for n in range(self.count) if countries[n % len(countries)] == c]
                     for c in countries}  # fmt: skip

    def pick(self, country: str, at: datetime) -> Driver:
        """A driver of ``country`` free at ``at`` (if all are busy, the one free soonest)."""
        home = self.home[country]
        free = [n for n in home if self.busy_until.get(n, at) <= at]
        number = self.rng.choice(free) if free else min(home, key=lambda n: self.busy_until[n])
        self.busy_until[number] = at + timedelta(days=1)  # until its stop is known
        return Driver(number, country)

    def release(self, driver: Driver, stopped: datetime) -> None:
        self.busy_until[driver.number] = stopped + self.rest
