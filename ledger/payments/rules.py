"""Payment rules: validate a money event against the payment's state, then post it.

``apply(state, event)`` is the one entry point. It returns the new state and the journal entries
the event causes, reports a repeated ``event_id`` as a duplicate that changes nothing, and raises a
``PaymentRejected`` subclass (``ledger.payments.errors``) with a stable reason code when the event
breaks a rule. It is deterministic: the same state and event always give the same result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from ledger.accounting import accounts
from ledger.accounting import posting_rules as rules
from ledger.accounting.journal import EntryKind, JournalEntry
from ledger.events import (
    AuthorizationExpired,
    AuthorizationIncremented,
    CaptureFailed,
    DisputeOpened,
    DisputeOutcome,
    DisputeResolved,
    ExternalRefundReported,
    PaymentAuthorized,
    PaymentCaptured,
    PaymentRefunded,
    PaymentVoided,
    ReceivableCollected,
    ReceivableWrittenOff,
    RefundFailed,
    RevenueLine,
)
from ledger.money import Money
from ledger.payments import errors as err
from ledger.payments.state import (
    DisputeRecord,
    PaymentState,
    PaymentStatus,
    ReceivableRecord,
    RefundRecord,
    StateChanges,
)

__all__ = ["Applied", "PaymentEvent", "PaymentState", "PaymentStatus", "apply", "check_hold"]

PaymentEvent = (
    PaymentAuthorized
    | AuthorizationIncremented
    | PaymentCaptured
    | CaptureFailed
    | PaymentVoided
    | AuthorizationExpired
    | PaymentRefunded
    | RefundFailed
    | DisputeOpened
    | DisputeResolved
    | ExternalRefundReported
    | ReceivableCollected
    | ReceivableWrittenOff
)
"""Events that change a payment. ExternalRefundReported carries no payment_id: the caller finds
the payment by (provider, provider_reference) and passes its state."""


@dataclass(frozen=True, slots=True)
class Applied:
    """The outcome of an accepted event: the new state and the entries to store with it."""

    state: PaymentState
    entries: tuple[JournalEntry, ...]
    duplicate: bool = False
    """The event_id was applied before: state unchanged, no entries (count it as duplicate)."""


def apply(state: PaymentState | None, event: PaymentEvent) -> Applied:
    """Apply one money event to a payment. Raises PaymentRejected (see payment_errors)."""
    event_id = event.envelope.event_id
    if state is not None and event_id in state.applied_event_ids:
        return Applied(state, (), duplicate=True)
    if isinstance(event, PaymentAuthorized):
        if state is not None:
            raise err.DuplicateAuthorization(
                "payment already authorized", payment_id=state.payment_id, event_id=event_id
            )
        new_state, entries = _authorize(event)
        return Applied(new_state, tuple(entries))
    if state is None:
        if isinstance(event, ExternalRefundReported):
            raise err.UnknownPayment(
                f"no payment has provider reference {event.provider_reference!r} at "
                f"{event.provider}; re-drive once its authorization is applied",
                payment_id=None,
                provider=event.provider,
                provider_reference=event.provider_reference,
                refund_reference=event.refund_reference,
                event_id=event_id,
            )
        raise err.UnknownPayment(
            "no authorization seen for this payment; re-drive once it is applied",
            payment_id=event.payment_id,
            event_id=event_id,
        )
    if event.envelope.network_id != state.network_id:
        raise _reject(err.NetworkMismatch, state, event, f"payment is {state.network_id}")
    if (
        state.authorized_at is not None
        and event.envelope.occurred_at < state.authorized_at
        and isinstance(event, _FOLLOW_AUTHORIZATION)
    ):
        raise _reject(
            err.BeforeAuthorization,
            state,
            event,
            f"occurred at {event.envelope.occurred_at.isoformat()}, before the authorization "
            f"at {state.authorized_at.isoformat()}; check the sender's clock",
        )
    changes, entries = _apply_to(state, event)
    changes["applied_event_ids"] = state.applied_event_ids | {event_id}
    # One new state per event: the rules below return their changes, not states of their own.
    return Applied(state.updated(changes), tuple(entries))


_FOLLOW_AUTHORIZATION = (
    AuthorizationIncremented,
    PaymentCaptured,
    PaymentRefunded,
    ExternalRefundReported,
)
"""Events that cannot occur before the payment's authorization (docs/input-rules.md, "Time")."""

Result = tuple[StateChanges, list[JournalEntry]]
"""What an event changes in the payment's state, and the entries it posts."""


def _apply_to(state: PaymentState, event: PaymentEvent) -> Result:
    if isinstance(event, AuthorizationIncremented):
        return _increment(state, event)
    if isinstance(event, PaymentCaptured):
        return _capture(state, event)
    if isinstance(event, PaymentVoided | AuthorizationExpired):
        return _release(state, event)
    if isinstance(event, PaymentRefunded):
        return _refund(state, event, event.refund_id, list(event.lines), event.provider_reference)
    if isinstance(event, ExternalRefundReported):
        if event.provider != state.provider:
            raise _reject(err.ProviderMismatch, state, event, f"payment is at {state.provider}")
        if event.provider_reference not in state.provider_references:
            raise _reject(err.ProviderReferenceMismatch, state, event, event.provider_reference)
        return _refund(state, event, event.refund_reference, [], event.refund_reference)
    if isinstance(event, RefundFailed):
        return _refund_failed(state, event)
    if isinstance(event, DisputeOpened):
        return _dispute_opened(state, event)
    if isinstance(event, DisputeResolved):
        return _dispute_resolved(state, event)
    if isinstance(event, ReceivableCollected | ReceivableWrittenOff):
        return _settle_receivable(state, event)
    if isinstance(event, CaptureFailed):
        return _capture_failed(state, event)
    raise TypeError(f"{type(event).__name__} is not applied to an existing payment")


# -- holds --------------------------------------------------------------------------------------
def check_hold(event: PaymentAuthorized | AuthorizationIncremented) -> None:
    """Raise InvalidAmount unless the hold (or increment) is a positive amount: the rule every
    reader of holds shares, so the sessions processor never bills against a hold the ledger
    refuses (a zero or negative authorization holds nothing)."""
    if event.amount.amount_minor <= 0:
        raise err.InvalidAmount(
            f"{type(event).__name__} rejected: a hold must be positive, got {event.amount}",
            payment_id=event.payment_id,
            event_id=event.envelope.event_id,
        )


def _authorize(event: PaymentAuthorized) -> tuple[PaymentState, list[JournalEntry]]:
    state = PaymentState(
        payment_id=event.payment_id,
        network_id=event.envelope.network_id,
        provider=event.provider,
        currency=event.amount.currency,
        authorized=event.amount.amount_minor,
        hold=event.amount.amount_minor,
        provider_references=(event.provider_reference,),
        applied_event_ids=frozenset((event.envelope.event_id,)),
        authorized_at=event.envelope.occurred_at,
    )
    check_hold(event)
    return state, rules.hold_placed(_ctx(state, event), state.provider, event.amount)


def _increment(state: PaymentState, event: AuthorizationIncremented) -> Result:
    _hold_open(state, event)
    _currency(state, event, event.amount)
    check_hold(event)
    changes: StateChanges = {
        "incremented": state.incremented + event.amount.amount_minor,
        "hold": state.hold + event.amount.amount_minor,
    }
    return changes, rules.hold_increased(_ctx(state, event), state.provider, event.amount)


def _release(state: PaymentState, event: PaymentVoided | AuthorizationExpired) -> Result:
    voided = isinstance(event, PaymentVoided)
    if not state.status.hold_open:
        # The hold is already gone. A provider's expiry timer firing after a void or a final
        # capture, or a void racing an expiry, changes nothing; a void after a final capture
        # means an instruction raced the capture, and a person should look.
        if voided and state.status is PaymentStatus.FINALIZED:
            raise _reject(err.PaymentFinalized, state, event, "nothing left to void")
        return {}, []
    status = PaymentStatus.VOIDED if voided else PaymentStatus.EXPIRED
    released = Money(state.hold, state.currency)
    entries = rules.hold_released(_ctx(state, event), state.provider, released)
    return {"hold": 0, "status": status}, entries


# -- captures -----------------------------------------------------------------------------------
def _capture(state: PaymentState, event: PaymentCaptured) -> Result:
    _hold_open(state, event)
    if event.provider != state.provider:
        raise _reject(err.ProviderMismatch, state, event, f"payment is at {state.provider}")
    if event.capture_id in state.capture_ids:
        raise _reject(err.DuplicateCapture, state, event, event.capture_id)
    amount = _currency(state, event, event.amount)
    _non_negative(state, event, amount)
    _lines_sum(state, event, event.lines, amount)
    if state.captured + amount > state.authorized_total:
        raise _reject(
            err.CaptureExceedsAuthorization,
            state,
            event,
            f"captured {state.captured} + {amount} > authorized {state.authorized_total}",
        )
    if event.fee is not None:
        # The fee may be in the provider's settlement currency; it is its own balanced entry.
        _non_negative(state, event, event.fee.amount_minor)
    released = state.hold if event.final else amount
    ctx = _ctx(state, event)
    owed = state.receivable_of(event.cdr_id)
    if owed is not None:
        return _collect_by_capture(state, event, owed, released)
    shares = rules.shares_of(event.lines, event.station_id, event.country)
    booked = rules.captured(ctx, state.provider, event.amount, shares, event.supplied_at)
    return _captured(state, event, released, shares), [
        *booked,
        *(rules.provider_fee(ctx, state.provider, event.fee) if event.fee else []),
        *rules.hold_released(ctx, state.provider, Money(released, state.currency)),
    ]


def _captured(
    state: PaymentState,
    event: PaymentCaptured,
    released: int,
    revenue: Sequence[rules.RevenueShare],
) -> StateChanges:
    """What any accepted capture changes: captured, the hold, the status, the capture and
    provider ids, and the revenue that is now refundable."""
    references = state.provider_references
    if event.provider_reference and event.provider_reference not in references:
        references = (*references, event.provider_reference)
    return {
        "captured": state.captured + event.amount.amount_minor,
        "hold": state.hold - released,
        "status": PaymentStatus.FINALIZED if event.final else state.status,
        "capture_ids": (*state.capture_ids, event.capture_id),
        "provider_references": references,
        "revenue": tuple(rules.add_shares(state.revenue, [s for s in revenue if s.gross])),
    }


# -- receivables: a billed supply whose capture failed ------------------------------------------
def _capture_failed(state: PaymentState, event: CaptureFailed) -> Result:
    """Informational (the hold stays as it was), unless the capture was to pay a CDR: then the
    supply is billed all the same, and the customer owes it. A second failure for the same CDR
    (a retried instruction) books nothing more."""
    amount = _currency(state, event, event.amount)
    if event.cdr_id is None or not event.lines or state.receivable_of(event.cdr_id) is not None:
        return {}, []
    _positive(state, event, amount)
    _lines_sum(state, event, event.lines, amount)
    shares = tuple(
        s for s in rules.shares_of(event.lines, event.station_id, event.country) if s.gross
    )
    supplied = event.supplied_at or event.envelope.occurred_at
    ctx = _ctx(state, event).on(min(supplied, event.envelope.occurred_at))
    record = ReceivableRecord(event.cdr_id, amount, ctx.occurred_at, shares)
    entries = rules.receivable_booked(ctx, event.amount, shares)
    return {"receivables": (*state.receivables, record)}, entries


def _collect_by_capture(
    state: PaymentState, event: PaymentCaptured, owed: ReceivableRecord, released: int
) -> Result:
    """A later capture of a CDR whose first capture failed: the money settles the receivable;
    the revenue was recognized when it was booked, so none is recognized again."""
    amount = event.amount.amount_minor
    if amount > owed.open:
        raise _reject(
            err.ReceivableExceeded, state, event, f"captured {amount} > open receivable {owed.open}"
        )
    part = rules.allocate_refund(owed.remaining, amount)
    ctx = _ctx(state, event)
    debited = accounts.provider_clearing(state.provider)
    booked = rules.receivable_collected(ctx, debited, event.amount)
    changes = _captured(state, event, released, part)
    changes["receivables"] = _settled(state, owed, part, collected=amount)
    return changes, [
        *booked,
        *(rules.provider_fee(ctx, state.provider, event.fee) if event.fee else []),
        *rules.hold_released(ctx, state.provider, Money(released, state.currency)),
    ]


def _settle_receivable(
    state: PaymentState, event: ReceivableCollected | ReceivableWrittenOff
) -> Result:
    """Money that arrived another way (Dr bank), or bad debt (with VAT relief if asked)."""
    owed = state.receivable_of(event.cdr_id)
    if owed is None:
        raise _reject(err.UnknownReceivable, state, event, f"no receivable for CDR {event.cdr_id}")
    amount = _currency(state, event, event.amount)
    _positive(state, event, amount)
    if amount > owed.open:
        raise _reject(
            err.ReceivableExceeded, state, event, f"{amount} > open receivable {owed.open}"
        )
    part = rules.allocate_refund(owed.remaining, amount)
    ctx = _ctx(state, event)
    if isinstance(event, ReceivableCollected):
        entries = rules.receivable_collected(ctx, accounts.bank(), event.amount)
        receivables = _settled(state, owed, part, collected=amount)
    else:
        entries = rules.bad_debt(ctx, event.amount, part, event.vat_relief)
        receivables = _settled(state, owed, part, written_off=amount)
    return {"receivables": receivables}, entries


def _settled(
    state: PaymentState,
    owed: ReceivableRecord,
    part: Sequence[rules.RevenueShare],
    *,
    collected: int = 0,
    written_off: int = 0,
) -> tuple[ReceivableRecord, ...]:
    after = ReceivableRecord(
        owed.cdr_id,
        owed.amount,
        owed.since,
        tuple(rules.subtract_shares(owed.remaining, part)),
        owed.collected + collected,
        owed.written_off + written_off,
    )
    return tuple(after if r.cdr_id == owed.cdr_id else r for r in state.receivables)


# -- refunds ------------------------------------------------------------------------------------
def _refund(
    state: PaymentState,
    event: PaymentRefunded | ExternalRefundReported,
    refund_id: str,
    lines: Sequence[RevenueLine],
    provider_reference: str | None,
) -> Result:
    known_references = {r.provider_reference for r in state.refunds if r.provider_reference}
    if state.refund(refund_id) or (provider_reference and provider_reference in known_references):
        raise _reject(err.DuplicateRefund, state, event, refund_id)
    amount = _currency(state, event, event.amount)
    _positive(state, event, amount)
    if lines:
        _lines_sum(state, event, lines, amount)
    if amount > state.refundable:
        raise _reject(
            err.RefundExceedsCaptured, state, event, f"{amount} > refundable {state.refundable}"
        )
    if lines:
        shares = rules.allocate_refund_lines(state.revenue, lines)
        if shares is None:
            raise _reject(
                err.RefundExceedsCaptured, state, event, "a line exceeds its dimension's revenue"
            )
    else:
        shares = rules.allocate_refund(state.revenue, amount)
    entries = rules.refunded(_ctx(state, event), state.provider, event.amount, shares)
    record = RefundRecord(refund_id, amount, tuple(shares), provider_reference)
    changes: StateChanges = {
        "refunded": state.refunded + amount,
        "revenue": tuple(rules.subtract_shares(state.revenue, shares)),
        "refunds": (*state.refunds, record),
    }
    return changes, entries


def _refund_failed(state: PaymentState, event: RefundFailed) -> Result:
    """A refund that never succeeded changes nothing; one that was booked (providers can fail a
    refund after reporting it succeeded) is reversed exactly as it was posted."""
    amount = _currency(state, event, event.amount)
    record = state.refund(event.refund_id)
    if record is None or record.reversed:
        return {}, []
    if amount != record.amount:
        raise _reject(err.RefundAmountMismatch, state, event, f"refund was {record.amount}")
    entries = rules.refunded(
        _ctx(state, event),
        state.provider,
        -event.amount,
        rules.negated(record.shares),
        kind=EntryKind.REFUND_REVERSAL,
    )
    refunds = tuple(replace(r, reversed=True) if r is record else r for r in state.refunds)
    changes: StateChanges = {
        "refunded": state.refunded - amount,
        "revenue": tuple(rules.add_shares(state.revenue, record.shares)),
        "refunds": refunds,
    }
    return changes, entries


# -- disputes -----------------------------------------------------------------------------------
def _dispute_opened(state: PaymentState, event: DisputeOpened) -> Result:
    if state.dispute(event.dispute_id):
        raise _reject(err.DuplicateDispute, state, event, event.dispute_id)
    amount = _currency(state, event, event.amount)
    _positive(state, event, amount)
    if amount > state.refundable:
        raise _reject(
            err.DisputeExceedsCaptured, state, event, f"{amount} > disputable {state.refundable}"
        )
    entries = rules.dispute_opened(_ctx(state, event), state.provider, event.amount)
    return {"disputes": (*state.disputes, DisputeRecord(event.dispute_id, amount))}, entries


def _dispute_resolved(state: PaymentState, event: DisputeResolved) -> Result:
    record = state.dispute(event.dispute_id)
    if record is None:
        raise _reject(err.UnknownDispute, state, event, event.dispute_id)
    if record.outcome is not None:
        raise _reject(err.DisputeAlreadyResolved, state, event, record.outcome.value)
    amount = _currency(state, event, event.amount)
    if amount != record.amount:
        raise _reject(err.DisputeAmountMismatch, state, event, f"disputed {record.amount}")
    ctx = _ctx(state, event)
    if event.outcome is DisputeOutcome.WON:
        entries = rules.dispute_won(ctx, state.provider, event.amount)
    else:
        entries = rules.dispute_lost(ctx, state.provider, event.amount)
    disputes = tuple(
        replace(d, outcome=event.outcome) if d is record else d for d in state.disputes
    )
    return {"disputes": disputes}, entries


# -- checks -------------------------------------------------------------------------------------
def _ctx(state: PaymentState, event: PaymentEvent) -> rules.EntryContext:
    return rules.EntryContext.of(event.envelope, state.payment_id, state.network_id)


def _reject(
    error: type[err.PaymentRejected], state: PaymentState, event: PaymentEvent, detail: str
) -> err.PaymentRejected:
    message = f"{type(event).__name__} rejected: {detail}"
    return error(message, payment_id=state.payment_id, event_id=event.envelope.event_id)


def _currency(state: PaymentState, event: PaymentEvent, money: Money) -> int:
    if money.currency != state.currency:
        raise _reject(
            err.PaymentCurrencyMismatch,
            state,
            event,
            f"{money.currency} on a {state.currency} payment",
        )
    return money.amount_minor


def _non_negative(state: PaymentState, event: PaymentEvent, amount: int) -> None:
    if amount < 0:
        raise _reject(err.InvalidAmount, state, event, f"negative amount {amount}")


def _positive(state: PaymentState, event: PaymentEvent, amount: int) -> None:
    if amount <= 0:
        raise _reject(err.InvalidAmount, state, event, f"amount must be positive, got {amount}")


def _lines_sum(
    state: PaymentState, event: PaymentEvent, lines: Sequence[RevenueLine], amount: int
) -> None:
    total = 0
    for line in lines:
        _non_negative(state, event, line.amount_excl_vat)
        _non_negative(state, event, line.vat_amount)
        total += line.amount_excl_vat + line.vat_amount
    if total != amount:
        raise _reject(err.LinesDoNotSum, state, event, f"lines sum to {total}, amount {amount}")


def _hold_open(state: PaymentState, event: PaymentEvent) -> None:
    if state.status is PaymentStatus.VOIDED:
        raise _reject(err.PaymentAlreadyVoided, state, event, "the hold was voided")
    if state.status is PaymentStatus.EXPIRED:
        raise _reject(err.AuthorizationAlreadyExpired, state, event, "the hold expired")
    if state.status is PaymentStatus.FINALIZED:
        raise _reject(err.PaymentFinalized, state, event, "a final capture released the hold")
