"""Instances of the ledger projector join and leave one group mid-stream (cooperative
rebalancing: only the partitions that move stop; static membership: an instance that comes back
under its name takes its partitions back at once; dynamic membership for one that leaves for
good): the book equals the recomputation from the
log, every event applied exactly once.

While ~18k events arrive in slices: one instance starts, a second and a third join, the first
leaves cleanly (SIGTERM), the second is killed (SIGKILL) and comes back under its instance id,
and the rest drain the log."""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from entrypoints.bootstrap import App
from processors.ledger_projector import TOPICS
from tests.integration.conftest import end_offsets
from tests.integration.test_ledger_crash import assert_book_is_the_log, projector, read_up_to
from tests.integration.test_ledger_projector import (
    publish,
    scratch_book,
    start_group,
)
from tests.ledger_oracle import mixed_stream

SLICES = 6


@pytest.fixture
def book_db(app: App) -> Iterator[str]:
    with scratch_book(app) as url:
        yield url


def slices(events: list, n: int) -> list[list]:  # type: ignore[type-arg]
    size = -(-len(events) // n)
    return [events[i : i + size] for i in range(0, len(events), size)]


def test_instances_join_and_leave_mid_stream(app: App, book_db: str, tmp_path: Path) -> None:
    log = tmp_path / "projector.log"
    stream = mixed_stream(f"net-{uuid.uuid4().hex[:8]}", payments_count=1500, seed=33)
    group, starts = start_group(app, book_db)
    # The one that leaves for good is a dynamic member: a static one would hold its partitions
    # until its session expired (45 s).
    running = {0: projector(book_db, group, log, "--no-static", instance=0)}

    def joins(instance: int) -> None:
        running[instance] = projector(book_db, group, log, instance=instance)

    def leaves(instance: int, how: signal.Signals) -> None:
        process = running.pop(instance)
        process.send_signal(how)
        process.wait(timeout=60)

    steps = [
        lambda: joins(1),
        lambda: joins(2),
        lambda: leaves(0, signal.SIGTERM),
        lambda: leaves(1, signal.SIGKILL),
        lambda: joins(1),  # back under its instance id (static membership)
        lambda: None,
    ]
    phases = [slices(stream.phase1, SLICES // 2), slices(stream.phase2, SLICES // 2)]
    try:
        changes = iter(steps)
        for phase in phases:  # phase 2 refers to payments of phase 1: it waits until read
            for part in phase:
                publish(app, part)
                time.sleep(0.5)  # let the slice be read while the group changes
                next(changes)()
            ends = end_offsets(app, list(TOPICS))
            deadline = time.monotonic() + 180
            while not read_up_to(book_db, group, ends):
                assert running and all(p.poll() is None for p in running.values()), log.read_text()[
                    -3000:
                ]
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.1)
    finally:
        for process in running.values():
            process.send_signal(signal.SIGTERM)
        for process in running.values():
            process.wait(timeout=60)
    assert_book_is_the_log(app, book_db, group, starts, stream)
