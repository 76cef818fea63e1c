"""``evledger export journal`` and ``evledger export mapping-example``: the journal for an
accounting system (``connectors.journal_export``), CSV or SAF-T Financial XML, with the
customer's general-ledger numbers from a mapping file (``EVLEDGER_GL_MAPPING`` or
``--mapping``). Reads only. See docs/finance-close.md, "Journal export"."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from enum import StrEnum
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from zoneinfo import ZoneInfo

import typer

from connectors import journal_export
from connectors.settings import Settings
from entrypoints.cli_ledger import _conn, _fail, console
from ledger.accounting.gl_mapping import GlMapping
from ledger.errors import LedgerError

export_app = typer.Typer(help="The journal, out to an accounting system.", no_args_is_help=True)


class ExportFormat(StrEnum):
    CSV = "csv"
    SAFT = "saft"


def register(app: typer.Typer) -> None:
    app.add_typer(export_app, name="export")


@export_app.command("journal")
def journal(
    out: Path = typer.Option(..., help="file to write"),
    since: datetime = typer.Option(
        None,
        "--from",
        formats=["%Y-%m-%d"],
        help="first day (in the books' zone); default: the start",
    ),
    until: datetime = typer.Option(
        None, "--to", formats=["%Y-%m-%d"], help="last day, included; default: everything"
    ),
    fmt: ExportFormat = typer.Option(ExportFormat.CSV, "--format", help="csv or saft (XML)"),
    mapping: Path = typer.Option(None, help="TOML: account pattern = GL account"),
    unmapped: str = typer.Option("fail", help="fail (default) or keep the evledger code"),
    memo: bool = typer.Option(False, help="include memo entries (authorization holds)"),
) -> None:
    """Export every posting of the entries dated from --from to --to, each with its
    general-ledger account and the CDR it books."""  # fmt: skip
    settings = Settings.from_env()
    zone = ZoneInfo(settings.books_time_zone)
    start = None if since is None else datetime.combine(since.date(), time(), zone)
    end = (
        None if until is None else datetime.combine(until.date() + timedelta(days=1), time(), zone)
    )
    if unmapped not in ("fail", "keep"):
        raise typer.BadParameter("--unmapped is fail or keep")
    try:
        rules = _mapping(mapping or (Path(settings.gl_mapping) if settings.gl_mapping else None))
        with _conn() as conn:
            rows = journal_export.postings(conn, start, end, memo=memo)
        codes = {r.account for r in rows}
        if rules is None:
            gl = {code: code for code in codes}  # no mapping: the evledger codes themselves
        elif unmapped == "keep":
            gl = {code: rules.gl_account(code) or code for code in codes}
        else:
            gl = rules.resolve(codes)
    except LedgerError as exc:
        raise _fail(exc) from exc
    if fmt is ExportFormat.CSV:
        with open(out, "w", newline="") as handle:
            count = journal_export.write_csv(handle, rows, gl, settings.books_time_zone)
        what = f"{count} postings"
    else:
        with open(out, "wb") as handle:
            count = journal_export.write_saft(
                handle, rows, gl, zone=settings.books_time_zone, company=settings.network_id,
                since=start.date() if start else None, until=until.date() if until else None,
                software_version=_version(),
            )  # fmt: skip
        what = f"{count} transactions ({len(rows)} lines)"
    console.print(f"wrote {what} to {out} ({fmt.value}, dates in {settings.books_time_zone})")


@export_app.command("mapping-example")
def mapping_example() -> None:
    """Print a mapping that covers every account family (numbers to replace with yours)."""
    print(journal_export.example_mapping(), end="")


def _mapping(path: Path | None) -> GlMapping | None:
    if path is None:
        return None
    try:
        text = path.read_text()
    except OSError as exc:
        raise typer.BadParameter(f"cannot read the mapping {path}: {exc}") from None
    return GlMapping.parse(text)


def _version() -> str:
    try:
        return version("evledger")
    except PackageNotFoundError:
        return "dev"
