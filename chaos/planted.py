"""Planted bugs: an evledger process with exactly-once broken on purpose, so a test can show that
the independent checker catches it and names the invariant (tests/integration/test_chaos.py).

``python -m chaos.planted BUG <evledger command...>`` runs the command with the bug in place:

- ``commit-before-effects``: the processor commits its offsets in one transaction and applies
  the records in a second; it crashes between the two on every third batch, as a process killed
  at that moment would. The records of those batches are lost.
- ``fresh-capture-key``: the settlement connector sends every capture, retries included, with a
  new idempotency key, so a retry after a timeout is not the same request to the provider.

Only chaos runs start these; nothing in evledger imports this module.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import sys
import uuid
from typing import Any


def commit_before_effects() -> None:
    from processors.base import PostgresProcessor

    original = PostgresProcessor._apply
    batches = itertools.count(1)

    def apply(self: PostgresProcessor, batch: list[Any]) -> Any:
        with self.checkpoint.batch() as checkpoint:
            floor = checkpoint.claim(self.group, {(r.topic, r.partition) for r in batch})
            fresh = [r for r in batch if r.offset >= floor.get((r.topic, r.partition), 0)]
            checkpoint.advance(self.group, {(r.topic, r.partition): r.offset + 1 for r in fresh})
        if fresh and next(batches) % 3 == 0:
            os._exit(75)  # between the offsets' commit and the effects
        self._unclaimed = lambda _checkpoint, _batch: fresh  # type: ignore[method-assign,assignment]
        return original(self, fresh)

    PostgresProcessor._apply = apply  # type: ignore[method-assign]


class _FreshCaptureKeys:
    """A provider whose captures always go out under a new idempotency key."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    @property
    def name(self) -> str:
        return str(self._inner.name)

    def capture(self, call: Any) -> Any:
        fresh = dataclasses.replace(call, idempotency_key=f"evl-capture-{uuid.uuid4()}")
        return self._inner.capture(fresh)


def fresh_capture_key() -> None:
    from connectors import provider_registry
    from entrypoints import cli_settlement

    load = provider_registry.load_providers

    def load_providers(*args: Any, **kwargs: Any) -> Any:
        registry = load(*args, **kwargs)
        registry.providers = {n: _FreshCaptureKeys(p) for n, p in registry.providers.items()}
        return registry

    cli_settlement.load_providers = load_providers  # type: ignore[attr-defined]


PLANTS = {"commit-before-effects": commit_before_effects, "fresh-capture-key": fresh_capture_key}


def main() -> None:
    bug = sys.argv.pop(1)
    PLANTS[bug]()
    from entrypoints.cli import main as cli

    cli()


if __name__ == "__main__":
    main()
