"""The local stack: Kafka (KRaft), Apicurio Registry and PostgreSQL, started as real processes.

``up`` is idempotent: it installs what is missing (Maven jars, PostgreSQL data dir), starts what
is not running, and returns only when each service answers a real request (the admin client
lists topics, the registry lists subjects, SQL answers). With a Docker engine the same services
come from ``docker/compose.yml`` instead.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from confluent_kafka.admin import AdminClient

from connectors import personal_data, postgres
from connectors.settings import Settings, recorded_brokers
from connectors.topics import ensure_topics
from devstack.kafka import LocalKafkaCluster
from devstack.postgres import LocalPostgres
from devstack.process import ServiceError
from devstack.registry import LocalRegistry
from schemas.registry import Registry

Report = Callable[[str], None]
COMPOSE_FILE = Path(__file__).resolve().parent.parent / "docker" / "compose.yml"


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    running: bool
    ready: bool
    address: str
    pid: int | None = None


def docker_engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


class Stack:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.kafka = LocalKafkaCluster(settings)
        self.registry = LocalRegistry(settings)
        self.postgres = LocalPostgres(settings)

    @property
    def mode(self) -> str:
        if self.settings.stack != "auto":
            return self.settings.stack
        return "docker" if docker_engine_answers() else "local"

    @property
    def database_url(self) -> str:
        return self.settings.database_url or self.postgres.url

    # -- up ---------------------------------------------------------------------------------
    def up(self, report: Report = print) -> None:
        """Install, start and wait for every service, then create topics, register schemas and
        migrate the database. Raises ServiceError naming the service that failed."""
        mode = self.mode
        started = time.monotonic()
        if mode == "docker":
            report(f"starting services with docker compose ({COMPOSE_FILE})")
            subprocess.run(["docker", "compose", "-f", str(COMPOSE_FILE), "up", "-d"], check=True)
        elif mode == "local":
            self.settings.state_dir.mkdir(parents=True, exist_ok=True)
            report(f"state directory: {self.settings.state_dir}")
            self._switch_brokers(report)
            self._local_keys(report)
            report(f"kafka {self.settings.kafka_version}: resolving jars from Maven Central")
            self.kafka.install()
            report(f"apicurio registry {self.settings.apicurio_version}: resolving bundle")
            self.registry.install()
            if not self.settings.database_url:
                report("postgresql: preparing data directory (pgserver binaries)")
                self.postgres.install()
                self.postgres.start()
            self.kafka.start()
        self._wait(self.kafka.ready, "Kafka", 90, self.kafka.log, report)
        created = ensure_topics(
            AdminClient(self.settings.kafka_client()),
            self.settings.partitions,
            self.settings.replication_factor,
        )
        report(f"kafka ready on {self.settings.bootstrap_servers}; topics created: {len(created)}")
        if mode == "local":
            self.registry.start()
        self._wait(self.postgres_ready, "PostgreSQL", 60, self.postgres.log, report)
        applied = postgres.migrate(self.database_url)
        report(f"postgresql ready; migrations applied: {', '.join(applied) or 'none pending'}")
        self._wait(self.registry.ready, "Apicurio Registry", 180, self.registry.log, report)
        registry = Registry(self.settings.registry_url, self.settings.registry_client())
        registry.set_global_compatibility()
        ids = registry.register_all()
        report(f"registry ready at {self.settings.registry_url}; {len(ids)} subjects, BACKWARD")
        report(f"stack up in {time.monotonic() - started:.1f}s")

    def _local_keys(self, report: Report) -> None:
        """The local stack's master key file (personal data) and pseudonym key (tokens), made
        once; configured files are the operator's and are never made here."""
        path = self.settings.master_key_path
        if not self.settings.master_key_file and personal_data.ensure_key_file(path):
            report(f"master key for personal data made: {path} (mode 600)")
        path = self.settings.pseudonym_key_path
        if not self.settings.pseudonym_key_file and personal_data.ensure_pseudonym_key(path):
            report(f"pseudonym key for tokens made: {path} (mode 600)")

    def _switch_brokers(self, report: Report) -> None:
        """Record the broker count (later commands find every node); a stack started before
        with another count is stopped first: its nodes' data stay, the new layout starts empty."""
        recorded = self.settings.state_dir / "kafka" / "brokers"
        before = recorded_brokers(self.settings.state_dir)
        if before != self.settings.brokers and recorded.parent.exists():
            old = replace(self.settings, brokers=before, bootstrap_servers="",
                                      replication_factor=0)  # fmt: skip
            if LocalKafkaCluster(old).stop():
                report(f"kafka: stopped the {before}-node layout")
            report(f"kafka: {self.settings.brokers} node(s) now; the {before}-node layout's "
                   "data stay in its directories")  # fmt: skip
        recorded.parent.mkdir(parents=True, exist_ok=True)
        recorded.write_text(f"{self.settings.brokers}\n")
        if self.settings.brokers > 1:
            report(f"kafka: {self.settings.brokers} nodes at {self.settings.bootstrap_servers}, "
                   f"topics in {self.settings.replication_factor} copies")  # fmt: skip

    def postgres_ready(self) -> bool:
        try:
            with postgres.connect(self.database_url) as conn:
                conn.execute("select 1")
            return True
        except Exception:
            return False

    def _wait(
        self, ready: Callable[[], bool], what: str, timeout: float, log: Path, report: Report
    ) -> None:
        deadline = time.monotonic() + timeout
        announced = False
        while not ready():
            if time.monotonic() > deadline:
                tail = (
                    "\n".join(log.read_text(errors="replace").splitlines()[-25:])
                    if log.exists()
                    else ""
                )
                raise ServiceError(f"{what} was not ready after {timeout:.0f}s. Log {log}:\n{tail}")
            if not announced:
                report(f"waiting for {what}...")
                announced = True
            time.sleep(0.5)

    # -- down / status ----------------------------------------------------------------------
    def down(self, report: Report = print) -> None:
        if self.mode == "docker":
            subprocess.run(["docker", "compose", "-f", str(COMPOSE_FILE), "down"], check=True)
            return
        # Registry first (it writes to Kafka), Kafka last but one, PostgreSQL last.
        for name, stop in (
            ("registry", self.registry.stop),
            ("kafka", self.kafka.stop),
            ("postgresql", self.postgres.stop),
        ):
            report(f"{name}: {'stopped' if stop() else 'was not running'}")

    def status(self) -> list[ServiceStatus]:
        s = self.settings
        return [
            ServiceStatus(
                "kafka",
                self.kafka.process.pid() is not None,
                self.kafka.ready(),
                s.bootstrap_servers,
                self.kafka.process.pid(),
            ),
            ServiceStatus(
                "registry",
                self.registry.process.pid() is not None,
                self.registry.ready(),
                s.registry_url,
                self.registry.process.pid(),
            ),
            ServiceStatus(
                "postgres",
                (self.postgres.data / "postmaster.pid").exists(),
                self.postgres_ready(),
                self.database_url,
            ),
        ]

    def log_file(self, service: str) -> Path:
        logs = {
            "kafka": self.kafka.log,
            "registry": self.registry.log,
            "postgres": self.postgres.log,
        }
        if service not in logs:
            raise ServiceError(f"unknown service {service!r}; choose one of {', '.join(logs)}")
        return logs[service]
