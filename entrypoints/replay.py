"""``evledger replay``: rebuild the ledger projection (journal, hash chains, balances, payment
states), the sessions projection (sessions, meter values, holds, CDRs) and the settlement
attempt log from the log into another database while the live one keeps serving (docs/audit.md,
"Replay").

The replay is the ledger projector itself, under a group of its own whose offsets are stored with
its effects in the target database (it reads the partitions itself and never joins a Kafka
consumer group): killed at any point, the next run resumes where
the last committed batch ended and the result is the same (exactly once). Nothing it emits is
published (rejections stay in the target's outbox). It reads from offset 0, from the first
offsets at or after a time, or from given offsets, up to the ends of the topics when it started.
``evledger audit compare`` then proves the rebuilt and the live projection identical.
"""

from __future__ import annotations

import faulthandler
import heapq
import multiprocessing
import os
import queue
import signal
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.process import BaseProcess
from typing import Any

from confluent_kafka import TopicPartition

from connectors import postgres
from connectors.kafka import Consumed, EventConsumer
from connectors.settings import Settings
from entrypoints.bootstrap import App, bootstrap
from ledger.errors import InfrastructureError, LedgerError
from ledger.events import ExternalRefundReported
from processors.base import PostgresProcessor
from processors.ledger_projector import TOPICS, build_ledger_processor
from processors.sessions import TOPICS as SESSIONS_TOPICS
from processors.sessions import build_sessions_processor
from processors.settlement_replay import TOPICS as SETTLEMENT_TOPICS
from processors.settlement_replay import AttemptsFromLog

GROUP = "evledger-replay-ledger"
SESSIONS_GROUP = "evledger-replay-sessions"
SETTLEMENT_GROUP = "evledger-replay-settlement"

STALL_SECONDS = 300.0
"""How long a parallel replay's worker may report nothing before it is taken for stuck. A worker
reports after every batch and every empty read of its partitions (at most a second), so
silence this long means a wait that will not end by itself."""


class HistoryDeleted(LedgerError):
    """The replay would start before the first record a partition still holds: what lay there
    was deleted (topic retention, a records deletion) and cannot be rebuilt from the log."""

    code = "LOG_HISTORY_DELETED"


def deleted_ranges(
    origin: Mapping[tuple[str, int], int], log_starts: Mapping[tuple[str, int], int]
) -> dict[tuple[str, int], tuple[int, int]]:
    """The partitions whose replay would begin (``origin``) before the first offset the log
    still holds (``log_starts``), with both offsets: the records in between are gone."""
    return {tp: (o, log_starts[tp]) for tp, o in sorted(origin.items())
            if tp in log_starts and log_starts[tp] > o}  # fmt: skip


def _refuse_deleted_history(reader: EventConsumer, origin: Mapping[tuple[str, int], int]) -> None:
    """Raise ``HistoryDeleted`` naming every partition a replay from ``origin`` would miss the
    beginning of. Read on, it would skip those records without a word (the reader moves to the
    first offset there is) and rebuild a projection that is not the log's."""
    gone = deleted_ranges(origin, reader.log_starts(origin))
    if gone:
        where = "; ".join(f"{t}[{p}] holds offsets from {first:,}, the replay starts at {o:,}"
                          for (t, p), (o, first) in gone.items())  # fmt: skip
        raise HistoryDeleted(
            f"the log no longer holds the records this replay must start with ({where}): they "
            "were deleted (topic retention). A replay cannot rebuild what the log does not hold; "
            "restore the topic, or replay with --from-time after the first record kept (into a "
            "new database if this one has begun) (docs/operations.md, 'What retention means "
            "for replay')"
        )


@dataclass(frozen=True, slots=True)
class Progress:
    """Where a replay stands: records read of those it has to read, and the rate so far."""

    done: int
    total: int
    per_topic: dict[str, tuple[int, int]]
    rate: float

    @property
    def eta_seconds(self) -> float | None:
        return (self.total - self.done) / self.rate if self.rate > 0 else None


@dataclass(frozen=True, slots=True)
class Replayed:
    finished: bool
    consumed: int
    seconds: float
    targets: dict[tuple[str, int], int]
    workers: int = 1
    """how many processes shared the partitions"""


def replay_ledger(
    app: App,
    url: str,
    *,
    starts: dict[tuple[str, int], int] | None = None,
    from_time: datetime | None = None,
    progress: Callable[[Progress], None] | None = None,
    max_steps: int | None = None,
    batch_size: int = 5000,
    workers: int = 1,
    stall_seconds: float = STALL_SECONDS,
) -> Replayed:
    """Rebuild the ledger projection into ``url`` (migrated here). A first run starts at
    ``starts``, or the offsets at ``from_time``, or 0; a later run on the same database resumes
    from its stored offsets. ``max_steps`` bounds the run (a test's simulated crash; per worker).
    ``workers`` > 1 shares the partitions among that many processes (``_replay_in_parallel``);
    one that reports nothing for ``stall_seconds`` is stopped, its stack written to its output.

    Records are applied in the order of their log timestamps across all partitions, each
    partition's own order kept (a merge behind a watermark: a record is applied once every
    partition still to be read has shown a later one). Live, the topics are read side by side
    and a refund reported on provider.events arrives after the payment it refunds; read
    independently, a replay could meet it first and reject it. The merge makes the replay
    apply what the live projector applied, in its order."""
    if workers > 1:
        return _replay_in_parallel(app, url, workers, starts, from_time, progress, max_steps,
                                   batch_size, stall_seconds)  # fmt: skip
    processor = build_ledger_processor(app, group=GROUP, database_url=url, batch_size=batch_size,
                                       subscribe=False)  # fmt: skip
    return _replay(app, url, processor, GROUP, TOPICS, starts, from_time, progress, max_steps,
                   batch_size)  # fmt: skip


def _replay_in_parallel(
    app: App,
    url: str,
    workers: int,
    starts: dict[tuple[str, int], int] | None,
    from_time: datetime | None,
    progress: Callable[[Progress], None] | None,
    max_steps: int | None,
    batch_size: int,
    stall_seconds: float,
) -> Replayed:
    """``replay_ledger`` in ``workers`` processes, each owning some partitions of
    payments.events (a payment's events are all on one, keyed by its id), the first also the
    other topics; their effects and offsets go to the one target, each partition's to its
    owner alone (``share_partitions``). Progress is the sum of the workers'. Resumable as one
    replay: every partition resumes from its own stored offset, whoever owns it next."""
    postgres.migrate(url)
    begun = time.perf_counter()
    reader = app.consumer(f"{GROUP}-plan-{uuid.uuid4().hex[:8]}")
    try:  # the ends the workers replay to: the ones the scan for provider refunds covers
        stored = _first_offsets(app, url, GROUP, TOPICS, starts, from_time, reader)
        ends = reader.end_offsets(list(TOPICS))
        todo = {tp: stored.get(tp, 0) for tp in ends}  # a partition added since: its start
        _refuse_deleted_history(reader, {tp: o for tp, o in todo.items() if o < ends[tp]})
        refunds = _refunds_reported(reader, todo, ends)
    finally:
        reader.close()
    shares = share_partitions(todo, workers, refunds)
    context = multiprocessing.get_context("spawn")  # no fork: librdkafka's threads
    updates: Any = context.Queue()
    procs = [
        context.Process(target=_ledger_worker, name=f"replay-worker-{i}", daemon=True,
                        args=(i, app.settings, url, {tp: ends[tp] for tp in share}, max_steps,
                              batch_size, updates))
        for i, share in enumerate(shares)
    ]  # fmt: skip
    for proc in procs:
        proc.start()
    latest: dict[int, Progress] = {}
    results: dict[int, Replayed] = {}
    heard = dict.fromkeys(range(len(procs)), time.monotonic())
    stopped = True
    try:
        while len(results) < len(procs):
            owing = {i: p for i, p in enumerate(procs) if i not in results}
            exited = [p for p in owing.values() if p.exitcode is not None]  # before the read
            try:
                worker, item = updates.get(timeout=1.0)
            except queue.Empty:
                _check_workers(owing, exited, heard, stall_seconds)
                continue
            heard[worker] = time.monotonic()
            if isinstance(item, WorkerFailed):
                raise InfrastructureError(f"replay worker {worker} failed: {item}; run the "
                                          "replay again to resume", retriable=True)  # fmt: skip
            if isinstance(item, Replayed):
                results[worker] = item
            else:
                latest[worker] = item
            if progress is not None and latest:
                progress(_summed(latest.values(), time.perf_counter() - begun))
        stopped = False
    finally:
        for proc in procs:  # one failed (or this process was interrupted): stop the others
            if stopped:  # their open transactions roll back; a new run resumes
                proc.terminate()
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
    done = list(results.values())
    return Replayed(all(r.finished for r in done), sum(r.consumed for r in done),
                    time.perf_counter() - begun,
                    {tp: end for r in done for tp, end in r.targets.items()},
                    len(procs))  # fmt: skip


def _check_workers(
    owing: Mapping[int, BaseProcess],
    exited: Sequence[BaseProcess],
    heard: dict[int, float],
    stall_seconds: float,
) -> None:
    """Raise if a worker still owing its result had exited before a read of the queue that found
    nothing (what a process sends is in the queue before it exits: the result is lost), or has
    reported nothing for ``stall_seconds`` (asked first to write its threads' stacks to its
    output: SIGUSR1, ``faulthandler``). ``heard``: when each was last heard from."""
    if exited:
        raise InfrastructureError(f"replay worker {exited[0].name} exited with "
                                  f"{exited[0].exitcode} without a result; run the replay again "
                                  "to resume", retriable=True)  # fmt: skip
    now = time.monotonic()
    for index, proc in owing.items():
        silent = now - heard[index]
        if silent > stall_seconds and proc.pid is not None:
            os.kill(proc.pid, signal.SIGUSR1)
            time.sleep(1.0)  # the dump is written before the worker is stopped
            raise InfrastructureError(f"replay worker {proc.name} reported nothing for "
                                      f"{silent:.0f} s and was stopped (its threads' stacks are "
                                      "in its output); run the replay again to resume",
                                      retriable=True)  # fmt: skip


def share_partitions(
    todo: dict[tuple[str, int], int], workers: int, refunds_reported: bool
) -> list[set[tuple[str, int]]]:
    """The partitions of each worker: payments.events's dealt round-robin, billing.events's and
    provider.events's to the first. A refund reported at a provider (``ExternalRefundReported``,
    on provider.events, keyed by the provider's reference) changes a payment that may live on
    any partition, at its place in time between the payment's own events; while one is in the
    range, one worker replays everything, in the order of the log."""
    if refunds_reported or workers <= 1:
        return [set(todo)]
    payments_tps = sorted(tp for tp in todo if tp[0] == "payments.events")
    shares: list[set[tuple[str, int]]] = [set() for _ in range(min(workers, len(payments_tps)))]
    for i, tp in enumerate(payments_tps):
        shares[i % len(shares)].add(tp)
    if not shares:
        return [set(todo)]
    shares[0].update(tp for tp in todo if tp[0] != "payments.events")
    return shares


def _refunds_reported(
    reader: EventConsumer, todo: dict[tuple[str, int], int], ends: dict[tuple[str, int], int]
) -> bool:
    """Whether provider.events holds an ExternalRefundReported between the replay's start
    offsets and ``ends`` (a read of that topic alone, with ``reader``: payouts and webhooks,
    few)."""
    left = {tp: todo[tp] for tp, end in ends.items()
            if tp[0] == "provider.events" and todo[tp] < end}  # fmt: skip
    if not left:
        return False
    reader.assign_at(left)
    while left:
        records = reader.poll(5000, 1.0)
        for r in records:
            tp = (r.topic, r.partition)
            if tp in left and r.offset < ends[tp]:
                if isinstance(r.event, ExternalRefundReported):
                    return True
                if r.offset + 1 >= ends[tp]:
                    del left[tp]
        if not records:  # the ends may be past the last record (transaction markers)
            at = reader.positions(list(left))
            left = {tp: 0 for tp in left if at.get(tp, -1) < ends[tp]}
    return False


def _ledger_worker(
    index: int,
    settings: Settings,
    url: str,
    share: dict[tuple[str, int], int],
    max_steps: int | None,
    batch_size: int,
    updates: Any,
) -> None:
    """One worker of a parallel replay (a process of its own): its share of the partitions,
    each up to the end offset given, its progress and its result (or the exception that
    stopped it) sent to ``updates``."""
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # the parent's ask when stuck
    try:
        app = bootstrap(settings)
        processor = build_ledger_processor(app, group=GROUP, database_url=url,
                                           batch_size=batch_size, migrate=False,
                                           subscribe=False)  # fmt: skip
        result = _replay(app, url, processor, GROUP, TOPICS, None, None,
                         lambda p: updates.put((index, p)), max_steps, batch_size,
                         until=share)  # fmt: skip
        updates.put((index, result))
    except BaseException as exc:  # told to the parent, which raises it
        updates.put((index, WorkerFailed(f"{type(exc).__name__}: {exc}")))
        raise


class WorkerFailed(Exception):
    """What stopped a worker of a parallel replay (its type and message; its traceback is in
    its own output)."""


def _summed(parts: Iterable[Progress], elapsed: float) -> Progress:
    per_topic: dict[str, tuple[int, int]] = {}
    done = total = 0
    for p in parts:
        done, total = done + p.done, total + p.total
        for topic, (a, b) in p.per_topic.items():
            x, y = per_topic.get(topic, (0, 0))
            per_topic[topic] = (x + a, y + b)
    return Progress(done, total, per_topic, done / elapsed if elapsed > 0 else 0.0)


def replay_sessions(
    app: App,
    url: str,
    *,
    reference_url: str | None = None,
    starts: dict[tuple[str, int], int] | None = None,
    from_time: datetime | None = None,
    progress: Callable[[Progress], None] | None = None,
    max_steps: int | None = None,
    batch_size: int = 2000,
) -> Replayed:
    """Rebuild the sessions projection (sessions, meter values, holds, CDRs, tariff versions)
    into ``url``, as ``replay_ledger`` does the ledger's. The stations' meter keys are reference
    data, registered by operators and not on the log: a first run copies them from
    ``reference_url`` (the live database), so signed meter values verify as they did live.
    What the sessions processor emits (CDRs, settlement commands) stays in the target's outbox:
    the log already holds it."""
    processor = build_sessions_processor(app, group=SESSIONS_GROUP, database_url=url,
                                         batch_size=batch_size, subscribe=False)  # fmt: skip
    if reference_url is not None:
        _copy_meter_keys(reference_url, url)
    return _replay(app, url, processor, SESSIONS_GROUP, SESSIONS_TOPICS, starts, from_time,
                   progress, max_steps, batch_size)  # fmt: skip


def replay_settlement(
    app: App,
    url: str,
    *,
    starts: dict[tuple[str, int], int] | None = None,
    from_time: datetime | None = None,
    progress: Callable[[Progress], None] | None = None,
    max_steps: int | None = None,
    batch_size: int = 2000,
) -> Replayed:
    """Rebuild the settlement attempt log (``provider_attempts``) into ``url`` from the
    instructions on settlement.commands and their outcomes on payments.events, as
    ``replay_ledger`` does the ledger's, never calling a provider
    (``processors.settlement_replay``: what the log holds of an attempt, and what not)."""
    postgres.migrate(url)
    processor = PostgresProcessor(app, AttemptsFromLog(), SETTLEMENT_GROUP, SETTLEMENT_TOPICS,
                                  batch_size=batch_size, database_url=url,
                                  subscribe=False)  # fmt: skip
    return _replay(app, url, processor, SETTLEMENT_GROUP, SETTLEMENT_TOPICS, starts, from_time,
                   progress, max_steps, batch_size)  # fmt: skip


def _copy_meter_keys(source: str, target: str) -> None:
    with postgres.connect(source) as a, postgres.connect(target) as b:
        if b.execute("SELECT count(*) FROM station_meter_keys").fetchone() != (0,):
            return  # a resumed replay: copied by its first run
        rows = a.execute("SELECT station_id, public_key, registered_at, note"
                         " FROM station_meter_keys").fetchall()  # fmt: skip
        with b.cursor() as cur:
            cur.executemany("INSERT INTO station_meter_keys (station_id, public_key,"
                            " registered_at, note) VALUES (%s, %s, %s, %s)", rows)  # fmt: skip
        b.commit()


def _replay(
    app: App,
    url: str,
    processor: PostgresProcessor,
    group: str,
    topics: tuple[str, ...],
    starts: dict[tuple[str, int], int] | None,
    from_time: datetime | None,
    progress: Callable[[Progress], None] | None,
    max_steps: int | None,
    batch_size: int,
    *,
    until: dict[tuple[str, int], int] | None = None,
) -> Replayed:
    """Feed ``processor`` the records of ``topics`` in log order (``_Merge``) from where its
    group stands in ``url`` (first run: ``starts``, the offsets at ``from_time``, or 0) to the
    ends of the topics now, or of the partitions in ``until`` to the offsets there, publishing
    nothing."""
    processor.relaying = False
    reader = app.consumer(f"{group}-reader-{uuid.uuid4().hex[:8]}")
    try:
        ends = dict(until) if until is not None else reader.end_offsets(list(topics))
        stored = _first_offsets(app, url, group, topics, starts, from_time, reader)
        origin = {tp: min(stored.get(tp, 0), ends[tp]) for tp in ends}
        todo = {tp: (origin[tp], ends[tp]) for tp in ends if origin[tp] < ends[tp]}
        _refuse_deleted_history(reader, {tp: o for tp, (o, _) in todo.items()})
        reader.assign_at({tp: o for tp, (o, _) in todo.items()})
        merge = _Merge(todo)
        started, consumed, steps = time.perf_counter(), 0, 0
        while True:
            if progress is not None:
                _report(progress, merge, origin, ends, consumed, started)
            if merge.finished():
                return Replayed(True, consumed, time.perf_counter() - started, ends)
            if max_steps is not None and steps >= max_steps:
                return Replayed(False, consumed, time.perf_counter() - started, ends)
            ready = merge.ready(batch_size)
            if ready:
                consumed += processor.apply(ready).consumed
                steps += 1
            if not merge.all_read() and (not ready or merge.pending() < batch_size):
                records = reader.poll(batch_size, 1.0)
                merge.take(records)
                if len(records) < batch_size:  # caught up: past markers at a partition's end?
                    merge.passed(reader.positions(merge.open_partitions()))
    finally:
        reader.close()
        processor.close()


class _Merge:
    """Records of several partitions in log-timestamp order, each partition's order kept.

    Offsets, not counts: a partition's offsets may hold no record (a transaction's commit or
    abort marker, an aborted producer's records, which a read_committed reader never sees), so
    what is applied is told by offset (``applied``), and a partition whose reader passed its end
    offset is read to it even when no record came from its last offsets (``passed``)."""

    def __init__(self, todo: dict[tuple[str, int], tuple[int, int]]) -> None:
        self.ends = {tp: end for tp, (_, end) in todo.items()}
        self.read = {tp: start for tp, (start, _) in todo.items()}  # next offset to read
        self.buffers: dict[tuple[str, int], list[Consumed]] = {tp: [] for tp in todo}
        self.last_seen: dict[tuple[str, int], int] = {}

    def take(self, records: list[Consumed]) -> None:
        for r in records:
            tp = (r.topic, r.partition)
            if tp not in self.ends or r.offset >= self.ends[tp] or r.offset < self.read[tp]:
                continue
            self.buffers[tp].append(r)
            self.read[tp] = r.offset + 1
            self.last_seen[tp] = max(r.timestamp_ms, self.last_seen.get(tp, -1))

    def passed(self, positions: Mapping[tuple[str, int], int]) -> None:
        """The reader's positions (the offset after the last record or marker it handed over):
        the offsets below one hold nothing more to read."""
        for tp, at in positions.items():
            if tp in self.ends and at > self.read[tp]:
                self.read[tp] = min(at, self.ends[tp])

    def open_partitions(self) -> list[tuple[str, int]]:
        return [tp for tp, end in self.ends.items() if self.read[tp] < end]

    def all_read(self) -> bool:
        return all(self.read[tp] >= end for tp, end in self.ends.items())

    def finished(self) -> bool:
        return all(self.applied(tp) >= end for tp, end in self.ends.items())

    def applied(self, tp: tuple[str, int]) -> int:
        """Every offset of ``tp`` below this one was handed out by ``ready`` (to be applied) or
        held no record: the first one still buffered, else the next one to read."""
        buffer = self.buffers[tp]
        return buffer[0].offset if buffer else self.read[tp]

    def pending(self) -> int:
        return sum(len(b) for b in self.buffers.values())

    def ready(self, limit: int) -> list[Consumed]:
        """Up to ``limit`` records no unread record can precede: those at or before the
        watermark, the earliest latest-seen timestamp of the partitions not read to their end."""
        open_ = self.open_partitions()
        if any(tp not in self.last_seen for tp in open_):
            return []  # a partition that has shown nothing yet may hold the earliest record
        watermark = min((self.last_seen[tp] for tp in open_), default=None)
        heap = [(b[0].timestamp_ms, tp, 0) for tp, b in self.buffers.items() if b]
        heapq.heapify(heap)
        out: list[Consumed] = []
        while heap and len(out) < limit:
            ts, tp, i = heapq.heappop(heap)
            if watermark is not None and ts > watermark:
                break
            out.append(self.buffers[tp][i])
            if i + 1 < len(self.buffers[tp]):
                heapq.heappush(heap, (self.buffers[tp][i + 1].timestamp_ms, tp, i + 1))
        taken: dict[tuple[str, int], int] = {}
        for r in out:
            taken[(r.topic, r.partition)] = taken.get((r.topic, r.partition), 0) + 1
        for tp, n in taken.items():
            del self.buffers[tp][:n]
        return out


def _first_offsets(
    app: App,
    url: str,
    group: str,
    topics: tuple[str, ...],
    starts: dict[tuple[str, int], int] | None,
    from_time: datetime | None,
    reader: EventConsumer | None = None,
) -> dict[tuple[str, int], int]:
    """Where the replay of ``group`` into ``url`` stands: its stored offsets, or on a first run
    ``starts``, the offsets at ``from_time`` or 0, stored now, unless the log no longer holds
    them (``HistoryDeleted``, raised before anything is stored, so the same target can be
    replayed into again with a later ``from_time``)."""
    with postgres.connect(url) as conn:
        stored = postgres.stored_offsets(conn, group, topics)
        if stored:
            return stored
        own = reader is None
        reader = reader or app.consumer(f"{group}-reader-{uuid.uuid4().hex[:8]}")
        try:
            stored = starts or _offsets_at(reader.consumer, reader.end_offsets(list(topics)),
                                           from_time)  # fmt: skip
            _refuse_deleted_history(reader, stored)
        finally:
            if own:
                reader.close()
        postgres.store_offsets(conn, group, stored)
        conn.commit()
    return stored


def _report(
    progress: Callable[[Progress], None],
    merge: _Merge,
    origin: dict[tuple[str, int], int],
    ends: dict[tuple[str, int], int],
    consumed: int,
    started: float,
) -> None:
    elapsed = time.perf_counter() - started
    per_topic: dict[str, tuple[int, int]] = {}
    done = 0
    for (topic, p), end in ends.items():
        d = (merge.applied((topic, p)) if (topic, p) in merge.ends else end) - origin[(topic, p)]
        done += d
        a, b = per_topic.get(topic, (0, 0))
        per_topic[topic] = (a + d, b + end - origin[(topic, p)])
    total = sum(end - origin[tp] for tp, end in ends.items())
    progress(Progress(done, total, per_topic, consumed / elapsed if elapsed > 0 else 0.0))


def _offsets_at(
    consumer: object, ends: dict[tuple[str, int], int], at: datetime | None
) -> dict[tuple[str, int], int]:
    """Offset 0 of every partition, or the first offset at or after ``at``."""
    if at is None:
        return {tp: 0 for tp in ends}
    ms = int(at.timestamp() * 1000)
    found = consumer.offsets_for_times(  # type: ignore[attr-defined]
        [TopicPartition(t, p, ms) for t, p in ends], timeout=10.0
    )
    return {(tp.topic, tp.partition): (tp.offset if tp.offset >= 0 else ends[(tp.topic,
            tp.partition)]) for tp in found}  # fmt: skip
