"""Signed checkpoints of the chain heads: canonical, signed with Ed25519, and checked against
the chains as they stand."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from connectors import signing as cp
from ledger.accounting.checkpoints import Checkpoint, Head, check_heads

AT = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
HEADS = (Head("payments.events", 1, 7, "b" * 64), Head("payments.events", 0, 3, "a" * 64))


def test_the_canonical_form_is_deterministic_and_reads_back() -> None:
    one = Checkpoint(AT, 10, HEADS)
    other = Checkpoint(AT, 10, tuple(reversed(HEADS)))
    assert one.canonical() == other.canonical()  # heads in chain order, whatever came in
    back = Checkpoint.from_canonical(one.canonical())
    assert back.canonical() == one.canonical() and back.entries == 10


def test_a_signature_holds_only_under_its_key_and_for_its_document() -> None:
    key, other = cp.generate_key(), cp.generate_key()
    signed = cp.sign(Checkpoint(AT, 10, HEADS), key)
    assert cp.signature_holds(signed, key.public_key())
    assert not cp.signature_holds(signed, other.public_key())
    edited = cp.Signed(signed.document.replace(b'"entries":10', b'"entries":11'),
                       signed.signature, signed.key_fingerprint)  # fmt: skip
    assert not cp.signature_holds(edited, key.public_key())
    assert (
        signed.key_fingerprint
        == cp.fingerprint(key.public_key())
        != cp.fingerprint(other.public_key())
    )


def test_keys_round_trip_through_pem_and_a_wrong_key_is_named() -> None:
    key = cp.generate_key()
    loaded = cp.load_private(cp.private_pem(key), "k.pem")
    assert cp.fingerprint(loaded.public_key()) == cp.fingerprint(key.public_key())
    public = cp.load_public(cp.public_pem(key.public_key()), "k.pub")
    assert cp.fingerprint(public) == cp.fingerprint(key.public_key())
    with pytest.raises(cp.SigningKeyError, match=r"k\.pem is not a PEM private key"):
        cp.load_private(b"not a key", "k.pem")


def test_the_heads_must_still_be_in_the_chains() -> None:
    checkpoint = Checkpoint(AT, 10, HEADS)
    chains = {("payments.events", 0): {1: "x", 2: "y", 3: "a" * 64},
              ("payments.events", 1): {7: "b" * 64, 8: "c"}}  # fmt: skip
    assert check_heads(checkpoint, chains) == []
    chains[("payments.events", 0)][3] = "d" * 64  # rewritten with recomputed hashes
    (problem,) = check_heads(checkpoint, chains)
    assert problem.startswith("payments.events[0] #3: hash dddddddddddd") and "rewritten" in problem
    del chains[("payments.events", 1)][7]
    assert len(check_heads(checkpoint, chains)) == 2
