"""Settings for every evledger process, read once from the environment and validated at start.

Every variable is ``EVLEDGER_<NAME>``; an ``EVLEDGER_*`` variable we do not know is an error (a
typo must not silently fall back to a default). See the configuration table in README.md.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ledger.errors import ValidationError

PREFIX = "EVLEDGER_"


class SettingsError(ValidationError):
    code = "INVALID_SETTINGS"


@dataclass(frozen=True)
class Settings:
    """Everything a process needs to connect; defaults describe the local stack."""

    home: Path = Path(".evledger")
    kafka_port: int = 19092
    controller_port: int = 19093
    registry_port: int = 18081
    registry_management_port: int = 19000
    postgres_port: int = 15432
    bootstrap_servers: str = ""
    registry_url: str = ""
    registry_username: str = ""
    """Basic-auth user of the schema registry (Confluent Cloud: the Schema Registry API key);
    with ``registry_password``. Empty: no credentials."""
    registry_password: str = dataclasses.field(default="", repr=False)
    """Never logged (left out of the settings' repr)."""
    registry_ca_file: str = ""
    """PEM file of the CA that signed the registry's certificate (empty: the system's CAs)."""
    kafka_security_protocol: str = "PLAINTEXT"
    """PLAINTEXT, SSL (TLS; with a client certificate: mTLS), SASL_PLAINTEXT or SASL_SSL
    (Confluent Cloud: SASL_SSL with PLAIN; self-managed: SCRAM-SHA-512), for every client."""
    kafka_ssl_ca_file: str = ""
    """PEM file of the CA that signed the brokers' certificates (empty: the system's CAs)."""
    kafka_ssl_cert_file: str = ""
    """PEM certificate this process presents to the brokers (mTLS), with KAFKA_SSL_KEY_FILE."""
    kafka_ssl_key_file: str = ""
    """PEM private key of KAFKA_SSL_CERT_FILE."""
    kafka_sasl_mechanism: str = ""
    """PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (with a SASL_* protocol)."""
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = dataclasses.field(default="", repr=False)
    """Never logged (left out of the settings' repr); from the environment or a secret store."""
    database_url: str = ""
    network_id: str = "demo-network"
    partitions: int = 6
    brokers: int = 0
    """Kafka nodes of the local stack (`evledger stack up --brokers 3`); 0: as many as the stack
    was last started with (recorded in <home>/kafka/brokers), else 1."""
    replication_factor: int = 0
    """Copies of every topic the stack creates; 0: as many as there are brokers, at most 3. With
    3 each topic also gets min.insync.replicas=2, and the producers' acks=all waits for two."""
    kafka_version: str = "4.3.1"
    apicurio_version: str = "3.3.3"
    java_home: str = ""
    registry_java_home: str = ""
    kafka_heap: str = "1g"
    registry_heap: str = "512m"
    stack: str = "auto"  # auto | local | docker | external
    max_future_skew_seconds: int = 300
    """How far an event's times may lie past its log time (or, when publishing, past now)
    before it is refused as FUTURE_TIMESTAMP: allowed device clock drift (docs/input-rules.md)."""
    gl_mapping: str = ""
    """TOML file mapping account patterns to the general ledger's numbers (journal export)."""
    vat_rates: str = ""
    """TOML file of standard VAT rates by country and date, replacing the defaults' countries
    (ledger.accounting.vat_rates)."""
    books_time_zone: str = "UTC"
    """IANA zone of the books: where a day and a month begin for revenue and VAT periods and for
    a bare date given to --as-of (docs/finance-queries.md)."""
    webhook_max_body_bytes: int = 1_048_576
    """Largest webhook body the receiver reads (413 beyond); provider webhooks are a few KB."""
    webhook_max_json_depth: int = 32
    """Deepest JSON nesting the receiver parses; a Stripe event nests about 8 levels."""
    audit_signing_key_file: str = ""
    master_key_file: str = ""
    pseudonym_key_file: str = ""
    """File of the key that pseudonymizes tokens and card fingerprints at the front door
    (docs/security.md); empty: <home>/pseudonym.key, made by `evledger stack up` locally."""
    """File of the master keys that wrap each data subject's key (docs/security.md, "Personal
    data"); empty: <home>/master.keys, made by `evledger stack up` for the local stack."""
    """PEM file of the Ed25519 key that signs journal checkpoints (`evledger audit keygen`)."""
    ingest_max_body_bytes: int = 4_194_304
    """Largest body POST /v1/events reads (413 beyond, before parsing; docs/ingest.md)."""
    ingest_max_batch: int = 1000
    """Most events in one POST /v1/events/batch (422 beyond)."""
    ingest_max_string: int = 1_000_000
    """Longest JSON string ingest reads; the input rules bound each field more tightly."""
    ingest_max_depth: int = 16
    """Deepest JSON nesting ingest reads (an event nests about 5 levels)."""
    ingest_requests_per_connection: int = 10
    """Requests ingest answers on one keep-alive connection before it closes it, so a few
    long-lived clients spread over the workers (0: never close; docs/ingest.md)."""
    metrics_port: int = -1
    """Port of a process's /metrics, /livez and /readyz: -1 its own default, 0 none
    (docs/observability.md)."""
    metrics_host: str = "127.0.0.1"
    """Address the metrics server listens on (0.0.0.0 in a container)."""
    log_format: str = "auto"
    """json, human, or auto (human on a terminal, JSON otherwise)."""

    def __post_init__(self) -> None:
        if self.brokers == 0:
            object.__setattr__(self, "brokers", recorded_brokers(self.state_dir))
        if not 1 <= self.brokers <= 9:
            raise SettingsError("EVLEDGER_BROKERS must be between 1 and 9")
        if self.replication_factor == 0:
            object.__setattr__(self, "replication_factor", min(3, self.brokers))
        if not self.bootstrap_servers:
            nodes = (f"127.0.0.1:{self.kafka_port + 2 * n}" for n in range(self.brokers))
            object.__setattr__(self, "bootstrap_servers", ",".join(nodes))
        if not self.registry_url:
            url = f"http://127.0.0.1:{self.registry_port}/apis/ccompat/v7"
            object.__setattr__(self, "registry_url", url)
        if bool(self.registry_username) != bool(self.registry_password):
            raise SettingsError(
                "EVLEDGER_REGISTRY_USERNAME and EVLEDGER_REGISTRY_PASSWORD go together"
            )
        if self.stack not in {"auto", "local", "docker", "external"}:
            raise SettingsError(
                f"EVLEDGER_STACK must be auto, local, docker or external, not {self.stack!r}"
            )
        for name in ("webhook_max_body_bytes", "webhook_max_json_depth", "ingest_max_body_bytes",
                     "ingest_max_batch", "ingest_max_string", "ingest_max_depth"):  # fmt: skip
            if getattr(self, name) < 1:  # a typo must not lift the limit
                raise SettingsError(f"{PREFIX}{name.upper()} must be a positive integer")
        if self.ingest_requests_per_connection < 0:
            raise SettingsError(f"{PREFIX}INGEST_REQUESTS_PER_CONNECTION must be 0 or more")
        if self.log_format not in ("auto", "json", "human"):
            raise SettingsError(
                f"EVLEDGER_LOG_FORMAT must be auto, json or human, not {self.log_format!r}"
            )
        if not -1 <= self.metrics_port <= 65535:
            raise SettingsError("EVLEDGER_METRICS_PORT must be -1 (default), 0 (off) or a port")
        if self.max_future_skew_seconds < 0:
            raise SettingsError("EVLEDGER_MAX_FUTURE_SKEW_SECONDS cannot be negative")
        try:
            ZoneInfo(self.books_time_zone)
        except (ValueError, ZoneInfoNotFoundError):
            raise SettingsError(
                f"EVLEDGER_BOOKS_TIME_ZONE must be an IANA zone such as Europe/Berlin, not "
                f"{self.books_time_zone!r}"
            ) from None
        self._check_kafka_security()
        if self.replication_factor < 1:
            raise SettingsError("EVLEDGER_REPLICATION_FACTOR must be at least 1")
        if self.partitions < 1:
            raise SettingsError("EVLEDGER_PARTITIONS must be at least 1")

    def _check_kafka_security(self) -> None:
        protocol = self.kafka_security_protocol
        if protocol not in KAFKA_PROTOCOLS:
            raise SettingsError(
                f"EVLEDGER_KAFKA_SECURITY_PROTOCOL must be one of {', '.join(KAFKA_PROTOCOLS)}, "
                f"not {protocol!r}"
            )
        if bool(self.kafka_ssl_cert_file) != bool(self.kafka_ssl_key_file):
            raise SettingsError(
                "EVLEDGER_KAFKA_SSL_CERT_FILE and EVLEDGER_KAFKA_SSL_KEY_FILE go together "
                "(a client certificate and its key)"
            )
        if protocol.startswith("SASL"):
            if self.kafka_sasl_mechanism not in SASL_MECHANISMS:
                raise SettingsError(
                    f"{protocol} needs EVLEDGER_KAFKA_SASL_MECHANISM: one of "
                    f"{', '.join(SASL_MECHANISMS)}"
                )
            if not (self.kafka_sasl_username and self.kafka_sasl_password):
                raise SettingsError(
                    f"{protocol} needs EVLEDGER_KAFKA_SASL_USERNAME and "
                    "EVLEDGER_KAFKA_SASL_PASSWORD"
                )
        elif self.kafka_sasl_mechanism or self.kafka_sasl_username:
            raise SettingsError(
                f"SASL settings given but EVLEDGER_KAFKA_SECURITY_PROTOCOL is {protocol}: "
                "use SASL_SSL (or SASL_PLAINTEXT)"
            )

    def registry_client(self) -> dict[str, Any]:
        """The schema registry client's settings: its URL and, when set, basic-auth
        credentials and the CA that signed its certificate."""
        config: dict[str, Any] = {"url": self.registry_url}
        if self.registry_username:
            config["basic.auth.user.info"] = f"{self.registry_username}:{self.registry_password}"
        if self.registry_ca_file:
            config["ssl.ca.location"] = self.registry_ca_file
        return config

    def kafka_client(self) -> dict[str, Any]:
        """The librdkafka settings every evledger client uses: the brokers and how to reach
        them securely (a producer, consumer or admin client adds its own)."""
        config: dict[str, Any] = {"bootstrap.servers": self.bootstrap_servers}
        if self.kafka_security_protocol != "PLAINTEXT":
            config["security.protocol"] = self.kafka_security_protocol
        if self.kafka_ssl_ca_file:
            config["ssl.ca.location"] = self.kafka_ssl_ca_file
        if self.kafka_ssl_cert_file:
            config["ssl.certificate.location"] = self.kafka_ssl_cert_file
            config["ssl.key.location"] = self.kafka_ssl_key_file
        if self.kafka_security_protocol.startswith("SASL"):
            config["sasl.mechanism"] = self.kafka_sasl_mechanism
            config["sasl.username"] = self.kafka_sasl_username
            config["sasl.password"] = self.kafka_sasl_password
        return config

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``EVLEDGER_*`` variables. Raises SettingsError on unknown keys
        or values that do not parse."""
        environ = os.environ if environ is None else environ
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for key, raw in environ.items():
            if not key.startswith(PREFIX):
                continue
            name = key[len(PREFIX) :].lower()
            if name not in fields:
                known = ", ".join(PREFIX + n.upper() for n in sorted(fields))
                raise SettingsError(f"unknown setting {key}; known settings: {known}")
            values[name] = _parse(fields[name], key, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @property
    def state_dir(self) -> Path:
        return self.home.resolve()

    @property
    def master_key_path(self) -> Path:
        return (
            Path(self.master_key_file) if self.master_key_file else self.state_dir / "master.keys"
        )

    @property
    def pseudonym_key_path(self) -> Path:
        if self.pseudonym_key_file:
            return Path(self.pseudonym_key_file)
        return self.state_dir / "pseudonym.key"

    @property
    def local_database_url(self) -> str:
        """The database of the local stack's PostgreSQL, used when no URL is configured."""
        return f"postgresql://postgres@127.0.0.1:{self.postgres_port}/postgres"


def _parse(field: dataclasses.Field[Any], key: str, raw: str) -> Any:
    kind = field.type if isinstance(field.type, str) else field.type.__name__
    try:
        if kind == "int":
            return int(raw)
        if kind == "Path":
            return Path(raw)
        return raw
    except ValueError:
        raise SettingsError(f"{key}={raw!r} is not a valid {kind}") from None


KAFKA_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def recorded_brokers(state_dir: Path) -> int:
    """The broker count the local stack was last started with (1 when never, or unreadable)."""
    try:
        return max(1, int((state_dir / "kafka" / "brokers").read_text().strip()))
    except (OSError, ValueError):
        return 1
