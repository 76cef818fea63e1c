"""Why a record could not be decoded; each code is stored with the rejected record."""

from __future__ import annotations

from typing import Any

from ledger.errors import ValidationError


class DecodeError(ValidationError):
    """A record's bytes cannot become an event. Never retriable: the record is rejected."""

    code = "UNDECODABLE"


class NotConfluentFramed(DecodeError):
    code = "UNDECODABLE"


class UnknownSchema(DecodeError):
    code = "UNKNOWN_SCHEMA_ID"


class SchemaMismatch(DecodeError):
    code = "SCHEMA_MISMATCH"


class UnexpectedEventType(DecodeError):
    code = "UNEXPECTED_EVENT_TYPE"


class InvalidValue(DecodeError):
    """The bytes decode, but a value cannot become its domain type (an unknown currency, a
    non-integer amount): the domain error's own code is kept, so the reason says what is wrong."""

    def __init__(self, message: str, *, code: str, **context: Any) -> None:
        super().__init__(message, **context)
        self.code = code
