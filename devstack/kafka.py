"""A single-node Apache Kafka 4.x in KRaft mode (combined broker + controller) from Maven jars."""

from __future__ import annotations

import subprocess
from importlib import resources
from pathlib import Path

from confluent_kafka.admin import AdminClient

from connectors.settings import Settings
from devstack.java import find_java, run_maven
from devstack.process import ManagedProcess, ServiceError


class LocalKafka:
    name = "kafka"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = settings.state_dir / "kafka"
        self.libs = self.dir / f"libs-{settings.kafka_version}"
        self.data = self.dir / "data"
        self.config = self.dir / "server.properties"
        self.log = self.dir / "server.log"
        self.process = ManagedProcess("kafka", self.dir, self.dir / "stdout.log")

    # -- install ------------------------------------------------------------------------------
    def install(self) -> None:
        """Resolve the broker jars with Maven (once per version) and write the configuration."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if not (self.libs / f"kafka_2.13-{self.settings.kafka_version}.jar").exists():
            pom = resources.files("devstack.resources").joinpath("kafka-pom.xml").read_text()
            (self.dir / "pom.xml").write_text(
                pom.replace("@KAFKA_VERSION@", self.settings.kafka_version)
            )
            run_maven(
                ["dependency:copy-dependencies", f"-DoutputDirectory={self.libs}"],
                cwd=self.dir,
                log=self.dir / "maven.log",
            )
        log4j = resources.files("devstack.resources").joinpath("kafka-log4j2.properties")
        (self.dir / "log4j2.properties").write_text(log4j.read_text())
        self.config.write_text(self._properties())
        if not (self.data / "meta.properties").exists():
            self._format()

    def _properties(self) -> str:
        s = self.settings
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "listeners": f"PLAINTEXT://127.0.0.1:{s.kafka_port},CONTROLLER://127.0.0.1:{s.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{s.kafka_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            # 4.x refuses --standalone together with controller.quorum.voters.
            "controller.quorum.bootstrap.servers": f"127.0.0.1:{s.controller_port}",
            "log.dirs": str(self.data),
            "num.partitions": str(s.partitions),
            # One node: every internal topic at replication 1, or transactions and idempotent
            # producers cannot start.
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            "log.retention.hours": "-1",
        }
        return "".join(f"{k}={v}\n" for k, v in props.items())

    def _java_cmd(self) -> list[str]:
        return [
            find_java(17, self.settings.java_home),
            f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.dir}",
            "-cp",
            f"{self.libs}/*",
        ]

    def _format(self) -> None:
        java = self._java_cmd()
        cluster_id = (
            subprocess.run(
                [*java, "kafka.tools.StorageTool", "random-uuid"],
                capture_output=True,
                text=True,
                check=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        result = subprocess.run(
            [
                *java,
                "kafka.tools.StorageTool",
                "format",
                "-c",
                str(self.config),
                "-t",
                cluster_id,
                "--standalone",
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
        try:
            admin = AdminClient(
                {"bootstrap.servers": self.settings.bootstrap_servers, "log_level": 0}
            )
            admin.list_topics(timeout=2)
            return True
        except Exception:
            return False

    def stop(self) -> bool:
        return self.process.stop(timeout=30)

    def logs(self) -> Path:
        return self.log
