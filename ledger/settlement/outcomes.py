"""What a finished settlement instruction stands for: the outcome events and their ids.

The settlement connector (``processors.settlement``) reads the provider's answer from its journal
and hands it here as a ``SettledAttempt``; the events built from it are the same however often
the instruction is redelivered, because their ids are derived from the instruction's event id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ledger import ids
from ledger.envelope import Envelope, Source
from ledger.events import (
    AuthorizationFailed,
    AuthorizeRequested,
    CaptureFailed,
    CaptureRequested,
    PaymentAuthorized,
    PaymentCaptured,
    PaymentRefunded,
    PaymentVoided,
    ProviderRouted,
    RefundFailed,
    RefundRequested,
    VoidRequested,
)
from ledger.money import Money
from ledger.pseudonyms import Pseudonymizer

Instruction = AuthorizeRequested | CaptureRequested | VoidRequested | RefundRequested
OUTCOME_NAMESPACE = ids.SETTLEMENT_OUTCOMES.namespace


@dataclass(frozen=True)
class SettledAttempt:
    """The provider's definite answer to one instruction (succeeded or failed), as recorded."""

    succeeded: bool
    provider: str
    provider_reference: str | None
    outcome_reference: str | None  # the capture / refund reference
    reason_code: str | None
    detail: str | None
    routing: Sequence[Mapping[str, Any]]  # one routing decision per provider tried, in order
    amount: Money | None = None  # what the provider authorized, when it said
    fee: Money | None = None  # the provider's fee for a capture, when it said
    expires_at: datetime | None = None  # when an authorization lapses, when it said
    refused_by: str | None = None  # the provider that refused an authorization
    decline_code: str | None = None


def outcome_event_id(command_event_id: str, kind: str) -> str:
    """Deterministic: a redelivered instruction emits the same ids, which downstream dedupes."""
    return ids.SETTLEMENT_OUTCOMES.derive(command_event_id, kind)


def card_fingerprint(
    payment_token: str, network: str = "", pseudonyms: Pseudonymizer | None = None
) -> str:
    """A stable pseudonym of a provider-vaulted payment token, for the fraud rules: the same
    token gives the same value, and the value does not give the token back. With the
    deployment's pseudonym key (``pseudonyms``) it is keyed, per network (``cd1_...``): without
    the key a known token cannot be matched to it. Without a key it is an unkeyed hash, which
    anyone holding a token can recompute (a deployment without a pseudonym key file;
    docs/security.md)."""
    if pseudonyms is not None:
        return pseudonyms.card(network, payment_token)
    return hashlib.sha256(b"evledger-card:" + payment_token.encode()).hexdigest()[:24]


def instruction_amount(command: Instruction) -> Money:
    """The instruction's amount; a void has none (its hold is released whole)."""
    amount = getattr(command, "amount", None)
    return amount if isinstance(amount, Money) else Money.zero("EUR")


def outcome_events(
    command: Instruction, settled: SettledAttempt, pseudonyms: Pseudonymizer | None = None
) -> tuple[list[Any], tuple[str, str] | None]:
    """The events a settled attempt stands for, and a (reason code, detail) when the record is
    to be rejected instead (a void the provider refused). ``pseudonyms``: the key card
    fingerprints are made with (``card_fingerprint``)."""

    def envelope(kind: str) -> Envelope:
        return command.envelope.caused(
            Source.psp, event_id=outcome_event_id(command.envelope.event_id, kind)
        )

    ok = settled.succeeded
    reason, detail = settled.reason_code or "PROVIDER_ERROR", settled.detail or ""
    pid = command.payment_id
    if isinstance(command, AuthorizeRequested):
        card = card_fingerprint(command.payment_token, command.envelope.network_id, pseudonyms)
        events: list[Any] = [
            ProviderRouted(
                envelope(f"routed:{n}"), pid, r["provider"], r["reason"], list(r["skipped"]), n
            )
            for n, r in enumerate(settled.routing, start=1)
        ]
        if ok:
            events.append(
                PaymentAuthorized(
                    envelope("authorized"),
                    pid,
                    settled.provider,
                    settled.provider_reference or "",
                    settled.amount or command.amount,
                    command.payment_method,
                    command.session_id,
                    command.station_id,
                    settled.expires_at,
                    command.token_uid,
                    card,
                    command.terminal_id,
                    command.envelope.occurred_at,
                )
            )
        else:
            events.append(
                AuthorizationFailed(
                    envelope("authorization_failed"),
                    pid,
                    command.amount,
                    reason,
                    detail,
                    settled.refused_by,
                    settled.decline_code,
                    command.token_uid,
                    card,
                    command.terminal_id,
                    command.session_id,
                    command.station_id,
                    command.envelope.occurred_at,
                )
            )
        return events, None
    if isinstance(command, CaptureRequested):
        if ok:
            return [
                PaymentCaptured(
                    envelope("captured"),
                    pid,
                    command.envelope.event_id,
                    command.amount,
                    list(command.lines),
                    command.final,
                    settled.provider,
                    settled.outcome_reference,
                    settled.fee,
                    command.station_id,
                    command.country,
                    command.envelope.occurred_at,
                    command.cdr_id,
                )
            ], None
        failed = CaptureFailed(
            envelope("capture_failed"),
            pid,
            command.amount,
            reason,
            detail,
            command.cdr_id,
            list(command.lines),
            command.station_id,
            command.country,
            command.envelope.occurred_at,
        )
        return [failed], None
    if isinstance(command, RefundRequested):
        if ok:
            return [
                PaymentRefunded(
                    envelope("refunded"),
                    pid,
                    command.refund_id,
                    command.amount,
                    list(command.lines),
                    settled.outcome_reference,
                    command.reason,
                )
            ], None
        return [
            RefundFailed(
                envelope("refund_failed"), pid, command.refund_id, command.amount, reason, detail
            )
        ], None
    if ok:
        return [PaymentVoided(envelope("voided"), pid, command.reason)], None
    return [], (reason, f"void refused by {settled.provider}: {detail}")
