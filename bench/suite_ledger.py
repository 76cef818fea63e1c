"""Ledger suite: projector throughput and publish→visible latency, against raw consume + decode.

(a) baseline: consume + decode the pre-published payment events (``EventConsumer.poll``), the
    ceiling for any consumer in this process;
(b) the projector over the same events into a fresh database: one in-process instance, then
    several processes in one group (partitions shared);
(c) a second baseline that costs what the projector's database side costs: PostgreSQL alone
    writing the rows the in-process projector wrote (journal entries, payment states, provider
    references, balances, offsets), COPY, one transaction per batch of the same size. The
    projector's ratio to it says how close the projector comes to what the database allows;
(d) at a steady 2k events/s: publish → committed in PostgreSQL, per event, p50/p99.
"""

from __future__ import annotations

import gc
import multiprocessing
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka import ConsumerGroupState, KafkaException
from confluent_kafka.admin import AdminClient

from bench.harness import BenchContext, Metric, percentile
from connectors import postgres
from connectors.kafka import TOPIC_OF, Consumed
from connectors.settings import Settings
from entrypoints.bootstrap import App, bootstrap
from entrypoints.simulate import NetworkSimulator
from processors.base import Effects
from processors.ledger_projector import TOPICS, LedgerHandler, build_ledger_processor, caught_up

ROOT = Path(__file__).resolve().parents[1]
BATCH = 5000


def payment_events(n: int, network: str, seed: int = 1) -> list[Any]:
    """About ``n`` payment events (authorizations, captures, voids, refunds) of simulated
    sessions; meter values and session events are dropped."""
    sim = NetworkSimulator(network_id=network, seed=seed, stations=200)
    out: list[Any] = []
    start = datetime.now(UTC) - timedelta(seconds=30 * n, days=1)  # all over before now
    i = 0
    while len(out) < n:
        for event in sim.session(start + timedelta(seconds=30 * i)):
            if TOPIC_OF[type(event)] == "payments.events":
                out.append(event)
        i += 1
    return out[:n]


def ends(app: App) -> dict[tuple[str, int], int]:
    """The end offsets of the ledger projector's topics."""
    return ends_of(app, list(TOPICS))


def ends_of(app: App, topics: list[str]) -> dict[tuple[str, int], int]:
    consumer = app.consumer(f"bench-probe-{uuid.uuid4()}")
    try:
        return consumer.end_offsets(topics)
    finally:
        consumer.close()


def consume_decode(app: App, starts: dict[tuple[str, int], int], total: int) -> float:
    """Events/s of plain consume + decode from ``starts`` until ``total`` records are read."""
    consumer = app.consumer(f"bench-raw-{uuid.uuid4()}")
    consumer.assign_at(starts)
    read, began = 0, 0.0
    while read < total:
        batch = consumer.poll(BATCH, 1.0)
        if batch and not began:
            began = time.perf_counter()
        read += len(batch)
    elapsed = time.perf_counter() - began
    consumer.close()
    return read / elapsed


def fresh_book(app: App, group: str, starts: dict[tuple[str, int], int]) -> tuple[str, str]:
    name = f"bench_ledger_{uuid.uuid4().hex[:10]}"
    url = postgres.create_database(app.database_url, name, migrated=False)

    postgres.migrate(url)
    with psycopg.connect(url) as conn:
        postgres.store_offsets(conn, group, starts)
    return name, url


def project_in_process(
    app: App, starts: dict[tuple[str, int], int], targets: dict[tuple[str, int], int]
) -> tuple[float, int, dict[str, list[bytes]]]:
    """(events/s, events, rows written) of one in-process projector: events over the time spent
    in batches that consumed something (the group join before the first batch is not counted);
    the rows are the COPY text lines of every table it wrote, for ``postgres_alone``."""
    group = f"bench-ledger-{uuid.uuid4().hex[:8]}"
    name, url = fresh_book(app, group, starts)
    processor = build_ledger_processor(app, group=group, database_url=url, batch_size=BATCH)
    try:
        busy, events = busy_run(processor, targets)
        processor.close()
        rows = written_rows(url)
    finally:
        postgres.drop_database(app.database_url, name)
    return events / busy, events, rows


def busy_run(processor: Any, targets: dict[tuple[str, int], int]) -> tuple[float, int]:
    """Step ``processor`` until caught up with ``targets``: (seconds spent in batches that
    consumed something, events consumed). Waiting for the group join is not counted."""
    busy, events = 0.0, 0
    while True:
        began = time.perf_counter()
        stats = processor.step(0.5)
        if stats.consumed:
            busy += time.perf_counter() - began
            events += stats.consumed
        elif caught_up(processor, targets):
            return busy, events


WRITTEN_TABLES = ("journal_entries", "payments", "payment_references")
"""The tables the projector fills by COPY or insert; balances and offsets are upserted."""


def written_rows(url: str) -> dict[str, list[bytes]]:
    """Every row of the projector's tables as COPY text lines (balances: (account, currency,
    debit, credit, postings))."""
    out: dict[str, list[bytes]] = {}
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        for table in (*WRITTEN_TABLES, "balances"):
            columns = "account, currency, debit, credit, postings" if table == "balances" else "*"
            buffer = bytearray()
            with cur.copy(f"COPY (SELECT {columns} FROM {table}) TO STDOUT") as copy:
                for chunk in copy:
                    buffer += chunk
            out[table] = bytes(buffer).splitlines(keepends=True)
    return out


def postgres_alone(
    app: App, rows: dict[str, list[bytes]], events: int, targets: dict[tuple[str, int], int]
) -> float:
    """Events/s of PostgreSQL alone writing ``rows`` (what the projector wrote for ``events``
    events) into a fresh book: each table's rows cut into one slice per batch of ``BATCH``
    events; per batch, one transaction that COPYs the slices, upserts the balances the way the
    projector does and stores the offsets. No Kafka, no decoding, no domain work."""
    batches = max(1, -(-events // BATCH))
    group = f"bench-pg-{uuid.uuid4().hex[:8]}"
    name, url = fresh_book(app, group, {})

    def cut(lines: list[bytes], i: int) -> bytes:
        size = -(-len(lines) // batches)
        return b"".join(lines[i * size : (i + 1) * size])

    try:
        with psycopg.connect(url) as conn:
            began = time.perf_counter()
            for i in range(batches):
                with conn.transaction(), conn.cursor() as cur:
                    for table in WRITTEN_TABLES:
                        with cur.copy(f"COPY {table} FROM STDIN") as copy:
                            copy.write(cut(rows[table], i))
                    cur.execute(
                        "CREATE TEMP TABLE IF NOT EXISTS bench_balances (account text,"
                        " currency text, debit bigint, credit bigint, postings bigint)"
                        " ON COMMIT DELETE ROWS"
                    )
                    with cur.copy("COPY bench_balances FROM STDIN") as copy:
                        copy.write(cut(rows["balances"], i))
                    cur.execute(
                        "INSERT INTO balances AS b (account, currency, debit, credit, postings)"
                        " SELECT * FROM bench_balances ON CONFLICT (account, currency) DO UPDATE"
                        " SET debit = b.debit + EXCLUDED.debit,"
                        " credit = b.credit + EXCLUDED.credit,"
                        " postings = b.postings + EXCLUDED.postings"
                    )
                    postgres.store_offsets(conn, group, targets)
            elapsed = time.perf_counter() - began
    finally:
        postgres.drop_database(app.database_url, name)
    return events / elapsed


def project_processes(
    app: App, starts: dict[tuple[str, int], int], targets: dict[tuple[str, int], int], n: int
) -> tuple[float, float, int]:
    """(sustained events/s, whole-run events/s, events) of ``n`` projector processes in one
    group. Sustained: from the moment every instance owns partitions (the group is stable) to
    the last committed batch; whole run: from the first committed batch, so it also holds the
    time one instance worked alone while the others were still joining."""
    group = f"bench-ledger-{uuid.uuid4().hex[:8]}"
    name, url = fresh_book(app, group, starts)
    command = [
        sys.executable,
        "-m",
        "entrypoints.cli",
        "ledger",
        "run",
        "--database-url",
        url,
        "--group",
        group,
        "--batch-size",
        str(BATCH),
    ]
    procs = [
        subprocess.Popen(
            [*command, "--instance-id", f"{group}-{i}"],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i in range(n)
    ]
    admin = AdminClient({"bootstrap.servers": app.settings.bootstrap_servers})
    first = last = stable_at = 0.0
    done_when_stable = 0
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            while True:
                done = _counted(conn, group)
                now = time.perf_counter()
                if done and not first:
                    first = now
                if not stable_at and _all_members_assigned(admin, group, n):
                    stable_at, done_when_stable = now, done
                offsets = ledger_store_offsets(conn, group)
                if all(offsets.get(tp, 0) >= end for tp, end in targets.items()):
                    last = now
                    break
                if any(p.poll() is not None for p in procs):
                    raise RuntimeError("a projector process died during the benchmark")
                time.sleep(0.02)
            events = _counted(conn, group)
    finally:
        for p in procs:
            p.kill()
            p.wait()
        postgres.drop_database(app.database_url, name)
    sustained = (events - done_when_stable) / (last - stable_at) if stable_at else 0.0
    return sustained, events / (last - first), events


def _all_members_assigned(admin: AdminClient, group: str, members: int) -> bool:
    """Whether ``group`` is stable with ``members`` members, each owning a partition."""
    try:
        description = admin.describe_consumer_groups([group])[group].result(timeout=5)
    except KafkaException:
        return False  # not formed yet
    owners = [m for m in description.members if m.assignment.topic_partitions]
    return description.state == ConsumerGroupState.STABLE and len(owners) == members


def ledger_store_offsets(conn: psycopg.Connection[Any], group: str) -> dict[tuple[str, int], int]:
    rows = conn.execute(
        "SELECT topic, partition, next_offset FROM consumer_offsets WHERE consumer_group = %s",
        (group,),
    ).fetchall()
    return {(str(t), int(p)): int(o) for t, p, o in rows}


def _counted(conn: psycopg.Connection[Any], group: str) -> int:
    row = conn.execute(
        "SELECT applied + duplicates + rejected FROM processing_counts WHERE consumer_group = %s",
        (group,),
    ).fetchone()
    return int(row[0]) if row else 0


class _TimedHandler(LedgerHandler):
    """The projector's handler, noting when each of one network's events reached it."""

    def __init__(self, network: str) -> None:
        self.network = network
        self.batch: list[tuple[datetime, float]] = []

    def handle(self, tx: Effects, records: Sequence[Consumed]) -> None:
        now = time.time()
        self.batch += [
            (r.event.envelope.recorded_at, now)
            for r in records
            if r.event.envelope.network_id == self.network
        ]
        super().handle(tx, records)


def publish_paced(settings: Settings, network: str, rate: int, count: int) -> None:
    """Publish ``count`` payment events at ``rate``/s; each event's ``recorded_at`` is set just
    before its ``publish()`` call, so the consumer side can time it on the same clock."""
    app = bootstrap(settings)
    events = payment_events(count, network, seed=9)
    publisher = app.publisher()
    began = time.perf_counter()
    for i, event in enumerate(events):
        due = began + i / rate
        while (wait := due - time.perf_counter()) > 0:
            time.sleep(min(wait, 0.002))
        envelope = replace(event.envelope, recorded_at=datetime.now(UTC))
        publisher.publish(replace(event, envelope=envelope))
        publisher.producer.poll(0)
    publisher.flush()


def latency(app: App, rate: int, seconds: float) -> tuple[list[float], list[float], int]:
    """Publish ``rate`` events/s for ``seconds`` from another process while the projector runs
    here; per event (ms): recorded_at → handed to the handler, and → its batch committed."""
    starts = ends(app)
    group = f"bench-latency-{uuid.uuid4().hex[:8]}"
    network = f"bench-lat-{uuid.uuid4().hex[:6]}"
    name, url = fresh_book(app, group, starts)
    processor = build_ledger_processor(app, group=group, database_url=url, batch_size=BATCH)
    handler = _TimedHandler(network)
    processor.handler = handler
    consumed_ms: list[float] = []
    visible_ms: list[float] = []
    count = int(rate * seconds)
    try:
        while not caught_up(processor, starts):  # join the group before the clock starts
            processor.step(0.2)
        ctx = multiprocessing.get_context("spawn")
        publisher = ctx.Process(target=publish_paced, args=(app.settings, network, rate, count))
        publisher.start()
        deadline = time.monotonic() + seconds + 120
        while len(visible_ms) < count and time.monotonic() < deadline:
            handler.batch = []
            processor.step(0.05)  # small batches: latency, not throughput
            committed = time.time()  # step returns after COMMIT (and the outbox relay)
            for recorded, seen in handler.batch:
                sent = recorded.timestamp()
                consumed_ms.append((seen - sent) * 1000)
                visible_ms.append((committed - sent) * 1000)
        publisher.join()
    finally:
        processor.close()
        postgres.drop_database(app.database_url, name)
    return consumed_ms, visible_ms, count


def run(ctx: BenchContext) -> list[Metric]:
    app = bootstrap(ctx.settings)
    n = ctx.n(200_000)
    events = payment_events(n, f"bench-{uuid.uuid4().hex[:6]}")
    starts = ends(app)
    publisher = app.publisher()
    publisher.publish_many(events)
    publisher.flush()
    # The published events are on Kafka now. Kept alive here they would be millions of objects
    # for every full garbage collection of the measurements below to walk (200k events: consume +
    # decode 204k -> 144k events/s), a cost that no consumer in its own process pays.
    del events
    gc.collect()
    targets = ends(app)
    total = sum(targets[tp] - starts.get(tp, 0) for tp in targets)

    raw = max(consume_decode(app, starts, total) for _ in range(2))
    baseline = Metric(
        "consume_decode_payment_events",
        raw,
        "events/s",
        note=f"EventConsumer.poll({BATCH}) + Avro decode of {total:,} events",
    )
    one, one_n, rows = project_in_process(app, starts, targets)
    pg = Metric(
        "postgres_alone_same_rows",
        postgres_alone(app, rows, one_n, targets),
        "events/s",
        note=f"PostgreSQL alone writing the rows the projector wrote for {one_n:,} events "
        f"({len(rows['journal_entries']):,} journal entries, {len(rows['payments']):,} payment "
        f"states, {len(rows['payment_references']):,} references; balances upserted): COPY, one "
        f"transaction per {BATCH} events, offsets stored; no Kafka, no decoding, no domain work",
    )
    del rows
    procs = 2  # this machine has 2 cores; PostgreSQL needs CPU too
    many, whole, many_n = project_processes(app, starts, targets, procs)
    metrics = [
        baseline,
        pg,
        Metric.against(
            "ledger_projector_1_instance_vs_postgres",
            one,
            "events/s",
            pg,
            note="the same in-process run as ledger_projector_1_instance, against what "
            "PostgreSQL alone allows for its rows",
        ),
        Metric.against(
            "ledger_projector_1_instance",
            one,
            "events/s",
            baseline,
            note=f"{one_n:,} events into a fresh database, batch {BATCH}, time inside "
            "batches that consumed (group join excluded); apply + COPY + upserts + "
            "offsets in one transaction per batch",
        ),
        Metric.against(
            f"ledger_projector_{procs}_processes",
            many,
            "events/s",
            baseline,
            note=f"{many_n:,} events, {procs} processes in one group sharing the "
            "6 payments.events partitions; from the moment every process owns partitions to "
            f"the last committed batch, polled every 20 ms (whole run, from the first committed "
            f"batch, with one process alone until the other joins: {whole:,.0f}/s)",
        ),
    ]
    rate, seconds = 2000, 15.0 * min(1.0, max(ctx.scale, 0.2))
    consumed_ms, visible_ms, sent = latency(app, rate, seconds)
    base_p99 = Metric(
        "publish_to_consumed_p99",
        percentile(consumed_ms, 99),
        "ms",
        note="same events: recorded_at (set just before publish()) → handed to the handler",
    )
    metrics += [
        base_p99,
        Metric.against(
            "publish_to_visible_p99",
            percentile(visible_ms, 99),
            "ms",
            base_p99,
            note=f"{len(visible_ms):,}/{sent:,} events paced at {rate}/s for {seconds:.0f}s by a "
            "separate publisher process; per event: its recorded_at, set just before publish() "
            "→ wall clock when the projector's step returned after COMMIT (same host clock); p50 "
            f"{percentile(visible_ms, 50):.1f} ms, max {max(visible_ms, default=0):.1f} ms",
        ),
    ]
    return metrics


if __name__ == "__main__":
    from bench.harness import write_results

    scale = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    results = run(BenchContext(settings=Settings.from_env(), scale=scale))
    for m in results:
        print(m)
    write_results("ledger", results)
