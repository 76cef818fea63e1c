"""The ``evledger`` command: stack, database schema, Avro schemas and the demo here; sessions,
settlement, ledger and finance commands in the ``cli_*`` modules it registers."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from connectors.settings import Settings
from devstack.stack import Stack
from ledger.errors import LedgerError

console = Console()
app = typer.Typer(
    help="evledger: event-sourced payment ledger for EV charging networks.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
stack_app = typer.Typer(
    help="Run the local stack: Kafka (KRaft), Apicurio Registry, PostgreSQL.", no_args_is_help=True
)
schemas_app = typer.Typer(help="Avro event schemas.", no_args_is_help=True)
db_app = typer.Typer(
    help="The PostgreSQL schema: apply pending migrations, or see which are pending.",
    no_args_is_help=True,
)
app.add_typer(stack_app, name="stack")
app.add_typer(schemas_app, name="schemas")
app.add_typer(db_app, name="db")
from entrypoints import cli_sessions  # noqa: E402

cli_sessions.register(app)
from entrypoints.cli_settlement import register as register_settlement  # noqa: E402

register_settlement(app)
from entrypoints.cli_ledger import register as register_ledger  # noqa: E402

register_ledger(app)
from entrypoints.cli_receivables import register as register_receivables  # noqa: E402

register_receivables(app)
from entrypoints.cli_close import register as register_close  # noqa: E402

register_close(app)
from entrypoints.cli_export import register as register_export  # noqa: E402

register_export(app)
from entrypoints.cli_audit import register as register_audit  # noqa: E402

register_audit(app)
from entrypoints.cli_keys import register as register_keys  # noqa: E402

register_keys(app)
from entrypoints.cli_fraud import register as register_fraud  # noqa: E402

register_fraud(app)
from entrypoints.cli_ingest import register as register_ingest  # noqa: E402

register_ingest(app)
from entrypoints.cli_replay import register as register_replay  # noqa: E402

register_replay(app)
from entrypoints.cli_drivers import register as register_drivers  # noqa: E402

register_drivers(app)


@app.callback()
def _process_options(
    log_format: str = typer.Option(
        None, "--log-format", help="json, human or auto (EVLEDGER_LOG_FORMAT; default auto)"
    ),
    metrics_port: int = typer.Option(
        None,
        "--metrics-port",
        help="port of /metrics, /livez, /readyz (EVLEDGER_METRICS_PORT; 0 none; default: "
        "the process's own, docs/observability.md)",
    ),
) -> None:
    # Passed on as the settings' variables: validated with them, and inherited by the
    # processes a command starts.
    if log_format is not None:
        os.environ["EVLEDGER_LOG_FORMAT"] = log_format
    if metrics_port is not None:
        os.environ["EVLEDGER_METRICS_PORT"] = str(metrics_port)


def _settings() -> Settings:
    return Settings.from_env()


def _stack() -> Stack:
    return Stack(_settings())


@stack_app.command("up")
def stack_up(
    brokers: int = typer.Option(
        None,
        "--brokers",
        min=1,
        max=9,
        help="Kafka nodes (3: a cluster, each topic in 3 copies); "
        "default: as last started, else 1 (EVLEDGER_BROKERS)",
    ),
) -> None:
    """Install (first run: Maven downloads), start and wait for every service."""
    settings = Settings.from_env(brokers=brokers) if brokers else _settings()
    Stack(settings).up(report=lambda line: console.print(f"[green]•[/] {line}"))


@stack_app.command("down")
def stack_down() -> None:
    """Stop every service cleanly (state is kept under EVLEDGER_HOME)."""
    _stack().down(report=lambda line: console.print(f"[green]•[/] {line}"))


@stack_app.command("status")
def stack_status() -> None:
    """Show whether each service runs and answers."""
    statuses = _stack().status()
    table = Table("service", "running", "ready", "address", "pid")
    for s in statuses:
        table.add_row(s.name, _yes(s.running), _yes(s.ready), s.address, str(s.pid or ""))
    console.print(table)
    if not all(s.ready for s in statuses):
        raise typer.Exit(1)


@stack_app.command("logs")
def stack_logs(
    service: str = typer.Argument("kafka", help="kafka, registry or postgres"),
    lines: int = typer.Option(50, "-n", help="how many lines from the end"),
    follow: bool = typer.Option(False, "-f", "--follow", help="keep printing new lines"),
) -> None:
    """Print a service's log."""
    path = _stack().log_file(service)
    if not path.exists():
        console.print(f"no log yet at {path}")
        raise typer.Exit(1)
    with open(path, errors="replace") as log:
        for line in log.readlines()[-lines:]:
            sys.stdout.write(line)
        while follow:
            line = log.readline()
            if line:
                sys.stdout.write(line)
            else:
                time.sleep(0.5)


@contextmanager
def _as_owner(what: str, command: str) -> Iterator[None]:
    """Exit 2 with what to do when this role may not ``what`` (only the schema's owner may)."""
    import psycopg

    try:
        yield
    except psycopg.errors.InsufficientPrivilege as exc:
        console.print(
            f"[red]error:[/] this role may not {what} ({exc.diag.message_primary}); "
            f"run {command} as the database's owner"
        )
        raise typer.Exit(2) from exc


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply the migrations the database lacks and print each one applied.

    Read commands and the finance API never migrate (they run under a role that may only
    SELECT); run this with a role that may change the schema after installing a new version.
    Processors, the demo and `evledger stack up` still migrate on start."""
    from connectors import postgres
    from entrypoints.bootstrap import database_url

    url = database_url(_settings())
    with _as_owner("change the schema", "`evledger db migrate`"):
        applied = postgres.migrate(url)
    for name in applied:
        console.print(f"applied {name}")
    total = len(postgres.migrations())
    console.print(f"{len(applied)} applied now; {total} of {total} in place")


@db_app.command("status")
def db_status() -> None:
    """List the migrations the database lacks; exit 1 if any (read only)."""
    from connectors import postgres
    from entrypoints.bootstrap import database_url

    with postgres.connect(database_url(_settings()), autocommit=True) as conn:
        pending = postgres.pending_migrations(conn)
    for name in pending:
        console.print(f"pending {name}")
    total = len(postgres.migrations())
    console.print(f"{total - len(pending)} of {total} migrations in place")
    if pending:
        console.print("run `evledger db migrate` to apply the pending ones")
        raise typer.Exit(1)


@db_app.command("refresh-rollups")
def db_refresh_rollups() -> None:
    """Refresh the analytics dashboard's rollups once (the API does it every 15 s unless
    started with --refresh-seconds 0: an API under a read-only role cannot, so run this as the
    owner from a scheduler instead)."""
    from connectors import analytics, postgres
    from entrypoints.bootstrap import database_url

    with (
        _as_owner("refresh the rollups", "it"),
        postgres.connect(database_url(_settings()), autocommit=True) as conn,
    ):
        took = analytics.refresh_rollups(conn)
    if took is None:
        console.print("another process is refreshing the rollups now; nothing done")
    else:
        console.print(f"dashboard rollups refreshed in {took:.2f}s")


@schemas_app.command("export")
def schemas_export(directory: Path = typer.Option(None, help="default: schemas/avro")) -> None:
    """Write one .avsc per event, derived from the event dataclasses."""
    from schemas.avro import AVSC_DIR, export_avsc
    from schemas.topics import ALL_EVENTS

    paths = export_avsc(ALL_EVENTS, directory or AVSC_DIR)
    console.print(f"wrote {len(paths)} schemas to {paths[0].parent}")


@schemas_app.command("docs")
def schemas_docs() -> None:
    """Regenerate docs/events.md (the event catalogue) from the event dataclasses."""
    from schemas.catalogue import write

    console.print(f"wrote {write()}")


@schemas_app.command("register")
def schemas_register() -> None:
    """Register every schema with the registry (BACKWARD compatibility)."""
    from schemas.registry import Registry

    settings = _settings()
    registry = Registry(settings.registry_url, settings.registry_client())
    registry.set_global_compatibility()
    ids = registry.register_all()
    table = Table("topic", "event", "schema id")
    for (topic, name), schema_id in sorted(ids.items()):
        table.add_row(topic, name.rsplit(".", 1)[-1], str(schema_id))
    console.print(table)


@app.command()
def demo(
    sessions: int = typer.Option(2000, help="simulated charging sessions"),
    database: str = typer.Option(
        "evledger_demo", help="database to (re)create for the run's projections"
    ),
) -> None:
    """Start the stack and run a simulated charging network through it, into a fresh database
    (replaced on every run, so give another name to keep a previous book)."""
    from entrypoints.bootstrap import bootstrap
    from entrypoints.demo import run_demo
    from entrypoints.observe import metrics_port

    settings = _settings()
    console.rule("[bold]0. local stack")
    Stack(settings).up(report=lambda line: console.print(f"[green]•[/] {line}"))
    port = metrics_port(settings, "demo")
    run_demo(bootstrap(settings), sessions, console, database=database, metrics_port=port)


def _yes(value: bool) -> str:
    return "[green]yes[/]" if value else "[red]no[/]"


def main() -> None:
    try:
        app()
    except LedgerError as exc:
        console.print(f"[red]error:[/] {exc}")
        sys.exit(2)


if __name__ == "__main__":
    main()
