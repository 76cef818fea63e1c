"""The independent checker: did a chaos run lose anything or count anything twice?

Separate code on purpose. It shares no posting, pricing or processing logic with evledger and
imports none of its packages: it reads the Kafka log with its own Avro decoding (the schema id in
each record's header, the schema from the registry, fastavro), the provider's own state over the
sandbox service's admin API, and the projections in PostgreSQL with its own SQL. What it knows
of evledger is the published contract: the tables' documented columns, the event fields in
docs/events.md and the chart of accounts in docs/accounting.md.

Invariants (each reported with its figures, and up to ten examples when it fails):

- ``offsets-accounted``: every offset each consumer group read since the run began is applied
  (its dedup mark points at it), a duplicate (the id was applied at another offset with the same
  content) or rejected (a row in ``rejections``); nothing else.
- ``groups-at-end``: each group's stored next offset is the end of each partition it reads (for
  the fraud workers, whose offsets faust keeps in Kafka: their committed offsets).
- ``sessions-billed-once``: every stopped session of the run that delivered energy has exactly
  one CDR on the log (one event id) and one in ``session_cdrs``; one that delivered none has no
  CDR and one void instruction.
- ``captures-once-at-provider``: every capture instruction was executed at the provider exactly
  once, for the instructed amount (or not at all when the connector reported it failed, or
  rejected the instruction with a reason), and the provider captured nothing not instructed.
- ``captures-booked-once``: every capture the provider made is booked once in the journal, the
  provider clearing debited with its amount and credited with its fee.
- ``trial-balance-zero``: the postings sum to zero in every currency and in every entry, and the
  balances table agrees with the postings.
- ``provider-equals-clearing``: what the provider owes (charges - fees - refunds - payouts) equals
  the ledger's ``assets:provider_clearing:<provider>`` balance.
- ``attempts-settled``: no provider attempt is left pending or in doubt.
- ``fraud-scored-once``: each input the fraud workers scored has one score per subject (one event
  id whatever the restarts), and each score is one row in ``fraud_scores``.
"""

from __future__ import annotations

import io
import json
import struct
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import fastavro
import httpx
import psycopg
from confluent_kafka import Consumer, TopicPartition

EXAMPLES = 10


@dataclass(frozen=True)
class Scope:
    """What the run covered and where its state is."""

    bootstrap_servers: str
    registry_url: str
    database_url: str
    provider_url: str
    provider: str
    network_id: str
    groups: dict[str, tuple[str, ...]]
    """Consumer group -> the topics it reads (offsets stored in PostgreSQL with the effects)."""
    starts: dict[tuple[str, int], int]
    """(topic, partition) -> the offset at which the run began."""
    kafka_groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Consumer group -> the topics it reads (offsets committed to Kafka: the fraud workers)."""


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    event_type: str | None
    body: dict[str, Any] | None
    """None: the bytes do not decode (no header, unknown schema, broken Avro)."""

    @property
    def event_id(self) -> str | None:
        envelope = (self.body or {}).get("envelope") or {}
        value = envelope.get("event_id")
        return str(value) if value is not None else None

    @property
    def network_id(self) -> str | None:
        envelope = (self.body or {}).get("envelope") or {}
        return envelope.get("network_id")


@dataclass
class Finding:
    invariant: str
    ok: bool
    figures: dict[str, int | str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    problem_count: int = 0

    def problem(self, text: str) -> None:
        self.ok = False
        self.problem_count += 1
        if len(self.problems) < EXAMPLES:
            self.problems.append(text)


class Decoder:
    """Confluent wire format (magic 0, 4-byte schema id, Avro body), schemas by id from the
    registry, decoded with fastavro."""

    def __init__(self, registry_url: str) -> None:
        self._http = httpx.Client(base_url=registry_url.rstrip("/"), timeout=30)
        self._schemas: dict[int, tuple[str, Any]] = {}

    def decode(self, value: bytes | None) -> tuple[str | None, dict[str, Any] | None]:
        if value is None or len(value) < 6 or value[0] != 0:
            return None, None
        (schema_id,) = struct.unpack(">I", value[1:5])
        try:
            name, schema = self._schema(schema_id)
            body = fastavro.schemaless_reader(io.BytesIO(value[5:]), schema, None)
        except Exception:  # any failure to decode is "does not decode", with no exception
            return None, None
        return name, body if isinstance(body, dict) else None

    def _schema(self, schema_id: int) -> tuple[str, Any]:
        if schema_id not in self._schemas:
            response = self._http.get(f"/schemas/ids/{schema_id}")
            response.raise_for_status()
            raw = json.loads(response.json()["schema"])
            self._schemas[schema_id] = (raw["name"], fastavro.parse_schema(raw))
        return self._schemas[schema_id]


def read_log(scope: Scope, topics: Iterable[str]) -> dict[str, list[Record]]:
    """Every record of ``topics`` from the run's start offsets to their ends, decoded."""
    wanted = set(topics)
    decoder = Decoder(scope.registry_url)
    consumer = Consumer({"bootstrap.servers": scope.bootstrap_servers,
                         "group.id": "chaos-checker", "enable.auto.commit": False,
                         "enable.partition.eof": False})  # fmt: skip
    out: dict[str, list[Record]] = {t: [] for t in wanted}
    try:
        parts, ends = [], {}
        for (topic, partition), start in scope.starts.items():
            if topic not in wanted:
                continue
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), 30)
            if high > start:
                parts.append(TopicPartition(topic, partition, start))
                ends[(topic, partition)] = high
        consumer.assign(parts)
        remaining = sum(ends[(p.topic, p.partition)] - p.offset for p in parts)
        while remaining > 0:
            batch = consumer.consume(5000, 5.0)
            if not batch:
                raise RuntimeError(f"the log stopped with {remaining} records unread")
            for message in batch:
                if message.error() is not None:
                    continue
                topic, partition = str(message.topic()), int(message.partition() or 0)
                offset = int(message.offset() or 0)
                if offset >= ends[(topic, partition)]:
                    continue
                name, body = decoder.decode(message.value())
                out[topic].append(Record(topic, partition, offset, name, body))
                remaining -= 1
    finally:
        consumer.close()
    return out


def ends_of(scope: Scope) -> dict[tuple[str, int], int]:
    consumer = Consumer({"bootstrap.servers": scope.bootstrap_servers, "group.id": "chaos-ends"})
    try:
        return {
            key: consumer.get_watermark_offsets(TopicPartition(*key), 30)[1] for key in scope.starts
        }
    finally:
        consumer.close()


def check(scope: Scope) -> list[Finding]:
    """Every invariant, in the order of the module docstring."""
    topics = {t for ts in scope.groups.values() for t in ts}
    topics |= {"sessions.events", "billing.events", "settlement.commands", "payments.events"}
    log = read_log(scope, topics)
    provider = httpx.get(f"{scope.provider_url.rstrip('/')}/admin/state", timeout=30).json()
    with psycopg.connect(scope.database_url, autocommit=True) as conn:
        return [
            offsets_accounted(scope, log, conn),
            groups_at_end(scope, conn),
            sessions_billed_once(scope, log, conn),
            captures_once_at_provider(scope, log, provider, conn),
            captures_booked_once(scope, provider, conn),
            trial_balance_zero(conn),
            provider_equals_clearing(scope, provider, conn),
            attempts_settled(conn),
            fraud_scored_once(scope, log, conn),
        ]


def offsets_accounted(
    scope: Scope, log: dict[str, list[Record]], conn: psycopg.Connection[Any]
) -> Finding:
    finding = Finding("offsets-accounted", True)
    outcomes: Counter[str] = Counter()
    for group, topics in scope.groups.items():
        rejected = {
            (t, p, o)
            for t, p, o in conn.execute(
                'SELECT topic, partition, "offset" FROM rejections WHERE consumer_group = %s',
                (group,),
            )
        }
        marks = {
            e: (t, p, o)
            for e, t, p, o in conn.execute(
                'SELECT event_id, topic, partition, "offset" FROM processed_events'
                " WHERE consumer_group = %s",
                (group,),
            )
        }
        at = {(r.topic, r.partition, r.offset): r for t in topics for r in log[t]}
        for position, record in sorted(at.items()):
            event_id = record.event_id
            if position in rejected:
                outcomes["rejected"] += 1
            elif event_id is not None and marks.get(event_id) == position:
                outcomes["applied"] += 1
            elif event_id is not None and event_id in marks:
                first = at.get(marks[event_id])
                if first is not None and first.body == record.body:
                    outcomes["duplicate"] += 1
                else:
                    finding.problem(f"{group}: {_where(position)} repeats event_id {event_id} "
                                    "with other content and was not rejected")  # fmt: skip
            else:
                what = f"{record.event_type or 'undecodable'}, {event_id}"
                finding.problem(f"{group}: {_where(position)} ({what}) was neither applied, "
                                "a duplicate nor rejected")  # fmt: skip
    finding.figures = {"records": sum(outcomes.values()) + finding.problem_count, **outcomes,
                       "unaccounted": finding.problem_count}  # fmt: skip
    return finding


def groups_at_end(scope: Scope, conn: psycopg.Connection[Any]) -> Finding:
    finding = Finding("groups-at-end", True)
    ends = ends_of(scope)
    stored = {
        (g, t, p): o
        for g, t, p, o in conn.execute(
            "SELECT consumer_group, topic, partition, next_offset FROM consumer_offsets"
        )
    }
    behind = 0
    for group, topics in scope.groups.items():
        for (topic, partition), end in ends.items():
            if topic not in topics or end <= scope.starts[(topic, partition)]:
                continue
            at = stored.get((group, topic, partition))
            if at != end:
                behind += end - (at or scope.starts[(topic, partition)])
                finding.problem(f"{group} stored {at} for {topic}[{partition}], log end {end}")
    for group, topics in scope.kafka_groups.items():
        consumer = Consumer({"bootstrap.servers": scope.bootstrap_servers, "group.id": group,
                             "enable.auto.commit": False})  # fmt: skip
        try:
            parts = [TopicPartition(t, p) for (t, p), end in ends.items()
                     if t in topics and end > scope.starts[(t, p)]]  # fmt: skip
            for tp in consumer.committed(parts, timeout=30) if parts else []:
                end = ends[(tp.topic, tp.partition)]
                if tp.offset < end:
                    behind += end - max(tp.offset, scope.starts[(tp.topic, tp.partition)])
                    finding.problem(f"{group} committed {tp.offset} for {tp.topic}"
                                    f"[{tp.partition}], log end {end}")  # fmt: skip
        finally:
            consumer.close()
    groups = len(scope.groups) + len(scope.kafka_groups)
    finding.figures = {"groups": groups, "records behind": behind}
    return finding


def sessions_billed_once(
    scope: Scope, log: dict[str, list[Record]], conn: psycopg.Connection[Any]
) -> Finding:
    """A session that delivered energy has one CDR; one that delivered none (its stop register
    is 0) has no CDR and one void instruction for its payment."""
    finding = Finding("sessions-billed-once", True)
    mine = [(r.event_type, r.body) for r in log["sessions.events"]
            if r.body is not None and r.network_id == scope.network_id]  # fmt: skip
    payment = {b["session_id"]: b.get("payment_id") for t, b in mine if t == "SessionStarted"}
    stopped = {b["session_id"]: b.get("meter_stop_wh") for t, b in mine if t == "SessionStopped"}
    cdrs: dict[str, set[str]] = defaultdict(set)
    for r in log["billing.events"]:
        if r.event_type == "CdrIssued" and r.body and r.network_id == scope.network_id:
            cdrs[r.body["session_id"]].add(r.event_id or "")
    voids: dict[str, set[str]] = defaultdict(set)
    for r in log["settlement.commands"]:
        if r.event_type == "VoidRequested" and r.body and r.network_id == scope.network_id:
            voids[r.body["payment_id"]].add(r.event_id or "")
    rows = Counter(
        s for (s,) in conn.execute("SELECT session_id FROM session_cdrs WHERE kind = 'issued'")
    )
    billed = voided = 0
    for session, register in sorted(stopped.items()):
        logged, stored = len(cdrs.get(session, ())), rows.get(session, 0)
        if register == 0:
            released = len(voids.get(payment.get(session) or "", ()))
            if logged or stored or released != 1:
                finding.problem(f"session {session} delivered no energy: {logged} CDRs on the "
                                f"log, {stored} stored, {released} void instructions")  # fmt: skip
            else:
                voided += 1
        elif logged != 1 or stored != 1:
            finding.problem(f"session {session}: {logged} CDRs on the log, {stored} stored")
        else:
            billed += 1
    for session in sorted(set(cdrs) - set(stopped)):
        finding.problem(f"session {session} was billed but never stopped")
    finding.figures = {"sessions stopped": len(stopped), "billed once": billed,
                       "no energy, voided once": voided}  # fmt: skip
    return finding


def _charges(provider: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Our payment id -> the provider's charge lines for it."""
    by_reference = {p["provider_reference"]: p["payment_id"] for p in provider["payments"]}
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in provider["lines"]:
        if line["type"] == "charge":
            out[by_reference.get(line["payment_reference"], "?")].append(line)
    return out


def captures_once_at_provider(
    scope: Scope, log: dict[str, list[Record]], provider: dict[str, Any],
    conn: psycopg.Connection[Any],
) -> Finding:  # fmt: skip
    finding = Finding("captures-once-at-provider", True)
    refused = {
        e
        for (e,) in conn.execute(
            "SELECT event_id FROM rejections WHERE topic = 'settlement.commands'"
            " AND event_id IS NOT NULL"
        )
    }
    instructed: dict[str, dict[str, int]] = defaultdict(dict)  # payment -> event id -> amount
    for r in log["settlement.commands"]:
        if r.event_type == "CaptureRequested" and r.body and r.network_id == scope.network_id:
            if r.event_id in refused:
                continue
            instructed[r.body["payment_id"]][r.event_id or ""] = int(
                r.body["amount"]["amount_minor"]
            )
    failed = {
        r.body["payment_id"]
        for r in log["payments.events"]
        if r.event_type == "CaptureFailed" and r.body and r.network_id == scope.network_id
    }
    charges = _charges(provider)
    for payment, by_id in sorted(instructed.items()):
        made = charges.get(payment, [])
        if len(by_id) > 1:
            finding.problem(f"payment {payment}: {len(by_id)} capture instructions")
        if not made and payment in failed:
            continue
        wanted = sorted(by_id.values())
        got = sorted(int(c["amount"]["amount_minor"]) for c in made)
        if got != wanted:
            finding.problem(f"payment {payment}: instructed {wanted}, provider captured {got}")
    for payment in sorted(set(charges) - set(instructed)):
        finding.problem(f"payment {payment}: captured at the provider without an instruction")
    finding.figures = {"instructions": sum(len(v) for v in instructed.values()),
                       "provider captures": sum(len(v) for v in charges.values()),
                       "failed as reported": len(failed & set(instructed)),
                       "refused with a reason": len(refused)}  # fmt: skip
    return finding


def captures_booked_once(
    scope: Scope, provider: dict[str, Any], conn: psycopg.Connection[Any]
) -> Finding:
    """Per payment: as many captures booked (distinct PaymentCaptured ids in the journal) as the
    provider made, the clearing debited with their amounts and credited with their fees."""
    finding = Finding("captures-booked-once", True)
    clearing = f"assets:provider_clearing:{scope.provider}"
    booked: dict[str, set[str]] = defaultdict(set)
    debited: Counter[str] = Counter()
    credited: Counter[str] = Counter()
    for payment, event_id, debit, credit in conn.execute(
        "SELECT e.payment_id, e.event_id,"
        " coalesce(sum(p.amount_minor) FILTER (WHERE p.account = %s AND p.amount_minor > 0), 0),"
        " coalesce(-sum(p.amount_minor) FILTER (WHERE p.account = %s AND p.amount_minor < 0), 0)"
        " FROM journal_entries e JOIN postings p USING (entry_id)"
        " WHERE e.event_type = 'PaymentCaptured' AND e.network_id = %s"
        " GROUP BY e.payment_id, e.event_id, e.entry_id",
        (clearing, clearing, scope.network_id),
    ):
        booked[payment].add(event_id)
        debited[payment] += int(debit)
        credited[payment] += int(credit)
    charges = _charges(provider)
    for payment in sorted(set(charges) | set(booked)):
        made = charges.get(payment, [])
        amount = sum(int(c["amount"]["amount_minor"]) for c in made)
        fees = sum(int(c["fee"]["amount_minor"]) for c in made if c.get("fee"))
        if len(booked.get(payment, ())) != len(made):
            finding.problem(f"payment {payment}: {len(made)} provider captures, "
                            f"{len(booked.get(payment, ()))} booked")  # fmt: skip
        elif (debited[payment], credited[payment]) != (amount, fees):
            ledger = f"clearing debited {debited[payment]} and credited {credited[payment]}"
            finding.problem(f"payment {payment}: {ledger}; the provider captured {amount}, "
                            f"fee {fees}")  # fmt: skip
    finding.figures = {"provider captures": sum(len(v) for v in charges.values()),
                       "booked": sum(len(v) for v in booked.values())}  # fmt: skip
    return finding


def trial_balance_zero(conn: psycopg.Connection[Any]) -> Finding:
    finding = Finding("trial-balance-zero", True)
    totals = conn.execute(
        "SELECT currency, sum(amount_minor), count(*) FROM postings GROUP BY currency"
    ).fetchall()
    for currency, total, _ in totals:
        if total != 0:
            finding.problem(f"{currency}: postings sum to {total}, not 0")
    for entry, currency, total in conn.execute(
        "SELECT entry_id, currency, sum(amount_minor) FROM postings"
        " GROUP BY entry_id, currency HAVING sum(amount_minor) <> 0"
    ):
        finding.problem(f"entry {entry} does not balance in {currency}: {total}")
    for account, currency, stored, summed in conn.execute(
        "SELECT b.account, b.currency, b.balance, coalesce(s.total, 0) FROM balances b"
        " LEFT JOIN (SELECT account, currency, sum(amount_minor) AS total FROM postings"
        " GROUP BY account, currency) s USING (account, currency)"
        " WHERE b.balance <> coalesce(s.total, 0)"
    ):
        finding.problem(f"balance {account} {currency} is {stored}, its postings sum to {summed}")
    finding.figures = {"postings": sum(int(n) for _, _, n in totals),
                       "currencies": len(totals)}  # fmt: skip
    return finding


def provider_equals_clearing(
    scope: Scope, provider: dict[str, Any], conn: psycopg.Connection[Any]
) -> Finding:
    finding = Finding("provider-equals-clearing", True)
    owed: Counter[str] = Counter()
    for line in provider["lines"]:
        amount = int(line["amount"]["amount_minor"])
        fee = int(line["fee"]["amount_minor"]) if line.get("fee") else 0
        sign = 1 if line["type"] == "charge" else -1
        owed[line["amount"]["currency"]] += sign * amount - fee
    clearing = f"assets:provider_clearing:{scope.provider}"
    ledger = Counter(
        {
            c: int(s)
            for c, s in conn.execute(
                "SELECT currency, sum(amount_minor) FROM postings WHERE account = %s"
                " GROUP BY currency",
                (clearing,),
            )
        }
    )
    for currency in sorted(set(owed) | set(ledger)):
        if owed[currency] != ledger[currency]:
            finding.problem(f"{currency}: the provider owes {owed[currency]}, {clearing} holds "
                            f"{ledger[currency]}")  # fmt: skip
    finding.figures = {f"provider {c}": v for c, v in sorted(owed.items())}
    finding.figures.update({f"ledger {c}": v for c, v in sorted(ledger.items())})
    return finding


def attempts_settled(conn: psycopg.Connection[Any]) -> Finding:
    finding = Finding("attempts-settled", True)
    counts = dict(
        conn.execute("SELECT status, count(*) FROM provider_attempts GROUP BY status").fetchall()
    )
    for status in ("pending", "in_doubt"):
        if counts.get(status):
            finding.problem(f"{counts[status]} provider attempts left {status}")
    finding.figures = {str(k): int(v) for k, v in sorted(counts.items())}
    return finding


def fraud_scored_once(
    scope: Scope, log: dict[str, list[Record]], conn: psycopg.Connection[Any]
) -> Finding:
    """Each input the fraud workers scored has one score per subject (one event id, whatever
    the restarts), and each score on the log is one row in ``fraud_scores``. (The workers
    publish a score only when it is above zero; that they read every input is
    ``groups-at-end``.)"""
    finding = Finding("fraud-scored-once", True)
    scores: dict[tuple[str, str], set[str]] = defaultdict(set)
    for r in log.get("fraud.scores", []):
        if r.event_type == "FraudScored" and r.body and r.network_id == scope.network_id:
            scores[(r.body.get("input_event_id") or "", r.body["subject"])].add(r.event_id or "")
    for (scored, subject), ids in sorted(scores.items()):
        if len(ids) > 1:
            finding.problem(f"input {scored} scored {len(ids)} times for {subject}")
    inputs = {scored for scored, _ in scores}
    ids = {i for v in scores.values() for i in v}
    rows = Counter(
        str(e)
        for (e,) in conn.execute(
            "SELECT event_id FROM fraud_scores WHERE network_id = %s", (scope.network_id,)
        )
    )
    for event_id in sorted(ids):
        if rows.get(event_id, 0) != 1:
            finding.problem(f"score {event_id}: {rows.get(event_id, 0)} rows in fraud_scores")
    for event_id in sorted(set(rows) - ids):
        finding.problem(f"fraud_scores row {event_id} has no score on the log")
    finding.figures = {"scores above zero": len(ids), "inputs scored": len(inputs)}
    return finding


def _where(position: tuple[str, int, int]) -> str:
    topic, partition, offset = position
    return f"{topic}[{partition}]@{offset}"
