"""Ingest suite: events accepted through the HTTP API (``POST /v1/events/batch`` and single
``POST /v1/events``), as ratios to the SDK's ``publish_many`` of the same kind of events measured
in the same run, each flushed per request as the API does.

The API runs in uvicorn in a process of its own on a local port (one worker, as ``evledger ingest
serve``), the client is httpx with keep-alive and requests encoded beforehand; every event is new
(unique ids), so each is parsed, checked, looked up, published, flushed and recorded. All events
go to scratch ``bench.`` topics.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from bench.harness import BenchContext, Metric, free_port, percentile
from bench.suite_kafka import typical_events
from connectors import keys_store, postgres
from entrypoints.bootstrap import bootstrap
from schemas.json_events import to_document

BATCH = 500
JSON_TYPE = {"Content-Type": "application/json"}
NETWORK = "bench-network"


ROOT = Path(__file__).resolve().parents[1]
_SERVE = """
import sys, uvicorn
from entrypoints.bootstrap import bootstrap
from entrypoints.ingest_app import create_ingest_app
url, topic, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
api = create_ingest_app(bootstrap(), url, topic=topic)
uvicorn.run(api, host="127.0.0.1", port=port, log_level="error")
"""


def _wait_for(port: int, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the ingest server exited with {server.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the ingest server did not start in 60 s")


def run(ctx: BenchContext) -> list[Metric]:
    settings = ctx.settings
    app = bootstrap(settings)
    n_batch, n_single = ctx.n(40_000), ctx.n(2_000)
    topic = f"bench.ingest.{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    for future in admin.create_topics([NewTopic(topic, 6, 1)]).values():
        future.result()
    name = f"bench_ingest_{uuid.uuid4().hex[:8]}"
    url = postgres.create_database(app.database_url, name)
    server: subprocess.Popen[bytes] | None = None
    try:
        with postgres.connect(url, autocommit=True) as conn:
            new, _ = keys_store.create(conn, NETWORK, ["publish"], actor="bench")
        port = free_port()
        # The API in a process of its own, as `evledger ingest serve` runs: the client's work
        # (encoding requests, reading answers) does not share its interpreter.
        server = subprocess.Popen(
            [sys.executable, "-c", _SERVE, url, topic, str(port)],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        _wait_for(port, server)
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60,
                              headers={"Authorization": f"Bearer {new.token}"})  # fmt: skip

        publisher = app.publisher()
        warm = typical_events(BATCH)
        publisher.publish_many(warm, topic=topic)
        publisher.flush()
        client.post("/v1/events/batch", json={"events": [to_document(e) for e in
                                                         typical_events(BATCH)]})  # fmt: skip

        def sdk() -> float:
            events = typical_events(n_batch)
            start = time.perf_counter()
            for i in range(0, n_batch, BATCH):
                publisher.publish_many(events[i : i + BATCH], topic=topic)
                publisher.flush()
            return n_batch / (time.perf_counter() - start)

        def http_batches() -> tuple[float, list[float]]:
            docs = [to_document(e) for e in typical_events(n_batch)]
            bodies = [
                orjson.dumps({"events": docs[i : i + BATCH]}) for i in range(0, n_batch, BATCH)
            ]
            latencies: list[float] = []
            start = time.perf_counter()
            for body in bodies:  # encoded beforehand: the client's JSON is not the server's work
                t = time.perf_counter()
                answer = client.post("/v1/events/batch", content=body, headers=JSON_TYPE)
                latencies.append(time.perf_counter() - t)
                result: dict[str, Any] = orjson.loads(answer.content)
                if answer.status_code != 200 or result["rejected"] or result["duplicates"]:
                    raise RuntimeError(f"ingest refused a bench batch: {answer.text[:300]}")
            return n_batch / (time.perf_counter() - start), latencies

        def http_single() -> tuple[float, list[float]]:
            docs = [orjson.dumps(to_document(e)) for e in typical_events(n_single)]
            latencies = []
            start = time.perf_counter()
            for doc in docs:
                t = time.perf_counter()
                answer = client.post("/v1/events", content=doc, headers=JSON_TYPE)
                latencies.append(time.perf_counter() - t)
                if answer.status_code != 202:
                    raise RuntimeError(f"ingest refused a bench event: {answer.text[:300]}")
            return n_single / (time.perf_counter() - start), latencies

        # Alternate SDK and HTTP (best of two each), so drift on a shared machine hits both.
        sdk_rate, batch_rate, batch_lat = 0.0, 0.0, []
        for _ in range(2):
            sdk_rate = max(sdk_rate, sdk())
            rate, lat = http_batches()
            if rate > batch_rate:
                batch_rate, batch_lat = rate, lat
        single_rate, single_lat = http_single()
        client.close()
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        postgres.drop_database(app.database_url, name)
        admin.delete_topics([topic])

    baseline = Metric("sdk_publish_many_flushed_per_500", sdk_rate, "events/s",
                      note="the SDK, 500 events per publish_many + flush; best of 2")  # fmt: skip
    return [
        baseline,
        Metric.against("http_batch_accepted", batch_rate, "events/s", baseline,
                       note=f"POST /v1/events/batch, {BATCH} per request; target >= 0.25x"),
        Metric("http_batch_p99_latency", percentile(batch_lat, 99) * 1000, "ms",
               note=f"per request of {BATCH} events"),
        Metric.against("http_single_accepted", single_rate, "events/s", baseline,
                       note="POST /v1/events, one event per request (req/s)"),
        Metric("http_single_p99_latency", percentile(single_lat, 99) * 1000, "ms",
               note="per request, keep-alive"),
    ]  # fmt: skip
