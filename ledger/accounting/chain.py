"""The journal's hash chain: tamper evidence without trusting the database.

Every journal entry is linked into the chain of the Kafka partition its event came from: its
hash is SHA-256 over the previous hash of that chain and the entry's canonical content: its row
exactly as the journal's COPY text writes it (every column: ids, event type, network, provider,
kind, the date in UTC, and each posting's account, currency and amount), which the projector
has at hand and a verifier rebuilds from the stored row (``connectors.ledger_store.copy_line``).
Editing, deleting, inserting or reordering an entry breaks the chain at that entry, which
``verify`` names. One chain per (topic, partition): the projector instance that owns a
partition is the only writer of its chain, so chains never contend (docs/audit.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

GENESIS = "0" * 64
"""The previous hash of a chain's first entry."""


def link(previous: str, content: bytes) -> str:
    """The entry's hash in its chain, after ``previous`` (hex): SHA-256 over the previous hash
    and the entry's canonical content."""
    return hashlib.sha256(previous.encode() + content).hexdigest()


@dataclass(frozen=True, slots=True)
class ChainLink:
    """What the chain recorded for one entry: its place and hash."""

    topic: str
    partition: int
    seq: int
    entry_id: str
    hash: str


@dataclass(frozen=True, slots=True)
class Break:
    """Where a chain stops holding, and why."""

    topic: str
    partition: int
    seq: int | None
    entry_id: str
    reason: str
    """EDITED (its content, or its place in the chain, is not what was hashed), DELETED (the
    chain names an entry the journal lacks), INSERTED (an entry no chain holds), GAP (the
    chain's sequence skips or repeats: a link removed or moved)."""

    def __str__(self) -> str:
        where = f"{self.topic}[{self.partition}]" + ("" if self.seq is None else f" #{self.seq}")
        return f"{self.reason}: journal entry {self.entry_id} ({where})"


def verify(
    links: Sequence[ChainLink], entries: dict[str, bytes], chained_ids: Iterable[str]
) -> list[Break]:
    """Recompute every chain (``links`` in (topic, partition, seq) order) over the canonical
    content of the stored ``entries`` (by id); the first break of each chain, and every stored
    entry no chain holds (``chained_ids`` are the ids the links name)."""
    breaks: list[Break] = []
    broken: set[tuple[str, int]] = set()
    previous: dict[tuple[str, int], tuple[int, str]] = {}
    for link_ in links:
        chain = (link_.topic, link_.partition)
        if chain in broken:
            continue
        seq, prev_hash = previous.get(chain, (0, GENESIS))
        entry = entries.get(link_.entry_id)
        reason = None
        if link_.seq != seq + 1:
            reason = "GAP"
        elif entry is None:
            reason = "DELETED"
        elif link(prev_hash, entry) != link_.hash:
            reason = "EDITED"
        if reason is not None:
            breaks.append(Break(link_.topic, link_.partition, link_.seq, link_.entry_id, reason))
            broken.add(chain)
            continue
        previous[chain] = (link_.seq, link_.hash)
    held = set(chained_ids)
    breaks += [
        Break("-", -1, None, entry_id, "INSERTED") for entry_id in sorted(set(entries) - held)
    ]
    return breaks
