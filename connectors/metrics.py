"""The Prometheus metrics every evledger process exports (docs/observability.md lists them).

All of them live in prometheus_client's default registry, so one ``/metrics`` page of a process
shows its processors, its provider calls, the database gauges and the Python runtime together.
Names follow the Prometheus conventions: an ``evledger_`` prefix, the unit in the name
(``_seconds``, ``_records``, ``_minor_units``), ``_total`` on counters.

The processors count **per batch, after it commits** (``GroupMetrics.committed``): a batch that
fails and is retried counts once, and the counters of a group add up to what
``processing_counts`` gained while the process ran.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger("evledger.metrics")

# -- the exactly-once loop (processors.base) -----------------------------------------------------
EVENTS_CONSUMED = Counter(
    "evledger_events_consumed",
    "Records a consumer group took from Kafka (past its stored offsets); each ends applied, "
    "duplicate or rejected.",
    ["group", "topic"],
)
EVENTS_APPLIED = Counter(
    "evledger_events_applied",
    "Records whose effects a consumer group committed.",
    ["group", "topic"],
)
EVENTS_DUPLICATE = Counter(
    "evledger_events_duplicate",
    "Records skipped as duplicates (their event_id was already applied by the group).",
    ["group", "topic"],
)
EVENTS_REJECTED = Counter(
    "evledger_events_rejected",
    "Records refused, by reason code (docs/errors.md); stored in rejections and <topic>.rejected.",
    ["group", "topic", "reason"],
)
BATCH_SECONDS = Histogram(
    "evledger_batch_duration_seconds",
    "Time to apply one polled batch and commit it with its offsets (one PostgreSQL transaction).",
    ["group"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
VISIBLE_SECONDS = Histogram(
    "evledger_event_visible_latency_seconds",
    "From a record's Kafka timestamp (the producer's create time: when it was published) to the "
    "commit of the batch that applied, deduplicated or rejected it: publish -> visible in the "
    "projection. Sampled: the oldest and the newest record of each committed batch.",
    ["group"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0),
)
OUTBOX_RELAYED = Counter(
    "evledger_outbox_relayed_events",
    "Outbox events a processor published to Kafka after its batches committed.",
    ["group"],
)
CONSUMER_LAG = Gauge(
    "evledger_consumer_lag_records",
    "Records between a partition's end (high watermark) and the group's stored next offset.",
    ["group", "topic", "partition"],
)
ASSIGNED_PARTITIONS = Gauge(
    "evledger_consumer_assigned_partitions",
    "Partitions assigned to this process for a consumer group.",
    ["group"],
)

# -- provider calls (processors.settlement_handler) ----------------------------------------------
PROVIDER_CALL_SECONDS = Histogram(
    "evledger_provider_call_duration_seconds",
    "Duration of one call to a payment provider, successful or not, per provider and action.",
    ["provider", "action"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
PROVIDER_CALL_ERRORS = Counter(
    "evledger_provider_call_errors",
    "Provider calls that raised, by the evledger error code (PAYMENT_DECLINED, "
    "PROVIDER_TIMEOUT, ...).",
    ["provider", "action", "code"],
)
BREAKER_STATE = Gauge(
    "evledger_circuit_breaker_state",
    "1 for the state each provider's circuit breaker is in (closed, open, half_open), 0 for the "
    "others.",
    ["provider", "state"],
)
BREAKER_STATES = ("closed", "open", "half_open")

# -- the fraud processor (processors.fraud) ------------------------------------------------------
FRAUD_OBSERVATIONS = Counter(
    "evledger_fraud_observations",
    "Observations the fraud processor scored, by subject kind (token, card, station, terminal).",
    ["subject_kind"],
)
FRAUD_SKIPPED = Counter(
    "evledger_fraud_records_skipped",
    "Records the fraud processor could not read, by reason code; their owning consumer group "
    "rejects them to <topic>.rejected.",
    ["topic", "reason"],
)
FRAUD_ALERTS = Counter(
    "evledger_fraud_alerts",
    "Fraud alerts raised, by the strongest rule and the network's action (alert, review, block).",
    ["rule", "action"],
)
FRAUD_SCORE = Histogram(
    "evledger_fraud_score",
    "Scores above zero, as emitted in FraudScored.",
    buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
)

# -- HTTP entrypoints (webhooks app) -------------------------------------------------------------
WEBHOOK_DELIVERIES = Counter(
    "evledger_webhook_deliveries",
    "Provider webhook deliveries answered, by provider and outcome (published, ignored, "
    "duplicate, or the error code).",
    ["provider", "outcome"],
)


class GroupMetrics:
    """The loop's metrics for one consumer group, their labelled children cached: a batch costs
    a few dictionary lookups and additions, whatever its size."""

    def __init__(self, group: str) -> None:
        self.group = group
        self._batch_seconds = BATCH_SECONDS.labels(group)
        self._visible = VISIBLE_SECONDS.labels(group)
        self._relayed = OUTBOX_RELAYED.labels(group)
        self._topics: dict[str, tuple[Any, Any, Any]] = {}
        self._rejected: dict[tuple[str, str], Any] = {}

    def committed(
        self,
        seconds: float,
        by_topic: Mapping[str, tuple[int, int, int]],
        rejected: Mapping[tuple[str, str], int],
    ) -> None:
        """Count one committed batch: ``by_topic`` maps a topic to (consumed, duplicates,
        rejected), ``rejected`` a (topic, reason code) to its records."""
        self._batch_seconds.observe(seconds)
        for topic, (consumed, duplicates, refused) in by_topic.items():
            children = self._topics.get(topic) or self._children(topic)
            children[0].inc(consumed)
            children[1].inc(consumed - duplicates - refused)
            if duplicates:
                children[2].inc(duplicates)
        for key, count in rejected.items():
            child = self._rejected.get(key)
            if child is None:
                child = self._rejected[key] = EVENTS_REJECTED.labels(self.group, *key)
            child.inc(count)

    def visible(self, committed_at: float, oldest_ms: int, newest_ms: int) -> None:
        """Publish -> visible of a committed batch: its oldest and its newest record (Kafka
        timestamps in ms, ``committed_at`` in epoch seconds); two observations per batch, so the
        cost does not grow with its size."""
        self._visible.observe(max(0.0, committed_at - oldest_ms / 1000))
        if newest_ms != oldest_ms:
            self._visible.observe(max(0.0, committed_at - newest_ms / 1000))

    def relayed(self, events: int) -> None:
        if events:
            self._relayed.inc(events)

    def _children(self, topic: str) -> tuple[Any, Any, Any]:
        labels = (self.group, topic)
        children = (
            EVENTS_CONSUMED.labels(*labels),
            EVENTS_APPLIED.labels(*labels),
            EVENTS_DUPLICATE.labels(*labels),
        )
        self._topics[topic] = children
        return children


@contextmanager
def provider_call(provider: str, action: str) -> Iterator[None]:
    """Time one provider call; count it as an error (by its ``code``) when it raises."""
    started = time.perf_counter()
    try:
        yield
    except Exception as exc:
        code = getattr(exc, "code", None) or type(exc).__name__
        PROVIDER_CALL_ERRORS.labels(provider, action, str(code)).inc()
        raise
    finally:
        PROVIDER_CALL_SECONDS.labels(provider, action).observe(time.perf_counter() - started)


def breaker_states(states: Mapping[str, str]) -> None:
    """Publish each provider's breaker state (``BreakerState`` values) as a 0/1 gauge per state."""
    for provider, current in states.items():
        for state in BREAKER_STATES:
            BREAKER_STATE.labels(provider, state).set(1 if state == current else 0)


# -- the database gauges -------------------------------------------------------------------------
OUTBOX_PENDING = "evledger_outbox_pending_events"
OUTBOX_OLDEST = "evledger_outbox_oldest_pending_age_seconds"
IN_DOUBT = "evledger_settlement_in_doubt_attempts"
IN_DOUBT_OLDEST = "evledger_settlement_in_doubt_oldest_age_seconds"
TRIAL_BALANCE = "evledger_trial_balance_difference_minor_units"
DATABASE_UP = "evledger_database_up"

_QUERIES: tuple[tuple[str, str], ...] = (
    (
        "outbox",
        "SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8"
        " FROM outbox WHERE published_at IS NULL",
    ),
    (
        "in_doubt",
        "SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8"
        " FROM provider_attempts WHERE status = 'in_doubt'",
    ),
    (
        "trial_balance",
        "SELECT currency, CASE WHEN is_memo THEN 'memo' ELSE 'posted' END,"
        " coalesce(sum(balance), 0)::bigint FROM balances GROUP BY 1, 2",
    ),
)

Connect = Callable[[], AbstractContextManager[Any]]
"""Opens a PostgreSQL connection (autocommit) for one scrape: ``postgres.connect`` or a pool's."""


class DatabaseGauges(Collector):
    """Gauges of the shared database, read when Prometheus scrapes (at most once per
    ``min_interval`` seconds): unpublished outbox events, in-doubt settlement attempts and
    their ages, and the trial balance (debits - credits per currency, posted and memo: 0 when
    every entry balanced). Every process with a database exports them; alert on ``max()``.

    Registered once at import, it reports nothing but its families until ``watch`` names a
    database. A table the schema lacks (a database before its migrations) leaves its gauges out;
    an unreachable database sets ``evledger_database_up`` to 0."""

    def __init__(self, min_interval: float = 5.0, statement_timeout_ms: int = 2000) -> None:
        self._connect: Connect | None = None
        self._lock = threading.Lock()
        self._min_interval = min_interval
        self._timeout = statement_timeout_ms
        self._cached: tuple[float, list[GaugeMetricFamily]] | None = None

    def watch(self, connect: Connect | None) -> None:
        """Read the gauges through ``connect`` from now on (None: stop)."""
        with self._lock:
            self._connect, self._cached = connect, None

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            if self._connect is None:
                return self._families()
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] >= self._min_interval:
                self._cached = (now, self._read(self._connect))
            return self._cached[1]

    def _families(self) -> list[GaugeMetricFamily]:
        return [
            GaugeMetricFamily(OUTBOX_PENDING, "Outbox events not yet published to Kafka."),
            GaugeMetricFamily(OUTBOX_OLDEST, "Age of the oldest unpublished outbox event."),
            GaugeMetricFamily(
                IN_DOUBT,
                "Settlement attempts in doubt (no definite provider answer yet; the resolver "
                "asks again).",
            ),
            GaugeMetricFamily(
                IN_DOUBT_OLDEST,
                "Age of the oldest in-doubt settlement attempt (since its instruction was first "
                "tried).",
            ),
            GaugeMetricFamily(
                TRIAL_BALANCE,
                "Debits minus credits over every account, per currency and view (posted, memo): "
                "0 while every journal entry balances.",
                labels=["currency", "view"],
            ),
            GaugeMetricFamily(DATABASE_UP, "1 when the last read of the database gauges worked."),
        ]

    def _read(self, connect: Connect) -> list[GaugeMetricFamily]:
        """One read of every gauge, in one transaction (its timeout set LOCAL, so a pooled
        connection goes back as it came), each query in a savepoint of its own."""
        try:
            with connect() as conn, conn.transaction():
                conn.execute(f"SET LOCAL statement_timeout = {int(self._timeout)}")
                results = {part: _rows_or_none(conn, query) for part, query in _QUERIES}
        except Exception as exc:  # unreachable, or refused: say so in evledger_database_up
            log.debug("database gauges not read: %s", exc)
            families = self._families()
            families[-1].add_metric([], 0)
            return families
        families = self._families()
        by_name = {f.name: f for f in families}
        if (outbox := results["outbox"]) is not None:
            by_name[OUTBOX_PENDING].add_metric([], outbox[0][0])
            by_name[OUTBOX_OLDEST].add_metric([], outbox[0][1])
        if (in_doubt := results["in_doubt"]) is not None:
            by_name[IN_DOUBT].add_metric([], in_doubt[0][0])
            by_name[IN_DOUBT_OLDEST].add_metric([], in_doubt[0][1])
        for currency, view, difference in results["trial_balance"] or ():
            by_name[TRIAL_BALANCE].add_metric([str(currency).strip(), view], difference)
        by_name[DATABASE_UP].add_metric([], 1)
        return families


def _rows_or_none(conn: Any, query: str) -> list[tuple[Any, ...]] | None:
    """The query's rows; None when a table it reads does not exist (a schema before its
    migrations). Other errors propagate."""
    try:
        with conn.transaction():
            return list(conn.execute(query).fetchall())
    except Exception as exc:
        if getattr(exc, "sqlstate", None) != "42P01":  # undefined_table
            raise
        return None


DATABASE_GAUGES = DatabaseGauges()
REGISTRY.register(DATABASE_GAUGES)


def metric_names(registry: Any = REGISTRY) -> set[str]:
    """Every sample name ``registry`` can expose (``_total``, ``_bucket``, ``_sum`` ...
    included): what a dashboard or an alert rule may reference."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("", "_sum", "_count", "_created"),
        "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
        "info": ("_info",),
    }
    names = set()
    for family in registry.collect():
        for suffix in suffixes.get(family.type, ("",)):
            names.add(family.name + suffix)
        names.update(sample.name for sample in family.samples)
    return names
