"""Signed checkpoints of the journal's hash chains: what an auditor keeps outside the database.

A checkpoint names the head of every chain (topic, partition, seq, hash) and the journal's entry
count at one moment, in a canonical form (compact JSON, sorted keys, heads in chain order), and
is signed with Ed25519 (``connectors.signing``). Whoever holds the public key can later prove
that the journal still passes through every head: a journal edited and its chain recomputed
"consistently" after the checkpoint no longer has the signed hash at the signed place
(``check_heads``). Pure: nothing is signed, read or written here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime


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
