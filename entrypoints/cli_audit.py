"""``evledger audit verify``: recompute the journal's hash chains and name the first entry that
breaks each (docs/audit.md). Reads only."""

from __future__ import annotations

import typer

from connectors import audit
from entrypoints.cli_ledger import _conn, _fail, console
from ledger.errors import LedgerError

audit_app = typer.Typer(help="Prove the journal is what was booked.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")


@audit_app.command("verify")
def verify() -> None:
    """Recompute every chain over the journal as stored: an edited, deleted, inserted or moved
    entry is named (exit 1); otherwise say how much was checked."""
    try:
        with _conn() as conn:
            checked, chains, breaks = audit.verify_journal(conn)
    except LedgerError as exc:
        raise _fail(exc) from exc
    if not breaks:
        console.print(f"journal intact: {checked} entries in {chains} chains verified")
        return
    for found in breaks:
        console.print(f"[red]{found}[/]")
    console.print(f"{len(breaks)} breaks in {checked} entries ({chains} chains)")
    raise typer.Exit(1)
