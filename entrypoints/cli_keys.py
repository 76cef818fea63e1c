"""``evledger keys create|list|revoke|rotate|audit``: API keys for the HTTP endpoints, each bound
to one network with scopes (``ledger.access``), and the append-only log of these actions
(docs/security.md). Run by an operator with write access to the database."""

from __future__ import annotations

import typer
from rich.table import Table

from connectors import keys_store
from entrypoints.cli_ledger import _actor, _conn, _fail, console
from ledger.access import KeyRecord, NewKey, Scope
from ledger.errors import LedgerError

keys_app = typer.Typer(help="API keys: create, list, revoke, rotate.", no_args_is_help=True)

Actor = typer.Option(None, help="who acts, for the audit log (default: the OS user)")
SCOPES = ", ".join(s.value for s in Scope)


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def create(
    network: str = typer.Option(..., help="the network (tenant) the key belongs to"),
    scope: list[str] = typer.Option(..., help=f"repeat for several: {SCOPES}"),
    name: str = typer.Option("", help="what the key is for (shown in lists)"),
    actor: str | None = Actor,
) -> None:
    """Make a key. The key is printed once: store it now, evledger keeps only its hash."""
    try:
        with _conn() as conn:
            new, record = keys_store.create(conn, network, scope, actor=_actor(actor), name=name)
    except LedgerError as exc:
        raise _fail(exc) from exc
    _print_new(new, record)


@keys_app.command("list")
def list_keys(network: str | None = typer.Option(None, help="only this network's keys")) -> None:
    """Every key: id, network, scopes, name, made, revoked. Never the secret."""
    try:
        with _conn() as conn:
            found = keys_store.keys(conn, network)
    except LedgerError as exc:
        raise _fail(exc) from exc
    table = Table("key id", "network", "scopes", "name", "created", "revoked", title="API keys")
    for k in found:
        revoked = k.revoked_at.isoformat(timespec="seconds") if k.revoked_at else ""
        table.add_row(k.key_id, k.network_id, " ".join(sorted(k.scopes)), k.name,
                      k.created_at.isoformat(timespec="seconds"), revoked)  # fmt: skip
    console.print(table)


@keys_app.command("revoke")
def revoke(
    key_id: str = typer.Argument(..., help="the key id (the part after evl_)"),
    reason: str = typer.Option(..., help="why, for the audit log"),
    actor: str | None = Actor,
) -> None:
    """Revoke a key: every request with it answers 401 from now on."""
    try:
        with _conn() as conn:
            record = keys_store.revoke(conn, key_id, actor=_actor(actor), reason=reason)
    except LedgerError as exc:
        raise _fail(exc) from exc
    console.print(f"key {record.key_id} ({record.network_id}) revoked at {record.revoked_at}")


@keys_app.command("rotate")
def rotate(
    key_id: str = typer.Argument(..., help="the key to replace"),
    actor: str | None = Actor,
) -> None:
    """Replace a key with a new one of the same network and scopes; the old one is revoked in
    the same transaction. For an overlap, create a second key first and revoke the old later."""
    try:
        with _conn() as conn:
            new, record = keys_store.rotate(conn, key_id, actor=_actor(actor))
    except LedgerError as exc:
        raise _fail(exc) from exc
    _print_new(new, record)
    console.print(f"key {key_id} is revoked")


@keys_app.command("audit")
def audit(limit: int = typer.Option(50, min=1, help="how many actions, newest first")) -> None:
    """The append-only log of key actions: who did what, when."""
    try:
        with _conn() as conn:
            rows = keys_store.audit_log(conn, limit)
    except LedgerError as exc:
        raise _fail(exc) from exc
    table = Table("#", "at", "actor", "action", "key id", "network", "detail", title="admin log")
    for r in rows:
        table.add_row(str(r.seq), r.at.isoformat(timespec="seconds"), r.actor, r.action,
                      r.key_id or "", r.network_id or "", str(r.detail))  # fmt: skip
    console.print(table)


def _print_new(new: NewKey, record: KeyRecord) -> None:
    console.print(f"key id  {record.key_id}")
    console.print(f"network {record.network_id}")
    console.print(f"scopes  {' '.join(sorted(record.scopes))}")
    console.print("key (shown once; evledger keeps only its hash):")
    print(new.token)
