"""Shared fixtures. Integration tests run against the real stack, never a mock broker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connectors.settings import Settings


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings.from_env()


@pytest.fixture(scope="session")
def stack(settings: Settings) -> Iterator[Settings]:
    """The real stack. With a Docker engine (``EVLEDGER_STACK=docker``, or ``auto`` when
    ``docker info`` answers): disposable containers for this session (``devstack.containers``,
    testcontainers). Otherwise (CI here) the local processes: reused when running, started
    (idempotently) otherwise.

    Never skipped: a missing Java, Maven, engine or service fails the run with the reason."""
    from devstack import containers
    from devstack.stack import Stack

    def report(line: str) -> None:
        print(f"[stack] {line}")

    if containers.wanted(settings):
        disposable = containers.ContainerStack(settings)
        yield disposable.start(report=report)
        disposable.stop()
        return
    Stack(settings).up(report=report)
    yield settings


@pytest.fixture(scope="session")
def app(stack: Settings):  # type: ignore[no-untyped-def]
    from entrypoints.bootstrap import bootstrap

    return bootstrap(stack)
