"""The charging session's vocabulary: where a session stands, what happens to a price above its
hold, the knobs of its rules, what releases a held session, and the errors its rules raise
(each with the reason code docs/errors.md explains)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from enum import StrEnum

from ledger.accounting.vat_rates import VatRates
from ledger.errors import ValidationError
from ledger.pricing.preauth import DEFAULT_MAX_DURATION, DEFAULT_MAX_POWER_KW


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


@dataclass(frozen=True)
class SessionsConfig:
    """The knobs of the session rules (CLI options / ``build_sessions_processor`` keywords)."""

    shortfall_policy: ShortfallPolicy = ShortfallPolicy.WRITE_OFF
    #: An interval implying more power than this is METER_IMPLAUSIBLE_ENERGY (blocking).
    max_power_kw: Decimal = Decimal(400)
    #: A register drop to at most this is a meter reset, any other drop a decrease.
    reset_threshold_wh: Decimal = Decimal(1000)
    #: Assumed hold when payments.events never told us one (ledger.pricing.preauth sizing).
    preauth_max_power_kw: Decimal = DEFAULT_MAX_POWER_KW
    preauth_max_duration: timedelta = DEFAULT_MAX_DURATION
    #: Connectors wired to one phase, as ``connector_key(station_id, connector_id)``: their
    #: per-phase energy (L1 only) is the total. Any other connector is taken as three-phase, and
    #: a reading of only some of its phases holds the session PARTIAL_PHASES.
    single_phase_connectors: frozenset[str] = field(default_factory=frozenset)
    #: Networks whose policy holds a session with failed signed meter values for review
    #: (``--hold-unverified NETWORK``); elsewhere it is billed and flagged.
    signed_hold_networks: frozenset[str] = field(default_factory=frozenset)
    #: How far the signed energy (end - start register) may be from the billed energy.
    signed_energy_tolerance_wh: Decimal = Decimal(1)
    #: Standard VAT rates by country and date; a bill line at another rate of the session's
    #: country of supply is flagged VAT_RATE_MISMATCH (None: not checked).
    vat_rates: VatRates | None = field(default_factory=VatRates.default)
    #: Networks whose policy holds such a session for review (``--hold-vat-mismatch``);
    #: elsewhere it is billed and flagged.
    vat_hold_networks: frozenset[str] = field(default_factory=frozenset)

    def holds_unverified(self, network_id: str) -> bool:
        """The network's policy for failed signed meter values: hold (True) or bill and flag."""
        return network_id in self.signed_hold_networks

    def single_phase(self, station_id: str, connector_id: str) -> bool:
        return connector_key(station_id, connector_id) in self.single_phase_connectors


def connector_key(station_id: str, connector_id: str) -> str:
    """How a connector is named in ``single_phase_connectors`` and on the command line."""
    return f"{station_id}/{connector_id}"


_RELEASE_BY_REVIEW = (
    "review the readings (evledger sessions show ID), then evledger sessions release ID "
    "--reason TEXT: bills the session without the flagged readings"
)

#: What releases a session held, waiting or rejected for each reason code (docs/sessions.md).
RELEASE_ACTIONS: dict[str, str] = {
    "UNKNOWN_TARIFF": (
        "publish the tariff version in force at the session start (evledger tariffs publish "
        "FILE); the session is billed when it is consumed"
    ),
    "INVALID_HOLD": (
        "have the payment authorized with a positive amount in the tariff's currency (a "
        "PaymentAuthorized the ledger accepts); the session is billed when it is consumed"
    ),
    "METER_REGISTER_DECREASED": _RELEASE_BY_REVIEW,
    "METER_REGISTER_RESET": _RELEASE_BY_REVIEW,
    "METER_IMPLAUSIBLE_ENERGY": (
        "review the readings (evledger sessions show ID), then evledger sessions release ID "
        "--reason TEXT: bills the energy as measured"
    ),
    "METER_READING_OUTSIDE_SESSION": (
        "check the station clock; then evledger sessions release ID --reason TEXT: bills the "
        "session without the readings outside it"
    ),
    "PARTIAL_PHASES": (
        "if the connector is single-phase, release with evledger sessions release ID --reason "
        "TEXT --single-phase STATION/CONNECTOR (and run the processor with it); otherwise fix "
        "the station's phase reporting and release without it: the partial readings are not "
        "billed, the start and stop registers still count"
    ),
    "SIGNED_DATA_INVALID": (
        "the station sent a signed record that is not readable OCMF: check the station's "
        "signed meter value configuration, then evledger sessions release ID --reason TEXT: "
        "bills the energy as measured, flagged"
    ),
    "SIGNATURE_INVALID": (
        "a signed meter record does not verify: the data was altered or signed by another "
        "meter; verify it independently (evledger sessions receipt ID, S.A.F.E. "
        "Transparenzsoftware), then evledger sessions release ID --reason TEXT: bills the "
        "energy as measured, flagged"
    ),
    "METER_KEY_UNREGISTERED": (
        "register the station's meter key (evledger stations register-key STATION KEY) after "
        "checking it against the meter's label, then evledger sessions release ID --reason TEXT"
    ),
    "METER_KEY_MISMATCH": (
        "the records are signed by a key that is not the station's registered meter key: "
        "check for a replaced meter (evledger stations register-key STATION KEY), then "
        "evledger sessions release ID --reason TEXT"
    ),
    "SIGNED_ENERGY_MISMATCH": (
        "the signed start and end registers disagree with the energy billed: compare the "
        "readings (evledger sessions show ID) with the signed data, then evledger sessions "
        "release ID --reason TEXT: bills the energy as measured, flagged"
    ),
    "VAT_RATE_MISMATCH": (
        "the tariff's VAT rate is not the country of supply's standard rate: publish a "
        "corrected tariff version for the stations in that country; if the rate is right (a "
        "reduced rate the table lacks), add it to EVLEDGER_VAT_RATES; then evledger sessions "
        "release ID --reason TEXT bills the session as priced, flagged"
    ),
    "CURRENCY_MISMATCH": (
        "the hold and the tariff are in different currencies: correct the payment or the "
        "session's tariff, then send a SessionStopped with a new event id"
    ),
}


def release_action(code: str) -> str:
    """What a person does to release a session held for ``code``."""
    return RELEASE_ACTIONS.get(
        code,
        f"fix the cause of {code} (docs/errors.md), then send a SessionStopped with a new event id",
    )


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
