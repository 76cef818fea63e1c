"""The fraud rules over a stream of events, in one place for every way of running them: what
each event tells (``observe``) and what scoring it per subject gives (``judge``), with the
state kept in a ``Memory`` the caller loads and stores as it likes (dictionaries for an offline
evaluation, PostgreSQL rows for the batch scorer, ``processors.fraud.batch``).

Pure: no I/O. The memory records what changed, for a caller that persists it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ledger import events as ev
from ledger.fraud.engine import SubjectState, score
from ledger.fraud.intake import Lookup, observe_cdr, observe_payment, observe_session, payment_facts
from ledger.fraud.observations import Observation, subjects_of
from ledger.fraud.outputs import outputs
from ledger.fraud.policy import Policies


@dataclass
class Memory:
    """What the rules remember: each payment's facts (token, card, station) for its refunds and
    disputes, each session's token for its stop, and each subject's state. ``*_changed``: what
    was written since the caller last stored it."""

    payments: dict[str, dict[str, Any]] = field(default_factory=dict)
    sessions: dict[str, str] = field(default_factory=dict)
    states: dict[str, SubjectState] = field(default_factory=dict)
    payments_changed: set[str] = field(default_factory=set)
    sessions_changed: set[str] = field(default_factory=set)
    states_changed: set[str] = field(default_factory=set)

    def stored(self) -> None:
        """The caller has persisted every change."""
        self.payments_changed.clear()
        self.sessions_changed.clear()
        self.states_changed.clear()


def observe(event: Any, memory: Memory, places: Lookup) -> Observation | None:
    """The observation ``event`` gives (None when the rules do not use it), after remembering
    what later events need from it."""
    if isinstance(event, ev.PaymentAuthorized | ev.AuthorizationFailed):
        memory.payments[event.payment_id] = payment_facts(event)
        memory.payments_changed.add(event.payment_id)
    if isinstance(event, ev.SessionStarted) and event.token_uid:
        memory.sessions[event.session_id] = event.token_uid
        memory.sessions_changed.add(event.session_id)
    return (
        observe_payment(event, memory.payments.get)
        or observe_session(event, memory.sessions.get, places)
        or observe_cdr(event, places)
    )


def judge(obs: Observation, memory: Memory, policies: Policies) -> list[Any]:
    """Score ``obs`` for each subject it concerns, in turn; the events the verdicts stand for
    (FraudScored, FraudAlertRaised and the policy's actions), each subject's state moved on."""
    policy = policies.of(obs.network_id)
    emitted: list[Any] = []
    for subject in subjects_of(obs):
        state = memory.states.get(subject)
        verdict, after = score(subject, state or SubjectState(), obs, policy)
        if after is not state:
            memory.states[subject] = after
            memory.states_changed.add(subject)
        emitted += outputs(subject, obs, verdict, policy)
    return emitted
