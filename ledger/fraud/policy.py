"""Each network's fraud policy: the rules' parameters and weights, the alert threshold and what
an alert does (``alert``, ``review`` or ``block``). The defaults are documented in docs/fraud.md;
a network overrides any of them (``evledger fraud run --policy FILE``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ledger.errors import LedgerError


class Action(StrEnum):
    ALERT = "alert"  # record the alert only
    REVIEW = "review"  # hold the payment's capture for a person to clear
    BLOCK = "block"  # block the token or card: new authorizations are refused, the hold voided


RULES = (
    "card_testing",
    "velocity",
    "cloned_token",
    "impossible_travel",
    "implausible_energy",
    "refund_abuse",
    "station_outlier",
)

DEFAULT_WEIGHTS: Mapping[str, float] = {
    "card_testing": 0.9,
    "velocity": 0.85,
    "cloned_token": 0.95,
    "impossible_travel": 0.9,
    "implausible_energy": 0.9,
    "refund_abuse": 0.85,
    "station_outlier": 0.5,
}


@dataclass(frozen=True)
class Parameters:
    """The rules' knobs (times in seconds, amounts in minor units of the event's currency)."""

    card_testing_window_s: int = 600
    card_testing_min_attempts: int = 5
    card_testing_small_minor: int = 200
    card_testing_decline_ratio: float = 0.5
    velocity_hour_max: int = 4
    velocity_day_max: int = 10
    session_max_open_s: int = 12 * 3600
    travel_max_kmh: float = 200.0
    travel_min_km: float = 50.0
    energy_tolerance: float = 1.10
    battery_max_wh: int = 200_000
    refund_window_s: int = 30 * 86400
    refund_max: int = 3
    outlier_min_samples: int = 30
    outlier_z: float = 5.0
    history_max: int = 500
    lateness_s: int = 7 * 86400
    """How far behind the newest observation of a subject a record may arrive and still be
    judged with the history it belongs to (records of two partitions arrive in no fixed order,
    most of all in a backlog)."""


@dataclass(frozen=True)
class NetworkPolicy:
    """What a network decides: the parameters, a weight per rule, the alert threshold, the
    action an alert takes, and how long one subject stays quiet after an alert."""

    parameters: Parameters = field(default_factory=Parameters)
    weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    threshold: float = 0.8
    action: Action = Action.ALERT
    cooldown_s: int = 3600

    def weight(self, rule: str) -> float:
        return self.weights.get(rule, DEFAULT_WEIGHTS.get(rule, 0.0))


class InvalidFraudPolicy(LedgerError):
    code = "INVALID_FRAUD_POLICY"


@dataclass(frozen=True)
class Policies:
    """The policy of every network: a default and per-network overrides."""

    default: NetworkPolicy = field(default_factory=NetworkPolicy)
    networks: Mapping[str, NetworkPolicy] = field(default_factory=dict)

    def of(self, network_id: str) -> NetworkPolicy:
        return self.networks.get(network_id, self.default)


def policy_from(data: Mapping[str, Any], base: NetworkPolicy | None = None) -> NetworkPolicy:
    """A policy from a mapping (a TOML table): ``threshold``, ``action``, ``cooldown_s``,
    ``weights`` (rule -> 0..1) and any ``Parameters`` field, over ``base``.
    Raises InvalidFraudPolicy naming the key that is wrong."""
    base = base or NetworkPolicy()
    known = {f.name: f for f in dataclasses.fields(Parameters)}
    allowed = set(known) | {"threshold", "action", "cooldown_s", "weights"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise InvalidFraudPolicy(f"unknown fraud policy keys: {', '.join(unknown)}")
    params: dict[str, Any] = {}
    for key, value in data.items():
        if key in known:
            kind = type(getattr(base.parameters, key))
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise InvalidFraudPolicy(f"{key} must be a non-negative number, not {value!r}")
            params[key] = kind(value)
    weights = dict(base.weights)
    for rule, weight in dict(data.get("weights", {})).items():
        if rule not in RULES:
            raise InvalidFraudPolicy(f"unknown rule {rule!r} in weights; rules: {', '.join(RULES)}")
        if not isinstance(weight, int | float) or not 0 <= weight <= 1:
            raise InvalidFraudPolicy(f"weight of {rule} must be between 0 and 1, not {weight!r}")
        weights[rule] = float(weight)
    threshold = data.get("threshold", base.threshold)
    if not isinstance(threshold, int | float) or not 0 < threshold <= 1:
        raise InvalidFraudPolicy(f"threshold must be in (0, 1], not {threshold!r}")
    try:
        action = Action(data.get("action", base.action))
    except ValueError:
        raise InvalidFraudPolicy(
            f"action must be one of {', '.join(a.value for a in Action)}, not {data['action']!r}"
        ) from None
    return NetworkPolicy(
        dataclasses.replace(base.parameters, **params),
        weights,
        float(threshold),
        action,
        int(data.get("cooldown_s", base.cooldown_s)),
    )


def policies_from(data: Mapping[str, Any]) -> Policies:
    """Policies from a document: top-level keys are the default policy, ``[networks.<id>]``
    tables override it per network. Raises InvalidFraudPolicy."""
    top = {k: v for k, v in data.items() if k != "networks"}
    default = policy_from(top)
    networks = {
        str(network): policy_from(dict(table), default)
        for network, table in dict(data.get("networks", {})).items()
    }
    return Policies(default, networks)
