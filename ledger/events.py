"""The event catalogue: one frozen dataclass per event (the topics they travel on are in
``schemas.topics``; docs/events.md is generated from both).

These classes are the single source of truth; their Avro schemas are derived by
``schemas.avro`` and exported to ``schemas/avro/*.avsc``.  Evolve an event by adding a field with
a default (BACKWARD compatible); the registry refuses anything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from ledger.dimensions import Dimension
from ledger.envelope import Envelope, doc
from ledger.money import Money


class DisputeOutcome(StrEnum):
    WON = "WON"
    LOST = "LOST"


class ChargingState(StrEnum):
    """OCPP 2.0.1 ChargingStateEnumType (1.6 status notifications are mapped onto it)."""

    Charging = "Charging"
    EVConnected = "EVConnected"
    SuspendedEV = "SuspendedEV"
    SuspendedEVSE = "SuspendedEVSE"
    Idle = "Idle"


@dataclass(frozen=True, slots=True)
class RevenueLine:
    """One tariff dimension of a priced amount, split into net and VAT."""

    dimension: Dimension = doc("Tariff dimension: ENERGY, TIME, PARKING_TIME, FLAT or RESERVATION")
    amount_excl_vat: int = doc("Net amount in minor units of the enclosing currency")
    vat_amount: int = doc("VAT in minor units of the enclosing currency")
    vat_rate: str | None = doc(
        "VAT rate in percent as a decimal string; null when the tariff gives none", default=None
    )
    quantity: str | None = doc(
        "Billed quantity as a decimal string (kWh, hours or 1 for FLAT)", default=None
    )


@dataclass(frozen=True, slots=True)
class SampledValue:
    """One sampled value of an OCPP MeterValue, as the station sent it (normalized downstream)."""

    value: str = doc(
        "The value as sent: OCPP 1.6 sends a string, 2.0.1 a number (kept as its text)"
    )
    measurand: str | None = doc(
        "OCPP measurand; null means Energy.Active.Import.Register", default=None
    )
    unit: str | None = doc(
        "Unit of measure (Wh, kWh, W, kW, A, ...); null means the measurand's default", default=None
    )
    multiplier: int | None = doc(
        "OCPP 2.0.1 unitOfMeasure.multiplier: value x 10^multiplier", default=None
    )
    phase: str | None = doc("Phase (L1, L2, L3, N, L1-N, ...); null for the total", default=None)
    context: str | None = doc(
        "Reading context (Sample.Periodic, Transaction.Begin, ...)", default=None
    )
    format: str | None = doc(
        "OCPP 1.6 ValueFormat: Raw (null) or SignedData, when value is the signed record (OCMF)",
        default=None,
    )
    signed_meter_data: str | None = doc(
        "OCPP 2.0.1 signedMeterValue.signedMeterData: the signed record (OCMF text, or it "
        "base64/hex encoded)",
        default=None,
    )
    signing_method: str | None = doc(
        "OCPP 2.0.1 signedMeterValue.signingMethod (e.g. ECDSA-secp256r1-SHA256)", default=None
    )
    encoding_method: str | None = doc(
        "OCPP 2.0.1 signedMeterValue.encodingMethod; evledger verifies OCMF", default=None
    )
    public_key: str | None = doc(
        "Public key of the meter that signed (DER, hex or base64), when the station sends it",
        default=None,
    )


# ---------------------------------------------------------------- payments.events (key: payment_id)
@dataclass(frozen=True, slots=True)
class PaymentAuthorized:
    """A provider placed a hold (pre-authorization) on the customer's payment method."""

    envelope: Envelope = doc("Event metadata")
    payment_id: str = doc("evledger payment id; the topic key")
    provider: str = doc("Provider holding the authorization: sandbox, stripe or braintree")
    provider_reference: str = doc(
        "Provider's id for the authorization (PaymentIntent / transaction id)"
    )
    amount: Money = doc("Amount held")
    payment_method: str = doc("Payment method type: card, wallet, rfid_account, ...")
    session_id: str | None = doc("Charging session the hold is for", default=None)
    station_id: str | None = doc("Charging station", default=None)
    expires_at: datetime | None = doc("When the provider releases the hold by itself", default=None)
    token_uid: str | None = doc(
        "The driver's token (OCPI Token.uid: RFID card or contract id), when known", default=None
    )
    card_fingerprint: str | None = doc(
        "Pseudonym of the payment method (same card, same value; never the card number)",
        default=None,
    )
    terminal_id: str | None = doc(
        "Payment terminal at the charger, when one was used", default=None
    )
    requested_at: datetime | None = doc(
        "When the authorization was asked for (the instruction's occurred_at): the fraud rules'"
        " clock for attempts",
        default=None,
    )


@dataclass(frozen=True, slots=True)
class AuthorizationIncremented:
    """An existing hold was raised (incremental authorization)."""

    envelope: Envelope = doc("Event metadata")
    payment_id: str = doc("evledger payment id; the topic key")
    amount: Money = doc("The increment (not the new total)")


@dataclass(frozen=True, slots=True)
class PaymentCaptured:
    """Money moved from the hold into provider clearing; revenue and VAT are recognized."""

    envelope: Envelope = doc("Event metadata")
    payment_id: str = doc("evledger payment id; the topic key")
    capture_id: str = doc(
        "Id of this capture; equals the instruction's event id when it came from one"
    )
    amount: Money = doc("Amount captured (incl. VAT)")
    lines: list[RevenueLine] = doc("Revenue by tariff dimension; sums to amount")
    final: bool = doc("True when the rest of the hold is to be released")
    provider: str = doc("Provider that captured")
    provider_reference: str | None = doc("Provider's id for the capture / charge", default=None)
    fee: Money | None = doc("Provider fee for this capture, when known", default=None)
    station_id: str | None = doc("Charging station the revenue belongs to", default=None)
    country: str | None = doc(
        "ISO 3166-1 alpha-2 country of supply (VAT jurisdiction)", default=None
    )
    supplied_at: datetime | None = doc(
        "When the charge was supplied (the session's stop): revenue and VAT are recognized on"
        " this date, the provider clearing on occurred_at; null when they are the same",
        default=None,
    )
    cdr_id: str | None = doc(
        "CDR this capture pays, when it came from one; a capture of a CDR whose earlier capture"
        " failed collects that receivable",
        default=None,
    )


@dataclass(frozen=True, slots=True)
class CaptureFailed:
    """A capture instruction could not be carried out. When it was to pay a CDR (``cdr_id`` and
    ``lines`` given), the supply is billed all the same: the ledger books a receivable from the
    customer, with its revenue and VAT, on the supply date."""

    envelope: Envelope = doc("Event metadata")
    payment_id: str = doc("evledger payment id; the topic key")
    amount: Money = doc("Amount that was to be captured")
    reason_code: str = doc("Stable reason code")
    detail: str = doc("Human-readable detail")
    cdr_id: str | None = doc("CDR the capture was to pay", default=None)
    lines: list[RevenueLine] = doc(
        "Revenue by dimension of the CDR's capture; sums to amount", default_factory=list
    )
    station_id: str | None = doc("Charging station the revenue belongs to", default=None)
    country: str | None = doc("Country of supply (VAT)", default=None)
    supplied_at: datetime | None = doc(
        "When the charge was supplied (the session's stop); the receivable is dated then",
        default=None,
    )


@dataclass(frozen=True, slots=True)
class ReceivableCollected:
    """Money for a receivable arrived outside the provider (bank transfer, collection agency):
    Dr bank, Cr customer receivables."""

    envelope: Envelope = doc("Event metadata")
    payment_id: str = doc("evledger payment id; the topic key")
    cdr_id: str = doc("CDR whose receivable is collected")
    amount: Money = doc("Amount collected (incl. VAT); at most the open receivable")
    reference: str = doc("Where it came from: bank transaction, agency case, ...")


@dataclass(frozen=True, slots=True)
class ReceivableWrittenOff:
    """A receivable given up as bad debt, by an explicit, reasoned decision."""

    envelope: Envelope = doc("Event metadata")
    payment_id: str = doc("evledger payment id; the topic key")
    cdr_id: str = doc("CDR whose receivable is written off")
    amount: Money = doc("Amount written off (incl. VAT); at most the open receivable")
    reason: str = doc("Why: insolvency, collection abandoned, ...")
    vat_relief: bool = doc(
        "Reclaim the VAT in it (bad-debt relief, where the law of the country of supply allows):"
        " the VAT payable is reduced and only the net is expensed",
        default=False,
    )


@dataclass(frozen=True, slots=True)
class PaymentVoided:
    """The hold was released without capture."""

    envelope: Envelope = doc("Event metadata")
    payment_id: str = doc("evledger payment id; the topic key")
    reason: str | None = doc("Why it was voided", default=None)


@dataclass(frozen=True, slots=True)
class AuthorizationExpired:
    """The provider dropped the hold because it was not captured in time."""

    envelope: Envelope = doc("Event metadata")
    payment_id: str = doc("evledger payment id; the topic key")


@dataclass(frozen=True, slots=True)
class PaymentRefunded:
    """Captured money was returned to the customer."""

    envelope: Envelope = doc("Event metadata")
    payment_id: str = doc("evledger payment id; the topic key")
    refund_id: str = doc("Id of this refund")
    amount: Money = doc("Amount refunded (incl. VAT)")
    lines: list[RevenueLine] = doc(
        "Revenue reversed by dimension; empty means pro rata to the captures", default_factory=list
    )
    provider_reference: str | None = doc("Provider's id for the refund", default=None)
    reason: str | None = doc("Why", default=None)


@dataclass(frozen=True, slots=True)
class RefundFailed:
    """A refund instruction could not be carried out."""

    envelope: Envelope = doc("Event metadata")
    payment_id: str = doc("evledger payment id; the topic key")
    refund_id: str = doc("Id of the refund that failed")
    amount: Money = doc("Amount that was to be refunded")
    reason_code: str = doc("Stable reason code")
    detail: str = doc("Human-readable detail")


@dataclass(frozen=True, slots=True)
class DisputeOpened:
    """The cardholder disputed a captured payment (chargeback)."""

    envelope: Envelope = doc("Event metadata")
    payment_id: str = doc("evledger payment id; the topic key")
    dispute_id: str = doc("Provider's dispute id")
    amount: Money = doc("Amount disputed (withdrawn by the provider)")
    reason: str | None = doc("Network reason (fraudulent, duplicate, ...)", default=None)


@dataclass(frozen=True, slots=True)
class DisputeResolved:
    """A dispute ended: WON returns the money, LOST makes it a loss."""

    envelope: Envelope = doc("Event metadata")
    payment_id: str = doc("evledger payment id; the topic key")
    dispute_id: str = doc("Provider's dispute id")
    outcome: DisputeOutcome = doc("WON or LOST")
    amount: Money = doc("Amount the outcome concerns")


@dataclass(frozen=True, slots=True)
class ProviderRouted:
    """The settlement connector chose a provider for an authorization (informational, no money).

    One per provider tried: a failover after an outage gives a second one with ``attempt`` 2.
    """

    envelope: Envelope = doc("Event metadata; causation_id is the AuthorizeRequested event id")
    payment_id: str = doc("evledger payment id; the topic key")
    provider: str = doc("Provider chosen")
    reason: str = doc("Why: first in rule order, preferred provider, fallback: ...")
    skipped: list[str] = doc(
        "Providers passed over, as 'provider: why' (circuit open, failed, not allowed)",
        default_factory=list,
    )
    attempt: int = doc("1 for the first provider tried, 2 after one failover, ...", default=1)


@dataclass(frozen=True, slots=True)
class AuthorizationFailed:
    """No hold was placed: the issuer declined, or no provider could place it (no money moves)."""

    envelope: Envelope = doc("Event metadata; causation_id is the AuthorizeRequested event id")
    payment_id: str = doc("evledger payment id; the topic key")
    amount: Money = doc("Amount that was to be held")
    reason_code: str = doc("Stable reason code (PAYMENT_DECLINED, NO_PROVIDER_AVAILABLE, ...)")
    detail: str = doc("Human-readable detail")
    provider: str | None = doc("Provider that answered last, when one did", default=None)
    decline_code: str | None = doc(
        "Issuer's / provider's decline code, when declined", default=None
    )
    token_uid: str | None = doc(
        "The driver's token (OCPI Token.uid: RFID card or contract id), when known", default=None
    )
    card_fingerprint: str | None = doc(
        "Pseudonym of the payment method (same card, same value; never the card number)",
        default=None,
    )
    terminal_id: str | None = doc(
        "Payment terminal at the charger, when one was used", default=None
    )
    session_id: str | None = doc("Charging session the hold was for", default=None)
    station_id: str | None = doc("Charging station", default=None)
    requested_at: datetime | None = doc(
        "When the authorization was asked for (the instruction's occurred_at): the fraud rules'"
        " clock for attempts",
        default=None,
    )


# ---------------------------------------------------------------- sessions.events (key: session_id)
@dataclass(frozen=True, slots=True)
class SessionStarted:
    """A charging transaction began at a connector."""

    envelope: Envelope = doc("Event metadata")
    session_id: str = doc("evledger session id; the topic key")
    station_id: str = doc("Charging station (OCPP charge point) id")
    evse_id: str = doc("EVSE id (OCPI evse_uid / OCPP 2.0.1 evse)")
    connector_id: str = doc("Connector id")
    transaction_id: str = doc("OCPP transaction id as the station knows it")
    tariff_id: str = doc("Tariff in force at start; frozen for the whole session")
    country: str = doc("ISO 3166-1 alpha-2 country of the location (VAT)")
    time_zone: str = doc("IANA time zone of the location (tariff restrictions are local time)")
    payment_id: str | None = doc("Payment holding the pre-authorization, if any", default=None)
    meter_start_wh: int | None = doc(
        "Energy register at start in Wh, when the station sent one", default=None
    )
    tariff_version: int | None = doc(
        "Tariff version; null means the latest at occurred_at", default=None
    )
    token_uid: str | None = doc(
        "The driver's token (OCPI Token.uid: RFID card or contract id), when known", default=None
    )
    location_id: str | None = doc(
        "OCPI Location id of the station (LocationPublished), when known", default=None
    )


@dataclass(frozen=True, slots=True)
class MeterValueRecorded:
    """A meter reading (one OCPP MeterValue with its sampled values)."""

    envelope: Envelope = doc("Event metadata")
    session_id: str = doc("evledger session id; the topic key")
    station_id: str = doc("Charging station id")
    transaction_id: str = doc("OCPP transaction id")
    seq_no: int = doc("Sequence number per (station, transaction); the deduplication key")
    sampled_at: datetime = doc("Timestamp of the reading (station clock, UTC)")
    samples: list[SampledValue] = doc("Sampled values as sent")


@dataclass(frozen=True, slots=True)
class ChargingStateChanged:
    """The EV started or stopped drawing power; splits charging time from parking time."""

    envelope: Envelope = doc("Event metadata")
    session_id: str = doc("evledger session id; the topic key")
    state: ChargingState = doc("New charging state")
    changed_at: datetime = doc("When the state changed (station clock, UTC)")


@dataclass(frozen=True, slots=True)
class SessionStopped:
    """The charging transaction ended."""

    envelope: Envelope = doc("Event metadata")
    session_id: str = doc("evledger session id; the topic key")
    stopped_at: datetime = doc("When it ended (station clock, UTC)")
    meter_stop_wh: int | None = doc("Energy register at stop in Wh, when sent", default=None)
    reason: str | None = doc("OCPP stop reason (Local, EVDisconnected, ...)", default=None)


# ---------------------------------------------------------------- tariffs.events (key: tariff_id)
@dataclass(frozen=True, slots=True)
class TariffPublished:
    """An immutable version of an OCPI 2.2.1 tariff."""

    envelope: Envelope = doc("Event metadata")
    tariff_id: str = doc("OCPI tariff id; the topic key")
    version: int = doc("Version number, increasing per tariff_id")
    currency: str = doc("ISO 4217 currency of every price in the tariff")
    ocpi_tariff_json: str = doc(
        "The OCPI 2.2.1 Tariff object as JSON text (module Tariffs, 11.3.1)"
    )


# ---------------------------------------------------------------- billing.events (key: session_id)
@dataclass(frozen=True, slots=True)
class CdrIssued:
    """A priced charge detail record for a finished (or re-priced) session."""

    envelope: Envelope = doc("Event metadata")
    session_id: str = doc("evledger session id; the topic key")
    cdr_id: str = doc("Id of this CDR")
    station_id: str = doc("Charging station")
    tariff_id: str = doc("Tariff the session was priced with")
    tariff_version: int = doc("Tariff version the session was priced with")
    country: str = doc("Country of supply (VAT)")
    total_energy_wh: int = doc("Energy delivered in Wh")
    total_time_s: int = doc("Session duration in seconds")
    total_parking_time_s: int = doc("Time connected without charging, in seconds")
    lines: list[RevenueLine] = doc("Price by dimension")
    total_excl_vat: Money = doc("Total net price")
    total_incl_vat: Money = doc("Total price incl. VAT")
    payment_id: str | None = doc("Payment to capture from", default=None)
    replaces_cdr_id: str | None = doc(
        "The CDR this one re-prices, after a CdrCredited", default=None
    )
    signed_data: str | None = doc(
        "OCPI CDR signed_data as JSON text (encoding_method, public_key, signed_values with the "
        "OCMF records of the session), when the station signed its meter values",
        default=None,
    )
    signed_status: str | None = doc(
        "Verification of the signed meter values: verified, or the reason code it failed "
        "(SIGNATURE_INVALID, METER_KEY_MISMATCH, ...); null when unsigned",
        default=None,
    )
    meter_flags: list[str] = doc(
        "Reason codes of the meter readings the sessions processor did not take at face value "
        "(METER_REGISTER_DECREASED, METER_IMPLAUSIBLE_ENERGY, SIGNATURE_INVALID, ...; "
        "docs/sessions.md); empty when none",
        default_factory=list,
    )


@dataclass(frozen=True, slots=True)
class CdrCredited:
    """A credit CDR: the referenced CDR is reversed in full (a corrected one may follow)."""

    envelope: Envelope = doc("Event metadata")
    session_id: str = doc("evledger session id; the topic key")
    cdr_id: str = doc("Id of the credit CDR")
    credited_cdr_id: str = doc("The CDR being reversed")
    total_incl_vat: Money = doc("Total being reversed (positive)")
    reason: str = doc("Why (idle fee waived, meter fault, ...)")
    lines: list[RevenueLine] = doc("Amounts reversed by dimension", default_factory=list)
    payment_id: str | None = doc("Payment the CDR was captured from", default=None)


# ------------------------------------------------------- settlement.commands (key: payment_id)
@dataclass(frozen=True, slots=True)
class AuthorizeRequested:
    """Instruction: place a hold. Routed to a provider by the connector."""

    envelope: Envelope = doc("Event metadata; event_id is the idempotency key at the provider")
    payment_id: str = doc("evledger payment id; the topic key")
    amount: Money = doc("Amount to hold")
    payment_method: str = doc("Payment method type: card, wallet, ...")
    payment_token: str = doc("Provider-vaulted token for the method; never a card number")
    session_id: str | None = doc("Charging session", default=None)
    station_id: str | None = doc("Charging station", default=None)
    preferred_provider: str | None = doc(
        "Provider to try first, if the routing rules allow", default=None
    )
    token_uid: str | None = doc(
        "The driver's token (OCPI Token.uid: RFID card or contract id), when known", default=None
    )
    terminal_id: str | None = doc(
        "Payment terminal at the charger, when one was used", default=None
    )


@dataclass(frozen=True, slots=True)
class CaptureRequested:
    """Instruction: capture (part of) the hold at the provider that holds it."""

    envelope: Envelope = doc("Event metadata; event_id is the idempotency key at the provider")
    payment_id: str = doc("evledger payment id; the topic key")
    amount: Money = doc("Amount to capture (incl. VAT)")
    lines: list[RevenueLine] = doc("Revenue by dimension; sums to amount")
    final: bool = doc("Release the rest of the hold after this capture", default=True)
    cdr_id: str | None = doc("CDR being paid", default=None)
    station_id: str | None = doc("Charging station", default=None)
    country: str | None = doc("Country of supply (VAT)", default=None)
    shortfall: Money | None = doc(
        "Priced total minus the hold, when the hold did not cover it", default=None
    )
    signed_data_sha256: str | None = doc(
        "SHA-256 (hex) of the CDR's signed_data JSON text: the signed meter values this capture "
        "bills",
        default=None,
    )


@dataclass(frozen=True, slots=True)
class VoidRequested:
    """Instruction: release the hold without capturing."""

    envelope: Envelope = doc("Event metadata; event_id is the idempotency key at the provider")
    payment_id: str = doc("evledger payment id; the topic key")
    reason: str | None = doc("Why (no energy delivered, cancelled, ...)", default=None)


@dataclass(frozen=True, slots=True)
class RefundRequested:
    """Instruction: refund captured money."""

    envelope: Envelope = doc("Event metadata; event_id is the idempotency key at the provider")
    payment_id: str = doc("evledger payment id; the topic key")
    refund_id: str = doc("Id of the refund")
    amount: Money = doc("Amount to refund (incl. VAT)")
    lines: list[RevenueLine] = doc("Revenue to reverse by dimension", default_factory=list)
    reason: str | None = doc("Why", default=None)


# ------------------------------------------------------- provider.events (key: provider reference)
@dataclass(frozen=True, slots=True)
class PayoutPaid:
    """The provider paid settled funds out to the operator's bank account."""

    envelope: Envelope = doc("Event metadata")
    provider: str = doc("Provider")
    payout_id: str = doc("Provider's payout id; the topic key")
    amount: Money = doc("Net amount paid to the bank")
    fees: Money = doc("Provider fees deducted from this payout")


@dataclass(frozen=True, slots=True)
class ProviderDisputeUpdated:
    """A provider webhook about a dispute, normalized."""

    envelope: Envelope = doc("Event metadata")
    provider: str = doc("Provider")
    provider_reference: str = doc("Provider's charge / transaction id; the topic key")
    dispute_id: str = doc("Provider's dispute id")
    status: str = doc("Provider's status text (needs_response, won, lost, ...)")
    amount: Money = doc("Disputed amount")


@dataclass(frozen=True, slots=True)
class ExternalRefundReported:
    """A refund made at the provider outside evledger (dashboard, support)."""

    envelope: Envelope = doc("Event metadata")
    provider: str = doc("Provider")
    provider_reference: str = doc("Provider's charge / transaction id; the topic key")
    refund_reference: str = doc("Provider's refund id")
    amount: Money = doc("Amount refunded")


# ---------------------------------------------------------------- fraud.scores (key: subject)
@dataclass(frozen=True, slots=True)
class RuleContribution:
    """One fraud rule's part in a score."""

    rule: str = doc("Rule name (card_testing, velocity, cloned_token, ...; docs/fraud.md)")
    weight: float = doc("The network's weight of the rule, 0-1: its most a score can get from it")
    strength: float = doc("How strongly the rule fired, 0-1")
    evidence: str = doc("What it saw, as JSON: counts, windows, distances, ids")


@dataclass(frozen=True, slots=True)
class FraudScored:
    """A fraud score for a subject (token, card, station, terminal) after one input event."""

    envelope: Envelope = doc("Event metadata; causation_id is the scored input event")
    subject: str = doc("What was scored, as kind:id; the topic key")
    score: float = doc("Risk score between 0 (benign) and 1 (fraud)")
    signals: list[str] = doc("Names of the rules that contributed")
    contributions: list[RuleContribution] = doc(
        "Every contributing rule with its weight, strength and evidence", default_factory=list
    )
    input_event_id: str | None = doc("The event that was scored", default=None)
    threshold: float | None = doc("The network's alert threshold at the time", default=None)


@dataclass(frozen=True, slots=True)
class FraudAlertRaised:
    """A score crossed the network's alert threshold; ``action`` is what its policy does."""

    envelope: Envelope = doc("Event metadata; causation_id is the scored input event")
    subject: str = doc("What was scored, as kind:id; the topic key")
    score: float = doc("Risk score between 0 and 1")
    reason: str = doc("Why the alert was raised")
    action: str = doc("The network's policy: alert, review or block", default="alert")
    rules: list[str] = doc("Rules that contributed", default_factory=list)
    input_event_id: str | None = doc("The event that was scored", default=None)
    payment_id: str | None = doc("Payment of the scored event, when it has one", default=None)
    session_id: str | None = doc("Session of the scored event, when it has one", default=None)


@dataclass(frozen=True, slots=True)
class TokenBlocked:
    """A token or card is blocked: new authorizations with it are refused."""

    envelope: Envelope = doc("Event metadata; causation_id is the alert, when an alert blocked")
    subject: str = doc("What is blocked, as token:uid or card:fingerprint; the topic key")
    reason: str = doc("Why")
    actor: str = doc("Who blocked: fraud-policy for the automatic block, else a person")
    alert_event_id: str | None = doc("The alert that blocked it", default=None)


@dataclass(frozen=True, slots=True)
class TokenUnblocked:
    """A blocked token or card may authorize again."""

    envelope: Envelope = doc("Event metadata")
    subject: str = doc("What is unblocked, as token:uid or card:fingerprint; the topic key")
    reason: str = doc("Why (false positive, customer verified, ...)")
    actor: str = doc("Who unblocked")


@dataclass(frozen=True, slots=True)
class FraudReviewCleared:
    """A person reviewed a payment held by a fraud alert; its capture may go ahead."""

    envelope: Envelope = doc("Event metadata")
    subject: str = doc("The alert's subject; the topic key")
    payment_id: str = doc("The payment whose capture was held")
    actor: str = doc("Who reviewed")
    reason: str = doc("The finding")
    alert_event_id: str | None = doc("The alert that held it", default=None)


# -------------------------------------------------------------- locations.events (key: location_id)
@dataclass(frozen=True, slots=True)
class LocationEvse:
    """One EVSE of a location (OCPI 2.2.1 EVSE, with the connector's max power)."""

    evse_uid: str = doc("OCPI EVSE uid (SessionStarted.evse_id)")
    station_id: str = doc("Charging station (OCPP charge point) the EVSE belongs to")
    max_electric_power_w: int = doc("Most power the EVSE can deliver, in W (OCPI connector)")
    power_type: str = doc("OCPI PowerType: AC_1_PHASE, AC_3_PHASE or DC")
    evse_id: str | None = doc("eMI3 EVSE id (DE*EVL*E0001*1), when it has one", default=None)


@dataclass(frozen=True, slots=True)
class LocationPublished:
    """An OCPI 2.2.1 Location: where a site is, its time zone and its EVSEs (new version)."""

    envelope: Envelope = doc("Event metadata")
    location_id: str = doc("OCPI Location id; the topic key")
    name: str = doc("Display name (may be empty)")
    country: str = doc("ISO 3166-1 alpha-2 country")
    latitude: str = doc("WGS 84 latitude, decimal text as OCPI GeoLocation sends it")
    longitude: str = doc("WGS 84 longitude, decimal text")
    time_zone: str = doc("IANA time zone")
    evses: list[LocationEvse] = doc("Its EVSEs")
    ocpi_location_json: str | None = doc(
        "The OCPI Location object as received, when it came from OCPI", default=None
    )


# ------------------------------------------------------------- drivers.events (key: subject_id)
@dataclass(frozen=True, slots=True)
class DriverProfileUpdated:
    """A driver's profile (new version): the personal fields are sealed, each encrypted with
    AES-GCM under the driver's own key (docs/security.md, "Personal data"); erasing the driver
    destroys that key, and the fields then read as erased while the event still replays."""

    envelope: Envelope = doc("Event metadata")
    subject_id: str = doc("The data subject (driver) id, not personal itself; the topic key")
    email: str | None = doc("E-mail for receipts, sealed (pd1:...)", default=None)
    full_name: str | None = doc("Name as on invoices, sealed (pd1:...)", default=None)
    billing_address: str | None = doc("Postal billing address, sealed (pd1:...)", default=None)
    token_uids: list[str] = doc(
        "The driver's tokens (OCPI Token.uid) as sessions and authorizations carry them",
        default_factory=list,
    )


# ------------------------------------------------------- <topic>.rejected (key: original key)
@dataclass(frozen=True, slots=True)
class EventRejected:
    """A consumed record that could not be applied, with everything needed to act on it."""

    envelope: Envelope = doc("Event metadata of the rejection itself")
    original_topic: str = doc("Topic the record was consumed from")
    original_partition: int = doc("Partition")
    original_offset: int = doc("Offset")
    reason_code: str = doc(
        "Stable reason code (UNDECODABLE, UNKNOWN_SCHEMA_ID, CAPTURE_EXCEEDS_AUTHORIZATION, ...)"
    )
    detail: str = doc("What went wrong and what to do about it")
    consumer_group: str = doc("Consumer group that rejected it")
    original_key: bytes | None = doc("Record key bytes as consumed", default=None)
    original_value: bytes | None = doc("Record value bytes as consumed", default=None)
    original_event_id: str | None = doc(
        "event_id of the record, when it could be decoded", default=None
    )
