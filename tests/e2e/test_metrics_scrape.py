"""The processors as they are deployed: three ``evledger ... run`` processes over a small
simulated network, each serving /metrics, /livez and /readyz; their counters must equal what
``processing_counts`` and ``rejections`` say (docs/observability.md).

The processes run with consumer groups and a database of their own, their stored offsets set to
the ends of the log first (as the demo does), so they read exactly what is published after.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from connectors import postgres, sessions_store
from entrypoints.bootstrap import App
from entrypoints.simulate import ChargingNetworkFlow
from processors import ledger_projector, sessions, settlement
from tests.e2e.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
SESSIONS = 40


@dataclass
class Running:
    kind: str
    group: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError as exc:
            return 0, str(exc)

    def samples(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        status, text = self.get("/metrics")
        assert status == 200, f"{self.kind}: /metrics answered {status}: {text[:300]}"
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }


@pytest.fixture
def pipeline(app: App, tmp_path: Path) -> Iterator[tuple[str, list[Running]]]:
    """The sessions processor, the settlement connector and the ledger projector, each in its
    own process on a scratch database, started at the current ends of their topics."""
    suffix = uuid.uuid4().hex[:8]
    database = f"evledger_test_metrics_{suffix}"
    url = postgres.create_database(app.database_url, database)
    kinds = [
        ("sessions", sessions.TOPICS, ["sessions", "run"]),
        ("settlement", (settlement.TOPIC,), ["settlement", "run"]),
        ("ledger", ledger_projector.TOPICS, ["ledger", "run", "--database-url", url]),
    ]
    probe = app.consumer(f"probe-{suffix}")
    ends = probe.end_offsets(sorted({t for _, topics, _ in kinds for t in topics}))
    probe.close()
    running: list[Running] = []
    try:
        with postgres.connect(url) as conn:
            for kind, topics, _ in kinds:
                group = f"test-metrics-{kind}-{suffix}"
                start = {k: v for k, v in ends.items() if k[0] in topics}
                postgres.store_offsets(conn, group, start)
            conn.commit()
        for kind, _, command in kinds:
            group = f"test-metrics-{kind}-{suffix}"
            port = free_port()
            env = {
                **os.environ,
                "EVLEDGER_DATABASE_URL": url,
                "EVLEDGER_METRICS_PORT": str(port),
                "EVLEDGER_LOG_FORMAT": "json",
            }
            log = tmp_path / f"{kind}.log"
            process = subprocess.Popen(
                [sys.executable, "-m", "entrypoints.cli", *command, "--group", group],
                cwd=ROOT,
                env=env,
                stdout=log.open("wb"),
                stderr=subprocess.STDOUT,
            )
            running.append(Running(kind, group, port, process, log))
        yield url, running
    finally:
        for r in running:
            r.process.terminate()
        for r in running:
            try:
                r.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                r.process.kill()
        postgres.drop_database(app.database_url, database)


def counts(url: str) -> dict[str, tuple[int, int, int]]:
    with postgres.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT consumer_group, applied, duplicates, rejected FROM processing_counts"
        ).fetchall()
    return {str(g): (int(a), int(d), int(r)) for g, a, d, r in rows}  # type: ignore[call-overload]


def rejections(url: str, group: str) -> dict[tuple[str, str], int]:
    with postgres.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT topic, reason_code, count(*) FROM rejections WHERE consumer_group = %s"
            " GROUP BY 1, 2",
            (group,),
        ).fetchall()
    return {(str(t), str(c)): int(n) for t, c, n in rows}  # type: ignore[call-overload]


def total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **want: str):  # type: ignore[no-untyped-def]
    """The sum of ``name``'s samples whose labels include ``want``."""
    return sum(
        value
        for (sample, labels), value in samples.items()
        if sample == name and all((k, v) in labels for k, v in want.items())
    )


def wait_until_settled(url: str, running: list[Running], timeout: float = 180.0) -> None:
    """Until every process is ready, its lag is 0 and processing_counts stop moving."""
    deadline = time.monotonic() + timeout
    previous: dict[str, tuple[int, int, int]] | None = None
    while time.monotonic() < deadline:
        for r in running:
            assert r.process.poll() is None, f"{r.kind} exited:\n{r.log.read_text()[-3000:]}"
        now = counts(url)
        ready = all(r.get("/readyz")[0] == 200 for r in running)
        caught_up = ready and all(
            total(r.samples(), "evledger_consumer_lag_records", group=r.group) == 0 for r in running
        )
        booked = now.get(running[-1].group, (0, 0, 0))[0] > 0
        if caught_up and booked and now == previous:
            return
        previous = now
        time.sleep(2.0)
    logs = "\n".join(f"--- {r.kind}\n{r.log.read_text()[-2000:]}" for r in running)
    raise AssertionError(f"the pipeline did not settle in {timeout}s: {counts(url)}\n{logs}")


def test_scraped_counters_equal_processing_counts(
    app: App, pipeline: tuple[str, list[Running]]
) -> None:
    url, running = pipeline
    flow = ChargingNetworkFlow(app.settings.network_id, seed=14)
    with postgres.connect(url) as conn:
        for station_id, key in flow.meter_keys().items():
            sessions_store.register_meter_key(conn, station_id, key, "test meter")
        conn.commit()
    publisher = app.publisher()
    publisher.publish_many(flow.tariffs())
    publisher.flush()
    time.sleep(3.0)  # the tariff is known before the first session starts, as in the demo
    publisher.publish_many(flow.sessions(SESSIONS))
    publisher.produce_bytes("sessions.events", b"not avro at all", b"bad-1")
    publisher.produce_bytes("sessions.events", b"\x00\x7f\xff\xff\xf0garbage-body", b"bad-2")
    publisher.flush()

    wait_until_settled(url, running)

    stored = counts(url)
    for r in running:
        samples = r.samples()
        applied, duplicates, rejected = stored[r.group]
        seen = {
            "applied": total(samples, "evledger_events_applied_total", group=r.group),
            "duplicates": total(samples, "evledger_events_duplicate_total", group=r.group),
            "rejected": total(samples, "evledger_events_rejected_total", group=r.group),
            "consumed": total(samples, "evledger_events_consumed_total", group=r.group),
        }
        expected = {
            "applied": applied,
            "duplicates": duplicates,
            "rejected": rejected,
            "consumed": applied + duplicates + rejected,
        }
        assert seen == expected, f"{r.kind}: /metrics {seen} != processing_counts {expected}"
        by_reason = {
            (dict(labels)["topic"], dict(labels)["reason"]): value
            for (name, labels), value in samples.items()
            if name == "evledger_events_rejected_total" and ("group", r.group) in labels
        }
        assert by_reason == rejections(url, r.group), r.kind
        assert total(samples, "evledger_batch_duration_seconds_count", group=r.group) > 0
        assert r.get("/livez")[0] == 200
        status, body = r.get("/readyz")
        assert status == 200 and '"status": "ok"' in body, body
        assert total(samples, "evledger_database_up") == 1

    sessions_run, settlement_run, ledger_run = running
    assert stored[sessions_run.group][2] >= 2  # the two malformed records, by reason
    assert stored[ledger_run.group][0] > 0
    samples = settlement_run.samples()
    calls = total(samples, "evledger_provider_call_duration_seconds_count", provider="sandbox")
    assert calls > 0
    assert total(samples, "evledger_circuit_breaker_state", provider="sandbox", state="closed") == 1
    # the trial balance of what the ledger booked: every entry balanced (the database gauges
    # are read at most every 5 s, so the first scrapes may predate the first entries)
    deadline = time.monotonic() + 15.0
    while True:
        differences = [
            value
            for (name, _), value in ledger_run.samples().items()
            if name == "evledger_trial_balance_difference_minor_units"
        ]
        if differences or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    assert differences and all(v == 0 for v in differences)
    # one JSON object per line, with the processor's group on the lines of its loop
    lines = [line for line in ledger_run.log.read_text().splitlines() if line.startswith("{")]
    assert lines and '"logger": "evledger.telemetry"' in lines[0]
