"""HTTP ingest's core: JSON documents in, events on Kafka, one result per document
(docs/ingest.md). No HTTP here: ``entrypoints/ingest_app.py`` serves it.

Per document, in order: parse (``schemas.json_events``), the key's network must be the event's
(a key cannot write for another network), the input rules (``ledger.validation``, card numbers
included), then the event_id as idempotency key: the same id with the same content (its
``connectors.fingerprint``) as an event accepted before, or earlier in the request, is a
``duplicate``; with other content it is ``rejected`` with ``EVENT_ID_CONFLICT``. The new ids are
reserved in ``ingest_accepted`` in a transaction, the events published and flushed, and only once
Kafka confirmed them does the reservation commit: they are accepted. A failed delivery fails the
request (503) and rolls the reservation back: the caller retries, and consumers deduplicate
whatever got through. A concurrent request with the same ids waits on the reserved rows, so an
id is published by one request only.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any

import psycopg

from connectors import postgres
from connectors.fingerprint import Sighting, fingerprint, sightings
from connectors.kafka import EventPublisher
from connectors.personal_data import MasterKeyError, Vault, seal_event
from connectors.postgres import copy_field
from ledger import validation
from ledger.access import Principal
from ledger.card_numbers import mask_card_numbers
from ledger.envelope import utcnow
from ledger.errors import ValidationError
from ledger.pseudonyms import Pseudonymizer
from schemas.json_events import JsonEventError, JsonLimits, parse_document
from schemas.topics import TOPIC_OF

Conn = psycopg.Connection[Any]


class IngestCode(StrEnum):
    """Reason codes ingest gives besides the input rules' and the JSON shape's (docs/errors.md)."""

    NETWORK_MISMATCH = "NETWORK_MISMATCH"


@dataclass(frozen=True, slots=True)
class Result:
    """What became of one document."""

    index: int
    status: str
    """accepted, duplicate or rejected"""
    event_id: str | None = None
    event_type: str | None = None
    topic: str | None = None
    code: str | None = None
    path: str | None = None
    detail: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The fields that are set (one per event of a batch's answer: written out, not
        looped over the slots, at half the cost)."""
        out: dict[str, Any] = {"index": self.index, "status": self.status}
        if self.event_id is not None:
            out["event_id"] = self.event_id
        if self.event_type is not None:
            out["event_type"] = self.event_type
        if self.topic is not None:
            out["topic"] = self.topic
        if self.code is not None:
            out["code"] = self.code
        if self.path is not None:
            out["path"] = self.path
        if self.detail is not None:
            out["detail"] = self.detail
        return out


@dataclass(frozen=True, slots=True)
class _Candidate:
    index: int
    event: Any
    print: bytes


class Ingestor:
    """Turns documents into events on Kafka for one process; thread-safe (publishing and
    flushing are serialized, so a flush confirms exactly this request's events)."""

    def __init__(
        self,
        publisher: EventPublisher,
        limits: JsonLimits,
        future_skew_seconds: float,
        *,
        topic: str | None = None,
        vault: Vault | None = None,
        pseudonyms: Pseudonymizer | None = None,
    ) -> None:
        """``topic``: publish every event there instead of its catalogue topic (benchmarks
        write to a scratch ``bench.`` topic, keeping the event log clean). ``vault`` seals the
        personal fields that arrive in plain text (without one, they are refused);
        ``pseudonyms`` replaces drivers' tokens by their pseudonyms."""
        self.topic = topic
        self.vault = vault
        self.pseudonyms = pseudonyms
        self.publisher = publisher
        self.limits = limits
        self.skew = timedelta(seconds=future_skew_seconds)
        self._lock = threading.Lock()

    def ingest(
        self, conn: Conn, docs: Sequence[Any], who: Principal, *, parsed: bool = False
    ) -> list[Result]:
        """One result per document, in order. Raises PublishError when Kafka did not confirm
        the accepted events (nothing is recorded then). ``parsed``: the documents are events
        already (the fast JSON path, ``schemas.json_fast``)."""
        results: dict[int, Result] = {}
        candidates: list[_Candidate] = []
        latest = utcnow() + self.skew
        for i, doc in enumerate(docs):
            outcome = self._check(conn, i, doc, who, latest, parsed)
            if isinstance(outcome, Result):
                results[i] = outcome
            else:
                candidates.append(_Candidate(i, *outcome))
        if candidates:
            with conn.transaction():
                fresh = self._reserve(conn, candidates, results, who)
                if fresh:
                    with self._lock:
                        self.publisher.publish_many([c.event for c in fresh], topic=self.topic,
                                                    checked=True)  # fmt: skip
                        self.publisher.flush()  # raises PublishError: the reservation rolls back
            for c in fresh:
                results[c.index] = _result(c, "accepted")
        return [results[i] for i in range(len(docs))]

    def _check(
        self, conn: Conn, i: int, doc: Any, who: Principal, latest: Any, parsed: bool
    ) -> Result | tuple[Any, bytes]:
        """The document's event with its content fingerprint, or its rejection. Personal
        fields are sealed here; the fingerprint is of the document as sent, so a retry of it is
        a duplicate although sealing is not repeated."""
        if parsed:
            event = doc
        else:
            try:
                event = parse_document(doc, self.limits)
            except JsonEventError as exc:
                return Result(i, "rejected", code=exc.code, path=exc.path, detail=exc.message)
        env = event.envelope
        name = type(event).__name__
        if env.network_id != who.network_id:
            return Result(i, "rejected", env.event_id, name, code=IngestCode.NETWORK_MISMATCH,
                          path="$.event.envelope.network_id",
                          detail=f"this key publishes for network {who.network_id!r} only, "
                          f"not {mask_card_numbers(env.network_id)[:40]!r}")  # fmt: skip
        print_ = fingerprint(event)
        if self.pseudonyms is not None:
            event = self.pseudonyms.event(event)
        try:
            if self.vault is not None:
                event = seal_event(conn, self.vault, event)
            validation.check(event, latest)
        except (ValidationError, MasterKeyError) as exc:
            field = exc.context.get("field")
            return Result(i, "rejected", env.event_id, name, code=exc.code,
                          path=f"$.event.{field}" if field else None,
                          detail=mask_card_numbers(exc.message))  # fmt: skip
        return event, print_

    def _reserve(
        self, conn: Conn, candidates: list[_Candidate], results: dict[int, Result], who: Principal
    ) -> list[_Candidate]:
        """Record the candidates whose ids were never accepted as accepted, in the caller's
        transaction (committed only once Kafka confirmed them, rolled back otherwise), and
        return them; answer the others duplicate or conflict. One statement in the usual case
        (every id new). A request racing this one with the same ids waits on their rows, then
        finds them: an id is published by one request only."""
        ids = [c.event.envelope.event_id for c in candidates]
        prints = [c.print for c in candidates]
        new = _insert_new(conn, candidates, who)
        seen: dict[str, bytes | None] = {}
        if len(new) < len(set(ids)):  # some ids were accepted before: judge them by content
            seen.update(_accepted(conn, [i for i in ids if i not in new]))
        fresh = []
        for c, sighting in zip(candidates, sightings(ids, prints, seen), strict=True):
            if sighting is Sighting.NEW:
                fresh.append(c)
            elif sighting is Sighting.REPEAT:
                results[c.index] = _result(c, "duplicate")
            else:
                results[c.index] = Result(
                    c.index, "rejected", c.event.envelope.event_id, type(c.event).__name__,
                    code="EVENT_ID_CONFLICT", path="$.event.envelope.event_id",
                    detail="this event_id was already used for an event with other content; "
                    "a new event needs a new id, a retry must repeat the event unchanged",
                )  # fmt: skip
        return fresh


def _result(c: _Candidate, status: str) -> Result:
    return Result(c.index, status, c.event.envelope.event_id, type(c.event).__name__,
                  TOPIC_OF[type(c.event)])  # fmt: skip


def _accepted(conn: Conn, event_ids: list[str]) -> dict[str, bytes]:
    if not event_ids:
        return {}
    rows = conn.execute(
        "SELECT event_id, fingerprint FROM ingest_accepted WHERE event_id = ANY(%s::text[])",
        (postgres.array_literal(event_ids),),
    ).fetchall()
    return {e: bytes(f) for e, f in rows}


_COPY_ACCEPTED = (
    "COPY ingest_accepted (event_id, fingerprint, event_type, topic, network_id, key_id) FROM STDIN"
)


def _insert_new(conn: Conn, candidates: list[_Candidate], who: Principal) -> set[str]:
    """Insert a row per id not accepted before (the first candidate of each id); the ids
    inserted.

    Usually every id is new: one COPY writes them, in a savepoint (a third cheaper for the
    server than an insert that checks each row for a conflict, which is most of the
    reservation's cost). Should any id be taken (a retry, or a request racing this one, whose
    commit the COPY waits for), the savepoint rolls back and the insert that skips taken ids
    runs instead."""
    first: dict[str, _Candidate] = {}
    for c in candidates:
        first.setdefault(c.event.envelope.event_id, c)
    try:
        with conn.transaction(), conn.cursor() as cur, cur.copy(_COPY_ACCEPTED) as copy:
            tail = f"\t{copy_field(who.network_id)}\t{copy_field(who.key_id)}\n"
            copy.write("".join(
                f"{copy_field(event_id)}\t\\\\x{c.print.hex()}\t{type(c.event).__name__}\t"
                f"{TOPIC_OF[type(c.event)]}{tail}" for event_id, c in first.items()
            ))  # fmt: skip
        return set(first)
    except psycopg.errors.UniqueViolation:
        pass
    rows = conn.execute(
        "INSERT INTO ingest_accepted (event_id, fingerprint, event_type, topic, network_id,"
        " key_id) SELECT e, decode(f, 'hex'), t, tp, %s, %s"
        " FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[]) AS x(e, f, t, tp)"
        " ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
        (
            who.network_id,
            who.key_id,
            postgres.array_literal(c.event.envelope.event_id for c in candidates),
            postgres.array_literal(c.print.hex() for c in candidates),
            postgres.array_literal(type(c.event).__name__ for c in candidates),
            postgres.array_literal(TOPIC_OF[type(c.event)] for c in candidates),
        ),
    ).fetchall()
    return {r[0] for r in rows}
