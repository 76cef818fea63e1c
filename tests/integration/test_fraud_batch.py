"""The batch fraud scorer on the real broker and PostgreSQL: a labelled population with scripted
attacks is scored with every attack found and no alert on the normal traffic; a scorer stopped
mid-stream and replaced by a fresh one (nothing in memory) emits every output once, the same
as one uninterrupted scorer; and two scorers of one group meeting on the same subjects lose no
observation."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import pytest

from connectors import postgres
from entrypoints.bootstrap import App
from entrypoints.fraud_evaluate import measure
from entrypoints.fraud_scenario import FraudScenario
from entrypoints.simulate_places import locations
from ledger import events as ev
from ledger.fraud.intake import Place, places_of
from ledger.fraud.observations import subjects_of
from ledger.fraud.policy import Policies
from ledger.fraud.scorer import Memory, observe
from processors.fraud.batch import TOPICS, build_fraud_batch_processor
from tests.integration.conftest import end_offsets
from tests.integration.test_ledger_projector import scratch_book

ROOT = Path(__file__).resolve().parents[2]


Population = tuple[FraudScenario, list[Any], dict[tuple[str, int], int]]


def published(app: App, name: str, seed: int) -> Population:
    """600 sessions with two attacks of each kind, published now: the scenario, its events and
    the offsets they start at. Each test's own seed: token ids repeat across seeds."""
    scenario = FraudScenario(f"{name}-{uuid.uuid4().hex[:8]}", sessions=600, seed=seed)
    events = list(scenario.events())
    starts = end_offsets(app, list(TOPICS))
    publisher = app.publisher()
    publisher.publish_many(events)
    publisher.flush()
    return scenario, events, starts


@pytest.fixture(scope="module")
def population(app: App) -> Iterator[Population]:
    """Published once for the tests that only read it."""
    yield published(app, "net-fraud-batch", 41)


def _places(scenario: FraudScenario) -> dict[str, Place]:
    places: dict[str, Place] = {}
    for location in locations(scenario.network_id, scenario.stations):
        places.update(places_of(location))
    return places


def _score(app: App, url: str, scenario: FraudScenario, starts: dict[tuple[str, int], int],
           *, stop_after: int | None = None) -> None:  # fmt: skip
    """Score the population into ``url``: with ``stop_after``, that many batches by a first
    scorer, the rest by a fresh one."""
    group = f"test-fraud-batch-{uuid.uuid4().hex[:8]}"
    with postgres.connect(url) as conn:
        postgres.store_offsets(conn, group, starts)
        conn.commit()
    places = _places(scenario)
    for batches in (stop_after, None):
        processor = build_fraud_batch_processor(app, Policies(), places.get, group=group,
                                                database_url=url, batch_size=400)  # fmt: skip
        processor.relaying = False  # the outputs stay in the outbox, read below
        try:
            if batches is None:
                processor.drain(idle_seconds=2.0)
                return
            done = 0
            while done < batches:
                done += int(processor.step(1.0).consumed > 0)
        finally:
            processor.close()


def _outputs(app: App, url: str) -> list[Any]:
    with postgres.connect(url) as conn:
        rows = conn.execute("SELECT topic, value FROM outbox ORDER BY id").fetchall()
    return [app.serde.decode(topic, bytes(value)) for topic, value in rows]


def _consumed(url: str) -> int:
    with postgres.connect(url) as conn:
        row = conn.execute(
            "SELECT applied + duplicates + rejected FROM processing_counts"
            " WHERE consumer_group LIKE 'test-fraud-batch-%'"
        ).fetchone()
    return int(row[0]) if row else 0


def test_the_attacks_are_found_once_across_a_scorer_replaced_mid_stream(
    app: App, population: Population
) -> None:
    """Which records share a batch depends on timing, and with it the order in which records of
    different partitions are scored; so two runs may differ in a score, never in what they
    find. The scorer replaced after two batches (nothing of the first in memory) emits no
    output twice and consumes every record once."""
    scenario, events, starts = population
    with scratch_book(app) as whole, scratch_book(app) as interrupted:
        _score(app, whole, scenario, starts)
        _score(app, interrupted, scenario, starts, stop_after=2)
        runs = [_outputs(app, whole), _outputs(app, interrupted)]
        consumed = [_consumed(whole), _consumed(interrupted)]
    assert min(consumed) >= len(events)  # each record applied, a duplicate or rejected
    for outputs in runs:
        ids = [e.envelope.event_id for e in outputs]
        assert len(ids) == len(set(ids))  # no output emitted twice
        alerts = [e for e in outputs if isinstance(e, ev.FraudAlertRaised)]
        report = measure(scenario.labels, alerts, scenario.sessions, len(events))
        assert report.recall == 1.0, report.by_attack
        assert report.false_alerts == 0, report.false_subjects
        scored = [e for e in outputs if isinstance(e, ev.FraudScored)]
        assert scored and all(0 < e.score <= 1 for e in scored)


def test_two_scorers_of_one_group_lose_no_observation_of_a_shared_subject(app: App) -> None:
    """Two scorers split the partitions, and a station's or a card's observations come from
    records of every partition: each subject's state, locked while a scorer writes it, ends with
    every observation of it, as one scorer alone gives. The population is published once both
    scorers hold partitions."""
    scenario = FraudScenario(f"net-fraud-pair-{uuid.uuid4().hex[:8]}", sessions=400, seed=42)
    events = list(scenario.events())
    places = _places(scenario)
    expected: dict[str, set[str]] = defaultdict(set)
    memory = Memory()
    for event in events:
        obs = observe(event, memory, places.get)
        for subject in subjects_of(obs) if obs is not None else ():
            expected[subject].add(obs.event_id)  # type: ignore[union-attr]
    group = f"test-fraud-batch-{uuid.uuid4().hex[:8]}"
    starts = end_offsets(app, list(TOPICS))
    with scratch_book(app) as url:
        with postgres.connect(url) as conn:
            postgres.store_offsets(conn, group, starts)
            conn.commit()
        scorers = [
            build_fraud_batch_processor(
                app, Policies(), places.get, group=group, database_url=url, batch_size=100
            )
            for _ in range(2)
        ]
        try:
            deadline = time.monotonic() + 90
            while not all(s.consumer.consumer.assignment() for s in scorers):
                assert time.monotonic() < deadline, "the two scorers never both held partitions"
                for scorer in scorers:
                    scorer.step(0.2)
            for scorer in scorers:
                scorer.relaying = False
            publisher = app.publisher()
            publisher.publish_many(events)
            publisher.flush()
            with ThreadPoolExecutor(2) as pool:
                drained = list(pool.map(lambda s: s.drain(idle_seconds=4.0), scorers))
        finally:
            for scorer in scorers:
                scorer.close()
        with postgres.connect(url) as conn:
            rows = conn.execute(
                "SELECT subject, state FROM fraud_subject_states WHERE version <> 0"
            ).fetchall()
        consumed = _consumed(url)
    assert all(d.consumed > 0 for d in drained), [d.consumed for d in drained]
    assert consumed >= len(events)  # and whatever else was published meanwhile
    seen = {subject: set(orjson.loads(body)["seen"]) for subject, body in rows}
    assert any(s.startswith("station:") for s in expected)
    for subject in expected:  # station ids are shared with other tests' networks: a superset
        assert expected[subject] <= seen.get(subject, set()), subject


def test_a_scorer_killed_mid_stream_and_restarted_loses_nothing_and_repeats_nothing(
    app: App,
) -> None:
    """`evledger fraud score` killed with SIGKILL in the middle of a population of its own,
    then run again to the end: every record consumed once, every output emitted once, every
    attack found (the batch in flight rolled back with its outputs and offsets)."""
    scenario, events, starts = published(app, "net-fraud-kill", 43)
    publisher = app.publisher()
    group = f"test-fraud-batch-{uuid.uuid4().hex[:8]}"
    with scratch_book(app) as url:
        with postgres.connect(url) as conn:
            postgres.store_offsets(conn, group, starts)
            conn.commit()
        # The scorer reads the stations' places from locations.events, as deployed.
        publisher.publish_many(locations(scenario.network_id, scenario.stations))
        publisher.flush()
        env = {**os.environ, "EVLEDGER_DATABASE_URL": url, "EVLEDGER_METRICS_PORT": "0"}
        command = [sys.executable, "-m", "entrypoints.cli", "fraud", "score", "--group", group]
        scorer = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            while _consumed(url) < len(events) // 3:
                assert scorer.poll() is None, "the scorer exited"
                assert time.monotonic() < deadline, "the scorer did not get going in 120 s"
                time.sleep(0.05)
        finally:
            scorer.kill()
            scorer.wait()
        killed_at = _consumed(url)
        assert killed_at < len(events)  # killed mid-stream
        # Run again until every record is consumed: the group first waits out the killed
        # member's session before it hands its partitions over.
        again = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            deadline = time.monotonic() + 180
            while _consumed(url) < len(events):
                assert again.poll() is None, "the restarted scorer exited"
                assert time.monotonic() < deadline, f"stuck at {_consumed(url)} records"
                time.sleep(0.2)
        finally:
            again.terminate()
            again.wait(timeout=60)
        outputs = _outputs(app, url)
        consumed = _consumed(url)
    assert consumed >= len(events)
    ids = [e.envelope.event_id for e in outputs]
    assert len(ids) == len(set(ids))
    alerts = [e for e in outputs if isinstance(e, ev.FraudAlertRaised)]
    report = measure(scenario.labels, alerts, scenario.sessions, len(events))
    assert report.recall == 1.0 and report.false_alerts == 0, report
