"""Tests never write to a database a user keeps.

``make demo`` leaves its book in ``evledger_demo`` for the reader to explore; the end-to-end test
runs the demo's code, and once ran it into that very database, so ``make test`` after
``make demo`` replaced the reader's book. Now the demo's database is a parameter, the e2e tests
pass their own name, and these checks fail if a test could reach the demo's database again.
(At run time, ``tests/e2e/conftest.py`` also checks that the demo database's OID is unchanged.)
"""

from __future__ import annotations

import ast
import inspect
import io
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from rich.console import Console

from connectors.settings import Settings
from entrypoints import cli, demo
from tests.e2e.conftest import E2E_DATABASE

TESTS = Path(__file__).resolve().parents[1]


class Created(Exception):
    """Raised in place of creating a database, carrying its name."""


def database_run_demo_creates(monkeypatch: pytest.MonkeyPatch, **options: Any) -> str:
    """The name ``run_demo`` asks the server to (re)create, stopped right there."""

    def create_database(server_url: str, name: str, **_: Any) -> str:
        raise Created(name)

    monkeypatch.setattr(demo.postgres, "create_database", create_database)
    app: Any = SimpleNamespace(database_url="postgresql://nobody@127.0.0.1:1/postgres")
    with pytest.raises(Created) as created:
        demo.run_demo(app, 1, Console(file=io.StringIO()), **options)
    return str(created.value)


def test_the_e2e_database_is_neither_the_demos_nor_the_stacks() -> None:
    stack_database = Settings().local_database_url.rsplit("/", 1)[-1]
    assert E2E_DATABASE not in {demo.DEMO_DATABASE, stack_database}
    assert E2E_DATABASE.startswith("evledger_test_")


def test_the_demo_creates_the_database_it_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    assert database_run_demo_creates(monkeypatch, database=E2E_DATABASE) == E2E_DATABASE
    assert database_run_demo_creates(monkeypatch) == demo.DEMO_DATABASE


def test_the_demo_command_keeps_its_book_in_the_demo_database() -> None:
    option = inspect.signature(cli.demo).parameters["database"].default
    assert option.default == demo.DEMO_DATABASE


def test_no_test_runs_the_demo_without_naming_its_own_database() -> None:
    """Every ``run_demo(...)`` call under tests/ (but this file's, which stops before creating
    anything) passes ``database=``, and no test names the demo's database in a string."""
    unnamed, mentions = [], []
    for path in sorted(TESTS.rglob("*.py")):
        if path == Path(__file__).resolve():
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            where = f"{path.relative_to(TESTS)}:{getattr(node, 'lineno', 0)}"
            called = getattr(node, "func", None)
            name = getattr(called, "id", getattr(called, "attr", None))
            named = isinstance(node, ast.Call) and any(k.arg == "database" for k in node.keywords)
            if isinstance(node, ast.Call) and name == "run_demo" and not named:
                unnamed.append(where)
            if isinstance(node, ast.Constant) and node.value == demo.DEMO_DATABASE:
                mentions.append(where)
    assert not unnamed, f"run_demo without database= (it would replace the demo's book): {unnamed}"
    assert not mentions, f"tests naming the demo's database: {mentions}"
