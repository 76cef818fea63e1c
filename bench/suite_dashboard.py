"""Bench suite ``dashboard``: 50 viewers on the analytics dashboard over a book of 1,000,000
journal entries.

A database of its own is filled in SQL with a synthetic book in the projection's shape: 200,000
captured payments over 90 days at 48 stations in three countries (each booked as the ledger
books one: hold placed, capture with revenue and VAT per country, capture settled, provider fee,
hold released; five entries), their sessions with a CDR each, their authorize and capture
attempts (3 % of authorizations declined, three providers, three payment methods), open holds,
fraud alerts and rejections; a tenth of it belongs to another network. The rollups are refreshed
(timed), then ``evledger api`` serves it (its own process, refreshing the rollups every 15 s as
it would in production) and 50 viewers poll ``/dashboard/data`` for 60 s the way the page does
(every 5 s, jittered; each viewer with its own range of 24 h to 90 days, a fifth of them on one
station). The baseline is the same 50 viewers polling ``/health`` (HTTP, the pool and a
``SELECT 1``) in the same run; then both under a closed loop (50 clients, no pause between
requests, 20 s) for the most the server can answer.

Target (issue 14): p99 of the page data under 300 ms.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from bench.harness import BenchContext, Metric, free_port, percentile
from connectors import analytics, keys_store, postgres
from entrypoints.bootstrap import bootstrap

ROOT = Path(__file__).resolve().parents[1]
NETWORK = "bench-network"
VIEWERS = 50
SECONDS = float(os.environ.get("BENCH_DASHBOARD_SECONDS", "60"))
CLOSED_SECONDS = 20.0  # the saturation runs: no pause between requests
POLL_S = 5.0  # the page's poll (entrypoints/static/dashboard.js POLL_MS)
RANGES_H = (24, 168, 720, 2160)

SEED = """
INSERT INTO journal_entries (entry_id, event_id, event_type, payment_id, network_id, provider,
                             kind, occurred_at, accounts, currencies, amounts, stations)
SELECT md5(p.id || e.kind)::uuid, p.id || ':' || e.kind, e.event_type, p.id, p.network,
       p.provider, e.kind, p.at + e.later, e.accounts, e.currencies, e.amounts, e.stations
FROM (
    SELECT g, 'P' || g AS id, CASE WHEN g % 10 = 0 THEN 'other-network' ELSE %(network)s END
           AS network, (ARRAY['stripe', 'braintree', 'sandbox'])[1 + g % 3] AS provider,
           (ARRAY['DE', 'FR', 'NL'])[1 + (g % 48) % 3] AS country,
           (ARRAY[19, 20, 21])[1 + (g % 48) % 3] AS rate,
           (ARRAY['DE', 'FR', 'NL'])[1 + (g % 48) % 3] || '*BEN*E' || lpad((g % 48)::text, 4, '0')
           AS station, 300 + (g * 37) % 2000 AS energy,
           now() - make_interval(secs => (%(payments)s - g) * 90 * 86400.0 / %(payments)s) AS at
    FROM generate_series(1, %(payments)s) AS g
) AS p(g, id, network, provider, country, rate, station, energy, at)
CROSS JOIN LATERAL (
    SELECT 50 + p.energy AS net, round((50 + p.energy) * p.rate / 100.0)::bigint AS vat
) AS m
CROSS JOIN LATERAL (VALUES
    ('PaymentAuthorized', 'HOLD_PLACED', interval '0',
     ARRAY['memo:authorization_holds:' || p.provider, 'memo:hold_commitments:' || p.provider],
     ARRAY['EUR', 'EUR'], ARRAY[5000, -5000]::bigint[], NULL::text[]),
    ('PaymentCaptured', 'CAPTURE', interval '40 minutes',
     ARRAY['assets:settlement_receivable:' || p.provider,
           'revenue:flat:' || p.country || ':' || p.rate,
           'revenue:energy:' || p.country || ':' || p.rate,
           'liabilities:vat_payable:' || p.country || ':' || p.rate],
     ARRAY['EUR', 'EUR', 'EUR', 'EUR'], ARRAY[m.net + m.vat, -50, -p.energy, -m.vat]::bigint[],
     ARRAY[NULL, p.station, p.station, p.station]),
    ('PaymentCaptured', 'CAPTURE_SETTLED', interval '41 minutes',
     ARRAY['assets:provider_clearing:' || p.provider,
           'assets:settlement_receivable:' || p.provider],
     ARRAY['EUR', 'EUR'], ARRAY[m.net + m.vat, -(m.net + m.vat)]::bigint[], NULL::text[]),
    ('PaymentCaptured', 'PROVIDER_FEE', interval '41 minutes',
     ARRAY['expenses:provider_fees:' || p.provider, 'assets:provider_clearing:' || p.provider],
     ARRAY['EUR', 'EUR'], ARRAY[25, -25]::bigint[], NULL::text[]),
    ('PaymentCaptured', 'HOLD_RELEASED', interval '41 minutes',
     ARRAY['memo:authorization_holds:' || p.provider, 'memo:hold_commitments:' || p.provider],
     ARRAY['EUR', 'EUR'], ARRAY[-5000, 5000]::bigint[], NULL::text[])
) AS e(event_type, kind, later, accounts, currencies, amounts, stations);

INSERT INTO charging_sessions (session_id, network_id, started_event_id, station_id, evse_id,
    connector_id, transaction_id, country, time_zone, tariff_id, payment_id, meter_start_wh,
    started_at, status, stopped_at, meter_stop_wh, currency, captured_minor)
SELECT 'S' || substr(e.payment_id, 2), e.network_id, 'start:' || e.payment_id, e.stations[2],
       e.stations[2] || '*1', '1', e.payment_id, split_part(e.accounts[2], ':', 3), 'UTC',
       'T-bench', e.payment_id, 0, e.occurred_at - interval '40 minutes', 'billed', e.occurred_at,
       (-e.amounts[3]) * 20, 'EUR', e.amounts[1]
FROM journal_entries e WHERE e.kind = 'CAPTURE';

INSERT INTO session_cdrs (cdr_id, session_id, kind, event_id, tariff_id, tariff_version, currency,
                          total_excl_vat, total_incl_vat, lines, occurred_at)
SELECT 'CDR-' || s.session_id, s.session_id, 'issued', 'cdr:' || s.session_id, 'T-bench', 1,
       'EUR', s.captured_minor - round(s.captured_minor / 1.2), s.captured_minor, '[]',
       coalesce(s.stopped_at, now())
FROM charging_sessions s;

INSERT INTO provider_attempts (idempotency_key, command_event_id, payment_id, provider, action,
                               request, status, amount_minor, currency, created_at)
SELECT e.payment_id || ':' || a.action, e.payment_id || ':' || a.action, e.payment_id,
       e.provider, a.action,
       jsonb_build_object('envelope', jsonb_build_object('network_id', e.network_id,
                          'occurred_at', e.occurred_at),
                          'station_id', e.stations[2],
                          'payment_method', (ARRAY['card', 'card', 'card', 'card', 'card',
                          'card', 'card', 'wallet', 'wallet', 'rfid_account'])
                          [1 + abs(hashtext(e.payment_id)) % 10]),
       CASE WHEN a.action = 'authorize' AND abs(hashtext(e.payment_id)) % 33 = 0 THEN 'failed'
            WHEN a.action = 'capture' AND abs(hashtext(e.payment_id)) % 2000 = 0 THEN 'in_doubt'
            ELSE 'succeeded' END,
       e.amounts[1], 'EUR', e.occurred_at
FROM journal_entries e CROSS JOIN (VALUES ('authorize'), ('capture')) AS a(action)
WHERE e.kind = 'CAPTURE';

INSERT INTO payments (payment_id, network_id, status, provider, currency, authorized, captured,
                      refunded, hold, station_id, created_at, last_event_at, state)
SELECT e.payment_id, e.network_id,
       CASE WHEN e.occurred_at > now() - interval '2 days' AND abs(hashtext(e.payment_id)) % 4 = 0
            THEN 'AUTHORIZED' ELSE 'FINALIZED' END,
       e.provider, 'EUR', 5000, e.amounts[1], 0,
       CASE WHEN e.occurred_at > now() - interval '2 days' AND abs(hashtext(e.payment_id)) % 4 = 0
            THEN 5000 ELSE 0 END,
       e.stations[2], e.occurred_at - interval '40 minutes', e.occurred_at, '{}'
FROM journal_entries e WHERE e.kind = 'CAPTURE';

INSERT INTO fraud_alerts (event_id, network_id, subject, score, reason, action, rules,
                          session_id, raised_at)
SELECT md5('alert' || g)::uuid, %(network)s, 'token:BENCH-' || (g % 700), 0.8,
       'score 0.80: card_testing (bench)', (ARRAY['alert', 'review', 'block'])[1 + g % 3],
       ARRAY[(ARRAY['card_testing', 'velocity_token', 'cloned_token', 'impossible_travel'])
             [1 + g % 4]], 'S' || (g * 97), now() - make_interval(secs => g * 3600)
FROM generate_series(1, 2000) AS g;

INSERT INTO rejections (consumer_group, topic, partition, "offset", reason_code, detail,
                        rejected_at)
SELECT 'evledger-ledger', 'payments.events', 0, g,
       (ARRAY['UNDECODABLE', 'UNKNOWN_SCHEMA_ID', 'VALIDATION_ERROR'])[1 + g % 3], 'bench',
       now() - make_interval(secs => g * 600)
FROM generate_series(1, 1000) AS g;

INSERT INTO processing_counts (consumer_group, applied, duplicates, rejected)
VALUES ('evledger-ledger', 1000000, 1200, 1000);
ANALYZE;
"""


def run(ctx: BenchContext) -> list[Metric]:
    app = bootstrap(ctx.settings)
    payments = ctx.n(200_000)
    name = "evledger_bench_dashboard"
    url = postgres.create_database(app.database_url, name)
    server: subprocess.Popen[bytes] | None = None
    try:
        started = time.perf_counter()
        with postgres.connect(url, autocommit=True) as conn:
            seed = SEED.replace("%(network)s", f"'{NETWORK}'").replace(
                "%(payments)s", str(payments)
            )
            conn.execute(seed.encode())
            entries = int(conn.execute("SELECT count(*) FROM journal_entries").fetchone()[0])  # type: ignore[index]
            seeded = time.perf_counter() - started
            print(f"seeded {entries:,} journal entries in {seeded:.0f}s")
            refresh_s = analytics.refresh_rollups(conn) or 0.0
            print(f"rollups refreshed in {refresh_s:.1f}s")
            key = keys_store.create(conn, NETWORK, ["finance:read", "admin"], actor="bench")[0]
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "entrypoints.cli", "api", "--port", str(port),
             "--refresh-seconds", "15"],
            cwd=ROOT, env={**os.environ, "EVLEDGER_DATABASE_URL": url},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        _wait_for(base, server)
        headers = {"Authorization": f"Bearer {key.token}"}
        stations = httpx.get(f"{base}/dashboard/data", headers=headers, timeout=60).json()
        names = stations["stations"]

        health = asyncio.run(_viewers(base, headers, lambda _: ("/health", {}), POLL_S))
        data = asyncio.run(_viewers(base, headers, _page_query(names), POLL_S))
        health_closed = asyncio.run(
            _viewers(base, headers, lambda _: ("/health", {}), 0.0, CLOSED_SECONDS)
        )
        closed = asyncio.run(_viewers(base, headers, _page_query(names), 0.0, CLOSED_SECONDS))
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        postgres.drop_database(app.database_url, name)

    note = f"{VIEWERS} viewers x {SECONDS:.0f}s, {entries:,} journal entries"
    health_note = f"/health (HTTP + pool + SELECT 1), same load; {health.summary}"
    base_p99 = Metric(
        "health_p99_50_viewers", percentile(health.latencies, 99) * 1000, "ms", note=health_note
    )
    base_rate = Metric(
        "health_closed_loop",
        health_closed.rate,
        "req/s",
        note=f"/health, {VIEWERS} clients without pause; {health_closed.summary}",
    )
    return [
        Metric("journal_entries", entries, "entries", note=f"seeded in {seeded:.0f}s"),
        Metric(
            "rollup_refresh",
            refresh_s * 1000,
            "ms",
            note="REFRESH MATERIALIZED VIEW CONCURRENTLY of the three rollups",
        ),
        base_p99,
        Metric.against(
            "dashboard_data_p50_50_viewers",
            percentile(data.latencies, 50) * 1000,
            "ms",
            base_p99,
            note=note,
        ),
        Metric.against(
            "dashboard_data_p99_50_viewers",
            percentile(data.latencies, 99) * 1000,
            "ms",
            base_p99,
            note=f"{note}; target < 300 ms; {data.summary}",
        ),
        Metric("dashboard_data_max_50_viewers", max(data.latencies) * 1000, "ms", note=note),
        base_rate,
        Metric.against(
            "dashboard_data_closed_loop",
            closed.rate,
            "req/s",
            base_rate,
            note=f"{VIEWERS} clients without pause: the most it answers; "
            f"p99 {percentile(closed.latencies, 99) * 1000:.0f} ms; "
            f"{closed.summary}",
        ),
    ]


class Load:
    def __init__(self, seconds: float) -> None:
        self.latencies: list[float] = []
        self.errors = 0
        self.seconds = seconds

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds

    @property
    def summary(self) -> str:
        return f"{len(self.latencies):,} answers, {self.errors} errors"


def _page_query(stations: list[str]) -> Any:
    """Viewer i's request, as the page makes it: its range, and a fifth on one station."""

    def query(i: int) -> tuple[str, dict[str, str]]:
        hours = RANGES_H[i % len(RANGES_H)]
        until = time.time() // 3600 * 3600 + 3600
        params = {
            "since": _iso(until - hours * 3600),
            "until": _iso(until),
        }
        if i % 5 == 4 and stations:
            params["station"] = stations[i % len(stations)]
        return "/dashboard/data", params

    return query


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


async def _viewers(
    base: str, headers: dict[str, str], query: Any, pause_s: float, seconds: float = SECONDS
) -> Load:
    """``VIEWERS`` clients for ``seconds``, each asking ``query(i)`` and then pausing about
    ``pause_s`` (jittered +-20 %, first request staggered over one pause)."""
    load = Load(seconds)
    stop = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=VIEWERS, max_keepalive_connections=VIEWERS)
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30, limits=limits) as c:

        async def viewer(i: int) -> None:
            rng = random.Random(i)  # nosec B311  # load pacing, not security
            await asyncio.sleep(rng.uniform(0, pause_s))
            path, params = query(i)
            while time.monotonic() < stop:
                t = time.perf_counter()
                try:
                    answer = await c.get(path, params=params)
                    answer.read()
                    if answer.status_code != 200:
                        load.errors += 1
                except httpx.HTTPError:
                    load.errors += 1
                load.latencies.append(time.perf_counter() - t)
                if pause_s:
                    await asyncio.sleep(pause_s * rng.uniform(0.8, 1.2))

        await asyncio.gather(*(viewer(i) for i in range(VIEWERS)))
    return load


def _wait_for(base: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"evledger api exited with {server.returncode}")
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("evledger api did not answer /health in 60 s")
