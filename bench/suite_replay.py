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

import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

from bench.harness import BenchContext, Metric
from bench.suite_ledger import BATCH, busy_run, consume_decode, ends, fresh_book, payment_events
from connectors import audit, postgres
from entrypoints.bootstrap import App, bootstrap
from entrypoints.replay import replay_ledger
from processors.ledger_projector import build_ledger_processor

TARGET = 100_000
WORKERS = 2
SKIPPED = ("schema_migrations", "consumer_offsets", "period_lock", "processing_counts")
"""Tables left out of the PostgreSQL ceiling: bookkeeping of a few rows, or filled by the
migration itself."""


def postgres_ceiling(
    app: App, rebuilt: str, events: int, sessions: int = WORKERS
) -> tuple[float, int]:
    """Events/s of PostgreSQL alone loading every row the rebuild wrote into ``rebuilt`` (journal,
    chain, payment states and history, references, duplicate marks, balances...) into a fresh,
    migrated, indexed database: ``sessions`` connections side by side, each one COPY per table
    of its half of the rows and one commit, foreign-key triggers off (a bulk load). No Kafka, no
    decoding, no domain work: what PostgreSQL alone absorbs here of these rows, into tables
    shaped as the rebuild's are. Returns the rate and the bytes loaded."""
    name = f"bench_ceiling_{uuid.uuid4().hex[:10]}"
    target = postgres.create_database(app.database_url, name)
    with tempfile.TemporaryDirectory(prefix="evledger-ceiling-") as tmp:
        shares: list[list[tuple[str, Path]]] = [[] for _ in range(sessions)]
        size = 0
        try:
            with psycopg.connect(rebuilt) as src, psycopg.connect(target) as dst:
                tables = [t for (t,) in src.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
                    if t not in SKIPPED]  # fmt: skip
                for table in tables:
                    if dst.execute(f"SELECT EXISTS (SELECT FROM {table})").fetchone() != (False,):
                        continue  # filled by the migration: not the rebuild's work
                    columns = ", ".join(f'"{c}"' for (c,) in src.execute(
                        "SELECT column_name FROM information_schema.columns WHERE table_schema ="
                        " 'public' AND table_name = %s AND is_generated = 'NEVER' ORDER BY"
                        " ordinal_position", (table,)))  # fmt: skip
                    for k in range(sessions):  # rows dealt by their place on the heap pages
                        path = Path(tmp) / f"{table}.{k}"
                        place = "((ctid::text::point)[0] + (ctid::text::point)[1])::bigint"
                        _dump(src, f"SELECT {columns} FROM {table}"
                              f" WHERE {place} % {sessions} = {k}", path)  # fmt: skip
                        size += path.stat().st_size
                        shares[k].append((f"{table} ({columns})", path))
            failures: list[BaseException] = []
            began = time.perf_counter()
            loaders = [threading.Thread(target=_load, args=(target, share, failures))
                       for share in shares]  # fmt: skip
            for loader in loaders:
                loader.start()
            for loader in loaders:
                loader.join()
            elapsed = time.perf_counter() - began
            if failures:
                raise RuntimeError(f"the PostgreSQL ceiling's load failed: {failures[0]}")
        finally:
            postgres.drop_database(app.database_url, name)
    return events / elapsed, size


def _dump(conn: psycopg.Connection[Any], query: str, path: Path) -> None:
    with path.open("wb") as out, conn.cursor().copy(f"COPY ({query}) TO STDOUT") as copy:
        for chunk in copy:
            out.write(chunk)


def _load(url: str, share: list[tuple[str, Path]], failures: list[BaseException]) -> None:
    try:
        with psycopg.connect(url) as conn, conn.cursor() as cur:
            cur.execute("SET session_replication_role = replica")
            for table, path in share:
                with path.open("rb") as source, cur.copy(f"COPY {table} FROM STDIN") as copy:
                    while chunk := source.read(1 << 20):
                        copy.write(chunk)
            conn.commit()
    except BaseException as exc:  # raised by the caller, in its thread
        failures.append(exc)


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
        ceiling, loaded = postgres_ceiling(app, rebuilt, total)
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
        pg_metric := Metric("postgres_ceiling", ceiling, "events/s",
                            note=f"PostgreSQL alone loading the {loaded / 1e6:,.0f} MB of rows "
                            f"the rebuild wrote ({loaded / total:,.0f} bytes per event) into a "
                            f"fresh indexed database, {WORKERS} sessions, one COPY per table, "
                            "foreign-key triggers off; no Kafka, no decoding, no rules"),
        Metric.against("replay_vs_postgres_ceiling", replay_rate, "events/s", pg_metric,
                       note=f"the same rebuild against what PostgreSQL alone takes of its rows "
                       f"here; the target of {TARGET:,}/s is {TARGET / ceiling:.1f}x that"),
        Metric("replay_seconds", replay_seconds, "s",
               note=f"{total:,} events; compare took {compared:.0f} s; events generated in "
               f"{generated:.0f} s"),
    ]  # fmt: skip
