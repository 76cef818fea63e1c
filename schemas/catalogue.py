"""Renders docs/events.md, the event catalogue, from the event dataclasses and their schemas."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ledger.events import EventRejected
from schemas.avro import avro_schema
from schemas.topics import TOPIC_EVENTS, TOPICS

CATALOGUE = Path(__file__).resolve().parent.parent / "docs" / "events.md"


def _type_name(avro: Any) -> str:
    if isinstance(avro, list):
        others = [_type_name(t) for t in avro if t != "null"]
        return " or ".join(others) + (" (nullable)" if "null" in avro else "")
    if isinstance(avro, dict):
        kind = avro.get("type")
        if kind == "array":
            return f"array<{_type_name(avro['items'])}>"
        if avro.get("logicalType"):
            return f"{kind} ({avro['logicalType']})"
        if kind in ("record", "enum"):
            return str(avro["name"])
        return str(kind)
    return str(avro).rsplit(".", 1)[-1]


def _fields_table(schema: dict[str, Any], skip_envelope: bool = True) -> list[str]:
    rows = ["| field | type | default | meaning |", "| --- | --- | --- | --- |"]
    for field in schema["fields"]:
        if skip_envelope and field["name"] == "envelope":
            continue
        default = json.dumps(field["default"]) if "default" in field else ""
        rows.append(
            f"| `{field['name']}` | {_type_name(field['type'])} | {default} | {field['doc']} |"
        )
    return rows


def render() -> str:
    keys = {t.name: t.key_doc for t in TOPICS}
    lines = [
        "# Event catalogue",
        "",
        "Generated from `ledger/events.py` by `evledger schemas docs`; do not edit by hand.",
        "Every event is Avro in the Confluent wire format (magic byte 0, 4-byte schema id),",
        "registered under the subject `<topic>-io.evledger.<Event>` with BACKWARD compatibility.",
        "",
        "## Envelope (every event's first field)",
        "",
    ]
    envelope = avro_schema(EventRejected)["fields"][0]["type"]
    lines += _fields_table(envelope, skip_envelope=False)
    rejected = {"rejected": (EventRejected,)}
    for topic, classes in {**TOPIC_EVENTS, **rejected}.items():
        title = "`<topic>.rejected`" if topic == "rejected" else f"`{topic}`"
        key = keys.get(topic, "original key")
        lines += ["", f"## {title} (key: {key})"]
        for cls in classes:
            schema = avro_schema(cls)
            lines += ["", f"### {cls.__name__}", "", schema["doc"], ""]
            lines += _fields_table(schema)
    return "\n".join(lines) + "\n"


def write(path: Path = CATALOGUE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render())
    return path
