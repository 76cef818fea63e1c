"""SQL of the settlement connector: the provider-attempt log and reconciliation results.

``AttemptStore`` writes on its **own autocommit connection**: every method has committed when it
returns, whatever the processor's batch transaction does later. That is what lets the attempt
row exist *before* the provider call (docs/settlement.md) and the provider's answer
survive a batch that rolls back. The few writes that must share the batch transaction (marking an
outcome as emitted) take that transaction's connection explicitly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from connectors import postgres
from connectors.providers.base import Action
from ledger.dimensions import Dimension
from ledger.envelope import Envelope, Source
from ledger.events import (
    AuthorizeRequested,
    CaptureRequested,
    RefundRequested,
    RevenueLine,
    VoidRequested,
)
from ledger.money import Money
from ledger.settlement.reconciliation import LedgerRecord, LineType, ReconciliationReport

Conn = psycopg.Connection[Any]


class AttemptStatus(StrEnum):
    PENDING = "pending"  # persisted before the call: the call may have happened
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    IN_DOUBT = "in_doubt"  # retries ran out without a definite answer; the resolver re-asks

    @property
    def final(self) -> bool:
        return self in (AttemptStatus.SUCCEEDED, AttemptStatus.FAILED)


@dataclass(frozen=True, slots=True)
class Attempt:
    """One instruction's attempt row."""

    idempotency_key: str
    command_event_id: str
    payment_id: str
    provider: str
    action: Action
    request: dict[str, Any]
    status: AttemptStatus
    result: dict[str, Any] | None
    reason_code: str | None
    detail: str | None
    routing: list[dict[str, Any]]
    tries: int
    provider_reference: str | None
    outcome_reference: str | None
    emitted: bool
    updated_at: datetime


def _attempt(row: dict[str, Any]) -> Attempt:
    return Attempt(
        idempotency_key=row["idempotency_key"],
        command_event_id=row["command_event_id"],
        payment_id=row["payment_id"],
        provider=row["provider"],
        action=Action(row["action"]),
        request=row["request"],
        status=AttemptStatus(row["status"]),
        result=row["result"],
        reason_code=row["reason_code"],
        detail=row["detail"],
        routing=list(row["routing"] or []),
        tries=row["tries"],
        provider_reference=row["provider_reference"],
        outcome_reference=row["outcome_reference"],
        emitted=row["emitted_at"] is not None,
        updated_at=row["updated_at"],
    )


_COLUMNS = (
    "idempotency_key, command_event_id, payment_id, provider, action, request, status, result,"
    " reason_code, detail, routing, tries, provider_reference, outcome_reference, emitted_at,"
    " updated_at"
)


def insert_attempt(
    conn: Conn,
    key: str,
    *,
    command_event_id: str,
    payment_id: str,
    provider: str,
    action: Action,
    request: dict[str, Any],
    amount: Money,
    provider_reference: str | None = None,
    routing: list[dict[str, Any]] | None = None,
) -> None:
    """Write an instruction's attempt row (pending) unless ``key`` has one."""
    conn.execute(
        "INSERT INTO provider_attempts (idempotency_key, command_event_id, payment_id,"
        " provider, action, request, provider_reference, amount_minor, currency, routing)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
        (
            key,
            command_event_id,
            payment_id,
            provider,
            action.value,
            Jsonb(request),
            provider_reference,
            amount.amount_minor,
            amount.currency,
            Jsonb(routing or []),
        ),
    )


def holding_of(conn: Conn, payment_id: str) -> tuple[str, str] | None:
    """(provider, provider reference) of the authorization the connector placed for
    ``payment_id``, if it succeeded."""
    row = conn.execute(
        "SELECT provider, provider_reference FROM provider_attempts WHERE payment_id = %s"
        " AND action = 'authorize' AND status = 'succeeded' ORDER BY updated_at DESC LIMIT 1",
        (payment_id,),
    ).fetchone()
    return (str(row[0]), str(row[1])) if row else None


def authorization_status_of(conn: Conn, payment_id: str) -> AttemptStatus | None:
    """Status of the latest authorize attempt for ``payment_id``, if there was one."""
    row = conn.execute(
        "SELECT status FROM provider_attempts WHERE payment_id = %s AND action = 'authorize'"
        " ORDER BY updated_at DESC LIMIT 1",
        (payment_id,),
    ).fetchone()
    return AttemptStatus(row[0]) if row else None


class AttemptStore:
    """The provider-attempt log (table ``provider_attempts``)."""

    def __init__(self, conn: Conn) -> None:
        if not conn.autocommit:
            raise ValueError("the attempt log needs an autocommit connection")
        self.conn = conn

    @classmethod
    def connect(cls, url: str) -> AttemptStore:
        return cls(postgres.connect(url, autocommit=True))

    def close(self) -> None:
        self.conn.close()

    def get(self, key: str) -> Attempt | None:
        with self.conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                f"SELECT {_COLUMNS} FROM provider_attempts WHERE idempotency_key = %s",  # nosec B608
                (key,),
            ).fetchone()
        return _attempt(row) if row else None

    def begin(
        self,
        key: str,
        *,
        command_event_id: str,
        payment_id: str,
        provider: str,
        action: Action,
        request: dict[str, Any],
        amount: Money,
        provider_reference: str | None = None,
        routing: dict[str, Any] | None = None,
    ) -> Attempt:
        """Persist the instruction before any call (committed on return); an existing row for
        ``key`` is returned unchanged."""
        insert_attempt(self.conn, key, command_event_id=command_event_id, payment_id=payment_id,
                       provider=provider, action=action, request=request, amount=amount,
                       provider_reference=provider_reference,
                       routing=[routing] if routing else [])  # fmt: skip
        attempt = self.get(key)
        assert attempt is not None
        return attempt

    def reroute(self, key: str, provider: str, routing: dict[str, Any]) -> None:
        """Fail over a pending authorization to ``provider`` before calling it. Allowed only
        while the row is pending: the previous provider answered definitely that it did nothing."""
        self.conn.execute(
            "UPDATE provider_attempts SET provider = %s, routing = routing || %s,"
            " updated_at = now() WHERE idempotency_key = %s AND status = 'pending'",
            (provider, Jsonb([routing]), key),
        )

    def tried(self, key: str, provider: str, outcome: str) -> None:
        """Count one call and what came of it (``ok`` or the error code)."""
        self.conn.execute(
            "UPDATE provider_attempts SET tries = tries + 1, history = history || %s,"
            " updated_at = now() WHERE idempotency_key = %s",
            (Jsonb([{"provider": provider, "outcome": outcome}]), key),
        )

    def finish(
        self,
        key: str,
        status: AttemptStatus,
        *,
        result: dict[str, Any] | None = None,
        reason_code: str | None = None,
        detail: str | None = None,
        provider_reference: str | None = None,
        outcome_reference: str | None = None,
        fee_minor: int | None = None,
        conn: Conn | None = None,
        emitted: bool = False,
    ) -> None:
        """Record the outcome. ``conn`` (default: the attempt log's own) lets the resolver write
        it in the same transaction as the outbox rows; ``emitted`` marks them written there."""
        (conn or self.conn).execute(
            "UPDATE provider_attempts SET status = %s, result = %s, reason_code = %s, detail = %s,"
            " provider_reference = COALESCE(%s, provider_reference),"
            " outcome_reference = COALESCE(%s, outcome_reference), fee_minor = %s,"
            " emitted_at = CASE WHEN %s THEN now() ELSE emitted_at END, updated_at = now()"
            " WHERE idempotency_key = %s",
            (
                status.value,
                Jsonb(result) if result is not None else None,
                reason_code,
                detail,
                provider_reference,
                outcome_reference,
                fee_minor,
                emitted,
                key,
            ),
        )

    def holding(self, payment_id: str) -> tuple[str, str] | None:
        """(provider, provider reference) of the authorization this connector placed."""
        return holding_of(self.conn, payment_id)

    def authorization_status(self, payment_id: str) -> AttemptStatus | None:
        """Status of the latest authorize attempt for ``payment_id``, if there was one."""
        return authorization_status_of(self.conn, payment_id)

    def unresolved(self, pending_for: timedelta, limit: int = 100) -> list[Attempt]:
        """In-doubt rows; pending rows untouched for ``pending_for`` (their process died mid-call
        and no redelivery picked them up); final rows that old whose events never reached the
        outbox (the same: a redelivery would have emitted them)."""
        with self.conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(
                f"SELECT {_COLUMNS} FROM provider_attempts WHERE status = 'in_doubt'"  # nosec B608  # SQL built from module constants; values are bound parameters
                " OR (updated_at < now() - %s AND (status = 'pending' OR emitted_at IS NULL))"
                " ORDER BY updated_at LIMIT %s",
                (pending_for, limit),
            ).fetchall()
        return [_attempt(row) for row in rows]

    def list(self, status: AttemptStatus | None = None, limit: int = 50) -> list[Attempt]:
        with self.conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(
                f"SELECT {_COLUMNS} FROM provider_attempts"  # nosec B608  # SQL built from module constants; values are bound parameters
                " WHERE %s::text IS NULL OR status = %s ORDER BY updated_at DESC LIMIT %s",
                (status, status, limit),
            ).fetchall()
        return [_attempt(row) for row in rows]


def mark_emitted(conn: Conn, key: str) -> None:
    """Inside the batch transaction: the outcome events of ``key`` are in the outbox."""
    conn.execute(
        "UPDATE provider_attempts SET emitted_at = now() WHERE idempotency_key = %s"
        " AND emitted_at IS NULL",
        (key,),
    )


# ---------------------------------------------------------------------------- reconciliation
def ledger_records(
    conn: Conn, provider: str, since: datetime | None, until: datetime | None
) -> list[LedgerRecord]:
    """Captures and refunds this connector carried out at ``provider``, as the ledger booked them
    (each succeeded attempt emitted exactly one PaymentCaptured / PaymentRefunded)."""
    rows = conn.execute(
        "SELECT action, outcome_reference, amount_minor, currency, fee_minor, payment_id"
        " FROM provider_attempts WHERE provider = %s AND status = 'succeeded'"
        " AND action IN ('capture', 'refund') AND outcome_reference IS NOT NULL"
        " AND (%s::timestamptz IS NULL OR updated_at >= %s)"
        " AND (%s::timestamptz IS NULL OR updated_at < %s) ORDER BY updated_at",
        (provider, since, since, until, until),
    ).fetchall()
    records = []
    for action, reference, amount, currency, fee, payment_id in rows:
        charge = action == Action.CAPTURE.value
        records.append(
            LedgerRecord(
                type=LineType.CHARGE if charge else LineType.REFUND,
                provider_reference=str(reference),
                amount=Money(int(amount), str(currency)),
                fee=Money(int(fee), str(currency)) if fee is not None else None,
                payment_id=str(payment_id),
            )
        )
    return records


@dataclass(frozen=True, slots=True)
class ExceptionRow:
    id: int
    run_id: int
    provider: str
    category: str
    line_type: str
    provider_reference: str
    payment_id: str | None
    field: str | None
    provider_amount: str | None
    ledger_amount: str | None
    created_at: datetime


def record_run(
    conn: Conn,
    *,
    provider: str,
    source: str,
    since: datetime | None,
    until: datetime | None,
    report: ReconciliationReport,
) -> int:
    """Store a run and its exceptions in one transaction; returns the run id.

    Open exceptions of earlier runs for a key this run saw are closed: ``resolved`` when it
    matched now, ``superseded`` when this run reports it again."""
    with conn.transaction():
        row = conn.execute(
            "INSERT INTO reconciliation_runs (provider, source, ledger_source, since, until,"
            " matched, amount_mismatch, missing_in_ledger, missing_at_provider)"
            " VALUES (%s, %s, 'provider_attempts', %s, %s, %s, %s, %s, %s) RETURNING id",
            (
                provider,
                source,
                since,
                until,
                len(report.matched),
                len(report.amount_mismatch),
                len(report.missing_in_ledger),
                len(report.missing_at_provider),
            ),
        ).fetchone()
        assert row is not None
        run_id = int(row[0])
        matched = [(m.line.type.value, m.line.provider_reference) for m in report.matched]
        exceptions = list(_exception_rows(report))
        _close(conn, provider, matched, "resolved")
        _close(conn, provider, [(e[1], e[2]) for e in exceptions], "superseded")
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO reconciliation_exceptions (run_id, provider, category, line_type,"
                " provider_reference, payment_id, field, provider_amount, ledger_amount)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                [(run_id, provider, *e) for e in exceptions],
            )
    return run_id


def _close(conn: Conn, provider: str, keys: Sequence[tuple[str, str]], status: str) -> None:
    if not keys:
        return
    conn.execute(
        "UPDATE reconciliation_exceptions SET status = %s, closed_at = now()"
        " WHERE status = 'open' AND provider = %s AND (line_type, provider_reference) IN"
        " (SELECT * FROM unnest(%s::text[], %s::text[]))",
        (status, provider, [k[0] for k in keys], [k[1] for k in keys]),
    )


def _money(value: Money | None) -> str | None:
    return str(value) if value is not None else None


def _exception_rows(report: ReconciliationReport) -> Iterable[tuple[Any, ...]]:
    """(category, line_type, reference, payment_id, field, provider_amount, ledger_amount)."""
    for m in report.amount_mismatch:
        yield (
            "amount_mismatch",
            m.line.type.value,
            m.line.provider_reference,
            m.record.payment_id,
            m.field,
            _money(m.provider_value),
            _money(m.ledger_value),
        )
    for line in report.missing_in_ledger:
        yield (
            "missing_in_ledger",
            line.type.value,
            line.provider_reference,
            None,
            None,
            _money(line.amount),
            None,
        )
    for record in report.missing_at_provider:
        yield (
            "missing_at_provider",
            record.type.value,
            record.provider_reference,
            record.payment_id,
            None,
            None,
            _money(record.amount),
        )


def open_exceptions(conn: Conn, provider: str | None = None) -> list[ExceptionRow]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT id, run_id, provider, category, line_type, provider_reference, payment_id,"
            " field, provider_amount, ledger_amount, created_at FROM reconciliation_exceptions"
            " WHERE status = 'open' AND (%s::text IS NULL OR provider = %s) ORDER BY id",
            (provider, provider),
        ).fetchall()
    return [ExceptionRow(**row) for row in rows]


# ---------------------------------------------------------------------------- attempt JSON forms
Command = AuthorizeRequested | CaptureRequested | VoidRequested | RefundRequested
COMMAND_TYPES: tuple[type, ...] = (
    AuthorizeRequested,
    CaptureRequested,
    VoidRequested,
    RefundRequested,
)
_BY_NAME: dict[str, type] = {cls.__name__: cls for cls in COMMAND_TYPES}


def _json(value: Any) -> Any:
    if isinstance(value, Money):
        return {"amount_minor": value.amount_minor, "currency": value.currency}
    if isinstance(value, RevenueLine):
        return {
            "dimension": value.dimension.value,
            "amount_excl_vat": value.amount_excl_vat,
            "vat_amount": value.vat_amount,
            "vat_rate": value.vat_rate,
            "quantity": value.quantity,
        }
    if isinstance(value, list):
        return [_json(v) for v in value]
    return value


def snapshot_command(command: Command) -> dict[str, Any]:
    """The instruction as JSON (the attempt row's ``request``): enough to repeat the call and build
    the outcome events after a restart, without the topic."""
    env = command.envelope
    data: dict[str, Any] = {
        "type": type(command).__name__,
        "envelope": {
            "event_id": env.event_id,
            "occurred_at": env.occurred_at.isoformat(),
            "recorded_at": env.recorded_at.isoformat(),
            "source": env.source.value,
            "network_id": env.network_id,
            "correlation_id": env.correlation_id,
            "causation_id": env.causation_id,
        },
    }
    for f in dataclasses.fields(command):
        if f.name != "envelope":
            data[f.name] = _json(getattr(command, f.name))
    return data


def restore_command(data: dict[str, Any]) -> Command:
    """The inverse of ``snapshot_command``."""
    cls = _BY_NAME[data["type"]]
    env = data["envelope"]
    kwargs: dict[str, Any] = {
        "envelope": Envelope(
            event_id=env["event_id"],
            occurred_at=datetime.fromisoformat(env["occurred_at"]),
            recorded_at=datetime.fromisoformat(env["recorded_at"]),
            source=Source(env["source"]),
            network_id=env["network_id"],
            correlation_id=env["correlation_id"],
            causation_id=env["causation_id"],
        )
    }
    for f in dataclasses.fields(cls):
        if f.name == "envelope" or f.name not in data:
            continue
        value = data[f.name]
        if f.name in ("amount", "shortfall") and value is not None:
            value = Money(value["amount_minor"], value["currency"])
        elif f.name == "lines":
            value = [
                RevenueLine(
                    Dimension(v["dimension"]),
                    v["amount_excl_vat"],
                    v["vat_amount"],
                    v["vat_rate"],
                    v["quantity"],
                )
                for v in value
            ]
        kwargs[f.name] = value
    command: Command = cls(**kwargs)
    return command


def result_json(result: Any) -> dict[str, Any]:
    """A provider result dataclass as JSON (the attempt row's ``result``)."""
    data: dict[str, Any] = {}
    for f in dataclasses.fields(result):
        value = getattr(result, f.name)
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, StrEnum):
            value = value.value
        data[f.name] = _json(value)
    return data


def result_money(data: dict[str, Any] | None, name: str) -> Money | None:
    value = (data or {}).get(name)
    return Money(value["amount_minor"], value["currency"]) if value else None
