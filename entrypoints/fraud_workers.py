"""Fraud workers started and watched by another process: ``evledger fraud evaluate``, the
``fraud`` benchmark, the demo and the broker tests start them, wait until they have scored what
was published, read their alerts, and clean up."""

from __future__ import annotations

import subprocess  # nosec B404  # fraud workers are evledger itself
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from entrypoints.bootstrap import App
from ledger import events as ev
from ledger.errors import InfrastructureError
from processors.fraud.app import LOCATIONS, SOURCES
from schemas.topics import BENCH_PREFIX, TOPIC_OF


class EvaluationTimeout(InfrastructureError):
    code = "FRAUD_EVALUATION_TIMEOUT"


WORKER_COMMAND = (sys.executable, "-m", "entrypoints.cli")
"""How a fraud worker is started (this interpreter, whatever started this process)."""


@dataclass
class FraudWorkers:
    """Fraud workers of one app id started by this process (an evaluation, a benchmark, the
    demo), reading ``<prefix><topic>``: an evaluation's own ``bench.`` topics, or the event log
    itself with an empty prefix. ``close`` stops them and removes the app's internal topics
    (and the ``bench.`` topics of an evaluation)."""

    app: App
    app_id: str
    prefix: str = ""
    workers: int = 1
    policy: Path | None = None
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @classmethod
    def evaluation(
        cls, app: App, run_id: str, workers: int = 1, policy: Path | None = None
    ) -> FraudWorkers:
        """Workers with topics of their own: nothing reaches the event log."""
        return cls(app, f"evledger-fraud-eval-{run_id}", f"{BENCH_PREFIX}fraud-{run_id}.",
                   workers, policy)  # fmt: skip

    @property
    def sources(self) -> list[str]:
        return [self.prefix + name for name in SOURCES]

    @property
    def scores_topic(self) -> str:
        return self.prefix + "fraud.scores"

    def admin(self) -> AdminClient:
        return AdminClient(self.app.settings.kafka_client())

    def start_at_end(self) -> None:
        """Commit the app's group at today's end of its sources, so its workers score only
        what is published from now on (the demo, on the shared event log)."""
        probe = self.app.consumer(f"{self.app_id}-probe")
        try:
            ends = probe.end_offsets(self.sources)
        finally:
            probe.close()
        group = Consumer({**self.app.settings.kafka_client(), "group.id": self.app_id,
                          "enable.auto.commit": False})  # fmt: skip
        try:
            group.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in ends.items()],
                         asynchronous=False)  # fmt: skip
        finally:
            group.close()

    def create_topics(self) -> None:
        names = [*self.sources, self.prefix + LOCATIONS, self.scores_topic,
                 self.prefix + "settlement.commands"]  # fmt: skip
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

    def wait_assigned(self, timeout: float = 180.0) -> None:
        """Wait until every worker has joined the group and it is stable (partitions handed
        out): what is published from then on is scored, not waited for."""
        admin = self.admin()
        deadline = time.monotonic() + timeout
        while True:
            if any(p.poll() is not None for p in self.processes):
                raise EvaluationTimeout("a fraud worker exited; see its log", retriable=False)
            group = admin.describe_consumer_groups([self.app_id])[self.app_id].result()
            assigned = [m for m in group.members if m.assignment.topic_partitions]
            topics = {tp.topic for m in assigned for tp in m.assignment.topic_partitions}
            stages = {*self.sources, f"{self.app_id}-observations"}  # both stages run
            if (
                str(group.state).endswith("STABLE")
                and len(assigned) >= self.workers
                and (stages <= topics)
            ):
                return
            if time.monotonic() > deadline:
                raise EvaluationTimeout(f"the fraud workers did not join in {timeout:.0f}s",
                                        retriable=True)  # fmt: skip
            time.sleep(0.5)

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
        watcher = Consumer({**self.app.settings.kafka_client(), "group.id": self.app_id,
                            "enable.auto.commit": False})  # fmt: skip
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
        mine = (
            (self.app_id, self.prefix) if self.prefix.startswith(BENCH_PREFIX) else (self.app_id,)
        )
        names = [t for t in admin.list_topics(timeout=10).topics if t.startswith(mine)]
        if names:
            for future in admin.delete_topics(names).values():
                future.result()
