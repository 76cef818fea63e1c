"""Where each station is, for every fraud worker: all of ``locations.events`` read by each
worker itself (reference data, small), loaded to its end before the worker starts and followed
afterwards in a thread.

Not a faust GlobalTable: with two workers in the group, faust 0.15 left the second one idle in
the global table's recovery (seen here), and a worker must know every station's place, not its
partitions' only."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from connectors import metrics
from ledger import events as ev
from ledger import validation
from ledger.errors import LedgerError
from ledger.fraud.intake import Place, places_of
from processors.base import log_time
from schemas.serde import EventSerde

log = logging.getLogger("evledger.fraud")


SKEW = timedelta(seconds=validation.DEFAULT_FUTURE_SKEW_SECONDS)
"""The allowed clock skew (the default: the reader has no settings of its own)."""


def _latest(message: Any) -> datetime:
    """The latest plausible time for a record: its log time (or now) plus the allowed skew."""
    kind, stamp = message.timestamp()
    return log_time(stamp if kind else -1) + SKEW


class PlacesReader:
    """``get(station)``: the station's place from every LocationPublished read so far."""

    def __init__(self, kafka: str | dict[str, Any], serde: EventSerde, topic: str) -> None:
        """``kafka``: the brokers, or the client settings (``Settings.kafka_client``)."""
        self.topic, self.serde = topic, serde
        self.places: dict[str, Place] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        client = {"bootstrap.servers": kafka} if isinstance(kafka, str) else kafka
        self.consumer = Consumer({
            **client,
            "group.id": f"evledger-fraud-places-{uuid.uuid4()}",  # assigned, never committed
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        })  # fmt: skip
        partitions = self.consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self.partitions = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions]
        self.consumer.assign(self.partitions)

    def get(self, station: str) -> Place | None:
        return self.places.get(station)

    def load(self, timeout: float = 60.0) -> int:
        """Read to today's end of the topic; returns how many stations are known."""
        ends = {
            tp.partition: self.consumer.get_watermark_offsets(tp, timeout=10)[1]
            for tp in self.partitions
        }
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            positions = self.consumer.position([TopicPartition(self.topic, p) for p in ends])
            if all(max(tp.offset, 0) >= ends[tp.partition] for tp in positions):
                break
            self._read(1.0)
        return len(self.places)

    def start(self) -> PlacesReader:
        """Follow the topic in a daemon thread (new or moved stations)."""
        self._thread = threading.Thread(target=self._follow, name="fraud-places", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.consumer.close()

    def _follow(self) -> None:
        while not self._stop.is_set():
            self._read(0.5)

    def _read(self, timeout: float) -> None:
        for message in self.consumer.consume(500, timeout):
            if message.error() is not None:
                continue
            try:
                event: Any = self.serde.decode(self.topic, message.value())
            except LedgerError as exc:
                metrics.FRAUD_SKIPPED.labels(self.topic, exc.code).inc()
                log.warning("skipped %s[%d]@%d: %s", self.topic, message.partition(),
                            message.offset(), exc)  # fmt: skip
                continue
            if not isinstance(event, ev.LocationPublished):
                continue
            try:  # the input rules the SDK applies, for records a raw producer wrote
                validation.check(event, _latest(message))
            except LedgerError as exc:
                metrics.FRAUD_SKIPPED.labels(self.topic, exc.code).inc()
                log.warning("location %s skipped: %s", event.location_id, exc)
                continue
            try:
                self.places.update(places_of(event))
            except ValueError as exc:
                metrics.FRAUD_SKIPPED.labels(self.topic, "INVALID_LOCATION").inc()
                log.warning("location %s skipped: %s", event.location_id, exc)
