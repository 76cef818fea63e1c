"""Fraud suite: events scored per second by the fraud processor (faust-streaming) with one
worker and with two in one group, as ratios to consuming and decoding the same events from the
same topics with the SDK's consumer in the same run.

The population is ``evledger fraud evaluate``'s (normal sessions with meter values, CDRs and
refunds, and scripted attacks) on scratch ``bench.`` topics; the workers are started, assigned
and through the stations' locations before the clock starts, which stops at their last commit
of the sources and of their internal observations topic (``FraudWorkers.wait``)."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

from bench.harness import RESULTS_DIR, BenchContext, Metric
from entrypoints.bootstrap import App, bootstrap
from entrypoints.fraud_evaluate import measure
from entrypoints.fraud_scenario import FraudScenario
from entrypoints.fraud_workers import FraudWorkers
from entrypoints.simulate_places import locations


def _consume_rate(app: App, topics: list[str], count: int) -> float:
    """Consume and decode ``count`` records of ``topics`` from the start, records/s."""
    consumer = app.consumer(f"bench-fraud-raw-{uuid.uuid4()}", **{"auto.offset.reset": "earliest"})
    consumer.subscribe(topics)
    seen, started = 0, 0.0
    deadline = time.monotonic() + 300
    try:
        while seen < count and time.monotonic() < deadline:
            batch = consumer.poll(5000, 1.0)
            if batch and not started:
                started = time.perf_counter()
            seen += len(batch)
        return seen / (time.perf_counter() - started)
    finally:
        consumer.close()


def _scored(app: App, workers: int, sessions: int, log: Path) -> tuple[float, float, str]:
    """(events/s of the workers, events/s of a plain consumer on the same topics, the
    evaluation's one-line summary)."""
    scenario = FraudScenario(f"bench-fraud-{workers}", sessions=sessions, seed=20 + workers)
    run = FraudWorkers.evaluation(app, f"bench{workers}-{uuid.uuid4().hex[:6]}", workers)
    try:
        run.create_topics()
        run.publish(locations(scenario.network_id, scenario.stations))
        run.start_workers(log)
        run.wait_assigned(240)
        started = time.perf_counter()
        count = run.publish(scenario.events())
        run.wait(1800)
        rate = count / (time.perf_counter() - started)
        report = measure(scenario.labels, run.alerts(), scenario.sessions, count)
        raw = _consume_rate(app, run.sources, count)
    finally:
        run.close()
    summary = (
        f"{count:,} events ({sessions:,} sessions, {report.attacks} attacks): recall "
        f"{report.recall:.2f}, precision {report.precision:.2f}, "
        f"{report.false_alerts} false alerts"
    )
    return rate, raw, summary


def run(ctx: BenchContext) -> list[Metric]:
    app = bootstrap(ctx.settings)
    sessions = ctx.n(5000)
    log = app.settings.state_dir / "logs" / "bench-fraud.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    one, raw, summary_1 = _scored(app, 1, sessions, log)
    two, raw_2, summary_2 = _scored(app, 2, sessions, log)
    baseline = Metric("consume_decode_same_topics", max(raw, raw_2), "events/s",
                      note="the SDK's consumer, poll(5000) + Avro decode of the population; "
                           "best of the two runs")  # fmt: skip
    metrics = [
        baseline,
        Metric.against("fraud_1_worker", one, "events/s", baseline, note=summary_1),
        Metric.against("fraud_2_workers", two, "events/s", baseline, note=summary_2),
    ]
    ledger = RESULTS_DIR / "ledger.json"
    if ledger.exists():  # the target: the ledger projector's sustained rate on this machine
        known = {m["metric"]: m for m in json.loads(ledger.read_text())}
        projector = known.get("ledger_projector_1_instance")
        if projector:
            note = "bench/results/ledger.json (an earlier run): the target"
            target = Metric("ledger_projector_1_instance", projector["value"], "events/s",
                            note=note)  # fmt: skip
            metrics.append(target)
            metrics.append(Metric.against("fraud_2_workers_vs_ledger_projector", two,
                                          "events/s", target,
                                          note="target >= 1.0 (not the same run)"))  # fmt: skip
    return metrics
