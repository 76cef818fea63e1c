"""Migration 024's data step: a book kept under the old chart of accounts, converted.

The old chart had one revenue account per network and station (``revenue:energy:<network>:
<station>``, ``contra_revenue:refunds:<dim>:<network>:<station>``) and one VAT account per
country (``liabilities:vat_payable:<country>``). The new one has revenue, refunds and VAT per
country of supply and VAT rate, with the station on the posting (docs/accounting.md). Run once,
inside the migration's transaction, right after ``024_chart_by_country.sql``:

1. Every journal entry with a revenue, refund or VAT posting gets its new account codes and
   stations. The station comes from the old account code; the country from the entry's VAT
   posting (one country per capture), else from the payment's recorded revenue; the rate from
   the lines of the CDRs billed to the payment, one rate per tariff dimension. What the old
   book never recorded stays visible as ``unassigned``, never guessed: an entry whose VAT spans
   several rates keeps one VAT posting at rate ``unassigned``. Amounts, dates, ids and the order
   of postings do not change, so every balance per network, station, dimension and country
   stays what it was.
2. The payments' recorded revenue shares (what refunds are allocated against) get the same
   rates, so a later refund of a converted capture books to the accounts the capture used.
3. ``balances`` of revenue, refund and VAT accounts are rebuilt from the converted journal.
4. Each hash chain is re-linked over the converted rows (the content hashed changed), and
   the heads before and after are recorded in ``journal_chain_rebases``: an auditor holding an
   older head can see where and why the chain was re-anchored (docs/audit.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import orjson
import psycopg

from connectors.ledger_store import STORED_ROW, stored_line
from ledger.accounting import accounts
from ledger.accounting.chain import GENESIS, link
from ledger.dimensions import Dimension

Conn = psycopg.Connection[Any]

REASON = "migration 024: chart of accounts per country and VAT rate, station on the posting"


@dataclass(frozen=True, slots=True)
class Conversion:
    """What the step changed."""

    entries: int
    payments: int
    chains: int


@dataclass(frozen=True, slots=True)
class Converted:
    accounts: list[str]
    stations: list[str | None] | None


_DIMENSIONS = {d.value.lower(): d for d in Dimension}


def convert_entry(
    codes: Sequence[str], country_of_payment: str | None, rates: dict[str, str | None]
) -> Converted | None:
    """The new codes and stations of one entry's postings (None: nothing to convert).

    ``rates`` maps a tariff dimension (lower case) to the rate billed for it, None when
    unknown; ``country_of_payment`` is used when the entry has no VAT posting."""
    vat_countries = {c.split(":")[2] for c in codes if c.startswith("liabilities:vat_payable:")}
    if not any(_is_old(c) for c in codes):
        return None
    country = (next(iter(vat_countries)) if len(vat_countries) == 1 else None) or country_of_payment
    stations_of_entry: set[str] = set()
    out_codes: list[str] = []
    stations: list[str | None] = []
    dims: set[str] = set()
    for code in codes:
        parts = code.split(":")
        if parts[0] == "revenue" and len(parts) == 4:
            dim, station = parts[1], _station(parts[3])
            out_codes.append(accounts.revenue(_DIMENSIONS[dim], country, rates.get(dim)).code)
        elif parts[:2] == ["contra_revenue", "refunds"] and len(parts) == 5:
            dim, station = parts[2], _station(parts[4])
            out_codes.append(accounts.refunds(_DIMENSIONS[dim], country, rates.get(dim)).code)
        else:
            out_codes.append(code)
            stations.append(None)
            continue
        dims.add(dim)
        stations.append(station)
        if station is not None:
            stations_of_entry.add(station)
    entry_rates = {rates.get(d) for d in dims}
    vat_rate = next(iter(entry_rates)) if len(entry_rates) == 1 else None
    only_station = next(iter(stations_of_entry)) if len(stations_of_entry) == 1 else None
    for i, code in enumerate(codes):
        parts = code.split(":")
        if parts[:2] == ["liabilities", "vat_payable"] and len(parts) == 3:
            out_codes[i] = accounts.vat_payable(parts[2], vat_rate).code
            stations[i] = only_station
    return Converted(out_codes, stations if any(s is not None for s in stations) else None)


def _is_old(code: str) -> bool:
    """A revenue, refund or VAT code in the old chart's shape. (The step runs once, before
    anything books under the new chart, so every revenue and refund code it meets is old.)"""
    parts = code.split(":")
    return (
        (parts[0] == "revenue" and len(parts) == 4)
        or (parts[:2] == ["contra_revenue", "refunds"] and len(parts) == 5)
        or (parts[:2] == ["liabilities", "vat_payable"] and len(parts) == 3)
    )


def _station(segment: str) -> str | None:
    """The station id an old account segment encoded (``accounts.segment`` percent-encodes)."""
    return None if segment == accounts.UNASSIGNED else unquote(segment)


def convert(conn: Conn) -> Conversion:
    """Convert the book in ``conn``'s database (inside the caller's transaction)."""
    rates = _rates_by_payment(conn)
    countries = _countries_by_payment(conn)
    rows = conn.execute(
        "SELECT entry_id, payment_id, accounts FROM journal_entries"
        " WHERE stations IS NULL AND EXISTS (SELECT 1 FROM unnest(accounts) a"
        "  WHERE a LIKE 'revenue:%' OR a LIKE 'contra_revenue:%'"
        "   OR a LIKE 'liabilities:vat_payable:%')"
    ).fetchall()
    updates: list[tuple[list[str], list[str | None] | None, Any]] = []
    for entry_id, payment_id, codes in rows:
        converted = convert_entry(codes, countries.get(payment_id), rates.get(payment_id, {}))
        if converted is not None and (
            converted.accounts != list(codes) or converted.stations is not None
        ):
            updates.append((converted.accounts, converted.stations, entry_id))
    if not updates:
        return Conversion(0, 0, 0)
    with conn.cursor() as cur:
        cur.executemany(
            "UPDATE journal_entries SET accounts = %s, stations = %s WHERE entry_id = %s", updates
        )
    payments = _add_rates_to_states(conn, rates)
    _rebuild_balances(conn)
    chains = relink_chains(conn, REASON, len(updates))
    return Conversion(len(updates), payments, chains)


def _rates_by_payment(conn: Conn) -> dict[str, dict[str, str | None]]:
    """Per payment and tariff dimension, the one VAT rate its issued CDRs billed (None when
    they billed several or none)."""
    out: dict[str, dict[str, str | None]] = {}
    for payment_id, dim, rates in conn.execute(
        "SELECT cs.payment_id, lower(l->>'dimension'), array_agg(DISTINCT l->>'vat_rate')"
        " FROM charging_sessions cs JOIN session_cdrs c ON c.session_id = cs.session_id"
        " CROSS JOIN LATERAL jsonb_array_elements(c.lines) l"
        " WHERE cs.payment_id IS NOT NULL AND c.kind = 'issued' GROUP BY 1, 2"
    ):
        canonical = {accounts.rate_segment(r) for r in rates}
        known = canonical - {accounts.UNASSIGNED}
        out.setdefault(payment_id, {})[dim] = (
            next(iter(known)) if len(known) == 1 and len(canonical) == 1 else None
        )
    return out


def _countries_by_payment(conn: Conn) -> dict[str, str]:
    """Per payment, the one country of supply its recorded revenue names, when it names one."""
    out: dict[str, str] = {}
    for payment_id, countries in conn.execute(
        "SELECT payment_id, array_agg(DISTINCT s->>'country') FROM payments"
        " CROSS JOIN LATERAL json_array_elements(state->'revenue') s GROUP BY 1"
    ):
        known = [c for c in countries if c]
        if len(known) == 1:
            out[payment_id] = known[0]
    return out


def _add_rates_to_states(conn: Conn, rates: dict[str, dict[str, str | None]]) -> int:
    """Give the revenue shares recorded in payment states the rates their postings now carry."""
    changed = []
    for payment_id, state in conn.execute(
        "SELECT payment_id, state FROM payments WHERE payment_id = ANY(%s)", (list(rates),)
    ):
        by_dim = rates[payment_id]
        if _fill_rates(state, by_dim):
            changed.append((orjson.dumps(state).decode(), payment_id))
    with conn.cursor() as cur:
        cur.executemany("UPDATE payments SET state = %s::json WHERE payment_id = %s", changed)
    return len(changed)


def _fill_rates(node: Any, by_dim: dict[str, str | None]) -> bool:
    """Set ``rate`` on every revenue share (a dict with dimension, station, country, net and
    vat) inside ``node`` that has none; True when one was set."""
    changed = False
    if isinstance(node, dict):
        if {"dimension", "station", "country", "net", "vat"} <= node.keys() and node.get(
            "rate"
        ) is None:
            rate = by_dim.get(str(node["dimension"]).lower())
            node["rate"] = rate
            changed = rate is not None
        for value in node.values():
            changed = _fill_rates(value, by_dim) or changed
    elif isinstance(node, list):
        for value in node:
            changed = _fill_rates(value, by_dim) or changed
    return changed


def _rebuild_balances(conn: Conn) -> None:
    conn.execute(
        "DELETE FROM balances WHERE account LIKE 'revenue:%' OR account LIKE 'contra_revenue:%'"
        " OR account LIKE 'liabilities:vat_payable:%'"
    )
    conn.execute(
        "INSERT INTO balances (account, currency, debit, credit, postings)"
        " SELECT account, currency,"
        "  coalesce(sum(amount_minor) FILTER (WHERE amount_minor > 0), 0),"
        "  coalesce(-sum(amount_minor) FILTER (WHERE amount_minor < 0), 0), count(*)"
        " FROM postings WHERE account LIKE 'revenue:%' OR account LIKE 'contra_revenue:%'"
        "  OR account LIKE 'liabilities:vat_payable:%'"
        " GROUP BY account, currency"
    )


def relink_chains(conn: Conn, reason: str, changed: int) -> int:
    """Recompute every hash chain over the journal as stored now, and record the heads before
    and after in ``journal_chain_rebases``; returns the number of chains."""
    heads_before = _heads(conn)
    if not heads_before:
        return 0
    lines = {
        row[0]: stored_line(row)
        for row in conn.execute(f"SELECT {STORED_ROW} FROM journal_entries")  # nosec B608  # SQL built from module constants; values are bound parameters
    }
    segments = conn.execute(
        "SELECT topic, partition, first_seq, entry_ids::text[] FROM journal_chain"
        " ORDER BY topic, partition, first_seq"
    ).fetchall()
    previous: dict[tuple[str, int], str] = {}
    broken: set[tuple[str, int]] = set()
    rewritten: list[tuple[list[str], str, int, int]] = []
    for topic, partition, first_seq, entry_ids in segments:
        chain = (topic, partition)
        if chain in broken:
            continue
        digest = previous.get(chain, GENESIS)
        hashes: list[str] = []
        for entry_id in entry_ids:
            content = lines.get(entry_id)
            if content is None:  # names a missing entry: left as it is, for audit verify
                broken.add(chain)
                break
            digest = link(digest, content)
            hashes.append(digest)
        if chain in broken:
            previous.pop(chain, None)
            continue
        previous[chain] = digest
        rewritten.append((hashes, topic, partition, first_seq))
    with conn.cursor() as cur:
        cur.executemany(
            "UPDATE journal_chain SET hashes = %s"
            " WHERE topic = %s AND partition = %s AND first_seq = %s",
            rewritten,
        )
        cur.executemany(
            "UPDATE journal_chain_heads SET hash = %s WHERE topic = %s AND partition = %s",
            [(digest, topic, partition) for (topic, partition), digest in previous.items()],
        )
    conn.execute(
        "INSERT INTO journal_chain_rebases (reason, entries, heads_before, heads_after)"
        " VALUES (%s, %s, %s::jsonb, %s::jsonb)",
        (reason, changed, _json(heads_before), _json(_heads(conn))),
    )
    return len(previous)


def _heads(conn: Conn) -> list[dict[str, Any]]:
    return [
        {"topic": t, "partition": p, "seq": s, "hash": h}
        for t, p, s, h in conn.execute(
            "SELECT topic, partition, seq, hash FROM journal_chain_heads ORDER BY 1, 2"
        )
    ]


def _json(value: Iterable[Any]) -> str:
    return orjson.dumps(list(value)).decode()
