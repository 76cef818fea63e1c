"""The fraud processor on the real broker: scripted attacks raise alerts while the normal
population around them raises none, and a worker killed with ``kill -9`` (its disk lost too)
comes back with its windows restored from the changelog and without a second alert of another
id for the same input."""

from __future__ import annotations

import re
import shutil
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from entrypoints.bootstrap import App
from entrypoints.fraud_evaluate import evaluate_on_broker
from entrypoints.fraud_scenario import FraudScenario
from entrypoints.fraud_workers import FraudWorkers
from entrypoints.simulate_places import locations
from ledger import events as ev


def test_scripted_attacks_alert_and_the_normal_population_stays_quiet(
    app: App, tmp_path: Path
) -> None:
    scenario = FraudScenario(f"test-fraud-{uuid.uuid4().hex[:8]}", sessions=600, seed=11,
                             attacks_each=1)  # fmt: skip
    report = evaluate_on_broker(app, scenario, log=tmp_path / "workers.log", timeout=300)
    assert report.attacks == 6
    assert report.false_alerts == 0, report.false_subjects
    assert report.detected == report.attacks, report.by_attack


def alerts_of(run: FraudWorkers, subject: str) -> list[ev.FraudAlertRaised]:
    return [a for a in run.alerts() if a.subject == subject]


def wait_for_alert(run: FraudWorkers, subject: str, timeout: float = 120) -> None:
    consumer = run.app.consumer(f"{run.app_id}-watch", **{"auto.offset.reset": "earliest"})
    consumer.subscribe([run.scores_topic])
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for record in consumer.poll(100, 0.2):
                if (
                    isinstance(record.event, ev.FraudAlertRaised)
                    and record.event.subject == subject
                ):
                    return
    finally:
        consumer.close()
    raise AssertionError(f"no alert for {subject} in {timeout}s")


def test_kill_9_loses_no_window_state_and_repeats_no_alert_under_a_new_id(
    app: App, tmp_path: Path
) -> None:
    scenario = FraudScenario(f"test-kill-{uuid.uuid4().hex[:8]}", sessions=100, seed=5)
    at = datetime.now(UTC) - timedelta(hours=2)
    first: list[Any] = list(scenario.card_testing(at))
    second: list[Any] = list(scenario.card_testing(at + timedelta(minutes=30)))
    station_1, station_2 = (label.subjects[0] for label in scenario.labels)
    assert station_1 != station_2 or first != second
    run = FraudWorkers.evaluation(app, f"kill-{uuid.uuid4().hex[:8]}")
    log = tmp_path / "workers.log"
    try:
        run.create_topics()
        run.publish(locations(scenario.network_id, scenario.stations))
        run.start_workers(log)
        run.wait_assigned(180)

        # Half a burst, committed; then the worker dies with its disk: the other half must
        # meet the first in the window restored from the changelog.
        run.publish(first[:6])
        run.wait(120)
        run.kill()
        shutil.rmtree(run.state_dir)
        run.start_workers(log)
        run.publish(first[6:])
        run.wait(240)
        raised = alerts_of(run, station_1)
        assert len({a.envelope.event_id for a in raised}) == 1
        # It needs more attempts than the second half holds: the first half came back.
        attempts = re.search(r"attempts=(\d+)", raised[0].reason)
        assert attempts is not None and int(attempts.group(1)) > 6, raised[0].reason

        # A whole burst; the worker dies right after its alert, before it commits: the inputs
        # come again and the alert with them, under the same id.
        run.publish(second)
        wait_for_alert(run, station_2)
        run.kill()
        run.start_workers(log)
        run.wait(240)
        again = alerts_of(run, station_2)
        assert len({a.envelope.event_id for a in again}) == 1
        per_input = {(a.subject, a.input_event_id, a.envelope.event_id) for a in run.alerts()}
        assert len({(s, i) for s, i, _ in per_input}) == len(per_input)
    finally:
        run.close()
