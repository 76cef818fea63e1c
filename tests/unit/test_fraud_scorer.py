"""The rules over a stream (``ledger.fraud.scorer``): what the memory learns and records as
changed, and that a memory stored and loaded between batches scores as one kept throughout
(what the batch scorer relies on)."""

from __future__ import annotations

from entrypoints.fraud_scenario import FraudScenario
from entrypoints.simulate_places import locations
from ledger import events as ev
from ledger.fraud.engine import SubjectState
from ledger.fraud.intake import Place, places_of
from ledger.fraud.policy import Policies
from ledger.fraud.scorer import Memory, judge, observe


def _population() -> tuple[list[object], dict[str, Place]]:
    scenario = FraudScenario("net-scorer", sessions=300, seed=3)
    places: dict[str, Place] = {}
    for location in locations(scenario.network_id, scenario.stations):
        places.update(places_of(location))
    return list(scenario.events()), places


def test_the_memory_learns_facts_and_records_what_changed() -> None:
    events, places = _population()
    memory = Memory()
    authorized = next(e for e in events if isinstance(e, ev.PaymentAuthorized))
    obs = observe(authorized, memory, places.get)
    assert obs is not None and memory.payments_changed == {authorized.payment_id}
    assert memory.payments[authorized.payment_id]["token"] == authorized.token_uid
    judge(obs, memory, Policies())
    assert memory.states_changed and all(
        isinstance(memory.states[s], SubjectState) for s in memory.states_changed
    )
    memory.stored()
    assert not (memory.payments_changed or memory.sessions_changed or memory.states_changed)


def test_a_memory_stored_and_reloaded_between_batches_scores_as_one_kept_throughout() -> None:
    events, places = _population()
    policies = Policies()
    kept = Memory()
    whole = [out for e in events if (o := observe(e, kept, places.get))
             for out in judge(o, kept, policies)]  # fmt: skip
    store: Memory = Memory()  # what a database would hold between batches
    batched: list[object] = []
    for start in range(0, len(events), 97):
        memory = Memory(dict(store.payments), dict(store.sessions), dict(store.states))
        for event in events[start : start + 97]:
            o = observe(event, memory, places.get)
            batched += judge(o, memory, policies) if o is not None else []
        for p in memory.payments_changed:
            store.payments[p] = memory.payments[p]
        for s in memory.sessions_changed:
            store.sessions[s] = memory.sessions[s]
        for s in memory.states_changed:
            store.states[s] = SubjectState.from_json(memory.states[s].to_json())

    def shown(out: list[object]) -> list[tuple[object, ...]]:  # recorded_at aside
        return [(type(e).__name__, e.envelope.event_id, getattr(e, "subject", None),  # type: ignore[attr-defined]
                 getattr(e, "score", None)) for e in out]  # fmt: skip

    assert shown(batched) == shown(whole)
    assert any(isinstance(e, ev.FraudAlertRaised) for e in whole)
