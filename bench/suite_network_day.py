"""Network-day suite: a day of a 10,000-station network through the whole flow, at 1x, 2x and
4x the load, with each processor in a process of its own as deployed.

The day is compressed: its 24 hours pass in ``DAY_SECONDS`` seconds, each hour's sessions
published evenly within its slot, in the shape of a charging day (quiet nights, a morning peak
and a larger evening peak; ``HOURLY``). Each session's upstream traffic (authorization
instruction, start, meter values, stop) is published when the session ends, as one burst. The
processes (``evledger sessions run``, ``settlement run`` with the sandbox provider, ``ledger
run``) start on a fresh database at the end of the log, in groups of their own.

Measured per load: sustained throughput (upstream events published / seconds from the first
publish to the last capture booked), publish -> visible latency per session (its burst
published -> its capture's journal entry in PostgreSQL, p50 and p99), and each process's CPU
seconds and peak memory. Baseline, in the same run: raw consumption of the same records
(confluent-kafka, no decoding) from the same topics. Results: ``bench/results/network-day.md``
with a table, and ``network-day.svg`` with how latency and CPU grow with the load.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
from confluent_kafka import Consumer, TopicPartition

from bench.harness import RESULTS_DIR, BenchContext, Metric, percentile
from connectors import postgres, sessions_store
from entrypoints.bootstrap import bootstrap
from entrypoints.simulate import ChargingNetworkFlow
from ledger.events import SessionStarted
from processors.ledger_projector import TOPICS as LEDGER_TOPICS
from processors.sessions import TOPICS as SESSIONS_TOPICS

STATIONS = 10_000
SESSIONS_1X = 2_000
DAY_SECONDS = 36.0
LOADS = (1, 2, 4)
HOURLY = (1, 1, 1, 1, 1, 2, 4, 7, 9, 7, 5, 5, 6, 5, 5, 6, 8, 10, 10, 8, 6, 4, 2, 1)
"""Relative sessions per hour of the day (a charging day: morning and evening peaks)."""
UPSTREAM = ("sessions.events", "settlement.commands", "tariffs.events")
SETTLEMENT_TOPICS = ("settlement.commands",)
SESSION_SPAN = timedelta(minutes=130)
"""Longest simulated session (17 readings 5 minutes apart, then up to 35 idle minutes): each
session starts this long before it is published, so its stop lies in the past."""
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Level:
    load: int
    sessions: int
    events: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    visible: int = 0
    cpu: dict[str, float] = field(default_factory=dict)
    rss_mb: dict[str, float] = field(default_factory=dict)
    raw_consume: float = 0.0


def run(ctx: BenchContext) -> list[Metric]:
    app = bootstrap(ctx.settings)
    levels = [_level(ctx, app, load, ctx.n(SESSIONS_1X) * load) for load in LOADS]
    _plot(levels, RESULTS_DIR / "network-day.svg")
    metrics: list[Metric] = []
    for lv in levels:
        raw = "the same records consumed raw (no decoding), same topics"
        baseline = Metric(f"{lv.load}x_raw_consume", lv.raw_consume, "events/s", note=raw)
        rate = lv.events / lv.seconds
        cpu_total = sum(lv.cpu.values())
        metrics += [
            baseline,
            Metric.against(f"{lv.load}x_sustained", rate, "events/s", baseline,
                           note=f"{lv.sessions:,} sessions, {lv.events:,} upstream events in a "
                           f"{DAY_SECONDS:.0f} s day; first publish to last capture booked"),
            Metric(f"{lv.load}x_visible_p50", percentile(lv.latencies, 50), "s",
                   note=f"burst published -> capture in the journal; {lv.visible:,} sessions"),
            Metric(f"{lv.load}x_visible_p99", percentile(lv.latencies, 99), "s"),
            Metric(f"{lv.load}x_cpu_per_1k_sessions", cpu_total / lv.sessions * 1000, "cpu-s",
                   note=", ".join(f"{p} {c:.1f} s" for p, c in lv.cpu.items())),
            Metric(f"{lv.load}x_peak_rss", max(lv.rss_mb.values()), "MB",
                   note=", ".join(f"{p} {m:.0f} MB" for p, m in lv.rss_mb.items())),
        ]  # fmt: skip
    return metrics


def _level(ctx: BenchContext, app: Any, load: int, sessions: int) -> Level:
    lv = Level(load, sessions)
    network = f"bench-day-{load}x-{uuid.uuid4().hex[:6]}"
    name = f"bench_day_{load}x_{uuid.uuid4().hex[:8]}"
    url = postgres.create_database(app.database_url, name)
    flow = ChargingNetworkFlow(network, seed=load, stations=STATIONS)
    topics = sorted({*SESSIONS_TOPICS, *SETTLEMENT_TOPICS, *LEDGER_TOPICS})
    probe = app.consumer(f"bench-day-probe-{uuid.uuid4().hex[:6]}")
    starts = probe.end_offsets(topics)
    probe.close()
    groups = {kind: f"bench-day-{kind}-{uuid.uuid4().hex[:6]}"
              for kind in ("sessions", "settlement", "ledger")}  # fmt: skip
    reads = {"sessions": SESSIONS_TOPICS, "settlement": SETTLEMENT_TOPICS,
             "ledger": LEDGER_TOPICS}  # fmt: skip
    with postgres.connect(url) as conn:
        for kind, group in groups.items():
            postgres.store_offsets(conn, group, {k: v for k, v in starts.items()
                                                 if k[0] in reads[kind]})  # fmt: skip
        for station_id, key in flow.meter_keys().items():
            sessions_store.register_meter_key(conn, station_id, key, "bench meter")
        conn.commit()
    processes = _start(groups, url)
    try:
        publisher = app.publisher()
        publisher.publish_many([*flow.tariffs(), *flow.locations()])
        publisher.flush()
        time.sleep(6)  # the processes join their groups
        for proc in processes.values():
            proc.cpu_percent()  # start the CPU accounting here
        cpu0 = {k: _cpu(p) for k, p in processes.items()}
        published: dict[str, float] = {}
        began = time.time()
        for hour, sessions_in_hour in enumerate(_per_hour(sessions)):
            slot_start = began + hour * DAY_SECONDS / 24
            for i in range(sessions_in_hour):
                _wait_until(slot_start + i * (DAY_SECONDS / 24) / max(1, sessions_in_hour))
                start = datetime.now(UTC) - SESSION_SPAN
                burst = list(flow.session(start))
                publisher.publish_many(burst)
                payment = next(e.payment_id for e in burst if isinstance(e, SessionStarted))
                published[payment] = time.time()
                lv.events += len(burst)
                _sample(processes, lv)
            publisher.flush()
            _sample(processes, lv)
        publisher.flush()
        visible = _wait_visible(url, published, processes, lv)
        lv.seconds = max(visible.values(), default=time.time()) - began
        lv.latencies = [visible[p] - published[p] for p in visible]
        lv.visible = len(visible)
        lv.cpu = {k: _cpu(p) - cpu0[k] for k, p in processes.items()}
    finally:
        for proc in processes.values():
            proc.terminate()
        psutil.wait_procs(list(processes.values()), timeout=30)
    lv.raw_consume = _raw_consume(ctx.settings.bootstrap_servers, starts)
    postgres.drop_database(app.database_url, name)
    return lv


def _per_hour(sessions: int) -> list[int]:
    total = sum(HOURLY)
    counts = [sessions * w // total for w in HOURLY]
    for h in sorted(range(24), key=lambda h: -HOURLY[h])[: sessions - sum(counts)]:
        counts[h] += 1
    return counts


def _start(groups: dict[str, str], url: str) -> dict[str, psutil.Process]:
    env = {**os.environ, "EVLEDGER_DATABASE_URL": url, "EVLEDGER_METRICS_PORT": "0",
           "EVLEDGER_LOG_FORMAT": "json", "PYTHONPATH": str(ROOT)}  # fmt: skip
    commands = {
        "sessions": ["sessions", "run", "--group", groups["sessions"]],
        "settlement": ["settlement", "run", "--group", groups["settlement"]],
        "ledger": ["ledger", "run", "--group", groups["ledger"], "--no-static"],
    }
    logs = ROOT / ".evledger" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    started = {}
    for kind, args in commands.items():
        out = (logs / f"bench-day-{kind}.log").open("w")
        popen = subprocess.Popen([sys.executable, "-m", "entrypoints.cli", *args], cwd=ROOT,
                                 env=env, stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
        started[kind] = psutil.Process(popen.pid)
    return started


def _cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def _sample(processes: dict[str, psutil.Process], lv: Level) -> None:
    for kind, proc in processes.items():
        try:
            rss = proc.memory_info().rss / 2**20
        except psutil.Error as exc:
            log = f".evledger/logs/bench-day-{kind}.log"
            raise RuntimeError(f"the {kind} process died: {log}") from exc
        lv.rss_mb[kind] = max(lv.rss_mb.get(kind, 0.0), rss)


def _wait_until(at: float) -> None:
    delay = at - time.time()
    if delay > 0:
        time.sleep(delay)


def _wait_visible(
    url: str, published: dict[str, float], processes: dict[str, psutil.Process], lv: Level
) -> dict[str, float]:
    """When each payment's capture was booked, polling until none is added for 15 s."""
    visible: dict[str, float] = {}
    quiet_since = time.time()
    ids = list(published)
    with postgres.connect(url, autocommit=True) as conn:
        while time.time() - quiet_since < 15 and len(visible) < len(ids):
            rows = conn.execute(
                "SELECT payment_id, extract(epoch FROM min(recorded_at)) FROM journal_entries"
                " WHERE kind = 'CAPTURE' AND payment_id = ANY(%s) GROUP BY payment_id",
                (ids,),
            ).fetchall()
            if len(rows) > len(visible):
                quiet_since = time.time()
            visible = {p: float(t) for p, t in rows}
            _sample(processes, lv)
            time.sleep(1.0)
    return visible


def _raw_consume(bootstrap_servers: str, starts: dict[tuple[str, int], int]) -> float:
    """Records/s of a plain consumer over what the level wrote to the upstream topics."""
    group = f"bench-day-raw-{uuid.uuid4().hex[:6]}"
    consumer = Consumer(
        {"bootstrap.servers": bootstrap_servers, "group.id": group, "enable.auto.commit": False}
    )
    parts = [TopicPartition(t, p, o) for (t, p), o in starts.items() if t in UPSTREAM]
    ends = {}
    for tp in parts:
        _, high = consumer.get_watermark_offsets(tp, timeout=10)
        ends[(tp.topic, tp.partition)] = high
    total = sum(ends[(tp.topic, tp.partition)] - tp.offset for tp in parts)
    consumer.assign(parts)
    seen, begin = 0, time.perf_counter()
    while seen < total:
        seen += len(consumer.consume(10_000, 1.0))
    rate = total / (time.perf_counter() - begin)
    consumer.close()
    return rate


def _plot(levels: list[Level], path: Path) -> None:
    """Two small charts side by side, as SVG: latency p50/p99 and CPU per 1k sessions."""
    w, h, pad = 320, 220, 40
    series = [
        ("publish -> visible (s)", [("p50", [percentile(lv.latencies, 50) for lv in levels]),
                                     ("p99", [percentile(lv.latencies, 99) for lv in levels])]),
        ("CPU seconds per 1k sessions", [(k, [lv.cpu.get(k, 0) / lv.sessions * 1000
                                              for lv in levels]) for k in levels[0].cpu]),
    ]  # fmt: skip
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * w + 20}" height="{h}" '
             'font-family="sans-serif" font-size="11">']  # fmt: skip
    for n, (title, lines) in enumerate(series):
        x0 = n * (w + 20)
        top = max([v for _, vs in lines for v in vs if v == v] + [1e-9])
        parts.append(f'<text x="{x0 + pad}" y="14" font-weight="bold">{title}</text>')
        parts.append(f'<line x1="{x0 + pad}" y1="{h - pad}" x2="{x0 + w - 10}" y2="{h - pad}" '
                     'stroke="#888"/>')  # fmt: skip
        parts.append(f'<text x="{x0 + 2}" y="{h - pad}">0</text>')
        parts.append(f'<text x="{x0 + 2}" y="{pad}">{top:.3g}</text>')
        for i, lv in enumerate(levels):
            x = x0 + pad + i * (w - pad - 20) / max(1, len(levels) - 1)
            parts.append(f'<text x="{x - 6:.0f}" y="{h - pad + 14}">{lv.load}x</text>')
        for j, (label, values) in enumerate(lines):
            points = []
            for i, v in enumerate(values):
                x = x0 + pad + i * (w - pad - 20) / max(1, len(levels) - 1)
                y = h - pad - (v if v == v else 0) / top * (h - 2 * pad)
                points.append(f"{x:.0f},{y:.0f}")
            color = colors[j % len(colors)]
            parts.append(f'<polyline points="{" ".join(points)}" fill="none" stroke="{color}" '
                         'stroke-width="2"/>')  # fmt: skip
            parts.append(f'<text x="{x0 + pad + 8}" y="{30 + 13 * j}" fill="{color}">'
                         f"{label}</text>")  # fmt: skip
    parts.append("</svg>")
    path.write_text("\n".join(parts) + "\n")
