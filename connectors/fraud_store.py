"""The fraud projection in PostgreSQL (migration 032): scores, alerts, blocks and their
history, written by the fraud projector and read by ``evledger fraud``, the finance API and the
settlement connector (a blocked token, a payment under review)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from ledger import events as ev
from ledger.errors import LedgerError
from ledger.pseudonyms import Pseudonymizer

Conn = psycopg.Connection[Any]


class UnknownFraudSubject(LedgerError):
    """Nothing was ever scored, alerted or blocked for this subject in this network."""

    code = "UNKNOWN_FRAUD_SUBJECT"


def record_score(conn: Conn, e: ev.FraudScored) -> None:
    contributions = [
        {"rule": c.rule, "weight": c.weight, "strength": c.strength,
         "evidence": json.loads(c.evidence)}
        for c in e.contributions
    ]  # fmt: skip
    conn.execute(
        "INSERT INTO fraud_scores (event_id, network_id, subject, score, rules, contributions,"
        " threshold, input_event_id, scored_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (event_id) DO NOTHING",
        (e.envelope.event_id, e.envelope.network_id, e.subject, e.score, list(e.signals),
         json.dumps(contributions), e.threshold, e.input_event_id, e.envelope.occurred_at),
    )  # fmt: skip


def record_alert(conn: Conn, e: ev.FraudAlertRaised) -> None:
    conn.execute(
        "INSERT INTO fraud_alerts (event_id, network_id, subject, score, reason, action, rules,"
        " input_event_id, payment_id, session_id, raised_at, review_status)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (event_id) DO NOTHING",
        (e.envelope.event_id, e.envelope.network_id, e.subject, e.score, e.reason, e.action,
         list(e.rules), e.input_event_id, e.payment_id, e.session_id, e.envelope.occurred_at,
         "open" if e.action == "review" and e.payment_id else None),
    )  # fmt: skip


def record_block(conn: Conn, e: ev.TokenBlocked | ev.TokenUnblocked) -> None:
    """A block or unblock: into the history, and the subject's state follows the latest change
    by occurrence time (a late, older change does not undo a newer one)."""
    blocked = isinstance(e, ev.TokenBlocked)
    alert = e.alert_event_id if isinstance(e, ev.TokenBlocked) else None
    env = e.envelope
    conn.execute(
        "INSERT INTO fraud_block_history (event_id, network_id, subject, blocked, at, actor,"
        " reason, alert_event_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (event_id) DO NOTHING",
        (env.event_id, env.network_id, e.subject, blocked, env.occurred_at, e.actor, e.reason,
         alert),
    )  # fmt: skip
    conn.execute(
        "INSERT INTO fraud_blocks (network_id, subject, blocked, changed_at, actor, reason,"
        " alert_event_id) VALUES (%s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (network_id, subject) DO UPDATE SET blocked = excluded.blocked,"
        " changed_at = excluded.changed_at, actor = excluded.actor, reason = excluded.reason,"
        " alert_event_id = excluded.alert_event_id"
        " WHERE fraud_blocks.changed_at <= excluded.changed_at",
        (env.network_id, e.subject, blocked, env.occurred_at, e.actor, e.reason, alert),
    )


def record_review_cleared(conn: Conn, e: ev.FraudReviewCleared) -> None:
    conn.execute(
        "UPDATE fraud_alerts SET review_status = 'cleared', cleared_by = %s,"
        " cleared_reason = %s, cleared_at = %s"
        " WHERE network_id = %s AND payment_id = %s AND review_status = 'open'",
        (e.actor, e.reason, e.envelope.occurred_at, e.envelope.network_id, e.payment_id),
    )


@dataclass(frozen=True)
class Block:
    subject: str
    changed_at: datetime
    actor: str
    reason: str
    alert_event_id: str | None


def blocked(conn: Conn, network_id: str, subjects: list[str]) -> Block | None:
    """The first of ``subjects`` blocked in ``network_id``, if any."""
    row = conn.execute(
        "SELECT subject, changed_at, actor, reason, alert_event_id::text FROM fraud_blocks"
        " WHERE network_id = %s AND subject = ANY(%s) AND blocked ORDER BY changed_at LIMIT 1",
        (network_id, subjects),
    ).fetchone()
    return Block(*row) if row else None


def open_review(conn: Conn, network_id: str, payment_id: str) -> str | None:
    """The open review alert holding ``payment_id``'s capture, if any (its event id)."""
    row = conn.execute(
        "SELECT event_id::text FROM fraud_alerts WHERE network_id = %s AND payment_id = %s"
        " AND review_status = 'open' ORDER BY raised_at LIMIT 1",
        (network_id, payment_id),
    ).fetchone()
    return str(row[0]) if row else None


ALERT_COLUMNS = (
    "event_id::text AS alert_id, network_id, subject, score::float8 AS score, action, rules,"
    " reason, payment_id, session_id, raised_at, review_status"
)


def alerts(
    conn: Conn,
    network_id: str | None = None,
    *,
    since: datetime | None = None,
    subject: str | None = None,
    alert_id: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Alerts, newest first, optionally of one network, since a time, for one subject or the
    one with ``alert_id``."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"SELECT {ALERT_COLUMNS} FROM fraud_alerts"  # nosec B608  # fixed column list
            " WHERE (%(n)s::text IS NULL OR network_id = %(n)s)"
            " AND (%(s)s::timestamptz IS NULL OR raised_at >= %(s)s)"
            " AND (%(subj)s::text IS NULL OR subject = %(subj)s)"
            " AND (%(a)s::text IS NULL OR event_id::text = %(a)s)"
            " ORDER BY raised_at DESC, event_id LIMIT %(l)s OFFSET %(o)s",
            {"n": network_id, "s": since, "subj": subject, "a": alert_id, "l": limit, "o": offset},
        ).fetchall()


def typed_subject_view(
    conn: Conn,
    network_id: str,
    subject: str,
    pseudonyms: Pseudonymizer | None,
    limit: int = 20,
) -> dict[str, Any]:
    """The view of a subject as a person typed it: a token is looked up under its pseudonym
    first, then as typed (records published before the front door pseudonymized it). Raises
    UnknownFraudSubject naming the first form looked up."""
    candidates = [subject] if pseudonyms is None else [pseudonyms.subject(network_id, subject)]
    candidates += [subject] if candidates[0] != subject else []
    for candidate in candidates:
        try:
            return subject_view(conn, network_id, candidate, limit)
        except UnknownFraudSubject:
            continue
    raise UnknownFraudSubject("nothing known about this subject", subject=candidates[0],
                              network_id=network_id)  # fmt: skip


def subject_view(conn: Conn, network_id: str, subject: str, limit: int = 20) -> dict[str, Any]:
    """A subject as the risk team looks at it: block state and history, alerts and the latest
    scores with every rule's evidence."""
    with conn.cursor(row_factory=dict_row) as cur:
        block = cur.execute(
            "SELECT blocked, changed_at, actor, reason, alert_event_id::text AS alert_id"
            " FROM fraud_blocks WHERE network_id = %s AND subject = %s",
            (network_id, subject),
        ).fetchone()
        history = cur.execute(
            "SELECT blocked, at, actor, reason FROM fraud_block_history"
            " WHERE network_id = %s AND subject = %s ORDER BY at",
            (network_id, subject),
        ).fetchall()
        scores = cur.execute(
            "SELECT event_id::text AS score_id, score::float8 AS score, contributions,"
            " input_event_id, scored_at FROM fraud_scores WHERE network_id = %s AND subject = %s"
            " ORDER BY scored_at DESC LIMIT %s",
            (network_id, subject, limit),
        ).fetchall()
    found = alerts(conn, network_id, subject=subject, limit=limit)
    if block is None and not history and not scores and not found:
        raise UnknownFraudSubject("nothing known about this subject", subject=subject,
                                  network_id=network_id)  # fmt: skip
    return {
        "network_id": network_id,
        "subject": subject,
        "block": block,
        "block_history": history,
        "alerts": found,
        "scores": scores,
    }


def held_captures(conn: Conn, payment_id: str) -> list[bytes]:
    """The original bytes of the captures of ``payment_id`` the settlement connector held for
    review (its FRAUD_REVIEW_HOLD rejections, whose detail names the payment first)."""
    found = conn.execute(
        "SELECT original_value FROM rejections WHERE reason_code = 'FRAUD_REVIEW_HOLD'"
        " AND detail LIKE %s AND original_value IS NOT NULL ORDER BY rejected_at",
        (f"capture of {payment_id} held:%",),
    ).fetchall()
    return [bytes(r[0]) for r in found]
