"""``evledger ingest serve``: the HTTP ingest API (docs/ingest.md)."""

from __future__ import annotations

import typer

from connectors.settings import Settings
from entrypoints.observe import setup_process_logging

ingest_app = typer.Typer(help="Publish events over HTTP.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(ingest_app, name="ingest")


@ingest_app.command("serve")
def serve(
    host: str = typer.Option("127.0.0.1", help="address to listen on (loopback by default)"),
    port: int = typer.Option(8100, help="port"),
    workers: int = typer.Option(
        1,
        min=1,
        max=64,
        help="worker processes sharing the port: one Python process uses about one core, so "
        "give it as many as the cores you can spare for ingest (docs/ingest.md#throughput)",
    ),
) -> None:
    """Serve POST /v1/events and POST /v1/events/batch (API keys with the publish scope)."""
    import uvicorn

    from entrypoints.bootstrap import bootstrap
    from entrypoints.ingest_app import create_ingest_app

    settings = Settings.from_env()
    setup_process_logging(settings)
    if workers == 1:
        api = create_ingest_app(bootstrap(settings))
        uvicorn.run(api, host=host, port=port, log_config=None)
    else:  # each worker builds its app from the same environment (a producer and a pool each)
        uvicorn.run("entrypoints.ingest_app:app_from_env", factory=True, workers=workers,
                    host=host, port=port, log_config=None)  # fmt: skip
