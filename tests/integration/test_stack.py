"""The local stack is real: the broker, the registry and PostgreSQL answer real requests."""

from __future__ import annotations

import httpx
from confluent_kafka.admin import AdminClient

from connectors import postgres
from connectors.settings import Settings
from devstack.stack import Stack
from schemas.topics import all_topic_names


def test_every_topic_exists_with_its_partitions(stack: Settings) -> None:
    metadata = AdminClient({"bootstrap.servers": stack.bootstrap_servers}).list_topics(timeout=10)
    for name in all_topic_names():
        assert name in metadata.topics, name
        assert len(metadata.topics[name].partitions) == stack.partitions


def test_registry_enforces_backward_compatibility(stack: Settings) -> None:
    config = httpx.get(f"{stack.registry_url}/config", timeout=10).json()
    assert config["compatibilityLevel"] == "BACKWARD"


def test_migrations_are_recorded_and_idempotent(stack: Settings) -> None:
    url = Stack(stack).database_url
    assert postgres.migrate(url) == []  # already applied at stack start
    with postgres.connect(url) as conn:
        versions = [
            row[0] for row in conn.execute("SELECT version FROM schema_migrations ORDER BY version")
        ]
    assert versions == sorted(v for v, _, _ in postgres.migrations())


def test_status_reports_every_service_ready(stack: Settings) -> None:
    statuses = Stack(stack).status()
    assert {s.name: s.ready for s in statuses} == {
        "kafka": True,
        "registry": True,
        "postgres": True,
    }


def test_up_is_idempotent(stack: Settings) -> None:
    lines: list[str] = []
    Stack(stack).up(report=lines.append)
    assert any("topics created: 0" in line for line in lines)
