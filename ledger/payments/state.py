"""What the ledger remembers about one payment, as an immutable value.

``ledger.payments.apply`` folds events into it. The projector stores it per payment, as JSON,
next to the entries, in the same transaction (the storage form: ``connectors.payment_state_form``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import StrEnum
from operator import attrgetter
from typing import TypedDict

from ledger.accounting.posting_rules import RevenueShare
from ledger.events import DisputeOutcome
from ledger.fastpaths import slot_setters


class PaymentStatus(StrEnum):
    AUTHORIZED = "AUTHORIZED"
    """The hold is open: captures and increments are allowed."""
    FINALIZED = "FINALIZED"
    """A final capture released the rest of the hold."""
    VOIDED = "VOIDED"
    EXPIRED = "EXPIRED"

    @property
    def hold_open(self) -> bool:
        return self is PaymentStatus.AUTHORIZED


@dataclass(frozen=True, slots=True)
class RefundRecord:
    refund_id: str
    amount: int
    shares: tuple[RevenueShare, ...]
    """The revenue this refund reversed, so a later RefundFailed can restore exactly that."""
    provider_reference: str | None = None
    reversed: bool = False


@dataclass(frozen=True, slots=True)
class DisputeRecord:
    dispute_id: str
    amount: int
    outcome: DisputeOutcome | None = None


@dataclass(frozen=True, slots=True)
class ReceivableRecord:
    """A CDR billed and supplied whose capture failed: what the customer owes for it."""

    cdr_id: str
    amount: int
    """Booked (minor units, incl. VAT)."""
    since: datetime
    """The supply date: where its age counts from."""
    remaining: tuple[RevenueShare, ...]
    """The revenue and VAT still open, by dimension, station, VAT country and rate."""
    collected: int = 0
    written_off: int = 0

    @property
    def open(self) -> int:
        return self.amount - self.collected - self.written_off


@dataclass(frozen=True, slots=True)
class PaymentState:
    """One payment's totals in minor units of ``currency``, and what it has already applied."""

    payment_id: str
    network_id: str
    provider: str
    currency: str
    authorized: int
    incremented: int = 0
    captured: int = 0
    refunded: int = 0
    hold: int = 0
    """Open memo hold; equals authorized_total - captured while the hold is open, else 0."""
    status: PaymentStatus = PaymentStatus.AUTHORIZED
    provider_references: tuple[str, ...] = ()
    capture_ids: tuple[str, ...] = ()
    revenue: tuple[RevenueShare, ...] = ()
    """Captured revenue not yet refunded, by dimension, station, VAT country and rate."""
    refunds: tuple[RefundRecord, ...] = ()
    disputes: tuple[DisputeRecord, ...] = ()
    applied_event_ids: frozenset[str] = field(default_factory=frozenset)
    authorized_at: datetime | None = None
    """When the authorization occurred: nothing that follows from it can occur earlier. None
    for states stored before this field existed."""
    receivables: tuple[ReceivableRecord, ...] = ()
    """CDRs whose capture failed, collected or written off since (or still open)."""

    @property
    def authorized_total(self) -> int:
        return self.authorized + self.incremented

    @property
    def disputed(self) -> int:
        """Withdrawn by the provider: open and lost disputes."""
        return sum(d.amount for d in self.disputes if d.outcome is not DisputeOutcome.WON)

    @property
    def refundable(self) -> int:
        return self.captured - self.refunded - self.disputed

    @property
    def receivable(self) -> int:
        """Open receivables in total."""
        return sum(r.open for r in self.receivables)

    def receivable_of(self, cdr_id: str | None) -> ReceivableRecord | None:
        return next((r for r in self.receivables if r.cdr_id == cdr_id), None)

    def refund(self, refund_id: str) -> RefundRecord | None:
        return next((r for r in self.refunds if r.refund_id == refund_id), None)

    def dispute(self, dispute_id: str) -> DisputeRecord | None:
        return next((d for d in self.disputes if d.dispute_id == dispute_id), None)

    def updated(self, changes: StateChanges) -> PaymentState:
        """This state with ``changes`` applied, like ``dataclasses.replace``.

        Every applied event makes one new state; reading all fields with one attrgetter and
        building positionally costs half of replace's per-call field introspection.
        """
        values = list(_field_values(self))
        for name, value in changes.items():
            values[_FIELD_INDEX[name]] = value
        # Fill the slots of a blank instance directly: half the cost of the generated __init__.
        new = object.__new__(PaymentState)
        for set_field, value in zip(_FIELD_SETTERS, values, strict=True):
            set_field(new, value)
        return new


class StateChanges(TypedDict, total=False):
    """The fields of a PaymentState an event may change (see ``PaymentState.updated``)."""

    incremented: int
    captured: int
    refunded: int
    hold: int
    status: PaymentStatus
    provider_references: tuple[str, ...]
    capture_ids: tuple[str, ...]
    revenue: tuple[RevenueShare, ...]
    refunds: tuple[RefundRecord, ...]
    disputes: tuple[DisputeRecord, ...]
    applied_event_ids: frozenset[str]
    receivables: tuple[ReceivableRecord, ...]


_FIELD_NAMES = tuple(f.name for f in fields(PaymentState))
_FIELD_INDEX = {name: i for i, name in enumerate(_FIELD_NAMES)}
_field_values = attrgetter(*_FIELD_NAMES)
_FIELD_SETTERS = slot_setters(PaymentState)
