"""Apache Kafka 4.x in KRaft mode from Maven jars: one node, or a cluster of several on one machine
(``EVLEDGER_BROKERS`` / ``evledger stack up --brokers 3``). Every node is broker and controller;
node n (from 1) listens on ``kafka_port + 2(n-1)`` and ``controller_port + 2(n-1)``."""

from __future__ import annotations

import subprocess
from importlib import resources
from pathlib import Path

from confluent_kafka.admin import AdminClient

from connectors.settings import Settings
from devstack.java import find_java, run_maven
from devstack.process import ManagedProcess, ServiceError


class LocalKafka:
    """One node. Alone, its files are in ``<home>/kafka``; in a cluster in ``<home>/kafka/node-N``
    (the jars are shared)."""

    name = "kafka"

    def __init__(self, settings: Settings, node: int = 1) -> None:
        self.settings = settings
        self.node = node
        home = settings.state_dir / "kafka"
        self.dir = home if settings.brokers == 1 else home / f"node-{node}"
        self.libs = home / f"libs-{settings.kafka_version}"
        self.data = self.dir / "data"
        self.config = self.dir / "server.properties"
        self.log = self.dir / "server.log"
        self.port = settings.kafka_port + 2 * (node - 1)
        self.controller_port = settings.controller_port + 2 * (node - 1)
        self.process = ManagedProcess(f"kafka-{node}", self.dir, self.dir / "stdout.log")

    # -- install ------------------------------------------------------------------------------
    def install(self) -> None:
        """Resolve the broker jars with Maven (once per version) and write the configuration."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if not (self.libs / f"kafka_2.13-{self.settings.kafka_version}.jar").exists():
            home = self.libs.parent
            pom = resources.files("devstack.resources").joinpath("kafka-pom.xml").read_text()
            (home / "pom.xml").write_text(
                pom.replace("@KAFKA_VERSION@", self.settings.kafka_version)
            )
            run_maven(
                ["dependency:copy-dependencies", f"-DoutputDirectory={self.libs}"],
                cwd=home,
                log=home / "maven.log",
            )
        log4j = resources.files("devstack.resources").joinpath("kafka-log4j2.properties")
        (self.dir / "log4j2.properties").write_text(log4j.read_text())
        self.config.write_text(self._properties())
        if self.settings.brokers == 1 and not (self.data / "meta.properties").exists():
            self._format()  # a cluster's nodes are formatted together (LocalKafkaCluster)

    def _properties(self) -> str:
        s = self.settings
        copies = str(min(3, s.brokers))  # internal topics: as many copies as there are nodes
        in_sync = str(min(2, s.brokers))  # ... of which a write needs 2 when there are 3
        props = {
            "process.roles": "broker,controller",
            "node.id": str(self.node),
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},"
            f"CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data),
            "num.partitions": str(s.partitions),
            # Every internal topic at the copies the cluster can hold: with one node at 1, or
            # transactions and idempotent producers cannot start.
            "offsets.topic.replication.factor": copies,
            "transaction.state.log.replication.factor": copies,
            "transaction.state.log.min.isr": in_sync,
            "share.coordinator.state.topic.replication.factor": copies,
            "share.coordinator.state.topic.min.isr": in_sync,
            "default.replication.factor": copies,
            "min.insync.replicas": in_sync,
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            "log.retention.hours": "-1",
        }
        if s.brokers == 1:
            # 4.x refuses --standalone together with controller.quorum.voters.
            props["controller.quorum.bootstrap.servers"] = f"127.0.0.1:{self.controller_port}"
        else:  # a static quorum of every node
            props["controller.quorum.voters"] = ",".join(
                f"{n}@127.0.0.1:{s.controller_port + 2 * (n - 1)}" for n in range(1, s.brokers + 1)
            )
        return "".join(f"{k}={v}\n" for k, v in props.items())

    def _java_cmd(self) -> list[str]:
        return [
            find_java(17, self.settings.java_home),
            f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.dir}",
            "-cp",
            f"{self.libs}/*",
        ]

    format_args: tuple[str, ...] = ()
    """More ``kafka-storage format`` arguments (a test broker's ``--add-scram`` credentials)."""

    def _format(self, cluster_id: str | None = None) -> None:
        java = self._java_cmd()
        cluster_id = cluster_id or new_cluster_id(java)
        quorum = ["--standalone"] if self.settings.brokers == 1 else []
        result = subprocess.run(
            [
                *java,
                "kafka.tools.StorageTool",
                "format",
                "-c",
                str(self.config),
                "-t",
                cluster_id,
                *quorum,
                *self.format_args,
                "--ignore-formatted",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise ServiceError(f"formatting Kafka storage failed: {result.stdout}{result.stderr}")

    # -- run ----------------------------------------------------------------------------------
    def start(self) -> None:
        heap = self.settings.kafka_heap
        java = self._java_cmd()
        self.process.start(
            [java[0], f"-Xms{heap}", f"-Xmx{heap}", *java[1:], "kafka.Kafka", str(self.config)]
        )

    def ready(self) -> bool:
        return _brokers_up(f"127.0.0.1:{self.port}") >= 1

    def stop(self) -> bool:
        return self.process.stop(timeout=30)

    def logs(self) -> Path:
        return self.log


class LocalKafkaCluster:
    """``settings.brokers`` nodes (one is the plain single node), started and stopped together;
    ``nodes`` one by one (what a chaos run does to one broker at a time)."""

    name = "kafka"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.nodes = [LocalKafka(settings, n) for n in range(1, settings.brokers + 1)]
        self.log = self.nodes[0].log
        self.process = self.nodes[0].process  # the first node's: the stack's status line

    def install(self) -> None:
        first = self.nodes[0]
        first.install()
        if len(self.nodes) == 1:
            return
        # Every node of one cluster is formatted with the same cluster id.
        cluster_id = first.dir.parent / "cluster-id"
        if not cluster_id.exists():
            cluster_id.write_text(new_cluster_id(first._java_cmd()))
        for node in self.nodes:
            node.dir.mkdir(parents=True, exist_ok=True)
            if node is not first:
                (node.dir / "log4j2.properties").write_text(
                    (first.dir / "log4j2.properties").read_text()
                )
            node.config.write_text(node._properties())
            if not (node.data / "meta.properties").exists():
                node._format(cluster_id.read_text().strip())

    def start(self) -> None:
        for node in self.nodes:
            if node.process.pid() is None:
                node.start()

    def ready(self) -> bool:
        """Every node is a live broker of the cluster."""
        return _brokers_up(self.settings.bootstrap_servers) >= len(self.nodes)

    def stop(self) -> bool:
        stopped = [node.stop() for node in reversed(self.nodes)]
        return any(stopped)


def new_cluster_id(java: list[str]) -> str:
    return (
        subprocess.run(
            [*java, "kafka.tools.StorageTool", "random-uuid"],
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )


def _brokers_up(bootstrap: str) -> int:
    """How many brokers the cluster behind ``bootstrap`` reports alive (0: none answers)."""
    try:
        admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
        return len(admin.list_topics(timeout=2).brokers)
    except Exception:
        return 0
