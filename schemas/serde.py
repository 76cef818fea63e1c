"""Events <-> bytes in the Confluent wire format: magic byte 0, 4-byte schema id, Avro body.

Any Confluent-compatible consumer can read what this writes. Decoding resolves the writer's
schema (by id, from the registry) against today's schema, then applies upcasters.
"""

from __future__ import annotations

import functools
import io
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import fastavro
from fastavro.schema import to_parsing_canonical_form

from ledger.errors import LedgerError
from schemas import upcasters
from schemas.avro import Codec, avro_schema, codec, full_name, schema_text
from schemas.encoder import (
    Decoder,
    Encoder,
    Plan,
    build_decoder,
    build_encoder,
    compiled_available,
    plan_for,
)
from schemas.errors import (
    InvalidValue,
    NotConfluentFramed,
    SchemaMismatch,
    UnexpectedEventType,
    UnknownSchema,
)
from schemas.registry import Registry, UnknownSchemaId, subject
from schemas.topics import ALL_EVENTS, allowed_events

_HEADER = struct.Struct(">bI")
MAGIC = 0


@dataclass(frozen=True)
class _Reader:
    codec: Codec
    writer: Any  # parsed writer schema
    same: bool  # writer schema is today's schema: no resolution needed
    fast: Decoder | None = None  # compiled decoder, only when ``same``


class EventSerde:
    """Encodes and decodes events for the topics in the catalogue, registering schemas lazily."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._encoders: dict[tuple[str, type], tuple[bytes, Encoder]] = {}
        self._readers: dict[int, _Reader] = {}
        self._plans: dict[type, Plan] = {}
        self._codec_by_name = {full_name(cls): codec(cls) for cls in ALL_EVENTS}

    # -- encode -----------------------------------------------------------------------------
    def _encoder(self, topic: str, cls: type) -> tuple[bytes, Encoder]:
        found = self._encoders.get((topic, cls))
        if found is None:
            if cls not in allowed_events(topic):
                raise UnexpectedEventType(
                    f"{cls.__name__} does not belong on topic {topic}", topic=topic
                )
            schema_id = self.registry.register(subject(topic, cls), schema_text(cls))
            found = (_HEADER.pack(MAGIC, schema_id), build_encoder(codec(cls)))
            self._encoders[(topic, cls)] = found
            c = codec(cls)
            self._readers[schema_id] = _Reader(c, c.parsed, same=True, fast=build_decoder(c))
        return found

    def encoder_for(self, topic: str, cls: type) -> Callable[[Any], bytes]:
        """``event -> bytes`` for ``cls`` on ``topic`` (schema registered, header bound)."""
        header, encoder = self._encoder(topic, cls)
        return functools.partial(encoder, header)

    def batch_route(self, topic: str, cls: type) -> tuple[bytes, Plan] | None:
        """(header, plan) for ``encode_each``, or None when the compiled encoder is not built."""
        header, _ = self._encoder(topic, cls)
        if not compiled_available():
            return None
        if cls not in self._plans:
            self._plans[cls] = plan_for(cls)
        return header, self._plans[cls]

    def encode(self, topic: str, event: Any) -> bytes:
        """Confluent-framed Avro bytes of ``event`` for ``topic``."""
        header, encoder = self._encoder(topic, type(event))
        return encoder(header, event)

    def schema_id(self, topic: str, cls: type) -> int:
        header, _ = self._encoder(topic, cls)
        return int(_HEADER.unpack(header)[1])

    # -- decode -----------------------------------------------------------------------------
    def _reader(self, schema_id: int) -> _Reader:
        reader = self._readers.get(schema_id)
        if reader is not None:
            return reader
        try:
            writer = self.registry.schema_by_id(schema_id)
        except UnknownSchemaId as exc:
            raise UnknownSchema(
                f"schema id {schema_id} is unknown to the registry at {self.registry.url}; "
                "the record was written against another registry or its schema was deleted",
                schema_id=schema_id,
            ) from exc
        name = writer.get("name", "")
        if "." not in name and writer.get("namespace"):
            name = f"{writer['namespace']}.{name}"
        known = self._codec_by_name.get(name)
        if known is None:
            raise UnexpectedEventType(
                f"schema {schema_id} is for {name!r}, not an evledger event", schema_id=schema_id
            )
        same = to_parsing_canonical_form(writer) == to_parsing_canonical_form(
            avro_schema(known.cls)
        )
        fast = build_decoder(known) if same else None
        reader = _Reader(known, fastavro.parse_schema(writer), same, fast)
        self._readers[schema_id] = reader
        return reader

    def decode(self, topic: str, value: bytes | None) -> Any:
        """The event in ``value``. Raises a DecodeError subclass naming what is wrong."""
        if value is None or len(value) < _HEADER.size:
            raise NotConfluentFramed(
                "record has no Confluent wire-format header (need magic byte 0 + 4-byte schema id)",
                length=0 if value is None else len(value),
            )
        magic, schema_id = _HEADER.unpack_from(value)
        if magic != MAGIC:
            raise NotConfluentFramed(f"unknown magic byte {magic}; not Confluent-framed Avro")
        reader = self._reader(schema_id)
        if reader.codec.cls not in allowed_events(topic):
            raise UnexpectedEventType(
                f"{reader.codec.cls.__name__} does not belong on topic {topic}",
                topic=topic,
                schema_id=schema_id,
            )
        if reader.fast is not None:
            try:
                return reader.fast(value, _HEADER.size)
            except Exception:
                pass
        body = io.BytesIO(memoryview(value)[_HEADER.size :])
        try:
            if reader.same:
                datum = fastavro.schemaless_reader(body, reader.writer, None)
            else:
                datum = fastavro.schemaless_reader(body, reader.writer, reader.codec.parsed)
                assert isinstance(datum, dict)
                datum = upcasters.upcast(full_name(reader.codec.cls), reader.writer, datum)
            if body.tell() != len(value) - _HEADER.size:
                raise ValueError(f"{len(value) - _HEADER.size - body.tell()} trailing bytes")
            return reader.codec.from_dict(datum)  # type: ignore[arg-type]
        except LedgerError as exc:  # the bytes are Avro, a value is not (e.g. the currency)
            raise InvalidValue(
                f"{reader.codec.cls.__name__} (schema id {schema_id}) holds an invalid value: "
                f"{exc.message}",
                code=exc.code,
                schema_id=schema_id,
                **exc.context,
            ) from exc
        except Exception as exc:  # fastavro raises EOFError, ValueError, SchemaResolutionError...
            raise SchemaMismatch(
                f"bytes do not decode as {reader.codec.cls.__name__} (schema id {schema_id}): "
                f"{type(exc).__name__}: {exc}",
                schema_id=schema_id,
            ) from exc
