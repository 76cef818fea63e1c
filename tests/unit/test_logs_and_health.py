"""One logging setup (JSON lines with the record's fields, or a human line) and the health
verdicts a processor serves (/livez: the loop turns; /readyz: partitions, lag, database)."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import pytest

from connectors.consumer_lag import LagMonitor
from connectors.health import ProcessHealth
from connectors.kafka import Consumed
from connectors.logging_setup import bound, record_fields, resolve_format, setup_logging
from entrypoints.simulate import NetworkSimulator


@pytest.fixture
def restore_logging() -> Any:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_carry_the_records_fields_and_the_bound_group(restore_logging: Any) -> None:
    out = io.StringIO()
    assert setup_logging("json", stream=out) == "json"
    event = next(iter(NetworkSimulator(seed=1).burst(1)))
    record = Consumed("payments.events", 3, 42, b"k", b"v", event)
    with bound(group="evledger-ledger"):
        logging.getLogger("evledger.processor").warning(
            "rejected", extra={**record_fields(record), "reason_code": "UNKNOWN_PAYMENT"}
        )
    (line,) = out.getvalue().splitlines()
    doc = json.loads(line)
    assert doc["level"] == "warning" and doc["logger"] == "evledger.processor"
    assert (doc["topic"], doc["partition"], doc["offset"]) == ("payments.events", 3, 42)
    assert doc["event_id"] == event.envelope.event_id
    assert doc["network_id"] == event.envelope.network_id
    assert (doc["group"], doc["reason_code"]) == ("evledger-ledger", "UNKNOWN_PAYMENT")
    assert doc["time"].endswith("+00:00")


def test_the_human_format_and_the_choice_of_format(restore_logging: Any) -> None:
    out = io.StringIO()
    assert setup_logging("human", stream=out) == "human"
    setup_logging("human", stream=out)  # twice: still one handler
    logging.getLogger("evledger.x").info("hello", extra={"topic": "t", "partition": 1})
    (line,) = out.getvalue().splitlines()
    assert "INFO" in line and "evledger.x hello" in line and line.endswith("topic=t partition=1")
    assert resolve_format("auto", io.StringIO()) == "json"  # not a terminal
    with pytest.raises(ValueError, match="json, human"):
        resolve_format("xml")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Watermarks:
    def __init__(self, high: int) -> None:
        self.high = high

    def get_watermark_offsets(self, tp: Any, **_: Any) -> tuple[int, int]:
        return 0, self.high


def test_ready_needs_partitions_a_measured_lag_and_the_database() -> None:
    clock = Clock()
    monitor = LagMonitor("g-health", Watermarks(120), clock=clock)
    health = ProcessHealth([monitor], database=lambda: None, stall_seconds=60)
    verdict = health.ready()
    assert not verdict.ok
    failing = {c.name for c in verdict.checks if not c.ok}
    assert failing == {"partitions:g-health", "lag:g-health"}

    monitor.assigned({("payments.events", 0): 100})
    monitor.stepped()  # measures: 120 - 100
    verdict = health.ready()
    assert verdict.ok, verdict.body()
    assert "20 records behind" in json.dumps(verdict.body())

    def down() -> None:
        raise ConnectionRefusedError("no")

    assert not ProcessHealth([monitor], database=down).ready().ok


def test_live_fails_when_the_loop_stops_turning() -> None:
    clock = Clock()
    monitor = LagMonitor("g-live", None, clock=clock)
    health = ProcessHealth([monitor], stall_seconds=60)
    assert health.live().ok
    clock.now += 61
    verdict = health.live()
    assert not verdict.ok and verdict.body()["status"] == "failing"
    monitor.stepped()
    assert health.live().ok
