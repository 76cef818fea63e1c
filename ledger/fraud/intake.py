"""From events to observations: what each event tells the fraud rules, and what the processor
remembers to enrich later events (a payment's token and card for its refunds, a session's
token for its stop, a station's place and power for its sessions and CDRs)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ledger import events as ev
from ledger.fraud.observations import Kind, Observation


@dataclass(frozen=True)
class Place:
    """Where a station is and the most power one of its EVSEs delivers."""

    lat: float
    lon: float
    max_power_w: int

    def to_json(self) -> list[float]:
        return [self.lat, self.lon, self.max_power_w]

    @classmethod
    def from_json(cls, data: list[float]) -> Place:
        return cls(float(data[0]), float(data[1]), int(data[2]))


def places_of(location: ev.LocationPublished) -> dict[str, Place]:
    """Each station's place in ``location`` (its highest EVSE power).
    Raises ValueError when the coordinates are not numbers."""
    lat, lon = float(location.latitude), float(location.longitude)
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise ValueError(f"coordinates out of range: {location.latitude}, {location.longitude}")
    power: dict[str, int] = {}
    for evse in location.evses:
        power[evse.station_id] = max(power.get(evse.station_id, 0), evse.max_electric_power_w)
    return {station: Place(lat, lon, watts) for station, watts in power.items()}


Lookup = Callable[[str], Any]
"""A key -> remembered value (or None) function over one of the processor's tables."""


def payment_facts(event: ev.PaymentAuthorized | ev.AuthorizationFailed) -> dict[str, Any]:
    """What to remember about a payment for its refunds and disputes."""
    return {"token": event.token_uid, "card": event.card_fingerprint, "station": event.station_id}


def observe_payment(event: Any, payments: Lookup) -> Observation | None:
    """The observation of a ``payments.events`` event, or None when the rules do not use it."""
    if isinstance(event, ev.PaymentAuthorized | ev.AuthorizationFailed):
        env = event.envelope
        at = (event.requested_at or env.occurred_at).timestamp()
        kind = Kind.AUTHORIZED if isinstance(event, ev.PaymentAuthorized) else Kind.DECLINED
        return Observation(
            kind, env.event_id, env.network_id, at, token=event.token_uid,
            card=event.card_fingerprint, station=event.station_id, terminal=event.terminal_id,
            session_id=event.session_id, payment_id=event.payment_id,
            amount_minor=event.amount.amount_minor, currency=event.amount.currency,
        )  # fmt: skip
    if isinstance(event, ev.PaymentRefunded | ev.DisputeOpened):
        env = event.envelope
        at = env.occurred_at.timestamp()
        facts = payments(event.payment_id) or {}
        kind = Kind.REFUND if isinstance(event, ev.PaymentRefunded) else Kind.DISPUTE
        return Observation(
            kind, env.event_id, env.network_id, at, token=facts.get("token"),
            card=facts.get("card"), station=facts.get("station"), payment_id=event.payment_id,
            amount_minor=event.amount.amount_minor, currency=event.amount.currency,
        )  # fmt: skip
    return None


def observe_session(event: Any, sessions: Lookup, places: Lookup) -> Observation | None:
    """The observation of a session's start or stop (None for meter values and states)."""
    if isinstance(event, ev.SessionStarted):
        env = event.envelope
        place = places(event.station_id)
        return Observation(
            Kind.SESSION_STARTED, env.event_id, env.network_id, env.occurred_at.timestamp(),
            token=event.token_uid, station=event.station_id, session_id=event.session_id,
            payment_id=event.payment_id, lat=place.lat if place else None,
            lon=place.lon if place else None,
        )  # fmt: skip
    if isinstance(event, ev.SessionStopped):
        env, token = event.envelope, sessions(event.session_id)
        return Observation(
            Kind.SESSION_STOPPED, env.event_id, env.network_id, event.stopped_at.timestamp(),
            token=token, session_id=event.session_id,
        )  # fmt: skip
    return None


def observe_cdr(event: Any, places: Lookup) -> Observation | None:
    """The observation of an issued CDR (credits are not scored)."""
    if not isinstance(event, ev.CdrIssued):
        return None
    env, place = event.envelope, places(event.station_id)
    return Observation(
        Kind.CDR, env.event_id, env.network_id, env.occurred_at.timestamp(),
        station=event.station_id, session_id=event.session_id, payment_id=event.payment_id,
        amount_minor=event.total_incl_vat.amount_minor, currency=event.total_incl_vat.currency,
        energy_wh=event.total_energy_wh, duration_s=event.total_time_s,
        max_power_w=place.max_power_w if place else None,
        meter_flags=",".join(event.meter_flags),
    )  # fmt: skip
