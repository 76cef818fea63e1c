"""The root of every error evledger raises on purpose.

Each error carries a stable ``code`` (a reason code a person can act on and that is stored with
rejections) and the ids needed to find the record it is about.
"""

from __future__ import annotations

from typing import Any


class LedgerError(Exception):
    """Root error. ``code`` is stable and machine-readable; ``context`` holds the ids involved."""

    code = "LEDGER_ERROR"
    retriable = False

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.context = context

    def __str__(self) -> str:
        if not self.context:
            return f"[{self.code}] {self.message}"
        ids = ", ".join(f"{k}={v}" for k, v in self.context.items())
        return f"[{self.code}] {self.message} ({ids})"


class ValidationError(LedgerError):
    """Input that breaks a business rule; never retriable."""

    code = "VALIDATION_ERROR"


class CurrencyMismatch(ValidationError):
    code = "CURRENCY_MISMATCH"


class UnknownCurrency(ValidationError):
    code = "UNKNOWN_CURRENCY"


class InfrastructureError(LedgerError):
    """A broker, registry, database or provider failed. ``retriable`` says whether to try again."""

    code = "INFRASTRUCTURE_ERROR"

    def __init__(self, message: str, *, retriable: bool, **context: Any) -> None:
        super().__init__(message, **context)
        self.retriable = retriable
