"""The driver's receipt: VAT grouped per rate from the CDR's lines, the total captured, the
signed meter data with how to verify it, in HTML and in a PDF that fpdf2 writes."""

from __future__ import annotations

import dataclasses
import json

from entrypoints.receipt import build_receipt, render_html, render_pdf
from ledger.dimensions import Dimension
from ledger.events import RevenueLine
from ledger.sessions.rules import SessionStatus
from ledger.sessions.session import CdrKind, CdrRecord, Session
from tests.unit.test_session_lifecycle import T0

SIGNED = json.dumps(
    {"encoding_method": "OCMF", "encoding_method_version": "1.0", "public_key": "3059ab",
     "signed_values": [{"nature": "Start+End", "plain_data": "B 0 Wh; E 9000 Wh",
                        "signed_data": "OCMF|{\"RD\":[]}|{\"SD\":\"30\"}"}], "url": None}
)  # fmt: skip


def receipt_of(signed: str | None):  # type: ignore[no-untyped-def]
    s = Session("S-1", "net", "e1", None, "CS-1", "CS-1*1", "1", "TX-1", "DE", "Europe/Berlin",
                "T-1", 1, "P-1", 0, T0, status=SessionStatus.BILLED, stopped_at=T0,
                meter_stop_wh=9000, captured_minor=1190)  # fmt: skip
    lines = (
        RevenueLine(Dimension.ENERGY, 360, 68, "19", "9"),
        RevenueLine(Dimension.PARKING_TIME, 300, 57, "19", "0.25"),
        RevenueLine(Dimension.FLAT, 400, 28, "7", "1"),
    )
    cdr = CdrRecord("C-1", "S-1", CdrKind.ISSUED, "e2", "T-1", 1, (), "EUR", 1060, 1213, lines,
                    signed_data=signed, signed_status="verified" if signed else None)  # fmt: skip
    credited = dataclasses.replace(cdr, cdr_id="C-0")
    credit = CdrRecord("C-0c", "S-1", CdrKind.CREDITED, "e0", "T-1", 1, (), "EUR", 0, 0, (),
                       credited_cdr_id="C-0")  # fmt: skip
    return build_receipt(s, [credited, credit, cdr])


def test_vat_is_grouped_per_rate_and_the_capture_shown() -> None:
    r = receipt_of(SIGNED)
    assert r.cdr.cdr_id == "C-1"
    assert [(v.rate, v.net.amount_minor, v.vat.amount_minor) for v in r.vat] == [
        ("7", 400, 28),
        ("19", 660, 125),
    ]
    page = render_html(r)
    assert "Total captured: EUR 11.90" in page and "total incl. VAT EUR 12.13" in page
    assert "Transparenzsoftware" in page and "OCMF|{&quot;RD&quot;:[]}" in page
    assert "9 kWh" in page


def test_unsigned_receipt_has_no_signed_section_and_the_pdf_is_a_pdf() -> None:
    r = receipt_of(None)
    assert "Signed meter data" not in render_html(r)
    pdf = render_pdf(receipt_of(SIGNED))
    assert pdf.startswith(b"%PDF-") and len(pdf) > 1000
