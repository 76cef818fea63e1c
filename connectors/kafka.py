"""The producer SDK and the consumer helper over confluent-kafka.

``EventPublisher`` turns typed events into Confluent-framed Avro on the right topic with the
right key; the producer is idempotent with acks=all, so a retry inside librdkafka never writes a
duplicate. ``EventConsumer`` decodes batches and hands undecodable records back as rejections;
``Rejecter`` puts them on ``<topic>.rejected`` with the original bytes and a reason code.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from ledger import validation
from ledger.envelope import Envelope, Source, utcnow
from ledger.errors import InfrastructureError, LedgerError
from ledger.events import EventRejected
from ledger.fastpaths import slot_setters
from ledger.pseudonyms import Pseudonymizer
from schemas.encoder import encode_each
from schemas.errors import DecodeError
from schemas.serde import EventSerde
from schemas.topics import KEY_FIELD_OF, TOPIC_OF, rejected_topic

log = logging.getLogger(__name__)

__all__ = ["TOPIC_OF", "Consumed", "EventConsumer", "EventPublisher", "key_field", "key_of"]

LINGER_SECONDS = 0.01
"""How long ``EventConsumer.poll`` waits to fill a batch once its first record is in."""


def key_field(cls: type) -> str | None:
    """The attribute holding ``cls``'s partition key (``schemas.topics``: one entity's events
    share a partition and keep their order), or None for events with no key of their own."""
    return KEY_FIELD_OF.get(cls)


def key_of(event: Any) -> str:
    """The partition key of ``event``. Raises LedgerError when it has none."""
    name = key_field(type(event))
    value = getattr(event, name) if name is not None else None
    if value is None:
        raise LedgerError(f"no key field on {type(event).__name__}")
    return str(value)


class PublishError(InfrastructureError):
    code = "PUBLISH_FAILED"


class EventPublisher:
    """Publishes typed events. ``publish`` is asynchronous; ``flush`` waits and raises
    PublishError if any delivery failed since the last flush."""

    def __init__(
        self,
        bootstrap_servers: str,
        serde: EventSerde,
        *,
        max_future_skew_seconds: float = validation.DEFAULT_FUTURE_SKEW_SECONDS,
        pseudonyms: Pseudonymizer | None = None,
        **config: Any,
    ) -> None:
        """``pseudonyms``: replace drivers' tokens by their pseudonyms before anything else (a
        publisher at the front door; ``ledger.pseudonyms``)."""
        self.serde = serde
        self.pseudonyms = pseudonyms
        self.skew = timedelta(seconds=max_future_skew_seconds)
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
        self._routes: dict[
            tuple[type, str | None], tuple[str, Callable[[Any], bytes], str | None]
        ] = {}

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            with self._lock:
                self._failures.append((f"{msg.topic()}[{msg.key()!r}]", err))

    def _route(
        self, cls: type, topic: str | None
    ) -> tuple[str, Callable[[Any], bytes], str | None]:
        target = topic or TOPIC_OF[cls]
        route = (target, self.serde.encoder_for(target, cls), key_field(cls))
        self._routes[(cls, topic)] = route
        return route

    def publish(
        self, event: Any, *, topic: str | None = None, key: str | bytes | None = None
    ) -> None:
        """Encode and enqueue one event. Topic and key default to the catalogue's.

        The hot path: one dict lookup per event for its (topic, encoder, key field) route.
        Raises ledger.validation.InvalidInput for an event that breaks an input rule
        (docs/input-rules.md): it is refused here, before any consumer has to reject it."""
        if self.pseudonyms is not None:
            event = self.pseudonyms.event(event)
        validation.check(event, utcnow() + self.skew)
        route = self._routes.get((type(event), topic)) or self._route(type(event), topic)
        target, encode, key_attr = route
        value = encode(event)
        if key is None:
            key = getattr(event, key_attr) if key_attr is not None else None
            if key is None:
                key = key_of(event)  # raises: no key
        try:
            self.producer.produce(target, value, key)
        except (BufferError, KafkaException):
            self.produce_bytes(target, value, key)  # waits for room, or raises PublishError

    def publish_many(
        self, events: Iterable[Any], *, topic: str | None = None, checked: bool = False
    ) -> int:
        """Encode and enqueue events to their catalogue topics (or all to ``topic``), in order;
        returns how many.

        The batch is encoded with one call of the compiled encoder when it is built. Raises
        ledger.validation.InvalidInput, before anything is enqueued, if an event breaks an
        input rule. ``checked``: the caller has just applied ``validation.check`` to every
        event with this publisher's skew (HTTP ingest, which answers per event); not again."""
        batch = events if isinstance(events, list) else list(events)
        if self.pseudonyms is not None:
            batch = [self.pseudonyms.event(e) for e in batch]
        if not checked:
            latest = utcnow() + self.skew
            check = validation.check
            for event in batch:
                check(event, latest)
        routes = self._routes
        table: dict[type, tuple[bytes, Any]] = {}
        meta: dict[type, tuple[str, str | None]] = {}
        for cls in {type(e) for e in batch}:
            target, _, key_attr = routes.get((cls, topic)) or self._route(cls, topic)
            compiled = self.serde.batch_route(target, cls)
            if compiled is None:  # no compiled encoder here: one event at a time
                for event in batch:
                    self.publish(event, topic=topic)
                return len(batch)
            table[cls], meta[cls] = compiled, (target, key_attr)
        try:
            values = encode_each(batch, table)
        except (TypeError, ValueError, OverflowError):
            for event in batch:  # find and report the bad event with the reference encoder
                self.publish(event, topic=topic)
            return len(batch)
        produce = self.producer.produce
        for event, value in zip(batch, values, strict=True):
            target, key_attr = meta[type(event)]
            key = getattr(event, key_attr) if key_attr is not None else None
            if key is None:
                key = key_of(event)  # raises: no key
            try:
                produce(target, value, key)
            except (BufferError, KafkaException):
                self.produce_bytes(target, value, key)  # waits for room, or raises PublishError
        return len(batch)

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
    timestamp_ms: int = -1
    """The record's log time (Kafka timestamp, ms since the epoch); -1 when the broker gave
    none. The input rules judge "in the future" against it, so a replay decides as before."""

    def __init__(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        event: Any = None,
        error: DecodeError | None = None,
        timestamp_ms: int = -1,
    ) -> None:
        # Hand-written (see ledger.fastpaths.slot_setters): one is built per consumed record.
        _set_topic(self, topic)
        _set_partition(self, partition)
        _set_offset(self, offset)
        _set_key(self, key)
        _set_value(self, value)
        _set_event(self, event)
        _set_error(self, error)
        _set_timestamp_ms(self, timestamp_ms)

    @property
    def event_id(self) -> str | None:
        return self.event.envelope.event_id if self.event is not None else None


(
    _set_topic,
    _set_partition,
    _set_offset,
    _set_key,
    _set_value,
    _set_event,
    _set_error,
    _set_timestamp_ms,
) = slot_setters(Consumed)


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

    def log_starts(
        self, partitions: Iterable[tuple[str, int]], timeout: float = 10.0
    ) -> dict[tuple[str, int], int]:
        """The first offset each partition still holds (its low watermark): above 0 once
        retention or a deletion removed the records before it."""
        return {
            (topic, partition): self.consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=timeout
            )[0]
            for topic, partition in partitions
        }

    def positions(self, partitions: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """Each assigned partition's position: the offset after the last record, or the last
        transaction marker, this consumer handed over (partitions not read yet are left out)."""
        if not partitions:
            return {}
        at = self.consumer.position([TopicPartition(t, p) for t, p in partitions])
        return {(tp.topic, tp.partition): tp.offset for tp in at if tp.offset >= 0}

    def poll(
        self, max_records: int = 1000, timeout: float = 1.0, linger: float = LINGER_SECONDS
    ) -> list[Consumed]:
        """Up to ``max_records`` records, each decoded or carrying its DecodeError.

        Waits up to ``timeout`` for the first record, then at most ``linger`` for more: a backlog
        comes back as full batches at once, a trickle as small batches without delay. (A plain
        ``consume(max_records, timeout)`` holds a part batch until the whole timeout is over.)"""
        batch = []
        for msg in self._fetch(max_records, timeout, linger):
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
            _, timestamp = msg.timestamp()
            batch.append(
                Consumed(
                    topic, partition, int(offset or 0), msg.key(), value, event, error, timestamp
                )
            )
        return batch

    def _fetch(self, max_records: int, timeout: float, linger: float) -> list[Message]:
        messages = self.consumer.consume(max_records, 0)  # what is fetched already
        if not messages:
            messages = self.consumer.consume(1, timeout)
            if not messages:
                return []
        if len(messages) < max_records:
            messages += self.consumer.consume(max_records - len(messages), linger)
        return messages

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

    def mirror(self, offsets: Mapping[tuple[str, int], int]) -> None:
        """Tell Kafka, asynchronously, the next offsets the caller has just stored with its
        effects in PostgreSQL. Never read back (a processor resumes from the database's
        offsets): it is for lag tooling that reads the group's committed offsets, such as
        KEDA's Kafka scaler and ``kafka-consumer-groups.sh``. A commit refused during a
        rebalance is dropped; the next batch's carries the newer offsets."""
        if not offsets:
            return
        try:
            self.consumer.commit(
                offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                asynchronous=True,
            )
        except KafkaException as exc:  # e.g. no longer assigned: harmless, see above
            log.debug("offsets not mirrored to Kafka: %s", exc)

    def close(self) -> None:
        self.consumer.close()


def rejection_of(
    record: Consumed, reason_code: str, detail: str, consumer_group: str, network_id: str
) -> EventRejected:
    """The ``EventRejected`` for ``record``: its bytes, where it was read, and why it was refused.
    Published to ``<topic>.rejected`` by the Rejecter and by the processors' outbox."""
    return EventRejected(
        envelope=Envelope.new(network_id, Source.internal, causation_id=record.event_id),
        original_topic=record.topic,
        original_partition=record.partition,
        original_offset=record.offset,
        original_key=record.key,
        original_value=record.value,
        reason_code=reason_code,
        detail=detail,
        consumer_group=consumer_group,
        original_event_id=record.event_id,
    )


class Rejecter:
    """Publishes rejected records to ``<topic>.rejected`` with the bytes and a reason code."""

    def __init__(self, publisher: EventPublisher, consumer_group: str, network_id: str) -> None:
        self.publisher = publisher
        self.consumer_group = consumer_group
        self.network_id = network_id

    def reject(self, record: Consumed, reason_code: str, detail: str) -> EventRejected:
        rejected = rejection_of(record, reason_code, detail, self.consumer_group, self.network_id)
        topic = rejected_topic(record.topic)
        self.publisher.produce_bytes(
            topic, self.publisher.serde.encode(topic, rejected), record.key
        )
        return rejected

    def reject_undecodable(self, record: Consumed) -> EventRejected:
        assert record.error is not None
        return self.reject(record, record.error.code, str(record.error))
