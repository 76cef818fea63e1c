"""The small HTTP server a processor process runs beside its loop: ``GET /metrics``
(Prometheus exposition), ``GET /livez`` and ``GET /readyz`` (200 or 503, with the checks as
JSON). It runs in daemon threads and never touches the processor's Kafka or database clients.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.exposition import choose_encoder

from connectors.health import ProcessHealth, Verdict

log = logging.getLogger("evledger.telemetry")


class TelemetryServer:
    """Serves metrics and health on ``host:port`` (port 0: any free port, see ``port``)."""

    def __init__(self, health: ProcessHealth, host: str, port: int, registry: Any = REGISTRY):
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner._answer(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # scrapes and probes every few seconds: not worth a log line each

        self.health = health
        self.registry = registry
        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="evledger-telemetry", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = str(self._server.server_address[0])
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host  # nosec B104  # a display name, not a bind
        return f"http://{shown}:{self.port}"

    def start(self) -> TelemetryServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _answer(self, request: BaseHTTPRequestHandler) -> None:
        path = request.path.split("?", 1)[0]
        if path == "/metrics":
            encode, content_type = choose_encoder(request.headers.get("Accept", ""))
            _send(request, 200, content_type, encode(self.registry))
        elif path in ("/livez", "/readyz"):
            verdict: Verdict = self.health.live() if path == "/livez" else self.health.ready()
            body = json.dumps(verdict.body()).encode()
            _send(request, 200 if verdict.ok else 503, "application/json", body)
        else:
            _send(request, 404, "text/plain", b"not found: /metrics, /livez, /readyz\n")


def _send(request: BaseHTTPRequestHandler, status: int, content_type: str, body: bytes) -> None:
    request.send_response(status)
    request.send_header("Content-Type", content_type)
    request.send_header("Content-Length", str(len(body)))
    request.end_headers()
    request.wfile.write(body)
