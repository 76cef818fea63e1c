"""Replay: the ledger projection rebuilt from the log into another database equals the live one
row for row (journal lines, chain links, balances, payment states), also when the replay is
killed halfway and resumed; audit compare names a difference."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
import uuid
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from connectors import audit, postgres
from entrypoints.bootstrap import App
from entrypoints.cli import app as cli
from entrypoints.replay import Progress, replay_ledger
from ledger.errors import InfrastructureError
from processors.base import PostgresProcessor
from processors.ledger_projector import TOPICS, build_ledger_processor
from tests.integration.conftest import end_offsets
from tests.integration.test_ledger_projector import publish, run_to, scratch_book, start_group
from tests.ledger_oracle import mixed_stream


def project(app: App, processor: PostgresProcessor, events: list[Any]) -> None:
    """Publish ``events`` and have the live ``processor`` book them."""
    publish(app, events)
    run_to(processor, end_offsets(app, list(TOPICS)))


def test_a_replay_killed_halfway_and_resumed_equals_the_live_projection(app: App) -> None:
    stream = mixed_stream(f"net-replay-{uuid.uuid4().hex[:8]}", payments_count=40, seed=9)
    with scratch_book(app) as live, scratch_book(app) as rebuilt:
        group, starts = start_group(app, live)
        processor = build_ledger_processor(app, group=group, database_url=live, batch_size=50)
        try:
            project(app, processor, stream.phase1)
            project(app, processor, stream.phase2)
            ends = end_offsets(app, list(TOPICS))
        finally:
            processor.close()

        seen: list[Progress] = []
        first = replay_ledger(app, rebuilt, starts=starts, progress=seen.append, max_steps=2,
                              batch_size=20)  # fmt: skip
        assert not first.finished  # "killed" after two batches
        with psycopg.connect(rebuilt) as conn:
            halfway = postgres.stored_offsets(conn, "evledger-replay-ledger", TOPICS)
        assert sum(halfway.values()) < sum(ends.values())
        second = replay_ledger(app, rebuilt, progress=seen.append, batch_size=20)
        assert second.finished
        assert seen[-1].done == seen[-1].total > 0 and seen[0].done < seen[-1].done

        with psycopg.connect(live) as a, psycopg.connect(rebuilt) as b:
            counts, problems = audit.compare_projections(a, b)
        assert problems == [] and counts["journal"] > 100 and counts["payments"] >= 40

        with psycopg.connect(rebuilt) as b:
            b.execute("UPDATE balances SET debit = debit + 1 WHERE account = (SELECT min(account)"
                      " FROM balances)")  # fmt: skip
            b.commit()
        result = CliRunner().invoke(cli, ["audit", "compare", "--live", live, "--rebuilt",
                                          rebuilt], env={"COLUMNS": "300"})  # fmt: skip
        assert result.exit_code == 1 and "balances" in result.output and "differs" in result.output


def test_a_replay_in_two_workers_equals_the_live_projection_and_keeps_one_for_provider_refunds(
    app: App,
) -> None:
    """Phase 1 (payments, CDRs; no refund reported at a provider) is replayed by two processes
    sharing the partitions, stopped after two batches each and resumed; phase 2 holds refunds
    reported at the provider, which may change a payment of any partition, so its replay runs in
    one process. Both equal the live projection."""
    stream = mixed_stream(f"net-replay-{uuid.uuid4().hex[:8]}", payments_count=48, seed=21)
    with scratch_book(app) as live, scratch_book(app) as rebuilt:
        group, starts = start_group(app, live)
        processor = build_ledger_processor(app, group=group, database_url=live, batch_size=50)
        try:
            project(app, processor, stream.phase1)
            seen: list[Progress] = []
            first = replay_ledger(app, rebuilt, starts=starts, progress=seen.append,
                                  max_steps=2, batch_size=15, workers=2)  # fmt: skip
            assert not first.finished and first.workers == 2
            second = replay_ledger(app, rebuilt, batch_size=15, workers=2, progress=seen.append)
            assert second.finished and second.workers == 2
            assert seen[-1].done == seen[-1].total > 0
            with psycopg.connect(live) as a, psycopg.connect(rebuilt) as b:
                counts, problems = audit.compare_projections(a, b)
            assert problems == [] and counts["payments"] >= 48

            project(app, processor, stream.phase2)
        finally:
            processor.close()
        third = replay_ledger(app, rebuilt, batch_size=15, workers=2)
        assert third.finished and third.workers == 1
        with psycopg.connect(live) as a, psycopg.connect(rebuilt) as b:
            counts, problems = audit.compare_projections(a, b)
        assert problems == [] and counts["journal"] > 100


def test_a_stuck_worker_of_a_parallel_replay_is_named_and_stopped_with_its_stacks_written(
    app: App, capfd: pytest.CaptureFixture[str]
) -> None:
    """A worker that reports nothing for ``stall_seconds`` (here: blocked on a lock the test holds
    on the target's payments table) ends the replay with an error naming it, not a wait without
    end; its threads' stacks are in its output, and a run after the lock is gone resumes."""
    stream = mixed_stream(f"net-stall-{uuid.uuid4().hex[:8]}", payments_count=8, seed=5)
    with scratch_book(app) as rebuilt:
        starts = end_offsets(app, list(TOPICS))
        publish(app, stream.phase1)
        with psycopg.connect(rebuilt) as blocker:
            blocker.execute("LOCK TABLE payments IN ACCESS EXCLUSIVE MODE")
            with pytest.raises(InfrastructureError, match=r"replay worker replay-worker-\d "
                               r"reported nothing for \d+ s and was stopped"):  # fmt: skip
                replay_ledger(app, rebuilt, starts=starts, workers=2, stall_seconds=4)
            blocker.rollback()
        assert "in _ledger_worker" in capfd.readouterr().err  # faulthandler's dump
        resumed = replay_ledger(app, rebuilt, workers=2)
        assert resumed.finished and resumed.consumed > 0


def test_a_worker_of_a_parallel_replay_killed_ends_the_replay_with_its_name(app: App) -> None:
    """A worker killed from outside (SIGKILL: the OOM killer, an operator) sends nothing; the
    replay ends with an error naming it and its exit, and the other worker is stopped."""
    stream = mixed_stream(f"net-kill-{uuid.uuid4().hex[:8]}", payments_count=8, seed=6)
    with scratch_book(app) as rebuilt:
        starts = end_offsets(app, list(TOPICS))
        publish(app, stream.phase1)
        failed: list[BaseException] = []

        def run() -> None:
            try:
                replay_ledger(app, rebuilt, starts=starts, workers=2)
            except BaseException as exc:  # handed to the test's thread
                failed.append(exc)

        with psycopg.connect(rebuilt) as blocker:  # the workers wait here until the kill
            blocker.execute("LOCK TABLE payments IN ACCESS EXCLUSIVE MODE")
            replay = threading.Thread(target=run, daemon=True)
            replay.start()
            deadline = time.monotonic() + 60
            while len(workers := [p for p in multiprocessing.active_children()
                                  if p.name.startswith("replay-worker-")]) < 2:  # fmt: skip
                assert time.monotonic() < deadline, "the workers did not start"
                time.sleep(0.2)
            victim = next(p for p in workers if p.name == "replay-worker-1")
            os.kill(victim.pid or 0, signal.SIGKILL)
            replay.join(60)
            blocker.rollback()
        assert not replay.is_alive() and len(failed) == 1
        assert isinstance(failed[0], InfrastructureError)
        assert "replay worker replay-worker-1 exited with -9 without a result" in str(failed[0])
        assert all(not p.is_alive() for p in workers)
