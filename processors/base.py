"""The exactly-once loop every Kafka -> PostgreSQL processor shares.

One batch is one PostgreSQL transaction holding: the handler's effects, the duplicate marks
(``processed_events``), rejections, outgoing events (``outbox``) and the next offsets. The
stored offsets are locked (``FOR UPDATE``) and records below them dropped, so two instances racing
through a rebalance cannot apply a record twice. After commit the outbox is relayed to Kafka.

Each consumed record ends as exactly one of: applied, duplicate (its event_id was seen by this
group; for the records a ``SelfDeduplicating`` handler owns: already applied to the state it
keeps) or rejected (undecodable or refused by the domain, with a reason code), and the three
counts are kept in ``processing_counts``.
"""

from __future__ import annotations

import gc
import logging
import re
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

import psycopg
from confluent_kafka import TopicPartition

from connectors import metrics
from connectors.checkpoint import (
    Checkpoint,
    CheckpointBatch,
    Position,
    PostgresCheckpoint,
    Rejection,
)
from connectors.consumer_lag import LagMonitor
from connectors.fingerprint import Sighting, fingerprint, sightings
from connectors.kafka import (
    Consumed,
    EventConsumer,
    EventPublisher,
    key_of,
    rejection_of,
)
from connectors.logging_setup import bound, record_fields
from connectors.settings import Settings
from ledger import validation
from ledger.card_numbers import mask_card_numbers, mask_card_numbers_bytes
from ledger.errors import LedgerError
from schemas.topics import TOPIC_OF, rejected_topic

log = logging.getLogger("evledger.processor")
Conn = psycopg.Connection[Any]


@dataclass
class Effects:
    """What a handler may do inside the batch transaction: emit events (through the outbox),
    reject or count a record as a duplicate, and write its own tables through ``conn``; all of
    it committed with the batch's offsets (``connectors.checkpoint``)."""

    batch: CheckpointBatch
    """The batch's checkpoint transaction (a writer outside the loop, such as a correction,
    passes ``connectors.checkpoint.postgres_batch(conn)`` in a transaction it opened)."""
    serde_encode: Callable[[str, Any], bytes]
    group: str
    network_id: str
    rejected: dict[tuple[str, int, int], tuple[str, str]] = field(default_factory=dict)
    duplicates: set[tuple[str, int, int]] = field(default_factory=set)

    @property
    def conn(self) -> Conn:
        """The batch's PostgreSQL connection, for handlers that keep their state in tables.
        Raises LedgerError on a checkpoint without one (the in-memory adapter)."""
        conn = self.batch.conn
        if conn is None:
            raise LedgerError("this checkpoint has no database connection for the handler")
        return conn

    def emit(self, event: Any, *, topic: str | None = None, key: str | bytes | None = None) -> None:
        """Queue an event for Kafka; it is published only if this transaction commits."""
        topic = topic or TOPIC_OF[type(event)]
        raw_key = key if key is not None else key_of(event)
        key_bytes = raw_key.encode() if isinstance(raw_key, str) else raw_key
        value = self.serde_encode(topic, event)
        self.batch.enqueue(topic, key_bytes, value, event.envelope.event_id)

    def duplicate(self, record: Consumed) -> None:
        """Count ``record`` as a duplicate: the handler found its event_id already applied (in
        the entity state it keeps; see ``SelfDeduplicating``) and changed nothing."""
        self.duplicates.add((record.topic, record.partition, record.offset))

    def reject(self, record: Consumed, reason_code: str, detail: str) -> None:
        """Refuse ``record``: stored in ``rejections`` and sent to ``<topic>.rejected``. Any card
        number in it (the reason, the raw key and value) is masked first: card data is never
        kept, not even in a rejection (``ledger.card_numbers``)."""
        detail = mask_card_numbers(_printable(detail))
        record = _masked(record)
        event_id = _printable(record.event_id) if record.event_id is not None else None
        self.rejected[(record.topic, record.partition, record.offset)] = (reason_code, detail)
        at = Position(record.topic, record.partition, record.offset, event_id)
        self.batch.reject(self.group, Rejection(at, reason_code, detail, record.key, record.value))
        rejection = rejection_of(record, reason_code, detail, self.group, self.network_id)
        self.emit(rejection, topic=rejected_topic(record.topic), key=record.key or b"")


def _masked(record: Consumed) -> Consumed:
    """``record`` with card numbers in its raw key and value masked (lengths unchanged)."""
    key = None if record.key is None else mask_card_numbers_bytes(record.key)
    value = None if record.value is None else mask_card_numbers_bytes(record.value)
    if key == record.key and value == record.value:
        return record
    return Consumed(record.topic, record.partition, record.offset, key, value, record.event,
                    record.error, record.timestamp_ms)  # fmt: skip


RETRIABLE_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "57", "58", "XX"})
"""Connection exception, transaction rollback (serialization failure, deadlock), insufficient
resources, operator intervention, system error, internal error: the server or the link failed,
not the record. Every other SQLSTATE class (22 data exception, 23 integrity constraint, 54
program limit, ...) is about what was written, so the record is isolated and rejected."""


class PoisonCode(StrEnum):
    """Reason codes for a record the handler could not apply (docs/errors.md)."""

    VALUE_NOT_STORABLE = "VALUE_NOT_STORABLE"
    INTEGRITY_VIOLATION = "INTEGRITY_VIOLATION"
    VALUE_TOO_LARGE = "VALUE_TOO_LARGE"
    UNPROCESSABLE = "UNPROCESSABLE"


_CONTENT_REASONS = {
    "22": (PoisonCode.VALUE_NOT_STORABLE, "a value PostgreSQL cannot store"),
    "23": (PoisonCode.INTEGRITY_VIOLATION, "a value that breaks a database constraint"),
    "54": (PoisonCode.VALUE_TOO_LARGE, "a value larger than PostgreSQL can index or store"),
}


def is_retriable(exc: BaseException) -> bool:
    """Whether ``exc`` is a failure of the infrastructure (retry the batch) rather than of a
    record's content (isolate the record)."""
    if isinstance(exc, LedgerError):
        return exc.retriable
    if isinstance(exc, psycopg.InterfaceError):
        return True
    if isinstance(exc, psycopg.Error):
        if exc.sqlstate is None:  # no answer from the server: the connection failed
            return True
        return exc.sqlstate[:2] in RETRIABLE_SQLSTATE_CLASSES
    return isinstance(exc, ConnectionError | TimeoutError | MemoryError)


def poison_reason(record: Consumed, exc: BaseException) -> tuple[str, str]:
    """The reason code and detail for a record that could not be applied. Names the event,
    its ids and, for a database refusal, the condition, table, column and constraint; the
    server's message text (which may quote arbitrary data) is left to the log."""
    if isinstance(exc, LedgerError):
        return exc.code, str(exc)
    event = record.event
    what = type(event).__name__ if event is not None else "record"
    ids = f"event_id={record.event_id}, key={_shown_key(record.key)}"
    if isinstance(exc, psycopg.Error):
        state = exc.sqlstate or "?"
        code, meaning = _CONTENT_REASONS.get(
            state[:2], (PoisonCode.UNPROCESSABLE, "a database refusal")
        )
        diag = exc.diag
        where = ", ".join(
            f"{name} {value}"
            for name, value in (
                ("table", diag.table_name),
                ("column", diag.column_name),
                ("constraint", diag.constraint_name),
            )
            if value
        )
        condition = re.sub(r"(?<!^)(?=[A-Z])", " ", type(exc).__name__).lower()
        detail = (
            f"{what} holds {meaning}: {condition} (SQLSTATE {state}"
            f"{', ' + where if where else ''}); {ids}"
        )
        suspects = _suspect_fields(event)
        return str(code), detail + (f"; suspect fields: {suspects}" if suspects else "")
    return str(PoisonCode.UNPROCESSABLE), (
        f"{what} could not be applied: {type(exc).__name__}: {str(exc)[:200]}; {ids}; "
        "the processor log has the traceback"
    )


def _suspect_fields(event: Any) -> str:
    """Top-level text fields of ``event`` that are long or not printable (what a database
    refuses most often), named with their length."""
    if event is None or not hasattr(event, "__dataclass_fields__"):
        return ""
    found = []
    for name in event.__dataclass_fields__:
        value = getattr(event, name)
        if isinstance(value, str) and (len(value) > 100 or not value.isprintable()):
            found.append(f"{name} ({len(value)} characters)")
    return ", ".join(found)


def _shown_key(key: bytes | None) -> str:
    if key is None:
        return "none"
    return ascii(key[:40].decode("utf-8", "replace")) + ("..." if len(key) > 40 else "")


def log_time(timestamp_ms: int) -> datetime:
    """A record's log time; now when the broker gave none."""
    if timestamp_ms < 0:
        return datetime.now(UTC)
    return datetime.fromtimestamp(timestamp_ms / 1000, UTC)


_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _is_uuid(value: str | None) -> bool:
    """Whether ``value`` is a UUID in any form ``uuid.UUID`` reads (the canonical lower-case
    form, which every evledger publisher writes, is matched without building one)."""
    if value is not None and _CANONICAL_UUID.fullmatch(value):
        return True
    try:
        uuid.UUID(value or "")
    except ValueError:
        return False
    return True


def _printable(text: str) -> str:
    """PostgreSQL text cannot hold NUL bytes; escape them, keep everything else."""
    return text.replace("\x00", "\\x00")


class Wiring(Protocol):
    """What a processor needs from the composition root (``entrypoints.bootstrap.App``)."""

    settings: Settings

    @property
    def database_url(self) -> str: ...

    def publisher(self, **config: Any) -> EventPublisher: ...

    def consumer(self, group_id: str, **config: Any) -> EventConsumer: ...

    def checkpoint(self, database_url: str | None = None) -> Checkpoint: ...


@contextmanager
def collector_paused() -> Iterator[None]:
    """Keep the cyclic collector out of one batch; it runs between batches instead.

    A batch's objects stay alive until the batch ends, so every collection inside it walks
    them all again, for nothing: processing creates no reference cycles (the few that exception
    tracebacks make are collected after the batch). Measured on the ledger projector: 5 us of
    its ~40 us per event with the threshold of ``tune_gc``. Memory stays bounded by the batch
    size, since whatever the batch does not keep is freed by reference counting as it goes."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class Handler(Protocol):
    """Applies a batch of decoded, not-yet-seen records inside ``tx``.

    Raise nothing for bad input: call ``tx.reject``. An exception aborts the whole batch (it is
    retried), so raise only for infrastructure failures."""

    def handle(self, tx: Effects, records: Sequence[Consumed]) -> None: ...


class SelfDeduplicating(Handler, Protocol):
    """A handler that recognizes some records' repeats itself, from state it stores anyway.

    For those records (``deduplicates(record)`` is true) the processor writes no
    ``processed_events`` mark and hands every copy to ``handle``, which calls ``tx.duplicate``
    for an event_id it already applied. A rejected record then leaves no trace that would make
    its re-drive a duplicate: once the event it waited for is applied, the same bytes apply."""

    def deduplicates(self, record: Consumed) -> bool: ...


@dataclass
class BatchStats:
    consumed: int = 0
    applied: int = 0
    duplicates: int = 0
    rejected: int = 0
    published: int = 0

    def add(self, other: BatchStats) -> None:
        for name in ("consumed", "applied", "duplicates", "rejected", "published"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def drain_steps(
    step: Callable[[], BatchStats], idle_seconds: float = 3.0, max_seconds: float = 600.0
) -> BatchStats:
    """Call ``step`` until nothing is consumed or published for ``idle_seconds``, or for at most
    ``max_seconds``; returns the summed stats (the ``drain()`` of every processor)."""
    total = BatchStats()
    deadline = time.monotonic() + max_seconds
    idle_since = time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - idle_since < idle_seconds:
        stats = step()
        total.add(stats)
        if stats.consumed or stats.published:
            idle_since = time.monotonic()
    return total


COOPERATIVE = "cooperative-sticky"
"""The processors' rebalance protocol: a joining or leaving instance stops only the partitions
that move (docs/scaling.md, "Joining and leaving")."""


class PostgresProcessor:
    """Runs a Handler for one consumer group, its progress kept in a ``Checkpoint``: the one
    given, else the composition root's (``app.checkpoint``, PostgreSQL at ``database_url``)."""

    def __init__(
        self,
        app: Wiring,
        handler: Handler,
        group: str,
        topics: Sequence[str],
        batch_size: int = 2000,
        database_url: str | None = None,
        *,
        checkpoint: Checkpoint | None = None,
        consumer_config: dict[str, Any] | None = None,
        subscribe: bool = True,
    ) -> None:
        self.app = app
        self.handler = handler
        self.group = group
        self.topics = list(topics)
        self.batch_size = batch_size
        self.skew = timedelta(seconds=app.settings.max_future_skew_seconds)
        if checkpoint is None:
            checkpoint = app.checkpoint(database_url)
        self.checkpoint: Checkpoint = checkpoint
        self.conn: Conn | None = getattr(checkpoint, "conn", None)
        self.publisher: EventPublisher = app.publisher()
        config = {"partition.assignment.strategy": COOPERATIVE, **(consumer_config or {})}
        self._cooperative = config["partition.assignment.strategy"] == COOPERATIVE
        self.consumer: EventConsumer = app.consumer(group, **config)
        self.metrics = metrics.GroupMetrics(group)
        self.lag = LagMonitor(group, getattr(self.consumer, "consumer", None))
        if subscribe:  # a replay does not: it reads with its own reader and hands ``apply`` records
            self.consumer.subscribe(
                self.topics, on_assign=self._on_assign, on_revoke=self._on_revoke
            )
        self.relaying = True
        """False for a replay: outgoing events stay in its own outbox, never re-published."""
        self._closing = False

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        if self._closing:
            # A rebalance that lands while the consumer closes: assigning from inside the
            # callback then blocked librdkafka's close for good (seen in a replay test).
            # Nothing is consumed any more; the client completes the assignment itself.
            return
        stored = self.checkpoint.stored_offsets(self.group, self.topics)
        for tp in partitions:
            tp.offset = stored.get((tp.topic, tp.partition), 0)  # 0: replay from the start
        if self._cooperative:  # only the partitions that moved here; the others keep flowing
            consumer.incremental_assign(partitions)
        else:
            consumer.assign(partitions)
        self.lag.assigned({(tp.topic, tp.partition): tp.offset for tp in partitions})

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        """Partitions revoked or lost: no longer ours to measure (the client unassigns them)."""
        self.lag.revoked((tp.topic, tp.partition) for tp in partitions)

    def step(self, timeout: float = 0.5) -> BatchStats:
        """Poll one batch, apply it in one transaction, then relay the outbox (with the cyclic
        garbage collector paused: ``collector_paused``)."""
        with collector_paused(), bound(group=self.group):
            batch = self.consumer.poll(self.batch_size, timeout)
            stats = self._apply(batch) if batch else BatchStats()
            stats.published = self.relay() if self.relaying else 0
        self.metrics.relayed(stats.published)
        self.lag.stepped()
        return stats

    def apply(self, records: list[Consumed]) -> BatchStats:
        """Apply records the caller read itself, in the given order, exactly as a polled batch
        (claimed against the stored offsets, one transaction): a replay's ordered merge."""
        return self._apply(records)

    def _apply(self, batch: list[Consumed]) -> BatchStats:
        """Steps 1-5 of the checkpoint's commit order (``connectors.checkpoint``)."""
        stats = BatchStats(consumed=0)
        started = time.perf_counter()
        with self.checkpoint.batch() as checkpoint:
            tx = Effects(
                checkpoint, self.publisher.serde.encode, self.group, self.app.settings.network_id
            )
            fresh = self._unclaimed(checkpoint, batch)
            stats.consumed = len(fresh)
            decoded = []
            for record in fresh:
                if record.error is not None:
                    tx.reject(record, record.error.code, str(record.error))
                elif not _is_uuid(record.event_id):
                    tx.reject(
                        record,
                        "INVALID_EVENT_ID",
                        f"event_id {record.event_id!r} is not a UUID; the publisher must give "
                        "every event a unique UUID (ledger.envelope.uuid7)",
                    )
                else:
                    decoded.append(record)
            checked = self._check_input(tx, decoded)
            rejected_before = len(tx.rejected)
            new, marked_owned = self._first_sightings(checkpoint, tx, checked)
            conflicts = len(tx.rejected) - rejected_before
            self._handle_isolating_poison(tx, new)
            self._unmark_refused(checkpoint, tx, marked_owned)
            stats.duplicates = len(checked) - len(new) - conflicts + len(tx.duplicates)
            stats.rejected = len(tx.rejected)
            stats.applied = stats.consumed - stats.duplicates - stats.rejected
            next_offsets: dict[tuple[str, int], int] = {}
            for r in fresh:
                next_offsets[(r.topic, r.partition)] = r.offset + 1
            checkpoint.advance(self.group, next_offsets)
            checkpoint.count(self.group, stats.applied, stats.duplicates, stats.rejected)
        self.metrics.committed(
            time.perf_counter() - started, *_by_topic(stats, next_offsets, fresh, checked, new, tx)
        )
        stamps = [t for r in fresh if (t := r.timestamp_ms) > 0]  # -1: the log gave none
        if stamps:
            self.metrics.visible(time.time(), min(stamps), max(stamps))
        self.lag.advanced(next_offsets)
        self.consumer.mirror(next_offsets)  # for lag tooling (KEDA): the database's offsets
        for (topic, partition, offset), (code, detail) in tx.rejected.items():
            log.warning(
                "rejected %s[%d]@%d %s: %s", topic, partition, offset, code, detail,
                extra={"topic": topic, "partition": partition, "offset": offset,
                       "reason_code": code},
            )  # fmt: skip
        return stats

    def _handle_isolating_poison(self, tx: Effects, records: list[Consumed]) -> None:
        """Apply ``records``; if that fails because of a record's content, apply each half
        again (in order, each in its own savepoint) down to the single record at fault, and
        reject only that one: a poison record never stops a partition, the good records around
        it cost a few savepoints. Failures of the connection or the server (``is_retriable``)
        propagate, and the whole batch is retried."""
        if not records:
            return
        before = dict(tx.rejected), set(tx.duplicates)
        try:
            with tx.batch.savepoint():
                self.handler.handle(tx, records)
            return
        except Exception as exc:
            if is_retriable(exc) or (self.conn is not None and self.conn.broken):
                raise
            tx.rejected, tx.duplicates = before
            if len(records) == 1:
                code, detail = poison_reason(records[0], exc)
                tx.reject(records[0], code, detail)
                log.warning(
                    "poison record %s[%d]@%d event_id=%s isolated: %s",
                    records[0].topic,
                    records[0].partition,
                    records[0].offset,
                    records[0].event_id,
                    code,
                    exc_info=not isinstance(exc, LedgerError | psycopg.Error),
                    extra={**record_fields(records[0]), "reason_code": code},
                )
                return
        middle = len(records) // 2
        self._handle_isolating_poison(tx, records[:middle])
        self._handle_isolating_poison(tx, records[middle:])

    def _check_input(self, tx: Effects, records: list[Consumed]) -> list[Consumed]:
        """The records that obey the input rules (``ledger.validation``); the others are
        rejected with the rule's code. "Future" is judged against each record's log time."""
        if not records:
            return records
        skew = self.skew
        floor = min(r.timestamp_ms for r in records)
        earliest_latest = log_time(floor) + skew
        check = validation.check
        good = []
        for record in records:
            try:
                check(record.event, earliest_latest)
            except validation.InvalidInput:
                try:  # the batch's earliest log time was too strict for this record?
                    check(record.event, log_time(record.timestamp_ms) + skew)
                except validation.InvalidInput as exc:
                    tx.reject(record, exc.code, str(exc))
                    continue
            good.append(record)
        return good

    def _unclaimed(self, checkpoint: CheckpointBatch, batch: list[Consumed]) -> list[Consumed]:
        """Step 1: the records at or past the group's stored offsets (now locked)."""
        floor = checkpoint.claim(self.group, {(r.topic, r.partition) for r in batch})
        return [r for r in batch if r.offset >= floor.get((r.topic, r.partition), 0)]

    def _first_sightings(
        self, checkpoint: CheckpointBatch, tx: Effects, records: list[Consumed]
    ) -> tuple[list[Consumed], list[Consumed]]:
        """Step 2: the records to hand to the handler, in consumed order, and the records of
        those the handler deduplicates itself whose marks this batch wrote.

        Every record's event_id is marked with its content fingerprint
        (``connectors.fingerprint``). A record repeating an id seen before (in the checkpoint
        or earlier in the batch) with other content is rejected, ``EVENT_ID_CONFLICT``: an id
        is an idempotency key, never reused. With the same content it is a duplicate: dropped
        here, or, for the records the handler deduplicates itself (``SelfDeduplicating``),
        handed on so it can say so from its state."""
        if not records:
            return records, []
        owns = getattr(self.handler, "deduplicates", None)
        own = [False] * len(records) if owns is None else [owns(r) for r in records]
        ids = [r.event_id or "" for r in records]
        prints = [fingerprint(r.event) for r in records]
        first: dict[str, int] = {}
        for i, event_id in enumerate(ids):
            first.setdefault(event_id, i)
        new_ids = checkpoint.mark_seen(
            self.group, [_position(records[i], prints[i]) for i in first.values()]
        )
        seen_before = [e for e in first if e not in new_ids]
        seen = checkpoint.fingerprints(self.group, seen_before) if seen_before else {}
        out, marked = [], []
        for r, o, sighting in zip(records, own, sightings(ids, prints, seen), strict=True):
            if sighting is Sighting.CONFLICT:
                _reject_conflict(tx, r)
                continue
            if o or sighting is Sighting.NEW:
                out.append(r)
            if o and sighting is Sighting.NEW:
                marked.append(r)
        return out, marked

    def _unmark_refused(
        self, checkpoint: CheckpointBatch, tx: Effects, marked: list[Consumed]
    ) -> None:
        """Forget this batch's marks of self-deduplicated records the handler rejected: such a
        record (``UNKNOWN_PAYMENT`` before its authorization) may be re-driven, and its re-drive
        must apply, not count as a duplicate."""
        if not marked or not tx.rejected:
            return
        refused = [
            r.event_id or "" for r in marked if (r.topic, r.partition, r.offset) in tx.rejected
        ]
        checkpoint.unmark(self.group, refused)

    def relay(self, limit: int = 10_000) -> int:
        """Step 6: publish this processor's pending outgoing events."""
        return self.checkpoint.relay(self.publisher.produce_bytes, self.publisher.flush, limit)

    def drain(self, idle_seconds: float = 3.0, max_seconds: float = 600.0) -> BatchStats:
        """Process until nothing new arrives for ``idle_seconds`` (demo, tests, replays)."""
        return drain_steps(self.step, idle_seconds, max_seconds)

    def run_forever(self) -> None:
        """Step until SIGTERM (``until_terminated``)."""
        with until_terminated() as stopping:
            while not stopping.is_set():
                self.step(1.0)

    def close(self) -> None:
        self._closing = True
        self.consumer.close()
        self.publisher.flush()
        self.checkpoint.close()


@contextmanager
def until_terminated() -> Iterator[threading.Event]:
    """An event set by SIGTERM while the block runs (in the main thread; elsewhere it is never
    set). A processor loop checks it between batches, so the batch in hand commits and the
    caller's ``close`` leaves the consumer group at once: without it SIGTERM (a pod stopping,
    a scale-down) ended the process mid-batch without leaving, and its partitions waited for
    the group's session to expire (45 s) before another instance took them."""
    stopping = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stopping
        return
    previous = signal.signal(signal.SIGTERM, lambda _signum, _frame: stopping.set())
    try:
        yield stopping
    finally:
        signal.signal(signal.SIGTERM, previous)


def relay_outbox(conn: Conn, publisher: EventPublisher, limit: int = 10_000) -> int:
    """Publish unpublished outbox rows, then mark them; returns how many.

    A crash between the publish and the mark republishes them; downstream dedupes by event_id.
    Used by writers that are not consumers (corrections) after their own commit.
    """
    return PostgresCheckpoint(conn).relay(publisher.produce_bytes, publisher.flush, limit)


def _by_topic(
    stats: BatchStats,
    next_offsets: dict[tuple[str, int], int],
    fresh: list[Consumed],
    checked: list[Consumed],
    new: list[Consumed],
    tx: Effects,
) -> tuple[dict[str, tuple[int, int, int]], Counter[tuple[str, str]]]:
    """A committed batch's (consumed, duplicates, rejected) per topic, the same sums as
    ``stats`` (what ``processing_counts`` gained), and its rejections per (topic, reason).
    A batch of one topic, the usual case, costs no pass over its records."""
    rejected = Counter((topic, code) for (topic, _, _), (code, _) in tx.rejected.items())
    topics = {topic for topic, _ in next_offsets}
    if len(topics) == 1:
        return {topics.pop(): (stats.consumed, stats.duplicates, stats.rejected)}, rejected
    consumed = Counter(r.topic for r in fresh)
    duplicates = Counter(r.topic for r in checked)
    duplicates.subtract(r.topic for r in new)
    duplicates.update(topic for topic, _, _ in tx.duplicates)
    # A reused event id was not handed on either, but it is a rejection, not a duplicate.
    conflicts = (t for (t, _, _), (code, _) in tx.rejected.items() if code == "EVENT_ID_CONFLICT")
    duplicates.subtract(conflicts)
    refused = Counter(topic for topic, _ in rejected.elements())
    by_topic = {t: (n, duplicates[t], refused[t]) for t, n in consumed.items()}
    return by_topic, rejected


def _position(record: Consumed, content: bytes | None = None) -> Position:
    return Position(record.topic, record.partition, record.offset, record.event_id, content)


def _reject_conflict(tx: Effects, record: Consumed) -> None:
    event = record.event
    tx.reject(
        record,
        "EVENT_ID_CONFLICT",
        f"event_id {record.event_id} was already used for an event with other content "
        f"(this one: {type(event).__name__}); an event_id is an idempotency key: give a "
        "new event a new id (ledger.envelope.uuid7), and repeat an event only unchanged",
    )
