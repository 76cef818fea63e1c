"""Settings for reaching Kafka: brokers of the local cluster, copies, TLS and SASL."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.settings import Settings, SettingsError


def test_a_cluster_is_bootstrapped_from_every_node_and_keeps_three_copies(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, brokers=3)
    assert settings.bootstrap_servers == "127.0.0.1:19092,127.0.0.1:19094,127.0.0.1:19096"
    assert settings.replication_factor == 3
    assert Settings(home=tmp_path, brokers=5).replication_factor == 3  # at most 3 copies
    assert Settings(home=tmp_path).replication_factor == 1


def test_the_broker_count_the_stack_recorded_is_the_default(tmp_path: Path) -> None:
    (tmp_path / "kafka").mkdir()
    (tmp_path / "kafka" / "brokers").write_text("3\n")
    assert Settings(home=tmp_path).brokers == 3
    assert Settings(home=tmp_path, brokers=1).brokers == 1  # EVLEDGER_BROKERS wins
    (tmp_path / "kafka" / "brokers").write_text("garbage")
    assert Settings(home=tmp_path).brokers == 1


def test_plaintext_adds_nothing_but_the_brokers(tmp_path: Path) -> None:
    assert Settings(home=tmp_path).kafka_client() == {"bootstrap.servers": "127.0.0.1:19092"}


def test_mutual_tls_and_sasl_reach_every_client(tmp_path: Path) -> None:
    tls = Settings.from_env({
        "EVLEDGER_HOME": str(tmp_path),
        "EVLEDGER_KAFKA_SECURITY_PROTOCOL": "SSL",
        "EVLEDGER_KAFKA_SSL_CA_FILE": "/etc/ca.pem",
        "EVLEDGER_KAFKA_SSL_CERT_FILE": "/etc/me.pem",
        "EVLEDGER_KAFKA_SSL_KEY_FILE": "/etc/me.key",
    })  # fmt: skip
    assert tls.kafka_client() == {
        "bootstrap.servers": "127.0.0.1:19092",
        "security.protocol": "SSL",
        "ssl.ca.location": "/etc/ca.pem",
        "ssl.certificate.location": "/etc/me.pem",
        "ssl.key.location": "/etc/me.key",
    }
    cloud = Settings.from_env({
        "EVLEDGER_HOME": str(tmp_path),
        "EVLEDGER_BOOTSTRAP_SERVERS": "pkc-1.europe-west3.gcp.confluent.cloud:9092",
        "EVLEDGER_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "EVLEDGER_KAFKA_SASL_MECHANISM": "PLAIN",
        "EVLEDGER_KAFKA_SASL_USERNAME": "KEY",
        "EVLEDGER_KAFKA_SASL_PASSWORD": "s3cret-value",
    })  # fmt: skip
    client = cloud.kafka_client()
    assert client["security.protocol"] == "SASL_SSL" and client["sasl.mechanism"] == "PLAIN"
    assert client["sasl.username"] == "KEY" and client["sasl.password"] == "s3cret-value"
    assert "s3cret-value" not in repr(cloud)


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"EVLEDGER_KAFKA_SECURITY_PROTOCOL": "TLS"}, "must be one of"),
        ({"EVLEDGER_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "needs EVLEDGER_KAFKA_SASL_MECHANISM"),
        ({"EVLEDGER_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
          "EVLEDGER_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512"}, "needs EVLEDGER_KAFKA_SASL_USERNAME"),
        ({"EVLEDGER_KAFKA_SSL_CERT_FILE": "/etc/me.pem"}, "go together"),
        ({"EVLEDGER_KAFKA_SASL_USERNAME": "me"}, "use SASL_SSL"),
        ({"EVLEDGER_BROKERS": "10"}, "between 1 and 9"),
    ],
)  # fmt: skip
def test_inconsistent_settings_stop_the_process_saying_what_is_missing(
    tmp_path: Path, env: dict[str, str], says: str
) -> None:
    with pytest.raises(SettingsError, match=says):
        Settings.from_env({"EVLEDGER_HOME": str(tmp_path), **env})
