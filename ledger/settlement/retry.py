"""When to try a provider call again, and how long to wait first.

Exponential backoff with *full jitter* (AWS Architecture Blog, "Exponential Backoff and Jitter"):
the wait after failed attempt ``n`` is uniform in
``[0, min(max_delay, base_delay * multiplier ** (n - 1))]``.
A ``Retry-After`` the provider sent is honoured as a lower bound when it is not absurd, as
stripe-python does. Only errors that say ``retriable = True`` (``LedgerError`` and every provider
error) are retried; anything else, a decline included, is raised at once.

The caller creates the idempotency key *before* the first attempt so that every retry resends it.
Sleeping and randomness are injected, so the policy is deterministic under a seeded ``Random``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from ledger.errors import ValidationError

T = TypeVar("T")


def is_retriable(error: BaseException) -> bool:
    """True when the error says it may succeed if tried again (``retriable`` attribute)."""
    return getattr(error, "retriable", False) is True


def retry_after_of(error: BaseException) -> float | None:
    """Seconds the provider asked us to wait (``retry_after`` attribute), when it said so."""
    value = getattr(error, "retry_after", None)
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many times to try, and the backoff between tries (seconds)."""

    max_attempts: int = 5
    base_delay: float = 0.25
    multiplier: float = 2.0
    max_delay: float = 30.0
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValidationError("max_attempts must be at least 1", max_attempts=self.max_attempts)
        if self.base_delay < 0 or self.max_delay < 0 or self.multiplier < 1:
            raise ValidationError("delays must be >= 0 and multiplier >= 1")

    def ceiling(self, attempt: int) -> float:
        """Upper bound of the jittered wait after failed attempt number ``attempt`` (1-based)."""
        return float(min(self.max_delay, self.base_delay * self.multiplier ** (attempt - 1)))

    def delay(self, attempt: int, error: BaseException, rng: random.Random) -> float | None:
        """Seconds to wait before the next attempt, or None when the error is final.

        ``attempt`` is the number of the attempt that just failed (1-based).
        """
        if attempt >= self.max_attempts or not is_retriable(error):
            return None
        jittered = rng.uniform(0.0, self.ceiling(attempt))
        retry_after = retry_after_of(error)
        if retry_after is not None and retry_after <= self.max_retry_after:
            return max(jittered, retry_after)
        return jittered


def call_with_retries(
    operation: Callable[[], T],
    policy: RetryPolicy,
    *,
    rng: random.Random,
    sleep: Callable[[float], None],
    on_retry: Callable[[int, BaseException, float], None] | None = None,
) -> T:
    """Run ``operation`` until it succeeds, raises a non-retriable error or attempts run out.

    Raises the last error unchanged. ``on_retry(attempt, error, delay)`` is called before each
    wait (for logs and circuit-breaker bookkeeping).
    """
    attempt = 1
    while True:
        try:
            return operation()
        except Exception as error:
            wait = policy.delay(attempt, error, rng)
            if wait is None:
                raise
            if on_retry is not None:
                on_retry(attempt, error, wait)
            sleep(wait)
            attempt += 1
