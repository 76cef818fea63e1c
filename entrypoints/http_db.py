"""The PostgreSQL side of evledger's HTTP apps (finance API, ingest): one connection pool per
app, opened when the app starts (lifespan, never at import), a connection per request, and the
schema check every keyed endpoint passes before its first query."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from psycopg_pool import ConnectionPool

from connectors import postgres
from ledger.errors import InfrastructureError


class DatabaseUnavailable(InfrastructureError):
    """The app's database did not answer: 503, try again."""

    code = "DATABASE_UNAVAILABLE"


def pool_lifespan(
    url: str, on_close: Callable[[], None] | None = None
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The app's lifespan: a pool of autocommit connections to ``url`` in ``app.state.pool``
    while it runs; ``on_close`` after the pool closes (a publisher's flush)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = ConnectionPool(url, min_size=1, max_size=8, open=False,
                              kwargs={"autocommit": True})  # fmt: skip
        pool.open(wait=False)
        app.state.pool = pool
        try:
            yield
        finally:
            pool.close()
            if on_close is not None:
                on_close()

    return lifespan


def connection(request: Request) -> Iterator[Any]:
    """A pooled connection (503 DATABASE_UNAVAILABLE when the database does not answer). No
    query runs here: FastAPI solves dependencies before it validates parameters, and nothing may
    reach the database for a request it will refuse."""
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
