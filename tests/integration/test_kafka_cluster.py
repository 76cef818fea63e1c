"""A 3-node KRaft cluster on this machine (``evledger stack up --brokers 3``), on ports and in a
directory of its own: topics are created in 3 copies with min.insync.replicas=2, and one broker
killed while records are published (acks=all, idempotent) and started again loses nothing and
repeats nothing; with two of three down, a write is refused rather than acknowledged unsafely."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, ConfigResource

from connectors.settings import Settings
from connectors.topics import ensure_topic
from devstack.kafka import LocalKafkaCluster

TOPIC = "cluster.test"
RECORDS = 6_000


@pytest.fixture(scope="module")
def cluster(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Three nodes beside the test stack (which provides the jars' Maven cache)."""
    home = tmp_path_factory.mktemp("cluster")
    settings = Settings(home=Path(home), kafka_port=29092, controller_port=29093, brokers=3,
                        kafka_heap="384m", partitions=3)  # fmt: skip
    nodes = LocalKafkaCluster(settings)
    nodes.install()
    nodes.start()
    try:
        deadline = time.monotonic() + 120
        while not nodes.ready():
            assert time.monotonic() < deadline, nodes.nodes[0].log.read_text()[-3000:]
            time.sleep(0.5)
        yield settings
    finally:  # a scratch cluster: no need for a controlled shutdown
        for node in nodes.nodes:
            node.process.stop(timeout=2)


def test_topics_are_created_in_three_copies_needing_two(cluster: Settings) -> None:
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers})
    assert cluster.replication_factor == 3
    ensure_topic(admin, TOPIC, cluster.partitions, replication=cluster.replication_factor)
    topic = admin.list_topics(TOPIC, timeout=10).topics[TOPIC]
    assert all(len(p.replicas) == 3 and len(p.isrs) == 3 for p in topic.partitions.values())
    resource = ConfigResource(ConfigResource.Type.TOPIC, TOPIC)
    deadline = time.monotonic() + 30
    while True:  # the broker asked may learn of the new topic a moment after the controller
        try:
            config = admin.describe_configs([resource])[resource].result()
            break
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise
            assert time.monotonic() < deadline, exc
            time.sleep(0.2)
    assert config["min.insync.replicas"].value == "2"


def topic(cluster: Settings) -> None:
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers})
    ensure_topic(admin, TOPIC, cluster.partitions, replication=cluster.replication_factor)


def test_a_broker_killed_mid_stream_loses_and_repeats_nothing(cluster: Settings) -> None:
    topic(cluster)
    nodes = LocalKafkaCluster(cluster)
    producer = Producer({"bootstrap.servers": cluster.bootstrap_servers, "acks": "all",
                         "enable.idempotence": True, "linger.ms": 5})  # fmt: skip
    run = uuid.uuid4().hex[:8]
    failed: list[str] = []

    def delivered(err: object, msg: object) -> None:
        if err is not None:
            failed.append(str(err))

    victim = nodes.nodes[1]
    for i in range(RECORDS):
        producer.produce(TOPIC, f"{run}-{i}".encode(), key=str(i % 97).encode(),
                         on_delivery=delivered)  # fmt: skip
        producer.poll(0)
        if i == RECORDS // 3:
            producer.flush(30)
            assert victim.process.stop(timeout=0), "node 2 was not running"  # SIGKILL, at once
        if i == 2 * RECORDS // 3:
            victim.start()
    assert producer.flush(60) == 0 and failed == []

    consumer = Consumer({"bootstrap.servers": cluster.bootstrap_servers,
                         "group.id": f"cluster-test-{run}", "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})  # fmt: skip
    consumer.subscribe([TOPIC])
    seen: list[str] = []
    deadline = time.monotonic() + 60
    while len([v for v in seen if v.startswith(run)]) < RECORDS and time.monotonic() < deadline:
        for message in consumer.consume(1000, 1.0):
            if message.error() is None:
                seen.append(message.value().decode())
    consumer.close()
    mine = [v for v in seen if v.startswith(run)]
    assert len(mine) == RECORDS and len(set(mine)) == RECORDS  # all there, none twice

    deadline = time.monotonic() + 60
    while not nodes.ready():  # node 2 rejoined
        assert time.monotonic() < deadline
        time.sleep(0.5)


def test_with_two_brokers_down_a_write_is_refused_not_lost(cluster: Settings) -> None:
    topic(cluster)
    nodes = LocalKafkaCluster(cluster)
    producer = Producer({"bootstrap.servers": cluster.bootstrap_servers, "acks": "all",
                         "enable.idempotence": True, "message.timeout.ms": 5000})  # fmt: skip
    errors: list[str] = []

    def refused(err: object, _msg: object) -> None:
        if err is not None:
            errors.append(str(err))

    down = nodes.nodes[1:]
    for node in down:
        node.process.stop(timeout=0)  # SIGKILL
    try:
        producer.produce(TOPIC, b"needs two copies", on_delivery=refused)
        producer.flush(20)
    except KafkaException as exc:  # refused at once: also a refusal
        errors.append(str(exc))
    finally:
        for node in down:
            node.start()
    assert errors, "a write with one of three copies in sync was acknowledged"
