"""``make demo``: the local stack plus a simulated charging network, end to end.

Upstream traffic (authorization instructions, OCPP sessions, an OCPI tariff, two malformed
records) goes onto Kafka; the sessions processor prices sessions into CDRs and capture/void
instructions, the settlement connector carries them out at the sandbox provider, and the ledger
projector books the outcomes as double-entry journal entries. Each processor runs with its
production consumer group against a fresh database (``evledger_demo`` unless told otherwise) whose
stored offsets start at this run's first record, so the summary covers exactly this run.

The database is dropped and created again on every run. ``evledger_demo`` is the book the README
invites a reader to explore, so nothing but ``evledger demo`` may use it: tests pass their own
name (tests/e2e/conftest.py, held by tests/unit/test_tests_keep_off_user_databases.py).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from rich.console import Console
from rich.table import Table

from connectors import keys_store, postgres, sessions_store
from connectors.provider_registry import ProviderRegistry, shared_sandbox
from entrypoints import demo_drivers
from entrypoints.bootstrap import App
from entrypoints.demo_fraud import DemoFraud
from entrypoints.fraud_scenario import demo_attacks
from entrypoints.observe import serve_processors
from entrypoints.simulate import ChargingNetworkFlow, past_start
from ledger.events import SessionStarted
from processors.base import BatchStats
from processors.ledger_projector import build_ledger_processor
from processors.sessions import build_sessions_processor
from processors.settlement import build_settlement_processor
from schemas.topics import TOPIC_EVENTS

DEMO_DATABASE = "evledger_demo"
"""The demo's book, kept for the reader between runs of ``evledger demo``."""


@dataclass(frozen=True)
class DemoRun:
    """Where a demo run left its projections and where its processors started reading."""

    database_url: str
    start_offsets: dict[tuple[str, int], int]
    published: int
    sessions: int
    """Charging sessions published: the simulated ones and the fraud attacks'."""


def run_demo(
    app: App,
    sessions: int,
    console: Console,
    *,
    seed: int | None = None,
    network_id: str | None = None,
    database: str = DEMO_DATABASE,
    metrics_port: int = 0,
) -> DemoRun:
    """Publish ``sessions`` simulated sessions and run the three processors over them into
    ``database`` on the app's server, (re)created first; print what happened. With a
    ``metrics_port``, the processors' /metrics, /livez and /readyz are served there while
    they run."""
    # Each rejection is also logged by the processors; the demo shows them as tables instead.
    logging.getLogger().setLevel(logging.ERROR)
    console.rule("[bold]1. a fresh demo database, processors starting at the end of the log")
    url = postgres.create_database(app.database_url, database)
    probe = app.consumer("evledger-demo-probe")
    ends = probe.end_offsets(list(TOPIC_EVENTS))
    probe.close()
    sessions_p = build_sessions_processor(app, database_url=url)
    settlement_p = build_settlement_processor(
        app, ProviderRegistry.of(shared_sandbox()), database_url=url
    )
    ledger_p = build_ledger_processor(app, database_url=url)
    fraud = DemoFraud(app, url, console)
    fraud.start(ends)
    telemetry = None
    if metrics_port:
        monitors = [sessions_p.lag, settlement_p.lag, ledger_p.lag]
        telemetry = serve_processors(app.settings, "demo", monitors, url, port=metrics_port)
    with postgres.connect(url) as conn:
        for group, topics in (
            (sessions_p.group, sessions_p.topics),
            (settlement_p.processor.group, settlement_p.processor.topics),
            (ledger_p.group, ledger_p.topics),
        ):
            postgres.store_offsets(conn, group, {k: v for k, v in ends.items() if k[0] in topics})
    console.print(f"database {url}")
    if telemetry is not None:
        console.print(f"processor metrics at {telemetry.url}/metrics (while the demo runs)")

    console.rule("[bold]2. upstream publishes a simulated charging network")
    flow = ChargingNetworkFlow(
        network_id or app.settings.network_id, seed=int(time.time()) if seed is None else seed
    )
    keys = flow.meter_keys()
    with postgres.connect(url) as conn:  # the Eichrecht meters' keys, as an operator registers
        for station_id, key in keys.items():
            sessions_store.register_meter_key(conn, station_id, key, "demo meter")
        conn.commit()
    console.print(f"registered the signing meter keys of {len(keys)} stations")
    # The simulated upstream publishes at the front door: tokens and card fingerprints become
    # pseudonyms (docs/security.md), and the attacks' labels name the pseudonyms too.
    publisher = app.publisher(pseudonymize=True)
    pseudonyms = publisher.pseudonyms
    assert pseudonyms is not None
    started = time.perf_counter()
    # Tariffs and locations come first, as in a real network: a session's tariff is known
    # before it starts, and its station's place (the fraud rules' distances and powers).
    published = publisher.publish_many([*flow.tariffs(), *flow.locations()])
    publisher.flush()
    sessions_p.drain(idle_seconds=1.0)
    fraud.ready()
    first = past_start(sessions, timedelta(minutes=3))
    published += publisher.publish_many(flow.sessions(sessions, first))
    # The attacks come last, in the network's last hours: late records are judged with the
    # history they belong to only up to the rules' lateness (seven days, docs/fraud.md).
    attacks, labels = demo_attacks(flow, first + timedelta(minutes=3 * sessions - 8 * 60))
    labels = [
        dataclasses.replace(x, subjects=tuple(pseudonyms.subject(flow.network_id, s)
                                              for s in x.subjects))
        for x in labels
    ]  # fmt: skip
    published += publisher.publish_many(attacks)
    # What an upstream bug could send: garbage bytes, and Avro framed with a schema id no
    # registry knows. Both must end in sessions.events.rejected with a reason, not vanish.
    publisher.produce_bytes("sessions.events", b"not avro at all", b"bad-1")
    publisher.produce_bytes("sessions.events", b"\x00\x7f\xff\xff\xf0garbage-body", b"bad-2")
    publisher.flush()
    console.print(
        f"published {published:,} events for {sessions:,} sessions (+2 malformed records) in "
        f"{time.perf_counter() - started:.2f}s: authorization instructions, OCPP 1.6 and 2.0.1 "
        "meter values (some redelivered, some late), charging-state changes, stops; and "
        f"{len(labels)} attacks for the fraud rules ({', '.join(x.attack for x in labels)})"
    )

    console.rule("[bold]3. processors: sessions → settlement (sandbox) → ledger")
    steps: list[tuple[str, Callable[[], BatchStats]]] = [
        ("settlement", lambda: settlement_p.drain(idle_seconds=1.5)),
        ("sessions", lambda: sessions_p.drain(idle_seconds=1.5)),
        ("ledger", lambda: ledger_p.drain(idle_seconds=1.5)),
    ]
    started = time.perf_counter()
    for round_no in range(1, 6):
        moved = 0
        for name, step in steps:
            stats = step()
            moved += stats.consumed + stats.published
            if stats.consumed or stats.published:
                console.print(
                    f"round {round_no} {name:<10} consumed {stats.consumed:>6,}  applied "
                    f"{stats.applied:>6,}  duplicates {stats.duplicates:>4,}  rejected "
                    f"{stats.rejected:>4,}  emitted {stats.published:>6,}"
                )
        if moved == 0:
            break
    console.print(f"pipeline settled in {time.perf_counter() - started:.1f}s")
    for processor in (sessions_p, settlement_p, ledger_p):
        processor.close()
    if telemetry is not None:
        telemetry.close()

    _summaries(url, console)
    console.rule("[bold]5. fraud scoring (faust-streaming worker) → alerts")
    fraud.finish(labels)
    console.rule("[bold]6. personal data: sealed per driver, one driver erased")
    demo_drivers.run(app, url, flow.network_id, ends, console)
    _finance_key(url, flow.network_id, console)
    attack_sessions = sum(isinstance(e, SessionStarted) for e in attacks)
    return DemoRun(url, ends, published + 2, sessions + attack_sessions)


def _rows(url: str, query: str) -> list[tuple[Any, ...]]:
    with postgres.connect(url) as conn:
        return conn.execute(query.encode()).fetchall()


def _table(console: Console, title: str, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, justify="left" if column[0].islower() else "right")
    for row in rows:
        table.add_row(*(f"{v:,}" if isinstance(v, int) else str(v) for v in row))
    console.print(table)


def _money(minor: int, currency: str = "EUR") -> str:
    return f"{currency} {minor / 100:,.2f}"


def _summaries(url: str, console: Console) -> None:
    console.rule("[bold]4. what happened")
    _table(
        console,
        "every consumed record: applied, duplicate or rejected",
        ["consumer group", "Applied", "Duplicates", "Rejected"],
        _rows(
            url,
            "SELECT consumer_group, applied, duplicates, rejected FROM processing_counts"
            " ORDER BY consumer_group",
        ),
    )
    sessions = _rows(
        url,
        "SELECT status, count(*), coalesce(sum(shortfall_minor), 0)"
        " FROM charging_sessions GROUP BY status ORDER BY status",
    )
    _table(
        console, "charging sessions", ["status", "Sessions", "Shortfall (minor units)"], sessions
    )
    _table(
        console,
        "signed meter values (Eichrecht meters sign start and end; verified against their keys)",
        ["verification", "Sessions"],
        _rows(
            url,
            "SELECT coalesce(signed_status, 'unsigned'), count(*) FROM charging_sessions"
            " GROUP BY 1 ORDER BY 1",
        ),
    )
    _table(
        console,
        "settlement at the sandbox provider",
        ["action", "status", "Attempts"],
        _rows(
            url,
            "SELECT action, status, count(*) FROM provider_attempts"
            " GROUP BY action, status ORDER BY action, status",
        ),
    )
    _table(
        console,
        "rejections (reason codes a person can act on)",
        ["consumer group", "reason", "Records"],
        _rows(
            url,
            "SELECT consumer_group, reason_code, count(*) FROM rejections"
            " GROUP BY 1, 2 ORDER BY 1, 3 DESC",
        ),
    )
    # One account per dimension, country and VAT rate: the chart does not grow with stations.
    balances = _rows(
        url,
        "SELECT account, currency, balance FROM balances"
        " WHERE NOT is_memo AND balance <> 0 ORDER BY 1",
    )
    _table(
        console,
        f"ledger balances, posted (debit positive; {len(balances)} accounts)",
        ["account", "currency", "Balance"],
        [(a, c, _money(b, c)) for a, c, b in balances],
    )
    trial = _rows(
        url,
        "SELECT currency, is_memo, sum(debit), sum(credit), sum(balance)"
        " FROM balances GROUP BY currency, is_memo ORDER BY 1, 2",
    )
    _table(
        console,
        "trial balance: debits = credits per currency, posted and memo (holds)",
        ["currency", "view", "Debits", "Credits", "Difference"],
        [
            (c, "memo (holds)" if m else "posted", _money(d, c), _money(k, c), _money(b, c))
            for c, m, d, k, b in trial
        ],
    )
    unbalanced = [row for row in trial if row[4] != 0]
    console.print(
        "[bold green]trial balance holds: every journal entry balanced[/]"
        if not unbalanced
        else f"[bold red]trial balance off: {unbalanced}[/]"
    )
    if unbalanced:
        raise SystemExit(1)
    console.print(f"\nExplore it: EVLEDGER_DATABASE_URL='{url}' evledger trial-balance")


def _finance_key(url: str, network_id: str, console: Console) -> None:
    """An API key for the demo network's finance and operations team, and where to use it: the
    finance API and the analytics dashboard (shown once)."""
    with postgres.connect(url, autocommit=True) as conn:
        new, _ = keys_store.create(conn, network_id, ["finance:read", "risk", "admin"],
                                   actor="demo", name="demo finance team")  # fmt: skip
    console.print(
        f"\nThe finance API and the analytics dashboard for network {network_id} (key shown once;"
        " evledger keeps its hash):\n"
        f"  EVLEDGER_DATABASE_URL='{url}' evledger api --port 8000 &\n"
        f"  curl -H 'Authorization: Bearer {new.token}' http://127.0.0.1:8000/trial-balance\n"
        f"  dashboard: http://127.0.0.1:8000/dashboard (paste the key: {new.token})",
        soft_wrap=True,  # whole lines, to copy and paste
    )
