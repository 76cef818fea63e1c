"""Shared fixtures. Integration tests run against the real stack, never a mock broker."""

from __future__ import annotations

import pytest

from connectors.settings import Settings


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings.from_env()


@pytest.fixture(scope="session")
def stack(settings: Settings) -> Settings:
    """The real local stack: reused when running, started (idempotently) otherwise.

    Never skipped: a missing Java, Maven or service fails the run with the reason."""
    from devstack.stack import Stack

    Stack(settings).up(report=lambda line: print(f"[stack] {line}"))
    return settings


@pytest.fixture(scope="session")
def app(stack: Settings):  # type: ignore[no-untyped-def]
    from entrypoints.bootstrap import bootstrap

    return bootstrap(stack)
