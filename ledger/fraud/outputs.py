"""The events a verdict stands for: its score, its alert, and what the network's policy does
about it. Every id is derived from the scored input event, the subject and the output's kind,
so a redelivered input yields the same events and downstream deduplicates them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from ledger import events as ev
from ledger import ids
from ledger.envelope import Envelope, Source
from ledger.fraud.engine import Verdict
from ledger.fraud.observations import Kind, Observation, SubjectKind, subject_kind
from ledger.fraud.policy import Action, NetworkPolicy

POLICY_ACTOR = "fraud-policy"
BLOCKABLE = (SubjectKind.TOKEN, SubjectKind.CARD)


def output_id(obs: Observation, subject: str, kind: str) -> str:
    return ids.FRAUD_OUTPUTS.derive(obs.event_id, subject, kind)


def _envelope(obs: Observation, subject: str, kind: str) -> Envelope:
    return Envelope.new(
        obs.network_id,
        Source.internal,
        occurred_at=datetime.fromtimestamp(obs.at, UTC),
        correlation_id=obs.session_id or obs.payment_id,
        causation_id=obs.event_id,
        event_id=output_id(obs, subject, kind),
    )


def reason_of(verdict: Verdict) -> str:
    """One line a risk analyst reads first: the rules, strongest first, with their key facts."""
    parts = []
    for c in sorted(verdict.contributions, key=lambda c: -c.weight * c.strength):
        facts = ", ".join(
            f"{k}={v}" for k, v in c.evidence.items() if not isinstance(v, list | dict)
        )
        parts.append(f"{c.rule} ({facts})" if facts else c.rule)
    return f"score {verdict.score:.2f}: " + "; ".join(parts)


def outputs(subject: str, obs: Observation, verdict: Verdict, policy: NetworkPolicy) -> list[Any]:
    """FraudScored for a score above zero; FraudAlertRaised when the verdict alerts; and by
    policy, a TokenBlocked (a token or card subject) with a VoidRequested for the hold of the
    authorization that was scored."""
    if verdict.score <= 0:
        return []
    contributions = [
        ev.RuleContribution(c.rule, c.weight, c.strength, json.dumps(c.evidence, sort_keys=True))
        for c in verdict.contributions
    ]
    rules = [c.rule for c in verdict.contributions]
    out: list[Any] = [
        ev.FraudScored(
            _envelope(obs, subject, "scored"),
            subject,
            verdict.score,
            rules,
            contributions,
            obs.event_id,
            policy.threshold,
        )
    ]
    if not verdict.alert:
        return out
    alert = ev.FraudAlertRaised(
        _envelope(obs, subject, "alert"), subject, verdict.score, reason_of(verdict),
        policy.action.value, rules, obs.event_id, obs.payment_id, obs.session_id,
    )  # fmt: skip
    out.append(alert)
    if policy.action is Action.BLOCK and subject_kind(subject) in BLOCKABLE:
        out.append(
            ev.TokenBlocked(
                _envelope(obs, subject, "blocked"),
                subject,
                alert.reason,
                POLICY_ACTOR,
                alert.envelope.event_id,
            )
        )
        if obs.kind is Kind.AUTHORIZED and obs.payment_id:
            out.append(
                ev.VoidRequested(
                    _envelope(obs, subject, "void"),
                    obs.payment_id,
                    f"fraud block of {subject} (alert {alert.envelope.event_id})",
                )
            )
    return out
