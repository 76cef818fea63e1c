"""``evledger audit verify``: recompute the journal's hash chains and name the first entry that
breaks each (docs/audit.md). Reads only."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from connectors import audit, signing
from connectors.settings import Settings
from entrypoints.cli_ledger import _conn, _fail, console
from ledger.errors import LedgerError

audit_app = typer.Typer(help="Prove the journal is what was booked.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")


@audit_app.command("verify")
def verify(
    public_key: Path | None = typer.Option(
        None,
        "--public-key",
        help="PEM public key to check the signed checkpoints with (default: the public half of "
        "EVLEDGER_AUDIT_SIGNING_KEY_FILE)",
    ),
) -> None:
    """Recompute every chain over the journal as stored: an edited, deleted, inserted or moved
    entry is named (exit 1). Then every signed checkpoint: its signature, and that the chains
    still pass through every head it signed (a journal rewritten with recomputed hashes after a
    checkpoint is caught there). Otherwise say how much was checked."""
    try:
        with _conn() as conn:
            checked, chains, breaks = audit.verify_journal(conn)
            key = _public_key(public_key, required=False)
            signed, problems = (0, []) if key is None else audit.verify_checkpoints(conn, key)
            stored = len(audit.checkpoints(conn)) if key is None else signed
    except LedgerError as exc:
        raise _fail(exc) from exc
    for found in breaks:
        console.print(f"[red]{found}[/]")
    for problem in problems:
        console.print(f"[red]CHECKPOINT: {problem}[/]")
    if breaks or problems:
        console.print(f"{len(breaks)} breaks in {checked} entries ({chains} chains); "
                      f"{len(problems)} checkpoint problems in {signed} checkpoints")  # fmt: skip
        raise typer.Exit(1)
    console.print(f"journal intact: {checked} entries in {chains} chains verified")
    if key is not None:
        console.print(f"{signed} signed checkpoints hold (their signatures and every head)")
    elif stored:
        console.print(f"[yellow]{stored} signed checkpoints not checked: give --public-key or "
                      "set EVLEDGER_AUDIT_SIGNING_KEY_FILE[/]")  # fmt: skip


@audit_app.command("keygen")
def keygen(
    out: Path = typer.Option(..., help="where to write the private key (PEM, mode 0600)"),
) -> None:
    """Make an Ed25519 signing key for checkpoints; print its public key (give that to the
    auditors). An existing file is never overwritten."""
    key = signing.generate_key()
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise typer.BadParameter(f"{out} exists; choose another path") from None
    with os.fdopen(fd, "wb") as f:
        f.write(signing.private_pem(key))
    print(signing.public_pem(key.public_key()).decode(), end="")
    console.print(f"private key written to {out} (0600); set EVLEDGER_AUDIT_SIGNING_KEY_FILE={out}")


@audit_app.command("public-key")
def public_key() -> None:
    """Print the PEM public key of EVLEDGER_AUDIT_SIGNING_KEY_FILE and its fingerprint."""
    try:
        key = _private_key().public_key()
    except LedgerError as exc:
        raise _fail(exc) from exc
    print(signing.public_pem(key).decode(), end="")
    console.print(f"fingerprint {signing.fingerprint(key)}")


@audit_app.command("checkpoint")
def checkpoint() -> None:
    """Sign the chain heads as they stand now and keep the checkpoint (run it periodically,
    e.g. hourly from cron, and copy the output somewhere the database's admins cannot write)."""
    try:
        key = _private_key()
        with _conn() as conn:
            stored = audit.take_checkpoint(conn, key)
    except LedgerError as exc:
        raise _fail(exc) from exc
    cp = stored.checkpoint
    key_id = stored.signed.key_fingerprint[:16]
    console.print(f"checkpoint {stored.id}: {cp.entries} entries, {len(cp.heads)} chain heads, "
                  f"taken {cp.taken_at.isoformat()}, key {key_id}")  # fmt: skip
    print(json.dumps({"document": stored.signed.document.decode(),
                      "signature": stored.signed.signature.hex(),
                      "key_fingerprint": stored.signed.key_fingerprint}))  # fmt: skip


@audit_app.command("checkpoints")
def list_checkpoints() -> None:
    """The stored checkpoints, oldest first."""
    try:
        with _conn() as conn:
            found = audit.checkpoints(conn)
    except LedgerError as exc:
        raise _fail(exc) from exc
    table = Table("id", "taken", "entries", "chains", "key", title="signed checkpoints")
    for s in found:
        table.add_row(str(s.id), s.checkpoint.taken_at.isoformat(timespec="seconds"),
                      str(s.checkpoint.entries), str(len(s.checkpoint.heads)),
                      s.signed.key_fingerprint[:16])  # fmt: skip
    console.print(table)


def _private_key() -> Any:
    path = Settings.from_env().audit_signing_key_file
    if not path:
        raise signing.SigningKeyError(
            "no signing key: set EVLEDGER_AUDIT_SIGNING_KEY_FILE (make one with "
            "`evledger audit keygen --out FILE`)"
        )
    try:
        pem = Path(path).read_bytes()
    except OSError as exc:
        raise signing.SigningKeyError(f"cannot read the signing key {path}: {exc}") from None
    return signing.load_private(pem, path)


def _public_key(path: Path | None, *, required: bool) -> Any:
    if path is not None:
        try:
            return signing.load_public(path.read_bytes(), str(path))
        except OSError as exc:
            raise signing.SigningKeyError(f"cannot read {path}: {exc}") from None
    if not Settings.from_env().audit_signing_key_file and not required:
        return None
    return _private_key().public_key()


@audit_app.command("export")
def export_pack(
    since: datetime = typer.Option(..., "--from", formats=["%Y-%m-%d"], help="first day"),
    until: datetime = typer.Option(..., "--to", formats=["%Y-%m-%d"], help="last day"),
    out: Path = typer.Option(..., help="a new directory for the pack"),
    network: str | None = typer.Option(None, help="only this network's entries"),
) -> None:
    """Write an audit pack: journal (per posting), chain links with the bytes they cover,
    balances at the end, CDRs, settlement attempts, rejections, in CSV and Parquet, and a
    manifest with every file's SHA-256 and a checkpoint, signed with the audit key (days in
    the books' time zone)."""
    from connectors import audit_pack

    settings = Settings.from_env()
    try:
        key = _private_key()
        with _conn() as conn:
            written = audit_pack.export(conn, out, since.date(), until.date(), key,
                                        network=network, zone=settings.books_time_zone)  # fmt: skip
    except LedgerError as exc:
        raise _fail(exc) from exc
    console.print(f"wrote {written.files} files to {written.directory}: {written.entries} "
                  f"entries, {written.postings} postings; verify with `evledger audit "
                  f"verify-pack {written.directory} --public-key FILE`")  # fmt: skip


@audit_app.command("verify-pack")
def verify_pack(
    directory: Path = typer.Argument(..., help="the pack's directory"),
    public_key: Path = typer.Option(..., "--public-key", help="the audit key's public PEM"),
) -> None:
    """Check a pack offline, with the public key alone: the manifest's signature, every file's
    SHA-256, and every chain link recomputed from the bytes it covers (exit 1 naming each
    problem)."""
    from connectors import audit_pack

    try:
        key = _public_key(public_key, required=True)
    except LedgerError as exc:
        raise _fail(exc) from exc
    problems = audit_pack.verify(directory, key)
    for problem in problems:
        console.print(f"[red]{problem}[/]")
    if problems:
        raise typer.Exit(1)
    console.print(f"pack {directory} verifies: signature, every file and every chain link")


@audit_app.command("compare")
def compare(
    live: str = typer.Option(..., help="URL of the live projection's database"),
    rebuilt: str = typer.Option(..., help="URL of the replayed one (evledger replay --into)"),
    projection: list[str] = typer.Option(
        ["ledger"], help="ledger, sessions and/or settlement (repeat for several)"
    ),
) -> None:
    """Prove a replayed projection identical to the live one: the journal entry by entry, the
    chain links, the balances and the payment states (ledger); sessions, meter values, holds,
    CDRs and tariff versions (sessions); the provider attempts as far as the log holds them
    (settlement). Each difference is listed (exit 1)."""
    from connectors import postgres

    unknown = sorted(set(projection) - set(audit.PROJECTION_TABLES))
    if unknown:
        known = ", ".join(audit.PROJECTION_TABLES)
        raise typer.BadParameter(f"no projection {unknown[0]!r}: one of {known}")
    try:
        with (
            postgres.connect(live, autocommit=True) as a,
            postgres.connect(rebuilt, autocommit=True) as b,
        ):
            counts, problems = audit.compare_projections(a, b, projections=tuple(projection))
    except LedgerError as exc:
        raise _fail(exc) from exc
    for problem in problems:
        console.print(f"[red]{problem}[/]")
    summary = ", ".join(f"{n:,} {t}" for t, n in counts.items())
    if problems:
        console.print(f"{len(problems)} differences ({summary} compared)")
        raise typer.Exit(1)
    console.print(f"identical: {summary}")
