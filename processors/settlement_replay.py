"""The settlement attempt log (``provider_attempts``) rebuilt from the log, never calling a
provider: ``evledger replay --projection settlement`` (docs/audit.md, "Replay").

Live, the settlement connector writes an instruction's attempt row before it calls the provider
and the provider's answer after; the outcome events it then emits carry that answer, with ids
derived from the instruction's event id (``ledger.settlement.outcomes``). So the log holds, per
instruction, what a rebuild needs:

- an instruction on ``settlement.commands`` gives the row: its idempotency key, the instruction
  as JSON, the amount, and for a capture, void or refund the provider and authorization
  reference of the payment's succeeded authorization (refused, as live, when there is none);
- a ``ProviderRouted`` outcome adds one routing decision (an authorization's provider);
- the outcome on ``payments.events`` (authorized, captured, refunded, voided, or failed with its
  reason) settles the row: status, provider, references, fee, reason.

An event counts as an outcome only if its id is the one the connector derives from its causing
instruction; other events of ``payments.events`` are not settlement's. What the log does not hold
stays out of the rebuild: the tries and their history, the provider's raw answer, and any
instruction without an outcome on the log (pending, in doubt, or a void the provider refused,
whose record the connector rejects).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from psycopg.types.json import Jsonb

from connectors.kafka import Consumed
from connectors.providers.base import Action, idempotency_key
from connectors.settlement_store import (
    COMMAND_TYPES,
    authorization_status_of,
    holding_of,
    insert_attempt,
    snapshot_command,
)
from ledger.events import (
    AuthorizationFailed,
    AuthorizeRequested,
    CaptureFailed,
    PaymentAuthorized,
    PaymentCaptured,
    PaymentRefunded,
    PaymentVoided,
    ProviderRouted,
    RefundFailed,
)
from ledger.settlement.outcomes import instruction_amount, outcome_event_id
from processors.base import Effects
from processors.settlement_handler import ACTIONS, no_hold

TOPICS = ("settlement.commands", "payments.events")

OUTCOMES: dict[type, tuple[str, Action, bool]] = {
    PaymentAuthorized: ("authorized", Action.AUTHORIZE, True),
    AuthorizationFailed: ("authorization_failed", Action.AUTHORIZE, False),
    PaymentCaptured: ("captured", Action.CAPTURE, True),
    CaptureFailed: ("capture_failed", Action.CAPTURE, False),
    PaymentRefunded: ("refunded", Action.REFUND, True),
    RefundFailed: ("refund_failed", Action.REFUND, False),
    PaymentVoided: ("voided", Action.VOID, True),
}
"""Per outcome event type: the kind its id is derived with, the action it settles, success."""


class ReplayCode(StrEnum):
    """Why a record is rejected by the rebuild (docs/errors.md)."""

    UNKNOWN_INSTRUCTION = "UNKNOWN_INSTRUCTION"


class AttemptsFromLog:
    """A handler (``processors.base``) that writes the attempt rows the log implies."""

    def handle(self, tx: Effects, records: Sequence[Consumed]) -> None:
        for record in records:
            event = record.event
            if isinstance(event, COMMAND_TYPES):
                self._instruction(tx, record, event)
            elif isinstance(event, ProviderRouted):
                self._routed(tx, record, event)
            elif type(event) in OUTCOMES:
                self._outcome(tx, record, event)
            # Anything else on payments.events is not settlement's: applied without effect.

    def _instruction(self, tx: Effects, record: Consumed, command: Any) -> None:
        action = ACTIONS[type(command)]
        provider, reference = "-", None  # an authorization's provider comes with its routing
        if not isinstance(command, AuthorizeRequested):
            holding = holding_of(tx.conn, command.payment_id)
            if holding is None:  # refused live too, with the same reason
                refusal = no_hold(command.payment_id,
                                  authorization_status_of(tx.conn, command.payment_id))  # fmt: skip
                tx.reject(record, refusal.code, refusal.message)
                return
            provider, reference = holding
        insert_attempt(
            tx.conn,
            idempotency_key(command.envelope.event_id, action),
            command_event_id=command.envelope.event_id,
            payment_id=command.payment_id,
            provider=provider,
            action=action,
            request=snapshot_command(command),
            amount=instruction_amount(command),
            provider_reference=reference,
        )

    def _routed(self, tx: Effects, record: Consumed, event: ProviderRouted) -> None:
        cause = event.envelope.causation_id
        if cause is None or event.envelope.event_id != outcome_event_id(
            cause, f"routed:{event.attempt}"
        ):
            return  # not the connector's
        decision = {"provider": event.provider, "reason": event.reason,
                    "skipped": list(event.skipped)}  # fmt: skip
        updated = tx.conn.execute(
            "UPDATE provider_attempts SET provider = %s, routing = routing || %s,"
            " updated_at = now() WHERE idempotency_key = %s",
            (event.provider, Jsonb([decision]), idempotency_key(cause, Action.AUTHORIZE)),
        ).rowcount
        if not updated:
            _unknown(tx, record, cause)

    def _outcome(self, tx: Effects, record: Consumed, event: Any) -> None:
        kind, action, succeeded = OUTCOMES[type(event)]
        cause = event.envelope.causation_id
        if cause is None or event.envelope.event_id != outcome_event_id(cause, kind):
            return  # e.g. an authorization a PSP reported itself: not an instruction's outcome
        provider = getattr(event, "provider", None) if succeeded else None
        reference = event.provider_reference if isinstance(event, PaymentAuthorized) else None
        outcome = (
            event.provider_reference if isinstance(event, PaymentCaptured | PaymentRefunded)
            else None
        )  # fmt: skip
        fee = event.fee.amount_minor if isinstance(event, PaymentCaptured) and event.fee else None
        updated = tx.conn.execute(
            "UPDATE provider_attempts SET status = %s, provider = COALESCE(%s, provider),"
            " provider_reference = COALESCE(%s, provider_reference), outcome_reference = %s,"
            " fee_minor = %s, reason_code = %s, detail = %s, emitted_at = now(),"
            " updated_at = now() WHERE idempotency_key = %s",
            (
                "succeeded" if succeeded else "failed",
                provider,
                reference,
                outcome,
                fee,
                None if succeeded else event.reason_code,
                None if succeeded else event.detail,
                idempotency_key(cause, action),
            ),
        ).rowcount
        if not updated:
            _unknown(tx, record, cause)


def _unknown(tx: Effects, record: Consumed, cause: str) -> None:
    tx.reject(
        record,
        ReplayCode.UNKNOWN_INSTRUCTION,
        f"an outcome of instruction {cause} whose attempt is not in this rebuild: replay "
        "settlement.commands from an offset at or before that instruction",
    )
