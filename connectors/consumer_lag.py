"""Consumer lag of one processor's partitions, and what its readiness needs to know.

Lag is measured against the offsets the processor *committed* (stored in PostgreSQL with its
effects), not the consumer's fetch position: records fetched but not yet committed are still
owed. The partitions' ends are the high watermarks librdkafka caches from its fetches (no
broker round trip); a partition it has not fetched from yet is asked once per refresh.

Fed by the processor's own thread (assignment callbacks, each committed batch, ``refresh`` at
most every ``interval`` seconds); read by the health endpoint's thread through ``snapshot``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaException, TopicPartition

from connectors import metrics

log = logging.getLogger("evledger.lag")

_UNKNOWN = -1001  # librdkafka's OFFSET_INVALID: no watermark cached for the partition yet


@dataclass(frozen=True)
class LagSnapshot:
    """One group's progress as the health endpoint reads it."""

    group: str
    assigned: int
    lag_known: bool
    lag: int
    last_step_age: float
    """Seconds since the processor's loop last finished a step (or started)."""


class LagMonitor:
    """Lag per assigned partition of one group, published as ``evledger_consumer_lag_records``."""

    def __init__(
        self,
        group: str,
        consumer: Any,
        interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.group = group
        self._consumer = consumer  # confluent_kafka.Consumer, or None (no watermarks: lag unknown)
        self._interval = interval
        self._clock = clock
        self._positions: dict[tuple[str, int], int] = {}
        self._lag: dict[tuple[str, int], int] = {}
        self._due = 0.0
        self._stepped = clock()
        self._assigned_gauge = metrics.ASSIGNED_PARTITIONS.labels(group)

    # -- fed by the processor's thread ---------------------------------------------------------
    def assigned(self, positions: Mapping[tuple[str, int], int]) -> None:
        """Partitions given to this process, at the next offsets it will read."""
        self._positions.update(positions)
        self._assigned_gauge.set(len(self._positions))
        self._due = 0.0  # measure the new partitions at the next step

    def revoked(self, partitions: Iterable[tuple[str, int]]) -> None:
        for topic, partition in partitions:
            self._positions.pop((topic, partition), None)
            if self._lag.pop((topic, partition), None) is not None:
                metrics.CONSUMER_LAG.remove(self.group, topic, str(partition))
        self._assigned_gauge.set(len(self._positions))

    def advanced(self, next_offsets: Mapping[tuple[str, int], int]) -> None:
        """A batch committed these next offsets."""
        positions = self._positions
        for key, offset in next_offsets.items():
            if key in positions:
                positions[key] = offset

    def stepped(self) -> None:
        """The loop finished a step: the liveness heartbeat; refreshes the lag when due."""
        now = self._clock()
        self._stepped = now
        if now >= self._due:
            self._due = now + self._interval
            self.refresh()

    def refresh(self) -> None:
        """Measure every assigned partition's lag now."""
        consumer = self._consumer
        if consumer is None:
            return
        for (topic, partition), position in list(self._positions.items()):
            high = self._high_watermark(consumer, topic, partition)
            if high is None:
                continue
            lag = max(high - position, 0)
            if self._lag.get((topic, partition)) != lag:
                self._lag[(topic, partition)] = lag
                metrics.CONSUMER_LAG.labels(self.group, topic, str(partition)).set(lag)

    @staticmethod
    def _high_watermark(consumer: Any, topic: str, partition: int) -> int | None:
        tp = TopicPartition(topic, partition)
        try:
            _, high = consumer.get_watermark_offsets(tp, cached=True)
            if high == _UNKNOWN or high is None:
                _, high = consumer.get_watermark_offsets(tp, timeout=2.0, cached=False)
        except (KafkaException, RuntimeError) as exc:  # broker unreachable, consumer closed
            log.debug("no watermark for %s[%d]: %s", topic, partition, exc)
            return None
        return None if high is None or high < 0 else int(high)

    # -- read by the health endpoint ----------------------------------------------------------
    def snapshot(self) -> LagSnapshot:
        positions, lag = dict(self._positions), dict(self._lag)
        return LagSnapshot(
            group=self.group,
            assigned=len(positions),
            lag_known=bool(positions) and all(key in lag for key in positions),
            lag=sum(lag.get(key, 0) for key in positions),
            last_step_age=self._clock() - self._stepped,
        )
