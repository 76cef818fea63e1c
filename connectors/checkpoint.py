"""The exactly-once checkpoint: what a processor commits with every batch, as a port with two
adapters (PostgreSQL for production, memory for tests of handlers and of the loop itself).

One batch is one transaction (``Checkpoint.batch()``), written in this order:

1. **claim**: lock the group's stored offsets for the batch's partitions and drop the records
   below them, so two instances racing through a rebalance cannot apply a record twice;
2. **mark seen**: record the event ids of the records, each with its content fingerprint
   (``processed_events``); only ids not seen before go on, and a seen id whose stored
   fingerprint differs is a reused id (``EVENT_ID_CONFLICT``), not a duplicate;
3. **effects**: the handler's own writes (through ``conn`` on PostgreSQL), each rejection (the
   ``rejections`` table) and each outgoing event (the ``outbox``), inside savepoints where the
   loop isolates a poison record;
4. **advance**: the next offset of every partition the batch read;
5. **count**: applied, duplicates and rejected for the group (``processing_counts``);
6. **commit** — then, outside the transaction, **relay**: publish the unpublished outbox rows
   to Kafka, flush, and mark them published. A crash between the publish and the mark publishes
   them again; consumers deduplicate by event id.

Every adapter passes the one contract suite, ``tests/contract/test_checkpoint_contract.py``.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import psycopg

from connectors import postgres

Conn = psycopg.Connection[Any]
Produce = Callable[[str, bytes, bytes | None], None]
"""Publish raw bytes to a topic with a key (``EventPublisher.produce_bytes``)."""


@dataclass(frozen=True, slots=True)
class Position:
    """Where a record sits in the log, and the event id it carries."""

    topic: str
    partition: int
    offset: int
    event_id: str | None = None
    fingerprint: bytes | None = None
    """The content fingerprint of the record's event (``connectors.fingerprint``), if decoded."""


@dataclass(frozen=True, slots=True)
class Rejection:
    """A refused record as the checkpoint keeps it: where it was, why, and its bytes."""

    position: Position
    reason_code: str
    detail: str
    key: bytes | None
    value: bytes | None


class CheckpointBatch(Protocol):
    """One batch's transaction (steps 1-5 of the module docstring)."""

    @property
    def conn(self) -> Conn | None:
        """The PostgreSQL connection the handler's own writes go through (None in memory)."""
        ...

    def savepoint(self) -> AbstractContextManager[None]:
        """A nested transaction: what happens inside is undone if the block raises."""
        ...

    def claim(
        self, group: str, partitions: Collection[tuple[str, int]]
    ) -> dict[tuple[str, int], int]:
        """Lock and return the group's stored next offsets of ``partitions``."""
        ...

    def mark_seen(self, group: str, positions: Sequence[Position]) -> set[str]:
        """Record the positions' event ids, with their fingerprints, for the group; return
        those not seen before."""
        ...

    def fingerprints(self, group: str, event_ids: Collection[str]) -> dict[str, bytes | None]:
        """The fingerprints stored with the marks of ``event_ids`` that the group has seen
        (None for a mark kept without one)."""
        ...

    def unmark(self, group: str, event_ids: Collection[str]) -> None:
        """Forget the marks of ``event_ids`` (a record whose mark this batch wrote and whose
        handler refused it for now, so that its re-drive is not a duplicate)."""
        ...

    def reject(self, group: str, rejection: Rejection) -> None:
        """Keep a refused record (once per position and group)."""
        ...

    def enqueue(self, topic: str, key: bytes | None, value: bytes, event_id: str) -> None:
        """Queue an outgoing event; relayed to Kafka only after the batch commits."""
        ...

    def advance(self, group: str, next_offsets: dict[tuple[str, int], int]) -> None:
        """Store the next offset to read per partition."""
        ...

    def count(self, group: str, applied: int, duplicates: int, rejected: int) -> None:
        """Add to the group's processing counts."""
        ...


class Checkpoint(Protocol):
    """Where a processor keeps its progress and what it owes Kafka."""

    def batch(self) -> AbstractContextManager[CheckpointBatch]:
        """Open one batch's transaction: committed when the block ends, undone if it raises."""
        ...

    def stored_offsets(self, group: str, topics: Iterable[str]) -> dict[tuple[str, int], int]:
        """The group's committed next offsets (where a consumer resumes)."""
        ...

    def relay(self, produce: Produce, flush: Callable[[], None], limit: int = 10_000) -> int:
        """Publish unpublished outgoing events in order, flush, mark them; returns how many.
        Raises what ``produce`` or ``flush`` raise, leaving the events unpublished."""
        ...

    def counts(self, group: str) -> tuple[int, int, int]:
        """(applied, duplicates, rejected) of the group so far."""
        ...

    def rejections(self, group: str) -> list[Rejection]:
        """The group's refused records, in log order."""
        ...

    def close(self) -> None: ...


# ------------------------------------------------------------------------------------ PostgreSQL
OUTBOX_RELAY_LOCK = 0x65766C6F7574626F  # "evloutbo": the advisory lock key of the outbox relay


class PostgresCheckpoint:
    """The checkpoint in PostgreSQL: ``consumer_offsets``, ``processed_events``, ``rejections``,
    ``outbox`` and ``processing_counts``, written in the caller's transaction."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    @contextmanager
    def batch(self) -> Iterator[CheckpointBatch]:
        with self.conn.transaction():
            yield _PostgresBatch(self.conn)

    def stored_offsets(self, group: str, topics: Iterable[str]) -> dict[tuple[str, int], int]:
        offsets = postgres.stored_offsets(self.conn, group, topics)
        self.conn.rollback()  # leave no transaction open between batches
        return offsets

    def relay(self, produce: Produce, flush: Callable[[], None], limit: int = 10_000) -> int:
        """One relay at a time per database (a transaction's advisory lock): the processors
        that share a database share its outbox, and two relays that split the rows between
        them (as ``SKIP LOCKED`` did) publish through two producers, so a later row of a key
        could land before an earlier one: a capture before its authorization, which the
        ledger then refuses (``make chaos`` found it). Waiting for the other relay keeps the
        log in outbox order."""
        with self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (OUTBOX_RELAY_LOCK,))
            rows = self.conn.execute(
                "SELECT id, topic, key, value FROM outbox WHERE published_at IS NULL"
                " ORDER BY id LIMIT %s",
                (limit,),
            ).fetchall()
            if not rows:
                return 0
            for _, topic, key, value in rows:
                produce(topic, bytes(value), bytes(key) if key else None)
            flush()
            self.conn.execute(
                "UPDATE outbox SET published_at = now() WHERE id = ANY(%s)",
                ([r[0] for r in rows],),
            )
        return len(rows)

    def counts(self, group: str) -> tuple[int, int, int]:
        row = self.conn.execute(
            "SELECT applied, duplicates, rejected FROM processing_counts WHERE consumer_group = %s",
            (group,),
        ).fetchone()
        self.conn.rollback()
        return (0, 0, 0) if row is None else (int(row[0]), int(row[1]), int(row[2]))

    def rejections(self, group: str) -> list[Rejection]:
        rows = self.conn.execute(
            'SELECT topic, partition, "offset", event_id, reason_code, detail, original_key,'
            " original_value FROM rejections WHERE consumer_group = %s"
            ' ORDER BY topic, partition, "offset"',
            (group,),
        ).fetchall()
        self.conn.rollback()
        return [
            Rejection(Position(t, p, o, e), code, detail, _bytes(k), _bytes(v))
            for t, p, o, e, code, detail, k, v in rows
        ]

    def close(self) -> None:
        self.conn.close()


def postgres_batch(conn: Conn) -> CheckpointBatch:
    """The checkpoint operations on ``conn`` inside a transaction the caller opened (writers
    outside a processor's loop, such as corrections)."""
    return _PostgresBatch(conn)


def _bytes(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


class _PostgresBatch:
    def __init__(self, conn: Conn) -> None:
        self.conn: Conn | None = conn
        self._conn = conn

    def savepoint(self) -> AbstractContextManager[None]:
        return self._conn.transaction()  # type: ignore[return-value]

    def claim(
        self, group: str, partitions: Collection[tuple[str, int]]
    ) -> dict[tuple[str, int], int]:
        parts = sorted(partitions)
        rows = self._conn.execute(
            "SELECT topic, partition, next_offset FROM consumer_offsets WHERE consumer_group = %s"
            " AND (topic, partition) IN (SELECT * FROM unnest(%s::text[], %s::int[]))"
            " ORDER BY topic, partition FOR UPDATE",
            (group, [t for t, _ in parts], [p for _, p in parts]),
        ).fetchall()
        return {(t, p): o for t, p, o in rows}

    def mark_seen(self, group: str, positions: Sequence[Position]) -> set[str]:
        if not positions:
            return set()
        # Array literals bound as text: psycopg's list adapter escapes element by element in
        # Python, and a JSON document costs the server a parse and a lookup per field.
        return {
            row[0]
            for row in self._conn.execute(
                "INSERT INTO processed_events"
                ' (consumer_group, event_id, topic, partition, "offset", fingerprint)'
                " SELECT %s, e, t, p, o, decode(f, 'hex') FROM unnest("
                "  %s::text[], %s::text[], %s::int[], %s::bigint[], %s::text[]) AS x(e, t, p, o, f)"
                " ON CONFLICT DO NOTHING RETURNING event_id",
                (
                    group,
                    postgres.array_literal(p.event_id or "" for p in positions),
                    postgres.array_literal(p.topic for p in positions),
                    postgres.array_literal(p.partition for p in positions),
                    postgres.array_literal(p.offset for p in positions),
                    postgres.array_literal(
                        p.fingerprint.hex() if p.fingerprint else None for p in positions
                    ),
                ),
            ).fetchall()
        }

    def fingerprints(self, group: str, event_ids: Collection[str]) -> dict[str, bytes | None]:
        if not event_ids:
            return {}
        rows = self._conn.execute(
            "SELECT event_id, fingerprint FROM processed_events"
            " WHERE consumer_group = %s AND event_id = ANY(%s::text[])",
            (group, list(event_ids)),
        ).fetchall()
        return {e: (bytes(f) if f is not None else None) for e, f in rows}

    def unmark(self, group: str, event_ids: Collection[str]) -> None:
        if event_ids:
            self._conn.execute(
                "DELETE FROM processed_events WHERE consumer_group = %s"
                " AND event_id = ANY(%s::text[])",
                (group, list(event_ids)),
            )

    def reject(self, group: str, rejection: Rejection) -> None:
        at = rejection.position
        self._conn.execute(
            'INSERT INTO rejections (consumer_group, topic, partition, "offset", event_id,'
            " reason_code, detail, original_key, original_value)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (group, at.topic, at.partition, at.offset, at.event_id, rejection.reason_code,
             rejection.detail, rejection.key, rejection.value),
        )  # fmt: skip

    def enqueue(self, topic: str, key: bytes | None, value: bytes, event_id: str) -> None:
        self._conn.execute(
            "INSERT INTO outbox (topic, key, value, event_id) VALUES (%s, %s, %s, %s)",
            (topic, key, value, event_id),
        )

    def advance(self, group: str, next_offsets: dict[tuple[str, int], int]) -> None:
        postgres.store_offsets(self._conn, group, next_offsets)

    def count(self, group: str, applied: int, duplicates: int, rejected: int) -> None:
        self._conn.execute(
            "INSERT INTO processing_counts (consumer_group, applied, duplicates, rejected)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT (consumer_group) DO UPDATE SET"
            " applied = processing_counts.applied + EXCLUDED.applied,"
            " duplicates = processing_counts.duplicates + EXCLUDED.duplicates,"
            " rejected = processing_counts.rejected + EXCLUDED.rejected, updated_at = now()",
            (group, applied, duplicates, rejected),
        )


# ------------------------------------------------------------------------------------ memory
@dataclass
class _State:
    offsets: dict[tuple[str, str, int], int] = field(default_factory=dict)
    seen: dict[tuple[str, str], bytes | None] = field(default_factory=dict)
    """(group, event_id) -> the fingerprint kept with the mark"""
    rejections: dict[tuple[str, str, int, int], Rejection] = field(default_factory=dict)
    outbox: list[list[Any]] = field(default_factory=list)
    """[topic, key, value, event_id, published] in enqueue order."""
    counts: dict[str, list[int]] = field(default_factory=dict)


class InMemoryCheckpoint:
    """The checkpoint in a dict, with the same transaction semantics (a batch or savepoint that
    raises leaves nothing behind); one batch at a time. For tests of handlers and loops."""

    def __init__(self) -> None:
        self._state = _State()
        self._lock = threading.Lock()

    @contextmanager
    def batch(self) -> Iterator[CheckpointBatch]:
        with self._lock:
            before = copy.deepcopy(self._state)
            try:
                yield _MemoryBatch(self)
            except BaseException:
                self._state = before
                raise

    def stored_offsets(self, group: str, topics: Iterable[str]) -> dict[tuple[str, int], int]:
        wanted = set(topics)
        return {
            (t, p): o for (g, t, p), o in self._state.offsets.items() if g == group and t in wanted
        }

    def relay(self, produce: Produce, flush: Callable[[], None], limit: int = 10_000) -> int:
        with self._lock:
            pending = [row for row in self._state.outbox if not row[4]][:limit]
            for topic, key, value, _, _ in pending:
                produce(topic, value, key)
            flush()
            for row in pending:
                row[4] = True
        return len(pending)

    def counts(self, group: str) -> tuple[int, int, int]:
        a, d, r = self._state.counts.get(group, [0, 0, 0])
        return a, d, r

    def rejections(self, group: str) -> list[Rejection]:
        return [r for (g, *_), r in sorted(self._state.rejections.items()) if g == group]

    def outgoing(self) -> list[tuple[str, bytes | None, bytes, str]]:
        """Every event enqueued and committed so far, published or not (for tests)."""
        return [(t, k, v, e) for t, k, v, e, _ in self._state.outbox]

    def close(self) -> None:
        pass


class _MemoryBatch:
    conn: Conn | None = None

    def __init__(self, owner: InMemoryCheckpoint) -> None:
        self._owner = owner

    @property
    def _state(self) -> _State:
        return self._owner._state

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        before = copy.deepcopy(self._owner._state)
        try:
            yield
        except BaseException:
            self._owner._state = before
            raise

    def claim(
        self, group: str, partitions: Collection[tuple[str, int]]
    ) -> dict[tuple[str, int], int]:
        offsets = self._state.offsets
        return {(t, p): offsets[(group, t, p)] for t, p in partitions if (group, t, p) in offsets}

    def mark_seen(self, group: str, positions: Sequence[Position]) -> set[str]:
        new = set()
        for p in positions:
            key = (group, p.event_id or "")
            if key not in self._state.seen:
                self._state.seen[key] = p.fingerprint
                new.add(p.event_id or "")
        return new

    def fingerprints(self, group: str, event_ids: Collection[str]) -> dict[str, bytes | None]:
        seen = self._state.seen
        return {e: seen[(group, e)] for e in event_ids if (group, e) in seen}

    def unmark(self, group: str, event_ids: Collection[str]) -> None:
        for e in event_ids:
            self._state.seen.pop((group, e), None)

    def reject(self, group: str, rejection: Rejection) -> None:
        at = rejection.position
        self._state.rejections.setdefault((group, at.topic, at.partition, at.offset), rejection)

    def enqueue(self, topic: str, key: bytes | None, value: bytes, event_id: str) -> None:
        self._state.outbox.append([topic, key, value, event_id, False])

    def advance(self, group: str, next_offsets: dict[tuple[str, int], int]) -> None:
        for (t, p), o in next_offsets.items():
            self._state.offsets[(group, t, p)] = o

    def count(self, group: str, applied: int, duplicates: int, rejected: int) -> None:
        totals = self._state.counts.setdefault(group, [0, 0, 0])
        totals[0] += applied
        totals[1] += duplicates
        totals[2] += rejected
