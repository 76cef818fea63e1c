"""The chaos checker catches planted bugs, naming the invariant they break.

Each test is a short chaos run on the running stack (kills of every kind of process, provider
timeouts and outages, duplicates, reordered and malformed input; no broker or database faults,
which ``make chaos`` adds on a stack of its own) with one bug planted by ``chaos.planted``. The
clean run is ``make chaos`` (CI runs seed 1); its reports are in ``chaos/reports/``.
"""

from __future__ import annotations

import pytest

from chaos.run import ChaosRun, Options
from connectors.settings import Settings


def short_run(stack: Settings, plant: str, seed: int) -> list[str]:
    options = Options(seed=seed, seconds=15, own_stack=False, plant=plant, keep_failed=False)
    outcome = ChaosRun(options, stack).run()
    assert outcome.sessions == 30
    return outcome.failed


@pytest.mark.timeout(300)
def test_a_projector_that_commits_offsets_before_effects_is_caught(stack: Settings) -> None:
    failed = short_run(stack, "commit-before-effects", seed=11)
    assert "offsets-accounted" in failed


@pytest.mark.timeout(300)
def test_a_connector_that_retries_a_capture_with_a_fresh_key_is_caught(stack: Settings) -> None:
    failed = short_run(stack, "fresh-capture-key", seed=12)
    assert "captures-booked-once" in failed
    assert "provider-equals-clearing" in failed
