"""A declined capture of a CDR through the real stack: the settlement outcome carries the CDR's
lines, the ledger projector books the receivable on the supply date, the ageing report lists
it, and a write-off published by the CLI settles it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from typer.testing import CliRunner

from connectors import finance, postgres
from entrypoints.bootstrap import App
from entrypoints.cli import app as cli
from ledger.dimensions import Dimension
from ledger.envelope import Envelope, Source
from ledger.events import CaptureRequested, PaymentAuthorized, RevenueLine
from ledger.money import Money
from ledger.settlement.outcomes import SettledAttempt, outcome_events
from processors.ledger_projector import TOPICS, build_ledger_processor
from tests.integration.conftest import end_offsets
from tests.integration.test_ledger_projector import publish, run_to, scratch_book, start_group

LINES = [RevenueLine(Dimension.ENERGY, 2500, 475, "19"), RevenueLine(Dimension.FLAT, 300, 57, "19")]


def test_a_declined_capture_is_a_receivable_in_the_books_until_written_off(app: App) -> None:
    now = datetime.now(UTC)
    supplied = now - timedelta(days=40)
    network, payment = app.settings.network_id, f"P-recv-{now.timestamp():.0f}"
    authorized = PaymentAuthorized(
        Envelope.new(network, Source.psp, occurred_at=supplied - timedelta(hours=1)),
        payment, "sandbox", "pi_r", Money(5000, "EUR"), "card",
    )  # fmt: skip
    request = CaptureRequested(Envelope.new(network, occurred_at=supplied), payment,
                               Money(3332, "EUR"), LINES, True, "cdr-r1", "ST-R", "DE")  # fmt: skip
    declined = SettledAttempt(False, "sandbox", None, None, "CARD_DECLINED", "do not honor", ())
    (failed,), _ = outcome_events(request, declined)
    with scratch_book(app) as url:
        group, _ = start_group(app, url)
        processor = build_ledger_processor(app, group=group, database_url=url)
        try:
            publish(app, [authorized, failed])
            run_to(processor, end_offsets(app, list(TOPICS)))
            with postgres.connect(url) as conn:
                (row,) = finance.receivables(conn)
                assert (row.payment_id, row.cdr_id, row.open, row.bucket) == (
                    payment, "cdr-r1", 3332, "31-60",
                )  # fmt: skip
                assert row.since == supplied and row.age_days == 40
                vat = {(r.country, r.period): r.collected for r in finance.vat(conn)}
                assert vat[("DE", supplied.date().replace(day=1))] == 532
            env = {"EVLEDGER_DATABASE_URL": url}
            listed = CliRunner().invoke(cli, ["receivables", "ageing"], env=env)
            assert listed.exit_code == 0 and "cdr-r1" in listed.output and "31-60" in listed.output
            wrote = CliRunner().invoke(
                cli,
                ["receivables", "write-off", payment, "cdr-r1", "--amount", "33.32",
                 "--reason", "customer insolvent", "--vat-relief"],
                env=env,
            )  # fmt: skip
            assert wrote.exit_code == 0, wrote.output
            run_to(processor, end_offsets(app, list(TOPICS)))
            with postgres.connect(url) as conn:
                assert list(finance.receivables(conn)) == []
                (settled,) = finance.receivables(conn, include_settled=True)
                assert settled.written_off == 3332
                totals = finance.trial_balance_totals(conn)
                assert all(debit == credit for debit, credit in totals.values())
                balances = {r.account: r.balance for r in finance.balances(conn)}
                assert balances["expenses:bad_debts"] == 2800
                assert balances["liabilities:vat_payable:DE:19"] == 0
        finally:
            processor.close()
