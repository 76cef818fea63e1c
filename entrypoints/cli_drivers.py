"""Personal data from the command line (docs/security.md, "Personal data"):

- ``evledger drivers register|show|project``: publish a driver's profile with its personal
  fields sealed, read it back opened, and run the projector that stores it;
- ``evledger subjects erase|status``: crypto-shredding of a data subject, and its state;
- ``evledger keys master-init|rotate-master|pseudonym-init``: the master key file and its
  rotation, and the key that pseudonymizes tokens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from connectors.personal_data import (
    KeyFile,
    Keyring,
    MasterKeyError,
    Vault,
    new_master_key,
    write_keyring,
)
from connectors.settings import Settings
from entrypoints.cli_keys import keys_app
from entrypoints.cli_ledger import _actor, _conn, _fail, console, serve_projector
from ledger.envelope import Envelope
from ledger.errors import LedgerError

drivers_app = typer.Typer(help="Drivers' profiles (personal data, sealed).", no_args_is_help=True)
subjects_app = typer.Typer(help="Data subjects: erasure (crypto-shredding).", no_args_is_help=True)

Network = typer.Option(..., "--network", help="the network (tenant) of the driver")
Actor = typer.Option(None, "--actor", help="who acts, for the audit log (default: the OS user)")


def register(app: typer.Typer) -> None:
    app.add_typer(drivers_app, name="drivers")
    app.add_typer(subjects_app, name="subjects")


def _vault() -> Vault:
    return Vault(KeyFile(Settings.from_env().master_key_path))


def _write_conn() -> Any:
    from connectors import postgres
    from entrypoints.bootstrap import database_url

    url = database_url(Settings.from_env())
    postgres.migrate(url)
    return postgres.connect(url, autocommit=True)


@drivers_app.command("register")
def register_driver(
    subject: str = typer.Argument(..., help="the driver's id (a data subject; not personal)"),
    network: str = Network,
    email: str = typer.Option(None, help="e-mail for receipts"),
    name: str = typer.Option(None, help="name as on invoices"),
    address: str = typer.Option(None, help="billing address"),
    token: list[str] = typer.Option([], help="an OCPI Token.uid of the driver (repeat)"),
) -> None:
    """Publish the driver's profile (DriverProfileUpdated) with its personal fields sealed
    under the driver's own key; a new version replaces the previous one."""
    from connectors.personal_data import seal_event
    from entrypoints.bootstrap import bootstrap
    from ledger.events import DriverProfileUpdated

    event = DriverProfileUpdated(Envelope.new(network), subject, email, name, address, token)
    try:
        with _write_conn() as conn:
            event = seal_event(conn, _vault(), event)
        publisher = bootstrap().publisher(pseudonymize=True)  # the tokens become pseudonyms
        publisher.publish(event)
        publisher.flush()
    except LedgerError as exc:
        raise _fail(exc) from exc
    console.print(f"profile of {subject} published (event {event.envelope.event_id}), sealed")


@drivers_app.command("show")
def show(subject: str, network: str = Network) -> None:
    """The driver's profile as projected, its personal fields opened ([erased] once erased)."""
    from connectors import drivers_store

    try:
        with _conn() as conn:
            p = drivers_store.profile(conn, _vault(), network, subject)
    except LedgerError as exc:
        raise _fail(exc) from exc
    console.print(f"driver {p.subject_id} of {p.network_id}, updated {p.updated_at:%Y-%m-%d %H:%M}")
    for label, value in (("e-mail", p.email), ("name", p.full_name),
                         ("billing address", p.billing_address)):  # fmt: skip
        console.print(f"  {label}: {value if value is not None else '-'}", markup=False)
    console.print(f"  tokens: {', '.join(p.token_uids) or '-'}", markup=False)


@drivers_app.command("project")
def project(
    drain: bool = typer.Option(False, "--drain", help="stop once nothing arrives for 3 s"),
) -> None:
    """Run the drivers projector: drivers.events into PostgreSQL, sealed as on the log,
    exactly once."""
    from processors.drivers import build_drivers_projector

    serve_projector(build_drivers_projector, "drivers-projector", drain)


@subjects_app.command("erase")
def erase(
    subject: str,
    network: str = Network,
    reason: str = typer.Option(..., "--reason", help="why (the request's reference)"),
    actor: str | None = Actor,
) -> None:
    """Erase a data subject: destroy its key, so every personal field sealed for it, on Kafka
    and in PostgreSQL, reads as erased. Amounts and the journal are untouched."""
    try:
        with _write_conn() as conn:
            erased = _vault().erase(conn, network, subject, _actor(actor), reason)
            # Old row versions still hold the wrapped key until vacuumed.
            conn.execute("VACUUM data_subject_keys")
    except LedgerError as exc:
        raise _fail(exc) from exc
    if erased:
        console.print(f"{subject} erased in {network}: its key is destroyed")
    else:
        console.print(f"{subject} was erased in {network} before; nothing changed")


@subjects_app.command("status")
def status(subject: str, network: str = Network) -> None:
    """Whether the subject has a key, under which master key, or when and why it was erased."""
    with _conn() as conn:
        state = _vault().state(conn, network, subject)
    if state is None:
        console.print(f"{subject}: no key in {network} (nothing sealed for it yet)")
    elif state.erased_at is not None:
        console.print(f"{subject}: erased {state.erased_at:%Y-%m-%d %H:%M} by {state.erased_by}"
                      f" ({state.erased_reason})", markup=False)  # fmt: skip
    else:
        console.print(f"{subject}: key since {state.created_at:%Y-%m-%d %H:%M}, "
                      f"wrapped by master key {state.master_key_id}")  # fmt: skip


@keys_app.command("master-init")
def master_init(
    path: Path = typer.Option(None, help="default: EVLEDGER_MASTER_KEY_FILE or <home>/master.keys"),
) -> None:
    """Make the master key file (mode 600) that wraps the data subjects' keys. Refuses to
    replace an existing one: rotate that instead."""
    target = path or Settings.from_env().master_key_path
    key_id, key = new_master_key()
    try:
        write_keyring(target, Keyring(((key_id, key),)), exclusive=True)
    except LedgerError as exc:
        raise _fail(exc) from exc
    console.print(f"master key {key_id} written to {target}; keep a copy in your secret store")


@keys_app.command("rotate-master")
def rotate_master(
    keep_old: bool = typer.Option(False, help="keep the old master keys in the file"),
    actor: str | None = Actor,
) -> None:
    """Rotate the master key without downtime: a new current key in the file, every data key
    re-wrapped under it in small transactions, then the old keys dropped from the file.
    Running processes reload the file when they meet the new key. Safe to run again."""
    from connectors import postgres
    from entrypoints.bootstrap import database_url

    url = database_url(Settings.from_env())
    postgres.migrate(url)

    def progress(done: int, total: int) -> None:
        console.print(f"  re-wrapped {done:,} of {total:,} data keys")

    try:
        result = _vault().rotate(
            lambda: postgres.connect(url, autocommit=True), _actor(actor),
            retire=not keep_old, progress=progress,
        )  # fmt: skip
    except LedgerError as exc:
        raise _fail(exc) from exc
    retired = ", ".join(result.retired) or "none"
    console.print(f"master key is now {result.new_key_id}; {result.rewrapped:,} data keys "
                  f"re-wrapped; retired: {retired}")  # fmt: skip


@keys_app.command("pseudonym-init")
def pseudonym_init(
    path: Path = typer.Option(
        None, help="default: EVLEDGER_PSEUDONYM_KEY_FILE or <home>/pseudonym.key"
    ),
) -> None:
    """Make the key that pseudonymizes drivers' tokens at the front door (mode 600). Made once
    per deployment and never rotated: a new key would give every token a new pseudonym."""
    from connectors.personal_data import ensure_pseudonym_key

    target = path or Settings.from_env().pseudonym_key_path
    if not ensure_pseudonym_key(target):
        raise _fail(MasterKeyError(f"{target} exists already; a pseudonym key is never replaced"))
    console.print(f"pseudonym key written to {target}; keep a copy in your secret store")
