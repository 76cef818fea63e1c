"""Signed checkpoints of the journal's hash chains: what an auditor keeps outside the database.

A checkpoint names the head of every chain (topic, partition, seq, hash) and the journal's entry
count at one moment, in a canonical form (compact JSON, sorted keys, heads in chain order), and
is signed with Ed25519. Whoever holds the public key can later prove that the journal still
passes through every head: a journal edited and its chain recomputed "consistently" after the
checkpoint no longer has the signed hash at the signed place (``check_heads``). Pure: the key
comes in, nothing is read or written here (``connectors.audit`` stores and reads them).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger.errors import LedgerError


class SigningKeyError(LedgerError):
    """A signing or public key that cannot be read or is not Ed25519."""

    code = "SIGNING_KEY_INVALID"


@dataclass(frozen=True, slots=True)
class Head:
    topic: str
    partition: int
    seq: int
    hash: str


@dataclass(frozen=True, slots=True)
class Checkpoint:
    taken_at: datetime
    entries: int
    heads: tuple[Head, ...]

    def canonical(self) -> bytes:
        """The exact bytes signed: compact JSON, keys sorted, heads in (topic, partition)
        order, the time in UTC ISO 8601."""
        doc = {
            "entries": self.entries,
            "heads": [[h.topic, h.partition, h.seq, h.hash] for h in
                      sorted(self.heads, key=lambda h: (h.topic, h.partition))],
            "taken_at": self.taken_at.isoformat(),
            "version": 1,
        }  # fmt: skip
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_canonical(cls, data: bytes) -> Checkpoint:
        doc = json.loads(data)
        heads = tuple(Head(t, int(p), int(s), h) for t, p, s, h in doc["heads"])
        return cls(datetime.fromisoformat(doc["taken_at"]), int(doc["entries"]), heads)


@dataclass(frozen=True, slots=True)
class Signed:
    """A checkpoint's canonical bytes, their Ed25519 signature and the signing key's
    fingerprint (SHA-256 of the raw public key, hex)."""

    document: bytes
    signature: bytes
    key_fingerprint: str


def generate_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def private_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_private(pem: bytes, where: str) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"{where} is not a PEM private key without password: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{where} holds a {type(key).__name__}, not an Ed25519 key")
    return key


def load_public(pem: bytes, where: str) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"{where} is not a PEM public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(f"{where} holds a {type(key).__name__}, not an Ed25519 key")
    return key


def fingerprint(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def sign(checkpoint: Checkpoint, key: Ed25519PrivateKey) -> Signed:
    document = checkpoint.canonical()
    return Signed(document, key.sign(document), fingerprint(key.public_key()))


def signature_holds(signed: Signed, key: Ed25519PublicKey) -> bool:
    """Whether ``signed`` was signed by ``key``'s private half, over exactly its document."""
    try:
        key.verify(signed.signature, signed.document)
    except InvalidSignature:
        return False
    return True


def check_heads(
    checkpoint: Checkpoint, stored: Mapping[tuple[str, int], Mapping[int, str]]
) -> list[str]:
    """The heads the journal no longer passes through: ``stored`` maps a chain to its hash per
    seq, as the (recomputed and verified) chain holds it now. One message per failing head."""
    problems = []
    for head in checkpoint.heads:
        chain = stored.get((head.topic, head.partition), {})
        found = chain.get(head.seq)
        where = f"{head.topic}[{head.partition}] #{head.seq}"
        if found is None:
            problems.append(f"{where}: the chain no longer reaches the signed head")
        elif found != head.hash:
            problems.append(
                f"{where}: hash {found[:12]}... is not the signed {head.hash[:12]}...; the "
                "journal up to this point was rewritten after the checkpoint"
            )
    return problems


def heads_of(rows: Iterable[tuple[str, int, int, str]]) -> tuple[Head, ...]:
    return tuple(Head(t, int(p), int(s), h) for t, p, s, h in rows)
