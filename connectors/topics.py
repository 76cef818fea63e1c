"""The topic table (DESIGN.md, "Topics") and its idempotent creation."""

from __future__ import annotations

from dataclasses import dataclass, field

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from ledger.errors import InfrastructureError


@dataclass(frozen=True)
class TopicSpec:
    name: str
    key: str
    config: dict[str, str] = field(default_factory=dict)
    partitions: int | None = None  # None: the settings' default


# Event topics keep everything: the log is the system of record (auditors replay from 0).
_FOREVER = {"retention.ms": "-1", "retention.bytes": "-1", "min.insync.replicas": "1"}

EVENT_TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec("payments.events", "payment_id", _FOREVER),
    TopicSpec("sessions.events", "session_id", _FOREVER),
    TopicSpec("tariffs.events", "tariff_id", _FOREVER),
    TopicSpec("billing.events", "session_id", _FOREVER),
    TopicSpec("settlement.commands", "payment_id", _FOREVER),
    TopicSpec("provider.events", "provider reference", _FOREVER),
    TopicSpec("fraud.scores", "subject", {"retention.ms": str(90 * 24 * 3600 * 1000)}),
)


def all_topics() -> tuple[TopicSpec, ...]:
    """Every topic evledger uses: the event topics and one ``<topic>.rejected`` per topic."""
    rejected = tuple(
        TopicSpec(f"{t.name}.rejected", "original key", _FOREVER) for t in EVENT_TOPICS
    )
    return EVENT_TOPICS + rejected


def ensure_topics(
    admin: AdminClient, partitions: int, replication: int = 1, timeout: float = 30.0
) -> list[str]:
    """Create the missing topics; existing ones are left alone. Returns the names created.

    Raises InfrastructureError when the broker refuses a topic."""
    existing = set(admin.list_topics(timeout=timeout).topics)
    wanted = [
        NewTopic(t.name, t.partitions or partitions, replication, config=t.config)
        for t in all_topics()
        if t.name not in existing
    ]
    if not wanted:
        return []
    created = []
    for name, future in admin.create_topics(wanted, request_timeout=timeout).items():
        try:
            future.result()
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise InfrastructureError(
                    f"could not create topic {name}: {exc}", retriable=exc.args[0].retriable()
                ) from exc
    return created
