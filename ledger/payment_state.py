"""What the ledger remembers about one payment, as an immutable value.

``ledger.payments.apply`` folds events into it. The projector stores it per payment (the
``to_dict`` form is plain JSON) next to the entries, in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ledger.dimensions import Dimension
from ledger.events import DisputeOutcome
from ledger.posting_rules import RevenueShare


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
    """Captured revenue not yet refunded, by dimension, station and VAT country."""
    refunds: tuple[RefundRecord, ...] = ()
    disputes: tuple[DisputeRecord, ...] = ()
    applied_event_ids: frozenset[str] = field(default_factory=frozenset)

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

    def refund(self, refund_id: str) -> RefundRecord | None:
        return next((r for r in self.refunds if r.refund_id == refund_id), None)

    def dispute(self, dispute_id: str) -> DisputeRecord | None:
        return next((d for d in self.disputes if d.dispute_id == dispute_id), None)

    # -- storage form ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; ``from_dict`` reads it back to an equal state."""
        return {
            "payment_id": self.payment_id,
            "network_id": self.network_id,
            "provider": self.provider,
            "currency": self.currency,
            "authorized": self.authorized,
            "incremented": self.incremented,
            "captured": self.captured,
            "refunded": self.refunded,
            "hold": self.hold,
            "status": self.status.value,
            "provider_references": list(self.provider_references),
            "capture_ids": list(self.capture_ids),
            "revenue": [_share_to_dict(s) for s in self.revenue],
            "refunds": [
                {
                    "refund_id": r.refund_id,
                    "amount": r.amount,
                    "shares": [_share_to_dict(s) for s in r.shares],
                    "provider_reference": r.provider_reference,
                    "reversed": r.reversed,
                }
                for r in self.refunds
            ],
            "disputes": [
                {
                    "dispute_id": d.dispute_id,
                    "amount": d.amount,
                    "outcome": d.outcome.value if d.outcome else None,
                }
                for d in self.disputes
            ],
            "applied_event_ids": sorted(self.applied_event_ids),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PaymentState:
        return cls(
            payment_id=data["payment_id"],
            network_id=data["network_id"],
            provider=data["provider"],
            currency=data["currency"],
            authorized=data["authorized"],
            incremented=data["incremented"],
            captured=data["captured"],
            refunded=data["refunded"],
            hold=data["hold"],
            status=PaymentStatus(data["status"]),
            provider_references=tuple(data["provider_references"]),
            capture_ids=tuple(data["capture_ids"]),
            revenue=tuple(_share_from_dict(s) for s in data["revenue"]),
            refunds=tuple(
                RefundRecord(
                    refund_id=r["refund_id"],
                    amount=r["amount"],
                    shares=tuple(_share_from_dict(s) for s in r["shares"]),
                    provider_reference=r["provider_reference"],
                    reversed=r["reversed"],
                )
                for r in data["refunds"]
            ),
            disputes=tuple(
                DisputeRecord(
                    dispute_id=d["dispute_id"],
                    amount=d["amount"],
                    outcome=DisputeOutcome(d["outcome"]) if d["outcome"] else None,
                )
                for d in data["disputes"]
            ),
            applied_event_ids=frozenset(data["applied_event_ids"]),
        )


def _share_to_dict(share: RevenueShare) -> dict[str, Any]:
    return {
        "dimension": share.dimension.value,
        "station": share.station,
        "country": share.country,
        "net": share.net,
        "vat": share.vat,
    }


def _share_from_dict(data: dict[str, Any]) -> RevenueShare:
    return RevenueShare(
        Dimension(data["dimension"]), data["station"], data["country"], data["net"], data["vat"]
    )
