"""What a verdict publishes: a score above zero, an alert when it alerts, and by policy a block
with a void of the scored hold; every id derived from the input, so a redelivery repeats them."""

from __future__ import annotations

import json

from ledger import events as ev
from ledger.fraud.engine import Contribution, Verdict
from ledger.fraud.observations import Kind, Observation
from ledger.fraud.outputs import outputs, reason_of
from ledger.fraud.policy import Action, NetworkPolicy

AUTH = Observation(Kind.AUTHORIZED, "in-1", "net", 1_780_000_000.0, token="T", card="C",
                   station="S1", payment_id="P-1", amount_minor=100, currency="EUR")  # fmt: skip
ALERTING = Verdict(0.9, (Contribution("velocity", 0.9, 1.0, {"last_hour": 9, "ids": ["a"]}),), True)


def test_nothing_for_a_zero_score() -> None:
    assert outputs("token:T", AUTH, Verdict(0.0), NetworkPolicy()) == []


def test_a_score_and_its_alert_explain_themselves() -> None:
    scored, alert = outputs("token:T", AUTH, ALERTING, NetworkPolicy())
    assert isinstance(scored, ev.FraudScored) and isinstance(alert, ev.FraudAlertRaised)
    assert json.loads(scored.contributions[0].evidence) == {"ids": ["a"], "last_hour": 9}
    assert (scored.input_event_id, scored.threshold) == ("in-1", 0.8)
    assert alert.reason == "score 0.90: velocity (last_hour=9)" == reason_of(ALERTING)
    assert (alert.action, alert.payment_id, alert.envelope.causation_id) == ("alert", "P-1", "in-1")


def test_ids_are_derived_from_the_input_and_the_subject() -> None:
    first = outputs("token:T", AUTH, ALERTING, NetworkPolicy())
    again = outputs("token:T", AUTH, ALERTING, NetworkPolicy())
    other = outputs("card:C", AUTH, ALERTING, NetworkPolicy())
    ids = [e.envelope.event_id for e in first]
    assert ids == [e.envelope.event_id for e in again]
    assert not set(ids) & {e.envelope.event_id for e in other}


def test_block_policy_blocks_the_token_and_voids_the_scored_hold() -> None:
    events = outputs("token:T", AUTH, ALERTING, NetworkPolicy(action=Action.BLOCK))
    assert [type(e).__name__ for e in events] == [
        "FraudScored", "FraudAlertRaised", "TokenBlocked", "VoidRequested"
    ]  # fmt: skip
    alert, blocked, void = events[1:]
    assert (blocked.subject, blocked.actor, blocked.alert_event_id) == (
        "token:T", "fraud-policy", alert.envelope.event_id
    )  # fmt: skip
    assert void.payment_id == "P-1" and alert.envelope.event_id in (void.reason or "")


def test_a_station_is_never_blocked() -> None:
    events = outputs("station:S1", AUTH, ALERTING, NetworkPolicy(action=Action.BLOCK))
    assert [type(e).__name__ for e in events] == ["FraudScored", "FraudAlertRaised"]
