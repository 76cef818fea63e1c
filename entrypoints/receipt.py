"""The driver's receipt of a billed session (``evledger sessions receipt ID``): HTML and PDF
(fpdf2) with the tariff, energy, time, parking, the VAT per rate (the CDR's lines grouped by
``vat_rate``), the total captured, and the signed meter data with how to verify it
independently (S.A.F.E. Transparenzsoftware). See docs/sessions.md "Signed meter values"."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from fpdf import FPDF
from fpdf.enums import WrapMode

from connectors import sessions_store as store
from ledger.dimensions import Dimension
from ledger.errors import ValidationError
from ledger.money import Money
from ledger.sessions.session import CdrKind, CdrRecord, Session

VERIFY_INSTRUCTIONS = (
    "To check the signed meter data yourself: install the transparency software of S.A.F.E. "
    "e.V. (https://www.safe-ev.de, 'Transparenzsoftware'), paste each OCMF record below "
    "together with the meter's public key, and verify. The software checks the meter's "
    "signature and shows the signed start and end readings; their difference is the energy "
    "billed above."
)


class NoReceipt(ValidationError):
    """The session has no issued CDR (not billed, voided or held)."""

    code = "SESSION_NOT_BILLED"


@dataclass(frozen=True, slots=True)
class VatRow:
    rate: str
    net: Money
    vat: Money


@dataclass(frozen=True, slots=True)
class Receipt:
    """What a receipt shows, taken from the session and its current CDR."""

    session: Session
    cdr: CdrRecord
    vat: tuple[VatRow, ...]
    captured: Money
    signed: dict[str, Any] | None

    def quantity(self, dimension: Dimension) -> Decimal:
        return sum(
            (
                Decimal(line.quantity)
                for line in self.cdr.lines
                if line.dimension == dimension and line.quantity
            ),
            Decimal(0),
        )

    @property
    def total(self) -> Money:
        return Money(self.cdr.total_incl_vat, self.cdr.currency)

    @property
    def net(self) -> Money:
        return Money(self.cdr.total_excl_vat, self.cdr.currency)

    def rows(self) -> list[tuple[str, str]]:
        s = self.session
        energy = self.quantity(Dimension.ENERGY)
        if not energy and s.meter_start_wh is not None and s.meter_stop_wh is not None:
            energy = Decimal(s.meter_stop_wh - s.meter_start_wh) / 1000
        return [
            ("Session", s.session_id),
            ("Station / EVSE", f"{s.station_id} / {s.evse_id}"),
            ("Started", s.started_at.isoformat()),
            ("Stopped", s.stopped_at.isoformat() if s.stopped_at else "-"),
            ("Tariff", f"{self.cdr.tariff_id} version {self.cdr.tariff_version}"),
            ("Energy", f"{energy} kWh"),
            ("Charging time billed", f"{self.quantity(Dimension.TIME)} h"),
            ("Parking time billed", f"{self.quantity(Dimension.PARKING_TIME)} h"),
            ("CDR", self.cdr.cdr_id),
        ]

    def lines(self) -> list[tuple[str, str, str, str, str]]:
        cur = self.cdr.currency
        return [
            (
                line.dimension.value,
                line.quantity or "",
                f"{line.vat_rate or '0'} %",
                str(Money(line.amount_excl_vat, cur)),
                str(Money(line.vat_amount, cur)),
            )
            for line in self.cdr.lines
        ]

    def signed_rows(self) -> list[tuple[str, str, str]]:
        if self.signed is None:
            return []
        return [
            (v["nature"], v["plain_data"], v["signed_data"]) for v in self.signed["signed_values"]
        ]


def vat_per_rate(cdr: CdrRecord) -> tuple[VatRow, ...]:
    """The CDR's lines grouped by VAT rate: net and VAT summed per rate."""
    groups: dict[str, tuple[int, int]] = {}
    for line in cdr.lines:
        net, vat = groups.get(line.vat_rate or "0", (0, 0))
        groups[line.vat_rate or "0"] = (net + line.amount_excl_vat, vat + line.vat_amount)
    return tuple(
        VatRow(rate, Money(net, cdr.currency), Money(vat, cdr.currency))
        for rate, (net, vat) in sorted(groups.items(), key=lambda kv: Decimal(kv[0]))
    )


def build_receipt(session: Session, cdrs: Sequence[CdrRecord]) -> Receipt:
    """The receipt of ``session`` from its CDRs (the current one: issued and not credited)."""
    credited = {c.credited_cdr_id for c in cdrs if c.kind == CdrKind.CREDITED}
    current = [c for c in cdrs if c.kind == CdrKind.ISSUED and c.cdr_id not in credited]
    if not current:
        raise NoReceipt(
            f"the session is {session.status}: no CDR to show", session_id=session.session_id
        )
    cdr = current[-1]
    captured = Money(session.captured_minor - session.refunded_minor, cdr.currency)
    signed = json.loads(cdr.signed_data) if cdr.signed_data else None
    return Receipt(session, cdr, vat_per_rate(cdr), captured, signed)


def load_receipt(conn: store.Conn, session_id: str) -> Receipt:
    found = store.load_sessions(conn, [session_id]).get(session_id)
    if found is None:
        raise NoReceipt("no such session", session_id=session_id)
    return build_receipt(found, store.cdrs_of(conn, session_id))


# ------------------------------------------------------------------------------ HTML
def _table(header: Sequence[str], rows: Sequence[Sequence[str]], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def render_html(r: Receipt) -> str:
    signed = ""
    if r.signed is not None:
        status = r.cdr.signed_status or "unknown"
        key = r.signed.get("public_key") or "-"
        signed = (
            "<h2>Signed meter data (OCMF)</h2>"
            f"<p>Verification by the operator: <strong>{html.escape(status)}</strong></p>"
            f"<p>Meter public key: <code>{html.escape(key)}</code></p>"
            + _table(("nature", "readings", "signed record"), r.signed_rows(), "signed")
            + f"<p>{html.escape(VERIFY_INSTRUCTIONS)}</p>"
        )
    vat = [(f"{v.rate} %", str(v.net), str(v.vat)) for v in r.vat]
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>Receipt {html.escape(r.session.session_id)}</title>"
        "<style>body{font-family:sans-serif;max-width:48em}td,th{padding:2px 8px;"
        "text-align:left;vertical-align:top}table.signed td{word-break:break-all;"
        "font-family:monospace;font-size:small}</style></head><body>"
        "<h1>Charging receipt</h1>"
        + _table(("", ""), r.rows())
        + "<h2>Lines</h2>"
        + _table(("dimension", "quantity", "VAT rate", "net", "VAT"), r.lines())
        + "<h2>VAT per rate</h2>"
        + _table(("rate", "net", "VAT"), vat)
        + f"<p>Total excl. VAT {html.escape(str(r.net))}; total incl. VAT "
        f"{html.escape(str(r.total))}</p>"
        + f"<p><strong>Total captured: {html.escape(str(r.captured))}</strong></p>"
        + signed
        + "</body></html>"
    )


# ------------------------------------------------------------------------------ PDF
def _latin1(text: str) -> str:
    """The core PDF fonts are Latin-1: anything else is replaced, never dropped silently."""
    return text.encode("latin-1", "replace").decode("latin-1")


def render_pdf(r: Receipt) -> bytes:
    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    width = pdf.epw
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(width, 10, "Charging receipt", new_x="LMARGIN", new_y="NEXT")

    def heading(text: str) -> None:
        pdf.set_font("Helvetica", "B", 12)
        pdf.cell(width, 8, _latin1(text), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "", 9)

    def row(cells: Sequence[str], widths: Sequence[float]) -> None:
        for cell, w in zip(cells, widths, strict=True):
            pdf.cell(w, 6, _latin1(cell))
        pdf.ln(6)

    pdf.set_font("Helvetica", "", 9)
    for label, value in r.rows():
        row((label, value), (45, width - 45))
    heading("Lines")
    widths = (35, 35, 30, 40, 40)
    row(("dimension", "quantity", "VAT rate", "net", "VAT"), widths)
    for line in r.lines():
        row(line, widths)
    heading("VAT per rate")
    for v in r.vat:
        row((f"{v.rate} %", f"net {v.net}", f"VAT {v.vat}"), (30, 60, 60))
    row((f"Total excl. VAT {r.net}", f"Total incl. VAT {r.total}"), (90, 90))
    pdf.set_font("Helvetica", "B", 11)
    pdf.cell(width, 8, _latin1(f"Total captured: {r.captured}"), new_x="LMARGIN", new_y="NEXT")
    if r.signed is not None:
        heading("Signed meter data (OCMF)")
        pdf.multi_cell(width, 5, _latin1(f"Verification by the operator: {r.cdr.signed_status}"))
        pdf.multi_cell(width, 5, _latin1(f"Meter public key: {r.signed.get('public_key') or '-'}"))
        for nature, plain, record in r.signed_rows():
            pdf.multi_cell(width, 5, _latin1(f"{nature}: {plain}"))
            pdf.set_font("Courier", "", 6)
            pdf.multi_cell(width, 3, _latin1(record), wrapmode=WrapMode.CHAR)
            pdf.set_font("Helvetica", "", 9)
        pdf.ln(2)
        pdf.multi_cell(width, 5, _latin1(VERIFY_INSTRUCTIONS))
    return bytes(pdf.output())
