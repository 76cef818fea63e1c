"""The deployment files hold together: the Kubernetes manifests validate against the Kubernetes
schemas (kubernetes-validate, strict), every process they and the compose file start is a real
`evledger` command whose probes point at the port it serves, each processor scales on its own
consumer group up to the partition count, every Deployment has a disruption budget, and the
image is built in two stages and runs as a user that is not root. (No Docker engine or cluster
here: what is checked is what can be without one.)"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from typer.testing import CliRunner

from connectors.settings import Settings
from entrypoints.cli import app as cli
from entrypoints.observe import DEFAULT_PORTS
from processors import drivers, ledger_projector, sessions, settlement
from processors.fraud import app as fraud_app
from processors.fraud import projector as fraud_projector

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.33.0"
GROUPS = {
    "sessions": sessions.GROUP,
    "settlement": settlement.GROUP,
    "ledger": ledger_projector.GROUP,
    "fraud": fraud_app.APP_ID,
    "fraud-projector": fraud_projector.GROUP,
    "drivers-projector": drivers.GROUP,
}
HTTP_PORTS = {"api": 8000, "ingest": 8100, "webhooks": 8090}


def manifests() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(KUBERNETES.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in manifests() if d["kind"] == kind}


def config() -> dict[str, str]:
    return dict(of_kind("ConfigMap")["evledger-config"]["data"])


def command_exists(args: list[str]) -> None:
    """``evledger ARGS --help`` parses: the command and every option given exist."""
    result = CliRunner().invoke(cli, [*args, "--help"])
    assert result.exit_code == 0, (args, result.output[-500:])


def assert_no_shared_member_id(args: list[str]) -> None:
    """Replicas of ``ledger run`` must not share its default static member id (they would
    fence each other) nor hold a leaver's partitions until its session expires."""
    if args[:2] == ["ledger", "run"]:
        assert "--no-static" in args, args


def test_kustomize_lists_every_manifest_and_nothing_else() -> None:
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    files = {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files


@pytest.mark.parametrize("doc", [d for d in manifests() if not d["apiVersion"].startswith("keda")],
                         ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")  # fmt: skip
def test_each_manifest_is_valid_kubernetes(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_settings_they_set_are_settings_evledger_knows() -> None:
    settings = Settings.from_env(config())  # raises on an unknown EVLEDGER_* name
    assert settings.replication_factor == 3 and settings.partitions >= 1


def test_every_process_is_a_real_command_probed_where_it_serves() -> None:
    deployments = of_kind("Deployment")
    assert {n.removeprefix("evledger-") for n in deployments} == set(GROUPS) | set(HTTP_PORTS)
    for name, deployment in deployments.items():
        kind = name.removeprefix("evledger-")
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        command_exists(container["args"])
        assert_no_shared_member_id(container["args"])
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        port = HTTP_PORTS.get(kind) or int(env.get("EVLEDGER_METRICS_PORT") or DEFAULT_PORTS[kind])
        assert [p["containerPort"] for p in container["ports"]] == [port], name
        assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": port}, name
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port}, name
        assert "EVLEDGER_DATABASE_URL" in env and container["resources"]["requests"], name
        # Not root, nothing writable but its own scratch volumes.
        assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_every_deployment_has_a_disruption_budget_selecting_its_pods() -> None:
    budgets = of_kind("PodDisruptionBudget")
    for name, deployment in of_kind("Deployment").items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        selector = budgets[name]["spec"]["selector"]["matchLabels"]
        assert selector.items() <= labels.items(), name
        assert budgets[name]["spec"]["maxUnavailable"] == 1


def test_each_processor_scales_on_its_own_group_up_to_the_partitions() -> None:
    scaled = of_kind("ScaledObject")
    deployments = of_kind("Deployment")
    partitions = int(config()["EVLEDGER_PARTITIONS"])
    assert {n.removeprefix("evledger-") for n in scaled} == set(GROUPS)
    for name, obj in scaled.items():
        spec = obj["spec"]
        assert spec["scaleTargetRef"]["name"] in deployments
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] == partitions, name
        (trigger,) = spec["triggers"]
        assert trigger["type"] == "kafka"
        meta = trigger["metadata"]
        assert meta["consumerGroup"] == GROUPS[name.removeprefix("evledger-")], name
        assert meta["bootstrapServers"] == config()["EVLEDGER_BOOTSTRAP_SERVERS"]
        assert int(meta["lagThreshold"]) > 0 and meta["allowIdleConsumers"] == "false"


def test_the_compose_processes_are_real_commands_with_healthchecks_on_their_ports() -> None:
    compose = yaml.safe_load((ROOT / "docker" / "compose.processors.yml").read_text())
    services = compose["services"]
    partitions = Settings().partitions
    for name, service in services.items():
        command_exists(service["command"])
        assert_no_shared_member_id(service["command"])
        if name == "init":
            assert service["command"] == ["stack", "up"]
            continue
        check = " ".join(service["healthcheck"]["test"])
        port = HTTP_PORTS.get(name) or DEFAULT_PORTS[name]
        assert f"127.0.0.1:{port}/readyz" in check, name
        assert service.get("deploy", {}).get("replicas", 1) <= partitions
        assert service["depends_on"] == {"init": {"condition": "service_completed_successfully"}}
        Settings.from_env({**service["environment"], "EVLEDGER_PARTITIONS": str(partitions)})


def test_the_image_builds_in_two_stages_and_runs_unprivileged() -> None:
    text = (ROOT / "docker" / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+) AS (\w+)$", text, re.M)
    assert [name for _, name in stages] == ["build", "runtime"]
    build, runtime = re.split(r"^FROM .* AS runtime$", text, flags=re.M)
    assert "gcc" in build and "gcc" not in runtime  # no compiler in what runs
    users = re.findall(r"^USER (\S+)$", runtime, re.M)
    assert users and not users[-1].startswith(("0", "root"))
    assert re.search(r'^ENTRYPOINT \["evledger"\]$', runtime, re.M)
    pyproject = (ROOT / "pyproject.toml").read_text()
    packages = re.search(r"include = \[(.*?)\]", pyproject)
    assert packages is not None
    for package in re.findall(r'"(\w+)\*"', packages.group(1)):
        assert re.search(rf"^COPY {package} {package}$", build, re.M), package
