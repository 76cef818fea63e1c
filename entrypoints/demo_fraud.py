"""The demo's fraud side: fraud workers of the demo's own app id scoring the run's traffic on
the event log (from its end at the start of the run), the fraud projector into the demo's
database, and the alerts printed against the attacks the demo injected."""

from __future__ import annotations

import time
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from connectors import fraud_store, postgres
from entrypoints.bootstrap import App
from entrypoints.fraud_scenario import Label
from entrypoints.fraud_workers import EvaluationTimeout, FraudWorkers
from processors.fraud.projector import TOPICS, build_fraud_projector


@dataclass
class DemoFraud:
    app: App
    database_url: str
    console: Console

    def __post_init__(self) -> None:
        self.workers = FraudWorkers(self.app, f"evledger-fraud-demo-{int(time.time())}")

    def start(self, ends: dict[tuple[str, int], int]) -> None:
        """Start a fraud worker at today's end of the log, and the fraud projector's offsets
        in the demo database at the end of fraud.scores (``ends``)."""
        self.workers.start_at_end()
        log = self.app.settings.state_dir / "logs" / "fraud-demo.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        self.workers.start_workers(log)
        self.projector = build_fraud_projector(self.app, database_url=self.database_url)
        with postgres.connect(self.database_url) as conn:
            postgres.store_offsets(
                conn, self.projector.group, {k: v for k, v in ends.items() if k[0] in TOPICS}
            )
            conn.commit()
        self.console.print(f"fraud worker {self.workers.app_id} started (log: {log})")

    def ready(self, timeout: float = 180.0) -> None:
        """Wait until the worker has joined its group and holds its partitions: the stations'
        locations published before are read by then (a session is checked for travel only once
        its station's place is known)."""
        started = time.perf_counter()
        self.workers.wait_assigned(timeout)
        took = time.perf_counter() - started
        self.console.print(f"fraud worker assigned in {took:.1f}s")

    def finish(self, labels: list[Label], timeout: float = 300.0) -> None:
        """Wait for the worker to score everything, project its findings and print them."""
        started = time.perf_counter()
        try:
            self.workers.wait(timeout)
        except EvaluationTimeout as exc:
            self.console.print(f"[red]fraud worker did not finish:[/] {exc}")
        finally:
            self.workers.close()
        stats = self.projector.drain(idle_seconds=1.5)
        self.projector.close()
        self.console.print(
            f"fraud worker caught up {time.perf_counter() - started:.1f}s after the pipeline; "
            f"projected {stats.applied:,} fraud events"
        )
        with postgres.connect(self.database_url) as conn:
            alerts = fraud_store.alerts(conn, None, limit=10_000)
        table = Table(title="fraud alerts (evledger fraud alerts)", title_justify="left")
        for column in ("subject", "Score", "rules", "reason"):
            table.add_column(column, justify="left" if column[0].islower() else "right")
        for a in reversed(alerts):
            table.add_row(a["subject"], f"{a['score']:.2f}", ", ".join(a["rules"]), a["reason"])
        self.console.print(table)
        alerted = {a["subject"] for a in alerts}
        found = [label for label in labels if alerted & set(label.subjects)]
        labelled = {s for label in labels for s in label.subjects}
        other = sorted(alerted - labelled)
        self.console.print(
            f"injected attacks detected: {len(found)} of {len(labels)} "
            f"({', '.join(label.attack for label in found)}); "
            f"alerts on the normal traffic: {len(other)}"
            + (f" ({', '.join(other)})" if other else "")
        )
