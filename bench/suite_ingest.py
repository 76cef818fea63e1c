"""Ingest suite: events accepted through the HTTP API (``POST /v1/events/batch`` and single
``POST /v1/events``), as ratios to the SDK's ``publish_many`` of the same kind of events measured
in the same run, each flushed per request as the API does.

The API runs in uvicorn in a process of its own on a local port (as ``evledger ingest serve``),
the client is httpx with keep-alive and requests encoded beforehand; every event is new (unique
ids), so each is parsed, checked, looked up, published, flushed and recorded. All events go to
scratch ``bench.`` topics. Measured twice: one worker and one client sending request after request
(the API's cost per event), and ``--workers 2`` with four clients at once (a service with several
upstream systems; one Python process uses about one core, and this machine has two, shared with
Kafka, PostgreSQL and the client). Five rounds, each the SDK and both HTTP set-ups back to back;
each ratio is the median of the rounds' own ratios, its range in the note. The SDK publishes five
times the events of an HTTP run, so the two are timed over windows of similar length.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
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
CLIENTS = 4
ROUNDS = 5
JSON_TYPE = {"Content-Type": "application/json"}
NETWORK = "bench-network"


ROOT = Path(__file__).resolve().parents[1]
_SERVE = """
import sys, uvicorn
port, workers = int(sys.argv[1]), int(sys.argv[2])
uvicorn.run("bench.suite_ingest:bench_app", factory=True, workers=workers, host="127.0.0.1",
            port=port, log_level="error")
"""


def bench_app() -> Any:
    """The ingest API of a bench run, in each uvicorn worker: the bench database and scratch
    topic come from the environment the suite sets."""
    from entrypoints.bootstrap import bootstrap
    from entrypoints.ingest_app import create_ingest_app

    url, topic = os.environ["BENCH_INGEST_DATABASE_URL"], os.environ["BENCH_INGEST_TOPIC"]
    return create_ingest_app(bootstrap(), url, topic=topic)


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
    n_batch, n_sdk, n_single = ctx.n(40_000), ctx.n(200_000), ctx.n(2_000)
    topic = f"bench.ingest.{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    for future in admin.create_topics([NewTopic(topic, 6, 1)]).values():
        future.result()
    name = f"bench_ingest_{uuid.uuid4().hex[:8]}"
    url = postgres.create_database(app.database_url, name)
    servers: list[subprocess.Popen[bytes]] = []
    try:
        with postgres.connect(url, autocommit=True) as conn:
            new, _ = keys_store.create(conn, NETWORK, ["publish"], actor="bench")
        env = {**os.environ, "PYTHONPATH": str(ROOT), "BENCH_INGEST_DATABASE_URL": url,
               "BENCH_INGEST_TOPIC": topic}  # fmt: skip

        def serve(workers: int) -> int:
            # The API in processes of its own, as `evledger ingest serve` runs: the client's
            # work (encoding requests, reading answers) does not share their interpreters.
            port = free_port()
            server = subprocess.Popen([sys.executable, "-c", _SERVE, str(port), str(workers)],
                                      cwd=ROOT, env=env)  # fmt: skip
            servers.append(server)
            _wait_for(port, server)
            return port

        def connect(port: int) -> httpx.Client:
            return httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60,
                                headers={"Authorization": f"Bearer {new.token}"})  # fmt: skip

        client = connect(serve(1))
        pair = [connect(port) for port in [serve(2)] * CLIENTS]

        publisher = app.publisher()
        warm = typical_events(BATCH)
        publisher.publish_many(warm, topic=topic)
        publisher.flush()
        for c in [client, *pair]:
            c.post("/v1/events/batch", json={"events": [to_document(e) for e in
                                                    typical_events(BATCH)]})  # fmt: skip

        def sdk() -> float:
            # Five times the events of an HTTP run: the SDK is that much faster, and a window
            # of a third of a second is too short to time on a shared machine.
            events = typical_events(n_sdk)
            start = time.perf_counter()
            for i in range(0, n_sdk, BATCH):
                publisher.publish_many(events[i : i + BATCH], topic=topic)
                publisher.flush()
            return n_sdk / (time.perf_counter() - start)

        def http_batches(clients: list[httpx.Client]) -> tuple[float, list[float]]:
            docs = [to_document(e) for e in typical_events(n_batch)]
            bodies = [
                orjson.dumps({"events": docs[i : i + BATCH]}) for i in range(0, n_batch, BATCH)
            ]
            latencies: list[float] = []

            def send(k: int) -> None:  # client k sends every len(clients)-th request
                for body in bodies[k :: len(clients)]:  # encoded beforehand: not the API's work
                    t = time.perf_counter()
                    answer = clients[k].post("/v1/events/batch", content=body, headers=JSON_TYPE)
                    latencies.append(time.perf_counter() - t)
                    result: dict[str, Any] = orjson.loads(answer.content)
                    if answer.status_code != 200 or result["rejected"] or result["duplicates"]:
                        raise RuntimeError(f"ingest refused a bench batch: {answer.text[:300]}")

            start = time.perf_counter()
            with ThreadPoolExecutor(len(clients)) as pool:
                list(pool.map(send, range(len(clients))))
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

        # Five rounds, each the SDK then both HTTP set-ups back to back, so drift on a shared
        # machine hits all three; the figure is the median of each round's own ratios.
        rounds = []
        for _ in range(ROUNDS):
            sdk_rate = sdk()
            rounds.append((sdk_rate, http_batches([client]), http_batches(pair)))
        single_rate, single_lat = http_single()
        for c in [client, *pair]:
            c.close()
    finally:
        for server in servers:
            server.terminate()  # uvicorn stops its workers on SIGTERM
            server.wait(timeout=30)
        postgres.drop_database(app.database_url, name)
        admin.delete_topics([topic])

    sdk_rate = statistics.median(r[0] for r in rounds)
    baseline = Metric("sdk_publish_many_flushed_per_500", sdk_rate, "events/s",
                      note=f"the SDK, 500 events per publish_many + flush; median of {ROUNDS} "
                      "rounds")  # fmt: skip
    one = _paired(
        "http_batch_accepted",
        [(r[0], r[1][0]) for r in rounds],
        baseline,
        f"POST /v1/events/batch, {BATCH} per request, one worker, one client",
    )
    two = _paired(
        "http_batch_accepted_2_workers",
        [(r[0], r[2][0]) for r in rounds],
        baseline,
        f"--workers 2, {CLIENTS} clients at once, {BATCH} per request; target >= 0.25x",
    )
    return [
        baseline,
        one,
        Metric("http_batch_p99_latency", percentile([t for r in rounds for t in r[1][1]], 99)
               * 1000, "ms", note=f"per request of {BATCH} events, all rounds"),
        two,
        Metric("http_batch_2_workers_p99_latency", percentile([t for r in rounds
               for t in r[2][1]], 99) * 1000, "ms",
               note=f"per request of {BATCH} events, {CLIENTS} clients at once, all rounds"),
        Metric.against("http_single_accepted", single_rate, "events/s", baseline,
                       note="POST /v1/events, one event per request (req/s)"),
        Metric("http_single_p99_latency", percentile(single_lat, 99) * 1000, "ms",
               note="per request, keep-alive"),
    ]  # fmt: skip


def _paired(name: str, pairs: list[tuple[float, float]], baseline: Metric, note: str) -> Metric:
    """The median rate of the rounds, and as its ratio the median of each round's own ratio to
    the SDK of that round (with their range in the note): robust to a round the machine slowed."""
    ratios = sorted(http / sdk for sdk, http in pairs)
    return Metric(name, statistics.median(http for _, http in pairs), "events/s",
                  baseline.metric, baseline.value, statistics.median(ratios),
                  f"{note}; median of {len(pairs)} paired rounds, ratios "
                  f"{ratios[0]:.2f}-{ratios[-1]:.2f}")  # fmt: skip
