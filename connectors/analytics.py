"""The analytics dashboard's figures: one network's transaction patterns, from SQL.

Revenue, VAT, sessions and authorizations come from the hourly rollups of migration 033 (built
from the same views the CLI and the finance API read: ``revenue_postings``, ``vat_postings``,
the sessions' current CDRs and the settlement connector's authorize attempts) and are refreshed
by ``refresh_rollups``; holds, settlement in doubt, fraud alerts, rejections and processing
counts are read live. ``figures`` answers for one network, always: the caller passes the API
key's network. Amounts are integer minor units of ``currency``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.finance import Conn

ROLLUPS = (
    "dashboard_revenue_hourly",
    "dashboard_sessions_hourly",
    "dashboard_authorizations_hourly",
    "dashboard_revenue_daily",
    "dashboard_sessions_daily",
    "dashboard_authorizations_daily",
    "dashboard_stations",
)
"""The materialized views ``refresh_rollups`` refreshes, in order: the daily ones and the
stations are built from the hourly ones (migration 033)."""

_LOCK_KEY = 0x45564C_44415348  # "EVL" "DASH": one refresher at a time, across API processes
TOP_STATIONS = 20
"""Stations shown by name in the per-station charts; the rest are summed as 'other'."""
HOLD_AGES = ((3600, "< 1 h"), (6 * 3600, "1-6 h"), (86400, "6-24 h"), (7 * 86400, "1-7 d"))
"""Upper bounds (seconds) and labels of the open-hold age buckets; older ones are '> 7 d'."""
HOURLY_UP_TO = timedelta(days=7)
"""Ranges up to this long chart revenue per hour; longer ones per day (fewer, readable bars)."""
LISTED = 10
"""Rows listed under settlement in doubt and latest fraud alerts."""


@dataclass(frozen=True, slots=True)
class Filters:
    """What the dashboard shows: one network, optionally one station, the hours in
    [since, until), in one currency (None: the network's busiest)."""

    network: str
    since: datetime
    until: datetime
    station: str | None = None
    currency: str | None = None


def refresh_rollups(conn: Conn) -> float | None:
    """Refresh the rollups (concurrently: readers keep the previous rows until it commits) and
    record when; the seconds it took, or None when another process is refreshing them now.
    ``conn`` must be in autocommit mode."""
    if not conn.execute("SELECT pg_try_advisory_lock(%s)", (_LOCK_KEY,)).fetchone()[0]:  # type: ignore[index]
        return None
    try:
        started = time.perf_counter()
        for view in ROLLUPS:
            conn.execute(f"REFRESH MATERIALIZED VIEW CONCURRENTLY {view}".encode())
        took = time.perf_counter() - started
        conn.execute(
            "INSERT INTO dashboard_rollups (refreshed_at, took_ms) VALUES (now(), %s)"
            " ON CONFLICT (only_row) DO UPDATE SET refreshed_at = excluded.refreshed_at,"
            " took_ms = excluded.took_ms",
            (round(took * 1000),),
        )
        return took
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))


def figures(
    conn: Conn, f: Filters, *, operations: bool, now: datetime | None = None
) -> dict[str, Any]:
    """Every figure of the dashboard for ``f``. ``operations``: include the pipeline-wide
    processing counts and rejections (the admin scope)."""
    now = now or datetime.now(UTC)
    bucket = bucket_of(f)
    if bucket == "day":  # whole UTC days: the daily rollups
        f = replace(f, since=day_floor(f.since), until=day_ceiling(f.until))
    refreshed = conn.execute("SELECT refreshed_at, took_ms FROM dashboard_rollups").fetchone()
    currencies = [
        str(c)
        for (c,) in conn.execute(
            "SELECT currency FROM dashboard_revenue_daily WHERE network_id = %s"
            " GROUP BY currency ORDER BY sum(revenue) DESC, currency",
            (f.network,),
        ).fetchall()
    ]
    currency = f.currency or (currencies[0] if currencies else "EUR")
    scope = (f.network, f.since, f.until, f.station, f.station, currency)
    out: dict[str, Any] = {
        "network": f.network,
        "currency": currency,
        "currencies": currencies,
        "since": f.since,
        "until": f.until,
        "station": f.station,
        "generated_at": now,
        "rollups_refreshed_at": refreshed[0] if refreshed else None,
        "rollups_refresh_ms": refreshed[1] if refreshed else None,
        "stations": _stations(conn, f.network),
        **_revenue(conn, scope, bucket),
        "sessions": _sessions(conn, scope, bucket),
        "authorizations": _authorizations(conn, scope[:5], bucket),
        "open_holds": _open_holds(conn, f, currency),
        "in_doubt": _in_doubt(conn, f),
        "fraud": _fraud(conn, f),
        "operations": _operations(conn, f) if operations else None,
    }
    return out


def _rollup(kind: str, bucket: str) -> tuple[str, str]:
    """The rollup of ``kind`` (revenue, sessions, authorizations) per ``bucket`` and the SQL
    of its rows in the filters' range (parameters: network, since, until, station twice)."""
    table = f"dashboard_{kind}_{'hourly' if bucket == 'hour' else 'daily'}"
    where = (
        f" network_id = %s AND {bucket} >= date_trunc('{bucket}', %s::timestamptz, 'UTC')"
        f" AND {bucket} < %s AND (%s::text IS NULL OR station = %s)"
    )
    return table, where


def day_floor(at: datetime) -> datetime:
    """The start of ``at``'s UTC day."""
    return at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def day_ceiling(at: datetime) -> datetime:
    """The first UTC midnight at or after ``at``."""
    floor = day_floor(at)
    return floor if floor == at else floor + timedelta(days=1)


def _stations(conn: Conn, network: str) -> list[str]:
    rows = conn.execute(
        "SELECT station FROM dashboard_stations WHERE network_id = %s ORDER BY station",
        (network,),
    ).fetchall()
    return [str(s) for (s,) in rows]


def bucket_of(f: Filters) -> str:
    """The revenue chart's bucket: hours up to ``HOURLY_UP_TO``, days (UTC) beyond."""
    return "hour" if f.until - f.since <= HOURLY_UP_TO else "day"


def _revenue(conn: Conn, scope: tuple[Any, ...], bucket: str) -> dict[str, Any]:
    table, where = _rollup("revenue", bucket)
    hourly = conn.execute(
        f"SELECT {bucket}, sum(revenue)::bigint, sum(refunds)::bigint, sum(vat)::bigint"  # nosec B608  # constant SQL; values are bound
        f" FROM {table} WHERE {where} AND currency = %s GROUP BY 1 ORDER BY 1",
        scope,
    ).fetchall()
    stations = conn.execute(
        "SELECT station, sum(revenue)::bigint, sum(refunds)::bigint, sum(vat)::bigint"
        f" FROM {table} WHERE {where} AND currency = %s"  # nosec B608  # constant SQL; values are bound
        " GROUP BY station ORDER BY sum(revenue - refunds) DESC, station",
        scope,
    ).fetchall()
    by_station = [_revenue_row("station", s, r, x, v) for s, r, x, v in stations[:TOP_STATIONS]]
    rest = stations[TOP_STATIONS:]
    if rest:
        by_station.append(
            _revenue_row(
                "station",
                f"other ({len(rest)})",
                *(sum(int(r[i]) for r in rest) for i in (1, 2, 3)),
            )
        )
    totals = [sum(int(r[i]) for r in hourly) for i in (1, 2, 3)]
    return {
        "bucket": bucket,
        "revenue_by_hour": [_revenue_row("hour", h, r, x, v) for h, r, x, v in hourly],
        "revenue_by_station": by_station,
        "totals": _revenue_row("currency", scope[-1], *totals),
    }


def _revenue_row(key: str, value: Any, revenue: int, refunds: int, vat: int) -> dict[str, Any]:
    net = int(revenue) - int(refunds)
    return {
        key: value,
        "revenue": int(revenue),
        "refunds": int(refunds),
        "net_revenue": net,
        "vat": int(vat),
        "gross": net + int(vat),
    }


def _sessions(conn: Conn, scope: tuple[Any, ...], bucket: str) -> dict[str, Any]:
    table, where = _rollup("sessions", bucket)
    rows = conn.execute(
        "SELECT station, sum(sessions)::bigint, sum(value_incl_vat)::bigint,"
        f" sum(energy_wh)::bigint FROM {table} WHERE {where}"  # nosec B608  # constant SQL; values are bound
        " AND currency = %s GROUP BY station ORDER BY sum(sessions) DESC, station",
        scope,
    ).fetchall()
    count, value, energy = (sum(int(r[i]) for r in rows) for i in (1, 2, 3))
    return {
        "sessions": count,
        "value_incl_vat": value,
        "energy_wh": energy,
        "average_value_incl_vat": round(value / count) if count else 0,
        "average_energy_wh": round(energy / count) if count else 0,
        "by_station": [
            {
                "station": s,
                "sessions": int(n),
                "average_value_incl_vat": round(int(v) / int(n)),
                "average_energy_wh": round(int(e) / int(n)),
            }
            for s, n, v, e in rows[:TOP_STATIONS]
        ],
    }


def _authorizations(conn: Conn, scope: tuple[Any, ...], bucket: str) -> list[dict[str, Any]]:
    table, where = _rollup("authorizations", bucket)
    rows = conn.execute(
        "SELECT provider, payment_method, sum(succeeded)::bigint, sum(failed)::bigint"
        f" FROM {table} WHERE {where}"  # nosec B608  # constant SQL; values are bound
        " GROUP BY provider, payment_method ORDER BY provider, payment_method",
        scope,
    ).fetchall()
    return [
        {
            "provider": p,
            "payment_method": m,
            "succeeded": int(ok),
            "failed": int(bad),
            "success_rate": round(int(ok) / (int(ok) + int(bad)), 4)
            if int(ok) + int(bad)
            else None,
        }
        for p, m, ok, bad in rows
    ]


def _open_holds(conn: Conn, f: Filters, currency: str) -> dict[str, Any]:
    """Open authorization holds by age (the ``open_authorizations`` view, as ``evledger
    open-authorizations``); not limited to the time range: a hold is open now or not."""
    cases = " ".join(
        f"WHEN age < interval '{s} seconds' THEN {i}" for i, (s, _) in enumerate(HOLD_AGES)
    )
    rows = conn.execute(
        f"SELECT CASE {cases} ELSE {len(HOLD_AGES)} END AS bucket, count(*), sum(hold)::bigint"  # nosec B608  # buckets are module constants
        " FROM open_authorizations WHERE network_id = %s AND currency = %s"
        " AND (%s::text IS NULL OR station_id = %s) GROUP BY bucket",
        (f.network, currency, f.station, f.station),
    ).fetchall()
    found = {int(b): (int(n), int(h)) for b, n, h in rows}
    labels = [label for _, label in HOLD_AGES] + ["> 7 d"]
    buckets = [
        {"age": label, "holds": found.get(i, (0, 0))[0], "amount": found.get(i, (0, 0))[1]}
        for i, label in enumerate(labels)
    ]
    return {
        "holds": sum(b["holds"] for b in buckets),
        "amount": sum(b["amount"] for b in buckets),
        "by_age": buckets,
    }


def _in_doubt(conn: Conn, f: Filters) -> dict[str, Any]:
    """Provider calls whose outcome is unknown (retries ran out; the resolver re-asks): live,
    oldest first, whatever the time range."""
    rows = conn.execute(
        "SELECT payment_id, provider, action, amount_minor, currency,"
        " extract(epoch FROM now() - created_at)::bigint, count(*) OVER ()"
        " FROM provider_attempts WHERE status = 'in_doubt'"
        " AND request -> 'envelope' ->> 'network_id' = %s"
        " AND (%s::text IS NULL OR request ->> 'station_id' = %s)"
        " ORDER BY created_at LIMIT %s",
        (f.network, f.station, f.station, LISTED),
    ).fetchall()
    return {
        "attempts": int(rows[0][6]) if rows else 0,
        "oldest_age_seconds": int(rows[0][5]) if rows else None,
        "oldest": [
            {
                "payment_id": p,
                "provider": pr,
                "action": a,
                "amount": am,
                "currency": c,
                "age_seconds": int(age),
            }
            for p, pr, a, am, c, age, _ in rows
        ],
    }


def _fraud(conn: Conn, f: Filters) -> dict[str, Any]:
    """Fraud alerts raised in the range (``fraud_alerts``, as ``evledger fraud alerts``); for
    one station, the alerts on the station itself or on a session there."""
    source = "fraud_alerts a"
    where = "a.network_id = %s AND a.raised_at >= %s AND a.raised_at < %s"
    args: tuple[Any, ...] = (f.network, f.since, f.until)
    if f.station is not None:  # each alert's session probed by its key, not a scan per station
        source += (
            " LEFT JOIN LATERAL (SELECT s.station_id FROM charging_sessions s"
            " WHERE s.session_id = a.session_id LIMIT 1) s ON true"
        )
        where += " AND (a.subject = 'station:' || %s OR s.station_id = %s)"
        args += (f.station, f.station)
    counts = conn.execute(
        f"WITH x AS MATERIALIZED (SELECT a.rules, a.action FROM {source} WHERE {where})"  # nosec B608  # constant SQL; values are bound
        " SELECT 'rule', rule, count(*) FROM x, unnest(x.rules) AS rule GROUP BY rule"
        " UNION ALL SELECT 'action', action, count(*) FROM x GROUP BY action"
        " ORDER BY 1, 3 DESC, 2",
        args,
    ).fetchall()
    latest = conn.execute(
        "SELECT a.subject, a.score::float8, a.action, a.reason, a.raised_at"
        f" FROM {source} WHERE {where} ORDER BY a.raised_at DESC LIMIT %s",  # nosec B608  # constant SQL; values are bound
        (*args, LISTED),
    ).fetchall()
    by_action = [{"action": a, "alerts": int(n)} for k, a, n in counts if k == "action"]
    return {
        "alerts": sum(x["alerts"] for x in by_action),
        "by_rule": [{"rule": r, "alerts": int(n)} for k, r, n in counts if k == "rule"],
        "by_action": sorted(by_action, key=lambda x: x["action"]),
        "latest": [
            {"subject": s, "score": sc, "action": a, "reason": r, "raised_at": at}
            for s, sc, a, r, at in latest
        ],
    }


def _operations(conn: Conn, f: Filters) -> dict[str, Any]:
    """Pipeline-wide: every consumer group's counts (``evledger ledger counts``) and the
    records rejected in the range by reason (``rejections``)."""
    groups = conn.execute(
        "SELECT consumer_group, applied, duplicates, rejected FROM processing_counts"
        " ORDER BY consumer_group"
    ).fetchall()
    reasons = conn.execute(
        "SELECT reason_code, count(*) FROM rejections WHERE rejected_at >= %s"
        " AND rejected_at < %s GROUP BY reason_code ORDER BY count(*) DESC, reason_code",
        (f.since, f.until),
    ).fetchall()
    return {
        "groups": [
            {
                "consumer_group": g,
                "applied": int(a),
                "duplicates": int(d),
                "rejected": int(r),
                "consumed": int(a) + int(d) + int(r),
            }
            for g, a, d, r in groups
        ],
        "rejections_by_reason": [{"reason_code": c, "records": int(n)} for c, n in reasons],
    }


DEFAULT_SPAN = timedelta(days=7)
"""The range shown when none is asked for: the week before ``until``."""


def default_range(now: datetime) -> tuple[datetime, datetime]:
    """The ``DEFAULT_SPAN`` of whole hours up to the end of the current hour."""
    until = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    return until - DEFAULT_SPAN, until
