"""What the parts of the sessions processor share: its consumer group and topics, its settings,
the deterministic ids of what it emits, and the error they all raise. See docs/sessions.md."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from enum import StrEnum

from ledger.errors import ValidationError
from ledger.preauth import DEFAULT_MAX_DURATION, DEFAULT_MAX_POWER_KW

GROUP = "evledger-sessions"
TOPICS = ("tariffs.events", "payments.events", "sessions.events")
_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://evledger.io/processors/sessions")


def derived_id(cause_event_id: str, kind: str) -> str:
    """Deterministic id of what ``cause_event_id`` caused (uuid5), so retries re-emit it."""
    return str(uuid.uuid5(_ID_NAMESPACE, f"{cause_event_id}/{kind}"))


class ShortfallPolicy(StrEnum):
    WRITE_OFF = "write_off"  # the part above the hold is written off
    CHARGE = "charge"  # the part above the hold is kept as owed (shortfall_status to_collect)


@dataclass(frozen=True)
class SessionsConfig:
    """Processor knobs (CLI options / ``build_sessions_processor`` keywords)."""

    shortfall_policy: ShortfallPolicy = ShortfallPolicy.WRITE_OFF
    #: An interval implying more power than this is METER_IMPLAUSIBLE_ENERGY (blocking).
    max_power_kw: Decimal = Decimal(400)
    #: A register drop to at most this is a meter reset, any other drop a decrease.
    reset_threshold_wh: Decimal = Decimal(1000)
    #: Assumed hold when payments.events never told us one (ledger.preauth sizing).
    preauth_max_power_kw: Decimal = DEFAULT_MAX_POWER_KW
    preauth_max_duration: timedelta = DEFAULT_MAX_DURATION


class UnknownSession(ValidationError):
    code = "UNKNOWN_SESSION"
