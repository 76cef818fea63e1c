"""docs/errors.md catalogues every reason code the code can give, with its meaning and action.

A reason code is stored with rejections, held sessions and failed attempts, and returned by the
HTTP apps; a person who meets one looks it up there. Codes are found three ways: the ``code`` of
every ``LedgerError`` subclass, the members of every ``StrEnum`` named ``*Code``, and the string
literals handed to ``reject(record, "CODE", ...)`` calls.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from enum import StrEnum
from pathlib import Path

from ledger.errors import LedgerError

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ledger", "schemas", "connectors", "processors", "entrypoints", "devstack")
CATALOGUE = ROOT / "docs" / "errors.md"
ROW = re.compile(r"^\|\s*`([A-Z][A-Z0-9_]+)`\s*\|([^|]*)\|([^|]*)\|([^|]*)\|", re.MULTILINE)
# Root classes whose code is never given to a person on its own: each is always a subclass's.
ABSTRACT = {"LEDGER_ERROR", "INFRASTRUCTURE_ERROR"}


def _modules() -> list[str]:
    names = []
    for package in PACKAGES:
        module = importlib.import_module(package)
        names.append(package)
        for info in pkgutil.walk_packages(module.__path__, f"{package}."):
            names.append(info.name)
    return names


def _subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub, *_subclasses(sub)}
    return found


def _literal_reject_codes() -> set[str]:
    """String literals passed as the reason code of a ``reject(record, CODE, detail)`` call."""
    codes = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute | ast.Name)
                    and getattr(node.func, "attr", getattr(node.func, "id", "")) == "reject"
                    and len(node.args) >= 2
                    and isinstance(node.args[1], ast.Constant)
                    and isinstance(node.args[1].value, str)
                ):
                    codes.add(node.args[1].value)
    return codes


def code_in_use() -> set[str]:
    for name in _modules():
        importlib.import_module(name)
    codes = {str(cls.code) for cls in _subclasses(LedgerError)}
    codes |= {
        str(member)
        for cls in _subclasses(StrEnum)
        if cls.__name__.endswith("Code") and cls.__module__.split(".")[0] in PACKAGES
        for member in cls  # type: ignore[attr-defined]
    }
    return (codes | _literal_reject_codes()) - ABSTRACT


def catalogue() -> dict[str, tuple[str, str, str]]:
    rows = ROW.findall(CATALOGUE.read_text())
    return {code: (a.strip(), b.strip(), c.strip()) for code, a, b, c in rows}


def test_every_reason_code_in_use_is_catalogued() -> None:
    missing = sorted(code_in_use() - set(catalogue()))
    assert not missing, f"add these reason codes to docs/errors.md: {missing}"


def test_the_catalogue_holds_no_code_that_nothing_gives() -> None:
    stale = sorted(set(catalogue()) - code_in_use())
    assert not stale, f"docs/errors.md lists codes no code gives: {stale}"


def test_every_catalogued_code_says_what_it_means_and_what_to_do() -> None:
    for code, columns in catalogue().items():
        assert all(columns), f"{code}: every column of docs/errors.md must be filled"
