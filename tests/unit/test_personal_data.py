"""Personal data without a database: the sealed form, the input rule that refuses plain values
without showing them, the master key file's rules, and sealing's AES-GCM binding to its field
and subject."""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from connectors import personal_data
from connectors.personal_data import Keyring, MasterKeyError, SealBroken
from ledger import personal, validation
from ledger.envelope import Envelope
from ledger.events import DriverProfileUpdated

LATEST = datetime(2030, 1, 1, tzinfo=UTC)


def sealed(key: bytes, field: str, plain: str, subject: str = "drv-1") -> str:
    nonce = os.urandom(12)
    box = AESGCM(key).encrypt(nonce, plain.encode(), f"net|{subject}|{field}".encode())
    return "pd1:" + base64.urlsafe_b64encode(nonce + box).rstrip(b"=").decode()


def test_a_plain_personal_field_is_refused_without_showing_it() -> None:
    event = DriverProfileUpdated(Envelope.new("net"), "drv-1", email="anna@example.org")
    with pytest.raises(validation.PersonalDataNotSealed) as refused:
        validation.check(event, LATEST)
    assert "anna" not in str(refused.value) and "16 characters, not shown" in str(refused.value)
    assert refused.value.context["field"] == "email"


def test_sealed_values_and_absent_fields_pass() -> None:
    key = os.urandom(32)
    event = DriverProfileUpdated(Envelope.new("net"), "drv-1", email=sealed(key, "email", "a@b"))
    validation.check(event, LATEST)
    validation.check(DriverProfileUpdated(Envelope.new("net"), "drv-2"), LATEST)


@pytest.mark.parametrize(
    "value", ["pd1:", "pd1:short", "pd1:" + "A" * 36, "pd2:" + "A" * 60, "pd1:" + "A" * 60 + "=",
              "pd1:" + "+" * 60, "pd1:" + "A" * 5000],
)  # fmt: skip
def test_only_the_sealed_form_counts_as_sealed(value: str) -> None:
    assert not personal.is_sealed(value)


def test_a_sealed_value_opens_only_for_its_own_field_and_subject() -> None:
    key = os.urandom(32)
    value = sealed(key, "email", "anna@example.org")
    assert personal_data._open(key, "net", "drv-1", "email", value) == "anna@example.org"
    for field, subject in (("full_name", "drv-1"), ("email", "drv-2")):
        with pytest.raises(SealBroken):
            personal_data._open(key, "net", subject, field, value)
    tampered = value[:-2] + ("A" if value[-2] != "A" else "B") + value[-1]
    with pytest.raises(SealBroken):
        personal_data._open(key, "net", "drv-1", "email", tampered)


def test_the_key_file_round_trips_with_mode_600(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "master.keys"
    ring = Keyring((personal_data.new_master_key(), personal_data.new_master_key()))
    personal_data.write_keyring(path, ring, exclusive=True)
    assert path.stat().st_mode & 0o777 == 0o600
    assert personal_data.read_keyring(path) == ring and ring.current == ring.keys[0]
    with pytest.raises(MasterKeyError, match="rotate"):
        personal_data.write_keyring(path, ring, exclusive=True)


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "holds no master key"), ("mk-1 notbase64!\n", "line 1"),
     ("# c\nmk-1 " + base64.b64encode(b"short").decode() + "\n", "line 2"),
     ("mk-1\n", "line 1")],
)  # fmt: skip
def test_a_bad_key_file_says_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "master.keys"
    path.write_text(text)
    path.chmod(0o600)
    with pytest.raises(MasterKeyError, match=message):
        personal_data.read_keyring(path)


def test_a_missing_or_open_key_file_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(MasterKeyError, match="master-init"):
        personal_data.read_keyring(tmp_path / "none.keys")
    path = tmp_path / "open.keys"
    personal_data.write_keyring(path, Keyring((personal_data.new_master_key(),)))
    path.chmod(0o604)
    with pytest.raises(MasterKeyError, match="chmod 600"):
        personal_data.read_keyring(path)


def test_a_process_reloads_the_file_for_a_master_key_it_has_not_seen(tmp_path: Path) -> None:
    path = tmp_path / "master.keys"
    first = personal_data.new_master_key()
    personal_data.write_keyring(path, Keyring((first,)))
    keys = personal_data.KeyFile(path)
    assert keys.keyring().current == first
    second = personal_data.new_master_key()
    personal_data.write_keyring(path, Keyring((second, first)))
    assert keys.key(second[0]) == second[1]
    with pytest.raises(MasterKeyError, match="restore"):
        keys.key("mk-never")


def test_a_plain_value_obeys_the_text_rule_line_breaks_included() -> None:
    """A Windows client's address ends its lines with CR LF: the free-text rule allows tab, LF
    and CR, so sealing does too; other control characters stay refused."""
    personal_data._check_plain("billing_address", "Hauptstr. 1\r\n10115 Berlin\tDE")
    with pytest.raises(personal_data.PersonalValueRefused, match="control"):
        personal_data._check_plain("billing_address", "Hauptstr. 1\x0b10115 Berlin")
