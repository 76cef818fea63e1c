"""``evledger settlement …``, ``evledger reconcile …`` and ``evledger webhooks serve``.

Provider credentials come from ``--providers FILE`` (JSON/TOML) or from STRIPE_* / BRAINTREE_*
variables (see ``connectors.provider_registry``); ``EVLEDGER_*`` stays reserved for Settings.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from connectors import postgres
from connectors.provider_registry import ProviderRegistry, load_providers
from connectors.providers.errors import ReportFormatError
from connectors.settings import Settings
from connectors.settlement_store import (
    AttemptStatus,
    AttemptStore,
    ledger_records,
    open_exceptions,
    record_run,
)
from entrypoints.observe import observe_processors, setup_process_logging
from ledger.settlement.reconciliation import (
    LineType,
    ReconciliationReport,
    SettlementLine,
    reconcile,
)

console = Console()
settlement_app = typer.Typer(
    help="Settlement connector: carry out settlement.commands at the providers.",
    no_args_is_help=True,
)
reconcile_app = typer.Typer(
    help="Match a provider settlement report against the ledger's captures and refunds."
)
webhooks_app = typer.Typer(help="Provider webhook receiver.", no_args_is_help=True)
sandbox_app = typer.Typer(
    help="The sandbox provider as a service of its own (outlives the connectors).",
    no_args_is_help=True,
)

SETTLEMENT_LAG = timedelta(days=3)
PROVIDERS_OPTION = typer.Option(None, "--providers", help="provider config file (JSON or TOML)")


def register(root: typer.Typer) -> None:
    """Add the settlement, reconcile and webhooks command groups to ``root``."""
    root.add_typer(settlement_app, name="settlement")
    root.add_typer(reconcile_app, name="reconcile")
    root.add_typer(webhooks_app, name="webhooks")
    root.add_typer(sandbox_app, name="sandbox")


# ---------------------------------------------------------------------------- settlement
@settlement_app.command("run")
def settlement_run(
    drain: bool = typer.Option(False, "--drain", help="stop once nothing new arrives"),
    idle: float = typer.Option(3.0, help="seconds without records that end --drain"),
    providers: Path | None = PROVIDERS_OPTION,
    group: str = typer.Option("evledger-settlement", help="consumer group"),
) -> None:
    """Run the connector (consumer group evledger-settlement) until stopped, or drain once."""
    from entrypoints.bootstrap import bootstrap
    from processors.settlement import build_settlement_processor

    app = bootstrap(Settings.from_env())
    connector = build_settlement_processor(app, load_providers(providers), group=group)
    observe_processors(app.settings, "settlement", [connector], app.database_url)
    try:
        if drain:
            stats = connector.drain(idle_seconds=idle)
            stats.published += connector.resolve()
            console.print(
                f"consumed {stats.consumed:,}: applied {stats.applied:,}, duplicates "
                f"{stats.duplicates:,}, rejected {stats.rejected:,}; published {stats.published:,}"
            )
        else:
            console.print("settlement connector running (Ctrl-C to stop)")
            connector.run_forever()
    except KeyboardInterrupt:
        pass
    finally:
        connector.close()


@settlement_app.command("attempts")
def settlement_attempts(
    status: AttemptStatus | None = typer.Option(None, help="pending, succeeded, failed, in_doubt"),
    limit: int = typer.Option(50, help="newest first"),
) -> None:
    """The provider-attempt log (in_doubt rows are the ones a person may have to chase)."""
    store = AttemptStore.connect(_database_url())
    try:
        rows = store.list(status, limit)
    finally:
        store.close()
    table = Table("updated", "payment", "action", "provider", "status", "tries", "reason", "detail")
    for a in rows:
        table.add_row(
            a.updated_at.strftime("%Y-%m-%d %H:%M:%S"),
            a.payment_id,
            a.action.value,
            a.provider,
            a.status.value,
            str(a.tries),
            a.reason_code or "",
            (a.detail or "")[:60],
        )
    console.print(table)


# ---------------------------------------------------------------------------- reconcile
def parse_report(text: str, fmt: str, provider: str) -> list[SettlementLine]:
    """Settlement lines from a report file: ``stripe`` balance transactions or ``braintree``
    settlement batch CSV. Raises ReportFormatError."""
    if fmt == "stripe":
        from connectors.providers.stripe import parse_balance_transactions_csv

        return parse_balance_transactions_csv(text, provider=provider)
    if fmt == "braintree":
        from connectors.providers.braintree import parse_settlement_batch_csv

        return parse_settlement_batch_csv(text, provider=provider)
    raise ReportFormatError(
        f"unknown report format {fmt!r} (stripe or braintree)", provider=provider
    )


def run_reconciliation(
    database_url: str,
    providers: ProviderRegistry,
    provider: str,
    *,
    report_file: Path | None = None,
    fmt: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> tuple[int, ReconciliationReport]:
    """Reconcile ``provider``'s report (the file, else its API ``settlement_report``) against the
    captures and refunds the connector booked; store the run and its exceptions.

    Payout lines are left out: they are matched against PayoutPaid, not against captures.
    Without ``since``/``until`` a file's window is its own date span, reaching back
    ``SETTLEMENT_LAG`` for captures that settled later. Raises ReportFormatError,
    UnknownProvider."""
    if report_file is not None:
        fmt = fmt or next((k for k in ("stripe", "braintree") if provider.startswith(k)), None)
        if fmt is None:
            raise ReportFormatError(
                "say --format stripe|braintree for this report", provider=provider
            )
        lines = parse_report(report_file.read_text(), fmt, provider)
        dated = [line.occurred_at for line in lines if line.occurred_at is not None]
        if dated and since is None and until is None:
            # Lines are dated when they settled, at or after the capture: reach back a little.
            since, until = min(dated) - SETTLEMENT_LAG, max(dated) + timedelta(days=1)
        source = str(report_file)
    else:
        since = since or datetime.now(UTC) - timedelta(days=30)
        until = until or datetime.now(UTC) + timedelta(minutes=1)
        lines = providers.get(provider).settlement_report(since, until)
        source = "api"
    lines = [line for line in lines if line.type is not LineType.PAYOUT]
    with postgres.connect(database_url) as conn:
        records = ledger_records(conn, provider, since, until)
        report = reconcile(lines, records)
        run_id = record_run(
            conn, provider=provider, source=source, since=since, until=until, report=report
        )
    return run_id, report


@reconcile_app.callback(invoke_without_command=True)
def reconcile_command(
    ctx: typer.Context,
    provider: str | None = typer.Option(None, "--provider", help="provider name, e.g. stripe"),
    report: Path | None = typer.Option(None, "--report", help="settlement CSV; default: the API"),
    fmt: str | None = typer.Option(None, "--format", help="stripe or braintree (default: name)"),
    since: datetime | None = typer.Option(None, help="window start (UTC)"),
    until: datetime | None = typer.Option(None, help="window end (UTC, exclusive)"),
    providers: Path | None = PROVIDERS_OPTION,
) -> None:
    """Reconcile a provider's settlement report; exceptions are stored and listed."""
    if ctx.invoked_subcommand is not None:
        return
    if provider is None:
        raise typer.BadParameter("--provider is required", param_hint="--provider")
    run_id, result = run_reconciliation(
        _database_url(),
        load_providers(providers),
        provider,
        report_file=report,
        fmt=fmt,
        since=_utc(since),
        until=_utc(until),
    )
    summary = Table("run", "matched", "amount mismatch", "missing in ledger", "missing at provider")
    summary.add_row(
        str(run_id),
        str(len(result.matched)),
        str(len(result.amount_mismatch)),
        str(len(result.missing_in_ledger)),
        str(len(result.missing_at_provider)),
    )
    console.print(summary)
    _print_exceptions(provider)
    if not result.is_clean:
        raise typer.Exit(1)


@reconcile_app.command("exceptions")
def reconcile_exceptions(provider: str | None = typer.Option(None, "--provider")) -> None:
    """Open reconciliation exceptions (a later clean run resolves them)."""
    _print_exceptions(provider)


def _print_exceptions(provider: str | None) -> None:
    with postgres.connect(_database_url()) as conn:
        rows = open_exceptions(conn, provider)
    table = Table(title="open reconciliation exceptions")
    for name in (
        "id",
        "provider",
        "category",
        "type",
        "reference",
        "payment",
        "provider",
        "ledger",
    ):
        table.add_column(name, no_wrap=name == "reference")
    for r in rows:
        category = f"{r.category} ({r.field})" if r.field else r.category
        table.add_row(
            str(r.id),
            r.provider,
            category,
            r.line_type,
            r.provider_reference,
            r.payment_id or "",
            r.provider_amount or "",
            r.ledger_amount or "",
        )
    console.print(table)


# ---------------------------------------------------------------------------- webhooks
@webhooks_app.command("serve")
def webhooks_serve(
    port: int = typer.Option(8090, help="TCP port"),
    host: str = typer.Option("127.0.0.1", help="bind address (loopback by default)"),
    providers: Path | None = PROVIDERS_OPTION,
) -> None:
    """Serve POST /webhooks/stripe and POST|GET /webhooks/braintree."""
    import uvicorn

    from entrypoints.webhooks_app import create_webhooks_app

    settings = Settings.from_env()
    setup_process_logging(settings)
    api = create_webhooks_app(settings, providers=load_providers(providers))
    uvicorn.run(api, host=host, port=port, log_config=None)


# ---------------------------------------------------------------------------- sandbox
@sandbox_app.command("serve")
def sandbox_serve(
    port: int = typer.Option(12112, help="TCP port"),
    host: str = typer.Option("127.0.0.1", help="bind address (loopback: the admin API is open)"),
    name: str = typer.Option("sandbox-http", help="the provider's name in results and reports"),
    multi_capture: bool = typer.Option(
        False, help="allow several partial captures per authorization (as Stripe multicapture)"
    ),
) -> None:
    """Serve one sandbox provider over HTTP (kind "sandbox-http" in --providers files)."""
    from connectors.providers.sandbox import SandboxProvider
    from entrypoints.sandbox_service import make_server

    setup_process_logging(Settings.from_env())
    server = make_server(SandboxProvider(name, multi_capture=multi_capture), port, host)
    console.print(f"sandbox provider {name!r} serving on http://{host}:{server.server_address[1]}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def _database_url() -> str:
    from entrypoints.bootstrap import bootstrap

    return bootstrap(Settings.from_env()).database_url


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)
