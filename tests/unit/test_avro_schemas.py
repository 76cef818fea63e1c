"""The Avro schemas derived from the event dataclasses: committed, documented, round-tripping."""

from __future__ import annotations

import io
import json

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.avro import AVSC_DIR, avro_schema, codec, schema_text
from schemas.encoder import fastavro_encoder
from schemas.topics import ALL_EVENTS
from tests.strategies import strategy_for


@pytest.mark.parametrize("cls", ALL_EVENTS, ids=lambda c: c.__name__)
def test_committed_avsc_matches_the_dataclass(cls: type) -> None:
    path = AVSC_DIR / f"{cls.__name__}.avsc"
    assert path.exists(), f"run `make schemas` to export {path.name}"
    assert path.read_text() == schema_text(cls), f"{path.name} is stale: run `make schemas`"


@pytest.mark.parametrize("cls", ALL_EVENTS, ids=lambda c: c.__name__)
def test_every_field_is_documented_and_namespaced(cls: type) -> None:
    def walk(schema: object) -> None:
        if isinstance(schema, dict) and schema.get("type") == "record":
            assert schema["namespace"] == "io.evledger"
            for field in schema["fields"]:
                assert field["doc"], f"{schema['name']}.{field['name']} has no doc"
                walk(field["type"])
        elif isinstance(schema, dict) and schema.get("type") == "array":
            walk(schema["items"])
        elif isinstance(schema, list):
            for branch in schema:
                walk(branch)

    walk(avro_schema(cls))


def test_every_event_carries_the_envelope() -> None:
    for cls in ALL_EVENTS:
        first = avro_schema(cls)["fields"][0]
        assert first["name"] == "envelope"
        names = [f["name"] for f in first["type"]["fields"]]
        assert names == [
            "event_id",
            "occurred_at",
            "recorded_at",
            "source",
            "network_id",
            "correlation_id",
            "causation_id",
        ]


def test_optional_fields_default_to_null_so_evolution_stays_backward_compatible() -> None:
    for cls in ALL_EVENTS:
        for field in avro_schema(cls)["fields"]:
            if isinstance(field["type"], list) and field["type"][0] == "null":
                assert "default" in field and field["default"] is None, (cls, field["name"])


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(ALL_EVENTS).flatmap(strategy_for))
def test_any_event_round_trips_through_avro(event: object) -> None:
    c = codec(type(event))
    body = fastavro_encoder(c)(b"", event)
    assert c.from_dict(fastavro.schemaless_reader(io.BytesIO(body), c.parsed, None)) == event


def test_schemas_are_valid_json_avro() -> None:
    for path in sorted(AVSC_DIR.glob("*.avsc")):
        fastavro.parse_schema(json.loads(path.read_text()))


def test_event_catalogue_doc_is_current() -> None:
    from schemas.catalogue import CATALOGUE, render

    assert CATALOGUE.read_text() == render(), "docs/events.md is stale: run `make schemas`"
