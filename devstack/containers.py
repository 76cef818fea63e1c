"""The stack as disposable containers (testcontainers), for a test session on a machine with a
Docker engine: ``EVLEDGER_STACK=docker``, or ``auto`` when ``docker info`` answers.

The containers are the services of ``docker/compose.yml`` (one description of the stack, the
same images, settings and host ports), started on a network of their own under their service
names, then prepared as any external stack is (``Stack`` with ``EVLEDGER_STACK=external``:
topics, schemas, migrations) and removed when the session ends. Without an engine (this
project's CI machines) the tests run against the local processes (``devstack.stack``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from connectors.settings import Settings
from devstack.stack import COMPOSE_FILE, Stack, docker_engine_answers

Report = Callable[[str], None]


@dataclass(frozen=True)
class ContainerSpec:
    """One service of the compose file, as a container to start."""

    service: str
    image: str
    env: dict[str, str]
    ports: dict[int, int]
    """container port -> host port"""


def wanted(settings: Settings, engine: Callable[[], bool] = docker_engine_answers) -> bool:
    """Whether a test session should run the stack in containers."""
    return settings.stack == "docker" or (settings.stack == "auto" and engine())


def specs(compose: Path = COMPOSE_FILE) -> list[ContainerSpec]:
    """The services of the compose file (Kafka, the registry, PostgreSQL), in start order."""
    import yaml  # a test dependency: this path runs only under the test suite

    services: dict[str, Any] = yaml.safe_load(compose.read_text())["services"]
    out = []
    for name, service in services.items():
        ports = {}
        for mapping in service.get("ports", []):
            host, container = str(mapping).split(":")
            ports[int(container)] = int(host)
        env = {k: str(v) for k, v in (service.get("environment") or {}).items()}
        out.append(ContainerSpec(name, service["image"], env, ports))
    return out


def settings_for(settings: Settings, compose: Path = COMPOSE_FILE) -> Settings:
    """The settings that reach the containers: their host ports, an external stack."""
    by_name = {s.service: s for s in specs(compose)}
    kafka = by_name["kafka"].ports
    registry = by_name["registry"].ports
    postgres = by_name["postgres"].ports
    return replace(
        settings,
        stack="external",
        brokers=1,
        replication_factor=1,
        bootstrap_servers=f"127.0.0.1:{next(iter(kafka.values()))}",
        registry_url=f"http://127.0.0.1:{registry[8080]}/apis/ccompat/v7",
        database_url=f"postgresql://postgres@127.0.0.1:{postgres[5432]}/postgres",
    )


class ContainerStack:
    """Start the compose file's services as containers, prepare them, and remove them."""

    def __init__(self, settings: Settings, compose: Path = COMPOSE_FILE) -> None:
        self.settings = settings_for(settings, compose)
        self.specs = specs(compose)
        self._containers: list[Any] = []
        self._network: Any = None

    def start(self, report: Report = print) -> Settings:
        from testcontainers.core.container import DockerContainer
        from testcontainers.core.network import Network

        self._network = Network().create()
        try:
            for spec in self.specs:
                container = DockerContainer(spec.image)
                for key, value in spec.env.items():
                    container = container.with_env(key, value)
                for inside, outside in spec.ports.items():
                    container = container.with_bind_ports(inside, outside)
                container = container.with_network(self._network).with_network_aliases(spec.service)
                report(f"container {spec.service}: {spec.image}")
                self._containers.append(container.start())
            Stack(self.settings).up(report=report)
        except BaseException:
            self.stop()
            raise
        return self.settings

    def stop(self) -> None:
        for container in reversed(self._containers):
            container.stop()
        self._containers.clear()
        if self._network is not None:
            self._network.remove()
            self._network = None
