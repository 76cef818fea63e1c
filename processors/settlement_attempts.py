"""A settlement attempt row read as the domain's ``SettledAttempt``, and the events it means."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from connectors.settlement_store import Attempt, AttemptStatus, Command, result_money
from ledger.pseudonyms import Pseudonymizer
from ledger.settlement import outcomes as settlement_outcomes


def outcome_events(
    command: Command, attempt: Attempt, pseudonyms: Pseudonymizer | None = None
) -> tuple[list[Any], tuple[str, str] | None]:
    """The events a finished attempt stands for, and a (reason code, detail) when the record is
    to be rejected instead (a void the provider refused). Pending / in-doubt: nothing yet.
    ``pseudonyms``: the key card fingerprints are made with."""
    if not attempt.status.final:
        return [], None
    return settlement_outcomes.outcome_events(command, settled_attempt(attempt), pseudonyms)


def settled_attempt(attempt: Attempt) -> settlement_outcomes.SettledAttempt:
    """A final attempt row as the domain reads it (the ``result`` JSON decoded)."""
    result = attempt.result or {}
    expires = result.get("expires_at")
    return settlement_outcomes.SettledAttempt(
        succeeded=attempt.status is AttemptStatus.SUCCEEDED,
        provider=attempt.provider,
        provider_reference=attempt.provider_reference,
        outcome_reference=attempt.outcome_reference,
        reason_code=attempt.reason_code,
        detail=attempt.detail,
        routing=attempt.routing,
        amount=result_money(result, "amount"),
        fee=result_money(result, "fee"),
        expires_at=datetime.fromisoformat(expires) if expires else None,
        refused_by=result.get("provider"),
        decline_code=result.get("decline_code"),
    )
