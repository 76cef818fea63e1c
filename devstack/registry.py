"""Apicurio Registry 3.x from Maven Central, serving the Confluent-compatible API.

Storage is ``kafkasql``: schemas live in a Kafka topic, so schema ids inside old records still
resolve after a restart (the in-memory default would lose them).
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import httpx

from connectors.settings import Settings
from devstack.java import find_java, run_maven
from devstack.process import ManagedProcess

JOURNAL_TOPIC = "_apicurio-kafkasql-journal"


class LocalRegistry:
    name = "registry"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = settings.state_dir / "registry"
        self.app = self.dir / f"apicurio-registry-{settings.apicurio_version}"
        self.log = self.dir / "registry.log"
        self.process = ManagedProcess("registry", self.dir, self.log)

    def install(self) -> None:
        """Fetch the runnable bundle (classifier ``all``) once per version and unpack it."""
        if (self.app / "quarkus-run.jar").exists():
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        version = self.settings.apicurio_version
        run_maven(
            [
                "dependency:copy",
                f"-Dartifact=io.apicurio:apicurio-registry-app:{version}:tar.gz:all",
                f"-DoutputDirectory={self.dir}",
            ],
            cwd=self.dir,
            log=self.dir / "maven.log",
        )
        bundle = self.dir / f"apicurio-registry-app-{version}-all.tar.gz"
        staging = self.dir / "unpacking"
        with tarfile.open(bundle) as tar:
            tar.extractall(staging, filter="data")
        staging.rename(self.app)
        bundle.unlink()

    def start(self) -> None:
        s = self.settings
        java = find_java(21, s.registry_java_home)  # Apicurio 3.3 is built for Java 21
        props = {
            "quarkus.http.port": s.registry_port,
            "quarkus.http.host": "127.0.0.1",
            "quarkus.management.port": s.registry_management_port,
            "quarkus.management.host": "127.0.0.1",
            "apicurio.storage.kind": "kafkasql",
            "apicurio.kafkasql.bootstrap.servers": s.bootstrap_servers,
            "apicurio.kafkasql.topic": JOURNAL_TOPIC,
            "quarkus.log.level": "INFO",
        }
        self.process.start(
            [
                java,
                f"-Xmx{s.registry_heap}",
                *(f"-D{k}={v}" for k, v in props.items()),
                "-jar",
                str(self.app / "quarkus-run.jar"),
            ],
            cwd=self.app,
        )

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.settings.registry_url}/subjects", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> bool:
        return self.process.stop(timeout=30)

    def logs(self) -> Path:
        return self.log
