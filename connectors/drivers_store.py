"""The drivers projection in PostgreSQL (migration 035): each driver's profile with its personal
fields as sealed on the log, written by the drivers projector and read, opened through the
vault (``connectors.personal_data``), by ``evledger drivers show``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from connectors.personal_data import Vault
from ledger import events as ev
from ledger.errors import LedgerError

Conn = psycopg.Connection[Any]


class UnknownDriver(LedgerError):
    """No profile was ever published for this driver in this network."""

    code = "UNKNOWN_DRIVER"


@dataclass(frozen=True, slots=True)
class Profile:
    """A driver's profile, its personal fields opened (``personal.ERASED`` once erased)."""

    network_id: str
    subject_id: str
    email: str | None
    full_name: str | None
    billing_address: str | None
    token_uids: tuple[str, ...]
    updated_at: datetime


def record_profile(conn: Conn, e: ev.DriverProfileUpdated) -> None:
    """The newer version by occurrence time wins (a late, older version changes nothing)."""
    env = e.envelope
    conn.execute(
        "INSERT INTO driver_profiles AS d (network_id, subject_id, email, full_name,"
        " billing_address, token_uids, updated_at, event_id)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (network_id, subject_id) DO UPDATE SET email = EXCLUDED.email,"
        " full_name = EXCLUDED.full_name, billing_address = EXCLUDED.billing_address,"
        " token_uids = EXCLUDED.token_uids, updated_at = EXCLUDED.updated_at,"
        " event_id = EXCLUDED.event_id"
        " WHERE (d.updated_at, d.event_id) < (EXCLUDED.updated_at, EXCLUDED.event_id)",
        (env.network_id, e.subject_id, e.email, e.full_name, e.billing_address,
         list(e.token_uids), env.occurred_at, env.event_id),
    )  # fmt: skip


def profile(conn: Conn, vault: Vault, network: str, subject: str) -> Profile:
    row = conn.execute(
        "SELECT email, full_name, billing_address, token_uids, updated_at FROM driver_profiles"
        " WHERE network_id = %s AND subject_id = %s",
        (network, subject),
    ).fetchone()
    if row is None:
        raise UnknownDriver(f"no profile of driver {subject!r} in network {network!r}",
                            subject=subject, network=network)  # fmt: skip
    email, full_name, address, tokens, updated_at = row
    read = vault.opener(conn, network, subject)
    return Profile(network, subject, read("email", email), read("full_name", full_name),
                   read("billing_address", address), tuple(tokens), updated_at)  # fmt: skip
