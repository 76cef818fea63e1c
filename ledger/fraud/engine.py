"""Scoring one observation for one subject: the rules that apply to the subject's kind, their
findings combined into a score, the alert decision, and the subject's next state.

``score`` is pure: the same state and observation give the same verdict, and an observation the
state has already seen gives back the verdict it got the first time (so a redelivered event
yields the same output events, with the same ids) and leaves the state as it is."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from ledger.fraud import rules
from ledger.fraud.observations import (
    AFTERCARE,
    AUTHORIZATIONS,
    SESSIONS,
    Kind,
    Observation,
    SubjectKind,
    subject_kind,
)
from ledger.fraud.policy import NetworkPolicy, Parameters
from ledger.fraud.rules import Finding, Stats

RULES_OF: dict[SubjectKind, tuple[str, ...]] = {
    SubjectKind.TOKEN: ("velocity", "cloned_token", "impossible_travel", "refund_abuse"),
    SubjectKind.CARD: ("card_testing", "velocity", "refund_abuse"),
    SubjectKind.STATION: ("card_testing", "implausible_energy", "station_outlier"),
    SubjectKind.TERMINAL: ("card_testing",),
}
"""Which rules judge which subjects."""

SEEN_MAX = 1000
VERDICTS_MAX = 200


@dataclass(frozen=True)
class Contribution:
    """One rule's part in a score: its weight (the network's), strength and evidence."""

    rule: str
    weight: float
    strength: float
    evidence: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "weight": self.weight, "strength": self.strength,
                "evidence": self.evidence}  # fmt: skip


@dataclass(frozen=True)
class Verdict:
    """A subject's score for one observation, why, and whether it raises an alert."""

    score: float
    contributions: tuple[Contribution, ...] = ()
    alert: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"score": self.score, "alert": self.alert,
                "contributions": [c.to_json() for c in self.contributions]}  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Verdict:
        return cls(
            data["score"],
            tuple(Contribution(**c) for c in data["contributions"]),
            data["alert"],
        )


NOTHING = Verdict(0.0)


@dataclass(frozen=True)
class SubjectState:
    """What the processor keeps per subject: the recent observations the rules look back on,
    value statistics per hour of the week (stations), the ids seen lately with the verdicts
    that were not zero, and when the subject last raised an alert."""

    history: tuple[Observation, ...] = ()
    stats: dict[int, Stats] = field(default_factory=dict)
    seen: tuple[str, ...] = ()
    verdicts: dict[str, Verdict] = field(default_factory=dict)
    last_alert_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "history": [h.to_row() for h in self.history],
            "stats": {str(k): [s.n, s.mean, s.m2] for k, s in self.stats.items()},
            "seen": list(self.seen),
            "verdicts": {k: v.to_json() for k, v in self.verdicts.items()},
            "last_alert_at": self.last_alert_at,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> SubjectState:
        if not data:
            return cls()
        return cls(
            tuple(Observation.from_row(h) for h in data["history"]),
            {int(k): Stats(*v) for k, v in data["stats"].items()},
            tuple(data["seen"]),
            {k: Verdict.from_json(v) for k, v in data["verdicts"].items()},
            data["last_alert_at"],
        )


def score(
    subject: str, state: SubjectState, obs: Observation, policy: NetworkPolicy
) -> tuple[Verdict, SubjectState]:
    """The verdict on ``obs`` for ``subject`` and the subject's next state.
    Raises ValueError for a subject of an unknown kind."""
    if obs.event_id in state.seen:
        return state.verdicts.get(obs.event_id, NOTHING), state
    kind = subject_kind(subject)
    p = policy.parameters
    findings = [f for f in _findings(kind, state, obs, p) if policy.weight(f.rule) > 0]
    contributions = tuple(
        Contribution(f.rule, policy.weight(f.rule), round(f.strength, 4), f.evidence)
        for f in findings
    )
    benign = 1.0
    for c in contributions:
        benign *= 1.0 - c.weight * c.strength
    value = round(1.0 - benign, 4)
    quiet = state.last_alert_at is not None and obs.at - state.last_alert_at < policy.cooldown_s
    verdict = Verdict(value, contributions, value >= policy.threshold and not quiet)
    return verdict, _next(state, obs, verdict, p, kind)


def _findings(
    kind: SubjectKind, state: SubjectState, obs: Observation, p: Parameters
) -> list[Finding]:
    found: list[Finding | None] = []
    wanted = RULES_OF[kind]
    h = state.history
    if "card_testing" in wanted:
        found.append(rules.card_testing(h, obs, p))
    if "velocity" in wanted:
        found.append(rules.velocity(h, obs, p))
    if "cloned_token" in wanted:
        found.append(rules.cloned_token(h, obs, p))
    if "impossible_travel" in wanted:
        found.append(rules.impossible_travel(h, obs, p))
    if "refund_abuse" in wanted:
        found.append(rules.refund_abuse(h, obs, p))
    if "implausible_energy" in wanted:
        found.append(rules.implausible_energy(obs, p))
    if "station_outlier" in wanted and obs.kind is Kind.CDR:
        bucket = state.stats.get(rules.hour_of_week(obs.at), Stats())
        found.append(rules.station_outlier(bucket, obs, p))
    return [f for f in found if f is not None]


def horizon(kind: Kind, p: Parameters, of: SubjectKind) -> float:
    """How long an observation of ``kind`` stays in the history of a subject of kind ``of``:
    as long as the longest window of a rule that judges such subjects looks back."""
    if kind in AUTHORIZATIONS:
        return (
            max(rules.DAY, p.card_testing_window_s)
            if "velocity" in RULES_OF[of]
            else (p.card_testing_window_s)
        )
    if kind in SESSIONS:
        return p.session_max_open_s + rules.DAY
    if kind in AFTERCARE:
        return p.refund_window_s
    return 0.0  # a CDR counts into the station's statistics only


def _next(
    state: SubjectState, obs: Observation, verdict: Verdict, p: Parameters, of: SubjectKind
) -> SubjectState:
    newest = max([obs.at, *(h.at for h in state.history)])
    kept = [h for h in state.history if h.at >= newest - p.lateness_s - horizon(h.kind, p, of)]
    if horizon(obs.kind, p, of) > 0:
        kept.append(obs)
    kept.sort(key=lambda h: h.at)
    stats = state.stats
    if obs.kind is Kind.CDR:
        bucket = rules.hour_of_week(obs.at)
        stats = {**stats, bucket: stats.get(bucket, Stats()).add(obs.amount_minor)}
    seen = (*state.seen, obs.event_id)[-SEEN_MAX:]
    verdicts = dict(state.verdicts)
    if verdict.score > 0:
        verdicts[obs.event_id] = verdict
        for old in list(verdicts)[: max(0, len(verdicts) - VERDICTS_MAX)]:
            del verdicts[old]
    return replace(
        state,
        history=tuple(kept[-p.history_max :]),
        stats=stats,
        seen=seen,
        verdicts=verdicts,
        last_alert_at=obs.at if verdict.alert else state.last_alert_at,
    )
