"""Closing a period: the close pack's figures, read from the journal, and the lock.

``close(conn, period, closed_by, write_pack)`` runs in one transaction: it takes the period lock
FOR UPDATE (so ledger batches in flight finish first and later ones see the new lock), checks
the period may be closed (``ledger.accounting.periods.check_closable``), computes every figure
of the pack for [starts_at, ends_at), hands them to ``write_pack`` (which writes the files and
returns their manifest), records the manifest in ``closed_periods`` and moves the lock to the
period's end. Amounts are integer minor units. See docs/finance-close.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import psycopg

from ledger.accounting.periods import Period, check_closable

Conn = psycopg.Connection[Any]
Table = tuple[tuple[str, ...], list[tuple[Any, ...]]]
"""A pack table: its column names (money columns end in ``_minor``) and its rows."""

_IN_PERIOD = "occurred_at >= %(starts)s AND occurred_at < %(ends)s"

# Where a revenue or refund posting's account puts it: dimension, country and VAT rate
# (revenue:<dim>:<country>:<rate>, contra_revenue:refunds:<dim>:<country>:<rate>).
_DIM, _COUNTRY, _RATE = (
    f"CASE WHEN p.account LIKE 'revenue:%%' THEN split_part(p.account, ':', {n})"
    f" ELSE split_part(p.account, ':', {n + 1}) END"
    for n in (2, 3, 4)
)
_REVENUE = "(p.account LIKE 'revenue:%%' OR p.account LIKE 'contra_revenue:refunds:%%')"
_AMOUNTS = """coalesce(-sum(p.amount_minor) FILTER (WHERE p.account LIKE 'revenue:%%'), 0),
               coalesce(sum(p.amount_minor) FILTER (WHERE p.account LIKE 'contra_revenue:%%'), 0),
               -sum(p.amount_minor)"""

# The VAT place (country and rate) of each entry in the period: the one its VAT postings name,
# or MIXED; what a bad-debt entry's net is attributed to in the VAT return's taxable base.
_ENTRY_PLACE = f"""
    SELECT entry_id,
           CASE WHEN count(DISTINCT account) = 1 THEN min(split_part(account, ':', 3))
                ELSE 'MIXED' END AS country,
           CASE WHEN count(DISTINCT account) = 1 THEN min(split_part(account, ':', 4))
                ELSE 'MIXED' END AS vat_rate
    FROM postings WHERE account LIKE 'liabilities:vat_payable:%%' AND {_IN_PERIOD}
    GROUP BY entry_id"""  # nosec B608  # constants only

QUERIES: dict[str, tuple[tuple[str, ...], str]] = {
    "revenue": (
        (
            "dimension",
            "country",
            "vat_rate",
            "currency",
            "revenue_minor",
            "refunds_minor",
            "net_minor",
        ),
        f"""
        SELECT {_DIM}, {_COUNTRY}, {_RATE}, p.currency::text, {_AMOUNTS}
        FROM postings p WHERE {_REVENUE} AND p.{_IN_PERIOD}
        GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4""",  # nosec B608  # constants only
    ),
    "revenue_by_station": (
        (
            "network",
            "station",
            "dimension",
            "country",
            "currency",
            "revenue_minor",
            "refunds_minor",
            "net_minor",
        ),
        f"""
        SELECT p.network_id, coalesce(p.station, 'unassigned'), {_DIM}, {_COUNTRY},
               p.currency::text, {_AMOUNTS}
        FROM postings p WHERE {_REVENUE} AND p.{_IN_PERIOD}
        GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5""",  # nosec B608  # constants only
    ),
    "vat_return": (
        (
            "country",
            "vat_rate",
            "currency",
            "taxable_base_minor",
            "collected_minor",
            "reversed_minor",
            "payable_minor",
            "effective_rate_percent",
        ),
        f"""
        WITH place AS ({_ENTRY_PLACE}),
        base AS (
            SELECT CASE WHEN p.account = 'expenses:bad_debts' THEN pl.country
                        ELSE {_COUNTRY} END AS country,
                   CASE WHEN p.account = 'expenses:bad_debts' THEN pl.vat_rate
                        ELSE {_RATE} END AS vat_rate,
                   p.currency::text AS currency, -sum(p.amount_minor) AS base
            FROM postings p LEFT JOIN place pl USING (entry_id)
            WHERE ({_REVENUE} OR (p.account = 'expenses:bad_debts' AND pl.entry_id IS NOT NULL))
              AND p.{_IN_PERIOD}
            GROUP BY 1, 2, 3),
        vat AS (
            SELECT split_part(account, ':', 3) AS country,
                   split_part(account, ':', 4) AS vat_rate, currency::text AS currency,
                   coalesce(-sum(amount_minor) FILTER (WHERE amount_minor < 0), 0) AS collected,
                   coalesce(sum(amount_minor) FILTER (WHERE amount_minor > 0), 0) AS reversed,
                   -sum(amount_minor) AS payable
            FROM postings WHERE account LIKE 'liabilities:vat_payable:%%' AND {_IN_PERIOD}
            GROUP BY 1, 2, 3)
        SELECT country, vat_rate, currency, coalesce(b.base, 0), coalesce(v.collected, 0),
               coalesce(v.reversed, 0), coalesce(v.payable, 0),
               CASE WHEN coalesce(b.base, 0) = 0 THEN NULL
                    ELSE round(100.0 * coalesce(v.payable, 0) / b.base, 2) END
        FROM vat v FULL JOIN base b USING (country, vat_rate, currency) ORDER BY 1, 2, 3""",  # nosec B608  # constants only
    ),
    "clearing": (
        ("account", "currency", "opening_minor", "debits_minor", "credits_minor", "closing_minor"),
        """
        SELECT account, currency::text,
               coalesce(sum(amount_minor) FILTER (WHERE occurred_at < %(starts)s), 0),
               coalesce(sum(amount_minor) FILTER (WHERE occurred_at >= %(starts)s
                                                  AND amount_minor > 0), 0),
               coalesce(-sum(amount_minor) FILTER (WHERE occurred_at >= %(starts)s
                                                   AND amount_minor < 0), 0),
               sum(amount_minor)
        FROM postings
        WHERE (account LIKE 'assets:%%') AND occurred_at < %(ends)s
        GROUP BY 1, 2 ORDER BY 1, 2""",
    ),
    "trial_balance": (
        ("account", "currency", "balance_minor"),
        """
        SELECT account, currency::text, sum(amount_minor) FROM postings
        WHERE occurred_at < %(ends)s GROUP BY 1, 2 HAVING sum(amount_minor) <> 0 ORDER BY 1, 2""",
    ),
    "open_holds": (
        ("account", "currency", "open_minor"),
        """
        SELECT account, currency::text, sum(amount_minor) FROM postings
        WHERE account LIKE 'memo:authorization_holds:%%' AND occurred_at < %(ends)s
        GROUP BY 1, 2 HAVING sum(amount_minor) <> 0 ORDER BY 1, 2""",
    ),
    "receivables_ageing": (
        ("payment_id", "cdr_id", "currency", "supplied_at", "age_days", "open_at_close_minor"),
        """
        SELECT p.payment_id, r->>'cdr_id', p.currency::text, (r->>'since')::timestamptz,
               extract(day FROM %(ends)s - (r->>'since')::timestamptz)::int,
               (r->>'amount')::bigint - (r->>'collected')::bigint - (r->>'written_off')::bigint
        FROM payments p
        CROSS JOIN LATERAL json_array_elements(coalesce(p.state->'receivables', '[]'::json)) r
        WHERE (r->>'since')::timestamptz < %(ends)s
          AND (r->>'amount')::bigint - (r->>'collected')::bigint - (r->>'written_off')::bigint > 0
        ORDER BY 4, 1, 2""",
    ),
    "relocated": (
        ("entry_id", "kind", "original_occurred_at", "booked_at"),
        """
        SELECT r.entry_id::text, e.kind, r.original_occurred_at, r.booked_at
        FROM relocated_entries r JOIN journal_entries e USING (entry_id)
        WHERE r.booked_at >= %(starts)s AND r.booked_at < %(ends)s ORDER BY 3, 1""",
    ),
}
"""Every table of the close pack: its columns and the query over [starts, ends)."""


@dataclass(frozen=True)
class ClosedPeriod:
    period: Period
    closed_by: str
    closed_at: datetime
    manifest: dict[str, Any]


def figures(conn: Conn, period: Period) -> dict[str, Table]:
    """Every table of the close pack for ``period``, as the journal says now."""
    params = {"starts": period.starts_at, "ends": period.ends_at}
    out: dict[str, Table] = {}
    for name, (columns, query) in QUERIES.items():
        rows = conn.execute(query, params).fetchall()
        out[name] = (columns, [_typed(columns, row) for row in rows])
    return out


def _typed(columns: tuple[str, ...], row: Any) -> tuple[Any, ...]:
    """Money columns (``*_minor``) as int (SQL sums are numeric), other numbers as text."""
    return tuple(
        int(v) if c.endswith("_minor") and v is not None
        else str(v) if isinstance(v, Decimal) else v
        for c, v in zip(columns, row, strict=True)
    )  # fmt: skip


def locked_until(conn: Conn) -> datetime | None:
    row = conn.execute("SELECT locked_until FROM period_lock").fetchone()
    return None if row is None else row[0]


def close(
    conn: Conn,
    period: Period,
    closed_by: str,
    write_pack: Callable[[dict[str, Table]], dict[str, Any]],
    *,
    now: datetime | None = None,
) -> ClosedPeriod:
    """Close ``period`` in one transaction (see the module docstring). Raises PeriodNotOver,
    PeriodAlreadyClosed, PeriodNotNext; nothing is locked then."""
    with conn.transaction():
        row = conn.execute("SELECT locked_until FROM period_lock FOR UPDATE").fetchone()
        check_closable(period, None if row is None else row[0], now or datetime.now(UTC))
        manifest = write_pack(figures(conn, period))
        closed = conn.execute(
            "INSERT INTO closed_periods (period, time_zone, starts_at, ends_at, closed_by,"
            " manifest) VALUES (%s, %s, %s, %s, %s, %s) RETURNING closed_at",
            (period.name, period.zone, period.starts_at, period.ends_at, closed_by,
             orjson.dumps(manifest, default=str).decode()),
        ).fetchone()  # fmt: skip
        conn.execute("UPDATE period_lock SET locked_until = %s", (period.ends_at,))
    assert closed is not None
    return ClosedPeriod(period, closed_by, closed[0], manifest)


def closed_periods(conn: Conn) -> list[tuple[str, str, datetime, str]]:
    """(period, zone, closed_at, closed_by) of every closed period, oldest first."""
    rows = conn.execute(
        "SELECT period, time_zone, closed_at, closed_by FROM closed_periods ORDER BY starts_at"
    ).fetchall()
    return [(r[0], r[1], r[2], r[3]) for r in rows]
