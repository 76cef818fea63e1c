"""Replay and the offsets of the log that hold no record it reads.

- A replay refuses to start before the first record the log still holds: records deleted by
  retention would otherwise be skipped without a word and the rebuilt projection would not be
  the log's (docs/operations.md, "What retention means for replay").
- Offsets a reader never sees (an upstream producer's transaction markers, its aborted records)
  neither stop nor spin a replay: it applies what was committed and finishes."""

from __future__ import annotations

import threading
import uuid

import pytest
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from connectors.topics import ensure_topic
from entrypoints.bootstrap import App
from entrypoints.replay import HistoryDeleted, Replayed, _replay
from processors.base import PostgresProcessor
from processors.settlement_replay import AttemptsFromLog
from tests.integration.test_ledger_projector import scratch_book


def test_a_replay_from_records_deleted_by_retention_is_refused_naming_the_partition(
    app: App,
) -> None:
    topic = f"test-retention-{uuid.uuid4().hex[:8]}"
    admin = AdminClient(app.settings.kafka_client())
    ensure_topic(admin, topic, 1)
    publisher = app.publisher()
    for i in range(5):
        publisher.produce_bytes(topic, f"record {i}".encode(), b"k")
    publisher.flush()
    deleted = admin.delete_records([TopicPartition(topic, 0, 3)], request_timeout=30)
    [future.result() for future in deleted.values()]  # the log now starts at offset 3
    group = f"test-{topic}"

    def replay(url: str, starts: dict[tuple[str, int], int] | None, steps: int | None) -> Replayed:
        processor = PostgresProcessor(app, AttemptsFromLog(), group, [topic], database_url=url,
                                      subscribe=False)  # fmt: skip
        return _replay(app, url, processor, group, (topic,), starts, None, None, steps, 100)

    try:
        with scratch_book(app) as url:
            with pytest.raises(HistoryDeleted) as caught:  # a first run, from offset 0
                replay(url, None, None)
            assert caught.value.code == "LOG_HISTORY_DELETED"
            assert f"{topic}[0] holds offsets from 3, the replay starts at 0" in str(caught.value)

            begun = replay(url, {(topic, 0): 3}, 0)  # refused, it stored nothing: start again
            assert not begun.finished and begun.consumed == 0  # offset 3 stored, nothing applied
            trimmed = admin.delete_records([TopicPartition(topic, 0, 4)], request_timeout=30)
            [future.result() for future in trimmed.values()]
            with pytest.raises(HistoryDeleted, match=r"holds offsets from 4, the replay starts "
                               r"at 3"):  # fmt: skip
                replay(url, None, None)  # resuming, from the stored 3
        with scratch_book(app) as url:
            kept = replay(url, {(topic, 0): 4}, None)
            assert kept.finished and kept.consumed == 1  # what is kept is replayed
    finally:
        admin.delete_topics([topic])


def test_transaction_markers_and_aborted_records_neither_stop_nor_spin_a_replay(app: App) -> None:
    """A transactional upstream producer: 3 records committed, 2 aborted, 1 committed, so the
    partition's offsets hold 3 markers and 2 records a read_committed reader skips, one marker
    last. The replay applies the 4 committed records (rejected here: they are not events) and
    finishes, in one process and from a stored offset in the middle."""
    topic = f"test-markers-{uuid.uuid4().hex[:8]}"
    admin = AdminClient(app.settings.kafka_client())
    ensure_topic(admin, topic, 1)
    producer = Producer({**app.settings.kafka_client(), "transactional.id": f"t-{topic}"})
    producer.init_transactions(30)
    for count, commit in ((3, True), (2, False), (1, True)):
        producer.begin_transaction()
        for i in range(count):
            producer.produce(topic, f"not an event {i}".encode(), b"k")
        (producer.commit_transaction if commit else producer.abort_transaction)(30)
    try:
        with scratch_book(app) as url:
            for group, starts, records in ((f"a-{topic}", {(topic, 0): 0}, 4),
                                           (f"b-{topic}", {(topic, 0): 2}, 2)):  # fmt: skip
                result = replayed_within(60, app, url, group, topic, starts)
                assert result is not None, "the replay did not finish in 60 s"
                assert result.finished and result.consumed == records
    finally:
        admin.delete_topics([topic])


def replayed_within(
    seconds: float, app: App, url: str, group: str, topic: str, starts: dict[tuple[str, int], int]
) -> Replayed | None:
    """``_replay`` of ``topic`` in a thread, or None if it has not returned after ``seconds``
    (it used to loop for good on a partition ending in a transaction marker)."""
    processor = PostgresProcessor(app, AttemptsFromLog(), group, [topic], database_url=url,
                                  subscribe=False)  # fmt: skip
    done: list[Replayed] = []
    run = threading.Thread(target=lambda: done.append(_replay(
        app, url, processor, group, (topic,), starts, None, None, None, 100)),
        daemon=True)  # fmt: skip
    run.start()
    run.join(seconds)
    return done[0] if done else None
