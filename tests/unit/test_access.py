"""API keys: made with 256 bits of secret, stored as a hash, checked in constant time, bound to
one network and a set of scopes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ledger import access
from ledger.access import KeyRecord, Scope

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def record(new: access.NewKey, *scopes: Scope, revoked: bool = False) -> KeyRecord:
    return KeyRecord(new.key_id, "net-a", frozenset(scopes), new.secret_hash, "", NOW,
                     NOW if revoked else None)  # fmt: skip


def test_a_key_names_its_id_and_authenticates_against_its_hash_only() -> None:
    new = access.generate()
    key_id, secret = access.parse(new.token)
    assert key_id == new.key_id and len(secret) == 43  # 32 bytes, base64url
    assert secret.encode() not in new.secret_hash and len(new.secret_hash) == 32
    who = access.authenticate(new.token, record(new, Scope.FINANCE_READ))
    assert (who.key_id, who.network_id, who.scopes) == (new.key_id, "net-a", {Scope.FINANCE_READ})
    assert len({access.generate().token for _ in range(200)}) == 200


@pytest.mark.parametrize(
    "token", ["", "Bearer x", "evl_123_abc", "evl_0123456789ab_" + "A" * 42, "sk_test_123"]
)
def test_anything_but_a_well_formed_key_is_unauthenticated(token: str) -> None:
    with pytest.raises(access.Unauthenticated, match="API key is required"):
        access.parse(token)


def test_a_wrong_secret_an_unknown_key_and_a_revoked_key_look_the_same() -> None:
    new, other = access.generate(), access.generate()
    forged = f"evl_{new.key_id}_{access.parse(other.token)[1]}"
    for token, stored in [
        (forged, record(new, Scope.FINANCE_READ)),
        (new.token, None),
        (new.token, record(new, Scope.FINANCE_READ, revoked=True)),
    ]:
        with pytest.raises(access.Unauthenticated) as caught:
            access.authenticate(token, stored)
        assert caught.value.message == "the API key is not valid"


def test_a_scope_is_required_and_named_when_missing() -> None:
    new = access.generate()
    who = access.authenticate(new.token, record(new, Scope.PUBLISH))
    assert access.require(who, Scope.PUBLISH) is who
    with pytest.raises(
        access.Forbidden, match="needs the scope finance:read; the key holds publish"
    ):
        access.require(who, Scope.FINANCE_READ)


def test_scopes_are_named_from_the_known_list() -> None:
    assert access.scopes_of(["finance:read", "admin"]) == {Scope.FINANCE_READ, Scope.ADMIN}
    with pytest.raises(access.InvalidKeyRequest, match="unknown scope everything"):
        access.scopes_of(["finance:read", "everything"])
    with pytest.raises(access.InvalidKeyRequest, match="at least one scope"):
        access.scopes_of([])
