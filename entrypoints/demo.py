"""``make demo``: the local stack plus a simulated charging network, end to end."""

from __future__ import annotations

import os
import time
from collections import Counter

from rich.console import Console
from rich.table import Table

from connectors.bootstrap import App
from connectors.kafka import Rejecter
from entrypoints.simulate import NetworkSimulator
from ledger.events import TOPIC_EVENTS


def run_demo(app: App, sessions: int, console: Console) -> None:
    sim = NetworkSimulator(app.settings.network_id, seed=int(time.time()))
    publisher = app.publisher()
    group = f"evledger-demo-{int(time.time() * 1000)}"
    consumer = app.consumer(group)
    start_offsets = consumer.end_offsets(list(TOPIC_EVENTS))  # read back this run's events only
    console.rule("[bold]1. publish a simulated charging network")
    started = time.perf_counter()
    events = list(sim.burst(sessions))
    published = publisher.publish_many(events)
    # Two records an upstream bug could send: garbage bytes, and Avro framed with a schema id
    # no registry knows. Both must end in sessions.events.rejected, not vanish.
    publisher.produce_bytes("sessions.events", b"not avro at all", b"bad-1")
    publisher.produce_bytes("sessions.events", b"\x00\x7f\xff\xff\xf0" + os.urandom(12), b"bad-2")
    publisher.flush()
    elapsed = time.perf_counter() - started
    console.print(
        f"published {published:,} events for {sessions:,} sessions "
        f"(+2 malformed records) in {elapsed:.2f}s"
    )

    console.rule("[bold]2. consume everything back")
    rejecter = Rejecter(publisher, group, app.settings.network_id)
    consumer.assign_at(start_offsets)
    counts: Counter[tuple[str, str]] = Counter()
    rejected: list[str] = []
    idle_since = time.monotonic()
    expected = published + 2
    while sum(counts.values()) + len(rejected) < expected and time.monotonic() - idle_since < 20:
        batch = consumer.poll(5000, 0.5)
        if batch:
            idle_since = time.monotonic()
        for record in batch:
            if record.error is not None:
                rejecter.reject_undecodable(record)
                rejected.append(
                    f"{record.topic}[{record.partition}]@{record.offset} "
                    f"{record.error.code}: {record.error.message}"
                )
            else:
                counts[(record.topic, type(record.event).__name__)] += 1
        publisher.flush()
        consumer.commit(batch)
    consumer.close()

    table = Table(title=f"consumed by group {group}")
    for column in ("topic", "event", "count"):
        table.add_column(column, justify="right" if column == "count" else "left")
    for (topic, name), count in sorted(counts.items()):
        table.add_row(topic, name, f"{count:,}")
    console.print(table)
    for line in rejected:
        console.print(f"[yellow]rejected[/] {line}")
    applied = sum(counts.values())
    console.print(
        f"[bold]{applied + len(rejected):,} consumed = {applied:,} decoded + "
        f"{len(rejected)} rejected to <topic>.rejected; nothing lost[/]"
    )
    if applied + len(rejected) != expected:
        raise SystemExit(f"expected {expected} records, consumed {applied + len(rejected)}")
