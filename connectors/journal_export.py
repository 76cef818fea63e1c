"""The journal, out to an accounting system: every posting of the entries dated in a range, with
the customer's general-ledger account and the CDR it books, as CSV or as SAF-T Financial XML.

Both are written from the same rows (``postings``), so they sum to the same trial balance.
Dates are the entries' dates in the books' time zone. See docs/finance-close.md.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import IO, Any
from xml.etree import ElementTree as ET
from zoneinfo import ZoneInfo

import psycopg

from ledger.money import exponent

Conn = psycopg.Connection[Any]

CSV_COLUMNS = (
    "entry_id", "event_id", "kind", "booking_date", "occurred_at", "payment_id", "cdr_id",
    "account", "gl_account", "currency", "debit_minor", "credit_minor", "station", "session_id",
    "evse_id", "tariff_id",
)  # fmt: skip
"""The CSV export's columns: amounts in integer minor units of ``currency``, one of debit and
credit non-zero; ``booking_date`` in the books' time zone; ``cdr_id`` the CDR the entry books,
when its event named one; ``station`` the posting's station, and ``session_id``, ``evse_id``,
``tariff_id`` of the charging session whose payment the entry books (empty when none)."""

SAFT_NAMESPACE = "urn:StandardAuditFile-Taxation-Financial:NO"


@dataclass(frozen=True, slots=True)
class ExportedPosting:
    entry_id: str
    event_id: str
    kind: str
    occurred_at: datetime
    payment_id: str | None
    cdr_id: str | None
    ordinal: int
    account: str
    currency: str
    amount_minor: int
    station: str | None
    session_id: str | None
    evse_id: str | None
    tariff_id: str | None

    @property
    def dimensions(self) -> dict[str, str]:
        """The posting's dimensions that are known, by name (SAF-T analysis types)."""
        named = {
            "STATION": self.station,
            "SESSION": self.session_id,
            "EVSE": self.evse_id,
            "TARIFF": self.tariff_id,
        }
        return {kind: value for kind, value in named.items() if value}


def postings(
    conn: Conn, since: datetime | None, until: datetime | None, *, memo: bool = False
) -> list[ExportedPosting]:
    """Every posting of the entries dated in [since, until), in date and entry order; the memo
    entries (authorization holds, not money) only with ``memo``."""
    rows = conn.execute(
        "SELECT e.entry_id::text, e.event_id, e.kind, e.occurred_at, e.payment_id, r.cdr_id,"
        " p.ordinal, p.account, p.currency::text, p.amount_minor, p.station, s.session_id,"
        " s.evse_id, s.tariff_id"
        " FROM journal_entries e"
        " CROSS JOIN LATERAL unnest(e.accounts, e.currencies, e.amounts, e.stations)"
        "   WITH ORDINALITY AS p(account, currency, amount_minor, station, ordinal)"
        " LEFT JOIN entry_references r ON r.entry_id = e.entry_id"
        " LEFT JOIN LATERAL (SELECT cs.session_id, cs.evse_id, cs.tariff_id"
        "   FROM charging_sessions cs WHERE cs.payment_id = e.payment_id LIMIT 1) s ON true"
        " WHERE e.occurred_at >= coalesce(%s::timestamptz, '-infinity')"
        " AND e.occurred_at < coalesce(%s::timestamptz, 'infinity')"
        " AND (%s OR e.accounts[1] NOT LIKE 'memo:%%')"
        " ORDER BY e.occurred_at, e.entry_id, p.ordinal",
        (since, until, memo),
    ).fetchall()
    return [ExportedPosting(*row) for row in rows]


def write_csv(out: IO[str], rows: list[ExportedPosting], gl: dict[str, str], zone: str) -> int:
    """The CSV export of ``rows``; returns the rows written (the header is always written)."""
    tz = ZoneInfo(zone)
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        debit, credit = (r.amount_minor, 0) if r.amount_minor > 0 else (0, -r.amount_minor)
        writer.writerow([
            r.entry_id, r.event_id, r.kind, r.occurred_at.astimezone(tz).date().isoformat(),
            r.occurred_at.isoformat(), r.payment_id or "", r.cdr_id or "", r.account,
            gl[r.account], r.currency, debit, credit, r.station or "", r.session_id or "",
            r.evse_id or "", r.tariff_id or "",
        ])  # fmt: skip
    return len(rows)


def write_saft(
    out: IO[bytes],
    rows: list[ExportedPosting],
    gl: dict[str, str],
    *,
    zone: str,
    company: str,
    since: date | None,
    until: date | None,
    software_version: str,
) -> int:
    """SAF-T Financial XML (the Norwegian 1.30 layout: Header, GeneralLedgerAccounts,
    GeneralLedgerEntries with one Transaction per journal entry and one Line per posting).
    Amounts are decimal major units; entries in another currency than the book's first carry
    CurrencyCode and CurrencyAmount. Returns the transactions written."""
    tz = ZoneInfo(zone)
    ET.register_namespace("", SAFT_NAMESPACE)
    ns = f"{{{SAFT_NAMESPACE}}}"
    root = ET.Element(f"{ns}AuditFile")
    currencies = sorted({r.currency for r in rows}) or ["EUR"]
    header = _sub(root, "Header")
    for tag, text in (
        ("AuditFileVersion", "1.30"),
        ("AuditFileCountry", "NO"),
        ("AuditFileDateCreated", datetime.now(UTC).date().isoformat()),
        ("SoftwareCompanyName", "evledger"),
        ("SoftwareID", "evledger"),
        ("SoftwareVersion", software_version),
    ):
        _sub(header, tag, text)
    _sub(_sub(header, "Company"), "Name", company)
    _sub(header, "DefaultCurrencyCode", currencies[0])
    criteria = _sub(header, "SelectionCriteria")
    _sub(criteria, "SelectionStartDate", since.isoformat() if since else "1970-01-01")
    _sub(criteria, "SelectionEndDate", until.isoformat() if until else "9999-12-31")
    ledger = _sub(_sub(root, "MasterFiles"), "GeneralLedgerAccounts")
    for target in sorted(set(gl.values())):
        account = _sub(ledger, "Account")
        _sub(account, "AccountID", target)
        names = sorted(code for code, mapped in gl.items() if mapped == target)
        _sub(account, "AccountDescription", "; ".join(names)[:255])
        _sub(account, "AccountType", "GL")
    entries = _sub(root, "GeneralLedgerEntries")
    transactions = list(_by_entry(rows))
    _sub(entries, "NumberOfEntries", str(len(transactions)))
    debit = sum((_major(r) for r in rows if r.amount_minor > 0), Decimal(0))
    credit = sum((-_major(r) for r in rows if r.amount_minor < 0), Decimal(0))
    _sub(entries, "TotalDebit", str(debit))
    _sub(entries, "TotalCredit", str(credit))
    journal = _sub(entries, "Journal")
    _sub(journal, "JournalID", "EVLEDGER")
    _sub(journal, "Description", "evledger journal")
    _sub(journal, "Type", "GL")
    for lines in transactions:
        first = lines[0]
        day = first.occurred_at.astimezone(tz).date()
        tx = _sub(journal, "Transaction")
        for tag, text in (
            ("TransactionID", first.entry_id),
            ("Period", str(day.month)),
            ("PeriodYear", str(day.year)),
            ("TransactionDate", day.isoformat()),
            ("Description", f"{first.kind} {first.event_id}"),
            ("SystemEntryDate", day.isoformat()),
            ("GLPostingDate", day.isoformat()),
        ):
            _sub(tx, tag, text)
        for r in lines:
            line = _sub(tx, "Line")
            _sub(line, "RecordID", str(r.ordinal))
            _sub(line, "AccountID", gl[r.account])
            for kind, value in r.dimensions.items():
                analysis = _sub(line, "Analysis")
                _sub(analysis, "AnalysisType", kind)
                _sub(analysis, "AnalysisID", value)
            if r.cdr_id:
                _sub(line, "ReferenceNumber", r.cdr_id)
            _sub(line, "Description", r.account)
            side = _sub(line, "DebitAmount" if r.amount_minor > 0 else "CreditAmount")
            _sub(side, "Amount", str(abs(_major(r))))
            if r.currency != currencies[0]:
                _sub(side, "CurrencyCode", r.currency)
                _sub(side, "CurrencyAmount", str(abs(_major(r))))
    ET.ElementTree(root).write(out, encoding="utf-8", xml_declaration=True)
    return len(transactions)


def _by_entry(rows: list[ExportedPosting]) -> Iterator[list[ExportedPosting]]:
    current: list[ExportedPosting] = []
    for r in rows:
        if current and r.entry_id != current[0].entry_id:
            yield current
            current = []
        current.append(r)
    if current:
        yield current


def _major(r: ExportedPosting) -> Decimal:
    return Decimal(r.amount_minor).scaleb(-exponent(r.currency))


def _sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    element = ET.SubElement(parent, f"{{{SAFT_NAMESPACE}}}{tag}")
    if text is not None:
        element.text = text
    return element


def example_mapping() -> str:
    """A mapping that covers every account family (SKR03-like numbers, to be replaced): German
    revenue and VAT at 19 % and 7 % on their own accounts, every other country and rate on a
    catch-all (the most specific pattern wins)."""
    numbers = {
        "assets:bank": "1200",
        "assets:provider_clearing:*": "1360",
        "assets:settlement_receivable:*": "1361",
        "assets:customer_receivables": "1400",
        "assets:disputes_receivable:*": "1362",
        "liabilities:vat_payable:DE:19": "1776",
        "liabilities:vat_payable:DE:7": "1771",
        "liabilities:vat_payable:*": "1779",
        "revenue:*:DE:19": "8400",
        "revenue:*:DE:7": "8300",
        "revenue:*": "8338",
        "contra_revenue:refunds:*": "8700",
        "expenses:provider_fees:*": "4970",
        "expenses:dispute_losses:*": "2400",
        "expenses:bad_debts": "2401",
        "expenses:write_offs:*": "2402",
        "equity:opening_balances": "9000",
        "memo:*": "9990",
    }
    return "".join(f'"{pattern}" = "{number}"\n' for pattern, number in numbers.items())
