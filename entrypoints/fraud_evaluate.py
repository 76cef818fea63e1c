"""``evledger fraud evaluate``: how well the rules find the scripted attacks of a labelled
population (``entrypoints.fraud_scenario``) and how quiet they stay on the normal traffic.

On the broker (the default) the population goes to topics of its own (``bench.fraud-<run>.*``)
and fraud workers under an app id of their own score it, so nothing of it reaches the event
log or the production consumer groups. ``offline`` runs the same rules in this process."""

from __future__ import annotations

import json
import subprocess  # nosec B404  # the evaluation starts fraud workers: evledger itself
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from entrypoints.bootstrap import App
from entrypoints.cli_fraud import WORKER_COMMAND
from entrypoints.fraud_scenario import ATTACKS, FraudScenario, Label
from entrypoints.simulate_places import locations
from ledger import events as ev
from ledger.errors import InfrastructureError
from ledger.fraud.engine import SubjectState, score
from ledger.fraud.intake import (
    Place,
    observe_cdr,
    observe_payment,
    observe_session,
    payment_facts,
    places_of,
)
from ledger.fraud.observations import subjects_of
from ledger.fraud.outputs import outputs
from ledger.fraud.policy import Policies
from processors.fraud.app import SOURCES
from schemas.topics import TOPIC_OF


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
    """The alerts the rules raise on ``events`` in this process: the fraud app's two stages
    with dictionaries for its tables, in the order given."""
    payments: dict[str, Any] = {}
    sessions: dict[str, str] = {}
    places: dict[str, Place] = {}
    states: dict[str, SubjectState] = {}
    alerts: list[ev.FraudAlertRaised] = []
    for event in events:
        if isinstance(event, ev.LocationPublished):
            places.update(places_of(event))
            continue
        if isinstance(event, ev.PaymentAuthorized | ev.AuthorizationFailed):
            payments[event.payment_id] = payment_facts(event)
        if isinstance(event, ev.SessionStarted) and event.token_uid:
            sessions[event.session_id] = event.token_uid
        obs = (
            observe_payment(event, payments.get)
            or observe_session(event, sessions.get, places.get)
            or observe_cdr(event, places.get)
        )
        if obs is None:
            continue
        for subject in subjects_of(obs):
            policy = policies.of(obs.network_id)
            verdict, states[subject] = score(
                subject, states.get(subject, SubjectState()), obs, policy
            )
            alerts += [
                e for e in outputs(subject, obs, verdict, policy)
                if isinstance(e, ev.FraudAlertRaised)
            ]  # fmt: skip
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


class EvaluationTimeout(InfrastructureError):
    code = "FRAUD_EVALUATION_TIMEOUT"


@dataclass
class BrokerRun:
    """One evaluation's own topics and fraud app on the broker; ``close`` removes them."""

    app: App
    run_id: str
    workers: int = 1
    policy: Path | None = None
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def prefix(self) -> str:
        return f"bench.fraud-{self.run_id}."

    @property
    def app_id(self) -> str:
        return f"evledger-fraud-eval-{self.run_id}"

    @property
    def sources(self) -> list[str]:
        return [self.prefix + name for name in SOURCES]

    @property
    def scores_topic(self) -> str:
        return self.prefix + "fraud.scores"

    def admin(self) -> AdminClient:
        return AdminClient({"bootstrap.servers": self.app.settings.bootstrap_servers})

    def create_topics(self) -> None:
        names = [*self.sources, self.scores_topic, self.prefix + "settlement.commands"]
        partitions = self.app.settings.partitions
        admin = self.admin()  # kept alive until the futures are done
        futures = admin.create_topics([NewTopic(n, partitions, 1) for n in names])
        for future in futures.values():
            future.result()

    def publish(self, events: Iterable[Any]) -> int:
        publisher = self.app.publisher()
        count = 0
        for event in events:
            publisher.publish(event, topic=self.prefix + TOPIC_OF[type(event)])
            count += 1
        publisher.flush()
        return count

    def start_workers(self, log: Path) -> None:
        command = [*WORKER_COMMAND, "fraud", "run", "--workers", str(self.workers),
                   "--app-id", self.app_id, "--topic-prefix", self.prefix,
                   *(["--policy", str(self.policy)] if self.policy else [])]  # fmt: skip
        with log.open("ab") as out:
            self.processes.append(
                subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)  # nosec B603
            )

    def kill(self) -> None:
        """``kill -9`` every worker: no shutdown, no last commit."""
        for process in self.processes:
            process.kill()
            process.wait(timeout=30)
        self.processes.clear()

    @property
    def state_dir(self) -> Path:
        """Where this run's workers keep their RocksDB tables."""
        return self.app.settings.state_dir / "fraud" / self.app_id

    def caught_up(self) -> bool:
        """True when the app's group has committed every record of the sources and of its
        observations topic (stage two)."""
        topics = [*self.sources, f"{self.app_id}-observations"]
        probe = self.app.consumer(f"{self.app_id}-probe")
        try:
            metadata = probe.consumer.list_topics(timeout=10)
            if any(t not in metadata.topics for t in topics):
                return False
            ends = probe.end_offsets(topics)
        finally:
            probe.close()
        watcher = Consumer({"bootstrap.servers": self.app.settings.bootstrap_servers,
                            "group.id": self.app_id, "enable.auto.commit": False})  # fmt: skip
        try:
            committed = watcher.committed([TopicPartition(t, p) for t, p in ends], timeout=10)
        finally:
            watcher.close()
        done = {(tp.topic, tp.partition): max(tp.offset, 0) for tp in committed}
        return all(done.get(k, 0) >= end for k, end in ends.items())

    def wait(self, timeout: float, *, interval: float = 1.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.caught_up():
            if any(p.poll() is not None for p in self.processes):
                raise EvaluationTimeout("a fraud worker exited; see its log", retriable=True)
            if time.monotonic() > deadline:
                raise EvaluationTimeout(
                    f"the fraud workers did not catch up in {timeout:.0f}s", retriable=True
                )
            time.sleep(interval)

    def alerts(self) -> list[ev.FraudAlertRaised]:
        consumer = self.app.consumer(f"{self.app_id}-reader", **{"auto.offset.reset": "earliest"})
        try:
            ends = consumer.end_offsets([self.scores_topic])
            consumer.subscribe([self.scores_topic])
            got: dict[tuple[str, int], int] = {}
            found: list[ev.FraudAlertRaised] = []
            deadline = time.monotonic() + 60
            while any(got.get(k, 0) < end for k, end in ends.items() if end):
                if time.monotonic() > deadline:
                    raise EvaluationTimeout(
                        "could not read the evaluation's fraud.scores", retriable=True
                    )
                for record in consumer.poll(1000, 1.0):
                    got[(record.topic, record.partition)] = record.offset + 1
                    if isinstance(record.event, ev.FraudAlertRaised):
                        found.append(record.event)
            return found
        finally:
            consumer.close()

    def close(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        admin = self.admin()
        names = [t for t in admin.list_topics(timeout=10).topics
                 if t.startswith(self.prefix) or t.startswith(self.app_id)]  # fmt: skip
        if names:
            for future in admin.delete_topics(names).values():
                future.result()


def evaluate_on_broker(
    app: App, scenario: FraudScenario, *, workers: int = 1, policy: Path | None = None,
    timeout: float = 900.0, log: Path,
) -> Report:  # fmt: skip
    """Publish ``scenario`` to an evaluation's own topics, let ``workers`` fraud workers score
    it, and measure their alerts. ``seconds`` is from the first published event of the
    population to the workers' last commit (they are started and assigned before)."""
    run = BrokerRun(app, f"{int(time.time())}-{scenario.seed}", workers, policy)
    try:
        run.create_topics()
        run.publish(locations(scenario.network_id, scenario.stations))
        run.start_workers(log)
        run.wait(timeout=180)  # up, assigned, the locations read
        started = time.perf_counter()
        count = run.publish(scenario.events())
        run.wait(timeout)
        seconds = time.perf_counter() - started
        report = measure(scenario.labels, run.alerts(), scenario.sessions, count)
    finally:
        run.close()
    report.seconds = round(seconds, 2)
    return report
