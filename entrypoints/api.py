"""The read-only finance HTTP API: the ``connectors.finance`` queries over FastAPI.

``create_app(settings)`` builds the app; the connection pool opens when the app starts (lifespan),
never at import. Lists are paginated with ``limit``/``offset`` and answer ``next_offset`` (null on
the last page). Amounts are integer minor units with their currency. Errors are JSON
``{"code", "detail", "request_id"}`` (``entrypoints.http_errors``): 404 for an unknown payment or
route, 400 for a path or query parameter holding a control character (a NUL) or over 1,000
characters, 422 for a parameter of the wrong form, 503 when the database is unreachable, 500 for
anything unexpected (its traceback logged under the request id). OpenAPI at ``/openapi.json``,
docs at ``/docs``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

import psycopg
from fastapi import Depends, FastAPI, Path, Query, Request
from psycopg_pool import ConnectionPool

from connectors import finance
from connectors.settings import Settings
from entrypoints import http_errors
from entrypoints.bootstrap import database_url as default_database_url
from ledger import validation
from ledger.errors import InfrastructureError

T = TypeVar("T", bound=finance.Row)

Limit = Query(100, ge=1, le=finance.MAX_LIMIT, description="rows per page")
Offset = Query(0, ge=0, description="rows to skip")
AsOf = Query(None, description="business time, with a zone (2026-11-20T00:00:00Z)")
Prefix = Query(None, max_length=validation.ID_MAX, description="account code prefix, e.g. assets:")
PaymentId = Path(min_length=1, max_length=validation.ID_MAX, description="payment id")
Group = Query(None, max_length=validation.ID_MAX, description="consumer group")


class DatabaseUnavailable(InfrastructureError):
    """The projection's database did not answer: 503, try again."""

    code = "DATABASE_UNAVAILABLE"


def create_app(settings: Settings, database_url: str | None = None) -> FastAPI:
    """The API for the ledger in ``database_url`` (default: the settings' database)."""
    url = database_url or default_database_url(settings)

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

    app = FastAPI(
        title="evledger finance API",
        version="1",
        description="Balances, trial balance, payments, revenue, VAT and open authorizations "
        "from the ledger projection. Amounts are integer minor units of their currency.",
        lifespan=lifespan,
    )

    def conn(request: Request) -> Iterator[finance.Conn]:
        pool: ConnectionPool[Any] = request.app.state.pool
        try:
            with pool.connection(timeout=10) as c:
                yield c
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable(
                f"database unavailable: {type(exc).__name__}", retriable=True
            ) from exc

    Db = Depends(conn)

    http_errors.install(app, overrides={finance.UnknownPaymentId: 404})

    @app.get("/health", tags=["operations"])
    def health(db: finance.Conn = Db) -> dict[str, Any]:
        """Up, and the database answers."""
        db.execute("SELECT 1")
        return {"status": "ok"}

    @app.get("/balances", tags=["balances"])
    def balances(
        as_of: datetime | None = AsOf,
        view: finance.BalanceView = finance.BalanceView.ALL,
        prefix: str | None = Prefix,
        limit: int = Limit,
        offset: int = Offset,
        db: finance.Conn = Db,
    ) -> dict[str, Any]:
        """Account balances now, or as of a business time (recomputed from the journal)."""
        rows = finance.balances(db, as_of=as_of, view=view, prefix=prefix, limit=limit,
                                offset=offset)  # fmt: skip
        return _page(rows, limit, offset)

    @app.get("/trial-balance", tags=["balances"])
    def trial_balance(db: finance.Conn = Db) -> dict[str, Any]:
        """Posted accounts with a non-zero balance, and per-currency totals."""
        rows = finance.trial_balance(db)
        totals = finance.trial_balance_totals(rows)
        return {
            "items": [r.as_dict() for r in rows],
            "totals": {c: {"debit": d, "credit": cr} for c, (d, cr) in sorted(totals.items())},
            "balanced": all(d == cr for d, cr in totals.values()),
        }

    @app.get("/payments/{payment_id}", tags=["payments"])
    def payment(payment_id: str = PaymentId, db: finance.Conn = Db) -> dict[str, Any]:
        """One payment: totals, status, state and its postings. 404 if unknown."""
        return finance.payment(db, payment_id).as_dict()

    @app.get("/authorizations/open", tags=["payments"])
    def open_authorizations(
        older_than_seconds: int = Query(0, ge=0),
        limit: int = Limit,
        offset: int = Offset,
        db: finance.Conn = Db,
    ) -> dict[str, Any]:
        """Open authorization holds, oldest first, with their age."""
        rows = finance.open_authorizations(
            db, older_than=timedelta(seconds=older_than_seconds), limit=limit, offset=offset
        )
        return _page(rows, limit, offset)

    @app.get("/revenue", tags=["revenue"])
    def revenue(
        by: finance.RevenueBy = finance.RevenueBy.STATION,
        since: date | None = None,
        until: date | None = None,
        limit: int = Limit,
        offset: int = Offset,
        db: finance.Conn = Db,
    ) -> dict[str, Any]:
        """Net revenue (excl. VAT) by station, UTC day or tariff dimension."""
        rows = finance.revenue(db, by=by, since=since, until=until, limit=limit, offset=offset)
        return _page(rows, limit, offset)

    @app.get("/providers/flows", tags=["revenue"])
    def provider_flows(db: finance.Conn = Db) -> dict[str, Any]:
        """Captures, refunds and voids per provider."""
        return {"items": [r.as_dict() for r in finance.provider_flows(db)]}

    @app.get("/vat", tags=["revenue"])
    def vat(
        period: finance.VatPeriod = finance.VatPeriod.MONTH, db: finance.Conn = Db
    ) -> dict[str, Any]:
        """VAT collected, reversed and payable per country of supply and period."""
        return {"items": [r.as_dict() for r in finance.vat(db, period=period)]}

    @app.get("/ledger/counts", tags=["operations"])
    def counts(group: str | None = Group, db: finance.Conn = Db) -> dict[str, Any]:
        """applied / duplicates / rejected per consumer group."""
        return {
            "items": [{**r.as_dict(), "consumed": r.consumed} for r in finance.counts(db, group)]
        }

    @app.get("/sessions/held", tags=["operations"])
    def held_sessions(
        limit: int = Limit, offset: int = Offset, db: finance.Conn = Db
    ) -> dict[str, Any]:
        """Charging sessions held, waiting for their tariff or with a refused stop: reason code,
        detail, the action that releases them and since when, longest-held first."""
        from connectors import sessions_store

        rows = sessions_store.held_sessions(db, limit, offset)
        return {
            "items": [r.as_dict() for r in rows],
            "limit": limit,
            "offset": offset,
            "next_offset": offset + limit if len(rows) == limit else None,
        }

    return app


def _page(rows: Sequence[T], limit: int, offset: int) -> dict[str, Any]:
    return {
        "items": [r.as_dict() for r in rows],
        "limit": limit,
        "offset": offset,
        "next_offset": offset + limit if len(rows) == limit else None,
    }
