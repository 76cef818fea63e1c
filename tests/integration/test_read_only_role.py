"""Read commands and the finance API work under a role that may only SELECT, and never migrate.

``evledger sessions show`` used to apply migrations on start, so under a read-only role it failed
(``permission denied for schema public``) and under an owner role it changed the schema as a side
effect of a query. Read paths now check ``schema_migrations`` against the bundled migrations and,
when it is behind, stop with SCHEMA_BEHIND naming ``evledger db migrate``, the one command (besides
the writers' start-up) that applies them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from typer.testing import CliRunner

from connectors import postgres
from entrypoints.api import create_app
from entrypoints.bootstrap import App
from entrypoints.cli import app as cli
from processors.ledger_projector import TOPICS, build_ledger_processor
from tests.integration.conftest import api_key, end_offsets
from tests.integration.test_ledger_projector import publish, run_to, scratch_book, start_group
from tests.ledger_oracle import mixed_stream

READ_COMMANDS = [
    ["balances"],
    ["balances", "--as-of", "2100-01-01"],
    ["trial-balance"],
    ["revenue", "--by", "day"],
    ["vat", "--period", "quarter"],
    ["provider-flows"],
    ["open-authorizations"],
    ["ledger", "counts"],
    ["sessions", "held"],
    ["db", "status"],
]


@dataclass
class Book:
    owner_url: str
    reader_url: str
    payment_id: str
    headers: dict[str, str]


def run(url: str, *args: str) -> tuple[int, str]:
    """``evledger ARGS`` against ``url``: exit code and everything it printed (an error that
    escaped the command included)."""
    env = {"EVLEDGER_DATABASE_URL": url, "COLUMNS": "3000"}
    result = CliRunner().invoke(cli, list(args), env=env)
    return result.exit_code, result.output + (str(result.exception) if result.exception else "")


@pytest.fixture(scope="module")
def book(app: App) -> Iterator[Book]:
    """A small projected book, and a login role granted SELECT on it and nothing else."""
    network = f"ro-{uuid.uuid4().hex[:8]}"
    stream = mixed_stream(network, payments_count=8, seed=3)
    role = f"evledger_reader_{uuid.uuid4().hex[:8]}"
    with scratch_book(app) as url:
        group, _ = start_group(app, url)
        processor = build_ledger_processor(app, group=group, database_url=url, batch_size=50)
        try:
            publish(app, stream.phase1 + stream.phase2)
            run_to(processor, end_offsets(app, list(TOPICS)))
        finally:
            processor.close()
        with postgres.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
            conn.execute(
                sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(
                    sql.Identifier(role)
                )
            )
        try:
            headers = api_key(url, network, "finance:read", "admin", "risk")
            yield Book(url, make_conninfo(url, user=role), f"P-{network}-000000", headers)
        finally:
            postgres.drop_database(app.database_url, str(conninfo_to_dict(url)["dbname"]))
            with postgres.connect(app.database_url, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_the_role_really_is_read_only(book: Book) -> None:
    """Without this, the tests below could pass under a role that may write."""
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        postgres.migrate(book.reader_url)
    code, output = run(book.reader_url, "db", "migrate")
    assert code == 2 and "may not change the schema" in output, output


@pytest.mark.parametrize("args", READ_COMMANDS, ids=" ".join)
def test_read_commands_run_under_a_read_only_role(book: Book, args: list[str]) -> None:
    code, output = run(book.reader_url, *args)
    assert code == 0, output


def test_show_commands_read_under_a_read_only_role(book: Book) -> None:
    code, output = run(book.reader_url, "payments", "show", book.payment_id)
    assert code == 0 and book.payment_id in output, output
    # No such session: the command got as far as reading the sessions table.
    code, output = run(book.reader_url, "sessions", "show", "no-such-session")
    assert code == 1 and "no session no-such-session" in output, output


def test_the_finance_api_reads_under_a_read_only_role(app: App, book: Book) -> None:
    with TestClient(
        create_app(app.settings, database_url=book.reader_url), headers=book.headers
    ) as client:
        paths = [p for p in client.get("/openapi.json").json()["paths"] if "{" not in p]
        paths.append(f"/payments/{book.payment_id}")
        for path in paths:
            answer = client.get(path)
            assert answer.status_code == 200, (path, answer.text)


@pytest.fixture
def unmigrated(app: App) -> Iterator[str]:
    name = f"behind_{uuid.uuid4().hex[:10]}"
    url = postgres.create_database(app.database_url, name, migrated=False)
    try:
        yield url
    finally:
        postgres.drop_database(app.database_url, name)


def applied_versions(url: str) -> list[int]:
    """The migrations ``url``'s database records as applied (none without the table)."""
    with postgres.connect(url, autocommit=True) as conn:
        found = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
        if not (found and found[0]):
            return []
        rows = conn.execute("SELECT version FROM schema_migrations").fetchall()
    return sorted(int(str(v)) for (v,) in rows)


def test_reads_on_a_schema_behind_never_migrate_and_name_db_migrate(
    app: App, unmigrated: str
) -> None:
    for args in (["sessions", "show", "S-1"], ["sessions", "held"], ["trial-balance"]):
        code, output = run(unmigrated, *args)
        assert code != 0 and "SCHEMA_BEHIND" in output and "evledger db migrate" in output, output
    # A well-formed key: the schema is checked before any key is looked up.
    key = {"X-API-Key": "evl_000000000000_" + "A" * 43}
    with TestClient(create_app(app.settings, database_url=unmigrated), headers=key) as client:
        answer = client.get("/trial-balance")
    assert answer.status_code == 503 and answer.json()["code"] == "SCHEMA_BEHIND", answer.text
    assert "evledger db migrate" in answer.json()["detail"]
    assert applied_versions(unmigrated) == []  # not one migration applied by a read

    code, output = run(unmigrated, "db", "status")
    assert code == 1 and "pending" in output
    code, output = run(unmigrated, "db", "migrate")
    bundled = postgres.migrations()
    assert code == 0 and all(f"applied {name}" in output for _, name, _ in bundled), output
    assert applied_versions(unmigrated) == [v for v, _, _ in bundled]
    assert run(unmigrated, "trial-balance")[0] == 0
    code, output = run(unmigrated, "db", "migrate")
    assert code == 0 and "0 applied now" in output, output
