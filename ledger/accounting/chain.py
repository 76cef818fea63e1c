"""The journal's hash chain: tamper evidence without trusting the database.

Every journal entry is linked into the chain of the Kafka partition its event came from: its
hash is SHA-256 over the previous hash of that chain and the entry's canonical content (every
column the journal stores: ids, event type, network, provider, kind, date, and each posting).
Editing, deleting, inserting or reordering an entry breaks the chain at that entry, which
``verify`` names. One chain per (topic, partition): the projector instance that owns a
partition is the only writer of its chain, so chains never contend (docs/audit.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

GENESIS = "0" * 64
"""The previous hash of a chain's first entry."""


@dataclass(frozen=True, slots=True)
class ChainedEntry:
    """One journal entry as stored, in the form the chain hashes."""

    entry_id: str
    event_id: str
    event_type: str
    payment_id: str | None
    network_id: str
    provider: str | None
    kind: str
    occurred_at: datetime
    postings: tuple[tuple[str, str, int], ...]
    """(account, currency, amount in minor units) in stored order."""


def canonical(entry: ChainedEntry) -> bytes:
    """The entry's content as the chain hashes it: fields joined by US (0x1f), postings by RS
    (0x1e), the date in UTC ISO 8601 with microseconds, absent values empty."""
    postings = "\x1e".join(f"{a}\x1f{c}\x1f{n}" for a, c, n in entry.postings)
    at = entry.occurred_at.astimezone(UTC).isoformat(timespec="microseconds")
    fields = (
        entry.entry_id, entry.event_id, entry.event_type, entry.payment_id or "",
        entry.network_id, entry.provider or "", entry.kind, at, postings,
    )  # fmt: skip
    return "\x1f".join(fields).encode()


def link(previous: str, entry: ChainedEntry) -> str:
    """The entry's hash in its chain, after ``previous`` (hex)."""
    return hashlib.sha256(previous.encode() + canonical(entry)).hexdigest()


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
    links: Sequence[ChainLink], entries: dict[str, ChainedEntry], chained_ids: Iterable[str]
) -> list[Break]:
    """Recompute every chain (``links`` in (topic, partition, seq) order) over the stored
    ``entries`` (by id); the first break of each chain, and every stored entry no chain holds
    (``chained_ids`` are the ids the links name)."""
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
