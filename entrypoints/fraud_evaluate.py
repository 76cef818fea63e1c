"""``evledger fraud evaluate``: how well the rules find the scripted attacks of a labelled
population (``entrypoints.fraud_scenario``) and how quiet they stay on the normal traffic.

On the broker (the default) the population goes to topics of its own (``bench.fraud-<run>.*``)
and fraud workers under an app id of their own score it, so nothing of it reaches the event
log or the production consumer groups. ``offline`` runs the same rules in this process."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from entrypoints.bootstrap import App
from entrypoints.fraud_scenario import ATTACKS, FraudScenario, Label
from entrypoints.fraud_workers import FraudWorkers
from entrypoints.simulate_places import locations
from ledger import events as ev
from ledger.fraud.intake import Place, places_of
from ledger.fraud.policy import Policies
from ledger.fraud.scorer import Memory, judge, observe


@dataclass
class Report:
    """Precision and recall on the labels, false positives on the normal traffic."""

    sessions: int
    events: int
    attacks: int
    detected: int
    alerts: int
    true_alerts: int
    false_alerts: int
    by_attack: dict[str, dict[str, int]] = field(default_factory=dict)
    false_subjects: list[str] = field(default_factory=list)
    seconds: float = 0.0
    mode: str = "broker"

    @property
    def precision(self) -> float:
        return self.true_alerts / self.alerts if self.alerts else 1.0

    @property
    def recall(self) -> float:
        return self.detected / self.attacks if self.attacks else 1.0

    @property
    def false_positives_per_10k_sessions(self) -> float:
        return 10_000 * self.false_alerts / self.sessions

    def to_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "false_positives_per_10k_sessions": round(self.false_positives_per_10k_sessions, 2),
        }


def measure(
    labels: list[Label], alerts: Iterable[ev.FraudAlertRaised], sessions: int, events: int
) -> Report:
    """Match alerts to labels: an alert on a labelled subject is true, any other is false; an
    attack is detected when one of its subjects raised an alert."""
    alerted = Counter(a.subject for a in alerts)
    labelled = {s for label in labels for s in label.subjects}
    true = sum(n for s, n in alerted.items() if s in labelled)
    false_subjects = sorted(s for s in alerted if s not in labelled)
    by_attack: dict[str, dict[str, int]] = {k: {"injected": 0, "detected": 0} for k in ATTACKS}
    detected = 0
    for label in labels:
        hit = any(s in alerted for s in label.subjects)
        by_attack[label.attack]["injected"] += 1
        by_attack[label.attack]["detected"] += int(hit)
        detected += int(hit)
    total = sum(alerted.values())
    return Report(sessions, events, len(labels), detected, total, true, total - true,
                  by_attack, false_subjects)  # fmt: skip


def offline_alerts(events: Iterable[Any], policies: Policies) -> list[ev.FraudAlertRaised]:
    """The alerts the rules raise on ``events`` in this process, in the order given, with the
    memory in dictionaries (``ledger.fraud.scorer``)."""
    memory = Memory()
    places: dict[str, Place] = {}
    alerts: list[ev.FraudAlertRaised] = []
    for event in events:
        if isinstance(event, ev.LocationPublished):
            places.update(places_of(event))
            continue
        obs = observe(event, memory, places.get)
        if obs is not None:
            alerts += [
                e for e in judge(obs, memory, policies) if isinstance(e, ev.FraudAlertRaised)
            ]
    return alerts


def evaluate_offline(scenario: FraudScenario, policies: Policies) -> Report:
    started = time.perf_counter()
    events = [*locations(scenario.network_id, scenario.stations), *scenario.events()]
    report = measure(scenario.labels, offline_alerts(events, policies), scenario.sessions,
                     len(events))  # fmt: skip
    report.seconds = round(time.perf_counter() - started, 2)
    report.mode = "offline"
    return report


def write_report(report: Report, path: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.to_json(), indent=2, sort_keys=True) + "\n")


def evaluate_on_broker(
    app: App, scenario: FraudScenario, *, workers: int = 1, policy: Path | None = None,
    timeout: float = 900.0, log: Path,
) -> Report:  # fmt: skip
    """Publish ``scenario`` to an evaluation's own topics, let ``workers`` fraud workers score
    it, and measure their alerts. ``seconds`` is from the first published event of the
    population to the workers' last commit (they are started and assigned before)."""
    run = FraudWorkers.evaluation(app, f"{int(time.time())}-{scenario.seed}", workers, policy)
    try:
        run.create_topics()
        run.publish(locations(scenario.network_id, scenario.stations))
        run.start_workers(log)
        run.wait_assigned(180)  # up, every worker assigned, the locations read
        started = time.perf_counter()
        count = run.publish(scenario.events())
        run.wait(timeout)
        seconds = time.perf_counter() - started
        report = measure(scenario.labels, run.alerts(), scenario.sessions, count)
    finally:
        run.close()
    report.seconds = round(seconds, 2)
    return report
