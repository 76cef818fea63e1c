"""``evledger ingest serve --workers 2`` as an operator runs it: two worker processes share the
port, each builds its app from the environment, and between them they accept a batch from each
of several clients, each event once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psutil

from connectors import keys_store, postgres
from entrypoints.bootstrap import App
from tests.e2e.conftest import free_port
from tests.integration.test_ingest import authorized

ROOT = Path(__file__).resolve().parents[2]
NETWORK = f"net-workers-{uuid.uuid4().hex[:8]}"


def test_two_workers_share_the_port_and_accept_each_event_once(app: App, tmp_path: Path) -> None:
    name = f"evledger_test_workers_{uuid.uuid4().hex[:8]}"
    url = postgres.create_database(app.database_url, name)
    port = free_port()
    log = tmp_path / "ingest.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "entrypoints.cli", "ingest", "serve", "--port", str(port),
         "--workers", "2"],
        cwd=ROOT, env={**os.environ, "EVLEDGER_DATABASE_URL": url},
        stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        with postgres.connect(url, autocommit=True) as conn:
            new, _ = keys_store.create(conn, NETWORK, ["publish"], actor="tests")
        headers = {"Authorization": f"Bearer {new.token}"}
        deadline = time.monotonic() + 60
        while True:  # both workers build their apps (a producer, a pool) before answering
            try:
                if httpx.get(f"http://127.0.0.1:{port}/livez", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, "ingest serve --workers 2 did not answer in 60 s"
            time.sleep(0.3)
        workers = psutil.Process(process.pid).children(recursive=True)
        assert len([w for w in workers if "spawn_main" in " ".join(w.cmdline())]) == 2

        batches = [[authorized(2500, NETWORK) for _ in range(20)] for _ in range(6)]

        def send(batch: list[dict[str, Any]]) -> list[str]:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers) as client:
                first = client.post("/v1/events/batch", json={"events": batch}, timeout=30)
                again = client.post("/v1/events/batch", json={"events": batch}, timeout=30)
            assert first.status_code == again.status_code == 200, first.text[:300]
            statuses = [r["status"] for r in first.json()["results"]]
            return statuses + [r["status"] for r in again.json()["results"]]

        with ThreadPoolExecutor(3) as pool:
            answers = list(pool.map(send, batches))
        assert all(a == ["accepted"] * 20 + ["duplicate"] * 20 for a in answers)
        with postgres.connect(url, autocommit=True) as conn:
            kept = conn.execute("SELECT count(*) FROM ingest_accepted").fetchone()
        assert kept == (120,)
    finally:
        process.terminate()
        process.wait(timeout=30)
        postgres.drop_database(app.database_url, name)
