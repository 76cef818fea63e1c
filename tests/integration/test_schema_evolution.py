"""Schema evolution through the real registry: BACKWARD changes pass, breaking ones are refused."""

from __future__ import annotations

import io
import json
import uuid
from copy import deepcopy
from typing import Any

import fastavro
import pytest

from entrypoints.bootstrap import App
from ledger.envelope import Envelope
from ledger.events import PaymentVoided
from schemas.avro import avro_schema, codec
from schemas.registry import IncompatibleSchema


def _with_field(schema: dict[str, Any], field: dict[str, Any]) -> dict[str, Any]:
    evolved = deepcopy(schema)
    evolved["fields"].append(field)
    return evolved


def test_adding_an_optional_field_keeps_old_and_new_readers_working(app: App) -> None:
    subject = f"evolution-{uuid.uuid4()}-io.evledger.PaymentVoided"
    v1 = avro_schema(PaymentVoided)
    v2 = _with_field(
        v1,
        {
            "name": "voided_by",
            "type": ["null", "string"],
            "default": None,
            "doc": "Operator who voided it",
        },
    )
    id1 = app.registry.register(subject, json.dumps(v1))
    id2 = app.registry.register(subject, json.dumps(v2))
    assert id1 != id2

    event = PaymentVoided(Envelope.new("net"), "pay-1", "cancelled")
    old_bytes = io.BytesIO()
    fastavro.schemaless_writer(
        old_bytes, fastavro.parse_schema(v1), codec(PaymentVoided).to_dict(event)
    )
    new_bytes = io.BytesIO()
    new_record = {**codec(PaymentVoided).to_dict(event), "voided_by": "ops@example"}
    fastavro.schemaless_writer(new_bytes, fastavro.parse_schema(v2), new_record)

    # The new reader reads old data (the field takes its default) ...
    w1 = fastavro.parse_schema(app.registry.schema_by_id(id1))
    w2 = fastavro.parse_schema(app.registry.schema_by_id(id2))
    old_as_new = fastavro.schemaless_reader(
        io.BytesIO(old_bytes.getvalue()), w1, fastavro.parse_schema(v2)
    )
    assert old_as_new["voided_by"] is None
    # ... and today's code (the old reader) reads new data, ignoring the field it does not know.
    new_as_old = fastavro.schemaless_reader(
        io.BytesIO(new_bytes.getvalue()), w2, codec(PaymentVoided).parsed
    )
    assert codec(PaymentVoided).from_dict(new_as_old) == event


def test_the_serde_decodes_records_written_with_a_newer_schema(app: App) -> None:
    """A producer on a newer schema version: our consumer resolves it against today's class."""
    topic = "payments.events"
    subject = f"{topic}-io.evledger.PaymentVoided"
    v2 = _with_field(
        avro_schema(PaymentVoided),
        {
            "name": "evolution_probe",
            "type": ["null", "long"],
            "default": None,
            "doc": "test-only field",
        },
    )
    new_id = app.registry.register(subject, json.dumps(v2))
    event = PaymentVoided(Envelope.new("net"), "pay-2", None)
    body = io.BytesIO()
    body.write(b"\x00" + new_id.to_bytes(4, "big"))
    fastavro.schemaless_writer(
        body,
        fastavro.parse_schema(v2),
        {**codec(PaymentVoided).to_dict(event), "evolution_probe": 7},
    )
    assert app.serde.decode(topic, body.getvalue()) == event


@pytest.mark.parametrize("change", ["required field", "type change"])
def test_an_incompatible_change_is_refused_by_the_registry(app: App, change: str) -> None:
    subject = f"evolution-{uuid.uuid4()}-io.evledger.PaymentVoided"
    v1 = avro_schema(PaymentVoided)
    app.registry.register(subject, json.dumps(v1))
    if change == "required field":
        bad = _with_field(v1, {"name": "mandatory", "type": "string", "doc": "no default"})
    else:
        bad = deepcopy(v1)
        next(f for f in bad["fields"] if f["name"] == "payment_id")["type"] = "long"
    with pytest.raises(IncompatibleSchema) as refused:
        app.registry.register(subject, json.dumps(bad))
    assert refused.value.code == "INCOMPATIBLE_SCHEMA"
