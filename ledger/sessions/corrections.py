"""Re-pricing corrections: reverse a CDR, issue the corrected one, and settle the difference.

A CDR is never edited. A correction is a credit of the original CDR in full plus a new CDR with
the re-priced total; the money moves as the difference between what was captured and the new
total: a refund when the new total is lower, an additional charge when it is higher. The sessions
processor maps the result to CdrCredited, CdrIssued and RefundRequested / CaptureRequested.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from ledger.dimensions import Dimension
from ledger.errors import CurrencyMismatch, ValidationError
from ledger.events import RevenueLine
from ledger.money import Money
from ledger.pricing.price import PricedSession


class SettlementKind(StrEnum):
    REFUND = "REFUND"  # captured more than the new total: give back the difference
    ADDITIONAL_CHARGE = "ADDITIONAL_CHARGE"  # the new total is higher than what was captured
    NO_CHANGE = "NO_CHANGE"  # captured equals the new total


@dataclass(frozen=True, slots=True)
class CdrCredit:
    """The full reversal of the original CDR (positive amounts, by line)."""

    total_incl_vat: Money
    lines: tuple[RevenueLine, ...]


@dataclass(frozen=True, slots=True)
class Correction:
    """What to emit for a re-priced session. ``captured - refund + additional_charge`` equals
    ``new_cdr.total_incl_vat``; ``refund`` and ``additional_charge`` are never negative and at
    most one of them is non-zero."""

    credit: CdrCredit
    new_cdr: PricedSession
    captured: Money
    kind: SettlementKind
    refund: Money
    additional_charge: Money
    #: Revenue reversed by the refund, per (dimension, VAT rate); empty when the capture did not
    #: equal the original total (then the refund is pro rata to the captures).
    refund_lines: tuple[RevenueLine, ...]
    reason: str


def correct_cdr(
    original: PricedSession, repriced: PricedSession, captured: Money, reason: str
) -> Correction:
    """Credit ``original``, issue ``repriced``, and settle against the ``captured`` amount.

    Raises CurrencyMismatch when the amounts are in different currencies, ValidationError when
    the two CDRs are for different sessions or ``captured`` is negative.
    """
    if original.session_id != repriced.session_id:
        raise ValidationError(
            "a correction re-prices the same session",
            session_id=original.session_id,
            repriced_session_id=repriced.session_id,
        )
    if original.currency != repriced.currency or captured.currency != original.currency:
        raise CurrencyMismatch(
            "correction amounts must share one currency",
            session_id=original.session_id,
            original=original.currency,
            repriced=repriced.currency,
            captured=captured.currency,
        )
    if captured.is_negative:
        raise ValidationError("captured amount is negative", session_id=original.session_id)
    credit = CdrCredit(original.total_incl_vat, tuple(original.revenue_lines()))
    zero = Money.zero(captured.currency)
    difference = captured - repriced.total_incl_vat
    if difference.is_zero:
        kind, refund, extra = SettlementKind.NO_CHANGE, zero, zero
    elif difference.is_negative:
        kind, refund, extra = SettlementKind.ADDITIONAL_CHARGE, zero, -difference
    else:
        kind, refund, extra = SettlementKind.REFUND, difference, zero
    lines: tuple[RevenueLine, ...] = ()
    if kind is SettlementKind.REFUND and captured == original.total_incl_vat:
        lines = _line_differences(original, repriced)
    return Correction(credit, repriced, captured, kind, refund, extra, lines, reason)


def _line_differences(original: PricedSession, repriced: PricedSession) -> tuple[RevenueLine, ...]:
    """Original minus re-priced, per (dimension, VAT rate), non-zero ones only. They sum to the
    refund; a line can be negative when min_price moved revenue into it."""
    before: dict[tuple[Dimension, Decimal | None], tuple[int, int]] = {}
    for line in original.lines:
        net, vat = before.get((line.dimension, line.vat_rate), (0, 0))
        before[(line.dimension, line.vat_rate)] = (
            net + line.net.amount_minor,
            vat + line.vat.amount_minor,
        )
    for line in repriced.lines:
        net, vat = before.get((line.dimension, line.vat_rate), (0, 0))
        before[(line.dimension, line.vat_rate)] = (
            net - line.net.amount_minor,
            vat - line.vat.amount_minor,
        )
    return tuple(
        RevenueLine(
            dimension=dim,
            amount_excl_vat=net,
            vat_amount=vat,
            vat_rate=None if rate is None else str(rate),
        )
        for (dim, rate), (net, vat) in before.items()
        if net or vat
    )
