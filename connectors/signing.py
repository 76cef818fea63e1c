"""Ed25519 signing for the audit trail: keys (PEM), signatures over canonical documents (the
chain checkpoints of ``ledger.accounting.checkpoints``, audit pack manifests), fingerprints."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger.accounting.checkpoints import Checkpoint
from ledger.errors import LedgerError


class SigningKeyError(LedgerError):
    """A signing or public key that cannot be read or is not Ed25519."""

    code = "SIGNING_KEY_INVALID"


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
