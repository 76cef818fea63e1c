"""End-to-end tests run on the real stack too."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _needs_stack(stack: object) -> None:
    """Start (or reuse) the stack; never skip."""
