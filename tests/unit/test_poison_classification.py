"""Which failures retry the batch and which isolate a record (processors.base.is_retriable).

The defect: every psycopg ``OperationalError`` was retried, and PostgreSQL reports a program
limit (an index row too large for a 10,000-character id, SQLSTATE 54000) as one, so one record
stopped its partition for ever."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors

from connectors.kafka import Consumed
from ledger.envelope import Envelope, Source
from ledger.errors import InfrastructureError, ValidationError
from ledger.events import PaymentVoided
from processors.base import is_retriable, poison_reason


@pytest.mark.parametrize(
    "error",
    [
        errors.ProgramLimitExceeded,  # 54000: index row size exceeds the maximum
        errors.StringDataRightTruncation,  # 22001
        errors.NumericValueOutOfRange,  # 22003
        errors.CharacterNotInRepertoire,  # 22021
        errors.UntranslatableCharacter,  # 22P05
        errors.UniqueViolation,  # 23505
        errors.CheckViolation,  # 23514
        errors.FeatureNotSupported,  # 0A000
    ],
)
def test_content_errors_isolate_the_record(error: type[psycopg.Error]) -> None:
    assert not is_retriable(error())


@pytest.mark.parametrize(
    "error",
    [
        errors.AdminShutdown,  # 57P01
        errors.QueryCanceled,  # 57014 (statement timeout)
        errors.SerializationFailure,  # 40001
        errors.DeadlockDetected,  # 40P01
        errors.ConnectionFailure,  # 08006
        errors.TooManyConnections,  # 53300
        errors.DiskFull,  # 53100
        errors.InternalError_,  # XX000
        psycopg.InterfaceError,
    ],
)
def test_server_and_connection_failures_retry_the_batch(error: type[psycopg.Error]) -> None:
    assert is_retriable(error())


def test_an_operational_error_without_a_server_answer_retries() -> None:
    assert is_retriable(psycopg.OperationalError("server closed the connection unexpectedly"))


def test_ledger_errors_say_themselves_whether_to_retry() -> None:
    assert is_retriable(InfrastructureError("registry down", retriable=True))
    assert not is_retriable(InfrastructureError("bad configuration", retriable=False))
    assert not is_retriable(ValidationError("bad"))
    assert not is_retriable(KeyError("lines"))


def record() -> Consumed:
    event = PaymentVoided(Envelope.new("net", Source.psp), "pay-" + "7" * 300)
    return Consumed("payments.events", 2, 41, b"pay-7", b"...", event)


def test_a_database_refusal_is_reported_without_the_servers_text() -> None:
    error = errors.CharacterNotInRepertoire(
        'invalid byte sequence for encoding "UTF8": 0x00\nCONTEXT: COPY payments, line 1'
    )
    code, detail = poison_reason(record(), error)
    assert code == "VALUE_NOT_STORABLE"
    assert "character not in repertoire (SQLSTATE 22021" in detail
    assert "COPY payments" not in detail and "0x00" not in detail
    assert "PaymentVoided" in detail and "key='pay-7'" in detail
    assert "payment_id (304 characters)" in detail


def test_other_failures_name_the_exception_and_the_record() -> None:
    code, detail = poison_reason(record(), KeyError("lines"))
    assert code == "UNPROCESSABLE"
    assert "KeyError" in detail and "event_id=" in detail and "traceback" in detail
