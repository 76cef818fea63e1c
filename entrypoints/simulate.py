"""A simulated charging network: realistic sessions, tariffs and payments as typed events.

Deterministic for a given seed, so demos and benchmarks are repeatable.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from entrypoints.simulate_places import (
    STATIONS,
    VAT,
    Driver,
    Drivers,
    location_of,
    locations,
    station_power,
    terminal_of,
)
from ledger.dimensions import Dimension
from ledger.envelope import Envelope, Source, uuid7
from ledger.events import (
    AuthorizeRequested,
    ChargingState,
    ChargingStateChanged,
    LocationPublished,
    MeterValueRecorded,
    PaymentAuthorized,
    PaymentCaptured,
    PaymentRefunded,
    PaymentVoided,
    RevenueLine,
    SampledValue,
    SessionStarted,
    SessionStopped,
    TariffPublished,
)
from ledger.money import Money
from ledger.pricing.preauth import preauthorization_amount
from ledger.pricing.tariffs import parse_tariff


def sign_ocmf(
    private: ec.EllipticCurvePrivateKey, transaction: str, kind: str, register_wh: int, at: datetime
) -> str:
    """An OCMF record of one energy register reading (``kind`` B at the start, E at the end)
    signed as an Eichrecht meter signs it (ECDSA secp256r1, SHA-256)."""
    reading = {"TM": f"{at.astimezone(UTC):%Y-%m-%dT%H:%M:%S},000+0000 S", "TX": kind,
               "RV": round(register_wh / 1000, 3), "RI": "1-b:1.8.0", "RU": "kWh", "RT": "AC",
               "ST": "G"}  # fmt: skip
    payload = json.dumps(
        {"FV": "1.0", "GI": "evledger demo", "GS": transaction, "GV": "1", "PG": "T1",
         "MV": "Demo", "MM": "M1", "MS": "DEMO-METER", "IS": False, "IL": "NONE", "IF": [],
         "IT": "NONE", "ID": "", "RD": [reading]},
        separators=(",", ":"),
    )  # fmt: skip
    signature = private.sign(payload.encode(), ec.ECDSA(hashes.SHA256()))
    seal = json.dumps({"SA": "ECDSA-secp256r1-SHA256", "SD": signature.hex()})
    return f"OCMF|{payload}|{seal}"


def country_tariff(country: str) -> dict[str, Any]:
    """The demo tariff of the stations in ``country``: its own id and the country's standard VAT
    (a charge is taxed where the energy is supplied)."""
    return demo_tariff(f"TARIFF-STD-{country}", vat=f"{VAT[country]}.0", country=country)


def energy_register_sample(ocpp: Source, register_wh: int) -> SampledValue:
    """The energy register as each OCPP version sends it: 1.6 a string in Wh (default
    measurand), 2.0.1 a number in kWh with a unit-of-measure multiplier."""
    if ocpp is Source.ocpp16:
        return SampledValue(str(register_wh), None, "Wh", None, None, "Sample.Periodic")
    return SampledValue(
        f"{register_wh / 1000:.3f}",
        "Energy.Active.Import.Register",
        "kWh",
        0,
        None,
        "Sample.Periodic",
    )


def demo_tariff(
    tariff_id: str = "TARIFF-STD", currency: str = "EUR", vat: str = "19.0", country: str = "DE"
) -> dict[str, Any]:
    """An OCPI 2.2.1 tariff: 0.39/kWh by day, 0.29/kWh at night, idle fee after charging, with
    the standard VAT rate ``vat`` of the ``country`` its stations are in."""
    return {
        "country_code": country,
        "party_id": "EVL",
        "id": tariff_id,
        "currency": currency,
        "type": "REGULAR",
        "elements": [
            {
                "price_components": [
                    {"type": "ENERGY", "price": "0.29", "vat": vat, "step_size": 1}
                ],
                "restrictions": {"start_time": "22:00", "end_time": "06:00"},
            },
            {"price_components": [{"type": "ENERGY", "price": "0.39", "vat": vat, "step_size": 1}]},
            {
                "price_components": [
                    {"type": "PARKING_TIME", "price": "6.00", "vat": vat, "step_size": 300}
                ]
            },
            {"price_components": [{"type": "FLAT", "price": "0.50", "vat": vat, "step_size": 1}]},
        ],
        "last_updated": "2026-11-01T00:00:00Z",
    }


@dataclass
class NetworkSimulator:
    network_id: str = "demo-network"
    seed: int = 42
    stations: int = 20

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def tariffs(self) -> list[TariffPublished]:
        return [
            TariffPublished(
                Envelope.new(self.network_id, Source.ocpi),
                tariff["id"],
                1,
                tariff["currency"],
                json.dumps(tariff),
            )
            for tariff in (country_tariff(country) for country, _ in STATIONS)
        ]

    def session(self, start: datetime) -> Iterator[Any]:
        """Events of one charging session and its payment, in the order they would arrive."""
        rng = self.rng
        station = rng.randrange(self.stations)
        country, zone = STATIONS[station % len(STATIONS)]
        session_id, payment_id = f"S-{uuid7()}", f"P-{uuid7()}"
        station_id = f"{country}*EVL*E{station:04d}"
        ocpp = Source.ocpp16 if station % 2 else Source.ocpp201
        corr = session_id

        def env(at: datetime, src: Source = ocpp) -> Envelope:
            return Envelope.new(self.network_id, src, occurred_at=at, correlation_id=corr)

        hold = Money(rng.choice([3000, 5000, 7500]), "EUR")
        yield PaymentAuthorized(
            env(start, Source.terminal),
            payment_id,
            "sandbox",
            f"sbx_{uuid7()}",
            hold,
            "card",
            session_id,
            station_id,
            start + timedelta(days=7),
        )
        transaction_id = str(rng.randrange(10**9))
        yield SessionStarted(
            env(start),
            session_id,
            station_id,
            f"{station_id}*1",
            "1",
            transaction_id,
            f"TARIFF-STD-{country}",
            country,
            zone,
            payment_id,
            0,
            1,
        )
        yield ChargingStateChanged(env(start), session_id, ChargingState.Charging, start)
        power_w = rng.choice([7_400, 11_000, 22_000, 50_000])
        minutes = rng.randrange(5, 90)
        register = 0
        seq = 0
        at = start
        for seq in range(1, minutes // 5 + 2):
            at = start + timedelta(minutes=5 * seq)
            register += power_w * 5 // 60
            sample = energy_register_sample(ocpp, register)
            yield MeterValueRecorded(
                env(at), session_id, station_id, transaction_id, seq, at, [sample]
            )
        idle = timedelta(minutes=rng.choice([0, 0, 10, 35]))
        yield ChargingStateChanged(env(at), session_id, ChargingState.SuspendedEV, at)
        stop = at + idle
        yield SessionStopped(env(stop), session_id, stop, register, "EVDisconnected")
        if register == 0 or rng.random() < 0.03:
            yield PaymentVoided(env(stop, Source.psp), payment_id, "no energy delivered")
            return
        energy = Money.round_half_up(Money(39, "EUR").to_decimal() * register / 1000, "EUR")
        lines = [
            RevenueLine(
                Dimension.ENERGY,
                energy.amount_minor,
                energy.amount_minor * VAT[country] // 100,
                str(VAT[country]),
            )
        ]
        total = sum(line.amount_excl_vat + line.vat_amount for line in lines)
        if total > hold.amount_minor:
            net = hold.amount_minor * 100 // (100 + VAT[country])
            lines = [RevenueLine(Dimension.ENERGY, net, hold.amount_minor - net, str(VAT[country]))]
            total = hold.amount_minor
        amount = Money(total, "EUR")
        yield PaymentCaptured(
            env(stop, Source.psp),
            payment_id,
            f"C-{uuid7()}",
            amount,
            lines,
            True,
            "sandbox",
            f"ch_{uuid7()}",
            Money(25 + total * 14 // 1000, "EUR"),
            station_id,
            country,
        )
        if rng.random() < 0.05:
            yield PaymentRefunded(
                env(stop + timedelta(hours=2), Source.psp),
                payment_id,
                f"R-{uuid7()}",
                Money(total // 2, "EUR"),
                [],
                None,
                "goodwill",
            )

    def burst(self, sessions: int, start: datetime | None = None) -> Iterator[Any]:
        """Tariffs, then ``sessions`` sessions starting a minute apart (by default all over
        before now: events from the future are refused, docs/input-rules.md)."""
        start = start or past_start(sessions, timedelta(minutes=1))
        yield from self.tariffs()
        for i in range(sessions):
            yield from self.session(start + timedelta(minutes=i))


def past_start(sessions: int, apart: timedelta) -> datetime:
    """A start for ``sessions`` sessions ``apart`` from each other that all end before now: a
    day before the last one starts, on a whole minute."""
    start = datetime.now(UTC) - apart * sessions - timedelta(days=1)
    return start.replace(second=0, microsecond=0)


@dataclass
class ChargingNetworkFlow:
    """Upstream traffic for the whole pipeline: authorization *instructions* and raw OCPP
    sessions, with the imperfections of real networks (redelivered and late meter values,
    declined cards). Pricing, settlement and the ledger are left to the processors."""

    network_id: str = "demo-network"
    seed: int = 42
    stations: int = 20
    hold_cap: Money = dataclasses.field(default_factory=lambda: Money(5000, "EUR"))

    signing_every: int = 4
    """Every this many stations has an Eichrecht meter that signs its readings (OCMF)."""

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.drivers = Drivers(self.seed, max(50, self.stations * 10))
        self.meters: dict[str, ec.EllipticCurvePrivateKey] = {}
        self.tariff_json = {country: country_tariff(country) for country, _ in STATIONS}
        self.tariff = {country: parse_tariff(t) for country, t in self.tariff_json.items()}

    def meter_key(self, station_id: str) -> str:
        """The public key (DER hex) of the station's signing meter, made on first use."""
        private = self.meters.setdefault(station_id, ec.generate_private_key(ec.SECP256R1()))
        der = private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return der.hex()

    def meter_keys(self) -> dict[str, str]:
        """Every signing station's meter key, to register (evledger stations register-key)."""
        stations = [
            f"{STATIONS[n % len(STATIONS)][0]}*EVL*E{n:04d}"
            for n in range(0, self.stations, self.signing_every)
        ]
        return {station: self.meter_key(station) for station in stations}

    def tariffs(self) -> list[TariffPublished]:
        """One tariff per country of the network's stations (its standard VAT rate)."""
        return [
            TariffPublished(
                Envelope.new(self.network_id, Source.ocpi),
                tariff["id"],
                1,
                tariff["currency"],
                json.dumps(tariff),
            )
            for tariff in self.tariff_json.values()
        ]

    def locations(self) -> list[LocationPublished]:
        """One OCPI location per station, with its coordinates and its EVSE's max power."""
        return locations(self.network_id, self.stations)

    def session(
        self,
        start: datetime,
        *,
        station: int | None = None,
        driver: Driver | None = None,
        power_w: int | None = None,
    ) -> Iterator[Any]:
        """One session's upstream traffic; ``station``, ``driver`` and ``power_w`` override the
        simulation's choice (the fraud attacks use them; a power above the station's is a
        tampered meter)."""
        rng = self.rng
        drawn = rng.randrange(self.stations)
        station = drawn if station is None else station
        country, zone = STATIONS[station % len(STATIONS)]
        station_id = f"{country}*EVL*E{station:04d}"
        session_id, payment_id = f"S-{uuid7()}", f"P-{uuid7()}"
        transaction_id = str(rng.randrange(10**9))
        ocpp = Source.ocpp16 if station % 2 else Source.ocpp201

        def env(at: datetime, src: Source = ocpp) -> Envelope:
            return Envelope.new(self.network_id, src, occurred_at=at, correlation_id=session_id)

        hold = preauthorization_amount(
            self.tariff[country], starts_at=start, time_zone=zone, cap=self.hold_cap
        )
        declined = rng.random() < 0.02
        driver = driver or self.drivers.pick(country, start)
        token = f"tok_decline_{driver.number}" if declined else driver.payment_token
        yield AuthorizeRequested(
            env(start, Source.terminal), payment_id, hold, "card", token, session_id, station_id,
            token_uid=driver.token_uid, terminal_id=terminal_of(station_id),
        )  # fmt: skip
        yield SessionStarted(
            env(start),
            session_id,
            station_id,
            f"{station_id}*1",
            "1",
            transaction_id,
            self.tariff_json[country]["id"],
            country,
            zone,
            payment_id,
            0,
            1,
            token_uid=driver.token_uid,
            location_id=location_of(station_id),
        )
        yield ChargingStateChanged(env(start), session_id, ChargingState.Charging, start)
        drawn_power = (
            rng.choice([0, 7_400, 11_000, 22_000, 50_000])
            if rng.random() < 0.05
            else (rng.choice([7_400, 11_000, 22_000, 50_000]))
        )
        power_w = min(drawn_power, station_power(station)) if power_w is None else power_w
        readings = []
        register, at = 0, start
        for seq in range(1, rng.randrange(2, 18) + 1):
            at = start + timedelta(minutes=5 * seq)
            register += power_w * 5 // 60
            sample = energy_register_sample(ocpp, register)
            readings.append(
                MeterValueRecorded(
                    env(at), session_id, station_id, transaction_id, seq, at, [sample]
                )
            )
        if station % self.signing_every == 0:  # an Eichrecht meter signs the start and the end
            self.meter_key(station_id)
            private = self.meters[station_id]
            opening = sign_ocmf(private, transaction_id, "B", 0, start)
            readings.insert(
                0,
                MeterValueRecorded(
                    env(start), session_id, station_id, transaction_id, 0, start,
                    [energy_register_sample(ocpp, 0), SampledValue(opening, format="SignedData")],
                ),
            )  # fmt: skip
            closing = sign_ocmf(private, transaction_id, "E", register, at)
            last = readings[-1]
            readings[-1] = dataclasses.replace(
                last, samples=[*last.samples, SampledValue(closing, format="SignedData")]
            )
        if len(readings) > 3 and rng.random() < 0.3:  # an offline station sends one late
            readings.append(readings.pop(1))
        if rng.random() < 0.2:  # a redelivery: same reading, same seq_no, new event id
            again = readings[0]
            readings.append(dataclasses.replace(again, envelope=env(again.sampled_at)))
        yield from readings
        idle = timedelta(minutes=rng.choice([0, 0, 10, 35]))
        yield ChargingStateChanged(env(at), session_id, ChargingState.SuspendedEV, at)
        yield SessionStopped(env(at + idle), session_id, at + idle, register, "EVDisconnected")
        self.drivers.release(driver, at + idle)

    def sessions(self, count: int, start: datetime | None = None) -> Iterator[Any]:
        """``count`` sessions starting three minutes apart."""
        start = start or past_start(count, timedelta(minutes=3))
        for i in range(count):
            yield from self.session(start + timedelta(minutes=3 * i))

    def burst(self, sessions: int, start: datetime | None = None) -> Iterator[Any]:
        """The tariffs, then ``sessions`` sessions."""
        yield from self.tariffs()
        yield from self.sessions(sessions, start)
