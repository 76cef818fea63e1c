"""End-to-end tests run on the real stack too, in databases of their own.

They run the demo's code (``entrypoints.demo.run_demo``) but never against the demo's book,
``evledger_demo``, which the README invites a reader to explore after ``make demo``: a test run
must not replace it. ``E2E_DATABASE`` is the name they use instead; the session fixture below
checks, after every e2e test has run, that the demo's database is the very one that was there
before (same OID: not dropped and created again) or still absent.
"""

from __future__ import annotations

import io
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from confluent_kafka import Consumer, TopicPartition
from rich.console import Console

from connectors import postgres
from entrypoints.bootstrap import App
from entrypoints.demo import DEMO_DATABASE, DemoRun, run_demo

E2E_DATABASE = "evledger_test_e2e"
"""The database end-to-end tests run the demo's code into; nothing user-facing uses it."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(autouse=True)
def _needs_stack(stack: object) -> None:
    """Start (or reuse) the stack; never skip."""


def database_oid(app: App, name: str) -> int | None:
    """The OID of database ``name`` on the app's server (None if it does not exist): a database
    dropped and created again gets a new one."""
    with postgres.connect(app.database_url, autocommit=True) as conn:
        row = conn.execute("SELECT oid FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return None if row is None else int(row[0])  # type: ignore[call-overload]


@pytest.fixture(scope="session", autouse=True)
def demo_book_untouched(app: App) -> Iterator[None]:
    """Fail the run if any end-to-end test dropped, created or replaced the demo's database."""
    before = database_oid(app, DEMO_DATABASE)
    yield
    after = database_oid(app, DEMO_DATABASE)
    assert after == before, (
        f"an end-to-end test replaced the {DEMO_DATABASE} database (oid {before} -> {after}); "
        f"tests must use {E2E_DATABASE} or a scratch database"
    )


@pytest.fixture(scope="session")
def e2e_database(app: App) -> Iterator[str]:
    """The name end-to-end tests pass to ``run_demo``; the database is dropped afterwards."""
    yield E2E_DATABASE
    postgres.drop_database(app.database_url, E2E_DATABASE)


@dataclass(frozen=True)
class DemoBook:
    """One run of the demo's code, shared by the tests that read its book."""

    run: DemoRun
    network: str
    output: str
    committed: dict[str, dict[tuple[str, int], int]]
    """Each processor group's offsets committed to Kafka right after the run (other tests
    reuse the group names with databases of their own afterwards)."""


@pytest.fixture(scope="session")
def demo_book(stack: object, app: App, e2e_database: str) -> DemoBook:
    """60 simulated sessions (and the demo's attacks) through the whole flow into
    ``E2E_DATABASE``, for a network of this run's own."""
    network = f"e2e-{uuid.uuid4().hex[:8]}"
    out = io.StringIO()
    run = run_demo(app, 60, Console(file=out, width=120), seed=1234, network_id=network,
                   database=e2e_database)  # fmt: skip
    committed = {}
    for group in ("evledger-sessions", "evledger-settlement", "evledger-ledger"):
        reader = Consumer({"bootstrap.servers": app.settings.bootstrap_servers,
                           "group.id": group, "enable.auto.commit": False})  # fmt: skip
        try:
            parts = [TopicPartition(t, p) for t, p in run.start_offsets]
            committed[group] = {(tp.topic, tp.partition): tp.offset
                                for tp in reader.committed(parts, timeout=10)}  # fmt: skip
        finally:
            reader.close()
    return DemoBook(run, network, out.getvalue(), committed)
