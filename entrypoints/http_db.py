"""The PostgreSQL side of evledger's HTTP apps (finance API, ingest): one connection pool per
app, opened when the app starts (lifespan, never at import), a connection per request, and the
schema check every keyed endpoint passes before its first query."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import psycopg
from fastapi import Depends, FastAPI, Request
from psycopg_pool import ConnectionPool

from connectors import postgres
from ledger.errors import InfrastructureError

POOL_SIZE = 8
"""Connections per app process; as many requests use the database at once, the rest queue."""


class DatabaseUnavailable(InfrastructureError):
    """The app's database did not answer: 503, try again."""

    code = "DATABASE_UNAVAILABLE"


def pool_lifespan(
    url: str,
    on_close: Callable[[], None] | None = None,
    on_open: Callable[[], None] | None = None,
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The app's lifespan: a pool of autocommit connections to ``url`` in ``app.state.pool``
    while it runs; ``on_open`` once the pool is opening (a background refresher's start),
    ``on_close`` after the pool closes (a publisher's flush, the refresher's stop)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = ConnectionPool(url, min_size=1, max_size=POOL_SIZE, open=False,
                              kwargs={"autocommit": True})  # fmt: skip
        pool.open(wait=False)
        app.state.pool = pool
        if on_open is not None:
            on_open()
        try:
            yield
        finally:
            pool.close()
            if on_close is not None:
                on_close()

    return lifespan


async def _slot(request: Request) -> AsyncIterator[None]:
    """One of the pool's ``POOL_SIZE`` places, awaited on the event loop. Without it, more
    requests than the threadpool has threads (40) would each take a thread to wait for one of
    the pool's connections, leaving none to run the requests that hold them: every request
    then stalled until the pool's timeout and answered 503 (seen with 50 dashboard viewers)."""
    slots = getattr(request.app.state, "db_slots", None)
    if slots is None:  # made on the app's event loop, by its first request
        slots = request.app.state.db_slots = asyncio.Semaphore(POOL_SIZE)
    async with slots:
        yield


def connection(request: Request, _slot: None = Depends(_slot)) -> Iterator[Any]:
    """A pooled connection (503 DATABASE_UNAVAILABLE when the database does not answer), once
    the request holds a place (``_slot``). No query runs here: FastAPI solves dependencies
    before it validates parameters, and nothing may reach the database for a request it will
    refuse."""
    pool: ConnectionPool[Any] = request.app.state.pool
    try:
        with pool.connection(timeout=10) as c:
            yield c
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(
            f"database unavailable: {type(exc).__name__}", retriable=True
        ) from exc


def schema_checked(app: FastAPI) -> Callable[[Any], Any]:
    """``ready(conn)``: ``conn`` once the database's schema is known to hold every migration.
    The apps never migrate: while the schema is behind every request answers 503 SCHEMA_BEHIND,
    naming `evledger db migrate`. Found current once, it is not checked again: migrations only
    ever move it forward."""

    def ready(db: Any) -> Any:
        if not getattr(app.state, "schema_current", False):
            postgres.require_current_schema(db)
            app.state.schema_current = True
        return db

    return ready
