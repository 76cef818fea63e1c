"""The journal export, re-read without project code: the CSV (csv module) and the SAF-T XML
(ElementTree) each sum, per general-ledger account, to the trial balance, and a capture's lines
carry the CDR they book."""

from __future__ import annotations

import csv
import xml.etree.ElementTree as ET
from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from typer.testing import CliRunner

from connectors import finance, postgres
from connectors.journal_export import example_mapping
from entrypoints.bootstrap import App
from entrypoints.cli import app as cli
from ledger.accounting.gl_mapping import GlMapping
from ledger.dimensions import Dimension
from ledger.envelope import Envelope, Source
from ledger.events import (
    CaptureFailed,
    PaymentAuthorized,
    PaymentCaptured,
    PaymentRefunded,
    RevenueLine,
)
from ledger.money import Money
from processors.ledger_projector import TOPICS, build_ledger_processor
from tests.integration.conftest import end_offsets
from tests.integration.test_ledger_projector import publish, run_to, scratch_book, start_group

NS = "{urn:StandardAuditFile-Taxation-Financial:NO}"
SUPPLIED = datetime(2026, 11, 20, tzinfo=UTC)
LINES = [RevenueLine(Dimension.ENERGY, 2500, 475, "19"), RevenueLine(Dimension.FLAT, 100, 19, "19")]


def events(network: str) -> list:
    def env(day: int) -> Envelope:
        return Envelope.new(network, Source.psp, occurred_at=datetime(2026, 11, day, tzinfo=UTC))

    return [
        PaymentAuthorized(env(20), "P-x1", "sandbox", "pi1", Money(5000, "EUR"), "card"),
        PaymentCaptured(env(22), "P-x1", "c1", Money(3094, "EUR"), LINES, True, "sandbox", "ch1",
                        Money(45, "EUR"), "DE*EVL*E1", "DE", SUPPLIED, "cdr-x1"),
        PaymentRefunded(env(25), "P-x1", "r1", Money(500, "EUR"), []),
        PaymentAuthorized(env(20), "P-x2", "sandbox", "pi2", Money(5000, "EUR"), "card"),
        CaptureFailed(env(23), "P-x2", Money(3094, "EUR"), "DECLINED", "no", "cdr-x2", LINES,
                      "DE*EVL*E1", "DE", SUPPLIED),
    ]  # fmt: skip


def test_the_export_reread_independently_sums_to_the_trial_balance(
    app: App, tmp_path: Path
) -> None:
    with scratch_book(app) as url:
        group, _ = start_group(app, url)
        processor = build_ledger_processor(app, group=group, database_url=url)
        try:
            publish(app, events(app.settings.network_id))
            run_to(processor, end_offsets(app, list(TOPICS)))
        finally:
            processor.close()
        mapping = tmp_path / "gl.toml"
        mapping.write_text(example_mapping())
        env = {"EVLEDGER_DATABASE_URL": url}
        for fmt in ("csv", "saft"):
            args = ["export", "journal", "--out", str(tmp_path / fmt), "--format", fmt,
                    "--mapping", str(mapping)]  # fmt: skip
            result = CliRunner().invoke(cli, args, env=env)
            assert result.exit_code == 0, result.output
        gl = GlMapping.parse(example_mapping())
        with postgres.connect(url) as conn:
            expected: dict[str, int] = defaultdict(int)
            for row in finance.trial_balance(conn):
                if not row.account.startswith("memo:"):
                    expected[gl.gl_account(row.account) or ""] += (
                        row.debit_balance - row.credit_balance
                    )
        expected = {k: v for k, v in expected.items() if v}

        with open(tmp_path / "csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        from_csv: dict[str, int] = defaultdict(int)
        for r in rows:
            from_csv[r["gl_account"]] += int(r["debit_minor"]) - int(r["credit_minor"])
        assert {k: v for k, v in from_csv.items() if v} == expected
        captures = [r for r in rows if r["kind"] in ("CAPTURE", "RECEIVABLE")]
        assert {r["cdr_id"] for r in captures} == {"cdr-x1", "cdr-x2"}
        assert {r["booking_date"] for r in captures} == {"2026-11-20"}

        root = ET.parse(tmp_path / "saft").getroot()
        from_xml: dict[str, int] = defaultdict(int)
        for line in root.iter(f"{NS}Line"):
            account = line.findtext(f"{NS}AccountID") or ""
            debit = line.findtext(f"{NS}DebitAmount/{NS}Amount")
            credit = line.findtext(f"{NS}CreditAmount/{NS}Amount")
            cents = int(Decimal(debit or "0") * 100) - int(Decimal(credit or "0") * 100)
            from_xml[account] += cents
        assert {k: v for k, v in from_xml.items() if v} == expected
        total_debit = Decimal(root.findtext(f"{NS}GeneralLedgerEntries/{NS}TotalDebit") or "0")
        total_credit = Decimal(root.findtext(f"{NS}GeneralLedgerEntries/{NS}TotalCredit") or "0")
        assert total_debit == total_credit > 0
        references = {e.text for e in root.iter(f"{NS}ReferenceNumber")}
        assert references == {"cdr-x1", "cdr-x2"}
