"""A labelled population for the fraud processor: a normal charging network as the processors
downstream of settlement and pricing see it (authorizations, sessions with meter values, CDRs,
refunds), with scripted attacks mixed in and labelled with the subjects they should alert on.

``evledger fraud evaluate`` publishes it and measures precision and recall on the labels and
the false-positive rate on the normal traffic; the demo publishes its attacks as upstream
traffic instead (``demo_attacks``)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from entrypoints.simulate import ChargingNetworkFlow
from entrypoints.simulate_places import (
    STATIONS,
    VAT,
    Driver,
    Drivers,
    location_of,
    station_id,
    station_power,
    terminal_of,
)
from ledger.dimensions import Dimension
from ledger.envelope import Envelope, Source, uuid7
from ledger.events import (
    AuthorizationFailed,
    AuthorizeRequested,
    CdrIssued,
    DisputeOpened,
    MeterValueRecorded,
    PaymentAuthorized,
    PaymentRefunded,
    RevenueLine,
    SampledValue,
    SessionStarted,
    SessionStopped,
)
from ledger.money import Money
from ledger.settlement.outcomes import card_fingerprint

ATTACKS = ("card_testing", "card_velocity", "cloned_token", "impossible_travel",
           "energy_theft", "refund_abuse")  # fmt: skip


@dataclass(frozen=True)
class Label:
    """One injected attack and the subjects an alert on which counts as detecting it."""

    attack: str
    subjects: tuple[str, ...]
    at: datetime


@dataclass
class FraudScenario:
    network_id: str
    sessions: int = 10_000
    seed: int = 7
    stations: int = 30
    attacks_each: int = 0
    """Attacks per kind; 0: one per 2,000 sessions, at least two."""
    labels: list[Label] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.drivers = Drivers(self.seed, max(100, self.sessions // 5))
        self.start = (datetime.now(UTC) - timedelta(minutes=3 * self.sessions, days=12)).replace(
            second=0, microsecond=0
        )
        self.attacks_each = self.attacks_each or max(2, self.sessions // 2000)

    def env(self, at: datetime, source: Source = Source.internal) -> Envelope:
        return Envelope.new(self.network_id, source, occurred_at=at)

    # -- the normal population -------------------------------------------------------------
    def events(self) -> Iterator[Any]:
        """Every event in the order it happens (``occurred_at``; the attacks among the
        sessions), as upstream systems publish them: a refund two days after its session is
        published two days later, not with the session."""
        yield from sorted(self._generated(), key=lambda e: e.envelope.occurred_at)

    def _generated(self) -> Iterator[Any]:
        slots = {
            self.rng.randrange(self.sessions): kind
            for kind in ATTACKS for _ in range(self.attacks_each)
        }  # fmt: skip
        while len(slots) < len(ATTACKS) * self.attacks_each:  # two attacks drew one slot
            kind = ATTACKS[len(slots) % len(ATTACKS)]
            slots.setdefault(self.rng.randrange(self.sessions), kind)
        for i in range(self.sessions):
            at = self.start + timedelta(minutes=3 * i)
            n = self.rng.randrange(self.stations)
            yield from self.session(at, n, self.drivers.pick(STATIONS[n % 3][0], at))
            if i in slots:
                yield from getattr(self, slots[i])(at + timedelta(seconds=30))

    def session(
        self, at: datetime, n: int, driver: Driver, *, minutes: int | None = None,
        power_w: int | None = None, refund: bool | None = None, dispute: bool = False,
        paid_with: str | None = None,
    ) -> Iterator[Any]:  # fmt: skip
        rng = self.rng
        sid, country = station_id(n), STATIONS[n % 3][0]
        session_id, payment_id = f"S-{uuid7()}", f"P-{uuid7()}"
        hold = Money(rng.choice([3000, 5000]), "EUR")
        card = card_fingerprint(paid_with or driver.payment_token)
        terminal = terminal_of(sid)
        if rng.random() < 0.02 and refund is None:
            yield AuthorizationFailed(
                self.env(at, Source.psp), payment_id, hold, "PAYMENT_DECLINED", "card declined",
                "sandbox", "card_declined", driver.token_uid, card, terminal, session_id, sid,
            )  # fmt: skip
            return
        yield PaymentAuthorized(
            self.env(at, Source.psp), payment_id, "sandbox", f"sbx_{uuid7()}", hold, "card",
            session_id, sid, at + timedelta(days=7), driver.token_uid, card, terminal,
        )  # fmt: skip
        yield SessionStarted(
            self.env(at, Source.ocpp201), session_id, sid, f"{sid}*1", "1", "tx",
            f"TARIFF-STD-{country}", country, STATIONS[n % 3][1], payment_id, 0, 1,
            driver.token_uid, location_of(sid),
        )  # fmt: skip
        minutes = minutes or rng.randrange(10, 90)
        power = power_w or min(rng.choice([7_400, 11_000, 22_000, 50_000]), station_power(n))
        energy = power * minutes // 60
        for k in range(1, 7):  # meter values: consumed (and skipped) by the fraud processor
            when = at + timedelta(minutes=minutes * k / 6)
            yield MeterValueRecorded(
                self.env(when, Source.ocpp201), session_id, sid, "tx", k, when,
                [SampledValue(str(energy * k // 6), None, "Wh")],
            )  # fmt: skip
        stop = at + timedelta(minutes=minutes)
        yield SessionStopped(
            self.env(stop, Source.ocpp201), session_id, stop, energy, "EVDisconnected"
        )
        self.drivers.release(driver, stop)
        net = energy * 39 // 1000
        vat = net * VAT[country] // 100
        yield CdrIssued(
            self.env(stop), session_id, f"CDR-{uuid7()}", sid, f"TARIFF-STD-{country}", 1, country,
            energy, minutes * 60, 0, [RevenueLine(Dimension.ENERGY, net, vat, str(VAT[country]))],
            Money(net, "EUR"), Money(net + vat, "EUR"), payment_id,
        )  # fmt: skip
        if refund or (refund is None and rng.random() < 0.03):
            yield PaymentRefunded(
                self.env(stop + timedelta(hours=2), Source.psp), payment_id, f"R-{uuid7()}",
                Money((net + vat) // 2, "EUR"), [], None, "goodwill",
            )  # fmt: skip
        if dispute:
            yield DisputeOpened(
                self.env(stop + timedelta(days=1), Source.psp), payment_id, f"DP-{uuid7()}",
                Money(net + vat, "EUR"), "fraudulent",
            )  # fmt: skip

    def _label(self, attack: str, at: datetime, *subjects: str) -> None:
        self.labels.append(Label(attack, subjects, at))

    # -- attacks ---------------------------------------------------------------------------
    def card_testing(self, at: datetime) -> Iterator[Any]:
        """Twelve 1 EUR authorizations with stolen cards in four minutes at one terminal, most
        declined."""
        n = self.rng.randrange(self.stations)
        sid = station_id(n)
        terminal = terminal_of(sid)
        self._label("card_testing", at, f"station:{sid}", f"terminal:{terminal}")
        for k in range(12):
            when, pid = at + timedelta(seconds=20 * k), f"P-{uuid7()}"
            card = card_fingerprint(f"tok_stolen_{uuid7()}")
            if k % 3:
                yield AuthorizationFailed(
                    self.env(when, Source.psp), pid, Money(100, "EUR"), "PAYMENT_DECLINED",
                    "card declined", "sandbox", "card_declined", None, card, terminal, None, sid,
                )  # fmt: skip
            else:
                yield PaymentAuthorized(
                    self.env(when, Source.psp), pid, "sandbox", f"sbx_{uuid7()}",
                    Money(100, "EUR"), "card", None, sid, None, None, card, terminal,
                )  # fmt: skip

    def card_velocity(self, at: datetime) -> Iterator[Any]:
        """One stolen card paying for eight short sessions of different tokens in an hour."""
        card_token = f"tok_visa_stolen_{uuid7()}"
        self._label("card_velocity", at, f"card:{card_fingerprint(card_token)}")
        for k in range(8):
            n = self.rng.randrange(self.stations)
            driver = Driver(10_000_000 + self.rng.randrange(10**6), STATIONS[n % 3][0])
            yield from self.session(
                at + timedelta(minutes=7 * k), n, driver, minutes=5, refund=False,
                paid_with=card_token,
            )  # fmt: skip

    def cloned_token(self, at: datetime) -> Iterator[Any]:
        """A copied RFID card: the same token starts a session while its first still runs."""
        country = STATIONS[self.rng.randrange(3)][0]
        n1, n2 = self._two_stations(country)
        driver = self.drivers.pick(country, at)
        self._label("cloned_token", at, f"token:{driver.token_uid}")
        first = list(self.session(at, n1, driver, minutes=80, refund=False))
        second = list(
            self.session(at + timedelta(minutes=20), n2, driver, minutes=40, refund=False)
        )
        yield from sorted(first + second, key=lambda e: e.envelope.occurred_at)

    def impossible_travel(self, at: datetime) -> Iterator[Any]:
        """A token charging in Berlin, then forty minutes after its stop in Paris."""
        driver = self.drivers.pick("DE", at)
        self._label("impossible_travel", at, f"token:{driver.token_uid}")
        de = next(n for n in range(self.stations) if STATIONS[n % 3][0] == "DE")
        fr = next(n for n in range(self.stations) if STATIONS[n % 3][0] == "FR")
        yield from self.session(at, de, driver, minutes=30, refund=False)
        yield from self.session(at + timedelta(minutes=70), fr, driver, minutes=30, refund=False)

    def energy_theft(self, at: datetime) -> Iterator[Any]:
        """A session billed 60 kWh in an hour at a 22 kW station: a tampered meter."""
        n = (
            next(
                n
                for n in range(self.rng.randrange(self.stations), 10**6)
                if station_power(n % self.stations) == 22_000
            )
            % self.stations
        )
        driver = self.drivers.pick(STATIONS[n % 3][0], at)
        self._label("energy_theft", at, f"station:{station_id(n)}")
        yield from self.session(at, n, driver, minutes=60, power_w=60_000, refund=False)

    def refund_abuse(self, at: datetime) -> Iterator[Any]:
        """A driver who charges and claims the money back: three refunds and two disputes in
        ten days."""
        n = self.rng.randrange(self.stations)
        driver = self.drivers.pick(STATIONS[n % 3][0], at)
        self._label("refund_abuse", at, f"token:{driver.token_uid}",
                    f"card:{card_fingerprint(driver.payment_token)}")  # fmt: skip
        for k in range(5):
            yield from self.session(at + timedelta(days=2 * k), n, driver, minutes=30,
                                    refund=k < 3, dispute=k >= 3)  # fmt: skip

    def _two_stations(self, country: str) -> tuple[int, int]:
        mine = [n for n in range(self.stations) if STATIONS[n % 3][0] == country]
        first, second = self.rng.sample(mine, 2)
        return first, second


def demo_attacks(flow: ChargingNetworkFlow, start: datetime) -> tuple[list[Any], list[Label]]:
    """Four attacks as upstream traffic for the demo (authorization instructions and OCPP
    sessions, priced and settled by the processors like any other): a card-testing burst, a
    cloned RFID card, impossible travel Berlin -> Paris, and a tampered meter."""
    labels: list[Label] = []
    events: list[Any] = []
    de = [n for n in range(flow.stations) if STATIONS[n % 3][0] == "DE"]
    fr = next(n for n in range(flow.stations) if STATIONS[n % 3][0] == "FR")
    target = station_id(de[0])
    terminal = terminal_of(target)
    labels.append(Label("card_testing", (f"station:{target}", f"terminal:{terminal}"), start))
    for k in range(12):
        at = start + timedelta(seconds=20 * k)
        token = f"tok_decline_ct{k}" if k % 3 else f"tok_visa_ct{k}"
        events.append(AuthorizeRequested(
            Envelope.new(flow.network_id, Source.terminal, occurred_at=at), f"P-{uuid7()}",
            Money(100, "EUR"), "card", token, None, target, terminal_id=terminal,
        ))  # fmt: skip
    clone = Driver(9_000_001, "DE")
    labels.append(Label("cloned_token", (f"token:{clone.token_uid}",), start))
    events += flow.session(start + timedelta(minutes=10), station=de[1], driver=clone)
    events += flow.session(start + timedelta(minutes=20), station=de[2], driver=clone)
    traveller = Driver(9_000_002, "DE")
    labels.append(Label("impossible_travel", (f"token:{traveller.token_uid}",), start))
    events += flow.session(start + timedelta(hours=2), station=de[3], driver=traveller)
    events += flow.session(start + timedelta(hours=4), station=fr, driver=traveller)
    ac = next(n for n in de if station_power(n) == 22_000)
    labels.append(Label("energy_theft", (f"station:{station_id(ac)}",), start))
    events += flow.session(start + timedelta(hours=6), station=ac, power_w=90_000)
    return events, labels
