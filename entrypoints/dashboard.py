"""The analytics dashboard, served by the finance API (``evledger api``): ``/dashboard``.

The page and its scripts hold no data and need no key; the page asks for an API key (kept in
the browser tab's session storage, sent as ``Authorization: Bearer``) and polls
``/dashboard/data``, which needs the scope ``finance:read`` and answers for the key's network
only (``risk`` adds nothing here: alert counts and reasons are shown to finance:read, subjects'
histories stay behind ``/fraud/subjects``; ``admin`` adds the pipeline-wide processing counts
and rejections). Charts are drawn by plotly.js, the copy the ``plotly`` Python package ships,
served from here: the page loads nothing from the internet. The figures come from
``connectors.analytics``; its hourly rollups are refreshed in the background by
``RollupRefresher`` while the API runs.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib import resources
from typing import Any

import orjson
from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field

from connectors import analytics, postgres
from entrypoints.http_errors import PRINTABLE
from ledger import validation
from ledger.access import Principal, Scope
from ledger.errors import ValidationError

log = logging.getLogger(__name__)

MAX_SPAN = timedelta(days=400)
"""The longest time range one request may ask for (a year and a bit: a year-on-year view)."""
ASSETS = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}


@cache
def _asset(name: str) -> bytes:
    return resources.files("entrypoints.static").joinpath(name).read_bytes()


@cache
def _plotly() -> bytes:
    from plotly.offline import get_plotlyjs

    return str(get_plotlyjs()).encode()


# -- the answer of /dashboard/data: the OpenAPI contract -------------------------------------
MINOR = "integer minor units of `currency`"


class RevenueFigures(BaseModel):
    revenue: int = Field(description=f"revenue recognized, {MINOR}")
    refunds: int = Field(description=f"refunds given back, {MINOR}")
    net_revenue: int = Field(description=f"revenue - refunds, excl. VAT, {MINOR}")
    vat: int = Field(description=f"VAT payable, {MINOR}")
    gross: int = Field(description=f"net_revenue + vat, {MINOR}")


class HourRevenue(RevenueFigures):
    hour: datetime = Field(description="start of the UTC hour, or of the UTC day (`bucket`)")


class StationRevenue(RevenueFigures):
    station: str = Field(description="station id ('other (n)': the rest summed)")


class CurrencyRevenue(RevenueFigures):
    currency: str


class StationSessions(BaseModel):
    station: str
    sessions: int
    average_value_incl_vat: int = Field(description=MINOR)
    average_energy_wh: int


class Sessions(BaseModel):
    sessions: int = Field(description="billed sessions stopped in the range")
    value_incl_vat: int = Field(description=f"their current CDRs' totals, {MINOR}")
    energy_wh: int
    average_value_incl_vat: int = Field(description=MINOR)
    average_energy_wh: int
    by_station: list[StationSessions]


class Authorizations(BaseModel):
    provider: str
    payment_method: str
    succeeded: int = Field(description="holds placed")
    failed: int = Field(description="declined, or no provider could place it")
    success_rate: float | None = Field(description="succeeded / (succeeded + failed)")


class HoldAge(BaseModel):
    age: str
    holds: int
    amount: int = Field(description=MINOR)


class OpenHolds(BaseModel):
    holds: int
    amount: int = Field(description=MINOR)
    by_age: list[HoldAge]


class DoubtfulAttempt(BaseModel):
    payment_id: str
    provider: str
    action: str
    amount: int | None = Field(description="minor units of the attempt's currency")
    currency: str | None
    age_seconds: int


class InDoubt(BaseModel):
    attempts: int
    oldest_age_seconds: int | None
    oldest: list[DoubtfulAttempt]


class RuleAlerts(BaseModel):
    rule: str
    alerts: int


class ActionAlerts(BaseModel):
    action: str
    alerts: int


class LatestAlert(BaseModel):
    subject: str
    score: float
    action: str
    reason: str
    raised_at: datetime


class Fraud(BaseModel):
    alerts: int
    by_rule: list[RuleAlerts]
    by_action: list[ActionAlerts]
    latest: list[LatestAlert]


class GroupFigures(BaseModel):
    consumer_group: str
    applied: int
    duplicates: int
    rejected: int
    consumed: int


class ReasonRecords(BaseModel):
    reason_code: str
    records: int


class Operations(BaseModel):
    groups: list[GroupFigures]
    rejections_by_reason: list[ReasonRecords]


class DashboardData(BaseModel):
    """Every figure of the dashboard, for the key's network."""

    network: str
    currency: str
    currencies: list[str] = Field(description="the network's currencies, busiest first")
    since: datetime
    until: datetime
    station: str | None
    generated_at: datetime
    rollups_refreshed_at: datetime | None = Field(description="when the hourly rollups behind "
                                                  "revenue, sessions and authorizations were "
                                                  "last refreshed")  # fmt: skip
    rollups_refresh_ms: int | None
    stations: list[str]
    bucket: str = Field(description="hour, or day for ranges over 7 days")
    revenue_by_hour: list[HourRevenue]
    revenue_by_station: list[StationRevenue]
    totals: CurrencyRevenue
    sessions: Sessions
    authorizations: list[Authorizations]
    open_holds: OpenHolds
    in_doubt: InDoubt
    fraud: Fraud
    operations: Operations | None = Field(None, description="the admin scope only")


SINCE = Query(None, description="from this time, with a zone, before `until` and at most 400 "
              "days earlier (default: 7 days before `until`)")  # fmt: skip
UNTIL = Query(None, description="up to this time (excluded), with a zone (default: the end of "
              "the current hour)")  # fmt: skip
STATION = Query(None, max_length=validation.ID_MAX, pattern=PRINTABLE, description="one station")
CURRENCY = Query(None, pattern="^[A-Z]{3}$", description="ISO 4217 (default: the busiest)")


def router(reader: Any, ready: Any, db: Any) -> APIRouter:
    """The dashboard's routes: ``reader`` is the dependency admitting a finance:read key,
    ``ready(conn)`` the schema-checked connection, ``db`` the connection dependency."""
    routes = APIRouter(tags=["dashboard"])

    @routes.get("/dashboard", response_class=HTMLResponse, include_in_schema=False)
    def page() -> Response:
        return Response(_asset("dashboard.html"), media_type="text/html; charset=utf-8",
                        headers={"Cache-Control": "no-cache"})  # fmt: skip

    @routes.get("/dashboard/assets/{name}", include_in_schema=False)
    def asset(name: str) -> Response:
        if name == "plotly.min.js":
            body, media = _plotly(), "text/javascript; charset=utf-8"
        elif name in ASSETS:
            body, media = _asset(name), ASSETS[name]
        else:
            raise HTTPException(404, f"no dashboard asset {name!r}")
        return Response(body, media_type=media, headers={"Cache-Control": "max-age=3600"})

    @routes.get("/dashboard/data", response_model=DashboardData)
    def data(
        since: datetime | None = SINCE,
        until: datetime | None = UNTIL,
        station: str | None = STATION,
        currency: str | None = CURRENCY,
        conn: Any = db,
        who: Principal = reader,
    ) -> Response:
        """Every figure of the dashboard for the key's network: revenue and VAT by hour and
        station, sessions (count, average value and energy), authorization success by
        provider and payment method, open holds by age, settlement in doubt, fraud alerts;
        with the admin scope also processing counts and rejections by reason."""
        now = datetime.now(UTC)
        until = until or analytics.default_range(now)[1]
        since = since or until - analytics.DEFAULT_SPAN
        validation.require_zones(since=since, until=until)
        if since >= until:
            raise ValidationError("since must come before until")
        if until - since > MAX_SPAN:
            raise ValidationError(f"a range of at most {MAX_SPAN.days} days, please")
        filters = analytics.Filters(who.network_id, since, until, station or None, currency)
        operations = Scope.ADMIN in who.scopes
        figures = analytics.figures(ready(conn), filters, operations=operations, now=now)
        # Encoded straight from the dicts (orjson): validating thousands of rows through the
        # response model cost more than the queries; the model documents the same shape, and
        # the OpenAPI conformance test holds the answers to it.
        return Response(orjson.dumps(figures), media_type="application/json")

    return routes


class RollupRefresher:
    """Refreshes the dashboard's rollups every ``every_s`` seconds in a background thread while
    the API runs (the first at once), but never more than a quarter of the time: after a
    refresh that took t seconds it waits at least 3t (a big book refreshes less often rather
    than keep a core busy). A refresh that fails is logged and tried again next time; several
    API processes share the work (``refresh_rollups`` takes an advisory lock)."""

    def __init__(self, url: str, every_s: float) -> None:
        self.url = url
        self.every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rollup-refresher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            took = None
            try:
                with postgres.connect(self.url, autocommit=True) as conn:
                    took = analytics.refresh_rollups(conn)
                if took is not None:
                    log.debug("dashboard rollups refreshed in %.2fs", took)
            except Exception as exc:  # the API keeps serving; the page shows the rollups' age
                log.warning("dashboard rollups not refreshed: %s", exc)
            self._stop.wait(max(self.every_s, 3 * (took or 0.0)))
