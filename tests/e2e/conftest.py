"""End-to-end tests run on the real stack too, in databases of their own.

They run the demo's code (``entrypoints.demo.run_demo``) but never against the demo's book,
``evledger_demo``, which the README invites a reader to explore after ``make demo``: a test run
must not replace it. ``E2E_DATABASE`` is the name they use instead; the session fixture below
checks, after every e2e test has run, that the demo's database is the very one that was there
before (same OID: not dropped and created again) or still absent.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connectors import postgres
from entrypoints.bootstrap import App
from entrypoints.demo import DEMO_DATABASE

E2E_DATABASE = "evledger_test_e2e"
"""The database end-to-end tests run the demo's code into; nothing user-facing uses it."""


@pytest.fixture(autouse=True)
def _needs_stack(stack: object) -> None:
    """Start (or reuse) the stack; never skip."""


def database_oid(app: App, name: str) -> int | None:
    """The OID of database ``name`` on the app's server (None if it does not exist): a database
    dropped and created again gets a new one."""
    with postgres.connect(app.database_url, autocommit=True) as conn:
        row = conn.execute("SELECT oid FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return None if row is None else int(row[0])  # type: ignore[call-overload]


@pytest.fixture(scope="session", autouse=True)
def demo_book_untouched(app: App) -> Iterator[None]:
    """Fail the run if any end-to-end test dropped, created or replaced the demo's database."""
    before = database_oid(app, DEMO_DATABASE)
    yield
    after = database_oid(app, DEMO_DATABASE)
    assert after == before, (
        f"an end-to-end test replaced the {DEMO_DATABASE} database (oid {before} -> {after}); "
        f"tests must use {E2E_DATABASE} or a scratch database"
    )


@pytest.fixture
def e2e_database(app: App) -> Iterator[str]:
    """The name end-to-end tests pass to ``run_demo``; the database is dropped afterwards."""
    yield E2E_DATABASE
    postgres.drop_database(app.database_url, E2E_DATABASE)
