"""Signed meter values (OCMF): what a station's calibrated meter signed, checked against the
station's registered meter key and against the energy that was billed.

Stations send the Open Charge Metering Format (S.A.F.E. e.V.), ``OCMF|{payload}|{signature}``,
as an OCPP 1.6 sampled value with format ``SignedData`` or as an OCPP 2.0.1 ``signedMeterValue``
(encoding method ``OCMF``, the record plain, base64 or hex, the public key beside it). Parsing and
ECDSA verification are ``pyocmf`` on top of ``cryptography`` (every curve and hash the format
lists; checked against the public samples of the S.A.F.E. Transparenzsoftware, see
tests/unit/test_ocmf.py). Nothing here touches Kafka or a database. See docs/sessions.md
"Signed meter values".
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from pyocmf import OCMF, PublicKey, PyOCMFError, SpecWarning

from ledger.errors import ValidationError
from ledger.events import SampledValue

OCMF_ENCODING = "OCMF"
SIGNED_DATA_FORMAT = "SignedData"
#: OCMF reading reasons (TX) that end a transaction: E, or the more precise L, R, A, P.
_END_REASONS = frozenset("ELRAP")
_WH_PER_UNIT = {"Wh": Decimal(1), "kWh": Decimal(1000)}


class SignedReasonCode(StrEnum):
    """Why a session's signed meter values do not vouch for its bill (docs/errors.md)."""

    SIGNED_DATA_INVALID = "SIGNED_DATA_INVALID"
    """A record is not OCMF (or another encoding), or carries no readable energy register."""
    SIGNATURE_INVALID = "SIGNATURE_INVALID"
    """The signature does not verify under the meter's key: the record was altered."""
    METER_KEY_UNREGISTERED = "METER_KEY_UNREGISTERED"
    """The station has no registered meter key (evledger stations register-key)."""
    METER_KEY_MISMATCH = "METER_KEY_MISMATCH"
    """The record was signed by (or sent with) a key that is not the station's registered one."""
    SIGNED_ENERGY_MISMATCH = "SIGNED_ENERGY_MISMATCH"
    """The signed end register minus the signed start register is not the energy billed."""


class InvalidMeterKey(ValidationError):
    """A public key that is not an EC key in DER (hex or base64) the OCMF curves allow."""

    code = "INVALID_METER_KEY"


@dataclass(frozen=True, slots=True)
class SignedValue:
    """A signed record as the station sent it, kept with its reading."""

    data: str
    encoding: str = OCMF_ENCODING
    public_key: str | None = None
    signing_method: str | None = None


@dataclass(frozen=True, slots=True)
class SignedReading:
    """One energy register reading inside a signed record, in Wh."""

    time: str
    reason: str | None
    register_wh: Decimal
    obis: str


@dataclass(frozen=True, slots=True)
class VerifiedRecord:
    """One OCMF record after verification: the text, its readings and the key that verified it
    (None when none did)."""

    text: str
    readings: tuple[SignedReading, ...]
    signing_method: str | None
    key: str | None
    meter_serial: str | None
    pagination: str | None


@dataclass(frozen=True, slots=True)
class SignedCheck:
    """A session's signed meter values against its registered keys and its bill.

    ``status`` is ``verified`` or the first failing reason code; ``problems`` names each
    failure; ``signed_data`` is the OCPI CDR ``signed_data`` object as JSON text."""

    status: str
    problems: tuple[tuple[SignedReasonCode, str], ...]
    start_wh: Decimal | None
    end_wh: Decimal | None
    signed_data: str

    @property
    def verified(self) -> bool:
        return not self.problems

    @property
    def signed_energy_wh(self) -> Decimal | None:
        if self.start_wh is None or self.end_wh is None:
            return None
        return self.end_wh - self.start_wh

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.signed_data.encode()).hexdigest()


VERIFIED = "verified"


# ------------------------------------------------------------------------------ from samples
def signed_values(samples: Iterable[SampledValue]) -> tuple[SignedValue, ...]:
    """The signed records among a reading's sampled values: OCPP 1.6 values with format
    SignedData, and OCPP 2.0.1 signedMeterValue fields."""
    found = []
    for s in samples:
        if s.format == SIGNED_DATA_FORMAT:
            found.append(SignedValue(s.value, OCMF_ENCODING, s.public_key, s.signing_method))
        if s.signed_meter_data is not None:
            found.append(
                SignedValue(
                    s.signed_meter_data,
                    s.encoding_method or OCMF_ENCODING,
                    s.public_key,
                    s.signing_method,
                )
            )
    return tuple(found)


def is_signed_sample(s: SampledValue) -> bool:
    """An OCPP 1.6 SignedData sample: its value is a record, not a number."""
    return s.format == SIGNED_DATA_FORMAT


# ------------------------------------------------------------------------------ keys
def normalize_key(text: str) -> str:
    """The meter key as lowercase hex DER, from hex or base64 DER; raises InvalidMeterKey."""
    compact = "".join(text.split())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SpecWarning)
            return PublicKey.from_string(compact).key.lower()
    except (PyOCMFError, ValueError) as exc:
        raise InvalidMeterKey(
            f"not an EC public key in DER, hex or base64 ({exc})", key=compact[:40]
        ) from None


def _key_or_none(text: str | None) -> str | None:
    if not text:
        return None
    try:
        return normalize_key(text)
    except InvalidMeterKey:
        return None


# ------------------------------------------------------------------------------ records
def ocmf_text(value: SignedValue) -> str:
    """The OCMF record of ``value`` as text (OCPP 2.0.1 may send it base64 or hex).
    Raises ValueError when it is none of them."""
    data = value.data.strip()
    if value.encoding.upper() != OCMF_ENCODING:
        raise ValueError(f"encoding method {value.encoding!r} is not OCMF")
    if data.startswith("OCMF|"):
        return data
    for decode in (bytes.fromhex, base64.b64decode):
        try:
            text = decode(data).decode("utf-8")
        except (ValueError, binascii.Error, UnicodeDecodeError):
            continue
        if text.startswith("OCMF|"):
            return text
    raise ValueError("the record does not start with OCMF| (plain, hex or base64)")


def parse(value: SignedValue) -> OCMF:
    """The parsed OCMF record (pyocmf, lenient as the Transparenzsoftware is).
    Raises ValueError or a pyocmf PyOCMFError when it cannot be read."""
    text = ocmf_text(value)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SpecWarning)
        return OCMF.from_string(text)


def _readings(record: OCMF) -> tuple[SignedReading, ...]:
    out = []
    for r in record.payload.RD or ():
        unit = getattr(r.RU, "value", r.RU)
        factor = _WH_PER_UNIT.get(str(unit))
        if factor is None or r.RV is None:
            continue  # seconds, varh, ...: not the energy register
        reason = getattr(r.TX, "value", r.TX)
        out.append(
            SignedReading(
                str(r.TM),
                None if reason is None else str(reason),
                Decimal(r.RV) * factor,
                str(r.RI),
            )
        )
    return tuple(out)


def _verifies(record: OCMF, key: str) -> bool:
    try:
        return bool(record.verify_signature(key))
    except (PyOCMFError, ValueError):
        return False


def verify_record(
    value: SignedValue, registered: Sequence[str]
) -> tuple[VerifiedRecord | None, list[tuple[SignedReasonCode, str]]]:
    """Parse and verify one record: with the key sent beside it, else each registered key.
    Returns the record (None if unreadable) and its problems (empty when it verified under a
    registered key)."""
    try:
        text = ocmf_text(value)
        record = parse(value)
    except (ValueError, PyOCMFError) as exc:
        return None, [(SignedReasonCode.SIGNED_DATA_INVALID, f"unreadable record: {exc}")]
    sent = _key_or_none(value.public_key)
    candidates = [sent] if sent else list(registered)
    key = next((k for k in candidates if _verifies(record, k)), None)
    sa = record.signature.SA
    verified = VerifiedRecord(
        text,
        _readings(record),
        None if sa is None else str(getattr(sa, "value", sa)),
        key,
        record.payload.MS,
        record.payload.PG,
    )
    where = f"record {record.payload.PG or '?'} of meter {record.payload.MS or '?'}"
    problems: list[tuple[SignedReasonCode, str]] = []
    if value.public_key and sent is None:
        problems.append((SignedReasonCode.SIGNED_DATA_INVALID, f"{where}: unreadable public key"))
    elif not candidates:
        problems.append(
            (SignedReasonCode.METER_KEY_UNREGISTERED, f"{where}: no meter key registered")
        )
    elif key is None:
        problems.append(
            (SignedReasonCode.SIGNATURE_INVALID, f"{where}: the signature does not verify")
        )
    elif key not in registered:
        code = (
            SignedReasonCode.METER_KEY_MISMATCH
            if registered
            else SignedReasonCode.METER_KEY_UNREGISTERED
        )
        problems.append((code, f"{where}: signed by key {key[-16:]}, not a registered key"))
    return verified, problems


# ------------------------------------------------------------------------------ a session
def check_session(
    values: Sequence[SignedValue],
    registered: Sequence[str],
    billed_wh: Decimal,
    tolerance_wh: Decimal,
) -> SignedCheck:
    """Verify every signed record of a session and compare the signed energy (end register
    minus start register, TX B and E/L/R/A/P of one OBIS code) with ``billed_wh``."""
    keys = [k.lower() for k in registered]
    records: list[VerifiedRecord] = []
    problems: list[tuple[SignedReasonCode, str]] = []
    for value in values:
        record, found = verify_record(value, keys)
        problems += found
        if record is not None:
            records.append(record)
    start, end = _bounds([r for rec in records for r in rec.readings])
    if start is None or end is None:
        problems.append(
            (
                SignedReasonCode.SIGNED_ENERGY_MISMATCH,
                "no signed start (TX B) and end (TX E) energy register to compare with the bill",
            )
        )
    elif abs((end - start) - billed_wh) > tolerance_wh:
        problems.append(
            (
                SignedReasonCode.SIGNED_ENERGY_MISMATCH,
                f"signed {end - start} Wh ({start} to {end}) but billed {billed_wh} Wh "
                f"(tolerance {tolerance_wh} Wh)",
            )
        )
    status = problems[0][0].value if problems else VERIFIED
    return SignedCheck(
        status, tuple(problems), start, end, _ocpi_signed_data(records, values, keys)
    )


def _bounds(readings: Sequence[SignedReading]) -> tuple[Decimal | None, Decimal | None]:
    begin = next((r for r in readings if r.reason == "B"), None)
    if begin is None:
        return None, None
    ends = [r for r in readings if r.reason in _END_REASONS and r.obis == begin.obis]
    return begin.register_wh, (ends[-1].register_wh if ends else None)


def _nature(record: VerifiedRecord) -> str:
    reasons = {r.reason for r in record.readings}
    if "B" in reasons and reasons & _END_REASONS:
        return "Start+End"
    if "B" in reasons:
        return "Start"
    if reasons & _END_REASONS:
        return "End"
    return "Intermediate"


def _plain(record: VerifiedRecord) -> str:
    return "; ".join(f"{r.reason or '-'} {r.register_wh} Wh at {r.time}" for r in record.readings)


def _ocpi_signed_data(
    records: Sequence[VerifiedRecord], values: Sequence[SignedValue], registered: Sequence[str]
) -> str:
    """OCPI 2.2.1 CDR ``signed_data``: one signed value per record, with the key that verified
    it (else the key sent, else the first registered one)."""
    key = next((r.key for r in records if r.key), None)
    key = key or next((_key_or_none(v.public_key) for v in values if v.public_key), None)
    key = key or (registered[0] if registered else None)
    version = None
    signed = []
    for value in values:
        try:
            text = ocmf_text(value)
        except ValueError:
            text = value.data
        match = next((r for r in records if r.text == text), None)
        signed.append(
            {
                "nature": _nature(match) if match else "Intermediate",
                "plain_data": _plain(match) if match else "",
                "signed_data": text,
            }
        )
        if match is not None and version is None:
            version = _format_version(text)
    return json.dumps(
        {
            "encoding_method": OCMF_ENCODING,
            "encoding_method_version": version,
            "public_key": key,
            "signed_values": signed,
            "url": None,
        },
        separators=(",", ":"),
    )


def _format_version(text: str) -> str | None:
    try:
        fv = json.loads(text.split("|")[1]).get("FV")
    except (ValueError, IndexError, AttributeError):
        return None
    return None if fv is None else str(fv)
