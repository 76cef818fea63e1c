"""Closing a month through the real stack: the close pack's figures equal the journal's, the
files match their manifest, a late event dated in the closed month is booked in the first open
period with its original date kept, and the closed month's figures never change."""

from __future__ import annotations

import csv
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from connectors import period_close, postgres
from entrypoints.bootstrap import App
from entrypoints.cli import app as cli
from ledger.accounting.periods import Period
from ledger.dimensions import Dimension
from ledger.envelope import Envelope, Source
from ledger.errors import LedgerError
from ledger.events import PaymentAuthorized, PaymentCaptured, RevenueLine
from ledger.money import Money
from processors.ledger_projector import TOPICS, build_ledger_processor
from tests.integration.conftest import end_offsets
from tests.integration.test_ledger_projector import publish, run_to, scratch_book, start_group

NOVEMBER = Period.of("2026-11", "UTC")
LINES = [RevenueLine(Dimension.ENERGY, 2500, 475, "19")]


def session_payment(network: str, payment: str, supplied: datetime, captured: datetime) -> list:
    """An authorization at the supply and a capture (supplied then) at ``captured``."""
    return [
        PaymentAuthorized(Envelope.new(network, Source.psp, occurred_at=supplied), payment,
                          "sandbox", f"pi-{payment}", Money(5000, "EUR"), "card"),
        PaymentCaptured(Envelope.new(network, Source.psp, occurred_at=captured), payment,
                        f"cap-{payment}", Money(2975, "EUR"), LINES, True, "sandbox", "ch",
                        None, "ST-1", "DE", supplied, f"cdr-{payment}"),
    ]  # fmt: skip


def test_close_a_month_lock_it_and_book_late_events_in_the_next(app: App, tmp_path: Path) -> None:
    network = app.settings.network_id
    with scratch_book(app) as url:
        group, _ = start_group(app, url)
        processor = build_ledger_processor(app, group=group, database_url=url)
        try:
            publish(app, session_payment(network, "P-nov-1", datetime(2026, 11, 20, tzinfo=UTC),
                                         datetime(2026, 11, 21, tzinfo=UTC)))  # fmt: skip
            run_to(processor, end_offsets(app, list(TOPICS)))
            env = {"EVLEDGER_DATABASE_URL": url}
            pack = tmp_path / "close-2026-11"
            closed = CliRunner().invoke(
                cli, ["close", "--period", "2026-11", "--out", str(pack), "--by", "test"], env=env
            )
            assert closed.exit_code == 0, closed.output
            manifest = json.loads((pack / "manifest.json").read_text())
            for name, entry in manifest["files"].items():
                assert hashlib.sha256((pack / name).read_bytes()).hexdigest() == entry["sha256"]
            assert manifest["trial_balance_balanced"]
            (vat,) = manifest["vat_return"]
            assert (
                vat["country"], vat["vat_rate"], vat["taxable_base_minor"], vat["payable_minor"]
            ) == ("DE", "19", 2500, 475)  # fmt: skip
            with open(pack / "revenue.csv") as handle:
                assert list(csv.DictReader(handle)) == [
                    {"dimension": "energy", "country": "DE", "vat_rate": "19", "currency": "EUR",
                     "revenue_minor": "2500", "refunds_minor": "0", "net_minor": "2500"}
                ]  # fmt: skip
            with open(pack / "revenue_by_station.csv") as handle:
                assert list(csv.DictReader(handle)) == [
                    {"network": network, "station": "ST-1", "dimension": "energy",
                     "country": "DE", "currency": "EUR", "revenue_minor": "2500",
                     "refunds_minor": "0", "net_minor": "2500"}
                ]  # fmt: skip

            # A late capture of a November supply, after the close: booked on 1 December.
            late = session_payment(network, "P-nov-2", datetime(2026, 11, 25, tzinfo=UTC),
                                   datetime(2026, 12, 2, tzinfo=UTC))  # fmt: skip
            publish(app, late)
            run_to(processor, end_offsets(app, list(TOPICS)))
            with psycopg.connect(url) as conn:
                tables = period_close.figures(conn, NOVEMBER)
                assert tables["vat_return"][1] == [("DE", "19", "EUR", 2500, 475, 0, 475, "19.00")]
                moved = conn.execute(
                    "SELECT e.kind, e.occurred_at, r.original_occurred_at FROM relocated_entries r"
                    " JOIN journal_entries e USING (entry_id) ORDER BY 1"
                ).fetchall()
                december = Period.of("2026-12", "UTC")
                relocated = period_close.figures(conn, december)["relocated"][1]
                assert sorted(r[1] for r in relocated) == sorted(row[0] for row in moved)
                with pytest.raises(LedgerError) as again:
                    period_close.close(conn, NOVEMBER, "test", lambda t: {})
                assert again.value.code == "PERIOD_CLOSED"
                with pytest.raises(LedgerError) as skipped:
                    period_close.close(conn, Period.of("2027-02", "UTC"), "test", lambda t: {},
                                       now=datetime(2027, 3, 5, tzinfo=UTC))  # fmt: skip
                assert skipped.value.code == "PERIOD_NOT_NEXT"
            assert {(k, at.isoformat(), o.isoformat()) for k, at, o in moved} == {
                ("CAPTURE", "2026-12-01T00:00:00+00:00", "2026-11-25T00:00:00+00:00"),
                ("HOLD_PLACED", "2026-12-01T00:00:00+00:00", "2026-11-25T00:00:00+00:00"),
            }
            listed = CliRunner().invoke(cli, ["periods"], env=env)
            assert "2026-11" in listed.output and "2026-12-01" in listed.output
        finally:
            processor.close()
    assert postgres  # the scratch book was dropped by its context manager
