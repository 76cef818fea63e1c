"""``evledger close --period YYYY-MM`` and ``evledger periods``: close a month and lock it.

The close pack is a folder of CSV files (one per table of ``connectors.period_close.QUERIES``:
revenue by dimension and country, the VAT return figures, clearing and bank accounts from
opening to closing balance, the trial balance at the period's end, open holds, receivables
ageing, entries relocated into the period) and ``manifest.json`` with each file's SHA-256 and
row count, the period's bounds and zone, and whether the trial balance balances. The manifest
is also kept in the database (``closed_periods``). See docs/finance-close.md.
"""

from __future__ import annotations

import csv
import getpass
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from connectors import period_close
from connectors.settings import Settings
from entrypoints.bootstrap import database_url
from entrypoints.cli_ledger import _fail, console
from ledger.accounting.periods import Period
from ledger.errors import LedgerError


def register(app: typer.Typer) -> None:
    app.command("close")(close)
    app.command("periods")(periods)


def close(
    period: str = typer.Option(..., help="the month to close, YYYY-MM (in the books' time zone)"),
    out: Path = typer.Option(None, help="folder for the close pack (default: close-YYYY-MM)"),
    by: str = typer.Option(None, help="who closes it (default: the OS user)"),
) -> None:
    """Write the close pack of a month and lock it: later events dated in it are booked in the
    first open period, with a reference to their date."""
    from connectors import postgres

    settings = Settings.from_env()
    folder = out or Path(f"close-{period}")
    try:
        month = Period.of(period, settings.books_time_zone)
        with postgres.connect(database_url(settings)) as conn:
            postgres.require_current_schema(conn)
            closed = period_close.close(
                conn,
                month,
                by or getpass.getuser(),
                lambda tables: write_pack(folder, month, tables),
            )
    except LedgerError as exc:
        raise _fail(exc) from exc
    manifest = closed.manifest
    console.print(
        f"closed {month.name} ({month.zone}: {month.starts_at.isoformat()} to "
        f"{month.ends_at.isoformat()}) by {closed.closed_by}; pack in {folder}/ "
        f"({len(manifest['files'])} files); trial balance "
        f"{'balances' if manifest['trial_balance_balanced'] else 'DOES NOT BALANCE'}"
    )
    vat = Table("country", "currency", "taxable base", "VAT payable", title=f"VAT {month.name}")
    for row in manifest["vat_return"]:
        vat.add_row(row["country"], row["currency"], str(row["taxable_base_minor"]),
                    str(row["payable_minor"]))  # fmt: skip
    console.print(vat)


def write_pack(
    folder: Path, period: Period, tables: dict[str, period_close.Table]
) -> dict[str, Any]:
    """Write each table as ``<name>.csv`` and ``manifest.json``; return the manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, dict[str, Any]] = {}
    for name, (columns, rows) in tables.items():
        path = folder / f"{name}.csv"
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(columns)
            writer.writerows([_cell(v) for v in row] for row in rows)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        files[path.name] = {"sha256": digest, "rows": len(rows), "columns": list(columns)}
    balances: dict[str, int] = {}
    for _, currency, balance in tables["trial_balance"][1]:
        balances[currency] = balances.get(currency, 0) + int(balance)
    vat_columns, vat_rows = tables["vat_return"]
    manifest = {
        "period": period.name,
        "time_zone": period.zone,
        "starts_at": period.starts_at.isoformat(),
        "ends_at": period.ends_at.isoformat(),
        "written_at": datetime.now(UTC).isoformat(),
        "amounts": "integer minor units of each row's currency",
        "files": files,
        "trial_balance_balanced": all(total == 0 for total in balances.values()),
        "vat_return": [dict(zip(vat_columns, map(_cell, row), strict=True)) for row in vat_rows],
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    return manifest


def _cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return value if value is None or isinstance(value, int | str) else str(value)


def periods() -> None:
    """The closed periods and until when the books are locked."""
    from connectors import postgres

    try:
        with postgres.connect(database_url(Settings.from_env())) as conn:
            postgres.require_current_schema(conn)
            rows = period_close.closed_periods(conn)
            until = period_close.locked_until(conn)
    except LedgerError as exc:
        raise _fail(exc) from exc
    table = Table("period", "zone", "closed at", "by", title="closed periods")
    for name, zone, at, who in rows:
        table.add_row(name, zone, f"{at:%Y-%m-%d %H:%M %Z}", who)
    console.print(table if rows else "no period closed yet")
    console.print(f"locked until: {until.isoformat() if until else 'nothing locked'}")
