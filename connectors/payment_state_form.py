"""The storage form of a payment state: the JSON document the ledger projector writes in
``payments.state`` and reads back, beside the store that writes it (``connectors.ledger_store``,
whose ``state_json`` writes the same document straight from the dataclasses, faster).

Never change a key: stored states depend on them. A new field gets a default on reading, as
``authorized_at`` and ``receivables`` do.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar

from ledger.accounting.posting_rules import RevenueShare
from ledger.dimensions import Dimension
from ledger.events import DisputeOutcome
from ledger.payments.state import (
    DisputeRecord,
    PaymentState,
    PaymentStatus,
    ReceivableRecord,
    RefundRecord,
)


def state_to_dict(state: PaymentState) -> dict[str, Any]:
    """A JSON-ready dict; ``state_from_dict`` reads it back to an equal state."""
    return {
        "payment_id": state.payment_id,
        "network_id": state.network_id,
        "provider": state.provider,
        "currency": state.currency,
        "authorized": state.authorized,
        "incremented": state.incremented,
        "captured": state.captured,
        "refunded": state.refunded,
        "hold": state.hold,
        "status": state.status.value,
        "provider_references": list(state.provider_references),
        "capture_ids": list(state.capture_ids),
        "revenue": [_share_to_dict(s) for s in state.revenue],
        "refunds": [
            {
                "refund_id": r.refund_id,
                "amount": r.amount,
                "shares": [_share_to_dict(s) for s in r.shares],
                "provider_reference": r.provider_reference,
                "reversed": r.reversed,
            }
            for r in state.refunds
        ],
        "disputes": [
            {
                "dispute_id": d.dispute_id,
                "amount": d.amount,
                "outcome": d.outcome.value if d.outcome else None,
            }
            for d in state.disputes
        ],
        "applied_event_ids": sorted(state.applied_event_ids),
        "authorized_at": state.authorized_at.isoformat() if state.authorized_at else None,
        "receivables": [
            {
                "cdr_id": r.cdr_id,
                "amount": r.amount,
                "since": r.since.isoformat(),
                "remaining": [_share_to_dict(s) for s in r.remaining],
                "collected": r.collected,
                "written_off": r.written_off,
            }
            for r in state.receivables
        ],
    }


def state_from_dict(data: dict[str, Any]) -> PaymentState:
    """The state ``state_to_dict`` wrote (and states stored before ``authorized_at`` existed).
    Raises ValueError for an unknown status, dimension or outcome."""
    # Positional construction and dict lookups of enum members: this runs per stored state.
    return PaymentState(
        data["payment_id"],
        data["network_id"],
        data["provider"],
        data["currency"],
        data["authorized"],
        data["incremented"],
        data["captured"],
        data["refunded"],
        data["hold"],
        _member(PaymentStatus, _STATUSES, data["status"]),
        tuple(data["provider_references"]),
        tuple(data["capture_ids"]),
        tuple([_share_from_dict(s) for s in data["revenue"]]),
        tuple([_refund_from_dict(r) for r in data["refunds"]]),
        tuple([_dispute_from_dict(d) for d in data["disputes"]]),
        frozenset(data["applied_event_ids"]),
        _when(data.get("authorized_at")),
        tuple([_receivable_from_dict(r) for r in data.get("receivables", ())]),
    )


_E = TypeVar("_E", bound=StrEnum)
_STATUSES = {s.value: s for s in PaymentStatus}
_DIMENSIONS = {d.value: d for d in Dimension}
_OUTCOMES = {o.value: o for o in DisputeOutcome}


def _member(enum: type[_E], members: dict[str, _E], value: str) -> _E:
    """``enum(value)`` via a dict (an Enum call is slow); the call still raises for the unknown."""
    try:
        return members[value]
    except (KeyError, TypeError):
        return enum(value)


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _refund_from_dict(r: dict[str, Any]) -> RefundRecord:
    return RefundRecord(
        refund_id=r["refund_id"],
        amount=r["amount"],
        shares=tuple(_share_from_dict(s) for s in r["shares"]),
        provider_reference=r["provider_reference"],
        reversed=r["reversed"],
    )


def _receivable_from_dict(r: dict[str, Any]) -> ReceivableRecord:
    return ReceivableRecord(
        r["cdr_id"],
        r["amount"],
        datetime.fromisoformat(r["since"]),
        tuple(_share_from_dict(s) for s in r["remaining"]),
        r["collected"],
        r["written_off"],
    )


def _dispute_from_dict(d: dict[str, Any]) -> DisputeRecord:
    return DisputeRecord(
        dispute_id=d["dispute_id"],
        amount=d["amount"],
        outcome=_member(DisputeOutcome, _OUTCOMES, d["outcome"]) if d["outcome"] else None,
    )


def _share_to_dict(share: RevenueShare) -> dict[str, Any]:
    return {
        "dimension": share.dimension.value,
        "station": share.station,
        "country": share.country,
        "net": share.net,
        "vat": share.vat,
        "rate": share.rate,
    }


def _share_from_dict(data: dict[str, Any]) -> RevenueShare:
    return RevenueShare(
        _member(Dimension, _DIMENSIONS, data["dimension"]),
        data["station"],
        data["country"],
        data["net"],
        data["vat"],
        data.get("rate"),  # states stored before migration 024 have none
    )
