"""Pseudonyms for the tokens that identify a driver (OCPI ``Token.uid``: an RFID card's uid or
a contract id). At the front door (HTTP ingest, a publisher made with ``pseudonymize=True``, the
fraud CLI) each is replaced by a keyed hash, HMAC-SHA256 under the deployment's pseudonym key
over the network id and the uid, so the log and every table hold the pseudonym only, while the
fraud rules still see one pseudonym per token and correlate.

The same token in two networks gets two pseudonyms (no linking across tenants). A value that
already has a pseudonym's form is left alone, so pseudonymizing twice changes nothing and the
processors, which copy tokens from event to event, pass them through. Card fingerprints are not
taken from upstream: the settlement connector derives them from the provider's vaulted payment
token with the same key (``Pseudonymizer.card``, through
``ledger.settlement.outcomes.card_fingerprint``). docs/security.md, "Pseudonymized tokens".
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re
from typing import Any

TOKEN_PREFIX = "tk1_"
CARD_PREFIX = "cd1_"
"""Card fingerprints: the keyed hash of a vaulted payment token (``Pseudonymizer.card``)."""
FIELDS = {"token_uid": TOKEN_PREFIX}
"""Event fields holding one token, and the form their pseudonym takes."""
LIST_FIELDS = {"token_uids": TOKEN_PREFIX}
"""Event fields holding several (a driver's profile)."""
SUBJECT_KINDS = {"token": TOKEN_PREFIX}
"""Fraud subjects (``kind:value``) whose value is a token."""
_FORM = re.compile(r"tk1_[0-9a-f]{40}")
KEY_BYTES = 32


def is_pseudonym(value: str) -> bool:
    return _FORM.fullmatch(value) is not None


class Pseudonymizer:
    """Keyed hashing of tokens for one deployment (the key is the same for every process)."""

    def __init__(self, key: bytes) -> None:
        if len(key) < KEY_BYTES:
            raise ValueError(f"a pseudonym key has at least {KEY_BYTES} bytes")
        self._key = key
        self._fields: dict[type, tuple[tuple[str, str], ...]] = {}

    def value(self, network: str, raw: str, prefix: str = TOKEN_PREFIX) -> str:
        """The pseudonym of ``raw`` in ``network`` (``raw`` itself if it is one already)."""
        if is_pseudonym(raw):
            return raw
        mac = hmac.new(self._key, f"{network}\x00{raw}".encode(), hashlib.sha256)
        return prefix + mac.hexdigest()[:40]

    def card(self, network: str, payment_token: str) -> str:
        """The card fingerprint of a provider-vaulted payment token in ``network``: ``cd1_`` and
        40 hex digits of HMAC-SHA256 under the pseudonym key, over a domain separator, the
        network and the token. Without the key a known token cannot be matched to it."""
        data = f"card\x00{network}\x00{payment_token}".encode()
        return CARD_PREFIX + hmac.new(self._key, data, hashlib.sha256).hexdigest()[:40]

    def subject(self, network: str, subject: str) -> str:
        """A fraud subject with its token pseudonymized (``token:X`` -> ``token:tk1_...``);
        other subjects (``card:``, ``station:``, ``terminal:``) unchanged."""
        kind, sep, raw = subject.partition(":")
        prefix = SUBJECT_KINDS.get(kind)
        if not sep or prefix is None or not raw:
            return subject
        return f"{kind}:{self.value(network, raw, prefix)}"

    def event(self, event: Any) -> Any:
        """``event`` with every token field (and a token subject a person typed) pseudonymized;
        the same object when there is nothing to change."""
        fields = self._fields.get(type(event))
        if fields is None:
            fields = self._fields[type(event)] = _token_fields(type(event))
        if not fields:
            return event
        network = event.envelope.network_id
        changes: dict[str, Any] = {}
        for name, prefix in fields:
            current = getattr(event, name)
            if current is None:
                continue
            if name == "subject":
                new: Any = self.subject(network, current)
            elif name in LIST_FIELDS:
                new = [self.value(network, v, prefix) for v in current]
            else:
                new = self.value(network, current, prefix)
            if new != current:
                changes[name] = new
        return dataclasses.replace(event, **changes) if changes else event


def _token_fields(cls: type) -> tuple[tuple[str, str], ...]:
    if not dataclasses.is_dataclass(cls):
        return ()
    names = {f.name for f in dataclasses.fields(cls)}
    found = [(n, p) for n, p in {**FIELDS, **LIST_FIELDS}.items() if n in names]
    if "subject" in names and cls.__name__ in _TOKEN_SUBJECT_EVENTS:
        found.append(("subject", ""))
    return tuple(found)


_TOKEN_SUBJECT_EVENTS = frozenset({"TokenBlocked", "TokenUnblocked"})
"""Events whose subject a person types (an operator blocking a token); the fraud processor's
own outputs already carry the subjects it read, pseudonyms included."""
