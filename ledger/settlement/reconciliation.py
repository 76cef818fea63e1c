"""Match what a provider says it settled against what the ledger recorded, line by line.

Both sides are reduced to lines keyed by ``(type, provider_reference)``: a charge's key is the
provider's charge / transaction id, a refund's its refund id, a payout's its payout id. Amounts are
positive magnitudes in minor units; the type gives the direction. A key seen several times on
one side is matched pairwise in order, the surplus reported as missing.

Result categories:
- ``matched``: same key, same amount, and same fee when the ledger knows the fee;
- ``amount_mismatch``: same key, different amount or fee;
- ``missing_in_ledger``: the provider reports it, the ledger has nothing (an external refund,
  a lost event, a fee we never booked);
- ``missing_at_provider``: the ledger has it, the provider does not (not yet settled, or a capture
  the ledger believes happened but the provider never executed).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from ledger.errors import ValidationError
from ledger.money import Money


class LineType(StrEnum):
    CHARGE = "charge"
    REFUND = "refund"
    FEE = "fee"
    PAYOUT = "payout"
    OTHER = "other"  # disputes, adjustments...: always needs a person


@dataclass(frozen=True, slots=True)
class SettlementLine:
    """One line of a provider's settlement report (balance transaction, settled transaction)."""

    provider: str
    type: LineType
    provider_reference: str
    amount: Money
    fee: Money | None = None
    occurred_at: datetime | None = None
    payment_reference: str | None = None  # the authorization / PaymentIntent it belongs to

    def __post_init__(self) -> None:
        if self.amount.is_negative or (self.fee is not None and self.fee.is_negative):
            raise ValidationError(
                "settlement amounts are positive magnitudes; the type gives the direction",
                provider_reference=self.provider_reference,
            )


@dataclass(frozen=True, slots=True)
class LedgerRecord:
    """What the ledger booked for one provider reference (from a projection of money events)."""

    type: LineType
    provider_reference: str
    amount: Money
    fee: Money | None = None
    payment_id: str | None = None


@dataclass(frozen=True, slots=True)
class Matched:
    line: SettlementLine
    record: LedgerRecord


@dataclass(frozen=True, slots=True)
class AmountMismatch:
    line: SettlementLine
    record: LedgerRecord
    field: str  # "amount" or "fee"
    provider_value: Money | None
    ledger_value: Money | None


@dataclass(frozen=True, slots=True)
class ReconciliationReport:
    matched: list[Matched] = field(default_factory=list)
    amount_mismatch: list[AmountMismatch] = field(default_factory=list)
    missing_in_ledger: list[SettlementLine] = field(default_factory=list)
    missing_at_provider: list[LedgerRecord] = field(default_factory=list)

    @property
    def is_clean(self) -> bool:
        return not (self.amount_mismatch or self.missing_in_ledger or self.missing_at_provider)


def _compare(line: SettlementLine, record: LedgerRecord) -> AmountMismatch | None:
    if line.amount != record.amount:
        return AmountMismatch(line, record, "amount", line.amount, record.amount)
    if record.fee is not None and line.fee != record.fee:
        return AmountMismatch(line, record, "fee", line.fee, record.fee)
    return None


def reconcile(
    lines: Iterable[SettlementLine], records: Iterable[LedgerRecord]
) -> ReconciliationReport:
    """Sort every provider line and ledger record into exactly one category.

    Lines and records of other currencies never match each other: a currency difference is an
    amount mismatch.
    """
    by_key: dict[tuple[LineType, str], list[LedgerRecord]] = defaultdict(list)
    for record in records:
        by_key[(record.type, record.provider_reference)].append(record)

    report = ReconciliationReport()
    for line in lines:
        candidates = by_key.get((line.type, line.provider_reference))
        if not candidates:
            report.missing_in_ledger.append(line)
            continue
        record = candidates.pop(0)
        mismatch = _compare(line, record)
        if mismatch is None:
            report.matched.append(Matched(line, record))
        else:
            report.amount_mismatch.append(mismatch)
    for remaining in by_key.values():
        report.missing_at_provider.extend(remaining)
    return report
