"""``evledger sessions …`` and ``evledger tariffs publish``: run the sessions processor, inspect a
session, list the held ones, correct a CDR, size a pre-authorization, publish a tariff
version."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from entrypoints.bootstrap import App, bootstrap
from entrypoints.observe import observe_processors
from ledger.accounting.vat_rates import VatRates
from ledger.money import Money

console = Console()
sessions_app = typer.Typer(
    help="Sessions processor: meter values + tariff -> CDR + capture.", no_args_is_help=True
)
tariffs_app = typer.Typer(help="OCPI 2.2.1 tariffs.", no_args_is_help=True)
stations_app = typer.Typer(
    help="Charging stations: their meters' signing keys.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    """Add the ``sessions`` and ``tariffs`` command groups to the ``evledger`` command."""
    app.add_typer(sessions_app, name="sessions")
    app.add_typer(tariffs_app, name="tariffs")
    app.add_typer(stations_app, name="stations")


SINGLE_PHASE_HELP = "a connector wired to one phase, STATION/CONNECTOR (repeat)"


READ_COMMANDS = frozenset({"show", "held", "preauth", "receipt"})
"""``sessions`` commands that only read the database: they never migrate, so a role that may
only SELECT can run them."""
_read_command = False
"""Whether the ``sessions`` command about to run is a read command (set by ``_note_command``,
taken back by ``_app``)."""


@sessions_app.callback()
def _note_command(ctx: typer.Context) -> None:
    global _read_command
    _read_command = ctx.invoked_subcommand in READ_COMMANDS


def _app() -> App:
    """The app for the running command. A command that writes (run, reprice, release, tariffs
    publish) applies pending migrations first, as every processor does; a read command never
    migrates and stops with SchemaBehind (run `evledger db migrate`) when the schema is behind."""
    from connectors import postgres

    global _read_command
    read_only, _read_command = _read_command, False
    app = bootstrap()
    if read_only:
        with postgres.connect(app.database_url, autocommit=True) as conn:
            postgres.require_current_schema(conn)
    else:
        postgres.migrate(app.database_url)
    return app


@sessions_app.command("run")
def run(
    drain: bool = typer.Option(False, "--drain", help="stop once nothing arrives for 3 s"),
    shortfall_policy: str = typer.Option("write_off", help="write_off or charge"),
    group: str = typer.Option("evledger-sessions", help="consumer group"),
    single_phase: list[str] = typer.Option([], "--single-phase", help=SINGLE_PHASE_HELP),
    hold_unverified: list[str] = typer.Option(
        [],
        "--hold-unverified",
        help="a network whose sessions with failed signed meter values are held for review "
        "(repeat); elsewhere they are billed and flagged",
    ),
    hold_vat_mismatch: list[str] = typer.Option(
        [],
        "--hold-vat-mismatch",
        help="a network whose sessions billed at another VAT rate than their country's standard "
        "rate are held for review (repeat); elsewhere they are billed and flagged",
    ),
    vat_rates: Path = typer.Option(
        None, "--vat-rates", help="TOML rate table (EVLEDGER_VAT_RATES; default: built in)"
    ),
) -> None:
    """Run the sessions processor (exactly-once into PostgreSQL, events via the outbox)."""
    from ledger.sessions.rules import SessionsConfig, ShortfallPolicy
    from processors.sessions import build_sessions_processor

    config = SessionsConfig(
        shortfall_policy=ShortfallPolicy(shortfall_policy),
        single_phase_connectors=frozenset(single_phase),
        signed_hold_networks=frozenset(hold_unverified),
        vat_rates=_vat_rates(vat_rates),
        vat_hold_networks=frozenset(hold_vat_mismatch),
    )
    app = _app()
    processor = build_sessions_processor(app, group=group, config=config)
    observe_processors(app.settings, "sessions", [processor], app.database_url)
    try:
        if drain:
            stats = processor.drain()
            console.print(
                f"consumed {stats.consumed:,} = {stats.applied:,} applied + "
                f"{stats.duplicates:,} duplicates + {stats.rejected:,} rejected; "
                f"published {stats.published:,}"
            )
        else:
            console.print(f"sessions processor running as group {group} (Ctrl-C stops)")
            processor.run_forever()
    except KeyboardInterrupt:
        pass
    finally:
        processor.close()


@sessions_app.command("show")
def show(
    session_id: str,
    known_at: datetime = typer.Option(
        None,
        "--known-at",
        help="processing time, with a zone: the CDRs and the standing bill as known then",
        formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M%z", "%Y-%m-%d %H:%M:%S%z"],
    ),
    as_of: datetime = typer.Option(
        None,
        "--as-of",
        help="business time, with a zone: the CDRs and the standing bill of that time "
        "(a correction made later left out)",
        formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M%z", "%Y-%m-%d %H:%M:%S%z"],
    ),
) -> None:
    """A session's state, meter readings, flags, CDRs (all, or as of a business time, as known
    at a processing time), the bill that stands, and the history of its held reasons."""
    from connectors import postgres
    from connectors import sessions_store as store
    from ledger.sessions.session import standing_cdr

    with postgres.connect(_app().database_url) as conn:
        found = store.load_sessions(conn, [session_id]).get(session_id)
        if found is None:
            console.print(f"[red]no session {session_id}[/]")
            raise typer.Exit(1)
        readings = store.meter_rows_of(conn, session_id)
        cdrs = store.cdrs_of(conn, session_id, known_at, as_of=as_of)
        reasons = store.reason_history(conn, session_id)
        issued = [c for c in cdrs if c.kind == "issued"]
        entries = store.journal_entries_of_cdr(conn, issued[-1].cdr_id) if issued else []
    table = Table("field", "value", title=f"session {session_id}")
    for name in (f.name for f in dataclasses.fields(found)):
        value = getattr(found, name)
        if name not in ("flags", "signed_data") and value is not None:
            table.add_row(name, str(value))
    table.add_row("signed meter values", _signed_summary(found.signed_status, found.signed_data))
    table.add_row("meter readings", str(len(readings)))
    console.print(table)
    for flag in found.flags:
        console.print(f"[yellow]flag[/] {flag.code.value} seq_no={flag.seq_no}: {flag.detail}")
    cdr_table = Table("cdr", "kind", "total incl. VAT", "waived", "replaces/credits", "reason")
    for c in cdrs:
        cdr_table.add_row(
            c.cdr_id,
            c.kind,
            str(Money(c.total_incl_vat, c.currency)),
            ",".join(c.waived),
            c.replaces_cdr_id or c.credited_cdr_id or "",
            c.reason or "",
        )
    if cdrs:
        console.print(cdr_table)
    standing = standing_cdr(cdrs)
    known = f" as of {as_of:%Y-%m-%d %H:%M:%S%z}" if as_of else ""
    known += f" as known at {known_at:%Y-%m-%d %H:%M:%S%z}" if known_at else ""
    console.print(f"standing bill{known}: " + (f"{standing.cdr_id}, "
                  f"{Money(standing.total_incl_vat, standing.currency)} incl. VAT"
                  if standing else "none"))  # fmt: skip
    if issued and issued[-1].signed_data is not None:
        digest = hashlib.sha256(issued[-1].signed_data.encode()).hexdigest()
        console.print(f"CDR {issued[-1].cdr_id} signed_data sha256 {digest}")
    if entries:
        console.print(f"journal entries booking the CDR: {', '.join(entries)}")
    for r in reasons:
        until = "current" if r.cleared_at is None else f"until {r.cleared_at:%Y-%m-%d %H:%M:%S}"
        console.print(
            f"[yellow]{r.status}[/] {r.reason_code} since {r.since:%Y-%m-%d %H:%M:%S} ({until}"
            f"{', then ' + r.cleared_by if r.cleared_by else ''}): {r.detail}\n  action: {r.action}"
        )


def _signed_summary(status: str | None, signed_data: str | None) -> str:
    if status is None or signed_data is None:
        return "unsigned"
    records = len(json.loads(signed_data)["signed_values"])
    colour = "green" if status == "verified" else "red"
    return (
        f"[{colour}]{status}[/] ({records} OCMF record(s); `evledger sessions receipt` shows them)"
    )


@sessions_app.command("receipt")
def receipt_command(
    session_id: str,
    out: Path = typer.Option(Path("."), "--out", help="directory for ID.html and ID.pdf"),
) -> None:
    """The driver's receipt of a billed session as HTML and PDF: tariff, energy, time, parking,
    VAT per rate, the total captured and the signed meter data with how to verify it."""
    from connectors import postgres
    from entrypoints.receipt import load_receipt, render_html, render_pdf

    with postgres.connect(_app().database_url) as conn:
        receipt = load_receipt(conn, session_id)
    out.mkdir(parents=True, exist_ok=True)
    html, pdf = out / f"{session_id}.html", out / f"{session_id}.pdf"
    html.write_text(render_html(receipt), encoding="utf-8")
    pdf.write_bytes(render_pdf(receipt))
    console.print(f"wrote {html} and {pdf}")


@stations_app.command("register-key")
def register_key(
    station_id: str,
    public_key: str = typer.Argument(..., help="the meter's EC public key, DER in hex or base64"),
    note: str = typer.Option(None, help="e.g. the meter's serial number"),
) -> None:
    """Register the public key a station's meter signs with (OCMF): signed meter values are
    verified against it (docs/sessions.md "Signed meter values")."""
    from connectors import postgres
    from connectors import sessions_store as store
    from ledger.sessions.signed import normalize_key

    key = normalize_key(public_key)
    with postgres.connect(_app().database_url) as conn:
        added = store.register_meter_key(conn, station_id, key, note)
        conn.commit()
    said = "registered" if added else "already registered"
    console.print(f"station {station_id}: meter key …{key[-16:]} {said}")


@sessions_app.command("held")
def held(
    limit: int = typer.Option(100, min=1, max=10_000, help="rows to show"),
    offset: int = typer.Option(0, min=0, help="rows to skip"),
) -> None:
    """Sessions held, waiting for their tariff or with a refused stop: reason code, detail, the
    action that releases them, and since when (longest-held first)."""
    from connectors import postgres
    from connectors import sessions_store as store

    with postgres.connect(_app().database_url) as conn:
        rows = store.held_sessions(conn, limit, offset)
    if not rows:
        console.print("no held sessions")
        return
    table = Table("session", "status", "reason", "detail", "action", "since", title="held sessions")
    for r in rows:
        since = f"{r.since:%Y-%m-%d %H:%M:%S %Z}"
        table.add_row(r.session_id, r.status, r.reason_code, r.detail, r.action, since)
    console.print(table)


@sessions_app.command("reprice")
def reprice_command(
    session_id: str,
    waive: list[str] = typer.Option(..., help="dimension to waive, e.g. PARKING_TIME (repeat)"),
    reason: str = typer.Option(..., help="why, e.g. 'idle fee waived: charger fault'"),
) -> None:
    """Correct a CDR: credit it, issue the re-priced one and refund the difference."""
    from ledger.sessions.review import waivable
    from processors.sessions_corrections import reprice

    correction = reprice(_app(), session_id, waivable(waive), reason)
    console.print(
        f"credited {correction.credit.total_incl_vat}, issued "
        f"{correction.new_cdr.total_incl_vat}, {correction.kind.value}: refund "
        f"{correction.refund}, additional {correction.additional_charge}"
    )


@sessions_app.command("release")
def release_command(
    session_id: str,
    reason: str = typer.Option(..., help="the reviewer's decision"),
    single_phase: list[str] = typer.Option([], "--single-phase", help=SINGLE_PHASE_HELP),
) -> None:
    """Bill a session held for a meter flag, without the flagged readings (after review)."""
    from ledger.sessions.rules import SessionsConfig
    from processors.sessions_corrections import release

    config = SessionsConfig(single_phase_connectors=frozenset(single_phase))
    console.print(f"session {session_id}: {release(_app(), session_id, reason, config=config)}")


@sessions_app.command("preauth")
def preauth(
    tariff: str = typer.Option(..., "--tariff", help="tariff id"),
    version: int = typer.Option(None, help="tariff version (default: the latest)"),
    time_zone: str = typer.Option("Europe/Amsterdam", help="IANA zone of the location"),
    at: str = typer.Option(None, help="session start, ISO 8601 (default: now)"),
    max_power_kw: float = typer.Option(22.0, help="power assumed for the estimate"),
    max_hours: float = typer.Option(4.0, help="duration assumed for the estimate"),
) -> None:
    """Print the hold to place at session start for a tariff (ledger.pricing.preauth)."""
    from connectors import postgres
    from connectors import sessions_store as store
    from ledger.pricing.preauth import preauthorization_amount
    from ledger.sessions.billing import TariffCache, resolve_tariff

    starts_at = datetime.fromisoformat(at) if at else datetime.now(UTC)
    with postgres.connect(_app().database_url) as conn:
        versions = store.tariff_versions(conn, [tariff]).get(tariff, [])
    if version is None and versions:
        version = versions[-1].version
    found = resolve_tariff(versions, tariff, version, starts_at)
    amount = preauthorization_amount(
        TariffCache().get(found),
        starts_at=starts_at,
        time_zone=time_zone,
        max_power_kw=Decimal(str(max_power_kw)),
        max_duration=timedelta(hours=max_hours),
    )
    console.print(f"{tariff} v{found.version}: hold {amount}")


@tariffs_app.command("publish")
def publish(
    file: Path = typer.Argument(..., exists=True, help="OCPI 2.2.1 Tariff object, JSON"),
    version: int = typer.Option(None, help="version (default: latest known + 1)"),
) -> None:
    """Validate an OCPI tariff and publish it as TariffPublished on tariffs.events."""
    from connectors import postgres
    from connectors import sessions_store as store
    from ledger.envelope import Envelope, Source
    from ledger.events import TariffPublished
    from ledger.pricing.tariffs import parse_tariff_json

    text = file.read_text()
    tariff = parse_tariff_json(text)  # raises InvalidTariff with the path of the problem
    app = _app()
    if version is None:
        with postgres.connect(app.database_url) as conn:
            known = store.tariff_versions(conn, [tariff.id]).get(tariff.id, [])
        version = known[-1].version + 1 if known else 1
    event = TariffPublished(
        Envelope.new(app.settings.network_id, Source.ocpi),
        tariff.id,
        version,
        tariff.currency,
        text,
    )
    publisher = app.publisher()
    publisher.publish(event)
    publisher.flush()
    console.print(f"published {tariff.id} v{version} ({tariff.currency}) to tariffs.events")


def _vat_rates(path: Path | None) -> VatRates:
    """The VAT rate table: ``path``, else EVLEDGER_VAT_RATES, else the built-in one."""
    from connectors.settings import Settings

    if path is None:
        configured = Settings.from_env().vat_rates
        path = Path(configured) if configured else None
    return VatRates.parse(path.read_text()) if path is not None else VatRates.default()
