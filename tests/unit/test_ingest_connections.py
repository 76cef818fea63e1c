"""Ingest closes a keep-alive connection after EVLEDGER_INGEST_REQUESTS_PER_CONNECTION requests,
so a few long-lived clients spread over the workers
(``entrypoints.ingest_app.ConnectionRecycling``)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from connectors.settings import Settings, SettingsError
from entrypoints.ingest_app import ConnectionRecycling


async def _answer(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"x-a", b"1")]})
    await send({"type": "http.response.body", "body": b"{}"})


def _closes(app: ConnectionRecycling, client: tuple[str, int] | None) -> bool:
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "client": client}
    asyncio.run(app(scope, None, send))
    start = sent[0]
    assert start["status"] == 200 and (b"x-a", b"1") in start["headers"]  # the app's own kept
    assert sent[1]["body"] == b"{}"
    return (b"connection", b"close") in start["headers"]


def test_every_limit_th_request_of_a_connection_closes_it_and_connections_count_apart() -> None:
    app = ConnectionRecycling(_answer, limit=3)
    a, b = ("10.0.0.1", 5001), ("10.0.0.1", 5002)
    assert [_closes(app, a) for _ in range(7)] == [False, False, True, False, False, True, False]
    assert [_closes(app, b) for _ in range(3)] == [False, False, True]


def test_a_request_without_a_client_address_is_passed_through() -> None:
    app = ConnectionRecycling(_answer, limit=1)
    assert not _closes(app, None)


def test_the_memory_of_connections_is_bounded() -> None:
    app = ConnectionRecycling(_answer, limit=5)
    for port in range(12_000):
        _closes(app, ("10.0.0.2", port))
    assert len(app.served) <= 10_000


def test_the_limit_is_zero_or_more() -> None:
    assert Settings.from_env({}).ingest_requests_per_connection == 10
    assert (
        Settings.from_env(
            {"EVLEDGER_INGEST_REQUESTS_PER_CONNECTION": "0"}
        ).ingest_requests_per_connection
        == 0
    )
    with pytest.raises(SettingsError, match="INGEST_REQUESTS_PER_CONNECTION"):
        Settings.from_env({"EVLEDGER_INGEST_REQUESTS_PER_CONNECTION": "-1"})
