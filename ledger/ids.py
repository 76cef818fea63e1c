"""Deterministic ids: the same cause always yields the same id, so a retry, a redelivery or a
replay produces ids that downstream deduplicates instead of new facts.

Every id evledger derives is a UUIDv5 of a namespace and a name joined from its parts. The
namespaces and separators below are fixed forever: stored ids (journal entries, emitted events,
webhook facts) depend on them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass


@dataclass(frozen=True)
class IdScheme:
    """One family of derived ids: its UUIDv5 namespace and the separator between name parts."""

    namespace: uuid.UUID
    separator: str

    def derive(self, *parts: str) -> str:
        """The id of ``parts`` (for example a cause's event id and what it caused)."""
        return str(uuid.uuid5(self.namespace, self.separator.join(parts)))


JOURNAL_ENTRIES = IdScheme(uuid.UUID("5b0f6a52-3d0e-4c1e-9d53-6c0e2f3e7a10"), ":")
"""Journal entries: (event_id, entry kind). ``ledger.accounting.journal.entry_id_for`` computes
the same from the SHA-1 digest directly, for speed (a property test holds the two equal)."""
SETTLEMENT_OUTCOMES = IdScheme(uuid.UUID("0c6f2f0e-7d38-4a53-9a43-5be0c0d1f1a7"), ":")
"""Events the settlement connector emits for an instruction: (instruction event_id, kind)."""
PROVIDER_FACTS = IdScheme(uuid.UUID("5b0f9a52-6a43-4f0e-9d1c-6a8f0b8e2c11"), ":")
"""Facts normalized from provider webhooks: (provider, fact)."""
SESSION_EFFECTS = IdScheme(
    uuid.uuid5(uuid.NAMESPACE_URL, "https://evledger.io/processors/sessions"), "/"
)
"""What the sessions processor emits for a session event: (cause event_id, kind)."""
FRAUD_OUTPUTS = IdScheme(
    uuid.uuid5(uuid.NAMESPACE_URL, "https://evledger.io/processors/fraud"), "/"
)
"""What the fraud processor emits for an input event: (input event_id, subject, kind)."""
