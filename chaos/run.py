"""One chaos run: the whole money flow under a simulated network while faults strike, then the
independent checker (``chaos.checker``) and a report.

The flow: upstream traffic (authorization instructions and OCPP sessions, with duplicates,
reordered and late meter values, reused event ids and malformed records mixed in) -> the sessions
processor -> the settlement connector -> the sandbox provider, served as a process of its own so
its state outlives the connectors -> the ledger projector; beside them the fraud workers (faust)
score payments, sessions and CDRs, and the fraud projector books their scores. Each processor
runs as processes of its own in one consumer group (two instances of the sessions processor and
of the ledger projector: the killed one's partitions move to the other and back), on a fresh
database, reading from the log's end at the start.

Faults (``chaos.plan``): kill -9 of every kind of process, one Kafka node (or the broker) and
PostgreSQL stopped without a checkpoint, the provider timing out after applying captures,
refusing authorizations and answering late. A process that dies by itself is restarted too, and
the report says so.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from chaos import checker
from chaos.plan import Fault, Injections, plan
from connectors import postgres, sessions_store
from connectors.settings import PREFIX, Settings
from devstack.kafka import LocalKafkaCluster
from devstack.postgres import LocalPostgres
from devstack.stack import Stack
from entrypoints.bootstrap import bootstrap
from entrypoints.simulate import ChargingNetworkFlow
from ledger import events as ev
from processors.fraud.app import TABLES as FRAUD_TABLES
from processors.ledger_projector import TOPICS as LEDGER_TOPICS
from processors.sessions import TOPICS as SESSIONS_TOPICS

ROOT = Path(__file__).resolve().parents[1]
REPORTS = ROOT / "chaos" / "reports"
PROVIDER = "acquirer"
CLIENT_TIMEOUT = 2.0
SESSION_SPAN = timedelta(minutes=130)
GROUP_TOPICS = {
    "sessions": SESSIONS_TOPICS,
    "settlement": ("settlement.commands",),
    "ledger": LEDGER_TOPICS,
    "fraud-projector": ("fraud.scores",),
}
"""The processors on the exactly-once loop, and what each group reads."""
FRAUD_SOURCES = ("payments.events", "sessions.events", "billing.events")
"""What the fraud workers (faust, offsets in Kafka) read."""
INSTANCES = {"sessions": 2, "settlement": 1, "ledger": 2, "fraud": 1, "fraud-projector": 1}
PLANTS = {"commit-before-effects": "ledger", "fresh-capture-key": "settlement"}
"""The bugs ``chaos.planted`` can plant, and the kind of process that carries each."""


@dataclass
class Options:
    seed: int
    seconds: float = 150.0
    """Length of the traffic; the faults strike within it."""
    rate: float = 2.0
    """Sessions per second."""
    stations: int = 200
    own_stack: bool = True
    """A stack of its own (3 Kafka nodes, registry, PostgreSQL on ports of their own) that the
    run may break; False: the running stack, without broker and database faults (tests)."""
    plant: str | None = None
    keep_stack: bool = False
    report: Path | None = None
    settle_timeout: float = 300.0
    keep_failed: bool = True
    """A failing run keeps its database, logs and fraud topics for inspection (the planted-bug
    tests, which fail on purpose, do not)."""


def chaos_settings() -> Settings:
    """The stack a chaos run may break: beside the everyday one, never it."""
    return Settings(home=ROOT / ".evledger" / "chaos", kafka_port=27092, controller_port=27093,
                    registry_port=27081, registry_management_port=27000, postgres_port=27432,
                    brokers=3, kafka_heap="384m", partitions=3)  # fmt: skip


def settings_env(settings: Settings) -> dict[str, str]:
    """The ``EVLEDGER_*`` variables that give a child process ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(PREFIX)}
    defaults = Settings(home=settings.home, brokers=settings.brokers)
    for f in dataclasses.fields(Settings):
        value = getattr(settings, f.name)
        if value != getattr(defaults, f.name) or f.name in ("home", "brokers"):
            env[PREFIX + f.name.upper()] = str(value)
    return env


@dataclass
class Proc:
    name: str
    command: list[str]
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None
    down_until: float = 0.0
    restarts: int = 0
    deaths: list[str] = field(default_factory=list)

    def start(self) -> None:
        out = self.log.open("ab")
        self.popen = subprocess.Popen(self.command, cwd=ROOT, env=self.env, stdout=out,
                                      stderr=subprocess.STDOUT)  # fmt: skip
        out.close()

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        if self.alive():
            assert self.popen is not None
            self.popen.kill()
            self.popen.wait()

    def stop(self) -> None:
        if self.alive():
            assert self.popen is not None
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Journal:
    """What happened, when (seconds since the traffic began), for the report."""

    began: float = 0.0
    lines: list[tuple[float, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, text: str) -> None:
        with self.lock:
            self.lines.append((time.time() - self.began if self.began else 0.0, text))


@dataclass
class Outcome:
    findings: list[checker.Finding]
    report: Path | None
    injected: Counter[str]
    sessions: int

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.findings)

    @property
    def failed(self) -> list[str]:
        return [f.invariant for f in self.findings if not f.ok]


class ChaosRun:
    def __init__(self, options: Options, settings: Settings | None = None, say: Any = print):
        self.o = options
        self.say = say
        self.settings = settings or (chaos_settings() if options.own_stack else Settings.from_env())
        self.rng = random.Random(options.seed)
        self.run_id = f"{options.seed}-{uuid.uuid4().hex[:6]}"
        self.network = f"chaos-{self.run_id}"
        self.dir = ROOT / ".evledger" / "chaos-runs" / self.run_id
        self.journal = Journal()
        self.injected: Counter[str] = Counter()
        self.procs: dict[str, Proc] = {}
        self.provider: Proc | None = None
        self.stop_faults = threading.Event()
        self.faults_done = threading.Event()

    # -- the run ----------------------------------------------------------------------------
    def run(self) -> Outcome:
        """The run; whatever happens, its processes stop, and so does its own stack (unless
        ``keep_stack``)."""
        o = self.o
        if o.plant is not None and o.plant not in PLANTS:
            raise ValueError(f"unknown planted bug {o.plant!r}; one of {', '.join(PLANTS)}")
        self.dir.mkdir(parents=True, exist_ok=True)
        stack = Stack(self.settings)
        try:
            if o.own_stack:
                self.say(
                    f"chaos stack (3 Kafka nodes, registry, PostgreSQL) in {self.settings.home}"
                )
                stack.up(report=lambda line: self.say(f"  [stack] {line}"))
            return self._run()
        finally:
            self.stop_faults.set()
            for proc in [*self.procs.values(), *([self.provider] if self.provider else [])]:
                proc.kill()
            if o.own_stack and not o.keep_stack:
                stack.down(report=lambda line: self.say(f"  [stack] {line}"))

    def _run(self) -> Outcome:
        o = self.o
        started = time.time()
        app = bootstrap(self.settings)
        db_name = f"chaos_{self.run_id.replace('-', '_')}"
        url = postgres.create_database(app.database_url, db_name)
        self.env = {**settings_env(self.settings), "EVLEDGER_DATABASE_URL": url,
                    "EVLEDGER_METRICS_PORT": "0", "EVLEDGER_LOG_FORMAT": "json",
                    "PYTHONPATH": str(ROOT)}  # fmt: skip
        flow = ChargingNetworkFlow(self.network, seed=o.seed, stations=o.stations)
        groups = {kind: f"chaos-{kind}-{self.run_id}" for kind in GROUP_TOPICS}
        topics = sorted({t for ts in GROUP_TOPICS.values() for t in ts} | set(FRAUD_SOURCES))
        probe = app.consumer(f"chaos-probe-{self.run_id}")
        starts = probe.end_offsets(topics)
        probe.close()
        with postgres.connect(url) as conn:
            for kind, group in groups.items():
                postgres.store_offsets(conn, group, {k: v for k, v in starts.items()
                                                     if k[0] in GROUP_TOPICS[kind]})  # fmt: skip
            for station_id, key in flow.meter_keys().items():
                sessions_store.register_meter_key(conn, station_id, key, "chaos meter")
            conn.commit()
        self.fraud_app = f"chaos-fraud-{self.run_id}"
        self._start_fraud_group_at(starts)
        provider_url = self._start_provider()
        self._start_processes(groups, provider_url)
        publisher = app.publisher()
        publisher.publish_many([*flow.tariffs(), *flow.locations()])
        publisher.flush()
        time.sleep(6)  # the processes join their groups
        faults = plan(o.seed, o.seconds, sorted(self.procs), self.settings.brokers, o.own_stack)
        self.journal.began = time.time()
        thread = threading.Thread(target=self._strike, args=(faults, provider_url), daemon=True)
        thread.start()
        sessions = self._traffic(flow, publisher)
        self.journal.note(f"traffic done: {sessions} sessions")
        self.faults_done.wait()
        self.say(f"traffic and faults done after {time.time() - started:.0f} s; settling")
        read = {groups[k]: tuple(GROUP_TOPICS[k]) for k in groups}
        scope = checker.Scope(self.settings.bootstrap_servers, self.settings.registry_url, url,
                              provider_url, PROVIDER, self.network, read, starts,
                              {self.fraud_app: FRAUD_SOURCES})  # fmt: skip
        settled = self._settle(scope)
        self.stop_faults.set()
        thread.join(timeout=30)
        for proc in self.procs.values():  # all at once: each closes its consumer on its own
            if proc.alive() and proc.popen is not None:
                proc.popen.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            proc.stop()
        self.say(f"checking the invariants (independent checker) at {time.time() - started:.0f} s")
        findings = checker.check(scope)
        if self.provider is not None:
            self.provider.stop()
        outcome = Outcome(findings, None, self.injected, sessions)
        if o.report is not None:
            outcome.report = o.report
            self._write_report(o.report, faults, findings, sessions, settled, started)
        if outcome.ok or not o.keep_failed:
            postgres.drop_database(app.database_url, db_name)
            shutil.rmtree(self.dir, ignore_errors=True)
            self._drop_fraud_app()
        else:
            self.say(f"kept for inspection: database {db_name}, logs in {self.dir}")
        return outcome

    # -- processes --------------------------------------------------------------------------
    def _start_provider(self) -> str:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        command = [sys.executable, "-m", "entrypoints.cli", "sandbox", "serve", "--port",
                   str(port), "--name", PROVIDER]  # fmt: skip
        self.provider = Proc("provider", command, self.env, self.dir / "provider.log")
        self.provider.start()
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{url}/health", timeout=2).raise_for_status()
                return url
            except httpx.HTTPError:
                if time.monotonic() > deadline or not self.provider.alive():
                    raise RuntimeError(
                        f"the sandbox service did not start: {self.provider.log}"
                    ) from None
                time.sleep(0.3)

    def _start_processes(self, groups: dict[str, str], provider_url: str) -> None:
        providers = self.dir / "providers.toml"
        providers.write_text(
            f'[providers.{PROVIDER}]\nkind = "sandbox-http"\nurl = "{provider_url}"\n'
            f'timeout = {CLIENT_TIMEOUT}\n\n[[routing]]\nproviders = ["{PROVIDER}"]\n'
        )
        args = {
            "sessions": ["sessions", "run", "--group", groups["sessions"]],
            "settlement": ["settlement", "run", "--group", groups["settlement"], "--providers",
                           str(providers)],
            "ledger": ["ledger", "run", "--group", groups["ledger"], "--no-static"],
            "fraud": ["fraud", "run", "--app-id", self.fraud_app],
            "fraud-projector": ["fraud", "project", "--group", groups["fraud-projector"]],
        }  # fmt: skip
        planted = PLANTS.get(self.o.plant or "")
        for kind, count in INSTANCES.items():
            for n in range(1, count + 1):
                name = f"{kind}-{n}"
                head = [sys.executable, "-m", "entrypoints.cli"]
                if kind == planted:
                    head = [sys.executable, "-m", "chaos.planted", str(self.o.plant)]
                proc = Proc(name, [*head, *args[kind]], self.env, self.dir / f"{name}.log")
                proc.start()
                self.procs[name] = proc
        self.say(f"started {', '.join(self.procs)} and the provider"
                 + (f"; planted bug {self.o.plant} in {planted}" if planted else ""))  # fmt: skip

    def _start_fraud_group_at(self, starts: dict[tuple[str, int], int]) -> None:
        """The fraud workers' group (offsets in Kafka, as faust keeps them) begins where the
        run begins, like the other groups."""
        consumer = Consumer({**self.settings.kafka_client(), "group.id": self.fraud_app,
                             "enable.auto.commit": False})  # fmt: skip
        try:
            consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in starts.items()
                                     if t in FRAUD_SOURCES], asynchronous=False)  # fmt: skip
        finally:
            consumer.close()

    def _drop_fraud_app(self) -> None:
        """The run's fraud app leaves its topics (observations, table changelogs) and its
        workers' local state behind; a passing run removes them, so runs do not pile up topics
        on a stack they share."""
        names = [f"{self.fraud_app}-observations", f"{self.fraud_app}-__assignor-__leader",
                 *(f"{self.fraud_app}-{table}-changelog" for table in FRAUD_TABLES)]  # fmt: skip
        admin = AdminClient(self.settings.kafka_client())
        for future in admin.delete_topics(names, operation_timeout=30).values():
            with contextlib.suppress(KafkaException):  # already gone, or never made
                future.result()
        shutil.rmtree(self.settings.state_dir / "fraud" / self.fraud_app, ignore_errors=True)

    # -- faults -----------------------------------------------------------------------------
    def _strike(self, faults: list[Fault], provider_url: str) -> None:
        """Carry out the plan on its timeline; restart what it stopped when it is due, and any
        process that died by itself."""
        pending = list(faults)
        heals: list[tuple[float, str, Any]] = []
        admin = httpx.Client(base_url=provider_url, timeout=10)
        while not self.stop_faults.is_set():
            now = time.time() - self.journal.began
            while pending and pending[0].at <= now:
                fault = pending.pop(0)
                self.journal.note(fault.describe())
                heals.append((now + fault.down, fault.kind, self._apply(fault, admin)))
            for heal in [h for h in heals if h[0] <= now]:
                heals.remove(heal)
                heal[2]()
            for proc in self.procs.values():
                if not proc.alive() and proc.down_until <= time.time():
                    code = proc.popen.returncode if proc.popen else None
                    proc.deaths.append(f"exit {code}")
                    self.journal.note(f"{proc.name} exited by itself (code {code}); restarted")
                    proc.restarts += 1
                    proc.start()
            if not pending and not heals and not self.faults_done.is_set():
                # A counted provider fault stays until calls have used it up: it strikes even
                # when the calls it waits for come late (after a killed connector's restart).
                self.journal.note("every fault healed (counted provider faults wait for calls)")
                self.faults_done.set()
            time.sleep(0.2)
        admin.close()

    def _apply(self, fault: Fault, admin: httpx.Client) -> Any:
        """Strike; returns what heals it."""
        if fault.kind == "kill":
            proc = self.procs[fault.target]
            proc.down_until = time.time() + fault.down + 3600  # not a death of its own
            proc.kill()

            def restart() -> None:
                proc.start()
                proc.restarts += 1
                proc.down_until = 0.0
                self.journal.note(f"{proc.name} restarted")

            return restart
        if fault.kind == "broker":
            node = LocalKafkaCluster(self.settings).nodes[int(fault.target) - 1]
            node.process.stop(timeout=0)  # SIGKILL

            def start_node() -> None:
                node.start()
                self.journal.note(f"Kafka node {fault.target} started")

            return start_node
        if fault.kind == "postgres":
            database = LocalPostgres(self.settings)
            database.stop(mode="immediate")

            def start_database() -> None:
                database.start()
                self.journal.note("PostgreSQL started (recovered from its WAL)")

            return start_database
        if fault.target == "latency":
            admin.post("/admin/latency", json={"seconds": CLIENT_TIMEOUT + 1.0})
            return lambda: admin.post("/admin/latency", json={"seconds": 0.0}) and None
        kind, operation = fault.target.split(":")
        body = {"fault": kind, "operation": operation, "times": int(fault.down)}
        admin.post("/admin/faults", json=body)
        return lambda: None

    # -- traffic ----------------------------------------------------------------------------
    def _traffic(self, flow: ChargingNetworkFlow, publisher: Any) -> int:
        """Publish ``seconds * rate`` sessions evenly, with the injections mixed in."""
        o, rng, odds = self.o, self.rng, Injections()
        total = int(o.seconds * o.rate)
        sent: list[Any] = []
        for i in range(total):
            delay = self.journal.began + i / o.rate - time.time()
            if delay > 0:
                time.sleep(delay)
            burst = list(flow.session(datetime.now(UTC) - SESSION_SPAN))
            if rng.random() < odds.reordered:
                burst = self._reorder(burst)
            publisher.publish_many(burst)
            sent.extend(burst)
            if rng.random() < odds.duplicate:
                again = rng.choice(sent[-200:])
                publisher.publish_many([again])
                self.injected["duplicate"] += 1
            if rng.random() < odds.conflicting:
                states = [e for e in burst if isinstance(e, ev.ChargingStateChanged)]
                if states:
                    moved = states[-1].changed_at + timedelta(seconds=1)
                    publisher.publish_many([dataclasses.replace(states[-1], changed_at=moved)])
                    self.injected["reused event id, other content"] += 1
            if rng.random() < odds.malformed:
                self._malformed(publisher, burst[0])
            if i % 50 == 49:
                publisher.flush()
        publisher.flush()
        return total

    def _reorder(self, burst: list[Any]) -> list[Any]:
        """Meter values shuffled among themselves, one of them after the stop."""
        readings = [e for e in burst if isinstance(e, ev.MeterValueRecorded)]
        if len(readings) < 3:
            return burst
        self.rng.shuffle(readings)
        late = readings.pop()
        it = iter(readings)
        out = [next(it) if isinstance(e, ev.MeterValueRecorded) and e is not late else e
               for e in burst if e is not late]  # fmt: skip
        self.injected["reordered session"] += 1
        return [*out, late]

    def _malformed(self, publisher: Any, sample: Any) -> None:
        topic = self.rng.choice(["sessions.events", "settlement.commands"])
        kind = self.rng.randrange(3)
        if kind == 0:
            value = b"not an event: " + self.rng.randbytes(24)
            label = "malformed: no wire header"
        elif kind == 1:
            value = b"\x00" + struct.pack(">I", 987_654) + self.rng.randbytes(30)
            label = "malformed: unknown schema id"
        else:
            whole = publisher.serde.encode("settlement.commands", sample)
            value = whole[: max(6, len(whole) // 3)]
            topic = "settlement.commands"
            label = "malformed: truncated Avro"
        publisher.produce_bytes(topic, value, f"chaos-{uuid.uuid4().hex[:8]}")
        self.injected[label] += 1

    # -- the end ----------------------------------------------------------------------------
    def _settle(self, scope: checker.Scope) -> float:
        """Wait until the checker's ``groups-at-end`` and ``attempts-settled`` hold and the
        outboxes are relayed, twice in a row. Returns the seconds it took."""
        began, calm = time.time(), 0
        while time.time() - began < self.o.settle_timeout:
            time.sleep(3)
            try:
                with psycopg.connect(scope.database_url, autocommit=True, connect_timeout=5) as c:
                    row = c.execute(
                        "SELECT count(*) FROM outbox WHERE published_at IS NULL"
                    ).fetchone()
                    quiet = (row is not None and row[0] == 0
                             and checker.attempts_settled(c).ok
                             and checker.groups_at_end(scope, c).ok)  # fmt: skip
                calm = calm + 1 if quiet else 0
            except (psycopg.Error, KafkaException):
                calm = 0
            if calm >= 2:
                self.journal.note(f"settled {time.time() - began:.0f} s after the faults ended")
                return time.time() - began
        self.journal.note(f"not settled after {self.o.settle_timeout:.0f} s; checking anyway")
        return time.time() - began

    def _write_report(
        self, path: Path, faults: list[Fault], findings: list[checker.Finding], sessions: int,
        settled: float, started: float,
    ) -> None:  # fmt: skip
        o = self.o
        verdict = "PASS" if all(f.ok for f in findings) else "FAIL"
        lines = [
            f"# Chaos run, seed {o.seed}: {verdict}",
            "",
            f"`make chaos SEED={o.seed}` ({'own 3-node stack' if o.own_stack else 'running stack'}"
            f"{f', planted bug {o.plant}' if o.plant else ''}), "
            f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {time.time() - started:.0f} s in all.",
            "",
            f"- traffic: {sessions} sessions in {o.seconds:.0f} s ({o.rate:g}/s), "
            f"{o.stations} stations, network `{self.network}`",
            f"- processes: {', '.join(sorted(self.procs))}, each kind in one consumer group; "
            "the provider as a service of its own",
            f"- settled {settled:.0f} s after the traffic ended (in-doubt provider attempts "
            "are re-asked every 30 s)",
            f"- restarts: {sum(p.restarts for p in self.procs.values())}, of which "
            f"{sum(len(p.deaths) for p in self.procs.values())} after a process exited by itself "
            "(a processor exits when it loses its database or broker for good and is restarted, "
            "as Kubernetes would)",
            "",
            "## Faults planned (seeded)",
            "",
            "| at (s) | fault |",
            "| ---: | --- |",
            *[f"| {f.at:.1f} | {f.describe()} |" for f in faults],
            "",
            "## Bad input injected",
            "",
            *[f"- {label}: {count}" for label, count in sorted(self.injected.items())],
            "",
            "## What happened",
            "",
            "| at (s) | event |",
            "| ---: | --- |",
            *[f"| {at:.1f} | {text} |" for at, text in self.journal.lines],
            "",
            "## Invariants (independent checker)",
            "",
            "| invariant | holds | figures |",
            "| --- | :---: | --- |",
        ]
        for f in findings:
            figures = ", ".join(f"{k} {v}" for k, v in f.figures.items())
            lines.append(f"| {f.invariant} | {'yes' if f.ok else '**NO**'} | {figures} |")
        for f in findings:
            if not f.ok:
                lines += ["", f"### {f.invariant}: {f.problem_count} problem(s)", ""]
                lines += [f"- {p}" for p in f.problems]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")
