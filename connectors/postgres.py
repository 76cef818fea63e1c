"""PostgreSQL access: connections, ordered SQL migrations, and offsets stored with effects.

Migrations are ``connectors/migrations/NNN_name.sql`` applied in order, each in its own
transaction, recorded in ``schema_migrations``; an advisory lock keeps concurrent starters safe.
Only writers migrate (``evledger db migrate``, the processors, the demo, ``evledger stack up``);
read paths check with ``require_current_schema`` instead, so they run under a role that may only
SELECT and never change a schema behind an operator's back.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable
from importlib import resources
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ledger.errors import InfrastructureError

_MIGRATION = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")
_LOCK_KEY = 0x65766C6564676572  # "evledger"


def connect(url: str, autocommit: bool = False) -> psycopg.Connection[tuple[object, ...]]:
    """A connection to ``url``. Raises InfrastructureError (retriable) when unreachable."""
    try:
        return psycopg.connect(url, autocommit=autocommit, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise InfrastructureError(
            f"PostgreSQL at {url} unreachable: {exc}", retriable=True
        ) from exc


def with_books_time_zone(url: str, zone: str) -> str:
    """``url`` whose sessions set ``evledger.books_time_zone`` (migration 016) to ``zone``, so
    the revenue and VAT views cut days and months there; ``url`` itself for UTC."""
    if zone == "UTC":
        return url
    params = conninfo_to_dict(url)
    options = f"{params.get('options') or ''} -c evledger.books_time_zone={zone}".strip()
    return make_conninfo(url, options=options)


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every bundled migration, in order."""
    found = []
    for entry in resources.files("connectors.migrations").iterdir():
        match = _MIGRATION.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text()))
    return sorted(found)


class SchemaBehind(InfrastructureError):
    """The database lacks migrations this code needs; a read path will not apply them."""

    code = "SCHEMA_BEHIND"


def pending_migrations(conn: psycopg.Connection[Any]) -> list[str]:
    """Names of the bundled migrations ``conn``'s database has not applied, in order (every one
    when it has no ``schema_migrations`` table yet). Only reads: any role that may SELECT
    ``schema_migrations`` can ask."""
    found = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    done: set[int] = set()
    if found is not None and found[0]:
        done = {int(v) for (v,) in conn.execute("SELECT version FROM schema_migrations")}
    return [name for version, name, _ in migrations() if version not in done]


def require_current_schema(conn: psycopg.Connection[Any]) -> None:
    """Raise SchemaBehind, naming what is missing and the command that applies it, unless every
    bundled migration is applied. What read commands and the finance API call instead of
    ``migrate``."""
    pending = pending_migrations(conn)
    if pending:
        shown = ", ".join(pending[:5]) + (
            f" and {len(pending) - 5} more" if len(pending) > 5 else ""
        )
        raise SchemaBehind(
            f"database {conn.info.dbname!r} lacks {len(pending)} migration(s) this version "
            f"needs ({shown}); run `evledger db migrate` with a role that may change the "
            "schema, then retry",
            retriable=False,
        )


DATA_STEPS = {24: "connectors.chart_conversion:convert"}
"""Python steps that run right after a migration's SQL, in its transaction: data conversions
SQL cannot express well (named as module:function, imported only when they run)."""


def migrate(url: str) -> list[str]:
    """Apply the migrations not yet applied; returns their names."""
    applied: list[str] = []
    with connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            for version, name, sql in migrations():
                if version in done:
                    continue
                with conn.transaction():
                    conn.execute(sql.encode())
                    step = DATA_STEPS.get(version)
                    if step is not None:
                        module, function = step.split(":")
                        getattr(importlib.import_module(module), function)(conn)
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (version, name),
                    )
                applied.append(name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied


def stored_offsets(
    conn: psycopg.Connection[tuple[object, ...]], group: str, topics: Iterable[str]
) -> dict[tuple[str, int], int]:
    """Next offset to read per (topic, partition) for ``group``, as stored with the effects."""
    rows = conn.execute(
        "SELECT topic, partition, next_offset FROM consumer_offsets"
        " WHERE consumer_group = %s AND topic = ANY(%s)",
        (group, list(topics)),
    ).fetchall()
    return {(str(t), int(p)): int(o) for t, p, o in rows}  # type: ignore[call-overload]


def store_offsets(
    conn: psycopg.Connection[tuple[object, ...]],
    group: str,
    next_offsets: dict[tuple[str, int], int],
) -> None:
    """Upsert next offsets inside the caller's transaction (with the effects they cover)."""
    if not next_offsets:
        return
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO consumer_offsets (consumer_group, topic, partition, next_offset)"
            " VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (consumer_group, topic, partition)"
            " DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = now()",
            [(group, t, p, o) for (t, p), o in next_offsets.items()],
        )


# -- scratch databases: the demo, replays, tests and benchmarks -------------------------------
def database_url(server_url: str, name: str) -> str:
    """``server_url`` pointing at database ``name`` instead (URL or key=value form)."""
    return psycopg.conninfo.make_conninfo(server_url, dbname=name)


def ensure_database(server_url: str, name: str) -> str:
    """Database ``name`` on the server of ``server_url``, created if missing (kept if it
    exists: a resumed replay), migrated; returns its URL."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise ValueError(f"not a plain database name: {name!r}")
    with connect(server_url, autocommit=True) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if found is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = database_url(server_url, name)
    migrate(url)
    return url


def create_database(server_url: str, name: str, *, migrated: bool = True) -> str:
    """(Re)create database ``name`` on the server of ``server_url``, apply the migrations unless
    ``migrated=False``, and return its URL. Raises ValueError for a name that is not a plain
    identifier."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise ValueError(f"not a plain database name: {name!r}")
    drop_database(server_url, name)
    with connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = database_url(server_url, name)
    if migrated:
        migrate(url)
    return url


def drop_database(server_url: str, name: str) -> None:
    """Drop database ``name``, closing its connections."""
    with connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


_COPY_ESCAPE = re.compile(r"[\\\t\n\r]")  # only these need escaping in COPY text format
_COPY_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}


def copy_field(value: str | None) -> str:
    """One field in COPY text format (``\\N`` is NULL)."""
    if value is None:
        return "\\N"
    if value.isprintable() and "\\" not in value:  # fast path: no tab, newline, CR or backslash
        return value
    return _COPY_ESCAPE.sub(lambda m: _COPY_ESCAPES[m.group()], value)


def array_literal(values: Iterable[str | int | None]) -> str:
    """A PostgreSQL array literal (``{"a","b",NULL}``) to bind as one text parameter and cast
    (``%s::text[]``). For thousands of values this is much cheaper than psycopg's list adapter,
    which escapes element by element in Python, and than a JSON document, which the server
    parses and picks apart per element."""
    items = list(values)
    if not items:
        return "{}"
    if all(type(v) is str for v in items):
        strings: list[str] = items  # type: ignore[assignment]
        plain = "".join(strings)
        if '"' not in plain and "\\" not in plain:  # nothing to escape: one join
            return '{"' + '","'.join(strings) + '"}'
    return "{" + ",".join(array_element(v) for v in items) + "}"


def array_element(value: str | int | None) -> str:
    """One element of an array literal: NULL, an integer, or a quoted, escaped string."""
    if value is None:
        return "NULL"
    if isinstance(value, int):
        return str(value)
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
