"""A chaos run's plan, drawn from its seed: which faults strike when, and what the traffic
injects. Pure and seeded: the same seed, length and layout give the same plan on any machine.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Fault:
    at: float
    """Seconds after the traffic began."""
    kind: str
    """kill (kill -9 a process), broker (kill -9 a Kafka node), postgres (immediate stop, as a
    crash), provider (a fault at the payment provider)."""
    target: str
    """The process (``ledger-2``), the broker node (``2``), or the provider fault
    (``timeout_after:capture``, ``outage:authorize``, ``latency``)."""
    down: float
    """Seconds until the restart (kill, broker, postgres) or how long latency lasts; the count of
    calls for the other provider faults."""

    def describe(self) -> str:
        if self.kind == "kill":
            return f"kill -9 {self.target}, restarted {self.down:.1f} s later"
        if self.kind == "broker":
            return f"kill -9 Kafka node {self.target}, restarted {self.down:.1f} s later"
        if self.kind == "postgres":
            return f"PostgreSQL stopped (immediate, no checkpoint), started {self.down:.1f} s later"
        if self.target == "latency":
            return f"provider answers 3 s late (past the 2 s client timeout) for {self.down:.0f} s"
        fault, operation = self.target.split(":")
        return f"provider {fault} on the next {int(self.down)} {operation} calls"


@dataclass(frozen=True)
class Injections:
    """Per session, the chance of each kind of bad input the traffic carries."""

    duplicate: float = 0.08
    """An event of the session published again, byte for byte (same id, same content)."""
    reordered: float = 0.15
    """The session's meter values shuffled, one of them after the stop (a late reading)."""
    conflicting: float = 0.03
    """An event's id reused with other content (EVENT_ID_CONFLICT at the consumer)."""
    malformed: float = 0.05
    """Bytes that are not an event (no wire header, an unknown schema id, broken Avro)."""


def plan(
    seed: int, seconds: float, processes: list[str], brokers: int, infrastructure: bool
) -> list[Fault]:
    """The faults of a run of ``seconds`` of traffic, in time order. Every kind of process is
    killed at least once; with ``infrastructure``, one Kafka node (or, with one node, the broker)
    and PostgreSQL are stopped too; the provider times out after applying captures, refuses
    authorizations and answers too late for a while."""
    rng = random.Random(seed)
    faults: list[Fault] = []
    kinds = sorted({p.rsplit("-", 1)[0] for p in processes})
    kills = max(1, int(seconds // 45))
    for kind in kinds:
        mine = [p for p in processes if p.rsplit("-", 1)[0] == kind]
        for _ in range(kills):
            at = rng.uniform(0.1, 0.85) * seconds
            faults.append(Fault(at, "kill", rng.choice(mine), rng.uniform(0.5, 4.0)))
    if infrastructure:
        node = rng.randrange(1, brokers + 1)
        down = rng.uniform(12.0, 20.0) if brokers > 1 else rng.uniform(4.0, 8.0)
        faults.append(Fault(rng.uniform(0.2, 0.45) * seconds, "broker", str(node), down))
        faults.append(Fault(rng.uniform(0.55, 0.8) * seconds, "postgres", "postgresql",
                            rng.uniform(2.0, 5.0)))  # fmt: skip
    faults.append(Fault(rng.uniform(0.1, 0.7) * seconds, "provider", "timeout_after:capture",
                        rng.randint(2, 4)))  # fmt: skip
    faults.append(Fault(rng.uniform(0.1, 0.7) * seconds, "provider", "outage:authorize",
                        rng.randint(2, 4)))  # fmt: skip
    faults.append(Fault(rng.uniform(0.1, 0.7) * seconds, "provider", "latency",
                        rng.uniform(3.0, 6.0)))  # fmt: skip
    return sorted(faults, key=lambda f: f.at)
