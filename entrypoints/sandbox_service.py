"""``evledger sandbox serve``: the sandbox provider as a service of its own.

One ``SandboxProvider`` behind a small JSON-over-HTTP API (``connectors.providers.sandbox_remote``
is its client), so the provider's state outlives the settlement connectors that call it, as a
real acquirer's does. Used by ``make chaos``, which kills and restarts connectors and then asks
the provider what it really captured.

``/v1/*``: the provider port (authorize, capture, void, refund, status, find, report).
``/admin/*`` (loopback only, like the whole service): ``POST /admin/faults``
``{"fault": "timeout_after", "operation": "capture", "times": 3}``, ``POST /admin/latency``
``{"seconds": 2.5, "operation": "*"}``, ``POST /admin/clear``, ``GET /admin/state`` (every
payment and every line of the provider's books), ``GET /health``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from connectors.providers.base import AuthorizeCall, CaptureCall, RefundCall, VoidCall
from connectors.providers.errors import ProviderError, ProviderTimeout, ProviderUnavailable
from connectors.providers.sandbox import Fault, SandboxProvider
from connectors.providers.sandbox_remote import error_to_wire, from_wire, to_wire

log = logging.getLogger("evledger.sandbox")
MAX_BODY = 64 * 1024


def _status_of(exc: ProviderError) -> HTTPStatus:
    if isinstance(exc, ProviderTimeout):
        return HTTPStatus.GATEWAY_TIMEOUT
    if isinstance(exc, ProviderUnavailable):
        return HTTPStatus.SERVICE_UNAVAILABLE
    return HTTPStatus.PAYMENT_REQUIRED if exc.declined else HTTPStatus.UNPROCESSABLE_ENTITY


def routes(provider: SandboxProvider) -> dict[str, Callable[[dict[str, Any]], Any]]:
    """Path -> handler of the decoded body, answering JSON-ready data."""

    def find(body: dict[str, Any]) -> Any:
        found = provider.find_authorization(str(body["payment_id"]))
        return {"authorization": None if found is None else to_wire(found)}

    def report(body: dict[str, Any]) -> Any:
        since, until = (datetime.fromisoformat(body[k]) for k in ("since", "until"))
        return {"lines": to_wire(provider.settlement_report(since, until))}

    def faults(body: dict[str, Any]) -> Any:
        times = body.get("times", 1)
        provider.inject(Fault(body["fault"]), str(body.get("operation", "*")),
                        times=None if times is None else int(times))  # fmt: skip
        return {"injected": body}

    def latency(body: dict[str, Any]) -> Any:
        provider.set_latency(float(body["seconds"]), str(body.get("operation", "*")))
        return {"latency": body}

    def clear(_body: dict[str, Any]) -> Any:
        provider.clear_faults()
        return {"cleared": True}

    def state(_body: dict[str, Any]) -> Any:
        payments, lines = provider.snapshot()
        return {
            "provider": provider.name,
            "payments": [{"payment_id": pid, **to_wire(s)} for pid, s in payments],
            "lines": to_wire(lines),
        }

    return {
        "/v1/authorize": lambda b: to_wire(provider.authorize(from_wire(AuthorizeCall, b))),
        "/v1/capture": lambda b: to_wire(provider.capture(from_wire(CaptureCall, b))),
        "/v1/void": lambda b: to_wire(provider.void(from_wire(VoidCall, b))),
        "/v1/refund": lambda b: to_wire(provider.refund(from_wire(RefundCall, b))),
        "/v1/status": lambda b: to_wire(provider.fetch_status(str(b["provider_reference"]))),
        "/v1/find": find,
        "/v1/report": report,
        "/admin/faults": faults,
        "/admin/latency": latency,
        "/admin/clear": clear,
        "/admin/state": state,
        "/health": lambda _b: {"status": "ok", "provider": provider.name},
    }


def make_server(
    provider: SandboxProvider, port: int, host: str = "127.0.0.1"
) -> ThreadingHTTPServer:
    """The service on ``host:port`` (0: a free port; read ``server.server_address``)."""
    table = routes(provider)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            log.debug(format, *args)

        def _answer(self, status: HTTPStatus, document: Any) -> None:
            body = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _serve(self) -> None:
            handler = table.get(self.path.split("?", 1)[0])
            if handler is None:
                error = {"code": "NOT_FOUND", "message": f"no route {self.path}"}
                self._answer(HTTPStatus.NOT_FOUND, {"error": error})
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                error = {"code": "TOO_LARGE", "message": f"body over {MAX_BODY} bytes"}
                self._answer(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": error})
                return
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
                if not isinstance(body, dict):
                    raise ValueError("the body must be a JSON object")
                self._answer(HTTPStatus.OK, handler(body))
            except ProviderError as exc:
                self._answer(_status_of(exc), {"error": error_to_wire(exc)})
            except (KeyError, TypeError, ValueError) as exc:
                error = {"code": "PROVIDER_INVALID_REQUEST", "message": f"bad request: {exc!r}"}
                self._answer(HTTPStatus.BAD_REQUEST, {"error": error})

        do_GET = _serve  # http.server dispatches on do_<METHOD>
        do_POST = _serve

    return ThreadingHTTPServer((host, port), Handler)
