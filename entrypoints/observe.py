"""Observability wiring of every long-running process: logging, the metrics and health server
beside a processor loop, and the same endpoints as routes of the HTTP apps.

- processors (``evledger ledger|sessions|settlement run``, the demo): ``serve_processors``
  starts ``connectors.telemetry_server`` on the process's port (``EVLEDGER_METRICS_PORT``,
  else ``DEFAULT_PORTS``);
- the finance API and the webhook receiver: ``telemetry_router`` adds ``/metrics``, ``/livez``
  and ``/readyz`` to the app itself.

docs/observability.md has the metrics, the ports and the probes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import REGISTRY
from prometheus_client.exposition import choose_encoder

from connectors import metrics, postgres
from connectors.consumer_lag import LagMonitor
from connectors.health import ProcessHealth, database_check
from connectors.logging_setup import setup_logging
from connectors.settings import Settings
from connectors.telemetry_server import TelemetryServer

log = logging.getLogger("evledger.telemetry")

DEFAULT_PORTS = {
    "demo": 9400,
    "ledger": 9410,
    "sessions": 9420,
    "settlement": 9430,
    "fraud": 9440,
    "fraud-projector": 9450,
    "drivers-projector": 9460,
    "fraud-scorer": 9470,
}
"""Where each kind of processor serves /metrics unless EVLEDGER_METRICS_PORT says otherwise;
``evledger ledger run --instances N`` gives its instances the ports from 9410 up."""


def setup_process_logging(settings: Settings, level: int = logging.INFO) -> str:
    """The one logging setup (``connectors.logging_setup``) in the format the settings name."""
    return setup_logging(settings.log_format, level)


def metrics_port(settings: Settings, kind: str, instance: int = 0) -> int:
    """The port a process of ``kind`` serves on: EVLEDGER_METRICS_PORT (0: none), else its
    default; ``instance`` is added to either (several instances on one host)."""
    base = DEFAULT_PORTS[kind] if settings.metrics_port == -1 else settings.metrics_port
    return base + instance if base else 0


def observe_processors(
    settings: Settings, kind: str, processors: Sequence[Any], database_url: str
) -> TelemetryServer | None:
    """What a processor command does once its processors are built: the one logging setup,
    then ``serve_processors`` for them (each has the ``lag`` of its loop)."""
    setup_process_logging(settings)
    return serve_processors(settings, kind, [p.lag for p in processors], database_url)


def instance_env(kind: str, instance: int) -> dict[str, str]:
    """The environment of instance ``instance`` of a processor command started several times
    on this host: each serves on its own port (the kind's base port + ``instance``)."""
    settings = Settings.from_env()
    env = dict(os.environ)
    env["EVLEDGER_METRICS_PORT"] = str(metrics_port(settings, kind, instance))
    return env


def serve_processors(
    settings: Settings,
    kind: str,
    monitors: Sequence[LagMonitor],
    database_url: str,
    *,
    port: int | None = None,
) -> TelemetryServer | None:
    """Serve /metrics, /livez and /readyz for the processors whose ``monitors`` are given, the
    database gauges read from ``database_url`` (none for a process without a database: the
    fraud workers). Returns None, after logging why, when the port
    is 0 or taken: the processors run on without it."""
    port = metrics_port(settings, kind) if port is None else port
    if port == 0:
        return None
    if database_url:
        metrics.DATABASE_GAUGES.watch(lambda: postgres.connect(database_url, autocommit=True))
    health = ProcessHealth(monitors, database_check(database_url) if database_url else None)
    try:
        server = TelemetryServer(health, settings.metrics_host, port).start()
    except OSError as exc:
        log.error(
            "no metrics server: %s:%d cannot be bound (%s); set EVLEDGER_METRICS_PORT",
            settings.metrics_host,
            port,
            exc.strerror or exc,
        )
        return None
    log.info("metrics at %s/metrics; probes at /livez and /readyz", server.url)
    return server


# -- the HTTP apps -------------------------------------------------------------------------------
Probe = Callable[[Request], None]
"""Raises when the app's database does not answer."""


def pool_probe(request: Request) -> None:
    """``SELECT 1`` on a connection of the app's pool (``app.state.pool``, the finance API)."""
    with request.app.state.pool.connection(timeout=2) as conn:
        conn.execute("SELECT 1")


def url_probe(database_url: str) -> Probe:
    """``SELECT 1`` on a fresh connection to ``database_url`` (the webhook receiver)."""
    check = database_check(database_url)
    return lambda _request: check()


def telemetry_router(probe: Probe = pool_probe) -> APIRouter:
    """``GET /metrics`` (the process's registry, database gauges through the app's pool when
    it has one), ``GET /livez`` (the app answers) and ``GET /readyz`` (its database answers):
    one ``include_router`` line per app."""
    router = APIRouter(tags=["operations"])

    @router.get("/metrics", include_in_schema=False)
    def prometheus_metrics(request: Request) -> Response:
        pool = getattr(request.app.state, "pool", None)
        if pool is not None:
            metrics.DATABASE_GAUGES.watch(lambda: _pooled(pool))
        encode, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encode(REGISTRY), media_type=content_type)

    @router.get("/livez", include_in_schema=False)
    def livez() -> JSONResponse:
        return _verdict(ProcessHealth().live())

    @router.get("/readyz", include_in_schema=False)
    def readyz(request: Request) -> JSONResponse:
        return _verdict(ProcessHealth(database=lambda: probe(request)).ready())

    return router


@contextmanager
def _pooled(pool: Any) -> Iterator[Any]:
    with pool.connection(timeout=2) as conn:
        yield conn


def _verdict(verdict: Any) -> JSONResponse:
    return JSONResponse(verdict.body(), status_code=200 if verdict.ok else 503)
