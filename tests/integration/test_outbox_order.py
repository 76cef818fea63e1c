"""Two relays over one outbox (processors sharing a database) keep the outbox's order on the
log: while one relay's publish is still unconfirmed, the other does not publish a later row.
Before, each took the rows the other had not locked (``SKIP LOCKED``) and a capture could reach
payments.events before its authorization (found by ``make chaos``)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from connectors import postgres
from connectors.checkpoint import PostgresCheckpoint
from entrypoints.bootstrap import App


@pytest.fixture
def database(app: App) -> Iterator[str]:
    name = f"outbox_{uuid.uuid4().hex[:10]}"
    url = postgres.create_database(app.database_url, name)
    yield url
    postgres.drop_database(app.database_url, name)


def enqueue(url: str, *values: str) -> None:
    checkpoint = PostgresCheckpoint(postgres.connect(url))
    with checkpoint.batch() as batch:
        for value in values:
            batch.enqueue("payments.events", b"P-1", value.encode(), str(uuid.uuid4()))
    checkpoint.close()


def test_a_second_relay_waits_for_the_first_to_confirm(database: str) -> None:
    enqueue(database, "authorized", "routed")
    log: list[str] = []
    first_flushing, confirm = threading.Event(), threading.Event()

    def slow_flush() -> None:  # the first relay's broker is slow to confirm
        first_flushing.set()
        assert confirm.wait(30)
        log.extend(first_sent)

    first_sent: list[str] = []
    first = PostgresCheckpoint(postgres.connect(database))
    produce = lambda t, v, k: first_sent.append(v.decode())  # noqa: E731
    one = threading.Thread(target=first.relay, args=(produce, slow_flush))
    one.start()
    assert first_flushing.wait(30)
    enqueue(database, "captured")  # committed while the first relay is in flight

    second = PostgresCheckpoint(postgres.connect(database))
    relayed: list[int] = []
    two = threading.Thread(target=lambda: relayed.append(
        second.relay(lambda t, v, k: log.append(v.decode()), lambda: None)))  # fmt: skip
    two.start()
    time.sleep(1.0)
    assert log == []  # the second relay has not published the capture ahead of the first
    confirm.set()
    one.join(30)
    two.join(30)
    assert log == ["authorized", "routed", "captured"]
    assert relayed == [1]  # the rows the first relay published are not published again
    first.close()
    second.close()
