"""The topic catalogue: one record per topic, read by producers, consumers, topic creation, the
schema registry and docs/events.md alike.

A topic record says which events it carries, which field of each event is its key (one
entity's events share a partition and so keep their order) and how long the broker keeps it.
Every topic has a ``<name>.rejected`` twin that keeps the records its consumers refused, with
their original bytes (``EventRejected``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

from ledger import events as ev

REJECTED_SUFFIX = ".rejected"
BENCH_PREFIX = "bench."
"""Scratch topics for benchmarks: any event may go there, so the event log stays clean."""

FOREVER: Mapping[str, str] = {
    "retention.ms": "-1",
    "retention.bytes": "-1",
    "min.insync.replicas": "1",
}
"""Event topics keep everything: the log is the system of record (auditors replay from 0)."""


@dataclass(frozen=True)
class Topic:
    """One topic: its events, its key and its broker configuration."""

    name: str
    events: tuple[type, ...]
    keys: tuple[str, ...]
    """Key fields in order of preference: an event's key is the first of them it has."""
    config: Mapping[str, str] = field(default_factory=lambda: dict(FOREVER))
    partitions: int | None = None
    """None: the settings' default (``EVLEDGER_PARTITIONS``)."""

    @property
    def rejected(self) -> str:
        return rejected_topic(self.name)

    @property
    def key_doc(self) -> str:
        """The key as docs/events.md names it."""
        return " or ".join(self.keys)


_PAYMENT_EVENTS = (
    ev.PaymentAuthorized, ev.AuthorizationIncremented, ev.PaymentCaptured, ev.CaptureFailed,
    ev.PaymentVoided, ev.AuthorizationExpired, ev.PaymentRefunded, ev.RefundFailed,
    ev.DisputeOpened, ev.DisputeResolved, ev.ProviderRouted, ev.AuthorizationFailed,
    ev.ReceivableCollected, ev.ReceivableWrittenOff,
)  # fmt: skip

TOPICS: tuple[Topic, ...] = (
    Topic("payments.events", _PAYMENT_EVENTS, ("payment_id",)),
    Topic(
        "sessions.events",
        (ev.SessionStarted, ev.MeterValueRecorded, ev.ChargingStateChanged, ev.SessionStopped),
        ("session_id",),
    ),
    Topic("tariffs.events", (ev.TariffPublished,), ("tariff_id",)),
    Topic("locations.events", (ev.LocationPublished,), ("location_id",)),
    Topic("drivers.events", (ev.DriverProfileUpdated,), ("subject_id",)),
    Topic("billing.events", (ev.CdrIssued, ev.CdrCredited), ("session_id",)),
    Topic(
        "settlement.commands",
        (ev.AuthorizeRequested, ev.CaptureRequested, ev.VoidRequested, ev.RefundRequested),
        ("payment_id",),
    ),
    Topic(
        "provider.events",
        (ev.PayoutPaid, ev.ProviderDisputeUpdated, ev.ExternalRefundReported),
        ("provider_reference", "payout_id"),
    ),
    Topic(
        "fraud.scores",
        (
            ev.FraudScored,
            ev.FraudAlertRaised,
            ev.TokenBlocked,
            ev.TokenUnblocked,
            ev.FraudReviewCleared,
        ),
        ("subject",),
        config={"retention.ms": str(90 * 24 * 3600 * 1000)},
    ),
)

BY_NAME: dict[str, Topic] = {t.name: t for t in TOPICS}
TOPIC_EVENTS: dict[str, tuple[type, ...]] = {t.name: t.events for t in TOPICS}
"""Which events each topic carries."""
TOPIC_OF: dict[type, str] = {cls: t.name for t in TOPICS for cls in t.events}
"""The topic of each event class."""
ALL_EVENTS: tuple[type, ...] = (*TOPIC_OF, ev.EventRejected)
"""Every event class, the rejection record included."""
KEY_FIELD_OF: dict[type, str] = {
    cls: next(k for k in t.keys if k in {f.name for f in dataclasses.fields(cls)})
    for t in TOPICS
    for cls in t.events
}
"""The attribute of each event class that is its partition key."""


def rejected_topic(name: str) -> str:
    """Where the consumers of ``name`` put the records they refuse."""
    return name + REJECTED_SUFFIX


def all_topic_names() -> list[str]:
    """Every topic evledger uses: the event topics and their ``.rejected`` twins."""
    return [t.name for t in TOPICS] + [t.rejected for t in TOPICS]


def allowed_events(topic: str) -> tuple[type, ...]:
    """The event classes a record on ``topic`` may hold (empty for an unknown topic)."""
    if topic.startswith(BENCH_PREFIX):
        return ALL_EVENTS
    if topic.endswith(REJECTED_SUFFIX):
        return (ev.EventRejected,)
    return TOPIC_EVENTS.get(topic, ())
