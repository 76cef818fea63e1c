"""Replay suite: a full rebuild of the ledger projection from the log (``evledger replay
--workers 2``), killed halfway and resumed, proven identical to the live projection, and its
rate against two baselines of the same run: plain consume + decode of the same records (the
ceiling of one consumer process here), and the live projector over them.

1,000,000 payment events of simulated sessions (``--scale`` scales it) are published to
``payments.events``; the live projector books them into one fresh database, the replay in two
worker processes into another (stopped after half its batches, then run again: it resumes from
the offsets stored with its effects); ``audit.compare_projections`` then compares journal, chain
links, balances and payment states row for row. The suite fails if they differ. A replay in one
process into a third database gives the workers' speed-up.
"""

from __future__ import annotations

import time
import uuid

import psycopg

from bench.harness import BenchContext, Metric
from bench.suite_ledger import BATCH, busy_run, consume_decode, ends, fresh_book, payment_events
from connectors import audit, postgres
from entrypoints.bootstrap import bootstrap
from entrypoints.replay import replay_ledger
from processors.ledger_projector import build_ledger_processor

TARGET = 100_000
WORKERS = 2


def run(ctx: BenchContext) -> list[Metric]:
    app = bootstrap(ctx.settings)
    n = ctx.n(1_000_000)
    network = f"bench-replay-{uuid.uuid4().hex[:6]}"
    began = time.perf_counter()
    events = payment_events(n, network)
    generated = time.perf_counter() - began
    starts = ends(app)
    publisher = app.publisher()
    for i in range(0, len(events), 50_000):
        publisher.publish_many(events[i : i + 50_000])
        publisher.flush()
    targets = ends(app)
    total = sum(targets[tp] - starts[tp] for tp in targets)
    del events
    consume = consume_decode(app, starts, total)

    group = f"bench-replay-live-{uuid.uuid4().hex[:6]}"
    live_name, live = fresh_book(app, group, starts)
    rebuilt_name = f"bench_replay_{uuid.uuid4().hex[:10]}"
    rebuilt = postgres.create_database(app.database_url, rebuilt_name)
    single_name = f"bench_replay_{uuid.uuid4().hex[:10]}"
    single = postgres.create_database(app.database_url, single_name)
    try:
        processor = build_ledger_processor(app, group=group, database_url=live, batch_size=BATCH)
        try:
            busy, _ = busy_run(processor, targets)
        finally:
            processor.close()
        live_rate = total / busy

        half = max(1, total // BATCH // WORKERS // 2)
        first = replay_ledger(app, rebuilt, starts=starts, max_steps=half, batch_size=BATCH,
                              workers=WORKERS)  # fmt: skip
        second = replay_ledger(app, rebuilt, batch_size=BATCH, workers=WORKERS)
        if first.finished or not second.finished or second.workers != WORKERS:
            raise RuntimeError(f"the replay was to be stopped halfway and then finish, in "
                               f"{WORKERS} workers")  # fmt: skip
        replay_seconds = first.seconds + second.seconds
        replay_rate = (first.consumed + second.consumed) / replay_seconds
        alone = replay_ledger(app, single, starts=starts, batch_size=BATCH)
        one_rate = alone.consumed / alone.seconds

        t = time.perf_counter()
        with psycopg.connect(live) as a, psycopg.connect(rebuilt) as b:
            counts, problems = audit.compare_projections(a, b)
        compared = time.perf_counter() - t
        if problems:
            raise RuntimeError(f"the replay differs from the live projection: {problems[:5]}")
    finally:
        postgres.drop_database(app.database_url, live_name)
        postgres.drop_database(app.database_url, rebuilt_name)
        postgres.drop_database(app.database_url, single_name)

    baseline = Metric("consume_decode", consume, "events/s",
                      note=f"{total:,} payment events read and decoded, one consumer")  # fmt: skip
    one = "the projector over the same events, one process"
    live_metric = Metric.against("live_projector", live_rate, "events/s", baseline, note=one)
    summary = ", ".join(f"{v:,} {k}" for k, v in counts.items())
    return [
        baseline,
        live_metric,
        Metric.against("replay", replay_rate, "events/s", baseline,
                       note=f"{WORKERS} worker processes; killed after {first.consumed:,} "
                       f"events, resumed; audit compare: identical ({summary}); target "
                       f"{TARGET:,}/s"),
        Metric.against("replay_vs_live", replay_rate, "events/s", live_metric,
                       note="the same rebuild against the live projector"),
        Metric.against("replay_1_worker_vs_live", one_rate, "events/s", live_metric,
                       note="the replay in one process, not stopped"),
        Metric("replay_seconds", replay_seconds, "s",
               note=f"{total:,} events; compare took {compared:.0f} s; events generated in "
               f"{generated:.0f} s"),
    ]  # fmt: skip
