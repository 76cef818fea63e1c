"""Foundation suite: raw Kafka produce/consume (the machine's limit), Avro, SDK publish/consume.

Every rate is a ratio to the raw rate measured in the same run: raw produce of pre-encoded
bytes for anything that publishes or encodes, raw consume for anything that consumes.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from bench.harness import BenchContext, Metric
from connectors.kafka import EventPublisher
from entrypoints.bootstrap import bootstrap
from ledger.envelope import Envelope, Source
from ledger.events import PaymentAuthorized
from ledger.money import Money
from schemas.avro import codec
from schemas.encoder import build_decoder, compiled_available, fastavro_decoder, fastavro_encoder

PARTITIONS = 6


def typical_events(n: int) -> list[PaymentAuthorized]:
    """PaymentAuthorized: the envelope plus ten payload fields, ~190 bytes encoded."""
    return [
        PaymentAuthorized(
            Envelope.new("bench-network", Source.terminal, correlation_id=f"S-{i}"),
            f"P-{i:09d}",
            "sandbox",
            f"pi_{i:08d}_{i:07d}",  # no 13-19 digit run: that would be a card number
            Money(5000 + i % 100, "EUR"),
            "card",
            f"S-{i:09d}",
            f"DE*EVL*E{i % 500:04d}",
            None,
        )
        for i in range(n)
    ]


def _timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _consume_all(bootstrap_servers: str, topic: str, expected: int) -> tuple[float, list[bytes]]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": f"bench-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 10,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    values: list[bytes] = []
    start = time.perf_counter()
    while len(values) < expected:
        for msg in consumer.consume(10_000, 1.0):
            if msg.error() is None:
                values.append(msg.value() or b"")
    elapsed = time.perf_counter() - start
    consumer.close()
    return elapsed, values


def run(ctx: BenchContext) -> list[Metric]:
    settings = ctx.settings
    app = bootstrap(settings)
    n = ctx.n(300_000)
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    raw_topic, sdk_topic = f"bench.raw.{uuid.uuid4().hex[:8]}", f"bench.sdk.{uuid.uuid4().hex[:8]}"
    for future in admin.create_topics(
        [NewTopic(t, PARTITIONS, 1) for t in (raw_topic, sdk_topic)]
    ).values():
        future.result()
    try:
        events = typical_events(n)
        c = codec(PaymentAuthorized)
        reference = fastavro_encoder(c)
        payloads = [reference(b"\x00\x00\x00\x00\x01", e) for e in events]
        keys = [e.payment_id for e in events]
        avg_size = sum(map(len, payloads)) / n

        # Baselines: the same producer settings as the SDK, bytes already encoded. Raw and SDK
        # publishing alternate (best of two each) after a warm-up, so drift hits both alike.
        raw = EventPublisher(settings.bootstrap_servers, app.serde)
        publisher = EventPublisher(settings.bootstrap_servers, app.serde)
        for v, k in zip(payloads[:5000], keys[:5000], strict=True):
            raw.produce_bytes(raw_topic, v, k)
        raw.flush()
        publisher.publish(events[0], topic=sdk_topic)  # registers the schema before timing
        publisher.flush()

        def produce_raw() -> None:
            for v, k in zip(payloads, keys, strict=True):
                raw.produce_bytes(raw_topic, v, k)
            raw.flush()

        def publish_sdk() -> None:
            for e in events:
                publisher.publish(e, topic=sdk_topic)
            publisher.flush()

        def publish_sdk_batch() -> None:
            for start in range(0, n, 10_000):
                publisher.publish_many(events[start : start + 10_000], topic=sdk_topic)
            publisher.flush()

        raw_s = sdk_s = batch_s = float("inf")
        for _ in range(2):
            raw_s = min(raw_s, _timed(produce_raw))
            sdk_s = min(sdk_s, _timed(publish_sdk))
            batch_s = min(batch_s, _timed(publish_sdk_batch))
        raw_produce = Metric(
            "raw_produce_preencoded",
            n / raw_s,
            "events/s",
            note=f"{avg_size:.0f}-byte values, acks=all, idempotent, lz4; best of 2",
        )
        consume_s, _ = _consume_all(settings.bootstrap_servers, raw_topic, 2 * n + 5000)
        raw_consume = Metric(
            "raw_consume", (2 * n + 5000) / consume_s, "events/s", note="no decoding"
        )

        # Avro alone (in-process).
        sample = events[: min(n, 100_000)]
        header = b"\x00\x00\x00\x00\x01"
        fast_s = _timed(lambda: [reference(header, e) for e in sample])
        encoder = app.serde._encoder(sdk_topic, PaymentAuthorized)[1]
        enc_s = _timed(lambda: [encoder(header, e) for e in sample])
        decoder = build_decoder(c)
        dec_s = _timed(lambda: [decoder(p, 5) for p in payloads[: len(sample)]])
        reference_decoder = fastavro_decoder(c)
        ref_dec_s = _timed(lambda: [reference_decoder(p, 5) for p in payloads[: len(sample)]])

        # The SDK consumer: consume + decode back to typed events.
        consumer = app.consumer(f"bench-{uuid.uuid4()}", **{"fetch.wait.max.ms": 10})
        consumer.assign_at({(sdk_topic, p): 0 for p in range(PARTITIONS)})
        decoded = 0
        start = time.perf_counter()
        while decoded < 2 * n + 1:
            batch = consumer.poll(10_000, 1.0)
            decoded += sum(1 for r in batch if r.error is None)
        sdk_consume_s = time.perf_counter() - start
        decoded_rate = decoded / sdk_consume_s
        consumer.close()
    finally:
        admin.delete_topics([raw_topic, sdk_topic])

    encoder_name = "compiled encoder" if compiled_available() else "fastavro (no compiler)"
    return [
        raw_produce,
        raw_consume,
        Metric.against(
            "avro_encode_fastavro",
            len(sample) / fast_s,
            "events/s",
            raw_produce,
            "reference encoder, in-process",
        ),
        Metric.against(
            "avro_encode_sdk",
            len(sample) / enc_s,
            "events/s",
            raw_produce,
            f"{encoder_name}, in-process",
        ),
        Metric.against(
            "avro_decode_fastavro",
            len(sample) / ref_dec_s,
            "events/s",
            raw_consume,
            "reference decoder + typed dataclass, in-process",
        ),
        Metric.against(
            "avro_decode_sdk",
            len(sample) / dec_s,
            "events/s",
            raw_consume,
            f"{encoder_name.replace('encoder', 'decoder')} to typed dataclass, in-process",
        ),
        Metric.against(
            "sdk_publish",
            n / sdk_s,
            "events/s",
            raw_produce,
            f"typed PaymentAuthorized -> Kafka, {encoder_name}, incl. flush",
        ),
        Metric.against(
            "sdk_publish_batch",
            n / batch_s,
            "events/s",
            raw_produce,
            f"publish_many (10k per call: one compiled encode call), {encoder_name}, incl. flush",
        ),
        Metric.against(
            "sdk_consume_decode",
            decoded_rate,
            "events/s",
            raw_consume,
            "EventConsumer.poll: consume + decode to typed events",
        ),
    ]
