"""The producer SDK and the consumer helper over confluent-kafka.

``EventPublisher`` turns typed events into Confluent-framed Avro on the right topic with the
right key; the producer is idempotent with acks=all, so a retry inside librdkafka never writes a
duplicate. ``EventConsumer`` decodes batches and hands undecodable records back as rejections;
``Rejecter`` puts them on ``<topic>.rejected`` with the original bytes and a reason code.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from ledger.envelope import Envelope, Source
from ledger.errors import InfrastructureError, LedgerError
from ledger.events import TOPIC_EVENTS, EventRejected
from schemas.errors import DecodeError
from schemas.serde import EventSerde

TOPIC_OF: dict[type, str] = {
    cls: topic for topic, classes in TOPIC_EVENTS.items() for cls in classes
}

_KEY_FIELDS = (
    "payment_id",
    "session_id",
    "tariff_id",
    "payout_id",
    "provider_reference",
    "subject",
)


def key_of(event: Any) -> str:
    """The partition key DESIGN.md prescribes for the event's topic (keeps an entity in order)."""
    topic = TOPIC_OF.get(type(event))
    if topic in ("billing.events", "sessions.events"):
        return str(event.session_id)
    for name in _KEY_FIELDS:
        value = getattr(event, name, None)
        if value is not None:
            return str(value)
    raise LedgerError(f"no key field on {type(event).__name__}")


class PublishError(InfrastructureError):
    code = "PUBLISH_FAILED"


class EventPublisher:
    """Publishes typed events. ``publish`` is asynchronous; ``flush`` waits and raises
    PublishError if any delivery failed since the last flush."""

    def __init__(self, bootstrap_servers: str, serde: EventSerde, **config: Any) -> None:
        self.serde = serde
        self._failures: list[tuple[str, KafkaError]] = []
        self._lock = threading.Lock()
        settings: dict[str, Any] = {
            "bootstrap.servers": bootstrap_servers,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "batch.size": 1_000_000,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 1_000_000,
            "delivery.report.only.error": True,
            "on_delivery": self._on_delivery,
        }
        settings.update(config)
        self.producer = Producer(settings)

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            with self._lock:
                self._failures.append((f"{msg.topic()}[{msg.key()!r}]", err))

    def publish(
        self, event: Any, *, topic: str | None = None, key: str | bytes | None = None
    ) -> None:
        """Encode and enqueue one event. Topic and key default to the catalogue's."""
        topic = topic or TOPIC_OF[type(event)]
        value = self.serde.encode(topic, event)
        self.produce_bytes(topic, value, key if key is not None else key_of(event))

    def publish_many(self, events: Iterable[Any]) -> int:
        count = 0
        encode, produce = self.serde.encode, self.produce_bytes
        for event in events:
            topic = TOPIC_OF[type(event)]
            produce(topic, encode(topic, event), key_of(event))
            count += 1
        return count

    def produce_bytes(self, topic: str, value: bytes, key: str | bytes | None) -> None:
        """Enqueue already-encoded bytes (the raw path, also used for rejections)."""
        while True:
            try:
                self.producer.produce(topic, value, key)
                return
            except BufferError:
                self.producer.poll(0.05)  # local queue full: let deliveries drain
            except KafkaException as exc:
                err = exc.args[0]
                raise PublishError(
                    f"cannot produce to {topic}: {err}", retriable=err.retriable(), topic=topic
                ) from exc

    def flush(self, timeout: float = 60.0) -> None:
        """Wait for every enqueued event. Raises PublishError listing failed deliveries."""
        remaining = self.producer.flush(timeout)
        with self._lock:
            failures, self._failures = self._failures, []
        if remaining:
            raise PublishError(
                f"{remaining} events still undelivered after {timeout}s",
                retriable=True,
                undelivered=remaining,
            )
        if failures:
            first = "; ".join(f"{where}: {err.str()}" for where, err in failures[:3])
            raise PublishError(
                f"{len(failures)} deliveries failed: {first}",
                retriable=all(e.retriable() for _, e in failures),
                failed=len(failures),
            )

    def close(self) -> None:
        self.flush()


@dataclass(frozen=True, slots=True)
class Consumed:
    """One consumed record: decoded into ``event``, or with the ``error`` that stopped it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    event: Any = None
    error: DecodeError | None = None

    @property
    def event_id(self) -> str | None:
        return self.event.envelope.event_id if self.event is not None else None


class EventConsumer:
    """Consumes and decodes batches. Offsets are committed only when the caller says so (Kafka)
    or stored by the caller with its effects (PostgreSQL); auto-commit is off."""

    def __init__(
        self,
        bootstrap_servers: str,
        serde: EventSerde,
        group_id: str,
        **config: Any,
    ) -> None:
        self.serde = serde
        self.group_id = group_id
        settings: dict[str, Any] = {
            "bootstrap.servers": bootstrap_servers,
            "group.id": group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "fetch.wait.max.ms": 50,
        }
        settings.update(config)
        self.consumer = Consumer(settings)

    def subscribe(self, topics: Sequence[str], **callbacks: Callable[..., None]) -> None:
        self.consumer.subscribe(list(topics), **callbacks)

    def assign_at(self, offsets: dict[tuple[str, int], int]) -> None:
        """Read the given partitions from the given offsets (no group rebalancing)."""
        self.consumer.assign([TopicPartition(t, p, o) for (t, p), o in offsets.items()])

    def end_offsets(
        self, topics: Sequence[str], timeout: float = 10.0
    ) -> dict[tuple[str, int], int]:
        """The current end (high watermark) of every partition of ``topics``."""
        metadata = self.consumer.list_topics(timeout=timeout)
        ends = {}
        for topic in topics:
            for partition in metadata.topics[topic].partitions:
                _, high = self.consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=timeout
                )
                ends[(topic, partition)] = high
        return ends

    def poll(self, max_records: int = 1000, timeout: float = 1.0) -> list[Consumed]:
        """Up to ``max_records`` records, each decoded or carrying its DecodeError."""
        batch = []
        for msg in self.consumer.consume(max_records, timeout):
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                raise InfrastructureError(f"consume failed: {err.str()}", retriable=err.retriable())
            topic, partition, offset = str(msg.topic()), int(msg.partition() or 0), msg.offset()
            value = msg.value()
            try:
                event, error = self.serde.decode(topic, value), None
            except DecodeError as exc:
                event, error = None, exc
            batch.append(
                Consumed(topic, partition, int(offset or 0), msg.key(), value, event, error)
            )
        return batch

    def commit(self, batch: Sequence[Consumed]) -> None:
        """Commit (synchronously) the offsets after the last record of each partition in batch."""
        last: dict[tuple[str, int], int] = {}
        for record in batch:
            last[(record.topic, record.partition)] = record.offset
        if last:
            self.consumer.commit(
                offsets=[TopicPartition(t, p, o + 1) for (t, p), o in last.items()],
                asynchronous=False,
            )

    def close(self) -> None:
        self.consumer.close()


class Rejecter:
    """Publishes rejected records to ``<topic>.rejected`` with the bytes and a reason code."""

    def __init__(self, publisher: EventPublisher, consumer_group: str, network_id: str) -> None:
        self.publisher = publisher
        self.consumer_group = consumer_group
        self.network_id = network_id

    def reject(self, record: Consumed, reason_code: str, detail: str) -> EventRejected:
        rejected = EventRejected(
            envelope=Envelope.new(self.network_id, Source.internal, causation_id=record.event_id),
            original_topic=record.topic,
            original_partition=record.partition,
            original_offset=record.offset,
            original_key=record.key,
            original_value=record.value,
            reason_code=reason_code,
            detail=detail,
            consumer_group=self.consumer_group,
            original_event_id=record.event_id,
        )
        topic = f"{record.topic}.rejected"
        self.publisher.produce_bytes(
            topic, self.publisher.serde.encode(topic, rejected), record.key
        )
        return rejected

    def reject_undecodable(self, record: Consumed) -> EventRejected:
        assert record.error is not None
        return self.reject(record, record.error.code, str(record.error))
