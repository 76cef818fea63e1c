"""A replay after the schema registry restarted, over a log that holds records written with an
evolved schema: every record decodes with the schema id stored in it (the registry keeps its
schemas in a Kafka topic, kafkasql), and the rebuilt projection equals the live one row for
row."""

from __future__ import annotations

import io
import json
import time
import uuid
from copy import deepcopy

import fastavro
import psycopg
import pytest

from connectors import audit
from connectors.kafka import key_of
from connectors.settings import Settings
from devstack.stack import Stack
from entrypoints.bootstrap import App, bootstrap
from entrypoints.replay import replay_ledger
from ledger.events import PaymentVoided
from processors.ledger_projector import TOPICS, build_ledger_processor
from schemas.avro import avro_schema, codec
from tests.integration.conftest import end_offsets
from tests.integration.test_ledger_projector import publish, run_to, scratch_book, start_group
from tests.ledger_oracle import mixed_stream

TOPIC = "payments.events"


def evolved_bytes(app: App, event: PaymentVoided) -> bytes:
    """``event`` as a producer on a newer PaymentVoided schema (one more optional field)
    writes it: framed with the newer schema's id."""
    v2 = deepcopy(avro_schema(PaymentVoided))
    v2["fields"].append({"name": "voided_via", "type": ["null", "string"], "default": None,
                         "doc": "test-only field: the channel the void came through"})  # fmt: skip
    schema_id = app.registry.register(f"{TOPIC}-io.evledger.PaymentVoided", json.dumps(v2))
    body = io.BytesIO()
    body.write(b"\x00" + schema_id.to_bytes(4, "big"))
    record = {**codec(PaymentVoided).to_dict(event), "voided_via": "terminal"}
    fastavro.schemaless_writer(body, fastavro.parse_schema(v2), record)
    return body.getvalue()


def restart_registry(settings: Settings, known_id: int) -> None:
    stack = Stack(settings)
    if stack.mode != "local":
        pytest.skip("restarts the registry process of the local stack (CI's path)")
    assert stack.registry.stop()
    stack.registry.start()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:  # ready once it serves an id written before the restart
        try:
            bootstrap(settings).registry.schema_by_id(known_id)
            return
        except Exception:  # not up yet: connection refused, 404 while replaying
            time.sleep(1)
    raise AssertionError("the registry did not serve its old schema ids within 180 s")


def test_a_replay_after_a_registry_restart_decodes_old_and_evolved_records(app: App) -> None:
    stream = mixed_stream(f"net-reg-{uuid.uuid4().hex[:8]}", payments_count=30, seed=11)
    events = [*stream.phase1, *stream.phase2]
    voids = [i for i, e in enumerate(events) if isinstance(e, PaymentVoided)]
    assert voids, "the stream needs a void to write with the evolved schema"
    with scratch_book(app) as live, scratch_book(app) as rebuilt:
        group, starts = start_group(app, live)
        publisher = app.publisher()
        evolved = events[voids[0]]
        publish(app, events[: voids[0]])
        publisher.produce_bytes(TOPIC, evolved_bytes(app, evolved), key_of(evolved).encode())
        publisher.flush()
        publish(app, events[voids[0] + 1 :])
        ends = end_offsets(app, list(TOPICS))
        processor = build_ledger_processor(app, group=group, database_url=live)
        try:
            run_to(processor, ends)
        finally:
            processor.close()
        with psycopg.connect(live) as conn:
            (voided,) = conn.execute("SELECT status FROM payments WHERE payment_id = %s",
                                     (evolved.payment_id,)).fetchone() or ("missing",)  # fmt: skip
        assert voided == "VOIDED"

        old_id = int.from_bytes(evolved_bytes(app, evolved)[1:5], "big")
        restart_registry(app.settings, old_id)
        after = bootstrap(app.settings)  # a new process: no schema cached
        result = replay_ledger(after, rebuilt, starts=starts)
        assert result.finished and result.consumed >= len(events)
        with psycopg.connect(live) as a, psycopg.connect(rebuilt) as b:
            counts, problems = audit.compare_projections(a, b)
        assert problems == [] and counts["payments"] >= 30
