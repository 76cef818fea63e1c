"""The disposable-container stack for test sessions on machines with a Docker engine
(devstack.containers): its specs are the compose file's services, and the settings it hands the
tests reach them. No engine here, so the containers themselves are not started by this suite;
CI runs the local processes."""

from __future__ import annotations

from pathlib import Path

from connectors.settings import Settings
from devstack import containers


def test_the_containers_are_the_compose_files_services_with_pinned_images() -> None:
    specs = {s.service: s for s in containers.specs()}
    assert list(specs) == ["kafka", "registry", "postgres"]
    for spec in specs.values():
        _, _, tag = spec.image.rpartition(":")
        assert tag and tag != "latest", spec.image  # a reproducible stack
    assert specs["kafka"].ports == {19092: 19092}
    assert specs["kafka"].env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert "127.0.0.1:19092" in specs["kafka"].env["KAFKA_ADVERTISED_LISTENERS"]
    # The registry finds Kafka under its service name on the containers' network.
    assert specs["registry"].env["APICURIO_KAFKASQL_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert specs["postgres"].ports == {5432: 15432}


def test_the_tests_reach_them_as_an_external_stack(tmp_path: Path) -> None:
    reached = containers.settings_for(Settings(home=tmp_path, stack="docker"))
    assert reached.stack == "external"
    assert reached.bootstrap_servers == "127.0.0.1:19092"
    assert reached.registry_url == "http://127.0.0.1:18081/apis/ccompat/v7"
    assert reached.database_url == "postgresql://postgres@127.0.0.1:15432/postgres"
    assert reached.replication_factor == 1


def test_containers_when_asked_or_when_an_engine_answers(tmp_path: Path) -> None:
    def answers() -> bool:
        return True

    def silent() -> bool:
        return False

    assert containers.wanted(Settings(home=tmp_path, stack="docker"), engine=silent)
    assert containers.wanted(Settings(home=tmp_path, stack="auto"), engine=answers)
    assert not containers.wanted(Settings(home=tmp_path, stack="auto"), engine=silent)
    assert not containers.wanted(Settings(home=tmp_path, stack="local"), engine=answers)
    assert not containers.wanted(Settings(home=tmp_path, stack="external"), engine=answers)
