"""The fraud rules: pure functions of a subject's recent history and the new observation.

Each returns a ``Finding`` (how strongly it fires, with the evidence a risk analyst needs to
check it by hand: counts, windows, distances, ids) or None. The rationale of each rule is in
docs/fraud.md; its knobs are ``Parameters``. A finding's strength is 0.6 when its limit is just
crossed and grows to 1.0 at twice the limit (``over``)."""

from __future__ import annotations

import bisect
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from ledger.fraud.observations import AFTERCARE, AUTHORIZATIONS, Kind, Observation
from ledger.fraud.policy import Parameters

EARTH_RADIUS_KM = 6371.0088
HOUR, DAY = 3600, 86400


@dataclass(frozen=True)
class Finding:
    rule: str
    strength: float
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Stats:
    """Running count, mean and sum of squared deviations (Welford) of a value."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def add(self, x: float) -> Stats:
        n = self.n + 1
        delta = x - self.mean
        mean = self.mean + delta / n
        return Stats(n, mean, self.m2 + delta * (x - mean))

    @property
    def stdev(self) -> float:
        return math.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else 0.0


def over(value: float, limit: float) -> float:
    """Strength of a finding whose measure ``value`` crossed ``limit``: 0.6 at the limit, 1.0
    from twice the limit on."""
    if limit <= 0:
        return 1.0
    return min(1.0, 0.6 + 0.4 * (value - limit) / limit)


def within(
    history: Sequence[Observation],
    obs: Observation,
    seconds: float,
    kinds: Collection[Kind] = tuple(Kind),
) -> list[Observation]:
    """The observations of ``kinds`` in the busiest window of ``seconds`` that holds ``obs``
    (by occurrence time; ``obs`` included), oldest first.

    Not just the window up to ``obs``: records reach the processor in their partitions' order,
    not in the order they happened (a backlog after downtime, two topics), so the observation
    that completes a burst may arrive before others of it. Every member of a burst thus sees
    the whole burst, whatever order they arrive in."""
    near = sorted(
        (h for h in history if h.kind in kinds and abs(h.at - obs.at) <= seconds),
        key=lambda h: h.at,
    )
    near.insert(bisect.bisect_right([h.at for h in near], obs.at), obs)
    times = [h.at for h in near]
    best: tuple[int, int] = (0, 0)
    for first, start in enumerate(times):
        if start > obs.at:
            break
        if start < obs.at - seconds:
            continue
        last = bisect.bisect_right(times, start + seconds)
        if last - first > best[1] - best[0]:
            best = (first, last)
    return near[best[0] : best[1]]


def card_testing(history: Sequence[Observation], obs: Observation, p: Parameters) -> Finding | None:
    """Card testing: a burst of small or declined authorizations at one station, terminal or
    card within minutes: stolen card numbers being tried out before they are sold or used."""
    if obs.kind not in AUTHORIZATIONS:
        return None
    attempts = within(history, obs, p.card_testing_window_s, AUTHORIZATIONS)
    declined = sum(1 for h in attempts if h.kind is Kind.DECLINED)
    small = sum(
        1
        for h in attempts
        if h.kind is Kind.AUTHORIZED and h.amount_minor <= p.card_testing_small_minor
    )
    suspicious = declined + small
    if suspicious < p.card_testing_min_attempts:
        return None
    if suspicious / len(attempts) < p.card_testing_decline_ratio:
        return None
    return Finding(
        "card_testing",
        over(suspicious, p.card_testing_min_attempts),
        {
            "window_s": p.card_testing_window_s,
            "attempts": len(attempts),
            "declined": declined,
            "small": small,
            "cards": len({h.card for h in attempts if h.card}),
            "payment_ids": [h.payment_id for h in attempts if h.payment_id][-20:],
        },
    )


def velocity(history: Sequence[Observation], obs: Observation, p: Parameters) -> Finding | None:
    """Velocity: more authorizations of one token or card per hour or per day than a driver
    charges: a shared or stolen credential."""
    if obs.kind not in AUTHORIZATIONS:
        return None
    hour = len(within(history, obs, HOUR, AUTHORIZATIONS))
    day = len(within(history, obs, DAY, AUTHORIZATIONS))
    strength = max(
        over(hour, p.velocity_hour_max) if hour > p.velocity_hour_max else 0.0,
        over(day, p.velocity_day_max) if day > p.velocity_day_max else 0.0,
    )
    if strength == 0.0:
        return None
    return Finding(
        "velocity",
        strength,
        {"last_hour": hour, "hour_max": p.velocity_hour_max, "last_day": day,
         "day_max": p.velocity_day_max},
    )  # fmt: skip


def intervals(
    history: Sequence[Observation], obs: Observation
) -> dict[str, tuple[Observation, float | None]]:
    """Each session of the subject seen so far (``obs`` included): its start and, when known,
    its stop time."""
    seen = [*history, obs]
    stops = {h.session_id: h.at for h in seen if h.kind is Kind.SESSION_STOPPED}
    return {
        h.session_id: (h, stops.get(h.session_id))
        for h in seen
        if h.kind is Kind.SESSION_STARTED and h.session_id
    }


def cloned_token(history: Sequence[Observation], obs: Observation, p: Parameters) -> Finding | None:
    """Cloned token: the same RFID card or contract id in two sessions at once. A card is in one
    car: a second session elsewhere while the first runs means a copy (full strength), at the
    same station a double start (0.6).

    Reported when the overlap is proven, whatever order the records arrive in: at a start,
    against sessions whose stop is known and later; at a stop, against sessions that started
    while it ran. So a clone is reported at the latest when the first of the two sessions ends."""
    if obs.kind not in (Kind.SESSION_STARTED, Kind.SESSION_STOPPED):
        return None
    sessions = intervals(history, obs)
    mine = sessions.get(obs.session_id or "")
    if mine is None:  # a stop without its start: nothing to compare
        return None
    start, stop = mine
    overlapping = [
        other
        for sid, (other, other_stop) in sessions.items()
        if sid != obs.session_id
        and (
            (other_stop is not None and other.at <= start.at < other_stop)
            or (stop is not None and start.at <= other.at < stop)
        )
    ]
    if not overlapping:
        return None
    elsewhere = [h for h in overlapping if h.station != start.station]
    return Finding(
        "cloned_token",
        1.0 if elsewhere else 0.6,
        {
            "session_id": start.session_id,
            "station": start.station,
            "overlapping_sessions": [
                {"session_id": h.session_id, "station": h.station,
                 "started_s_apart": round(h.at - start.at)}
                for h in overlapping
            ],
        },
    )  # fmt: skip


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine) between two WGS 84 points."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi, dlmb = phi2 - phi1, math.radians(lon2 - lon1)
    a = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlmb / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(a))


def impossible_travel(
    history: Sequence[Observation], obs: Observation, p: Parameters
) -> Finding | None:
    """Impossible travel: the token starts sessions farther apart than can be driven in the time
    between (straight-line distance over elapsed time above ``travel_max_kmh``; distances under
    ``travel_min_km`` are ignored as neighbouring sites). A start is compared with the token's
    starts just before and just after it in time, as records may arrive out of order."""
    if obs.kind is not Kind.SESSION_STARTED or obs.lat is None or obs.lon is None:
        return None
    starts = [
        h for h in history
        if h.kind is Kind.SESSION_STARTED and h.lat is not None and h.lon is not None
        and h.session_id != obs.session_id
    ]  # fmt: skip
    before = max((h for h in starts if h.at <= obs.at), key=lambda h: h.at, default=None)
    after = min((h for h in starts if h.at > obs.at), key=lambda h: h.at, default=None)
    pairs = [(a, b) for a, b in ((before, obs), (obs, after)) if a is not None and b is not None]
    found = [f for f in (_travel(a, b, p) for a, b in pairs) if f is not None]
    return max(found, key=lambda f: f.strength, default=None)


def _travel(first: Observation, then: Observation, p: Parameters) -> Finding | None:
    assert first.lat is not None and first.lon is not None
    assert then.lat is not None and then.lon is not None
    km = distance_km(first.lat, first.lon, then.lat, then.lon)
    kmh = km / (max(then.at - first.at, 60.0) / HOUR)
    if km < p.travel_min_km or kmh <= p.travel_max_kmh:
        return None
    return Finding(
        "impossible_travel",
        over(kmh, p.travel_max_kmh),
        {
            "from_station": first.station, "from_session": first.session_id,
            "to_station": then.station, "to_session": then.session_id,
            "km": round(km, 1), "minutes": round((then.at - first.at) / 60, 1),
            "kmh": round(kmh), "max_kmh": p.travel_max_kmh,
        },
    )  # fmt: skip


def implausible_energy(obs: Observation, p: Parameters) -> Finding | None:
    """Implausible energy: a session billed for more energy than its EVSE can deliver in its
    duration (max power x time, with ``energy_tolerance`` for meter and clock error) or than any
    vehicle battery holds: a tampered meter, or energy billed to the wrong session. A session
    whose readings the sessions processor flagged (a register that went back, a signature that
    failed, ...) counts at 0.6: alone it does not alert, with another finding it may."""
    if obs.kind is not Kind.CDR:
        return None
    evidence: dict[str, Any] = {"session_id": obs.session_id, "energy_wh": obs.energy_wh,
                                "duration_s": obs.duration_s}  # fmt: skip
    if obs.meter_flags:
        evidence["meter_flags"] = obs.meter_flags.split(",")
    if obs.energy_wh > p.battery_max_wh:
        return Finding("implausible_energy", 1.0, {**evidence, "battery_max_wh": p.battery_max_wh})
    possible = (
        obs.max_power_w * obs.duration_s / HOUR * p.energy_tolerance
        if obs.max_power_w and obs.duration_s > 0
        else None
    )
    if possible is not None and obs.energy_wh > possible:
        return Finding(
            "implausible_energy",
            over(obs.energy_wh, possible),
            {**evidence, "max_power_w": obs.max_power_w, "possible_wh": round(possible)},
        )
    if obs.meter_flags:  # the sessions processor distrusted some readings: worth a look
        return Finding("implausible_energy", 0.6, evidence)
    return None


def refund_abuse(history: Sequence[Observation], obs: Observation, p: Parameters) -> Finding | None:
    """Refund and dispute abuse: more refunds and disputes (a dispute counts twice) per token or
    card in ``refund_window_s`` than ``refund_max``: charging, then claiming the money back."""
    if obs.kind not in AFTERCARE:
        return None
    recent = within(history, obs, p.refund_window_s, AFTERCARE)
    refunds = sum(1 for h in recent if h.kind is Kind.REFUND)
    disputes = len(recent) - refunds
    weighted = refunds + 2 * disputes
    if weighted <= p.refund_max:
        return None
    return Finding(
        "refund_abuse",
        over(weighted, p.refund_max),
        {"refunds": refunds, "disputes": disputes, "window_days": p.refund_window_s // DAY,
         "payment_ids": [h.payment_id for h in recent if h.payment_id][-20:]},
    )  # fmt: skip


def hour_of_week(at: float) -> int:
    """0 (Monday 00:00 UTC) to 167."""
    days = int(at // DAY)
    return ((days + 3) % 7) * 24 + int(at % DAY // HOUR)  # 1970-01-01 was a Thursday


def station_outlier(stats: Stats, obs: Observation, p: Parameters) -> Finding | None:
    """A session far outside the station's normal value: more than ``outlier_z`` standard
    deviations above the mean of its earlier sessions in the same hour of the week (once
    ``outlier_min_samples`` are known)."""
    if obs.kind is not Kind.CDR or stats.n < p.outlier_min_samples or stats.stdev == 0.0:
        return None
    z = (obs.amount_minor - stats.mean) / stats.stdev
    if z <= p.outlier_z:
        return None
    return Finding(
        "station_outlier",
        over(z, p.outlier_z),
        {"session_id": obs.session_id, "amount_minor": obs.amount_minor,
         "currency": obs.currency, "mean_minor": round(stats.mean),
         "stdev_minor": round(stats.stdev), "z": round(z, 1), "samples": stats.n,
         "hour_of_week": hour_of_week(obs.at)},
    )  # fmt: skip
