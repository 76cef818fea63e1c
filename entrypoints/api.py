"""The read-only finance HTTP API: the ``connectors.finance`` queries over FastAPI.

Every endpoint but ``/health`` needs an API key (``Authorization: Bearer evl_...`` or
``X-API-Key``) with the scope ``finance:read`` (``admin`` for ``/ledger/counts``), and answers for
the key's network only (``ledger.access``, ``evledger keys``).

``create_app(settings)`` builds the app; the connection pool opens when the app starts (lifespan),
never at import. Every list that can grow is paged the same way: ``limit``/``offset`` in, and
``{"items", "limit", "offset", "next_offset"}`` out, ``next_offset`` null on the last page (a
full last page included). Amounts are integer minor units with their currency. Every answer has
a response model in the OpenAPI (``/openapi.json``, docs at ``/docs``), errors included: JSON
``{"code", "detail", "request_id"}`` (``entrypoints.http_errors``; ``ErrorBody`` in the API): 404
for an unknown payment or route, 400 for a path or query parameter holding a control character
(a NUL) or over 1,000 characters, 422 for a parameter of the wrong form, 503 when the database
is unreachable or its schema lacks a migration (the API never migrates: ``evledger db migrate``
does), 500 for anything unexpected (its traceback logged under the request id). The contract:
docs/finance-queries.md, "The HTTP API and CSV files".
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, FastAPI, Path, Query
from pydantic import BaseModel, Field

from connectors import finance, fraud_store, postgres
from connectors.personal_data import pseudonymizer_if_configured
from connectors.settings import Settings
from entrypoints import dashboard, http_auth, http_db, http_errors, observe
from entrypoints.bootstrap import database_url as default_database_url
from entrypoints.http_errors import PRINTABLE, ErrorBody
from ledger import validation
from ledger.access import Principal, Scope
from ledger.sessions.rules import UnknownSession
from ledger.sessions.session import standing_cdr

Limit = Query(100, ge=1, le=finance.MAX_LIMIT, description="rows per page")
Offset = Query(0, ge=0, le=10**12, description="rows to skip (at most 10^12)")
AsOf = Query(None, description="business time, with a zone (2026-11-20T00:00:00Z)")
KnownAt = Query(None, description="processing time, with a zone: the books as they stood then "
                "(entries booked later left out; default: now)")  # fmt: skip
SessionAsOf = Query(None, description="business time, with a zone: the session's CDRs and "
                    "standing bill of that time (corrections made later left out)")  # fmt: skip
PaymentKnownAt = Query(None, description="processing time, with a zone: the payment as the "
                       "ledger knew it then (later bookings left out; default: now)")  # fmt: skip
SessionKnownAt = Query(None, description="processing time, with a zone: the session's CDRs "
                       "and standing bill as known then (default: now)")  # fmt: skip
Prefix = Query(None, max_length=validation.ID_MAX, pattern=PRINTABLE,
               description="account code prefix, e.g. assets:")  # fmt: skip
PaymentId = Path(min_length=1, max_length=validation.ID_MAX, pattern=PRINTABLE,
                 description="payment id")  # fmt: skip
SessionId = Path(min_length=1, max_length=validation.ID_MAX, pattern=PRINTABLE,
                 description="session id")  # fmt: skip
Since = Query(None, description="raised at or after this time, with a zone")
FraudSubjectId = Path(min_length=3, max_length=validation.ID_MAX + 10, pattern=PRINTABLE,
                      description="kind:id, e.g. token:DE-EVL-C00000042")  # fmt: skip
Group = Query(None, max_length=validation.ID_MAX, pattern=PRINTABLE, description="consumer group")


# -- response models: the OpenAPI contract ------------------------------------------------------
Minor = Annotated[int, Field(description="integer minor units of `currency` (EUR 12.34 is 1234)")]
Currency = Annotated[str, Field(description="ISO 4217 code", examples=["EUR"])]
Count = Annotated[int, Field(description="a number of records, not an amount")]
Item = TypeVar("Item", bound=BaseModel)


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "INVALID_PARAMETER: a control character or an "
          "over-long path or query parameter"},
    401: {"model": ErrorBody, "description": "UNAUTHENTICATED: no API key, or not a valid one "
          "(unknown, wrong secret, revoked)"},
    403: {"model": ErrorBody, "description": "FORBIDDEN_SCOPE: the key lacks the endpoint's "
          "scope (finance:read; admin for /ledger/counts)"},
    404: {"model": ErrorBody, "description": "NOT_FOUND (no such route), UNKNOWN_PAYMENT_ID, "
          "UNKNOWN_SESSION (also another network's payment or session)"},
    405: {"model": ErrorBody, "description": "METHOD_NOT_ALLOWED"},
    422: {"model": ErrorBody, "description": "INVALID_REQUEST: a parameter of the wrong form; "
          "VALIDATION_ERROR: as_of without a zone"},
    500: {"model": ErrorBody, "description": "INTERNAL_ERROR: a bug; see the log at request_id"},
    503: {"model": ErrorBody, "description": "DATABASE_UNAVAILABLE (retry), SCHEMA_BEHIND "
          "(run `evledger db migrate`)"},
}  # fmt: skip
"""Every error an endpoint can answer, documented on every operation (FastAPI's own 422 shape,
which evledger never sends, is replaced)."""


class Page(BaseModel, Generic[Item]):
    """One page of a list; ``next_offset`` is null on the last page."""

    items: list[Item]
    limit: int
    offset: int
    next_offset: int | None = Field(description="offset of the next page; null on the last")


class Health(BaseModel):
    status: str = Field(examples=["ok"])


class Balance(BaseModel):
    account: str
    currency: Currency
    debit: Minor
    credit: Minor
    balance: Minor = Field(description="debit - credit, minor units: negative for revenue and "
                           "liabilities")  # fmt: skip


class TrialBalanceLine(BaseModel):
    account: str
    currency: Currency
    debit_balance: Minor
    credit_balance: Minor


class Totals(BaseModel):
    debit: Minor
    credit: Minor


class TrialBalance(Page[TrialBalanceLine]):
    """A page of the trial balance; ``totals`` and ``balanced`` cover every page."""

    totals: dict[str, Totals] = Field(description="per currency, over the whole trial balance")
    balanced: bool = Field(description="debits equal credits in every currency")


class Posting(BaseModel):
    entry_id: str
    event_id: str
    event_type: str
    kind: str
    occurred_at: datetime
    account: str
    currency: Currency
    amount_minor: int = Field(description="minor units; debit positive, credit negative")


class Payment(BaseModel):
    payment_id: str
    network_id: str
    status: str
    provider: str
    currency: Currency
    authorized: Minor
    captured: Minor
    refunded: Minor
    hold: Minor
    station_id: str | None
    created_at: datetime
    last_event_at: datetime
    state: dict[str, Any] | None = Field(
        description="the ledger's stored payment state; null at a point in time (as_of, known_at)"
    )
    postings: list[Posting]


class OpenAuthorization(BaseModel):
    payment_id: str
    network_id: str
    provider: str
    currency: Currency
    authorized: Minor
    captured: Minor
    hold: Minor
    station_id: str | None
    created_at: datetime
    age_seconds: int


class Revenue(BaseModel):
    key: str = Field(description="the station id, UTC day (ISO date) or dimension, per `by`")
    currency: Currency
    revenue: Minor
    refunds: Minor
    net_revenue: Minor


class ProviderFlow(BaseModel):
    provider: str
    currency: Currency
    captures: Count
    captured: Minor
    refunds: Count
    refunded: Minor
    voids: Count
    voided: Minor
    capture_fees: Minor


class Vat(BaseModel):
    country: str = Field(description="country of supply, ISO 3166-1 alpha-2")
    vat_rate: str = Field(description="VAT rate in percent ('unassigned': the tariff gave none)")
    period: date = Field(description="first day of the month, quarter or year (books' zone)")
    currency: Currency
    taxable_base: Minor
    collected: Minor
    reversed: Minor
    payable: Minor


class GroupCounts(BaseModel):
    consumer_group: str
    applied: Count
    duplicates: Count
    rejected: Count
    consumed: Count = Field(description="applied + duplicates + rejected")
    updated_at: datetime


class HeldSession(BaseModel):
    session_id: str
    status: str
    reason_code: str = Field(description="catalogued in docs/errors.md")
    detail: str
    action: str = Field(description="what releases the session")
    since: datetime
    cleared_at: datetime | None
    cleared_by: str | None


class SessionCdr(BaseModel):
    cdr_id: str
    kind: str = Field(description="issued | credited")
    currency: str
    total_excl_vat: int = Field(description="minor units")
    total_incl_vat: int = Field(description="minor units")
    replaces_cdr_id: str | None
    credited_cdr_id: str | None
    signed_status: str | None = Field(description="verified, a reason code, or null (unsigned)")
    signed_data: str | None = Field(description="OCPI CDR signed_data, JSON text")
    occurred_at: datetime | None = Field(
        description="business time of the CDR's event: the session's stop for a bill, the "
        "correction's time for a credit and its re-issue"
    )


class SessionDetail(BaseModel):
    session_id: str
    network_id: str
    station_id: str
    country: str
    status: str
    reason_code: str | None
    reason_detail: str | None
    tariff_id: str
    tariff_version: int | None
    payment_id: str | None
    started_at: datetime
    stopped_at: datetime | None
    currency: str | None
    captured_minor: int
    refunded_minor: int
    shortfall_minor: int
    signed_status: str | None = Field(
        description="signed meter values: verified, the first failing reason code, or null"
    )
    flags: list[dict[str, Any]]
    cdrs: list[SessionCdr]
    standing_cdr_id: str | None = Field(
        description="the bill that stands: the last issued CDR no credit cancels (as known at "
        "known_at, when given); null if none"
    )


class FraudAlert(BaseModel):
    alert_id: str
    network_id: str
    subject: str = Field(description="kind:id (token:, card:, station:, terminal:)")
    score: float = Field(description="0 (benign) to 1")
    action: str = Field(description="the network's policy: alert, review or block")
    rules: list[str]
    reason: str = Field(description="the rules, strongest first, with their key facts")
    payment_id: str | None
    session_id: str | None
    raised_at: datetime
    review_status: str | None = Field(description="open or cleared for a review alert")


class FraudBlock(BaseModel):
    blocked: bool
    changed_at: datetime
    actor: str
    reason: str
    alert_id: str | None


class FraudBlockChange(BaseModel):
    blocked: bool
    at: datetime
    actor: str
    reason: str


class FraudScore(BaseModel):
    score_id: str
    score: float
    contributions: list[dict[str, Any]] = Field(
        description="each rule: rule, weight, strength and its evidence (docs/fraud.md)"
    )
    input_event_id: str | None
    scored_at: datetime


class FraudSubject(BaseModel):
    network_id: str
    subject: str
    block: FraudBlock | None
    block_history: list[FraudBlockChange]
    alerts: list[FraudAlert]
    scores: list[FraudScore]


# -- the app ------------------------------------------------------------------------------------
def create_app(
    settings: Settings, database_url: str | None = None, *, refresh_rollups_s: float | None = None
) -> FastAPI:
    """The API for the ledger in ``database_url`` (default: the settings' database). With
    ``refresh_rollups_s``, the dashboard's rollups are refreshed that often while it runs."""
    url = database_url or default_database_url(settings)
    # A token typed by a person finds its records under its pseudonym (None without the key).
    pseudonyms = pseudonymizer_if_configured(settings.pseudonym_key_path)
    refresher = dashboard.RollupRefresher(url, refresh_rollups_s) if refresh_rollups_s else None

    app = FastAPI(
        title="evledger finance API",
        version="1",
        description="Balances, trial balance, payments, revenue, VAT and open authorizations "
        "from the ledger projection. Amounts are integer minor units of their currency. "
        "Lists page with limit/offset; next_offset is null on the last page. Every error is "
        "{code, detail, request_id} (docs/errors.md).",
        lifespan=http_db.pool_lifespan(
            url,
            on_open=refresher.start if refresher else None,
            on_close=refresher.close if refresher else None,
        ),
        responses=ERRORS,
    )

    current = http_db.schema_checked(app)

    Db = Depends(http_db.connection)

    Reader = http_auth.caller(Scope.FINANCE_READ, Db, current)
    Risk = http_auth.caller(Scope.RISK, Db, current)
    Admin = http_auth.caller(Scope.ADMIN, Db, current)

    http_errors.install(
        app,
        overrides={
            finance.UnknownPaymentId: 404,
            UnknownSession: 404,
            fraud_store.UnknownFraudSubject: 404,
            postgres.SchemaBehind: 503,
            **http_auth.STATUSES,
        },
    )

    app.include_router(observe.telemetry_router())  # /metrics, /livez, /readyz
    app.include_router(dashboard.router(Reader, current, Db))  # /dashboard

    @app.get("/health", tags=["operations"], response_model=Health)
    def health(db: finance.Conn = Db) -> dict[str, Any]:
        """Up, the database answers and its schema is current."""
        current(db).execute("SELECT 1")
        return {"status": "ok"}

    @app.get("/balances", tags=["balances"], response_model=Page[Balance])
    def balances(
        as_of: datetime | None = AsOf,
        view: finance.BalanceView = finance.BalanceView.ALL,
        prefix: str | None = Prefix,
        limit: int = Limit,
        offset: int = Offset,
        known_at: datetime | None = KnownAt,
        db: finance.Conn = Db,
        who: Principal = Reader,
    ) -> dict[str, Any]:
        """Account balances of the key's network, now or as of a business time, as known now
        or at a processing time."""
        return _page(finance.balances(current(db), as_of=as_of, view=view, prefix=prefix,
                                      network=who.network_id, limit=limit, offset=offset,
                                      known_at=known_at))  # fmt: skip

    @app.get("/trial-balance", tags=["balances"], response_model=TrialBalance)
    def trial_balance(
        limit: int = Limit, offset: int = Offset, db: finance.Conn = Db, who: Principal = Reader
    ) -> dict[str, Any]:
        """Posted accounts of the key's network with a non-zero balance, a page at a time, and
        per-currency totals over the whole trial balance."""
        network = who.network_id
        page = finance.trial_balance(current(db), network=network, limit=limit, offset=offset)
        totals = finance.trial_balance_totals(db, network=network)
        return {
            **_page(page),
            "totals": {c: {"debit": d, "credit": cr} for c, (d, cr) in totals.items()},
            "balanced": all(d == cr for d, cr in totals.values()),
        }

    @app.get("/payments/{payment_id}", tags=["payments"], response_model=Payment)
    def payment(
        payment_id: str = PaymentId,
        as_of: datetime | None = AsOf,
        known_at: datetime | None = PaymentKnownAt,
        db: finance.Conn = Db,
        who: Principal = Reader,
    ) -> dict[str, Any]:
        """One payment: totals, status, state and its postings; ``as_of`` a business time (after
        its last event dated by then) and ``known_at`` a processing time (as the ledger knew it
        then). 404 if unknown (or another network's, or not yet known at that time)."""
        return finance.payment(current(db), payment_id, network=who.network_id, as_of=as_of,
                               known_at=known_at).as_dict()  # fmt: skip

    @app.get("/authorizations/open", tags=["payments"], response_model=Page[OpenAuthorization])
    def open_authorizations(
        older_than_seconds: int = Query(0, ge=0, le=100 * 365 * 86400),
        limit: int = Limit,
        offset: int = Offset,
        db: finance.Conn = Db,
        who: Principal = Reader,
    ) -> dict[str, Any]:
        """Open authorization holds, oldest first, with their age."""
        older_than = timedelta(seconds=older_than_seconds)
        return _page(finance.open_authorizations(current(db), older_than=older_than,
                                                 network=who.network_id, limit=limit,
                                                 offset=offset))  # fmt: skip

    @app.get("/revenue", tags=["revenue"], response_model=Page[Revenue])
    def revenue(
        by: finance.RevenueBy = finance.RevenueBy.STATION,
        since: date | None = None,
        until: date | None = None,
        limit: int = Limit,
        offset: int = Offset,
        db: finance.Conn = Db,
        who: Principal = Reader,
    ) -> dict[str, Any]:
        """Net revenue (excl. VAT) by station, day, tariff dimension, country or rate."""
        return _page(finance.revenue(current(db), by=by, since=since, until=until,
                                     network=who.network_id, limit=limit,
                                     offset=offset))  # fmt: skip

    @app.get("/providers/flows", tags=["revenue"], response_model=Page[ProviderFlow])
    def provider_flows(
        limit: int = Limit, offset: int = Offset, db: finance.Conn = Db, who: Principal = Reader
    ) -> dict[str, Any]:
        """Captures, refunds and voids per provider."""
        return _page(finance.provider_flows(current(db), network=who.network_id, limit=limit,
                                            offset=offset))  # fmt: skip

    @app.get("/vat", tags=["revenue"], response_model=Page[Vat])
    def vat(
        period: finance.VatPeriod = finance.VatPeriod.MONTH,
        limit: int = Limit,
        offset: int = Offset,
        db: finance.Conn = Db,
        who: Principal = Reader,
    ) -> dict[str, Any]:
        """Taxable base and VAT collected, reversed and payable per country, rate and period."""
        return _page(finance.vat(current(db), period=period, network=who.network_id,
                                 limit=limit, offset=offset))  # fmt: skip

    @app.get("/ledger/counts", tags=["operations"], response_model=Page[GroupCounts])
    def counts(
        group: str | None = Group,
        limit: int = Limit,
        offset: int = Offset,
        db: finance.Conn = Db,
        who: Principal = Admin,
    ) -> dict[str, Any]:
        """applied / duplicates / rejected per consumer group (operations: the admin scope)."""
        page = finance.counts(current(db), group, limit=limit, offset=offset)
        return {**_page(page), "items": [{**r.as_dict(), "consumed": r.consumed} for r in page]}

    @app.get("/sessions/held", tags=["operations"], response_model=Page[HeldSession])
    def held_sessions(
        limit: int = Limit, offset: int = Offset, db: finance.Conn = Db, who: Principal = Reader
    ) -> dict[str, Any]:
        """Charging sessions held, waiting for their tariff or with a refused stop: reason code,
        detail, the action that releases them and since when, longest-held first."""
        from connectors import sessions_store

        fetched = sessions_store.held_sessions(current(db), limit + 1, offset,
                                               network=who.network_id)  # fmt: skip
        return _page(finance.Page.of(fetched, limit, offset))

    @app.get("/fraud/alerts", tags=["fraud"], response_model=Page[FraudAlert])
    def fraud_alerts(
        since: datetime | None = Since,
        limit: int = Limit,
        offset: int = Offset,
        db: finance.Conn = Db,
        who: Principal = Risk,
    ) -> dict[str, Any]:
        """The key's network's fraud alerts, newest first (the risk scope)."""
        fetched = fraud_store.alerts(current(db), who.network_id, since=since, limit=limit + 1,
                                     offset=offset)  # fmt: skip
        page = finance.Page.of(fetched, limit, offset)
        return {"items": page.items, "limit": limit, "offset": offset,
                "next_offset": page.next_offset}  # fmt: skip

    @app.get("/fraud/subjects/{subject}", tags=["fraud"], response_model=FraudSubject)
    def fraud_subject(
        subject: str = FraudSubjectId, db: finance.Conn = Db, who: Principal = Risk
    ) -> dict[str, Any]:
        """A token, card, station or terminal as the risk team sees it: block state and
        history, alerts and latest scores with every rule's evidence. 404 if never scored."""
        return fraud_store.typed_subject_view(current(db), who.network_id, subject, pseudonyms)

    # After /sessions/held: routes match in order, and 'held' is not a session id.
    @app.get("/sessions/{session_id}", tags=["operations"], response_model=SessionDetail)
    def session(
        session_id: str = SessionId,
        known_at: datetime | None = SessionKnownAt,
        as_of: datetime | None = SessionAsOf,
        db: finance.Conn = Db,
        who: Principal = Reader,
    ) -> dict[str, Any]:
        """One charging session: its status and reason, what was billed and captured, the
        verification of its signed meter values and its CDRs, and the bill that stands; with
        ``known_at``, its CDRs and standing bill as evledger knew them then; with ``as_of``,
        those of that business time. 404 if unknown."""
        from connectors import sessions_store

        conn = current(db)
        found = sessions_store.load_sessions(conn, [session_id]).get(session_id)
        if found is None or found.network_id != who.network_id:
            raise UnknownSession("no such session", session_id=session_id)
        fields = {
            name: getattr(found, name)
            for name in SessionDetail.model_fields
            if name not in ("flags", "cdrs", "standing_cdr_id")
        }
        fields["status"] = found.status.value
        fields["flags"] = [sessions_store.flag_json(f) for f in found.flags]
        cdrs = sessions_store.cdrs_of(conn, session_id, known_at, as_of=as_of)
        fields["cdrs"] = [
            {name: getattr(c, name) for name in SessionCdr.model_fields} | {"kind": c.kind.value}
            for c in cdrs
        ]
        standing = standing_cdr(cdrs)
        fields["standing_cdr_id"] = standing.cdr_id if standing is not None else None
        return fields

    return app


def _page(page: finance.Page[Any]) -> dict[str, Any]:
    """A page as JSON: its rows and where the next page starts (null on the last)."""
    return {
        "items": [r.as_dict() for r in page],
        "limit": page.limit,
        "offset": page.offset,
        "next_offset": page.next_offset,
    }
