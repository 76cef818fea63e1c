"""One JSON error shape for every HTTP endpoint evledger serves (finance API, webhooks).

Every error answers ``{"code": ..., "detail": ..., "request_id": ...}`` with the status its kind
calls for: 4xx for what the caller must change (resending the same request cannot help), 5xx for
what may pass (a retry can succeed). ``request_id`` is the ``X-Request-ID`` the caller sent (when
it is a sane token) or a fresh one; it is also sent back as a header and logged with every
unexpected error, so a person can find the traceback a 500 does not show.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from enum import StrEnum

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from ledger.errors import InfrastructureError, LedgerError, ValidationError

log = logging.getLogger("evledger.http")

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
MAX_PARAMETER_CHARS = 1000
"""Longest path or query parameter the finance API reads: ids are at most 255 characters."""


class ErrorBody(BaseModel):
    """The one error shape, as the OpenAPI documents of the HTTP apps describe it."""

    code: str = Field(description="reason code, catalogued in docs/errors.md")
    detail: str = Field(description="what is wrong, for a person; never echoes a bad value")
    request_id: str = Field(description="also in the X-Request-ID header and the server log")


class HttpErrorCode(StrEnum):
    """Reason codes of the HTTP layer itself (docs/errors.md)."""

    INVALID_REQUEST = "INVALID_REQUEST"
    INVALID_PARAMETER = "INVALID_PARAMETER"
    NOT_FOUND = "NOT_FOUND"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    BODY_TOO_LARGE = "BODY_TOO_LARGE"
    INTERNAL_ERROR = "INTERNAL_ERROR"


def error_response(status: int, code: str, detail: str, request: Request) -> JSONResponse:
    """The one error shape."""
    request_id = request_id_of(request)
    return JSONResponse(
        {"code": code, "detail": detail, "request_id": request_id},
        status_code=status,
        headers={"X-Request-ID": request_id},
    )


def request_id_of(request: Request) -> str:
    """The request's id: the caller's ``X-Request-ID`` when it is a plain token, else a new one
    (kept on the request so every answer and log line of one request shares it)."""
    known: str | None = getattr(request.state, "request_id", None)
    if known is None:
        sent = request.headers.get("x-request-id", "")
        known = sent if _REQUEST_ID.fullmatch(sent) else uuid.uuid4().hex
        request.state.request_id = known
    return known


def status_of(exc: LedgerError, overrides: Mapping[type[LedgerError], int]) -> int:
    """The status for a domain error: its own ``status`` when it carries one (an adapter's
    ``HTTPError``), the app's override for its class, else 503 for a retriable infrastructure
    failure, 500 for another one, 422 for bad input."""
    own = getattr(exc, "status", None)
    if isinstance(own, int):
        return own
    for cls in type(exc).__mro__:
        if cls in overrides:
            return overrides[cls]
    if isinstance(exc, InfrastructureError):
        return 503 if exc.retriable else 500
    if isinstance(exc, ValidationError):
        return 422
    return 500


def install(app: FastAPI, overrides: Mapping[type[LedgerError], int] | None = None) -> None:
    """Answer every error of ``app`` in the one shape, and tag every answer with its request
    id. ``overrides`` maps domain error classes to their status (e.g. a 404)."""
    statuses = dict(overrides or {})

    @app.middleware("http")
    async def tag_request(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        request_id = request_id_of(request)
        problem = parameter_problem(request)
        if problem is not None:
            return error_response(400, HttpErrorCode.INVALID_PARAMETER, problem, request)
        try:
            response = await call_next(request)
        except Exception as exc:  # a route's unexpected error, before Starlette's outer layer
            return internal_error(request, exc)
        response.headers.setdefault("X-Request-ID", request_id)
        return response

    @app.exception_handler(LedgerError)
    async def ledger_error(request: Request, exc: LedgerError) -> JSONResponse:
        status = status_of(exc, statuses)
        if status >= 500:
            log.error("%s (request_id=%s): %s", exc.code, request_id_of(request), exc)
        return error_response(status, exc.code, exc.message, request)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, HttpErrorCode.INVALID_REQUEST, _describe(exc), request)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: HttpErrorCode.NOT_FOUND, 405: HttpErrorCode.METHOD_NOT_ALLOWED}.get(
            exc.status_code, HttpErrorCode.INVALID_REQUEST
        )
        return error_response(exc.status_code, code, str(exc.detail), request)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        return internal_error(request, exc)  # an error in the middleware itself


def internal_error(request: Request, exc: Exception) -> JSONResponse:
    """The 500 of an unexpected error: its traceback logged under the request id, which is
    all the answer tells the caller."""
    request_id = request_id_of(request)
    log.error("unhandled error, request_id=%s", request_id, exc_info=exc)
    detail = f"unexpected error; the server log has it under request_id {request_id}"
    return error_response(500, HttpErrorCode.INTERNAL_ERROR, detail, request)


def _describe(exc: RequestValidationError) -> str:
    """Which parameters are wrong and why, without echoing their values (which may hold
    anything the caller sent)."""
    problems = []
    for error in exc.errors()[:5]:
        where = ".".join(str(part) for part in error.get("loc", ()))
        problems.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(problems) or "invalid request"


PRINTABLE = "^[ -~\u00a1-\u00ac\u00ae-\u00ff]*$"
"""What the OpenAPI promises a text parameter may hold: printable ASCII and Latin-1. The API
reads any printable text; a control character anywhere is a 400 INVALID_PARAMETER before any
query (``parameter_problem``), which this pattern keeps out of the contract."""


def parameter_problem(request: Request) -> str | None:
    """Why the path or a query parameter cannot be read, or None. NUL and other control
    characters never reach a query (PostgreSQL text cannot hold NUL), nor does a parameter
    longer than MAX_PARAMETER_CHARS."""
    path = request.url.path
    if _bad_text(path):
        return f"the path {_shown(path)} holds a control character or is too long"
    for name, value in request.query_params.multi_items():
        if _bad_text(name) or _bad_text(value):
            return (
                f"query parameter {_shown(name)} = {_shown(value)} holds a control character "
                f"or is longer than {MAX_PARAMETER_CHARS} characters"
            )
    return None


def _bad_text(text: str) -> bool:
    return len(text) > MAX_PARAMETER_CHARS or not text.isprintable()


def _shown(text: str) -> str:
    return ascii(text[:40]) + ("..." if len(text) > 40 else "")


async def read_limited(request: Request, limit: int) -> bytes | None:
    """The request body, or None once it exceeds ``limit`` bytes: decided before reading
    when Content-Length announces more, else as soon as the stream passes the limit."""
    declared = request.headers.get("content-length")
    if declared is not None and not (declared.isascii() and declared.isdecimal()):
        return None  # unreadable: refused like an oversized body rather than trusted
    if declared is not None and int(declared) > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
