"""Personal data in events: which fields hold it, and the sealed form they must travel in.

A personal field (a driver's e-mail, name, billing address) never reaches Kafka or PostgreSQL
in plain text. It is *sealed*: encrypted with AES-GCM under a key of its own data subject, and
written as ``pd1:`` followed by the URL-safe base64 of the 12-byte nonce and the ciphertext
with its 16-byte tag. Sealing and opening need the subject's key, which only
``connectors.personal_data`` holds; the domain only knows the form, so the input rules can
refuse a plain value (``PERSONAL_DATA_NOT_SEALED``) wherever it shows up.

Erasure destroys the subject's key (crypto-shredding): the sealed values stay on the immutable
log and replay like any other field, but nobody can open them any more, and readers show
``ERASED`` in their place. See docs/security.md, "Personal data".
"""

from __future__ import annotations

import re

SEALED_PREFIX = "pd1:"
PERSONAL_FIELDS = frozenset({"email", "full_name", "billing_address"})
"""Event fields that hold personal data, sealed (``ledger.events.DriverProfileUpdated``)."""
SEALED_MAX = 4096
"""Longest sealed value: a plain value of up to PLAIN_MAX characters fits with room to spare."""
PLAIN_MAX = 1000
"""Longest plain personal value accepted for sealing (an address of several lines fits)."""
NONCE_BYTES = 12
TAG_BYTES = 16
_SEALED = re.compile(rf"pd1:[A-Za-z0-9_-]{{{(NONCE_BYTES + TAG_BYTES) * 4 // 3},}}")
ERASED = "[erased]"
"""What a reader shows for a personal field whose subject was erased."""


def is_sealed(value: str) -> bool:
    """Whether ``value`` has the sealed form (not whether it opens: that needs the key)."""
    return len(value) <= SEALED_MAX and _SEALED.fullmatch(value) is not None
