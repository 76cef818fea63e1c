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
) -> None:
    """Serve POST /v1/events and POST /v1/events/batch (API keys with the publish scope)."""
    import uvicorn

    from entrypoints.bootstrap import bootstrap
    from entrypoints.ingest_app import create_ingest_app

    settings = Settings.from_env()
    setup_process_logging(settings)
    uvicorn.run(create_ingest_app(bootstrap(settings)), host=host, port=port, log_config=None)
