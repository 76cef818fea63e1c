"""The layers hold: ``ledger/`` is the pure domain, ``schemas/`` sits below the adapters.

docs/architecture.md draws the layers; this test reads every module's imports (statically, so a
lazy import inside a function counts too) and fails on one that runs the wrong way."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

INFRASTRUCTURE = {
    "confluent_kafka": "Kafka",
    "psycopg": "SQL",
    "psycopg_pool": "SQL",
    "fastavro": "Avro wire format",
    "fastapi": "HTTP",
    "starlette": "HTTP",
    "httpx": "HTTP",
    "requests": "HTTP",
    "stripe": "a provider SDK",
    "braintree": "a provider SDK",
}
PROJECT = ("ledger", "schemas", "connectors", "processors", "entrypoints", "devstack", "bench")

RULES = {
    "ledger": {
        "forbidden_packages": {
            "schemas",
            "connectors",
            "processors",
            "entrypoints",
            "devstack",
            "bench",
        },
        "forbidden_libraries": set(INFRASTRUCTURE),
    },
    "schemas": {
        "forbidden_packages": {"connectors", "processors", "entrypoints", "devstack", "bench"},
        "forbidden_libraries": {"psycopg", "psycopg_pool", "fastapi", "starlette"},
    },
    "connectors": {
        "forbidden_packages": {"processors", "entrypoints", "devstack", "bench"},
        "forbidden_libraries": set(),
    },
    "processors": {
        "forbidden_packages": {"entrypoints", "devstack", "bench"},
        "forbidden_libraries": {"fastapi", "starlette"},
    },
}


def imports_of(path: Path) -> set[str]:
    """Top-level names of every module ``path`` imports (absolute imports; the project uses no
    relative ones)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(RULES))
def test_no_import_runs_back_up_or_out_of_the_layer(package: str) -> None:
    rule = RULES[package]
    wrong = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for name in imports_of(path):
            if name in rule["forbidden_packages"]:
                wrong.append(f"{path.relative_to(ROOT)} imports {name}/ (a layer above)")
            elif name in rule["forbidden_libraries"]:
                what = INFRASTRUCTURE.get(name, name)
                wrong.append(f"{path.relative_to(ROOT)} imports {name} ({what})")
    assert not wrong, "\n".join(wrong)


def test_the_rules_cover_every_package() -> None:
    for package in PROJECT:
        assert (ROOT / package).is_dir(), package
