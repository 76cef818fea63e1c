"""The fraud rules on crafted histories: each fires on its pattern, stays quiet on normal
traffic, and explains itself; the engine's score is deterministic and idempotent."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.fraud import rules
from ledger.fraud.engine import SubjectState, Verdict, score
from ledger.fraud.observations import Kind, Observation, subjects_of
from ledger.fraud.policy import (
    Action,
    InvalidFraudPolicy,
    NetworkPolicy,
    Parameters,
    policies_from,
)

P = Parameters()
T0 = 1_780_000_000.0
_ids = itertools.count()
BERLIN, PARIS, POTSDAM = (52.52, 13.405), (48.8566, 2.3522), (52.39, 13.06)


def obs(kind: Kind, at: float, **kw: object) -> Observation:
    return Observation(kind, f"e{next(_ids)}", "net", T0 + at, **kw)  # type: ignore[arg-type]


def auth(at: float, amount: int = 3000, declined: bool = False, **kw: object) -> Observation:
    kind = Kind.DECLINED if declined else Kind.AUTHORIZED
    return obs(kind, at, amount_minor=amount, currency="EUR", station="S1", **kw)


def start(
    at: float, session: str, station: str = "S1", where: tuple[float, float] = BERLIN
) -> Observation:
    return obs(Kind.SESSION_STARTED, at, token="T", session_id=session, station=station,
               lat=where[0], lon=where[1])  # fmt: skip


def stop(at: float, session: str) -> Observation:
    return obs(Kind.SESSION_STOPPED, at, token="T", session_id=session)


# -- card testing ------------------------------------------------------------------------------
def test_card_testing_fires_on_a_burst_of_declines_and_small_holds() -> None:
    history = [auth(i * 20, declined=i % 2 == 0, amount=100) for i in range(9)]
    found = rules.card_testing(history, auth(200, declined=True), P)
    assert found is not None and found.strength == 1.0
    assert found.evidence["attempts"] == 10 and found.evidence["declined"] == 6


def test_card_testing_ignores_normal_sessions_and_old_declines() -> None:
    normal = [auth(i * 60) for i in range(8)] + [auth(500, declined=True)]
    assert rules.card_testing(normal, auth(540), P) is None
    old = [auth(i, declined=True) for i in range(10)]  # an hour before: outside the window
    assert rules.card_testing(old, auth(3600 + 20), P) is None


def test_card_testing_needs_the_ratio_not_just_the_count() -> None:
    busy = [auth(i * 10) for i in range(40)] + [auth(400 + i, declined=True) for i in range(5)]
    assert rules.card_testing(busy, auth(420), P) is None


# -- velocity ----------------------------------------------------------------------------------
def test_velocity_counts_per_hour_and_per_day() -> None:
    hour = [auth(i * 600) for i in range(5)]
    found = rules.velocity(hour, auth(3000), P)
    assert found is not None and found.evidence["last_hour"] == 6
    spread = [auth(i * 7200) for i in range(11)]  # every two hours: 12 in a day
    found = rules.velocity(spread, auth(11 * 7200), P)
    assert found is not None and found.evidence["last_day"] == 12
    assert rules.velocity([auth(0), auth(4000)], auth(9000), P) is None


# -- cloned token ------------------------------------------------------------------------------
def test_cloned_token_fires_when_the_overlap_is_proven() -> None:
    # B starts elsewhere while A runs: proven once A's stop is known, whichever comes last
    assert rules.cloned_token([start(0, "A", "S1")], start(600, "B", "S2"), P) is None
    found = rules.cloned_token([start(0, "A", "S1"), start(600, "B", "S2")], stop(3000, "A"), P)
    assert found is not None and found.strength == 1.0
    assert found.evidence["overlapping_sessions"][0]["session_id"] == "B"
    late = rules.cloned_token([start(0, "A", "S1"), stop(3000, "A")], start(600, "B", "S2"), P)
    assert late is not None and late.evidence["overlapping_sessions"][0]["session_id"] == "A"


def test_cloned_token_is_quiet_for_sessions_one_after_the_other() -> None:
    assert rules.cloned_token([start(0, "A"), stop(500, "A")], start(600, "B", "S2"), P) is None
    assert rules.cloned_token([start(600, "B", "S2"), start(0, "A")], stop(500, "A"), P) is None
    same = rules.cloned_token([start(0, "A", "S1"), stop(300, "A")], start(60, "B", "S1"), P)
    assert same is not None and same.strength == 0.6


@pytest.mark.parametrize("order", list(itertools.permutations(range(4))))
def test_cloned_token_found_in_any_arrival_order(order: tuple[int, ...]) -> None:
    events = [start(0, "A", "S1"), stop(3000, "A"), start(600, "B", "S2"), stop(4000, "B")]
    arrival = [events[i] for i in order]
    if arrival.index(events[0]) > arrival.index(events[1]):
        return  # one session's records share a partition: its start comes before its stop
    if arrival.index(events[2]) > arrival.index(events[3]):
        return
    found = [rules.cloned_token(arrival[:i], e, P) for i, e in enumerate(arrival)]
    assert any(f is not None for f in found)


# -- impossible travel -------------------------------------------------------------------------
def test_impossible_travel_berlin_to_paris_in_an_hour() -> None:
    history = [start(0, "A", "S1", BERLIN), stop(1800, "A")]
    found = rules.impossible_travel(history, start(3600, "B", "S2", PARIS), P)
    assert found is not None and found.strength == 1.0
    assert 870 < found.evidence["km"] < 890 and found.evidence["kmh"] > 800


def test_impossible_travel_when_the_later_session_arrives_first() -> None:
    history = [start(3600, "B", "S2", PARIS)]
    found = rules.impossible_travel(history, start(0, "A", "S1", BERLIN), P)
    assert found is not None and found.evidence["from_station"] == "S1"


def test_card_testing_found_when_the_burst_arrives_backwards() -> None:
    burst = [auth(i * 20, declined=i % 2 == 0, amount=100) for i in range(10)][::-1]
    found = [rules.card_testing(burst[:i], e, P) for i, e in enumerate(burst)]
    assert found[-1] is not None and found[-1].evidence["attempts"] == 10


def test_impossible_travel_allows_the_drive_and_the_neighbourhood() -> None:
    history = [start(0, "A", "S1", BERLIN), stop(1800, "A")]
    assert rules.impossible_travel(history, start(6 * 3600, "B", "S2", PARIS), P) is None
    assert rules.impossible_travel(history, start(1900, "B", "S2", POTSDAM), P) is None


def test_distance_km_matches_a_known_distance() -> None:
    assert rules.distance_km(*BERLIN, *PARIS) == pytest.approx(878, abs=3)


# -- implausible energy ------------------------------------------------------------------------
def cdr(
    at: float, wh: int, seconds: int, power: int | None = 22_000, amount: int = 2000
) -> Observation:
    return obs(Kind.CDR, at, station="S1", session_id="X", energy_wh=wh, duration_s=seconds,
               max_power_w=power, amount_minor=amount, currency="EUR")  # fmt: skip


def test_implausible_energy_beyond_max_power_times_duration() -> None:
    assert rules.implausible_energy(cdr(0, 22_000, 3600), P) is None  # exactly possible
    found = rules.implausible_energy(cdr(0, 60_000, 3600), P)
    assert found is not None and found.strength == 1.0 and found.evidence["possible_wh"] == 24200


def test_implausible_energy_beyond_any_battery_even_without_power() -> None:
    found = rules.implausible_energy(cdr(0, 250_000, 36_000, power=None), P)
    assert found is not None and found.evidence["battery_max_wh"] == P.battery_max_wh
    assert rules.implausible_energy(cdr(0, 50_000, 3600, power=None), P) is None


def test_a_session_with_flagged_readings_counts_but_alone_does_not_alert() -> None:
    flagged = replace(cdr(0, 5_000, 3600), meter_flags="METER_REGISTER_DECREASED")
    found = rules.implausible_energy(flagged, P)
    assert found is not None and found.strength == 0.6
    assert found.evidence["meter_flags"] == ["METER_REGISTER_DECREASED"]
    assert not run("station:S1", [flagged])[0].alert
    both = replace(cdr(0, 60_000, 3600), meter_flags="SIGNATURE_INVALID")
    strong = rules.implausible_energy(both, P)
    assert strong is not None and strong.strength == 1.0 and "meter_flags" in strong.evidence


# -- refunds and disputes ----------------------------------------------------------------------
def test_refund_abuse_counts_disputes_twice_within_the_window() -> None:
    history = [obs(Kind.REFUND, 0, token="T"), obs(Kind.DISPUTE, 86400, token="T")]
    found = rules.refund_abuse(history, obs(Kind.REFUND, 2 * 86400, token="T"), P)
    assert found is not None and found.evidence == {
        "refunds": 2, "disputes": 1, "window_days": 30, "payment_ids": []
    }  # fmt: skip
    assert rules.refund_abuse(history, obs(Kind.REFUND, 40 * 86400, token="T"), P) is None


# -- station outlier ---------------------------------------------------------------------------
def test_station_outlier_after_enough_samples_of_the_same_hour() -> None:
    stats = rules.Stats()
    for amount in [1800, 2000, 2200] * 10:
        stats = stats.add(amount)
    assert rules.station_outlier(stats, cdr(0, 1, 1, amount=2300), P) is None
    found = rules.station_outlier(stats, cdr(0, 1, 1, amount=9000), P)
    assert found is not None and found.evidence["samples"] == 30 and found.evidence["z"] > 5
    few = rules.Stats().add(10).add(20)
    assert rules.station_outlier(few, cdr(0, 1, 1, amount=9000), P) is None


def test_hour_of_week_starts_on_monday_utc() -> None:
    monday = 1_764_547_200.0  # 2025-12-01 00:00 UTC, a Monday
    assert rules.hour_of_week(monday) == 0
    assert rules.hour_of_week(monday + 6 * 86400 + 23 * 3600) == 167


# -- the engine --------------------------------------------------------------------------------
def run(
    subject: str, events: list[Observation], policy: NetworkPolicy | None = None
) -> list[Verdict]:
    state, verdicts = SubjectState(), []
    for e in events:
        verdict, state = score(subject, state, e, policy or NetworkPolicy())
        verdicts.append(verdict)
    return verdicts


def test_a_burst_at_a_station_raises_one_alert_then_stays_quiet_for_the_cooldown() -> None:
    burst = [auth(i * 15, declined=i % 3 != 0, amount=100) for i in range(20)]
    verdicts = run("station:S1", burst)
    assert sum(v.alert for v in verdicts) == 1
    first = next(v for v in verdicts if v.alert)
    assert first.score >= 0.8 and first.contributions[0].rule == "card_testing"


def test_scores_combine_as_independent_risks() -> None:
    policy = NetworkPolicy(weights={"cloned_token": 0.5, "impossible_travel": 0.5})
    events = [start(0, "A", "S1", BERLIN), stop(3000, "A"), start(600, "B", "S2", PARIS)]
    last = max(run("token:T", events, policy), key=lambda v: v.score)
    assert {c.rule for c in last.contributions} == {"cloned_token", "impossible_travel"}
    assert last.score == pytest.approx(0.75)


def test_a_rule_weighted_zero_is_switched_off() -> None:
    policy = NetworkPolicy(weights={"cloned_token": 0.0})
    events = [start(0, "A", "S1"), start(60, "B", "S2"), stop(600, "A")]
    assert all(v.score == 0 for v in run("token:T", events, policy))


def test_within_picks_the_busiest_window_holding_the_observation() -> None:
    history = [auth(0), auth(100), auth(900), auth(1000), auth(1100)]
    assert [round(h.at - T0) for h in rules.within(history, auth(950), 600)] == [
        900,
        950,
        1000,
        1100,
    ]


def test_normal_driver_scores_zero() -> None:
    day = [
        e
        for i in range(3)
        for e in (start(i * 8 * 3600, f"S{i}"), stop(i * 8 * 3600 + 3000, f"S{i}"))
    ]
    assert all(v.score == 0 for v in run("token:T", day))


def test_state_round_trips_through_json() -> None:
    state = SubjectState()
    for e in [start(0, "A"), cdr(10, 5000, 3600), obs(Kind.REFUND, 20, token="T")]:
        _, state = score(
            "station:S1" if e.kind is Kind.CDR else "token:T", state, e, NetworkPolicy()
        )
    assert SubjectState.from_json(state.to_json()) == state


kinds = st.sampled_from(list(Kind))
events = st.lists(
    st.builds(
        lambda kind, at, amount, station, session, declined: obs(
            kind, at, amount_minor=amount, station=station, session_id=session, token="T",
            card="C", energy_wh=amount * 10, duration_s=600, max_power_w=11_000,
            lat=50.0 + at / 10_000, lon=8.0,
        ),
        kinds, st.integers(0, 86_400), st.integers(0, 10_000), st.sampled_from(["S1", "S2"]),
        st.sampled_from(["A", "B", "C"]), st.booleans(),
    ),
    max_size=40,
)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(events, st.sampled_from(["token:T", "card:C", "station:S1", "terminal:X"]))
def test_a_redelivered_observation_gets_the_same_verdict_and_changes_nothing(
    history: list[Observation], subject: str
) -> None:
    state = SubjectState()
    policy = NetworkPolicy()
    for e in history:
        verdict, after = score(subject, state, e, policy)
        assert 0.0 <= verdict.score <= 1.0
        again, unchanged = score(subject, after, e, policy)
        assert again == verdict and unchanged == after
        state = after


def test_subjects_of_each_kind() -> None:
    a = auth(0, token="T", card="C", terminal="X")
    assert subjects_of(a) == ["token:T", "card:C", "station:S1", "terminal:X"]
    assert subjects_of(start(0, "A")) == ["token:T"]
    assert subjects_of(cdr(0, 1, 1)) == ["station:S1"]


def test_policies_override_per_network_and_refuse_unknown_keys() -> None:
    policies = policies_from(
        {"threshold": 0.7, "velocity_hour_max": 6,
         "networks": {"berlin": {"action": "block", "weights": {"velocity": 0.2}}}}
    )  # fmt: skip
    berlin = policies.of("berlin")
    assert berlin.action is Action.BLOCK and berlin.threshold == 0.7
    assert berlin.parameters.velocity_hour_max == 6 and berlin.weight("velocity") == 0.2
    assert policies.of("other").action is Action.ALERT
    for bad in ({"treshold": 0.5}, {"action": "shout"}, {"weights": {"nope": 1}},
                {"threshold": 0}, {"velocity_day_max": -1}):  # fmt: skip
        with pytest.raises(InvalidFraudPolicy):
            policies_from(bad)
