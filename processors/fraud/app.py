"""The fraud processor as a faust-streaming app.

Two stages, because the rules judge tokens, cards, stations and terminals while the topics are
keyed by payment and session:

1. *Intake* agents read ``payments.events``, ``sessions.events`` and ``billing.events``, turn
   each event into an ``Observation`` (``ledger.fraud.intake``), remembering in tables what
   later events need (a payment's token and card, a session's token), with each station's
   place and power from ``locations.events`` (``processors.fraud.places``), and send one copy
   per subject to the internal topic ``<app id>-observations``, keyed by subject.
2. The *scoring* agent reads that topic; the table ``subjects`` (RocksDB, changelog on Kafka)
   holds each subject's state, ``ledger.fraud.engine.score`` judges the observation, and the
   outputs (``ledger.fraud.outputs``) are published and flushed before the input's offset can
   be committed.

No exactly-once from Kafka transactions: every output id is derived from its input, and the
state remembers the ids it has scored, so a redelivered input gives the same events again.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import faust

from connectors import metrics
from connectors.kafka import EventPublisher
from ledger import events as ev
from ledger.errors import LedgerError
from ledger.fraud.engine import SubjectState, Verdict, score
from ledger.fraud.intake import (
    Place,
    observe_cdr,
    observe_payment,
    observe_session,
    payment_facts,
)
from ledger.fraud.observations import Observation, subject_kind, subjects_of
from ledger.fraud.outputs import outputs
from ledger.fraud.policy import Policies
from schemas.serde import EventSerde
from schemas.topics import TOPIC_OF

log = logging.getLogger("evledger.fraud")

APP_ID = "evledger-fraud"
STATES_CACHED = 50_000
Agent = Callable[[faust.StreamT[bytes]], AsyncIterator[None]]
SOURCES = ("payments.events", "sessions.events", "billing.events")
OBSERVATIONS_RETENTION_MS = 7 * 24 * 3600 * 1000
TABLES = ("payments", "sessions", "subjects")
"""The app's tables; each has the changelog topic ``<app id>-<table>-changelog``."""
LOCATIONS = "locations.events"
"""Read whole by every worker (``processors.fraud.places``), not by the group."""


def faust_app(
    bootstrap_servers: str,
    partitions: int,
    datadir: Path,
    *,
    app_id: str = APP_ID,
    kafka: dict[str, Any] | None = None,
    replication: int = 1,
) -> faust.App:
    """The faust app, not started: RocksDB tables under ``datadir``, at-least-once. ``kafka``:
    the client settings every evledger client uses (``Settings.kafka_client``), for TLS and
    SASL; ``replication``: copies of the topics faust creates itself."""
    brokers = [f"kafka://{server.strip()}" for server in bootstrap_servers.split(",")]
    return faust.App(
        app_id,
        broker=brokers,
        broker_credentials=credentials(kafka or {}),
        store="rocksdb://",
        datadir=str(datadir),
        topic_partitions=partitions,
        topic_replication_factor=replication,
        consumer_auto_offset_reset="earliest",
        processing_guarantee="at_least_once",
        key_serializer="raw",
        value_serializer="json",
        web_enabled=False,
        # A worker that dies is noticed in 10 s (faust's default: 60 s) and its partitions,
        # with their tables restored from the changelog, move to the others.
        broker_session_timeout=10.0,
        # No standby copies of other workers' tables: with them, two workers each replayed the
        # other's changelogs and ran 10x slower than one (bench suite fraud); a moved partition
        # is restored from its changelog instead.
        table_standby_replicas=0,
        broker_heartbeat_interval=3.0,
        stream_wait_empty=False,  # shutdown hangs in wait_empty otherwise (faust 0.15)
        table_cleanup_interval=600.0,
    )


def credentials(kafka: dict[str, Any]) -> faust.SASLCredentials | faust.SSLCredentials | None:
    """faust's (aiokafka's) form of the librdkafka security settings in ``kafka``."""
    protocol = kafka.get("security.protocol", "PLAINTEXT")
    if protocol == "PLAINTEXT":
        return None
    context = None
    if protocol.endswith("SSL"):
        context = ssl.create_default_context(cafile=kafka.get("ssl.ca.location") or None)
        if kafka.get("ssl.certificate.location"):
            context.load_cert_chain(kafka["ssl.certificate.location"], kafka["ssl.key.location"])
    if protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=kafka["sasl.username"],
            password=kafka["sasl.password"],
            mechanism=kafka["sasl.mechanism"],
            ssl_context=context,
        )
    return faust.SSLCredentials(context)


class FraudProcessor:
    """The agents and tables of the fraud app, wired to a serde (to read the topics), a
    publisher (for the outputs, with the partitioner every other evledger producer uses) and
    the networks' policies."""

    def __init__(
        self,
        app: faust.App,
        serde: EventSerde,
        publisher: EventPublisher,
        policies: Policies,
        places: Callable[[str], Place | None],
        *,
        on_outputs: Callable[[list[Any]], None] | None = None,
        topic_prefix: str = "",
    ) -> None:
        self.app, self.serde, self.publisher, self.policies = app, serde, publisher, policies
        self.places = places
        self.on_outputs = on_outputs
        self.prefix = topic_prefix
        """Read ``<prefix><topic>`` and write ``<prefix>fraud.scores`` (an evaluation's own
        ``bench.`` topics); empty in production."""
        raw: dict[str, Any] = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw",
               "value_serializer": "raw"}  # fmt: skip
        self.sources = {name: app.topic(topic_prefix + name, **raw) for name in SOURCES}
        self.observations = app.topic(
            app.conf.id + "-observations", key_type=bytes, internal=True,
            retention=timedelta(milliseconds=OBSERVATIONS_RETENTION_MS),
        )  # fmt: skip
        self.payments = app.Table("payments", default=lambda: None, help="payment -> token, card")
        self.sessions = app.Table("sessions", default=lambda: None, help="session -> token")
        self.subjects = app.Table("subjects", default=lambda: None, help="subject -> state")
        self.scored = 0
        self._states: OrderedDict[str, SubjectState] = OrderedDict()
        """The states of the subjects scored lately, as decoded: the table holds them too
        (and its changelog), but decoding one costs more than scoring it. Emptied whenever
        partitions move, so a state is never read here after another worker changed it."""
        app.on_partitions_revoked.connect(self._forget)
        app.on_partitions_assigned.connect(self._forget)
        app.agent(self.sources["payments.events"], name="payments")(self._intake(self._payment))
        app.agent(self.sources["sessions.events"], name="sessions")(self._intake(self._session))
        app.agent(self.sources["billing.events"], name="billing")(self._intake(self._cdr))
        app.agent(self.observations, name="score")(self._score)

    # -- intake ---------------------------------------------------------------------------------
    def _decode(self, event: faust.types.EventT[bytes]) -> Any:
        message = event.message
        try:
            return self.serde.decode(message.topic, event.value)
        except LedgerError as exc:
            metrics.FRAUD_SKIPPED.labels(message.topic, exc.code).inc()
            log.warning(
                "skipped %s[%d]@%d: %s", message.topic, message.partition, message.offset, exc,
                extra={"topic": message.topic, "partition": message.partition,
                       "offset": message.offset, "reason": exc.code},
            )  # fmt: skip
            return None

    async def _forward(self, obs: Observation | None) -> None:
        """Send ``obs`` to stage two once per subject (faust flushes its producer before it
        commits the offsets of the records they came from)."""
        if obs is None:
            return
        body = obs.to_json()
        for subject in subjects_of(obs):
            await self.observations.send(key=subject.encode(), value=body)

    def _payment(self, event: Any) -> Observation | None:
        if isinstance(event, ev.PaymentAuthorized | ev.AuthorizationFailed):
            self.payments[event.payment_id] = payment_facts(event)
        return observe_payment(event, self.payments.get)

    def _session(self, event: Any) -> Observation | None:
        if isinstance(event, ev.SessionStarted) and event.token_uid:
            self.sessions[event.session_id] = event.token_uid
        return observe_session(event, self.sessions.get, self.places)

    def _cdr(self, event: Any) -> Observation | None:
        return observe_cdr(event, self.places)

    def _intake(self, observe: Callable[[Any], Observation | None]) -> Agent:
        """A stage-one agent: decode each record, let ``observe`` remember what it needs and
        turn it into an observation, and forward that. One record at a time: faust 0.15's
        ``take_events`` acknowledged records it never handed over (seen here as lost
        observations under load), so batching is not worth its risk."""

        async def agent(stream: faust.StreamT[bytes]) -> AsyncIterator[None]:
            async for record in stream.events():
                await self._forward(observe(self._decode(record)))
                yield None

        return agent

    # -- scoring --------------------------------------------------------------------------------
    async def _score(self, stream: faust.StreamT[dict[str, Any]]) -> AsyncIterator[None]:
        """Stage two: the subject's state, the verdict, the next state and the outputs."""
        async for record in stream.events():
            subject = bytes(cast(bytes, record.key)).decode()
            obs = Observation.from_json(cast(dict[str, Any], record.value))
            policy = self.policies.of(obs.network_id)
            state = self._states.get(subject)
            if state is None:
                state = SubjectState.from_json(self.subjects.get(subject))
            verdict, after = score(subject, state, obs, policy)
            if after is not state:
                self.subjects[subject] = after.to_json()
            self._remember(subject, after)
            metrics.FRAUD_OBSERVATIONS.labels(subject_kind(subject).value).inc()
            self.scored += 1
            emitted = outputs(subject, obs, verdict, policy)
            if emitted:
                await self._publish([(emitted, verdict, policy.action.value)])
            yield None

    def _remember(self, subject: str, state: SubjectState) -> None:
        self._states[subject] = state
        self._states.move_to_end(subject)
        if len(self._states) > STATES_CACHED:
            self._states.popitem(last=False)

    async def _forget(self, *args: Any, **kwargs: Any) -> None:
        self._states.clear()

    async def _publish(self, emitted: list[tuple[list[Any], Verdict, str]]) -> None:
        for events, _, _ in emitted:
            for event in events:
                topic = self.prefix + TOPIC_OF[type(event)] if self.prefix else None
                self.publisher.publish(event, topic=topic)
        # Flushed before the agent takes the next batch, so before faust can commit the
        # inputs' offsets: an output is never lost, at worst sent twice with the same id.
        await asyncio.get_running_loop().run_in_executor(None, self.publisher.flush)
        for events, verdict, action in emitted:
            metrics.FRAUD_SCORE.observe(verdict.score)
            if verdict.alert:
                top = max(verdict.contributions, key=lambda c: c.weight * c.strength)
                metrics.FRAUD_ALERTS.labels(top.rule, action).inc()
            if self.on_outputs is not None:
                self.on_outputs(events)
