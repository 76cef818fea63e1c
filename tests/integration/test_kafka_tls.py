"""Kafka over TLS, as the settings configure every client: a broker of its own with two secured
listeners (certificates made here with ``cryptography``): TLS with client certificates (mTLS),
and SASL_SSL with SCRAM-SHA-512 (Confluent Cloud's style, a user the broker's storage was
formatted with). The SDK publishes and consumes evledger events through ``EVLEDGER_KAFKA_*``
settings with the broker's name verified on both; and the refusals: a client that trusts another
CA, one without a client certificate, one with a wrong SCRAM password."""

from __future__ import annotations

import ipaddress
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from connectors.settings import Settings
from connectors.topics import ensure_topic
from devstack.kafka import LocalKafka
from entrypoints.bootstrap import App, bootstrap
from ledger.envelope import Envelope, Source
from ledger.events import PaymentAuthorized
from ledger.money import Money

PLAIN, CONTROLLER, TLS, SCRAM = 28092, 28093, 28094, 28095
"""Below the kernel's ephemeral range (32768-60999): a port in it can be taken, at the moment
the broker binds, by some client's outgoing connection (a CI rehearsal saw BindException)."""
TOPIC = "payments.events"  # on the TLS broker of this test only
SCRAM_USER, SCRAM_PASSWORD = "evledger-processor", "scram-test-" + uuid.uuid4().hex
SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule required;"


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


Key = ec.EllipticCurvePrivateKey


def _issue(
    subject: str, key: Key, issuer: tuple[x509.Name, Key], *, ca: bool = False, server: bool = False
) -> x509.Certificate:
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer[0])
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(issuer[1], hashes.SHA256())


def _pem(key: Key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def make_certificates(directory: Path) -> dict[str, Path]:
    """A CA, the broker's certificate (127.0.0.1) and a client's, signed by it; and another
    CA that signed nothing here."""
    files = {}
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("evledger test CA")
    ca = _issue("evledger test CA", ca_key, (ca_name, ca_key), ca=True)
    broker_key = ec.generate_private_key(ec.SECP256R1())
    broker = _issue("127.0.0.1", broker_key, (ca_name, ca_key), server=True)
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _issue("evledger-processor", client_key, (ca_name, ca_key))
    other_key = ec.generate_private_key(ec.SECP256R1())
    other = _issue("someone else's CA", other_key, (_name("someone else's CA"), other_key),
                   ca=True)  # fmt: skip
    contents = {
        "ca.pem": _cert_pem(ca),
        "broker-keystore.pem": _pem(broker_key) + _cert_pem(broker) + _cert_pem(ca),
        "client.pem": _cert_pem(client),
        "client.key": _pem(client_key),
        "other-ca.pem": _cert_pem(other),
    }
    for name, data in contents.items():
        path = directory / name
        path.write_bytes(data)
        path.chmod(0o600)
        files[name] = path
    return files


class TlsKafka(LocalKafka):
    """One node with two more listeners: TLS with client certificates required, and SASL_SSL
    with SCRAM-SHA-512 (server certificate only)."""

    format_args = ("--add-scram", f"SCRAM-SHA-512=[name={SCRAM_USER},password={SCRAM_PASSWORD}]")

    def __init__(self, settings: Settings, certs: dict[str, Path]) -> None:
        super().__init__(settings)
        self.certs = certs

    def _properties(self) -> str:
        props = dict(line.split("=", 1) for line in super()._properties().splitlines())
        props |= {
            "listeners": f"PLAINTEXT://127.0.0.1:{PLAIN},CONTROLLER://127.0.0.1:{CONTROLLER},"
            f"SSL://127.0.0.1:{TLS},SASL_SSL://127.0.0.1:{SCRAM}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{PLAIN},SSL://127.0.0.1:{TLS},"
            f"SASL_SSL://127.0.0.1:{SCRAM}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SSL:SSL,"
            "SASL_SSL:SASL_SSL",
            "sasl.enabled.mechanisms": "SCRAM-SHA-512",
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": SCRAM_LOGIN,
            "listener.name.sasl_ssl.ssl.client.auth": "none",
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(self.certs["broker-keystore.pem"]),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.certs["ca.pem"]),
            "ssl.client.auth": "required",
        }
        return "".join(f"{k}={v}\n" for k, v in props.items())


@pytest.fixture(scope="module")
def broker(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    home = tmp_path_factory.mktemp("tls")
    certs = make_certificates(home)
    settings = Settings(home=Path(home), kafka_port=PLAIN, controller_port=CONTROLLER, brokers=1,
                        kafka_heap="256m", partitions=2)  # fmt: skip
    kafka = TlsKafka(settings, certs)
    kafka.install()
    kafka.start()
    try:
        deadline = time.monotonic() + 90
        while not kafka.ready():
            assert time.monotonic() < deadline, kafka.log.read_text()[-3000:]
            time.sleep(0.5)
        yield certs
    finally:
        kafka.stop()


def tls_settings(stack: Settings, certs: dict[str, Path], **changes: str) -> Settings:
    """The stack's settings (its registry) with Kafka reached over TLS only."""
    env = {
        "EVLEDGER_BOOTSTRAP_SERVERS": f"127.0.0.1:{TLS}",
        "EVLEDGER_REGISTRY_URL": stack.registry_url,
        "EVLEDGER_KAFKA_SECURITY_PROTOCOL": "SSL",
        "EVLEDGER_KAFKA_SSL_CA_FILE": str(certs["ca.pem"]),
        "EVLEDGER_KAFKA_SSL_CERT_FILE": str(certs["client.pem"]),
        "EVLEDGER_KAFKA_SSL_KEY_FILE": str(certs["client.key"]),
        **changes,
    }
    return Settings.from_env({k: v for k, v in env.items() if v})


def scram_settings(stack: Settings, certs: dict[str, Path], password: str) -> Settings:
    """The stack's settings with Kafka reached over SASL_SSL, SCRAM-SHA-512."""
    return Settings.from_env({
        "EVLEDGER_BOOTSTRAP_SERVERS": f"127.0.0.1:{SCRAM}",
        "EVLEDGER_REGISTRY_URL": stack.registry_url,
        "EVLEDGER_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "EVLEDGER_KAFKA_SSL_CA_FILE": str(certs["ca.pem"]),
        "EVLEDGER_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "EVLEDGER_KAFKA_SASL_USERNAME": SCRAM_USER,
        "EVLEDGER_KAFKA_SASL_PASSWORD": password,
    })  # fmt: skip


@pytest.mark.parametrize("secured", ["mtls", "scram"])
def test_the_sdk_publishes_and_consumes_over_a_secured_listener(
    stack: Settings, broker: dict[str, Path], secured: str
) -> None:
    if secured == "mtls":
        settings = tls_settings(stack, broker)
    else:
        settings = scram_settings(stack, broker, SCRAM_PASSWORD)
        assert settings.kafka_client()["sasl.mechanism"] == "SCRAM-SHA-512"
    admin = AdminClient(settings.kafka_client())
    ensure_topic(admin, TOPIC, 2)
    app: App = bootstrap(settings)
    payment = f"pay-tls-{uuid.uuid4().hex[:8]}"
    event = PaymentAuthorized(
        Envelope.new("tls-network", Source.psp), payment, "sandbox", f"ref-{payment}",
        Money(1234, "EUR"), "card",
    )  # fmt: skip
    publisher = app.publisher()
    publisher.publish(event)
    publisher.flush()
    consumer = app.consumer(f"tls-test-{uuid.uuid4().hex[:8]}")
    consumer.subscribe([TOPIC])
    mine: list[str] = []  # the topic also holds the other listener's test event
    deadline = time.monotonic() + 30
    while not mine and time.monotonic() < deadline:
        got = [r for r in consumer.poll(100, 1.0) if r.error is None]
        mine += [r.event.payment_id for r in got if r.event.payment_id == payment]
    consumer.close()
    assert mine == [payment]


def test_a_client_trusting_another_ca_is_refused(stack: Settings, broker: dict[str, Path]) -> None:
    settings = tls_settings(stack, broker, EVLEDGER_KAFKA_SSL_CA_FILE=str(broker["other-ca.pem"]))
    with pytest.raises(KafkaException):
        AdminClient({**settings.kafka_client(), "log_level": 0}).list_topics(timeout=3)


def test_a_client_without_a_certificate_is_refused(
    stack: Settings, broker: dict[str, Path]
) -> None:
    settings = tls_settings(stack, broker, EVLEDGER_KAFKA_SSL_CERT_FILE="",
                            EVLEDGER_KAFKA_SSL_KEY_FILE="")  # fmt: skip
    assert "ssl.certificate.location" not in settings.kafka_client()
    with pytest.raises(KafkaException):
        AdminClient({**settings.kafka_client(), "log_level": 0}).list_topics(timeout=3)


def test_a_wrong_scram_password_is_refused(stack: Settings, broker: dict[str, Path]) -> None:
    settings = scram_settings(stack, broker, "not-the-password")
    with pytest.raises(KafkaException):
        AdminClient({**settings.kafka_client(), "log_level": 0}).list_topics(timeout=5)
