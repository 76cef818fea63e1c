"""kill -9 the ledger projector mid-stream, repeatedly: the book still equals the recomputation.

The projector runs as a real subprocess (``python -m entrypoints.cli ledger run``) over ~20k
events; it is killed with SIGKILL five times at random points of its progress (between and
inside batch transactions) and restarted. Offsets are stored with the effects, so each restart
resumes exactly where the last commit left it: every event is applied exactly once.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from connectors import finance
from entrypoints.bootstrap import App
from processors.ledger_projector import TOPICS
from tests.integration.conftest import end_offsets
from tests.integration.test_ledger_projector import (
    assert_projection_matches,
    publish,
    scratch_book,
    start_group,
    stored_offsets,
)
from tests.ledger_oracle import mixed_stream, read_range, recompute

ROOT = Path(__file__).resolve().parents[2]
KILLS = 5


@pytest.fixture
def book_db(app: App) -> Iterator[str]:
    with scratch_book(app) as url:
        yield url


def projector(
    url: str, group: str, log: Path, *extra: str, instance: int = 0
) -> subprocess.Popen[bytes]:
    """Start one projector process; its log goes to ``log`` (a pipe nobody reads would fill
    up with rejection warnings and block it)."""
    command = [sys.executable, "-m", "entrypoints.cli", "ledger", "run", "--database-url", url,
               "--group", group, "--batch-size", "700", "--instance-id", f"{group}-{instance}",
               *extra]  # fmt: skip
    with open(log, "ab") as out:
        return subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)


def progress(url: str, group: str) -> int:
    """Records the group has finished with (applied, duplicates and rejected)."""
    with psycopg.connect(url) as conn:
        return sum(c.consumed for c in finance.counts(conn, group))


def test_kill_9_repeatedly_then_the_book_matches(app: App, book_db: str, tmp_path: Path) -> None:
    log = tmp_path / "projector.log"
    network = f"net-{uuid.uuid4().hex[:8]}"
    stream = mixed_stream(network, payments_count=5200, seed=99)
    total = len(stream.phase1)
    assert total >= 20_000
    group, starts = start_group(app, book_db)
    publish(app, stream.phase1)

    rng = random.Random(2026)
    thresholds = sorted(rng.sample(range(total // 20, total * 9 // 10), KILLS))
    killed_at: list[int] = []
    for threshold in thresholds:
        proc = projector(book_db, group, log)
        try:
            while (done := progress(book_db, group)) < threshold:
                assert proc.poll() is None, log.read_text()[-3000:]
                time.sleep(0.02)
            time.sleep(rng.random() * 0.15)  # land anywhere: inside or between transactions
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        killed_at.append(done)
        assert proc.returncode == -signal.SIGKILL
    assert len(killed_at) == KILLS and killed_at[-1] < total, f"killed after the end: {killed_at}"

    # Drain runs stop once they have read up to the ends they saw when they started. Phase 2
    # (provider events about phase 1's payments) is published only after phase 1 is booked: Kafka
    # orders nothing across topics, and an external refund that overtakes its payment is
    # rejected (UNKNOWN_PAYMENT, re-drive later), which the recomputation cannot foresee.
    for phase in (None, stream.phase2):
        if phase is not None:
            publish(app, phase)
        run = projector(book_db, group, log, "--drain")
        assert run.wait() == 0, log.read_text()[-3000:]

    assert_book_is_the_log(app, book_db, group, starts, stream)


def assert_book_is_the_log(
    app: App, book_db: str, group: str, starts: dict[tuple[str, int], int], stream: Any
) -> None:
    """The book equals the recomputation from what the group read of the log, every event of
    ``stream`` among it, the expected ones rejected with their codes."""
    records = read_range(app, starts, stored_offsets(book_db, group))
    ours = {e.envelope.event_id for e in [*stream.phase1, *stream.phase2]}
    assert ours <= {r.event_id for r in records}
    book = recompute(records)
    assert_projection_matches(book_db, group, book)
    for event_id, code in stream.expect_rejected.items():
        assert book.rejections[event_id] == code


def read_up_to(url: str, group: str, ends: dict[tuple[str, int], int]) -> bool:
    """Whether the group's stored offsets have reached ``ends`` on every partition."""
    stored = stored_offsets(url, group)
    return all(stored.get(tp, 0) >= end for tp, end in ends.items())


def test_two_instances_share_the_group_and_the_hot_accounts(
    app: App, book_db: str, tmp_path: Path
) -> None:
    """Two processes in one group book concurrently into the same hot balance rows; external
    refunds on provider.events lock payments owned by the other instance's partitions."""
    log = tmp_path / "projector.log"
    stream = mixed_stream(f"net-{uuid.uuid4().hex[:8]}", payments_count=1500, seed=21)
    group, starts = start_group(app, book_db)
    procs = [projector(book_db, group, log, instance=i) for i in range(2)]
    try:
        for phase in (stream.phase1, stream.phase2):
            publish(app, phase)
            ends = end_offsets(app, list(TOPICS))
            while not read_up_to(book_db, group, ends):
                assert all(p.poll() is None for p in procs), log.read_text()[-3000:]
                time.sleep(0.05)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
            p.wait()
    records = read_range(app, starts, stored_offsets(book_db, group))
    book = recompute(records)
    assert_projection_matches(book_db, group, book)
    for event_id, code in stream.expect_rejected.items():
        assert book.rejections[event_id] == code
