"""The ledger projector: money events → balanced journal entries, balances and payment states.

Consumer group ``evledger-ledger`` over ``payments.events``, ``billing.events`` and
``provider.events``, on the shared exactly-once loop (``processors.base.PostgresProcessor``):
the entries, balances, payment states and offsets of one batch commit in one transaction.
Several instances may run in the group (``evledger ledger run`` once per process); partitions are
shared and ``connectors.ledger_store`` keeps their transactions from losing updates or
deadlocking. Hot accounts are written once per batch (see docs/accounting.md, "Projector").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from connectors import ledger_store as store
from connectors import postgres
from connectors.kafka import Consumed
from ledger import payments
from ledger.accounting import balances, periods
from ledger.accounting import posting_rules as rules
from ledger.accounting.journal import JournalEntry
from ledger.errors import InfrastructureError, ValidationError
from ledger.events import (
    AuthorizationFailed,
    ExternalRefundReported,
    PaymentAuthorized,
    PaymentCaptured,
    PayoutPaid,
    ProviderRouted,
)
from processors.base import BatchStats, Effects, PostgresProcessor, Wiring

GROUP = "evledger-ledger"
TOPICS = ("payments.events", "billing.events", "provider.events")
PAYMENT_EVENTS: tuple[type, ...] = payments.PaymentEvent.__args__
INFORMATIONAL: tuple[type, ...] = (*rules.NOT_POSTED, ProviderRouted, AuthorizationFailed)
"""Applied with no entries and no payment state: CDRs and provider dispute webhooks (see
posting_rules.NOT_POSTED), routing decisions and failed authorizations (no hold, no money)."""


class UnbookableEvent(ValidationError):
    """An event type the ledger does not book arrived on one of its topics."""

    code = "UNBOOKABLE_EVENT"


log = logging.getLogger("evledger.ledger")


@dataclass
class _Batch:
    """What one batch changes, collected while its events are applied in order."""

    states: dict[str, payments.PaymentState]
    references: dict[tuple[str, str], str]
    entries: list[store.StoredEntry] = field(default_factory=list)
    touched: dict[str, store.PaymentRow] = field(default_factory=dict)
    new_references: set[tuple[str, str, str]] = field(default_factory=set)
    sources: list[tuple[str, int]] = field(default_factory=list)
    """The (topic, partition) of each entry's record, in step with ``entries``: its chain."""
    documents: list[tuple[str, str]] = field(default_factory=list)
    """(entry_id, cdr_id) of entries whose event names the CDR it pays."""
    history: list[store.PaymentStep] = field(default_factory=list)
    """Each payment's status and totals after each event applied to it, in order."""


class LedgerHandler:
    """Applies a batch of money events with ``ledger.payments.apply`` and books the result."""

    def handle(self, tx: Effects, records: Sequence[Consumed]) -> None:
        """Book ``records`` inside ``tx``; a refused event is rejected with its reason code.
        Raises only infrastructure errors (the batch is then retried)."""
        if not records:
            return
        ids = {pid for r in records if (pid := _payment_id(r.event)) is not None}
        refs = {
            (r.event.provider, r.event.provider_reference)
            for r in records
            if isinstance(r.event, ExternalRefundReported)
        }
        states = store.load_payment_states(tx.conn, ids, refs)
        known = set(states)
        batch = _Batch(
            states,
            {
                (s.provider, ref): s.payment_id
                for s in states.values()
                for ref in s.provider_references
            },
        )
        for record in records:
            booked = len(batch.entries)
            try:
                if not self._apply(batch, record.event):
                    tx.duplicate(record)
            except ValidationError as exc:
                tx.reject(record, exc.code, str(exc))
            chain = (record.topic, record.partition)
            batch.sources += [chain] * (len(batch.entries) - booked)
        locked_until = store.lock_boundary(tx.conn)
        if locked_until is not None:
            batch.entries = _relocated(tx, batch.entries, locked_until)
        if any(s.entry.occurred_at.tzinfo is not UTC for s in batch.entries):
            batch.entries = [_in_utc(s) for s in batch.entries]
        text = store.write_entries(tx.conn, batch.entries)
        store.link_entries(tx.conn, text, batch.entries, batch.sources)
        store.write_payments(tx.conn, list(batch.touched.values()), known)
        store.write_payment_history(tx.conn, batch.history)
        store.insert_references(tx.conn, batch.new_references)
        store.insert_documents(tx.conn, batch.documents)
        # Last, so the hot balance rows stay locked only from here to the commit.
        store.upsert_balances(tx.conn, balances.aggregate(e.entry for e in batch.entries))

    def deduplicates(self, record: Consumed) -> bool:
        """Payment events: a payment's state keeps the ids of the events applied to it, so a
        repeat is found there (``payments.apply``) and needs no ``processed_events`` mark; and a
        rejected one (``UNKNOWN_PAYMENT`` before its authorization) can be re-driven."""
        return isinstance(record.event, PAYMENT_EVENTS)

    def _apply(self, batch: _Batch, event: Any) -> bool:
        """Book ``event``; False if it was applied before (a duplicate). Raises
        ValidationError (with its reason code) for an event the ledger refuses."""
        if isinstance(event, PAYMENT_EVENTS):
            return self._apply_payment(batch, event)
        if isinstance(event, PayoutPaid):
            kind = type(event).__name__
            batch.entries += [
                store.StoredEntry(e, kind, event.provider) for e in rules.payout(event)
            ]
        elif not isinstance(event, INFORMATIONAL):
            raise UnbookableEvent(f"the ledger does not book {type(event).__name__} events")
        return True

    def _apply_payment(self, batch: _Batch, event: Any) -> bool:
        if isinstance(event, ExternalRefundReported):
            payment_id = batch.references.get((event.provider, event.provider_reference))
        else:
            payment_id = event.payment_id
        state = batch.states.get(payment_id) if payment_id is not None else None
        applied = payments.apply(state, event)
        if applied.duplicate:
            return False
        new = applied.state
        kind = type(event).__name__
        batch.entries += [store.StoredEntry(e, kind, new.provider) for e in applied.entries]
        cdr_id = getattr(event, "cdr_id", None)
        if cdr_id is not None:
            batch.documents += [(e.entry_id, cdr_id) for e in applied.entries]
        batch.states[new.payment_id] = new
        at = event.envelope.occurred_at
        row = batch.touched.get(new.payment_id)
        station = getattr(event, "station_id", None) if _carries_station(event) else None
        if row is None:
            row = store.PaymentRow(new, station, at, at)
            batch.touched[new.payment_id] = row
        row.state, row.last_event_at = new, at
        batch.history.append(store.PaymentStep(
            new.payment_id, len(new.applied_event_ids), event.envelope.event_id, kind, at,
            new.status.value,
            new.authorized_total, new.captured, new.refunded, new.hold,
        ))  # fmt: skip
        row.station_id = station or row.station_id
        for ref in new.provider_references:
            if (new.provider, ref) not in batch.references:
                batch.references[(new.provider, ref)] = new.payment_id
                batch.new_references.add((new.provider, ref, new.payment_id))
        return True


def _relocated(
    tx: Effects, entries: list[store.StoredEntry], locked_until: datetime
) -> list[store.StoredEntry]:
    """Entries dated in a closed period, booked at the first open instant (``periods``)."""
    moved_entries, moved = periods.relocate([s.entry for s in entries], locked_until)
    if not moved:
        return entries
    store.insert_relocations(tx.conn, moved)
    log.info("%d entries dated in closed periods booked at %s", len(moved), locked_until)
    return [s._replace(entry=e) for s, e in zip(entries, moved_entries, strict=True)]


def _in_utc(stored: store.StoredEntry) -> store.StoredEntry:
    """The entry dated in UTC (decoded events always are), as the hash chain's verifier reads
    it back from the table."""
    e = stored.entry
    if e.occurred_at.tzinfo is UTC:
        return stored
    at = e.occurred_at.astimezone(UTC)
    return stored._replace(
        entry=JournalEntry(e.entry_id, e.event_id, e.payment_id, e.network_id, at, e.kind,
                           e.postings)
    )  # fmt: skip


def _payment_id(event: Any) -> str | None:
    if isinstance(event, ExternalRefundReported) or not isinstance(event, PAYMENT_EVENTS):
        return None
    payment_id: str = getattr(event, "payment_id")  # noqa: B009 (narrowed by the tuple above)
    return payment_id


def _carries_station(event: Any) -> bool:
    return isinstance(event, PaymentAuthorized | PaymentCaptured)


def build_ledger_processor(
    app: Wiring,
    *,
    group: str = GROUP,
    database_url: str | None = None,
    batch_size: int = 5000,
    migrate: bool = True,
    instance_id: str | None = None,
    subscribe: bool = True,
) -> PostgresProcessor:
    """A PostgresProcessor running the ledger projector for ``group`` into ``database_url``
    (default: the app's database), migrated first unless ``migrate=False``.

    ``instance_id`` turns on static group membership (Kafka ``group.instance.id``): an instance
    restarted under the same id takes its partitions back at once instead of waiting for the
    broker to expire the dead member. ``subscribe=False`` keeps it out of the Kafka consumer
    group (a replay: it reads the records itself and hands them to ``apply``). Raises
    InfrastructureError when PostgreSQL is unreachable.
    """
    url = database_url or app.database_url
    if migrate:
        postgres.migrate(url)
    static = {} if instance_id is None else {"group.instance.id": instance_id}
    return PostgresProcessor(
        app,
        LedgerHandler(),
        group,
        TOPICS,
        batch_size=batch_size,
        database_url=url,
        consumer_config=static,
        subscribe=subscribe,
    )


def drain(processor: PostgresProcessor, max_seconds: float = 900.0) -> BatchStats:
    """Process until this instance has read every partition it owns up to the ends seen at the
    start (``--drain``). Unlike an idle timeout it cannot stop before the group join finishes.
    Raises InfrastructureError (retriable) if not caught up within ``max_seconds``."""
    ends = processor.consumer.end_offsets(processor.topics)
    total = BatchStats()
    deadline = time.monotonic() + max_seconds
    while time.monotonic() < deadline:
        stats = processor.step(0.5)
        total.add(stats)
        if not stats.consumed and not stats.published and caught_up(processor, ends):
            return total
    raise InfrastructureError(f"ledger projector not caught up after {max_seconds}s",
                              retriable=True, group=processor.group)  # fmt: skip


def caught_up(processor: PostgresProcessor, ends: dict[tuple[str, int], int]) -> bool:
    """Whether every partition assigned to ``processor`` is read up to ``ends``. The consumer
    position counts transaction markers; the stored offsets cover partitions not yet fetched."""
    assignment = processor.consumer.consumer.assignment()
    if not assignment:
        return False
    stored = processor.checkpoint.stored_offsets(processor.group, processor.topics)
    for tp in processor.consumer.consumer.position(assignment):
        done = max(tp.offset, stored.get((tp.topic, tp.partition), 0))
        if done < ends.get((tp.topic, tp.partition), 0):
            return False
    return True
