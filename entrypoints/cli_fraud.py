"""``evledger fraud run|project|alerts|show|block|unblock|clear|evaluate``: the fraud processor
and the risk team's view of what it found (docs/fraud.md)."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess  # nosec B404  # the worker starts its sibling workers: this same command
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Any

import typer

from entrypoints.cli_ledger import _actor, _conn, _fail, console, serve_projector
from ledger.envelope import Envelope
from ledger.errors import LedgerError
from ledger.fraud.policy import InvalidFraudPolicy, Policies, policies_from
from ledger.pseudonyms import Pseudonymizer

fraud_app = typer.Typer(
    help="Fraud scoring: run the processor, see alerts, unblock tokens.", no_args_is_help=True
)
POLICY_ENV = "EVLEDGER_FRAUD_POLICY"


def register(app: typer.Typer) -> None:
    app.add_typer(fraud_app, name="fraud")


def load_policies(path: Path | None) -> Policies:
    """The policies in the TOML file ``path`` (or $EVLEDGER_FRAUD_POLICY), else the defaults.
    Raises InvalidFraudPolicy for a file that cannot be read or holds a wrong key."""
    path = path or (Path(os.environ[POLICY_ENV]) if os.environ.get(POLICY_ENV) else None)
    if path is None:
        return Policies()
    try:
        return policies_from(tomllib.loads(path.read_text()))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InvalidFraudPolicy(f"cannot read fraud policy {path}: {exc}") from exc


PolicyOption = typer.Option(
    None, "--policy", help=f"TOML fraud policy (default: ${POLICY_ENV}, else built-in defaults)"
)


@fraud_app.command("run")
def run(
    policy: Path = PolicyOption,
    workers: int = typer.Option(1, min=1, max=16, help="worker processes in the group"),
    worker_id: int = typer.Option(0, "--worker-id", min=0, help="this worker's number"),
    app_id: str = typer.Option("evledger-fraud", help="faust app id = consumer group"),
    topic_prefix: str = typer.Option(
        "", help="read <prefix><topic>, write <prefix>fraud.scores (evaluations: bench.*)"
    ),
) -> None:
    """Run fraud workers (faust-streaming, one consumer group): they score payments, sessions
    and CDRs and publish FraudScored, FraudAlertRaised and the policy's actions."""
    import faust
    from confluent_kafka.admin import AdminClient

    from connectors.topics import ensure_topic, ensure_topics
    from entrypoints.bootstrap import bootstrap
    from entrypoints.fraud_workers import WORKER_COMMAND
    from entrypoints.observe import metrics_port, serve_processors
    from processors.fraud.app import (
        LOCATIONS,
        OBSERVATIONS_RETENTION_MS,
        TABLES,
        FraudProcessor,
        faust_app,
    )
    from processors.fraud.places import PlacesReader

    try:
        policies = load_policies(policy)
    except LedgerError as exc:
        raise _fail(exc) from exc
    app = bootstrap()
    settings = app.settings
    admin = AdminClient(settings.kafka_client())
    copies = settings.replication_factor
    ensure_topics(admin, settings.partitions, copies)
    # The app's own topics exist before faust starts: declared by faust at start-up on a fresh
    # broker, the stage-two topic was "ignored as missing" by its consumer and a changelog had
    # "0 partitions" when the first record came (both seen in CI runs).
    ensure_topic(admin, f"{app_id}-observations", settings.partitions,
                 {"retention.ms": str(OBSERVATIONS_RETENTION_MS)}, replication=copies)  # fmt: skip
    for table in TABLES:
        ensure_topic(admin, f"{app_id}-{table}-changelog", settings.partitions,
                     {"cleanup.policy": "compact"}, replication=copies)  # fmt: skip
    siblings = [
        subprocess.Popen(  # nosec B603  # this same command, other worker ids
            [
                *WORKER_COMMAND,
                "fraud",
                "run",
                "--worker-id",
                str(n),
                "--app-id",
                app_id,
                "--topic-prefix",
                topic_prefix,
                *(["--policy", str(policy)] if policy else []),
            ]
        )
        for n in range(worker_id + 1, worker_id + workers)
    ]
    datadir = settings.state_dir / "fraud" / app_id / f"worker-{worker_id}"
    datadir.mkdir(parents=True, exist_ok=True)
    stream = faust_app(settings.bootstrap_servers, settings.partitions, datadir, app_id=app_id,
                       kafka=settings.kafka_client(), replication=copies)  # fmt: skip
    places = PlacesReader(settings.kafka_client(), app.serde, topic_prefix + LOCATIONS)
    known = places.load()
    places.start()
    FraudProcessor(stream, app.serde, app.publisher(), policies, places.get,
                   topic_prefix=topic_prefix)  # fmt: skip
    console.print(
        f"fraud worker {worker_id} running (group {stream.conf.id}, state in {datadir}, "
        f"{known} stations' places known; "
        f"{len(siblings)} more started; Ctrl-C stops)"
    )
    port = metrics_port(settings, "fraud", worker_id)
    telemetry = serve_processors(settings, "fraud", [], "", port=port)  # /metrics, probes
    worker = faust.Worker(stream, loglevel="WARNING", redirect_stdouts=False)
    for name in ("aiokafka", "faust", "mode"):  # their DEBUG records cost ~8% of a worker's CPU
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        worker.execute_from_commandline()
    finally:
        for sibling in siblings:
            sibling.terminate()
        for sibling in siblings:
            sibling.wait(timeout=30)
        if telemetry is not None:
            telemetry.close()
        places.close()


@fraud_app.command("evaluate")
def evaluate(
    sessions: int = typer.Option(10_000, min=100, help="normal sessions in the population"),
    seed: int = typer.Option(7, help="the population's seed (same seed, same population)"),
    workers: int = typer.Option(1, min=1, max=8, help="fraud workers (on the broker)"),
    offline: bool = typer.Option(False, help="run the rules in this process, not on Kafka"),
    policy: Path = PolicyOption,
    output: Path = typer.Option(
        Path("bench/results/fraud-evaluate.json"), help="where the report is written"
    ),
    timeout: float = typer.Option(900.0, help="seconds the workers may take"),
) -> None:
    """Precision and recall of the rules on a labelled population with scripted attacks
    (card testing, card velocity, cloned token, impossible travel, energy theft, refund
    abuse), and their false positives on its normal traffic; written to ``--output``."""
    from rich.table import Table

    from entrypoints.bootstrap import bootstrap
    from entrypoints.fraud_evaluate import evaluate_offline, evaluate_on_broker, write_report
    from entrypoints.fraud_scenario import FraudScenario

    try:
        policies = load_policies(policy)
        scenario = FraudScenario(f"fraud-eval-{seed}", sessions=sessions, seed=seed)
        if offline:
            report = evaluate_offline(scenario, policies)
        else:
            app = bootstrap()
            log = app.settings.state_dir / "logs" / "fraud-evaluate.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            console.print(f"{workers} fraud worker(s) scoring {sessions:,} sessions; log: {log}")
            report = evaluate_on_broker(app, scenario, workers=workers, policy=policy,
                                        timeout=timeout, log=log)  # fmt: skip
    except LedgerError as exc:
        raise _fail(exc) from exc
    table = Table("attack", "Injected", "Detected", title=f"fraud evaluation ({report.mode})")
    for attack, counts in report.by_attack.items():
        table.add_row(attack, str(counts["injected"]), str(counts["detected"]))
    console.print(table)
    console.print(
        f"{report.events:,} events, {report.sessions:,} normal sessions, {report.attacks} attacks"
        f" in {report.seconds:.1f}s ({report.events / max(report.seconds, 1e-9):,.0f} events/s)\n"
        f"alerts {report.alerts} = {report.true_alerts} on attacks + {report.false_alerts} false;"
        f" precision {report.precision:.3f}, recall {report.recall:.3f}, false positives"
        f" {report.false_positives_per_10k_sessions:.2f} per 10,000 normal sessions"
    )
    if report.false_subjects:
        console.print("false positives: " + ", ".join(report.false_subjects[:20]))
    write_report(report, output)
    console.print(f"report written to {output}")


# -- the projection and the risk team's commands ------------------------------------------------
Network = typer.Option(..., "--network", help="the network (tenant) of the subject")
Reason = typer.Option(..., "--reason", help="why, for the record")
Actor = typer.Option(None, "--actor", help="who acts (default: the OS user)")


@fraud_app.command("project")
def project(
    drain: bool = typer.Option(False, "--drain", help="stop once nothing arrives for 3 s"),
    group: str = typer.Option("evledger-fraud-projector", help="consumer group"),
) -> None:
    """Run the fraud projector: fraud.scores into PostgreSQL (scores, alerts, blocks), exactly
    once, for `evledger fraud alerts|show`, the API and the settlement connector's checks."""
    from processors.fraud.projector import build_fraud_projector

    serve_projector(lambda app: build_fraud_projector(app, group=group), "fraud-projector", drain)


@fraud_app.command("score")
def score(
    policy: Path = PolicyOption,
    drain: bool = typer.Option(False, "--drain", help="stop once nothing arrives for 3 s"),
    group: str = typer.Option("evledger-fraud-batch", help="consumer group"),
) -> None:
    """Run the batch fraud scorer: the same rules and outputs as `fraud run`, on the exactly-once
    loop of the other processors, its state in PostgreSQL (docs/fraud.md, "The batch scorer").
    Run one group of scorers or the faust workers, not both."""
    from processors.fraud.app import LOCATIONS
    from processors.fraud.batch import build_fraud_batch_processor
    from processors.fraud.places import PlacesReader

    try:
        policies = load_policies(policy)
    except LedgerError as exc:
        raise _fail(exc) from exc

    def build(app: Any) -> Any:
        places = PlacesReader(app.settings.kafka_client(), app.serde, LOCATIONS)
        console.print(f"{places.load():,} stations' places read from {LOCATIONS}")
        places.start()
        return build_fraud_batch_processor(app, policies, places.get, group=group)

    serve_projector(build, "fraud-scorer", drain)


@fraud_app.command("alerts")
def alerts(
    network: str | None = typer.Option(None, "--network", help="only this network's"),
    since: datetime | None = typer.Option(None, help="raised at or after (ISO time)"),
    limit: int = typer.Option(50, min=1, max=10_000),
) -> None:
    """Fraud alerts, newest first: subject, score, action, rules and the reason."""
    from rich.table import Table

    from connectors import fraud_store

    with _conn() as conn:
        rows = fraud_store.alerts(conn, network, since=since, limit=limit)
    table = Table("raised", "network", "subject", "score", "action", "reason", title="fraud alerts")
    for r in rows:
        review = f" ({r['review_status']})" if r["review_status"] else ""
        table.add_row(f"{r['raised_at']:%Y-%m-%d %H:%M}", r["network_id"], r["subject"],
                      f"{r['score']:.2f}", r["action"] + review, r["reason"])  # fmt: skip
    console.print(table)
    console.print(f"{len(rows)} alert(s); `evledger fraud show SUBJECT --network N` explains one")


@fraud_app.command("show")
def show(subject: str, network: str = Network) -> None:
    """A subject (token:, card:, station:, terminal:) as the risk team sees it: block state and
    history, alerts, and its latest scores with every rule's evidence."""
    from connectors import fraud_store

    try:
        with _conn() as conn:
            view = fraud_store.typed_subject_view(conn, network, subject, _pseudonyms())
    except LedgerError as exc:
        raise _fail(exc) from exc
    block = view["block"]
    state = "never blocked"
    if block:
        verb = "blocked" if block["blocked"] else "unblocked"
        since = f"{block['changed_at']:%Y-%m-%d %H:%M}"
        state = f"{verb} since {since} by {block['actor']}: {block['reason']}"
    console.print(f"[bold]{subject}[/] in {network}: {state}")
    for change in view["block_history"]:
        verb = "blocked" if change["blocked"] else "unblocked"
        console.print(
            f"  {change['at']:%Y-%m-%d %H:%M} {verb} by {change['actor']}: {change['reason']}"
        )
    for alert in view["alerts"]:
        console.print(f"alert {alert['alert_id']} {alert['raised_at']:%Y-%m-%d %H:%M} "
                      f"[{alert['action']}] {alert['reason']}")  # fmt: skip
    for s in view["scores"]:
        console.print(f"score {s['score']:.2f} at {s['scored_at']:%Y-%m-%d %H:%M} "
                      f"(input {s['input_event_id']})")  # fmt: skip
        for c in s["contributions"]:
            console.print(f"  {c['rule']}: weight {c['weight']} x strength {c['strength']} "
                          f"{json.dumps(c['evidence'], sort_keys=True)}")  # fmt: skip


def _publish(event: Any) -> str:
    """Publish at the front door: a token typed here becomes its pseudonym (ledger.pseudonyms).
    Returns the subject as published."""
    from entrypoints.bootstrap import bootstrap

    app = bootstrap()
    try:
        published = app.pseudonymizer().event(event)
    except LedgerError as exc:
        raise _fail(exc) from exc
    publisher = app.publisher()
    publisher.publish(published)
    publisher.flush()
    return str(published.subject)


def _pseudonyms() -> Pseudonymizer | None:
    """The pseudonymizer a typed token is looked up with, if its key is here."""
    from connectors.personal_data import pseudonymizer_if_configured
    from connectors.settings import Settings

    return pseudonymizer_if_configured(Settings.from_env().pseudonym_key_path)


@fraud_app.command("block")
def block(
    subject: str, network: str = Network, reason: str = Reason, actor: str | None = Actor
) -> None:
    """Block a token or card by hand (TokenBlocked): its authorizations are refused."""
    from ledger.events import TokenBlocked

    _require_blockable(subject)
    published = _publish(TokenBlocked(Envelope.new(network), subject, reason, _actor(actor)))
    console.print(f"{subject} ({published}) blocked in {network}; the fraud projector records it")


@fraud_app.command("unblock")
def unblock(
    subject: str, network: str = Network, reason: str = Reason, actor: str | None = Actor
) -> None:
    """Let a blocked token or card authorize again (TokenUnblocked, with who and why)."""
    from ledger.events import TokenUnblocked

    _require_blockable(subject)
    published = _publish(TokenUnblocked(Envelope.new(network), subject, reason, _actor(actor)))
    console.print(f"{subject} ({published}) unblocked in {network}; the fraud projector records it")


def _require_blockable(subject: str) -> None:
    if not subject.startswith(("token:", "card:")):
        console.print("[red]error:[/] only token:UID and card:FINGERPRINT subjects can be blocked")
        raise typer.Exit(2)


@fraud_app.command("clear")
def clear(alert_id: str, reason: str = Reason, actor: str | None = Actor) -> None:
    """Close a review: FraudReviewCleared for the alert's payment, and the captures held for it
    (FRAUD_REVIEW_HOLD) sent again, under ids derived from the held ones."""
    from connectors import fraud_store, postgres
    from entrypoints.bootstrap import bootstrap
    from ledger import ids
    from ledger.events import CaptureRequested, FraudReviewCleared

    app = bootstrap()
    with _conn() as conn:
        found = fraud_store.alerts(conn, None, alert_id=alert_id, limit=1)
        if not found or found[0]["review_status"] is None:
            console.print(f"[red]error:[/] no review alert {alert_id}")
            raise typer.Exit(2)
        alert = found[0]
        held = fraud_store.held_captures(conn, alert["payment_id"])
    cleared = FraudReviewCleared(
        Envelope.new(alert["network_id"], causation_id=alert_id), alert["subject"],
        alert["payment_id"], _actor(actor), reason, alert_id,
    )  # fmt: skip
    # Recorded here before the held captures go out again, so the settlement connector cannot
    # meet them while the projection still shows the review open; the projector's later write
    # of the same event changes nothing.
    with postgres.connect(app.database_url, autocommit=True) as conn:
        fraud_store.record_review_cleared(conn, cleared)
    publisher = app.publisher()
    publisher.publish(cleared)
    released = 0
    for value in held:
        command = app.serde.decode("settlement.commands", value)
        if not isinstance(command, CaptureRequested):
            continue
        if command.envelope.network_id != alert["network_id"]:
            continue
        env = command.envelope
        released_id = ids.FRAUD_OUTPUTS.derive(env.event_id, "released")
        again = dataclasses.replace(env, event_id=released_id, causation_id=env.event_id)
        publisher.publish(dataclasses.replace(command, envelope=again))
        released += 1
    publisher.flush()
    console.print(f"review of {alert['payment_id']} cleared; {released} held capture(s) sent again")
