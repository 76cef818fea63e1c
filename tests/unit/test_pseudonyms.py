"""Token pseudonyms: one keyed hash per token and network, stable, not reversible without the
key, applied once however often it is applied, to exactly the fields that hold tokens."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors import personal_data
from ledger import pseudonyms
from ledger.envelope import Envelope
from ledger.events import DriverProfileUpdated, FraudScored, SessionStarted, TokenBlocked
from ledger.pseudonyms import Pseudonymizer

KEY = bytes(range(32))
P = Pseudonymizer(KEY)


@given(st.text(min_size=1, max_size=64))
def test_a_token_has_one_pseudonym_per_network_and_applying_it_twice_changes_nothing(
    uid: str,
) -> None:
    once = P.value("net-a", uid)
    assert pseudonyms.is_pseudonym(once) and (len(uid) < 8 or uid not in once)
    assert P.value("net-a", uid) == once == P.value("net-a", once)
    assert P.value("net-b", uid) != once
    assert Pseudonymizer(os.urandom(32)).value("net-a", uid) != once


def test_subjects_a_person_types_map_to_the_pseudonyms_the_rules_see() -> None:
    assert P.subject("n", "token:04A2B3C4") == f"token:{P.value('n', '04A2B3C4')}"
    for other in ("card:abc", "station:DE*EVL*E0001", "terminal:T1", "token:", "plain"):
        assert P.subject("n", other) == other


def test_only_token_fields_change() -> None:
    env = Envelope.new("n")
    started = SessionStarted(env, "S-1", "DE*EVL*E0001", "EVSE-1", "C-1", "T-1", "TAR-1", "DE",
                             "Europe/Berlin", token_uid="04A2")  # fmt: skip
    done = P.event(started)
    assert done.token_uid == P.value("n", "04A2") and done.session_id == "S-1"
    assert P.event(done) is done  # nothing left to change: the same object
    blocked = P.event(TokenBlocked(env, "token:04A2", "stolen card reported", "ana"))
    assert blocked.subject == f"token:{P.value('n', '04A2')}"
    profile = P.event(DriverProfileUpdated(env, "drv-1", token_uids=["04A2", "05B3"]))
    assert profile.token_uids == [P.value("n", "04A2"), P.value("n", "05B3")]
    scored = FraudScored(env, "token:raw-from-an-old-log", 0.1, [], [], "in-1")
    assert P.event(scored) is scored  # the fraud processor's outputs are not retyped


def test_a_short_key_is_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        Pseudonymizer(b"short")


def test_the_key_file_is_made_once_and_must_be_private(tmp_path: Path) -> None:
    path = tmp_path / "pseudonym.key"
    assert personal_data.ensure_pseudonym_key(path) and not personal_data.ensure_pseudonym_key(path)
    assert path.stat().st_mode & 0o777 == 0o600
    first = personal_data.read_pseudonymizer(path).value("n", "04A2")
    assert personal_data.read_pseudonymizer(path).value("n", "04A2") == first
    path.chmod(0o644)
    with pytest.raises(personal_data.MasterKeyError, match="chmod 600"):
        personal_data.read_pseudonymizer(path)
    with pytest.raises(personal_data.MasterKeyError, match="pseudonym-init"):
        personal_data.read_pseudonymizer(tmp_path / "none.key")


@given(st.text(min_size=1, max_size=60))
def test_a_card_fingerprint_is_keyed_per_network_and_stable(payment_token: str) -> None:
    keyed = Pseudonymizer(KEY)
    fingerprint = keyed.card("net-a", payment_token)
    assert fingerprint == keyed.card("net-a", payment_token)
    assert fingerprint.startswith(pseudonyms.CARD_PREFIX) and len(fingerprint) == 44
    assert fingerprint != keyed.card("net-b", payment_token)
    assert fingerprint != Pseudonymizer(bytes(32)).card("net-a", payment_token)  # another key


def test_the_connector_keys_card_fingerprints_when_the_deployment_has_a_key() -> None:
    from ledger.settlement.outcomes import card_fingerprint

    keyed = card_fingerprint("tok_visa", "net-a", Pseudonymizer(KEY))
    assert keyed == Pseudonymizer(KEY).card("net-a", "tok_visa")
    assert card_fingerprint("tok_visa") != keyed  # without a key: the unkeyed hash
