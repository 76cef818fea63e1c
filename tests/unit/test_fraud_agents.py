"""The fraud app's wiring with faust's test agents (no broker): the scoring agent reads a
subject's state from its table, scores, writes the state back and publishes the outputs; a
redelivered observation publishes the same events again (same ids) and changes no state."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from ledger.fraud.engine import SubjectState
from ledger.fraud.observations import Kind, Observation
from ledger.fraud.policy import Policies
from processors.fraud.app import FraudProcessor, faust_app


class Recorded:
    """The publisher's place: what the agent published, in order."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.flushes = 0

    def publish(self, event: Any, *, topic: str | None = None) -> None:
        self.events.append(event)

    def flush(self) -> None:
        self.flushes += 1


def burst() -> list[Observation]:
    return [
        Observation(Kind.DECLINED if k % 3 else Kind.AUTHORIZED, f"in-{k}", "net",
                    1_780_000_000.0 + 20 * k, station="S1", amount_minor=100, currency="EUR")
        for k in range(12)
    ]  # fmt: skip


def test_the_scoring_agent_keeps_state_in_its_table_and_publishes_once_per_input(
    tmp_path: Path,
) -> None:
    app = faust_app("localhost:1", 1, tmp_path, app_id="test-fraud-agents")
    app.conf.store = "memory://"
    published = Recorded()
    processor = FraudProcessor(app, None, published, Policies(), {}.get)  # type: ignore[arg-type]
    app.finalize()
    agent = app.agents["score"]

    async def scenario() -> None:
        async with agent.test_context() as scoring:
            for obs in burst():
                await scoring.put(obs.to_json(), key=b"station:S1")
            first = [e.envelope.event_id for e in published.events]
            await scoring.put(burst()[-1].to_json(), key=b"station:S1")  # redelivered
            assert [e.envelope.event_id for e in published.events][len(first) :] == first[-1:]

    asyncio.run(scenario())
    kinds = [type(e).__name__ for e in published.events]
    assert kinds.count("FraudAlertRaised") == 1 and "FraudScored" in kinds
    state = SubjectState.from_json(processor.subjects["station:S1"])
    assert len(state.history) == 12 and state.last_alert_at is not None
    assert processor.scored == 13 and published.flushes >= 1
