"""Event -> Avro body encoders. fastavro is the reference; a compiled encoder is used when built.

Both produce identical bytes (tests/unit/test_encoder.py checks this property on generated
events), so the compiled one is purely a speed-up of the publish hot path.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import fastavro

from schemas.avro import Codec

Encoder = Callable[[bytes, Any], bytes]
"""(header, event) -> header + Avro body"""


def fastavro_encoder(c: Codec) -> Encoder:
    parsed, to_dict = c.parsed, c.to_dict

    def encode(header: bytes, event: Any) -> bytes:
        buf = io.BytesIO()
        buf.write(header)
        fastavro.schemaless_writer(buf, parsed, to_dict(event))
        return buf.getvalue()

    return encode


def build_encoder(c: Codec) -> Encoder:
    """The fastest available encoder for ``c``'s class."""
    return fastavro_encoder(c)
