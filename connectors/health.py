"""Liveness and readiness of an evledger process (docs/observability.md, "Health").

- **live**: the process is not stuck: each processor loop finished a step within
  ``stall_seconds`` (a batch, provider retries included, takes far less). A failing liveness
  probe means "restart me".
- **ready**: the process does its job: each consumer group has partitions assigned and their
  lag measured, and the database answers. A failing readiness probe means "not yet / not now"
  (starting, rebalancing, database down); nothing is restarted for it.

The HTTP apps (finance API, webhooks) have no loop: live while they answer, ready while their
database answers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import psycopg

from connectors.consumer_lag import LagMonitor

STALL_SECONDS = 300.0
"""A loop that has not finished a step for this long is stuck: settlement retries back off for
at most a few seconds per try, and the largest batches commit in seconds."""


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class Verdict:
    ok: bool
    checks: tuple[Check, ...]

    def body(self) -> dict[str, Any]:
        status = "ok" if self.ok else "failing"
        return {"status": status, "checks": [asdict(c) for c in self.checks]}


def database_check(url: str, timeout_seconds: int = 2) -> Callable[[], None]:
    """A probe that connects to ``url`` and runs ``SELECT 1``; raises when it cannot."""

    def probe() -> None:
        with psycopg.connect(url, autocommit=True, connect_timeout=timeout_seconds) as conn:
            conn.execute("SELECT 1")

    return probe


class ProcessHealth:
    """The verdicts of one process: its processors' lag monitors and its database probe."""

    def __init__(
        self,
        monitors: Sequence[LagMonitor] = (),
        database: Callable[[], None] | None = None,
        *,
        stall_seconds: float = STALL_SECONDS,
    ) -> None:
        self.monitors = list(monitors)
        self.database = database
        self.stall_seconds = stall_seconds

    def live(self) -> Verdict:
        checks = []
        for snap in (m.snapshot() for m in self.monitors):
            ok = snap.last_step_age < self.stall_seconds
            detail = f"last step {snap.last_step_age:.1f}s ago"
            checks.append(Check(f"loop:{snap.group}", ok, detail))
        return _verdict(checks)

    def ready(self) -> Verdict:
        checks = []
        for snap in (m.snapshot() for m in self.monitors):
            checks.append(
                Check(f"partitions:{snap.group}", snap.assigned > 0, f"{snap.assigned} assigned")
            )
            detail = f"{snap.lag} records behind" if snap.lag_known else "not measured yet"
            checks.append(Check(f"lag:{snap.group}", snap.lag_known, detail))
        if self.database is not None:
            try:
                self.database()
                checks.append(Check("database", True, "answers"))
            except Exception as exc:  # any failure to answer is "not ready", with its name
                checks.append(Check("database", False, f"{type(exc).__name__}"))
        return _verdict(checks)


def _verdict(checks: list[Check]) -> Verdict:
    return Verdict(all(c.ok for c in checks), tuple(checks))
