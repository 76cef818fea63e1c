"""Signed meter values (OCMF): real public records verify and their tampered copies fail; records
signed here (keys made with ``cryptography``) verify only under their key; a session's signed
energy is compared with its bill; the network's policy bills-and-flags or holds."""

from __future__ import annotations

import base64
import dataclasses
import json
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ledger.events import CaptureRequested, CdrIssued, MeterValueRecorded, SampledValue
from ledger.sessions.rules import SessionsConfig, SessionStatus
from ledger.sessions.signed import (
    SignedReasonCode,
    SignedValue,
    check_session,
    normalize_key,
    signed_values,
    verify_record,
)
from tests.unit.test_session_lifecycle import (
    T0,
    Fold,
    charging,
    env,
    hold,
    known,
    started,
    stopped,
)

SAMPLES: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent / "fixtures" / "ocmf_public_samples.json").read_text()
)
#: ocmf-compleo-daten.xml holds two records under one key; T120 does not verify, neither with
#: pyocmf nor with plain ``cryptography`` (checked by hand): a real record that must fail.
PUBLIC_BAD = [s for s in SAMPLES if '"PG":"T120"' in s["ocmf"]]
PUBLIC_GOOD = [s for s in SAMPLES if s not in PUBLIC_BAD]


def tamper(record: str) -> str:
    """The record with one reading's register value changed (a digit in RV)."""
    payload_start = record.index("|") + 1
    at = record.index('"RV"', payload_start)
    digit = next(i for i in range(at, len(record)) if record[i].isdigit())
    changed = "1" if record[digit] != "1" else "2"
    return record[:digit] + changed + record[digit + 1 :]


@pytest.mark.parametrize(
    "sample", PUBLIC_GOOD, ids=lambda s: s["ocmf"][s["ocmf"].index("PG") :][:12]
)
def test_public_samples_verify_and_tampered_copies_fail(sample: dict[str, Any]) -> None:
    key = normalize_key(sample["public_key"])
    record, problems = verify_record(SignedValue(sample["ocmf"]), [key])
    assert record is not None and record.key == key and problems == []
    assert record.readings, "every sample carries an energy register"
    _, problems = verify_record(SignedValue(tamper(sample["ocmf"])), [key])
    assert [code for code, _ in problems] in (
        [SignedReasonCode.SIGNATURE_INVALID],
        [SignedReasonCode.SIGNED_DATA_INVALID],  # the change made the payload unreadable
    )


def test_public_samples_cover_the_curves_the_format_lists() -> None:
    curves = {json.loads(s["ocmf"].rsplit("|", 1)[1])["SA"] for s in PUBLIC_GOOD}
    assert curves == {
        "ECDSA-secp256k1-SHA256",
        "ECDSA-brainpoolP256r1-SHA256",
        "ECDSA-secp256r1-SHA256",
        "ECDSA-secp192r1-SHA256",
    }


def test_a_public_record_with_a_bad_signature_fails() -> None:
    (bad,) = PUBLIC_BAD
    _, problems = verify_record(SignedValue(bad["ocmf"]), [normalize_key(bad["public_key"])])
    assert [code for code, _ in problems] == [SignedReasonCode.SIGNATURE_INVALID]


def test_public_transaction_energy_is_compared_with_the_bill() -> None:
    good = [s for s in PUBLIC_GOOD if "compleo" in s["source"]]
    (sample,) = good  # one record with B 2850685 Wh and E 2850951 Wh
    key = normalize_key(sample["public_key"])
    values = [SignedValue(sample["ocmf"])]
    ok = check_session(values, [key], Decimal(266), Decimal(1))
    assert ok.verified and ok.status == "verified" and ok.signed_energy_wh == 266
    off = check_session(values, [key], Decimal(300), Decimal(1))
    assert off.status == "SIGNED_ENERGY_MISMATCH" and "signed 266 Wh" in off.problems[0][1]


# ------------------------------------------------------------------------ records signed here
CURVES = {
    "ECDSA-secp256r1-SHA256": (ec.SECP256R1(), hashes.SHA256()),
    "ECDSA-secp384r1-SHA256": (ec.SECP384R1(), hashes.SHA256()),
    "ECDSA-brainpoolP256r1-SHA256": (ec.BrainpoolP256R1(), hashes.SHA256()),
    "ECDSA-secp256k1-SHA256": (ec.SECP256K1(), hashes.SHA256()),
}


def meter_key(method: str = "ECDSA-secp256r1-SHA256") -> tuple[ec.EllipticCurvePrivateKey, str]:
    private = ec.generate_private_key(CURVES[method][0])
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, der.hex()


def sign(
    private: ec.EllipticCurvePrivateKey,
    readings: list[tuple[str, float, str]],
    method: str = "ECDSA-secp256r1-SHA256",
) -> str:
    """An OCMF record of ``readings`` (TX, kWh, time) signed with ``private``."""
    payload = json.dumps(
        {
            "FV": "1.0", "GI": "evledger test", "GS": "T-1", "GV": "1", "PG": "T1",
            "MV": "Test", "MM": "M1", "MS": "METER-1", "IS": False, "IL": "NONE", "IF": [],
            "IT": "NONE", "ID": "",
            "RD": [
                {"TM": f"{tm},000+0000 S", "TX": tx, "RV": kwh, "RI": "1-b:1.8.0", "RU": "kWh",
                 "RT": "AC", "ST": "G"}
                for tx, kwh, tm in readings
            ],
        },
        separators=(",", ":"),
    )  # fmt: skip
    signature = private.sign(payload.encode(), ec.ECDSA(CURVES[method][1]))
    return f'OCMF|{payload}|{{"SA":"{method}","SD":"{signature.hex()}"}}'


@pytest.mark.parametrize("method", sorted(CURVES))
def test_records_signed_here_verify_only_under_their_key(method: str) -> None:
    private, key = meter_key(method)
    record = sign(
        private, [("B", 10.0, "2024-05-01T10:00:00"), ("E", 19.5, "2024-05-01T11:00:00")], method
    )
    checked = check_session([SignedValue(record)], [key], Decimal(9500), Decimal(1))
    assert checked.verified, checked.problems
    assert check_session(
        [SignedValue(tamper(record))], [key], Decimal(9500), Decimal(1)
    ).status == ("SIGNATURE_INVALID")
    _, other = meter_key(method)
    assert check_session([SignedValue(record)], [other], Decimal(9500), Decimal(1)).status == (
        "SIGNATURE_INVALID"
    )


def test_key_sent_by_the_station_must_be_the_registered_one() -> None:
    private, key = meter_key()
    _, registered = meter_key()
    record = sign(private, [("B", 1.0, "2024-05-01T10:00:00"), ("E", 2.0, "2024-05-01T11:00:00")])
    sent = SignedValue(record, public_key=base64.b64encode(bytes.fromhex(key)).decode())
    assert check_session([sent], [registered], Decimal(1000), Decimal(1)).status == (
        "METER_KEY_MISMATCH"
    )
    assert check_session([sent], [], Decimal(1000), Decimal(1)).status == "METER_KEY_UNREGISTERED"
    assert check_session([sent], [key], Decimal(1000), Decimal(1)).verified


def test_ocpp_16_and_201_forms_and_encodings() -> None:
    private, key = meter_key()
    record = sign(private, [("B", 1.0, "2024-05-01T10:00:00"), ("E", 2.0, "2024-05-01T11:00:00")])
    samples = [
        SampledValue(record, context="Transaction.End", format="SignedData"),
        SampledValue(
            "2000",
            signed_meter_data=base64.b64encode(record.encode()).decode(),
            signing_method="ECDSA-secp256r1-SHA256",
            encoding_method="OCMF",
            public_key=key,
        ),
        SampledValue("2000", signed_meter_data=record.encode().hex(), encoding_method="OCMF"),
    ]
    values = signed_values(samples)
    assert len(values) == 3
    for value in values:
        assert check_session([value], [key], Decimal(1000), Decimal(1)).verified
    other = SignedValue(record, encoding="EDL")
    assert check_session([other], [key], Decimal(1000), Decimal(1)).status == "SIGNED_DATA_INVALID"
    garbage = SignedValue("OCMF|{not json|{}")
    assert (
        check_session([garbage], [key], Decimal(1000), Decimal(1)).status == "SIGNED_DATA_INVALID"
    )


# ------------------------------------------------------------------------ through the session
def signed_reading(seq: int, minutes: int, wh: int, record: str) -> MeterValueRecorded:
    at = T0 + timedelta(minutes=minutes)
    samples = [SampledValue(str(wh)), SampledValue(record, format="SignedData")]
    return MeterValueRecorded(env(minutes), "S-1", "CS-1", "TX-1", seq, at, samples)


def session_with(record_wh: tuple[float, float], config: SessionsConfig, keys: list[str]) -> Fold:
    private, key = meter_key()
    begin, end = record_wh
    start = sign(private, [("B", begin, "2024-05-01T10:00:00")])
    stop = sign(private, [("E", end, "2024-05-01T11:00:00")])
    k = dataclasses.replace(known(hold(10_000), config=config), meter_keys={"CS-1": keys or [key]})
    if keys == ["none"]:
        k = dataclasses.replace(k, meter_keys={})
    return Fold(k).feed(
        started(),
        charging(),
        signed_reading(1, 0, 0, start),
        signed_reading(2, 60, 9000, stop),
        stopped(60, 9000),
    )


def test_verified_session_carries_signed_data_to_cdr_and_capture() -> None:
    fold = session_with((0.0, 9.0), SessionsConfig(), [])
    (cdr,) = fold.of(CdrIssued)
    (capture,) = fold.of(CaptureRequested)
    assert cdr.signed_status == "verified" and fold.sessions["S-1"].status == SessionStatus.BILLED
    assert cdr.meter_flags == []
    data = json.loads(cdr.signed_data)
    assert data["encoding_method"] == "OCMF" and len(data["signed_values"]) == 2
    assert [v["nature"] for v in data["signed_values"]] == ["Start", "End"]
    import hashlib

    assert capture.signed_data_sha256 == hashlib.sha256(cdr.signed_data.encode()).hexdigest()
    assert cdr.total_energy_wh == 9000  # the SignedData sample is not read as a number


def test_failed_session_is_billed_and_flagged_by_default() -> None:
    fold = session_with((0.0, 8.0), SessionsConfig(), [])
    s = fold.sessions["S-1"]
    assert s.status == SessionStatus.BILLED and s.signed_status == "SIGNED_ENERGY_MISMATCH"
    assert [f.code.value for f in s.flags] == ["SIGNED_ENERGY_MISMATCH"]
    assert fold.of(CdrIssued)[0].signed_status == "SIGNED_ENERGY_MISMATCH"
    assert fold.of(CdrIssued)[0].meter_flags == ["SIGNED_ENERGY_MISMATCH"]  # for the fraud rules


def test_failed_session_is_held_where_the_network_holds() -> None:
    fold = session_with(
        (0.0, 9.0), SessionsConfig(signed_hold_networks=frozenset({"net"})), ["none"]
    )
    s = fold.sessions["S-1"]
    assert s.status == SessionStatus.HELD and s.reason_code == "METER_KEY_UNREGISTERED"
    assert "register-key" in (s.reason_action or "")
    assert fold.of(CdrIssued) == [] and fold.rejected == [
        ("SessionStopped", "METER_KEY_UNREGISTERED")
    ]
