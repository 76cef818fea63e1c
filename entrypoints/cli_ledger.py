"""Ledger commands of ``evledger``: run the projector, query balances and revenue, serve the API.

``register(app)`` adds them to the main typer app. Queries go through ``connectors.finance``
(the same functions the HTTP API uses); tables are printed with rich, ``--csv FILE`` writes the
rows instead: a header row always (an empty result too), the first column named for what it
holds, money columns named ``<name>_minor`` (integer minor units of the row's ``currency``).
Lists print a page (``--limit``/``--offset``) and say where the next one starts. These commands
only read: they never migrate, so a role that may only SELECT runs them (``evledger db
migrate`` applies migrations). Errors a person can fix (an unknown payment id, an unreachable
database, a schema behind) print one line and exit with status 2.
"""

from __future__ import annotations

import csv
import getpass
import logging
import signal
import subprocess
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.table import Table

from connectors import finance
from connectors.settings import Settings
from entrypoints.bootstrap import database_url
from entrypoints.observe import instance_env, observe_processors, setup_process_logging
from ledger.errors import LedgerError

console = Console()
ledger_app = typer.Typer(help="The ledger projector: run it, see its counts.", no_args_is_help=True)
payments_app = typer.Typer(help="Payments as the ledger sees them.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the ledger commands to ``app`` (the ``evledger`` command)."""
    app.add_typer(ledger_app, name="ledger")
    app.add_typer(payments_app, name="payments")
    app.command("balances")(balances)
    app.command("trial-balance")(trial_balance)
    app.command("revenue")(revenue)
    app.command("open-authorizations")(open_authorizations)
    app.command("provider-flows")(provider_flows)
    app.command("vat")(vat)
    app.command("vat-check")(vat_check)
    app.command("api")(api)


@contextmanager
def _conn() -> Iterator[finance.Conn]:
    """A connection for a read command: it never migrates (a role that may only SELECT runs
    every query here) and stops with SchemaBehind, naming `evledger db migrate`, when the
    database lacks a migration."""
    from connectors import postgres

    with postgres.connect(database_url(Settings.from_env()), autocommit=True) as conn:
        postgres.require_current_schema(conn)
        yield conn


def _books_zone() -> ZoneInfo:
    """The books' time zone: where days and months begin (EVLEDGER_BOOKS_TIME_ZONE)."""
    return ZoneInfo(Settings.from_env().books_time_zone)


def _actor(given: str | None) -> str:
    """Who acts, for the records that keep it: the given name, else the OS user."""
    return given or getpass.getuser()


def _fail(exc: LedgerError) -> typer.Exit:
    console.print(f"[red]error:[/] {exc}")
    return typer.Exit(2)


def serve_projector(build: Any, kind: str, drain: bool) -> None:
    """Run a projector on the shared exactly-once loop: ``build(app)`` makes it; ``--drain``
    stops once caught up and prints the counts, otherwise it runs until Ctrl-C or SIGTERM with
    its /metrics and probes (``kind``: its name in entrypoints.observe.DEFAULT_PORTS)."""
    from connectors import postgres
    from entrypoints.bootstrap import bootstrap

    app = bootstrap()
    postgres.migrate(app.database_url)
    processor = build(app)
    try:
        if drain:
            stats = processor.drain()
            console.print(
                f"consumed {stats.consumed:,} = {stats.applied:,} applied + "
                f"{stats.duplicates:,} duplicates + {stats.rejected:,} rejected"
            )
        else:
            from entrypoints.observe import observe_processors

            telemetry = observe_processors(app.settings, kind, [processor], app.database_url)
            name = kind.replace("-", " ")
            console.print(f"{name} running as group {processor.group} (Ctrl-C stops)")
            try:
                processor.run_forever()
            finally:
                if telemetry is not None:
                    telemetry.close()
    except KeyboardInterrupt:
        pass
    finally:
        processor.close()


# -- queries ------------------------------------------------------------------------------------
def balances(
    as_of: datetime = typer.Option(
        None,
        "--as-of",
        help="business time, e.g. 2026-11-20T00:00Z",
        formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M%z", "%Y-%m-%d %H:%M:%S%z", "%Y-%m-%d"],
    ),
    view: finance.BalanceView = typer.Option(
        finance.BalanceView.ALL, help="posted, pending or all"
    ),
    prefix: str = typer.Option(None, help="only accounts starting with this, e.g. assets:"),
    limit: int = typer.Option(1000, help="rows per page"),
    offset: int = typer.Option(0, help="rows to skip"),
    csv_file: Path = typer.Option(None, "--csv", help="write CSV here instead of a table"),
    known_at: datetime = typer.Option(
        None,
        "--known-at",
        help="processing time: the books as they stood then, entries booked later left out",
        formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M%z", "%Y-%m-%d %H:%M:%S%z", "%Y-%m-%d"],
    ),
) -> None:
    """Account balances now, or as of a business time (recomputed from the journal), as known
    now or at a processing time (--known-at); a bare date means its midnight in the books' time
    zone (EVLEDGER_BOOKS_TIME_ZONE)."""
    if as_of is not None and as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=_books_zone())
    if known_at is not None and known_at.tzinfo is None:
        known_at = known_at.replace(tzinfo=_books_zone())
    try:
        with _conn() as conn:
            page = finance.balances(conn, as_of=as_of, view=view, prefix=prefix, limit=limit,
                                    offset=offset, known_at=known_at)  # fmt: skip
    except LedgerError as exc:
        raise _fail(exc) from exc
    if not _csv(csv_file, page, finance.BalanceRow):
        title = f"balances as of {as_of.isoformat()} ({as_of.tzinfo})" if as_of else "balances"
        if known_at is not None:
            title += f", as known at {known_at.isoformat()}"
        table = Table("account", "currency", "debit", "credit", "balance (Dr+)", title=title)
        for r in page:
            cells = _amounts(r.currency, r.debit, r.credit, r.balance)
            table.add_row(r.account, r.currency, *cells)
        console.print(table)
    _next(page)


def trial_balance(
    limit: int = typer.Option(finance.MAX_LIMIT, help="rows per page"),
    offset: int = typer.Option(0, help="rows to skip"),
    csv_file: Path = typer.Option(None, "--csv", help="write CSV here instead of a table"),
) -> None:
    """The posted ledger's trial balance; exits 1 if a currency does not balance (the totals
    cover every page)."""
    try:
        with _conn() as conn:
            page = finance.trial_balance(conn, limit=limit, offset=offset)
            totals = finance.trial_balance_totals(conn)
    except LedgerError as exc:
        raise _fail(exc) from exc
    balanced = all(d == c for d, c in totals.values())
    if not _csv(csv_file, page, finance.TrialBalanceRow):
        table = Table("account", "currency", "debit", "credit", title="trial balance (posted)")
        for r in page:
            cells = _amounts(r.currency, r.debit_balance, r.credit_balance, blank_zero=True)
            table.add_row(r.account, r.currency, *cells)
        for currency, (d, c) in sorted(totals.items()):
            table.add_row("[bold]total", currency, *_amounts(currency, d, c), end_section=False)
        console.print(table)
        console.print("[green]balanced[/]" if balanced else "[red]NOT balanced[/]")
    _next(page)
    if not balanced:
        raise typer.Exit(1)


POINT_IN_TIME = ["%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M%z",
                 "%Y-%m-%d %H:%M:%S%z", "%Y-%m-%d"]  # fmt: skip
"""The forms ``payments show --as-of/--known-at`` read (a database's now() has microseconds)."""


@payments_app.command("show")
def payments_show(
    payment_id: str = typer.Argument(..., help="evledger payment id"),
    as_of: datetime = typer.Option(
        None,
        "--as-of",
        help="business time: after the payment's last event dated by then",
        formats=POINT_IN_TIME,
    ),
    known_at: datetime = typer.Option(
        None,
        "--known-at",
        help="processing time: the payment as the ledger knew it then",
        formats=POINT_IN_TIME,
    ),
) -> None:
    """One payment: totals, status and every posting booked for it, now or at a point in time
    (a bare date means its midnight in the books' time zone)."""
    if as_of is not None and as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=_books_zone())
    if known_at is not None and known_at.tzinfo is None:
        known_at = known_at.replace(tzinfo=_books_zone())
    try:
        with _conn() as conn:
            p = finance.payment(conn, payment_id, as_of=as_of, known_at=known_at)
    except LedgerError as exc:
        raise _fail(exc) from exc
    if as_of is not None or known_at is not None:
        when = [f"as of {as_of.isoformat()}"] if as_of else []
        when += [f"as known at {known_at.isoformat()}"] if known_at else []
        console.print(f"[bold]{', '.join(when)}")
    c = p.currency
    head = Table.grid(padding=(0, 2))
    for label, value in [
        ("payment", p.payment_id), ("network", p.network_id), ("status", p.status),
        ("provider", p.provider), ("station", p.station_id or ""),
        ("authorized", f"{c} {finance.display(p.authorized, c)}"),
        ("captured", f"{c} {finance.display(p.captured, c)}"),
        ("refunded", f"{c} {finance.display(p.refunded, c)}"),
        ("open hold", f"{c} {finance.display(p.hold, c)}"),
        ("authorized at", p.created_at.isoformat()), ("last event", p.last_event_at.isoformat()),
    ]:  # fmt: skip
        head.add_row(f"[bold]{label}", value)
    console.print(head)
    table = Table("occurred", "event", "entry", "account", "debit", "credit")
    for line in p.postings:
        debit = finance.display(line.amount_minor, line.currency) if line.amount_minor > 0 else ""
        credit = finance.display(-line.amount_minor, line.currency) if line.amount_minor < 0 else ""
        table.add_row(line.occurred_at.strftime("%Y-%m-%d %H:%M"), line.event_type, line.kind,
                      line.account, debit, credit)  # fmt: skip
    console.print(table)


def revenue(
    by: finance.RevenueBy = typer.Option(
        finance.RevenueBy.STATION, help="station, day, dimension, country or country_rate (DE:19)"
    ),
    since: datetime = typer.Option(None, formats=["%Y-%m-%d"], help="first UTC day"),
    until: datetime = typer.Option(None, formats=["%Y-%m-%d"], help="last UTC day"),
    limit: int = typer.Option(1000, help="rows per page"),
    offset: int = typer.Option(0, help="rows to skip"),
    csv_file: Path = typer.Option(None, "--csv", help="write CSV here instead of a table"),
) -> None:
    """Net revenue (excl. VAT) recognized on capture, less refunds."""
    try:
        with _conn() as conn:
            page = finance.revenue(conn, by=by, since=_day(since), until=_day(until), limit=limit,
                                   offset=offset)  # fmt: skip
    except LedgerError as exc:
        raise _fail(exc) from exc
    if not _csv(csv_file, page, finance.RevenueRow, first=by.value):
        table = Table(
            by.value,
            "currency",
            "revenue",
            "refunds",
            "net revenue",
            title=f"revenue (days in {Settings.from_env().books_time_zone})",
        )
        for r in page:
            cells = _amounts(r.currency, r.revenue, r.refunds, r.net_revenue)
            table.add_row(r.key, r.currency, *cells)
        console.print(table)
    _next(page)


def open_authorizations(
    older_than_hours: float = typer.Option(0, help="only holds at least this old"),
    limit: int = typer.Option(1000, help="rows per page"),
    offset: int = typer.Option(0, help="rows to skip"),
    csv_file: Path = typer.Option(None, "--csv", help="write CSV here instead of a table"),
) -> None:
    """Payments whose authorization hold is still open, oldest first."""
    from datetime import timedelta

    try:
        with _conn() as conn:
            page = finance.open_authorizations(
                conn, older_than=timedelta(hours=older_than_hours), limit=limit, offset=offset
            )
    except LedgerError as exc:
        raise _fail(exc) from exc
    if not _csv(csv_file, page, finance.OpenAuthorization):
        table = Table("payment", "provider", "station", "currency", "hold", "age",
                      title="open holds")  # fmt: skip
        for r in page:
            age = f"{r.age_seconds // 86400}d {r.age_seconds % 86400 // 3600}h"
            table.add_row(r.payment_id, r.provider, r.station_id or "", r.currency,
                          finance.display(r.hold, r.currency), age)  # fmt: skip
        console.print(table)
    _next(page)


def provider_flows(
    limit: int = typer.Option(1000, help="rows per page"),
    offset: int = typer.Option(0, help="rows to skip"),
    csv_file: Path = typer.Option(None, "--csv", help="write CSV here instead of a table"),
) -> None:
    """Captures, refunds and voids per provider."""
    try:
        with _conn() as conn:
            page = finance.provider_flows(conn, limit=limit, offset=offset)
    except LedgerError as exc:
        raise _fail(exc) from exc
    if not _csv(csv_file, page, finance.ProviderFlow):
        table = Table("provider", "currency", "captures", "captured", "refunds", "refunded",
                      "voids", "voided", "capture fees")  # fmt: skip
        for r in page:
            c = r.currency
            table.add_row(r.provider, c, str(r.captures), finance.display(r.captured, c),
                          str(r.refunds), finance.display(r.refunded, c), str(r.voids),
                          finance.display(r.voided, c),
                          finance.display(r.capture_fees, c))  # fmt: skip
        console.print(table)
    _next(page)


def vat(
    period: finance.VatPeriod = typer.Option(finance.VatPeriod.MONTH, help="month, quarter, year"),
    limit: int = typer.Option(1000, help="rows per page"),
    offset: int = typer.Option(0, help="rows to skip"),
    csv_file: Path = typer.Option(None, "--csv", help="write CSV here instead of a table"),
) -> None:
    """The VAT return: taxable base, VAT collected, reversed and payable, per country of supply,
    VAT rate and period."""
    try:
        with _conn() as conn:
            page = finance.vat(conn, period=period, limit=limit, offset=offset)
    except LedgerError as exc:
        raise _fail(exc) from exc
    if not _csv(csv_file, page, finance.VatRow):
        zone = Settings.from_env().books_time_zone
        table = Table(
            "period", "country", "rate %", "currency", "taxable base", "collected", "reversed",
            "payable", title=f"VAT (periods in {zone})",
        )  # fmt: skip
        for r in page:
            table.add_row(r.period.isoformat(), r.country, r.vat_rate, r.currency,
                          *_amounts(r.currency, r.taxable_base, r.collected, r.reversed,
                                    r.payable))  # fmt: skip
        console.print(table)
    _next(page)


def vat_check(
    since: datetime = typer.Option(None, "--from", formats=["%Y-%m-%d"], help="first day"),
    until: datetime = typer.Option(None, "--to", formats=["%Y-%m-%d"], help="last day, included"),
    rates_file: Path = typer.Option(None, "--rates", help="TOML rate table (EVLEDGER_VAT_RATES)"),
) -> None:
    """Check every issued CDR's VAT rates against the standard rate of its country of supply on
    its supply date; list each line taxed otherwise (exit 1 if any)."""
    from datetime import timedelta

    from ledger.accounting.vat_rates import VatRates

    settings = Settings.from_env()
    zone = _books_zone()
    start = None if since is None else since.replace(tzinfo=zone)
    end = None if until is None else until.replace(tzinfo=zone) + timedelta(days=1)
    path = rates_file or (Path(settings.vat_rates) if settings.vat_rates else None)
    try:
        rates = VatRates.parse(path.read_text()) if path else VatRates.default()
        with _conn() as conn:
            cdrs = finance.cdr_vat_lines(conn, since=start, until=end)
        found = [
            (cdr, mismatch)
            for cdr in cdrs
            for mismatch in rates.mismatches(cdr.lines, cdr.country, cdr.supplied_at.date())
        ]
    except LedgerError as exc:
        raise _fail(exc) from exc
    if not found:
        console.print(f"{len(cdrs)} CDRs checked: every line at its country's standard rate")
        return
    table = Table("cdr", "session", "country", "supplied", "line", title="VAT rate mismatches")
    for cdr, mismatch in found:
        supplied = f"{cdr.supplied_at.astimezone(zone):%Y-%m-%d}"
        table.add_row(cdr.cdr_id, cdr.session_id, cdr.country, supplied, str(mismatch))
    console.print(table)
    console.print(f"{len(found)} lines of {len(cdrs)} CDRs taxed at another rate")
    raise typer.Exit(1)


# -- the projector ------------------------------------------------------------------------------
@ledger_app.command("run")
def ledger_run(
    drain: bool = typer.Option(False, help="stop when caught up instead of running forever"),
    instances: int = typer.Option(1, min=1, help="processes to run in the group"),
    batch_size: int = typer.Option(5000, help="records per transaction"),
    group: str = typer.Option("evledger-ledger", help="consumer group"),
    database_url_opt: str = typer.Option(None, "--database-url", help="default: the stack's"),
    instance_id: str = typer.Option(
        None,
        help="static group membership id (default: <group>-<n>); a restarted instance "
        "with the same id takes its partitions back at once",
    ),
    static: bool = typer.Option(
        True,
        help="static group membership; --no-static where instances come and go under new "
        "names (a Kubernetes Deployment): a static member that leaves holds its partitions "
        "until the session times out, and two with one id fence each other",
    ),
) -> None:
    """Run the ledger projector (several instances share the partitions of the group)."""
    if instances == 1:
        member = (instance_id or f"{group}-0") if static else None
        run_projector(group, batch_size, database_url_opt, drain, member)
        return
    args = ["--group", group, "--batch-size", str(batch_size)]
    if database_url_opt:
        args += ["--database-url", database_url_opt]
    if drain:
        args.append("--drain")
    if not static:
        args.append("--no-static")
    command = [sys.executable, "-m", "entrypoints.cli", "ledger", "run", *args]
    procs = [
        subprocess.Popen([*command, "--instance-id", f"{group}-{i}"], env=instance_env("ledger", i))
        for i in range(instances)
    ]
    console.print(f"started {instances} projector instances: pids {[p.pid for p in procs]}")
    try:
        codes = [p.wait() for p in procs]
    except KeyboardInterrupt:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        codes = [p.wait() for p in procs]
    if any(codes):
        raise typer.Exit(1)


def run_projector(
    group: str, batch_size: int, database_url: str | None, drain: bool, instance_id: str | None
) -> None:
    """One projector instance in this process, until stopped or (``drain``) caught up with
    the ends of its partitions as they were at the start."""
    from entrypoints.bootstrap import bootstrap
    from processors.ledger_projector import build_ledger_processor
    from processors.ledger_projector import drain as drain_to_end

    app = bootstrap(Settings.from_env())
    processor = build_ledger_processor(
        app,
        group=group,
        database_url=database_url,
        batch_size=batch_size,
        instance_id=instance_id,
    )
    observe_processors(app.settings, "ledger", [processor], database_url or app.database_url)
    try:
        if drain:
            logging.getLogger("evledger.ledger").info("drained: %s", drain_to_end(processor))
        else:
            processor.run_forever()
    except KeyboardInterrupt:
        pass
    finally:
        processor.close()


@ledger_app.command("counts")
def ledger_counts(
    group: str = typer.Option(None, help="one consumer group (default: all)"),
    limit: int = typer.Option(1000, help="rows per page"),
    offset: int = typer.Option(0, help="rows to skip"),
) -> None:
    """applied + duplicates + rejected = consumed, per consumer group."""
    try:
        with _conn() as conn:
            page = finance.counts(conn, group, limit=limit, offset=offset)
    except LedgerError as exc:
        raise _fail(exc) from exc
    table = Table("group", "applied", "duplicates", "rejected", "consumed", "updated")
    for r in page:
        table.add_row(r.consumer_group, str(r.applied), str(r.duplicates), str(r.rejected),
                      str(r.consumed), r.updated_at.strftime("%Y-%m-%d %H:%M:%S"))  # fmt: skip
    console.print(table)
    _next(page)


def api(
    host: str = typer.Option("127.0.0.1", help="address to listen on"),
    port: int = typer.Option(8000, help="port"),
    refresh_seconds: float = typer.Option(
        15.0, min=0, help="refresh the dashboard's hourly rollups this often (0: never)"
    ),
) -> None:
    """Serve the read-only finance API (OpenAPI at /openapi.json) and the analytics dashboard
    (/dashboard)."""
    import uvicorn

    from entrypoints.api import create_app

    settings = Settings.from_env()
    setup_process_logging(settings)
    app = create_app(settings, refresh_rollups_s=refresh_seconds or None)
    uvicorn.run(app, host=host, port=port, log_config=None)


# -- helpers ------------------------------------------------------------------------------------
def _amounts(currency: str, *amounts: int, blank_zero: bool = False) -> list[str]:
    return ["" if blank_zero and a == 0 else finance.display(a, currency) for a in amounts]


def _day(value: datetime | None) -> date | None:
    return value.date() if value is not None else None


def _csv(
    path: Path | None,
    rows: Iterable[finance.Row],
    row_type: type[finance.Row],
    first: str | None = None,
) -> bool:
    """Write ``rows`` to ``path`` as CSV under the header ``finance.csv_columns`` gives
    ``row_type`` (written for an empty result too, so a reader always knows the columns);
    False (nothing written) without a path."""
    if path is None:
        return False
    written = 0
    with open(path, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(finance.csv_columns(row_type, first=first))
        for row in rows:
            writer.writerow(row.as_dict().values())
            written += 1
    console.print(f"wrote {written} rows to {path}")
    return True


def _next(page: finance.Page[Any]) -> None:
    """Say where the next page starts, if there is one."""
    if page.next_offset is not None:
        console.print(f"more rows follow: add --offset {page.next_offset}")
