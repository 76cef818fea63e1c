"""What the fraud rules see: one ``Observation`` per relevant event, and the subjects it counts
towards (a driver's token, a card, a station, a payment terminal)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Kind(StrEnum):
    AUTHORIZED = "authorized"
    DECLINED = "declined"
    SESSION_STARTED = "session_started"
    SESSION_STOPPED = "session_stopped"
    REFUND = "refund"
    DISPUTE = "dispute"
    CDR = "cdr"


class SubjectKind(StrEnum):
    """What a score is about; a subject is written ``kind:id`` (``token:DE-EVL-C0001``)."""

    TOKEN = "token"  # the driver's RFID / contract id (OCPI Token.uid, OCPP idTag)
    CARD = "card"  # a payment card, by the fingerprint of its vaulted token
    STATION = "station"
    TERMINAL = "terminal"  # the payment terminal at the charger


AUTHORIZATIONS = (Kind.AUTHORIZED, Kind.DECLINED)
SESSIONS = (Kind.SESSION_STARTED, Kind.SESSION_STOPPED)
AFTERCARE = (Kind.REFUND, Kind.DISPUTE)


@dataclass(frozen=True, slots=True)
class Observation:
    """One event as the rules need it. ``at`` is the event's ``occurred_at`` in epoch seconds:
    windows follow the time things happened, not when they reached Kafka."""

    kind: Kind
    event_id: str
    network_id: str
    at: float
    token: str | None = None
    card: str | None = None
    station: str | None = None
    terminal: str | None = None
    session_id: str | None = None
    payment_id: str | None = None
    amount_minor: int = 0
    currency: str = ""
    lat: float | None = None
    lon: float | None = None
    energy_wh: int = 0
    duration_s: int = 0
    max_power_w: int | None = None
    meter_flags: str = ""
    """The CDR's meter anomalies (``CdrIssued.meter_flags``), comma-separated."""

    def to_json(self) -> dict[str, Any]:
        """A compact dict (fields at their default are left out) for the processor's tables."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value != f.default or f.default is dataclasses.MISSING:
                out[f.name] = value.value if isinstance(value, Kind) else value
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Observation:
        return cls(**{**data, "kind": Kind(data["kind"])})

    def to_row(self) -> list[Any]:
        """Every field in order, the kind by value: the compact form of a subject's history
        (a third of the dict's size, read and written on every observation of the subject)."""
        return [self.kind.value, *(getattr(self, name) for name in _ROW[1:])]

    @classmethod
    def from_row(cls, row: list[Any]) -> Observation:
        return cls(Kind(row[0]), *row[1:])


_ROW = tuple(f.name for f in dataclasses.fields(Observation))


def subject(kind: SubjectKind, value: str) -> str:
    return f"{kind.value}:{value}"


def subject_kind(name: str) -> SubjectKind:
    """The kind of a ``kind:id`` subject. Raises ValueError for an unknown kind."""
    return SubjectKind(name.split(":", 1)[0])


def subjects_of(obs: Observation) -> list[str]:
    """The subjects ``obs`` counts towards: an authorization towards its token, card, station and
    terminal; a session and a refund or dispute towards the driver's token (and card); a CDR
    towards its station."""
    wanted: list[tuple[SubjectKind, str | None]]
    if obs.kind in AUTHORIZATIONS:
        wanted = [
            (SubjectKind.TOKEN, obs.token),
            (SubjectKind.CARD, obs.card),
            (SubjectKind.STATION, obs.station),
            (SubjectKind.TERMINAL, obs.terminal),
        ]
    elif obs.kind in SESSIONS:
        wanted = [(SubjectKind.TOKEN, obs.token)]
    elif obs.kind in AFTERCARE:
        wanted = [(SubjectKind.TOKEN, obs.token), (SubjectKind.CARD, obs.card)]
    else:
        wanted = [(SubjectKind.STATION, obs.station)]
    return [subject(kind, value) for kind, value in wanted if value]
