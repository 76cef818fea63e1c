"""HTTP ingest: ``POST /v1/events`` (one event) and ``POST /v1/events/batch`` for upstream
systems that are not Python (docs/ingest.md). ``evledger ingest serve`` runs it.

Every request needs an API key with the ``publish`` scope (``entrypoints.http_auth``); a key
publishes for its own network only. The body is read up to ``EVLEDGER_INGEST_MAX_BODY_BYTES``
(413 beyond, before parsing); the JSON shape per event is ``schemas.json_events``'s. A single
event answers 202 accepted, 200 duplicate, or 422 with the reason code and the field's path; a
batch answers 200 with one result per event (accepted / duplicate / rejected), or 422 when the
body itself is not a batch. Accepted means Kafka confirmed the event (``connectors.ingest``);
503 when it did not, nothing recorded. Errors use the one JSON shape of ``http_errors``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from connectors.ingest import Ingestor, Result
from connectors.personal_data import KeyFile, Vault, read_pseudonymizer
from connectors.settings import Settings
from entrypoints import http_auth, http_db, http_errors, observe
from entrypoints.bootstrap import App, bootstrap
from entrypoints.bootstrap import database_url as default_database_url
from entrypoints.http_errors import ErrorBody, HttpErrorCode, error_response, read_limited
from entrypoints.observe import setup_process_logging
from ledger.access import Principal, Scope
from schemas.json_events import JsonErrorCode, JsonEventError, JsonLimits, loads
from schemas.json_fast import FastDecoder

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "UNAUTHENTICATED: no API key, or not a valid one"},
    403: {"model": ErrorBody, "description": "FORBIDDEN_SCOPE: the key lacks the publish scope"},
    413: {"model": ErrorBody, "description": "BODY_TOO_LARGE"},
    422: {"description": "the body is not JSON or not a batch (ErrorBody), or, for a single "
          "event, its rejection with code and path (EventResult)"},
    500: {"model": ErrorBody, "description": "INTERNAL_ERROR: a bug; see the log at request_id"},
    503: {"model": ErrorBody, "description": "DATABASE_UNAVAILABLE, SCHEMA_BEHIND, or Kafka did "
          "not confirm the events (nothing recorded: retry)"},
}  # fmt: skip


class EventResult(BaseModel):
    """What became of one event."""

    index: int = Field(description="its place in the request (0 for a single event)")
    status: str = Field(description="accepted, duplicate or rejected")
    event_id: str | None = None
    event_type: str | None = None
    topic: str | None = Field(None, description="where an accepted or duplicate event is")
    code: str | None = Field(None, description="the reason code of a rejection (docs/errors.md)")
    path: str | None = Field(None, description="the field at fault, e.g. $.event.amount")
    detail: str | None = None


class BatchResult(BaseModel):
    accepted: int
    duplicates: int
    rejected: int
    results: list[EventResult]


class EventDocument(BaseModel):
    """``{"type": "<event type>", "event": {...}}``: the fields per type in docs/ingest.md."""

    type: str = Field(examples=["PaymentAuthorized"])
    event: dict[str, Any]


class BatchDocument(BaseModel):
    events: list[EventDocument]


def create_ingest_app(
    app: App,
    database_url: str | None = None,
    *,
    settings: Settings | None = None,
    topic: str | None = None,
) -> FastAPI:
    """The ingest API publishing with ``app``'s publisher and recording accepted ids in
    ``database_url`` (default: the settings' database; a role that may write). ``settings``:
    whose ``ingest_*`` limits apply (default: the app's); ``topic``: one scratch topic for every
    event (benchmarks)."""
    settings = settings or app.settings
    url = database_url or default_database_url(settings)
    limits = JsonLimits(max_string=settings.ingest_max_string, max_depth=settings.ingest_max_depth)
    vault = Vault(KeyFile(settings.master_key_path))
    pseudonyms = read_pseudonymizer(settings.pseudonym_key_path)
    ingestor = Ingestor(app.publisher(), limits, settings.max_future_skew_seconds, topic=topic,
                        vault=vault, pseudonyms=pseudonyms)  # fmt: skip
    max_body, max_batch = settings.ingest_max_body_bytes, settings.ingest_max_batch
    fast = FastDecoder(limits)

    api = FastAPI(
        title="evledger ingest API",
        version="1",
        description="Publish events over HTTP: one result per event (accepted, duplicate, "
        "rejected with its reason code and field path). Needs an API key with the publish "
        "scope. Errors are {code, detail, request_id} (docs/errors.md).",
        lifespan=http_db.pool_lifespan(url, on_close=ingestor.publisher.flush),
        responses=ERRORS,
    )
    http_errors.install(api, overrides={**http_auth.STATUSES, JsonEventError: 422})
    if settings.ingest_requests_per_connection:
        api.add_middleware(ConnectionRecycling, limit=settings.ingest_requests_per_connection)
    api.include_router(observe.telemetry_router())  # /metrics, /livez, /readyz

    current = http_db.schema_checked(api)

    Db = Depends(http_db.connection)
    Publisher = http_auth.caller(Scope.PUBLISH, Db, current)

    @api.post(
        "/v1/events",
        tags=["ingest"],
        response_model=EventResult,
        status_code=202,
        responses={200: {"model": EventResult, "description": "duplicate: already accepted"}},
        openapi_extra={"requestBody": {"content": {"application/json": {
            "schema": EventDocument.model_json_schema()}}, "required": True}},
    )  # fmt: skip
    async def publish_one(
        request: Request, db: Any = Db, who: Principal = Publisher
    ) -> JSONResponse:
        """Publish one event."""
        body = await read_limited(request, max_body)
        if body is None:
            return _too_large(request, max_body)
        event = fast.single(body)
        if event is not None:
            (result,) = await run_in_threadpool(ingestor.ingest, db, [event], who, parsed=True)
        else:  # the reference parser reads it, and names what is wrong
            (result,) = await run_in_threadpool(ingestor.ingest, db, [loads(body)], who)
        if result.status == "rejected":
            return _rejected(request, result)
        return JSONResponse(result.as_dict(), status_code=202 if result.status == "accepted"
                            else 200)  # fmt: skip

    @api.post(
        "/v1/events/batch",
        tags=["ingest"],
        response_model=BatchResult,
        openapi_extra={"requestBody": {"content": {"application/json": {
            "schema": BatchDocument.model_json_schema()}}, "required": True}},
    )  # fmt: skip
    async def publish_batch(request: Request, db: Any = Db, who: Principal = Publisher) -> Response:
        """Publish up to ``EVLEDGER_INGEST_MAX_BATCH`` events; one result each, in order."""
        body = await read_limited(request, max_body)
        if body is None:
            return _too_large(request, max_body)
        events: list[Any] | None = fast.batch(body)
        parsed = events is not None
        if events is None:  # the reference parser reads it, and names what is wrong
            doc = loads(body)
            if (
                not isinstance(doc, dict)
                or set(doc) != {"events"}
                or not isinstance(doc["events"], list)
            ):
                raise JsonEventError('a batch is {"events": [<event document>, ...]}', "$")
            events = doc["events"]
        if not events or len(events) > max_batch:
            raise JsonEventError(
                f"a batch holds 1 to {max_batch} events, not {len(events)}",
                "$.events",
                JsonErrorCode.BATCH_TOO_LARGE if events else None,
            )
        results = await run_in_threadpool(ingestor.ingest, db, events, who, parsed=parsed)
        counts = Counter(r.status for r in results)
        # The answer is built here, not validated through the response model (documented in
        # the OpenAPI all the same): for a batch of 1,000 that validation costs more than the
        # events' own checks.
        return Response(orjson.dumps({
            "accepted": counts["accepted"],
            "duplicates": counts["duplicate"],
            "rejected": counts["rejected"],
            "results": [r.as_dict() for r in results],
        }), media_type="application/json")  # fmt: skip

    return api


class ConnectionRecycling:
    """Closes a keep-alive connection after ``limit`` requests (``Connection: close`` on the
    answer; the client opens a new one for its next request).

    Workers of ``evledger ingest serve --workers N`` share the listening socket, and a
    connection stays with the worker that accepted it. A few clients that keep their
    connections open could all sit on one worker while another idles (measured: 0.84 and 0.28
    of a core for four clients on two workers). A new connection goes to a worker that is
    waiting, not one busy with a request, so recycling them spreads the clients over the
    workers as they go (0.60 and 0.59). One new connection per ``limit`` requests costs a
    fraction of a millisecond."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.served: dict[tuple[str, int], int] = {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        client = scope.get("client") if scope["type"] == "http" else None
        if client is None:
            await self.app(scope, receive, send)
            return
        key = (client[0], client[1])  # one TCP connection
        count = self.served.pop(key, 0) + 1
        if count < self.limit:
            if len(self.served) >= 10_000:  # clients that left before their limit
                self.served.clear()
            self.served[key] = count
            await self.app(scope, receive, send)
            return

        async def closing(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", ()), (b"connection", b"close")]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, closing)


def app_from_env() -> FastAPI:
    """The ingest API configured from the environment: what each worker of ``evledger ingest
    serve --workers N`` runs."""
    settings = Settings.from_env()
    setup_process_logging(settings)
    return create_ingest_app(bootstrap(settings))


def _too_large(request: Request, limit: int) -> JSONResponse:
    return error_response(
        413, HttpErrorCode.BODY_TOO_LARGE,
        f"the body is larger than {limit:,} bytes (EVLEDGER_INGEST_MAX_BODY_BYTES); send fewer "
        "events per request", request,
    )  # fmt: skip


def _rejected(request: Request, result: Result) -> JSONResponse:
    body = {**result.as_dict(), "request_id": http_errors.request_id_of(request)}
    return JSONResponse(body, status_code=422)
