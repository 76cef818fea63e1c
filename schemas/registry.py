"""Schema registry access over the Confluent REST API (any Confluent-compatible registry).

Subjects follow the TopicRecordNameStrategy, ``<topic>-<record full name>``, because each topic
carries several event types; compatibility is BACKWARD.
"""

from __future__ import annotations

import json
from typing import Any

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from ledger.errors import InfrastructureError
from ledger.events import EventRejected
from schemas.avro import full_name, schema_text
from schemas.topics import TOPICS

COMPATIBILITY = "BACKWARD"


class RegistryError(InfrastructureError):
    code = "REGISTRY_ERROR"


class IncompatibleSchema(RegistryError):
    code = "INCOMPATIBLE_SCHEMA"


class UnknownSchemaId(RegistryError):
    code = "UNKNOWN_SCHEMA_ID"


def subject(topic: str, cls_or_name: type | str) -> str:
    name = cls_or_name if isinstance(cls_or_name, str) else full_name(cls_or_name)
    return f"{topic}-{name}"


def topic_event_pairs() -> list[tuple[str, type]]:
    """Every (topic, event class) pair that is produced, incl. rejections per topic."""
    pairs = [(t.name, cls) for t in TOPICS for cls in t.events]
    pairs += [(t.rejected, EventRejected) for t in TOPICS]
    return pairs


class Registry:
    """A thin, caching wrapper over confluent-kafka's registry client that translates errors."""

    def __init__(self, url: str, config: dict[str, Any] | None = None) -> None:
        """``config``: the client's settings beyond the URL (``Settings.registry_client``:
        basic-auth credentials, the registry's CA)."""
        self.url = url
        self.client = SchemaRegistryClient({**(config or {}), "url": url})
        self._by_id: dict[int, dict[str, Any]] = {}

    def set_global_compatibility(self, level: str = COMPATIBILITY) -> None:
        try:
            self.client.set_compatibility(level=level)
        except SchemaRegistryError as exc:
            raise RegistryError(
                f"setting compatibility {level} failed: {exc}", retriable=False
            ) from exc

    def register(self, subject_name: str, text: str) -> int:
        """Register (or find) a schema; returns its id. Raises IncompatibleSchema when the
        registry refuses it under the subject's compatibility rule."""
        try:
            return int(self.client.register_schema(subject_name, Schema(text, "AVRO")))
        except SchemaRegistryError as exc:
            if exc.http_status_code == 409:
                raise IncompatibleSchema(
                    f"registry refused an incompatible schema for {subject_name}: "
                    f"{exc.error_message}",
                    retriable=False,
                    subject=subject_name,
                ) from exc
            raise RegistryError(
                f"registering {subject_name} failed: {exc}",
                retriable=exc.http_status_code >= 500,
                subject=subject_name,
            ) from exc
        except Exception as exc:  # connection errors surface as requests/httpx exceptions
            raise RegistryError(
                f"registry at {self.url} unreachable: {exc}", retriable=True
            ) from exc

    def is_compatible(self, subject_name: str, text: str) -> bool:
        return bool(self.client.test_compatibility(subject_name, Schema(text, "AVRO")))

    def schema_by_id(self, schema_id: int) -> dict[str, Any]:
        """The writer schema for ``schema_id``.

        Raises UnknownSchemaId when the registry has none."""
        cached = self._by_id.get(schema_id)
        if cached is not None:
            return cached
        try:
            schema = self.client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                raise UnknownSchemaId(
                    f"schema id {schema_id} is not in the registry",
                    retriable=False,
                    schema_id=schema_id,
                ) from exc
            raise RegistryError(
                f"fetching schema {schema_id} failed: {exc}", retriable=True, schema_id=schema_id
            ) from exc
        except Exception as exc:
            raise RegistryError(
                f"registry at {self.url} unreachable: {exc}", retriable=True
            ) from exc
        parsed: dict[str, Any] = json.loads(schema.schema_str or "{}")
        self._by_id[schema_id] = parsed
        return parsed

    def register_all(self) -> dict[tuple[str, str], int]:
        """Register every event schema under its topic subject. Returns {(topic, name): id}."""
        return {
            (topic, full_name(cls)): self.register(subject(topic, cls), schema_text(cls))
            for topic, cls in topic_event_pairs()
        }
