"""The charging session's vocabulary: where a session stands, what happens to a price above its
hold, and the errors its rules raise (each with the reason code docs/errors.md explains)."""

from __future__ import annotations

from enum import StrEnum

from ledger.errors import ValidationError


class SessionStatus(StrEnum):
    """Where a session stands (stored as its value in ``charging_sessions.status``)."""

    OPEN = "open"
    """Started, not stopped (or stopped with a stop that was refused)."""
    BILLED = "billed"
    """Priced: CdrIssued and a capture (or no payment) emitted."""
    VOIDED = "voided"
    """No energy delivered: the hold is released."""
    HELD = "held"
    """Stopped, not billed: a reading or the hold needs a person (reason code says which)."""
    AWAITING_TARIFF = "awaiting_tariff"
    """Stopped, its tariff not published yet: billed when it arrives."""
    REJECTED = "rejected"
    """Stopped, and pricing refused it (reason code)."""

    @property
    def stopped_unbilled(self) -> bool:
        """Stopped but not billed: visible in ``evledger sessions held``."""
        return self in (SessionStatus.HELD, SessionStatus.AWAITING_TARIFF, SessionStatus.REJECTED)

    @property
    def accepts_session_events(self) -> bool:
        """Meter values, state changes and a stop may still change the session."""
        return self in (SessionStatus.OPEN, SessionStatus.REJECTED, SessionStatus.AWAITING_TARIFF)


class ShortfallPolicy(StrEnum):
    """What happens to the part of a price above the session's hold."""

    WRITE_OFF = "write_off"
    """Written off: the capture is capped at the hold."""
    CHARGE = "charge"
    """Kept as owed (``shortfall_status`` to_collect)."""


class UnknownSession(ValidationError):
    code = "UNKNOWN_SESSION"


class SessionAlreadyStarted(ValidationError):
    code = "SESSION_ALREADY_STARTED"


class SessionAlreadyStopped(ValidationError):
    code = "SESSION_ALREADY_STOPPED"


class ConflictingMeterValue(ValidationError):
    code = "METER_CONFLICTING_DUPLICATE"


class TariffVersionConflict(ValidationError):
    code = "TARIFF_VERSION_CONFLICT"


class InvalidHold(ValidationError):
    """The session's payment has no hold the ledger accepts (its authorization was rejected, or
    holds nothing): the session is held, never billed or captured against it."""

    code = "INVALID_HOLD"


class NothingToReprice(ValidationError):
    code = "NOTHING_TO_REPRICE"


class SessionNotBilled(ValidationError):
    code = "SESSION_NOT_BILLED"


class SessionNotHeld(ValidationError):
    code = "SESSION_NOT_HELD"
