"""The batch fraud scorer: the fraud rules (``ledger.fraud.scorer``) on the exactly-once loop
every evledger processor shares (``processors.base``), for when the faust app cannot keep up
(docs/fraud.md, "The batch scorer").

One stage instead of faust's two. Per batch of records (payments, sessions, CDRs, in log order):

1. the facts the batch needs (the token and card of the payments its refunds and disputes
   name, the token of the sessions it stops) are read from PostgreSQL, each record observed;
2. the states of every subject the observations concern are locked (``FOR UPDATE``, in subject
   order, a row inserted first for a new subject so that two scorers meet on it) and read, but
   only those this scorer did not write last: it keeps the states it wrote in memory, tagged
   with the random version it wrote, and a row whose version differs (another scorer wrote it,
   or its own write rolled back) is read again;
3. each observation is scored per subject; the outputs (FraudScored, FraudAlertRaised and the
   policy's TokenBlocked and VoidRequested) go to the outbox, and the changed states and facts
   are written, in the transaction that stores the offsets.

So an input is scored once and its outputs emitted once, whatever crashes; the output ids are
still derived from the input, as the faust app's are. A subject's state is written once per
batch, not once per observation (the faust app writes the whole state to its changelog on every
observation, which is most of its cost).
"""

from __future__ import annotations

import secrets
from collections.abc import Collection, Sequence
from typing import Any

import orjson
import psycopg

from connectors import postgres
from connectors.kafka import Consumed
from ledger import events as ev
from ledger.fraud.engine import SubjectState
from ledger.fraud.intake import Lookup
from ledger.fraud.observations import subjects_of
from ledger.fraud.policy import Policies
from ledger.fraud.scorer import Memory, judge, observe
from processors.base import Effects, PostgresProcessor, Wiring
from schemas.topics import TOPIC_OF

Conn = psycopg.Connection[Any]
GROUP = "evledger-fraud-batch"
TOPICS = ("payments.events", "sessions.events", "billing.events")
CACHED = 200_000
"""States kept in memory at most (then the least recently written are dropped, and read again
when next needed)."""


class FraudBatchHandler:
    """Scores a batch of records (a ``processors.base`` handler); one per scorer process."""

    def __init__(self, policies: Policies, places: Lookup, *, topic_prefix: str = "") -> None:
        """``topic_prefix``: emit to ``<prefix><topic>`` (an evaluation's own ``bench.``
        topics); empty in production."""
        self.policies = policies
        self.places = places
        self.prefix = topic_prefix
        self._written: dict[str, tuple[int, SubjectState]] = {}
        """subject -> (version, state) as this scorer last wrote it."""

    def handle(self, tx: Effects, records: Sequence[Consumed]) -> None:
        conn = tx.conn
        memory = Memory()
        refunds = {r.event.payment_id for r in records
                   if isinstance(r.event, ev.PaymentRefunded | ev.DisputeOpened)}  # fmt: skip
        stops = {r.event.session_id for r in records if isinstance(r.event, ev.SessionStopped)}
        memory.payments.update(_payment_facts(conn, refunds))
        memory.sessions.update(_session_tokens(conn, stops))
        observed = [o for r in records if (o := observe(r.event, memory, self.places))]
        subjects = sorted({s for o in observed for s in subjects_of(o)})
        memory.states.update(self._states(conn, subjects))
        for obs in observed:
            for event in judge(obs, memory, self.policies):
                tx.emit(event, topic=self.prefix + TOPIC_OF[type(event)] if self.prefix else None)
        self._store(conn, memory)

    def _states(self, conn: Conn, subjects: list[str]) -> dict[str, SubjectState]:
        """Lock the subjects' rows (inserted first for new subjects) and return their states."""
        if not subjects:
            return {}
        names = postgres.array_literal(subjects)
        conn.execute(
            "INSERT INTO fraud_subject_states (subject, version, state)"
            " SELECT s, 0, '' FROM unnest(%s::text[]) AS s ORDER BY s ON CONFLICT DO NOTHING",
            (names,),
        )
        versions = conn.execute(
            "SELECT subject, version FROM fraud_subject_states WHERE subject = ANY(%s::text[])"
            " ORDER BY subject FOR UPDATE",
            (names,),
        ).fetchall()
        states: dict[str, SubjectState] = {}
        stale = []
        for subject, version in versions:
            if version == 0:
                continue  # a new subject: no state yet
            known = self._written.get(subject)
            if known is not None and known[0] == version:
                states[subject] = known[1]
            else:
                stale.append(subject)
        if stale:
            rows = conn.execute(
                "SELECT subject, state FROM fraud_subject_states WHERE subject = ANY(%s::text[])",
                (postgres.array_literal(stale),),
            ).fetchall()
            for subject, body in rows:
                states[subject] = SubjectState.from_json(orjson.loads(body))
        return states

    def _store(self, conn: Conn, memory: Memory) -> None:
        changed = sorted(memory.states_changed)
        if changed:
            versions = [secrets.randbits(62) + 1 for _ in changed]
            bodies = [orjson.dumps(memory.states[s].to_json()) for s in changed]
            conn.execute(
                "UPDATE fraud_subject_states f SET version = x.v, state = x.b, updated_at = now()"
                " FROM unnest(%s::text[], %s::bigint[], %s::bytea[]) AS x(subject, v, b)"
                " WHERE f.subject = x.subject",
                (postgres.array_literal(changed), versions, bodies),
            )
            for subject, version in zip(changed, versions, strict=True):
                self._written.pop(subject, None)  # to the end: the most recently written
                self._written[subject] = (version, memory.states[subject])
                if len(self._written) > CACHED:
                    del self._written[next(iter(self._written))]
        if memory.payments_changed:
            ids = sorted(memory.payments_changed)
            conn.execute(
                "INSERT INTO fraud_payment_facts (payment_id, facts)"
                " SELECT p, f::jsonb FROM unnest(%s::text[], %s::text[]) AS x(p, f)"
                " ON CONFLICT (payment_id) DO UPDATE SET facts = excluded.facts",
                (postgres.array_literal(ids),
                 postgres.array_literal(orjson.dumps(memory.payments[p]).decode() for p in ids)),
            )  # fmt: skip
        if memory.sessions_changed:
            ids = sorted(memory.sessions_changed)
            conn.execute(
                "INSERT INTO fraud_session_tokens (session_id, token_uid)"
                " SELECT * FROM unnest(%s::text[], %s::text[])"
                " ON CONFLICT (session_id) DO UPDATE SET token_uid = excluded.token_uid",
                (postgres.array_literal(ids),
                 postgres.array_literal(memory.sessions[s] for s in ids)),
            )  # fmt: skip
        memory.stored()


def _payment_facts(conn: Conn, payment_ids: Collection[str]) -> dict[str, dict[str, Any]]:
    if not payment_ids:
        return {}
    rows = conn.execute(
        "SELECT payment_id, facts FROM fraud_payment_facts WHERE payment_id = ANY(%s::text[])",
        (postgres.array_literal(sorted(payment_ids)),),
    ).fetchall()
    return {p: f for p, f in rows}


def _session_tokens(conn: Conn, session_ids: Collection[str]) -> dict[str, str]:
    if not session_ids:
        return {}
    rows = conn.execute(
        "SELECT session_id, token_uid FROM fraud_session_tokens WHERE session_id = ANY(%s::text[])",
        (postgres.array_literal(sorted(session_ids)),),
    ).fetchall()
    return {s: t for s, t in rows}


def build_fraud_batch_processor(
    app: Wiring,
    policies: Policies,
    places: Lookup,
    *,
    group: str = GROUP,
    database_url: str | None = None,
    batch_size: int = 2000,
    topic_prefix: str = "",
) -> PostgresProcessor:
    """A PostgresProcessor running the batch fraud scorer for ``group`` into ``database_url``
    (default: the app's database), migrated first. ``topic_prefix``: read and write
    ``<prefix><topic>`` (an evaluation's own ``bench.`` topics)."""
    url = database_url or app.database_url
    postgres.migrate(url)
    handler = FraudBatchHandler(policies, places, topic_prefix=topic_prefix)
    return PostgresProcessor(app, handler, group, [topic_prefix + t for t in TOPICS],
                             batch_size=batch_size, database_url=url)  # fmt: skip
