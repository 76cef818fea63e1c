"""Creating the catalogue's topics (``schemas.topics``) on a broker, idempotently."""

from __future__ import annotations

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from ledger.errors import InfrastructureError
from schemas.topics import FOREVER, TOPICS


def ensure_topics(
    admin: AdminClient, partitions: int, replication: int = 1, timeout: float = 30.0
) -> list[str]:
    """Create the missing topics; existing ones are left alone. Returns the names created.

    Raises InfrastructureError when the broker refuses a topic."""
    existing = set(admin.list_topics(timeout=timeout).topics)
    wanted = [
        NewTopic(
            name,
            t.partitions or partitions,
            replication,
            config={**config, **durability(replication)},
        )
        for t in TOPICS
        for name, config in ((t.name, t.config), (t.rejected, FOREVER))
        if name not in existing
    ]
    return _create(admin, wanted, timeout)


def durability(replication: int) -> dict[str, str]:
    """Topic settings for ``replication`` copies: with 3 or more, a write (acks=all) needs two
    in-sync copies, so one broker may stop without losing an acknowledged record or stopping
    the writes."""
    return {"min.insync.replicas": "2"} if replication >= 3 else {}


def ensure_topic(
    admin: AdminClient,
    name: str,
    partitions: int,
    config: dict[str, str] | None = None,
    timeout: float = 30.0,
    replication: int = 1,
) -> bool:
    """Create one topic of a processor's own (the fraud app's internal topic) if it is missing;
    True when it was created. Raises InfrastructureError when the broker refuses it."""
    if name in admin.list_topics(timeout=timeout).topics:
        return False
    settings = {**(config or {}), **durability(replication)}
    return bool(_create(admin, [NewTopic(name, partitions, replication, config=settings)], timeout))


def _create(admin: AdminClient, wanted: list[NewTopic], timeout: float) -> list[str]:
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
