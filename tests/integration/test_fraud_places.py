"""Station places on locations.events as the fraud workers read them: a location breaking the
input rules (a latitude beyond 90 degrees) is refused by the SDK, and one that a raw producer
wrote anyway is skipped by every worker with its reason (logged and counted), never used for
a distance."""

from __future__ import annotations

import logging
import uuid

import pytest

from connectors.metrics import FRAUD_SKIPPED
from entrypoints.bootstrap import App
from ledger.envelope import Envelope, Source
from ledger.errors import LedgerError
from ledger.events import LocationEvse, LocationPublished
from processors.fraud.places import PlacesReader

TOPIC = "locations.events"


def place(run: str, name: str, latitude: str) -> LocationPublished:
    evse = LocationEvse(f"E-{run}-{name}", f"ST-{run}-{name}", 22_000, "AC_3_PHASE")
    return LocationPublished(Envelope.new("net-places", Source.ocpi), f"LOC-{run}-{name}", name,
                             "DE", latitude, "13.404954", "Europe/Berlin", [evse])  # fmt: skip


def test_a_location_off_the_globe_is_refused_then_skipped_with_its_reason(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    run = uuid.uuid4().hex[:8]
    good, bad = place(run, "ok", "52.520008"), place(run, "bad", "91.5")
    publisher = app.publisher()
    publisher.publish(good)
    with pytest.raises(LedgerError) as refused:
        publisher.publish(bad)
    assert refused.value.code == "INVALID_COORDINATE" and "latitude" in str(refused.value)
    raw = app.serde.encoder_for(TOPIC, LocationPublished)(bad)  # what a raw producer could send
    publisher.produce_bytes(TOPIC, raw, bad.location_id.encode())
    publisher.flush()

    skipped = FRAUD_SKIPPED.labels(TOPIC, "INVALID_COORDINATE")
    before = skipped._value.get()
    reader = PlacesReader(app.settings.kafka_client(), app.serde, TOPIC)
    try:
        with caplog.at_level(logging.WARNING, logger="evledger.fraud"):
            reader.load()
    finally:
        reader.close()
    assert reader.get(f"ST-{run}-ok") is not None
    assert reader.get(f"ST-{run}-bad") is None
    assert skipped._value.get() >= before + 1
    assert any(bad.location_id in r.getMessage() and "INVALID_COORDINATE" in r.getMessage()
               for r in caplog.records)  # fmt: skip
