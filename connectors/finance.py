"""Finance queries over the ledger projection, shared by the CLI and the HTTP API.

Each function reads one view of ``connectors/migrations/011_finance_views.sql`` (or the journal
for balances as of a past time) and returns plain rows: amounts in integer minor units with their
currency, never floats. Every list that can grow is paged: its query takes ``limit``/``offset``
in a stable order (pages never overlap) and returns a ``Page``, whose ``next_offset`` is None on
the last page (the query asks for one row more than the page holds, so a full last page ends
too). CSV columns (``csv_columns``) name each money column with its unit, ``<name>_minor``.
Examples with sample output, and the API and CSV contract: docs/finance-queries.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any, ClassVar, Generic, TypeVar

import psycopg

from ledger import validation
from ledger.errors import LedgerError, ValidationError
from ledger.money import Money

Conn = psycopg.Connection[Any]
MAX_LIMIT = 10_000


class UnknownPaymentId(LedgerError):
    """No payment with this id in the projection (never authorized, or not projected yet)."""

    code = "UNKNOWN_PAYMENT_ID"


class BalanceView(StrEnum):
    POSTED = "posted"
    PENDING = "pending"
    ALL = "all"


class RevenueBy(StrEnum):
    STATION = "station"
    DAY = "day"
    DIMENSION = "dimension"
    COUNTRY = "country"
    COUNTRY_RATE = "country_rate"


class VatPeriod(StrEnum):
    MONTH = "month"
    QUARTER = "quarter"
    YEAR = "year"


MINOR_SUFFIX = "_minor"
"""What a money column's CSV name ends in: the amount is in integer minor units of the row's
``currency`` (EUR 12.34 is 1234)."""


@dataclass(frozen=True, slots=True)
class Row:
    """Base of every result row: ``as_dict`` is JSON-ready (dates as ISO text). ``money`` names
    the fields that hold amounts (integer minor units of the row's currency)."""

    money: ClassVar[frozenset[str]] = frozenset()

    def as_dict(self) -> dict[str, Any]:
        return {k: _json(v) for k, v in asdict(self).items()}


R = TypeVar("R")


@dataclass(frozen=True)
class Page(Generic[R]):
    """One page of a list: at most ``limit`` rows from ``offset``, and the offset of the next
    page, None when this is the last. Iterating a page iterates its rows."""

    items: list[R]
    limit: int
    offset: int
    next_offset: int | None

    @classmethod
    def of(cls, fetched: Sequence[R], limit: int, offset: int) -> Page[R]:
        """The page from ``fetched``, the rows a query returned when asked for ``limit + 1``:
        the extra row only says that another page follows."""
        more = len(fetched) > limit
        return cls(list(fetched[:limit]), limit, offset, offset + limit if more else None)

    def __iter__(self) -> Iterator[R]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


def csv_columns(row_type: type[Row], first: str | None = None) -> list[str]:
    """The CSV header for rows of ``row_type``: the field names, money fields suffixed
    ``_minor`` (their unit); ``first`` renames the first column (revenue's ``key`` is the
    station, day or dimension it is grouped by)."""
    names = [f.name + (MINOR_SUFFIX if f.name in row_type.money else "") for f in fields(row_type)]
    if first is not None:
        names[0] = first
    return names


@dataclass(frozen=True, slots=True)
class BalanceRow(Row):
    money: ClassVar[frozenset[str]] = frozenset({"debit", "credit", "balance"})
    account: str
    currency: str
    debit: int
    credit: int
    balance: int
    """Debit positive: negative for revenue and liabilities."""


@dataclass(frozen=True, slots=True)
class TrialBalanceRow(Row):
    money: ClassVar[frozenset[str]] = frozenset({"debit_balance", "credit_balance"})
    account: str
    currency: str
    debit_balance: int
    credit_balance: int


@dataclass(frozen=True, slots=True)
class OpenAuthorization(Row):
    money: ClassVar[frozenset[str]] = frozenset({"authorized", "captured", "hold"})
    payment_id: str
    network_id: str
    provider: str
    currency: str
    authorized: int
    captured: int
    hold: int
    station_id: str | None
    created_at: datetime
    age_seconds: int


@dataclass(frozen=True, slots=True)
class RevenueRow(Row):
    money: ClassVar[frozenset[str]] = frozenset({"revenue", "refunds", "net_revenue"})
    key: str
    """The station, day (ISO date) or dimension."""
    currency: str
    revenue: int
    refunds: int
    net_revenue: int


@dataclass(frozen=True, slots=True)
class ProviderFlow(Row):
    money: ClassVar[frozenset[str]] = frozenset({"captured", "refunded", "voided", "capture_fees"})
    provider: str
    currency: str
    captures: int
    captured: int
    refunds: int
    refunded: int
    voids: int
    voided: int
    capture_fees: int


@dataclass(frozen=True, slots=True)
class VatRow(Row):
    money: ClassVar[frozenset[str]] = frozenset(
        {"taxable_base", "collected", "reversed", "payable"}
    )
    country: str
    vat_rate: str
    period: date
    currency: str
    taxable_base: int
    collected: int
    reversed: int
    payable: int


@dataclass(frozen=True, slots=True)
class EntryLine(Row):
    entry_id: str
    event_id: str
    event_type: str
    kind: str
    occurred_at: datetime
    account: str
    currency: str
    amount_minor: int


@dataclass(frozen=True, slots=True)
class PaymentDetail(Row):
    payment_id: str
    network_id: str
    status: str
    provider: str
    currency: str
    authorized: int
    captured: int
    refunded: int
    hold: int
    station_id: str | None
    created_at: datetime
    last_event_at: datetime
    state: dict[str, Any] | None
    """the ledger's stored state document (None at a point in time)"""
    postings: list[EntryLine]


@dataclass(frozen=True, slots=True)
class GroupCounts(Row):
    consumer_group: str
    applied: int
    duplicates: int
    rejected: int
    updated_at: datetime

    @property
    def consumed(self) -> int:
        return self.applied + self.duplicates + self.rejected


# -- queries ------------------------------------------------------------------------------------
def trial_balance(
    conn: Conn, *, network: str | None = None, limit: int = MAX_LIMIT, offset: int = 0
) -> Page[TrialBalanceRow]:
    """Posted accounts with a non-zero balance, by currency and account; per currency the two
    columns sum equal (``trial_balance_totals``, over every page). ``network``: only the
    postings of that network's entries (an API key sees its own network's books)."""
    source, args = _scoped("trial_balance", "trial_balance_of(%s)", network)
    return _fetch(
        conn,
        f"SELECT account, currency, debit_balance, credit_balance FROM {source}"  # nosec B608  # one of two constant sources
        " ORDER BY currency, account",
        args,
        limit,
        offset,
        lambda a, c, d, cr: TrialBalanceRow(a, c.strip(), int(d), int(cr)),
    )


def trial_balance_totals(conn: Conn, *, network: str | None = None) -> dict[str, tuple[int, int]]:
    """Per currency, over the whole trial balance (of ``network``): (sum of debit balances,
    sum of credit balances)."""
    source, args = _scoped("trial_balance", "trial_balance_of(%s)", network)
    rows = conn.execute(
        "SELECT currency, sum(debit_balance)::bigint, sum(credit_balance)::bigint"
        f" FROM {source} GROUP BY currency ORDER BY currency",  # nosec B608  # constant sources
        args,
    ).fetchall()
    return {str(c).strip(): (int(d), int(cr)) for c, d, cr in rows}


def balances(
    conn: Conn,
    *,
    as_of: datetime | None = None,
    view: BalanceView = BalanceView.ALL,
    prefix: str | None = None,
    network: str | None = None,
    limit: int = 1000,
    offset: int = 0,
    known_at: datetime | None = None,
) -> Page[BalanceRow]:
    """Account balances now (the aggregated table) or ``as_of`` a business time (recomputed
    from the postings), as the books knew them at processing time ``known_at`` (default: now;
    entries booked later are left out). ``prefix`` filters account codes (``assets:``). Raises
    ValidationError for a bad page or a naive ``as_of`` or ``known_at``."""
    where, params = ["true"], []
    if view is BalanceView.POSTED:
        where.append("account NOT LIKE 'memo:%%'")
    elif view is BalanceView.PENDING:
        where.append("account LIKE 'memo:%%'")
    if prefix:
        where.append("account LIKE %s")
        params.append(_like_prefix(prefix))
    validation.require_zones(as_of=as_of, known_at=known_at)
    if known_at is not None:
        source, args = "balances_known(%s, %s, %s)", [network, as_of, known_at]
    elif network is not None:
        source, args = "balances_of(%s, %s)", [network, as_of]
    elif as_of is None:
        source, args = "balances", []
    else:
        source, args = "balances_as_of(%s)", [as_of]
    return _fetch(
        conn,
        f"SELECT account, currency, debit, credit, balance FROM {source}"  # nosec B608  # SQL built from module constants; values are bound parameters
        f" WHERE {' AND '.join(where)} ORDER BY account, currency",
        [*args, *params],
        limit,
        offset,
        lambda a, c, d, cr, b: BalanceRow(a, str(c).strip(), int(d), int(cr), int(b)),
    )


def open_authorizations(
    conn: Conn,
    *,
    older_than: timedelta | None = None,
    network: str | None = None,
    limit: int = 1000,
    offset: int = 0,
) -> Page[OpenAuthorization]:
    """Payments (of ``network``) whose hold is still open, oldest first, with their age."""
    return _fetch(
        conn,
        "SELECT payment_id, network_id, provider, currency, authorized, captured, hold,"
        " station_id, created_at, extract(epoch FROM age)::bigint FROM open_authorizations"
        " WHERE age >= %s AND (%s::text IS NULL OR network_id = %s)"
        " ORDER BY created_at, payment_id",
        [older_than or timedelta(0), network, network],
        limit,
        offset,
        lambda p, n, pr, c, a, cp, h, s, t, age: OpenAuthorization(
            p, n, pr, c.strip(), int(a), int(cp), int(h), s, t, int(age)
        ),
    )


@dataclass(frozen=True, slots=True)
class ReceivableRow(Row):
    money: ClassVar[frozenset[str]] = frozenset({"amount", "collected", "written_off", "open"})
    payment_id: str
    network_id: str
    cdr_id: str
    currency: str
    amount: int
    collected: int
    written_off: int
    open: int
    since: datetime
    """The supply date: the age counts from it."""
    age_days: int
    bucket: str
    """Ageing bucket: 0-30, 31-60, 61-90 or 90+ days."""


AGEING_BUCKETS = ((30, "0-30"), (60, "31-60"), (90, "61-90"))


def ageing_bucket(age_days: int) -> str:
    """The ageing bucket of a receivable ``age_days`` old."""
    return next((name for limit, name in AGEING_BUCKETS if age_days <= limit), "90+")


def receivables(
    conn: Conn,
    *,
    as_of: datetime | None = None,
    include_settled: bool = False,
    limit: int = 1000,
    offset: int = 0,
) -> Page[ReceivableRow]:
    """Customer receivables (billed supplies whose capture failed), oldest first, aged at
    ``as_of`` (default now) from their supply date; open ones only unless
    ``include_settled``."""
    at = as_of or datetime.now(UTC)
    if at.tzinfo is None:
        raise ValidationError("as_of needs a time zone (e.g. 2026-11-30T00:00:00Z)")
    return _fetch(
        conn,
        "SELECT payment_id, network_id, cdr_id, currency, amount, collected, written_off,"
        " amount - collected - written_off AS open, since FROM ("
        "  SELECT p.payment_id, p.network_id, r->>'cdr_id' AS cdr_id, p.currency,"
        "   (r->>'amount')::bigint AS amount, (r->>'collected')::bigint AS collected,"
        "   (r->>'written_off')::bigint AS written_off, (r->>'since')::timestamptz AS since"
        "  FROM payments p"
        "  CROSS JOIN LATERAL json_array_elements(coalesce(p.state->'receivables', '[]'::json)) r"
        " ) q WHERE (%s OR amount - collected - written_off > 0) AND since <= %s"
        " ORDER BY since, payment_id, cdr_id",
        [include_settled, at],
        limit,
        offset,
        lambda *row: _receivable(at, *row),
    )


def _receivable(at: datetime, *row: Any) -> ReceivableRow:
    payment_id, network_id, cdr_id, currency, amount, collected, written_off, open_, since = row
    age = (at - since).days
    return ReceivableRow(
        payment_id,
        network_id,
        cdr_id,
        currency.strip(),
        int(amount),
        int(collected),
        int(written_off),
        int(open_),
        since,
        age,
        ageing_bucket(age),
    )


@dataclass(frozen=True, slots=True)
class CdrVatLines:
    """An issued CDR with the country and date of supply and its lines' (dimension, VAT rate)."""

    cdr_id: str
    session_id: str
    country: str
    supplied_at: datetime
    lines: tuple[tuple[str, str | None], ...]


def cdr_vat_lines(
    conn: Conn, *, since: datetime | None = None, until: datetime | None = None
) -> list[CdrVatLines]:
    """Every issued CDR of a session that stopped in [since, until), with its line rates."""
    rows = conn.execute(
        "SELECT c.cdr_id, c.session_id, s.country, s.stopped_at, c.lines FROM session_cdrs c"
        " JOIN charging_sessions s USING (session_id)"
        " WHERE c.kind = 'issued' AND s.stopped_at IS NOT NULL"
        " AND s.stopped_at >= coalesce(%s::timestamptz, '-infinity')"
        " AND s.stopped_at < coalesce(%s::timestamptz, 'infinity')"
        " ORDER BY s.stopped_at, c.cdr_id",
        (since, until),
    ).fetchall()
    return [
        CdrVatLines(
            cdr,
            session,
            country,
            stopped,
            tuple((str(line["dimension"]), line.get("vat_rate")) for line in lines),
        )
        for cdr, session, country, stopped, lines in rows
    ]


def revenue(
    conn: Conn,
    *,
    by: RevenueBy = RevenueBy.STATION,
    since: date | None = None,
    until: date | None = None,
    network: str | None = None,
    limit: int = 1000,
    offset: int = 0,
) -> Page[RevenueRow]:
    """Net revenue (recognized on supply less refunds, excluding VAT) by station, day in the
    books' time zone, tariff dimension, country of supply or VAT rate (``country:rate``), for
    days in [since, until]."""
    key = {
        RevenueBy.STATION: "station",
        RevenueBy.DAY: "day::text",
        RevenueBy.DIMENSION: "dimension",
        RevenueBy.COUNTRY: "country",
        RevenueBy.COUNTRY_RATE: "country || ':' || vat_rate",
    }[by]
    return _fetch(
        conn,
        f"SELECT {key} AS k, currency, sum(revenue)::bigint, sum(refunds)::bigint,"  # nosec B608  # SQL built from module constants; values are bound parameters
        " sum(net_revenue)::bigint FROM revenue_daily"
        " WHERE day >= coalesce(%s, '-infinity'::date) AND day <= coalesce(%s, 'infinity'::date)"
        " AND (%s::text IS NULL OR operator = %s)"
        " GROUP BY k, currency ORDER BY k, currency",
        [since, until, network, network],
        limit,
        offset,
        lambda k, c, r, f, n: RevenueRow(str(k), c, int(r), int(f), int(n)),
    )


def provider_flows(
    conn: Conn, *, network: str | None = None, limit: int = 1000, offset: int = 0
) -> Page[ProviderFlow]:
    """Captures, refunds (net of reversals) and voids that released a hold, per provider (for
    ``network``'s entries)."""
    source, args = _scoped("provider_flows", "provider_flows_of(%s)", network)
    return _fetch(
        conn,
        "SELECT provider, currency, captures, captured, refunds, refunded, voids, voided,"
        f" capture_fees FROM {source} ORDER BY provider, currency",  # nosec B608  # constant sources
        args,
        limit,
        offset,
        lambda p, c, *rest: ProviderFlow(p, c, *(int(x) for x in rest)),
    )


def vat(
    conn: Conn,
    *,
    period: VatPeriod = VatPeriod.MONTH,
    network: str | None = None,
    limit: int = 1000,
    offset: int = 0,
) -> Page[VatRow]:
    """The VAT return's figures per country of supply, VAT rate and period (in the books' time
    zone): taxable base (net revenue less refunds at that rate), VAT collected, reversed
    (refunds, bad-debt relief) and payable. Rate ``unassigned``: revenue whose tariff gave no
    rate. ``network``: that network's revenue and VAT only."""
    source, args = _scoped("vat_return", "vat_return_of(%s)", network)
    return _fetch(
        conn,
        "SELECT country, vat_rate, date_trunc(%s, period)::date AS p, currency,"
        " sum(taxable_base)::bigint, sum(collected)::bigint, sum(reversed)::bigint,"
        f" sum(payable)::bigint FROM {source}"  # nosec B608  # constant sources
        " GROUP BY country, vat_rate, p, currency ORDER BY p, country, vat_rate, currency",
        [period.value, *args],
        limit,
        offset,
        lambda c, r, p, cur, base, a, b, x: VatRow(c, r, p, cur, int(base), int(a), int(b), int(x)),
    )


def payment(
    conn: Conn,
    payment_id: str,
    *,
    network: str | None = None,
    as_of: datetime | None = None,
    known_at: datetime | None = None,
) -> PaymentDetail:
    """One payment: its state and every posting booked for it. Raises UnknownPaymentId, also
    for another network's payment when ``network`` is given (its existence is not revealed).

    At a point in time (migration 036): ``as_of`` a business time, the status and totals after
    its last event dated by then and the postings dated by then; ``known_at`` a processing time,
    as the ledger knew it then (events booked later left out). Both may be given. The payment is
    unknown at a time before its first known step, and its ``state`` document is today's only
    (None at a point in time). Raises ValidationError for a naive time."""
    validation.require_zones(as_of=as_of, known_at=known_at)
    row = conn.execute(
        "SELECT payment_id, network_id, status, provider, currency, authorized, captured,"
        " refunded, hold, station_id, created_at, last_event_at, state FROM payments"
        " WHERE payment_id = %s AND (%s::text IS NULL OR network_id = %s)",
        (payment_id, network, network),
    ).fetchone()
    if row is None:
        raise UnknownPaymentId(f"no payment {payment_id!r} in the ledger", payment_id=payment_id)
    p, n, s, pr, c, a, cp, rf, h, st, ca, la, state = row
    when = "" if as_of is None else f" as of {as_of.isoformat()}"
    when += "" if known_at is None else f" as known at {known_at.isoformat()}"
    if when:
        step = conn.execute(
            "SELECT status, authorized, captured, refunded, hold, occurred_at FROM"
            " payment_history WHERE payment_id = %s"
            " AND (%s::timestamptz IS NULL OR occurred_at <= %s)"
            " AND (%s::timestamptz IS NULL OR recorded_at <= %s) ORDER BY step DESC LIMIT 1",
            (payment_id, as_of, as_of, known_at, known_at),
        ).fetchone()
        if step is None:
            raise UnknownPaymentId(f"no payment {payment_id!r} in the ledger{when}",
                                   payment_id=payment_id)  # fmt: skip
        (s, a, cp, rf, h, la), state = step, None
    lines = conn.execute(
        "SELECT e.entry_id::text, e.event_id, e.event_type, e.kind, e.occurred_at, p.account,"
        " p.currency, p.amount_minor FROM journal_entries e JOIN postings p USING (entry_id)"
        " WHERE e.payment_id = %s AND (%s::timestamptz IS NULL OR e.occurred_at <= %s)"
        " AND (%s::timestamptz IS NULL OR e.recorded_at <= %s)"
        " ORDER BY e.occurred_at, e.recorded_at, e.entry_id, p.amount_minor DESC, p.account",
        (payment_id, as_of, as_of, known_at, known_at),
    ).fetchall()
    postings = [
        EntryLine(eid, ev, et, k, at, acc, cur.strip(), int(amt))
        for eid, ev, et, k, at, acc, cur, amt in lines
    ]
    return PaymentDetail(p, n, s, pr, c.strip(), int(a), int(cp), int(rf), int(h), st, ca, la,
                         state, postings)  # fmt: skip


def counts(
    conn: Conn, group: str | None = None, *, limit: int = MAX_LIMIT, offset: int = 0
) -> Page[GroupCounts]:
    """applied / duplicates / rejected per consumer group (all groups, or one), by group."""
    return _fetch(
        conn,
        "SELECT consumer_group, applied, duplicates, rejected, updated_at FROM processing_counts"
        " WHERE %s::text IS NULL OR consumer_group = %s ORDER BY consumer_group",
        [group, group],
        limit,
        offset,
        lambda g, a, d, r, u: GroupCounts(g, int(a), int(d), int(r), u),
    )


# -- helpers ------------------------------------------------------------------------------------
def _scoped(everything: str, of_network: str, network: str | None) -> tuple[str, list[Any]]:
    """The view over every network, or the function of one network with its argument."""
    return (everything, []) if network is None else (of_network, [network])


def display(amount_minor: int, currency: str) -> str:
    """``12.34`` for 1234 EUR: the amount in major units, exact."""
    return f"{Money(amount_minor, currency).to_decimal():f}"


def _fetch(
    conn: Conn,
    query: str,
    params: list[Any],
    limit: int,
    offset: int,
    make: Callable[..., R],
) -> Page[R]:
    """One page of ``query`` (ordered, without LIMIT/OFFSET): it fetches ``limit + 1`` rows,
    so a page that ends the list, full or not, has no next offset."""
    check_page(limit, offset)
    rows = conn.execute(f"{query} LIMIT %s OFFSET %s", [*params, limit + 1, offset]).fetchall()
    return Page.of([make(*row) for row in rows], limit, offset)


def check_page(limit: int, offset: int) -> None:
    """Raise ValidationError unless 1 <= limit <= MAX_LIMIT and offset >= 0."""
    if not 1 <= limit <= MAX_LIMIT or offset < 0:
        raise ValidationError(f"limit must be 1..{MAX_LIMIT} and offset >= 0")


def _like_prefix(prefix: str) -> str:
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def _json(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list):
        return [_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    return value
