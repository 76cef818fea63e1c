"""Why a record could not be decoded; each code is stored with the rejected record."""

from __future__ import annotations

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
