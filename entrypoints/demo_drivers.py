"""The demo's personal-data step: drivers' profiles published sealed (each under its own key),
projected, read back through the vault; one driver erased, after which its fields read as
erased while the books stay as they were (docs/security.md, "Personal data")."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from connectors import drivers_store, finance, personal_data, postgres
from connectors.personal_data import KeyFile, Vault, seal_event
from entrypoints.bootstrap import App
from ledger.envelope import Envelope
from ledger.events import DriverProfileUpdated
from processors.drivers import TOPICS, build_drivers_projector

DRIVERS = (
    ("drv-0001", "anna.muster@example.org", "Anna Muster", "Hauptstr. 1, 10115 Berlin"),
    ("drv-0002", "jan.jansen@example.nl", "Jan Jansen", "Damrak 1, 1012 LG Amsterdam"),
    ("drv-0003", "lea.dubois@example.fr", "Léa Dubois", "1 rue de Rivoli, 75001 Paris"),
)


def run(
    app: App, url: str, network_id: str, ends: dict[tuple[str, int], int], console: Console
) -> None:
    """Publish, project, show, erase one, show again; ``ends``: where the log ended before."""
    settings = app.settings
    if not settings.master_key_file and personal_data.ensure_key_file(settings.master_key_path):
        console.print(f"master key made: {settings.master_key_path}")
    vault = Vault(KeyFile(settings.master_key_path))
    with postgres.connect(url, autocommit=True) as conn:
        events = [
            seal_event(conn, vault, DriverProfileUpdated(
                Envelope.new(network_id), subject, email, name, address, [f"TOK-{subject[-4:]}"]))
            for subject, email, name, address in DRIVERS
        ]  # fmt: skip
    publisher = app.publisher(pseudonymize=True)
    publisher.publish_many(events)
    publisher.flush()
    projector = build_drivers_projector(app, database_url=url)
    with postgres.connect(url) as conn:
        postgres.store_offsets(conn, projector.group, {k: v for k, v in ends.items()
                                                       if k[0] in TOPICS})  # fmt: skip
        conn.commit()
    try:
        projector.drain(idle_seconds=1.0)
    finally:
        projector.close()
    subject = DRIVERS[0][0]
    with postgres.connect(url, autocommit=True) as conn:
        stored = _stored_email(conn, network_id, subject)
        before = finance.trial_balance_totals(conn, network=network_id)
        shown = drivers_store.profile(conn, vault, network_id, subject)
        console.print(f"{len(events)} drivers' profiles published and projected, sealed; "
                      f"{subject}'s e-mail in PostgreSQL: {stored[:28]}...")  # fmt: skip
        console.print(f"  opened through the vault: {shown.email}, {shown.full_name}")
        vault.erase(conn, network_id, subject, "demo", "erasure request (GDPR art. 17)")
        erased = drivers_store.profile(conn, vault, network_id, subject)
        after = finance.trial_balance_totals(conn, network=network_id)
    console.print(f"  erased {subject} (its key destroyed): e-mail {erased.email}, name "
                  f"{erased.full_name}; trial balance "
                  f"{'unchanged' if after == before else 'CHANGED'}", markup=False)  # fmt: skip
    if after != before:
        raise SystemExit(1)


def _stored_email(conn: Any, network_id: str, subject: str) -> str:
    row = conn.execute("SELECT email FROM driver_profiles WHERE network_id = %s AND"
                       " subject_id = %s", (network_id, subject)).fetchone()  # fmt: skip
    return str(row[0]) if row else ""
