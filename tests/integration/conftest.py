"""Every test in this folder uses the real stack (Kafka, Apicurio Registry, PostgreSQL)."""

from __future__ import annotations

import uuid

import pytest

from connectors.kafka import Consumed, EventConsumer
from entrypoints.bootstrap import App


@pytest.fixture(autouse=True)
def _needs_stack(stack: object) -> None:
    """Start (or reuse) the stack before any integration test; never skip."""


def consume_from(
    app: App,
    topics: list[str],
    starts: dict[tuple[str, int], int],
    expected: int,
    timeout: float = 30.0,
) -> list[Consumed]:
    """Read ``expected`` records from ``starts`` (or until ``timeout`` seconds pass idle)."""
    import time

    consumer: EventConsumer = app.consumer(f"test-{uuid.uuid4()}")
    consumer.assign_at(starts)
    records: list[Consumed] = []
    deadline = time.monotonic() + timeout
    while len(records) < expected and time.monotonic() < deadline:
        records += consumer.poll(1000, 0.5)
    consumer.close()
    return records


def end_offsets(app: App, topics: list[str]) -> dict[tuple[str, int], int]:
    consumer = app.consumer(f"probe-{uuid.uuid4()}")
    try:
        return consumer.end_offsets(topics)
    finally:
        consumer.close()


def create_database(app: App, prefix: str) -> str:
    """A new, migrated database on the stack's server, for one test module; returns its URL."""
    from connectors import postgres

    return postgres.create_database(app.database_url, f"{prefix}_{uuid.uuid4().hex[:10]}")


def drop_database(app: App, url: str) -> None:
    from psycopg.conninfo import conninfo_to_dict

    from connectors import postgres

    postgres.drop_database(app.database_url, str(conninfo_to_dict(url)["dbname"]))


def api_key(url: str, network: str, *scopes: str) -> dict[str, str]:
    """Headers carrying a new API key of ``network`` with ``scopes`` (default: finance:read and
    admin), made in ``url``'s database by a writer, as `evledger keys create` does."""
    from connectors import keys_store, postgres

    with postgres.connect(url, autocommit=True) as conn:
        new, _ = keys_store.create(
            conn, network, scopes or ("finance:read", "admin"), actor="tests"
        )
    return {"Authorization": f"Bearer {new.token}"}
