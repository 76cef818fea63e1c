"""One logging setup for every evledger process: JSON lines for machines, a short human
format for a terminal (``EVLEDGER_LOG_FORMAT`` or ``evledger --log-format``: json, human, or
auto = human on a terminal, JSON otherwise).

A log call about a record passes ``extra=record_fields(record)``: its topic, partition, offset,
event id, correlation id and network become fields of the JSON line (and a suffix of the human
one). ``bound(...)`` adds fields to every line logged inside it on this thread (the processor
binds its consumer group for each step).
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

FORMATS = ("auto", "json", "human")

CONTEXT_FIELDS = (
    "group",
    "topic",
    "partition",
    "offset",
    "event_id",
    "correlation_id",
    "network_id",
    "reason_code",
    "provider",
    "action",
    "request_id",
)
"""Fields a log line may carry besides its message, in the order the human format shows them."""

_NOTHING: dict[str, Any] = {}
_bound: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar(
    "evledger_log",
    default=_NOTHING,
)


def record_fields(record: Any) -> dict[str, Any]:
    """The log fields of a consumed record (``connectors.kafka.Consumed``): where it sits and,
    once decoded, its event id, correlation id and network."""
    fields: dict[str, Any] = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
    }
    event = record.event
    envelope = getattr(event, "envelope", None)
    if envelope is not None:
        fields["event_id"] = envelope.event_id
        fields["correlation_id"] = envelope.correlation_id
        fields["network_id"] = envelope.network_id
    return fields


@contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """Add ``fields`` to every log line written inside the block (this thread/task only)."""
    token = _bound.set({**_bound.get(), **fields})
    try:
        yield
    finally:
        _bound.reset(token)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = dict(_bound.get())
    for name in CONTEXT_FIELDS:
        value = record.__dict__.get(name)
        if value is not None:
            fields[name] = value
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the context
    fields, and the traceback as ``exc``."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(_fields(record))
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class HumanFormatter(logging.Formatter):
    """``12:03:04 WARNING evledger.processor message  topic=... partition=...``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = _fields(record)
        if not fields:
            return text
        suffix = " ".join(f"{k}={v}" for k, v in fields.items())
        head, sep, rest = text.partition("\n")  # keep a traceback below the fields
        return f"{head}  {suffix}{sep}{rest}"


def resolve_format(fmt: str, stream: Any = None) -> str:
    """``json`` or ``human`` for ``fmt`` (``auto``: human when ``stream`` is a terminal)."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if fmt != "auto":
        return fmt
    stream = sys.stderr if stream is None else stream
    return "human" if getattr(stream, "isatty", lambda: False)() else "json"


def setup_logging(fmt: str = "auto", level: int | str = logging.INFO, stream: Any = None) -> str:
    """Send every logger's records to ``stream`` (stderr) in ``fmt``; replaces the root
    logger's handlers, so calling it twice does not double the lines. Returns the format used.
    Raises ValueError for an unknown format."""
    chosen = resolve_format(fmt, stream)
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(JsonFormatter() if chosen == "json" else HumanFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return chosen
