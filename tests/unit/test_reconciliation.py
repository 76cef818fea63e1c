"""Reconciliation: provider settlement lines against ledger records, and report parsing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from connectors.providers.braintree import parse_settlement_batch_csv
from connectors.providers.errors import ReportFormatError
from connectors.providers.sandbox import FeeSchedule
from connectors.providers.stripe import parse_balance_transactions_csv
from ledger.errors import ValidationError
from ledger.money import Money
from ledger.settlement.reconciliation import LedgerRecord, LineType, SettlementLine, reconcile


def eur(minor: int) -> Money:
    return Money(minor, "EUR")


def line(kind: LineType, ref: str, amount: int, fee: int | None = None) -> SettlementLine:
    return SettlementLine("stripe", kind, ref, eur(amount), eur(fee) if fee is not None else None)


def record(kind: LineType, ref: str, amount: int, fee: int | None = None) -> LedgerRecord:
    return LedgerRecord(kind, ref, eur(amount), eur(fee) if fee is not None else None)


def test_one_report_holding_each_kind_of_result() -> None:
    lines = [
        line(LineType.CHARGE, "ch_ok", 5_000, 95),  # matches
        line(LineType.CHARGE, "ch_amount", 5_000, 95),  # ledger says 4 000
        line(LineType.CHARGE, "ch_fee", 2_000, 53),  # ledger booked a 50 fee
        line(LineType.REFUND, "re_external", 700, 0),  # refunded in the dashboard
        line(LineType.PAYOUT, "po_1", 10_000),  # payout matches, fee unknown to ledger
    ]
    records = [
        record(LineType.CHARGE, "ch_ok", 5_000, 95),
        record(LineType.CHARGE, "ch_amount", 4_000),
        record(LineType.CHARGE, "ch_fee", 2_000, 50),
        record(LineType.PAYOUT, "po_1", 10_000),
        record(LineType.CHARGE, "ch_never_settled", 1_234),
    ]
    report = reconcile(lines, records)

    assert [m.line.provider_reference for m in report.matched] == ["ch_ok", "po_1"]
    assert [(m.line.provider_reference, m.field, m.provider_value, m.ledger_value)
            for m in report.amount_mismatch] == [
        ("ch_amount", "amount", eur(5_000), eur(4_000)),
        ("ch_fee", "fee", eur(53), eur(50)),
    ]  # fmt: skip
    assert [x.provider_reference for x in report.missing_in_ledger] == ["re_external"]
    assert [x.provider_reference for x in report.missing_at_provider] == ["ch_never_settled"]
    assert not report.is_clean


def test_same_reference_with_another_type_does_not_match() -> None:
    report = reconcile([line(LineType.REFUND, "x", 100)], [record(LineType.CHARGE, "x", 100)])
    assert len(report.missing_in_ledger) == len(report.missing_at_provider) == 1


def test_duplicates_match_pairwise_and_the_surplus_is_missing() -> None:
    lines = [line(LineType.FEE, "fee_1", 25), line(LineType.FEE, "fee_1", 25)]
    report = reconcile(lines, [record(LineType.FEE, "fee_1", 25)])
    assert (len(report.matched), len(report.missing_in_ledger)) == (1, 1)


def test_currency_difference_is_an_amount_mismatch() -> None:
    usd = SettlementLine("stripe", LineType.CHARGE, "ch", Money(100, "USD"))
    report = reconcile([usd], [record(LineType.CHARGE, "ch", 100)])
    assert [m.field for m in report.amount_mismatch] == ["amount"]


def test_clean_report() -> None:
    assert reconcile([line(LineType.CHARGE, "a", 1)], [record(LineType.CHARGE, "a", 1)]).is_clean


def test_negative_amounts_are_refused() -> None:
    with pytest.raises(ValidationError):
        line(LineType.REFUND, "re", -5)


def test_sandbox_fee_schedule_rounds_half_up() -> None:
    fees = FeeSchedule(rate_basis_points=140, fixed_minor=25)
    assert fees.fee(eur(5_000)) == eur(70 + 25)
    assert fees.fee(eur(1_250)) == eur(18 + 25)  # 17.5 → 18


# ---------------------------------------------------------------------------- CSV reports
STRIPE_ITEMIZED = """\
balance_transaction_id,created_utc,available_on_utc,currency,gross,fee,net,reporting_category,source_id,description
txn_1,2025-03-01 10:00:00,2025-03-03 00:00:00,eur,50.00,0.95,49.05,charge,ch_1,Session 1
txn_2,2025-03-01 11:00:00,2025-03-03 00:00:00,eur,-7.00,0.00,-7.00,refund,re_1,
txn_3,2025-03-04 00:00:00,2025-03-04 00:00:00,eur,-42.05,0.00,-42.05,payout,po_1,
txn_4,2025-03-04 00:00:00,2025-03-04 00:00:00,eur,-15.00,0.00,-15.00,dispute,dp_1,
"""

STRIPE_DASHBOARD = """\
id,Type,Source,Amount,Fee,Net,Currency,Created (UTC)
txn_9,charge,ch_9,"1,000.00",14.25,985.75,eur,2025-03-01 10:00
"""


def test_parse_stripe_itemized_balance_report() -> None:
    lines = parse_balance_transactions_csv(STRIPE_ITEMIZED)
    assert [(x.type, x.provider_reference, x.amount, x.fee) for x in lines] == [
        (LineType.CHARGE, "ch_1", eur(5_000), eur(95)),
        (LineType.REFUND, "re_1", eur(700), eur(0)),
        (LineType.PAYOUT, "po_1", eur(4_205), eur(0)),
        (LineType.OTHER, "dp_1", eur(1_500), eur(0)),
    ]
    assert lines[0].occurred_at == datetime(2025, 3, 1, 10, 0, tzinfo=UTC)


def test_parse_stripe_dashboard_export() -> None:
    [only] = parse_balance_transactions_csv(STRIPE_DASHBOARD)
    assert (only.type, only.provider_reference, only.amount, only.fee) == (
        LineType.CHARGE, "ch_9", eur(100_000), eur(1_425))  # fmt: skip


def test_stripe_csv_without_a_needed_column_is_refused() -> None:
    with pytest.raises(ReportFormatError):
        parse_balance_transactions_csv("id,Type,Amount\ntxn,charge,1.00\n")
    with pytest.raises(ReportFormatError):
        parse_balance_transactions_csv(STRIPE_DASHBOARD.replace("1,000.00", "1.001"))


BRAINTREE_HEADER = (
    "Transaction ID,Transaction Type,Transaction Status,Settlement Date,Settlement Amount,"
    "Settlement Currency ISO Code,Total Fee,Order ID,Refunded Transaction ID"
)
BRAINTREE_BATCH = f"""\
{BRAINTREE_HEADER}
abc123,sale,settled,2025-03-02,50.00,EUR,0.95,pay-1,
def456,credit,settled,2025-03-02,7.00,EUR,,ref-1,abc123
"""


def test_parse_braintree_settlement_batch() -> None:
    sale, credit = parse_settlement_batch_csv(BRAINTREE_BATCH)
    assert (sale.type, sale.provider_reference, sale.amount, sale.fee) == (
        LineType.CHARGE, "abc123", eur(5_000), eur(95))  # fmt: skip
    assert (credit.type, credit.amount, credit.fee, credit.payment_reference) == (
        LineType.REFUND, eur(700), None, "abc123")  # fmt: skip
    assert sale.occurred_at == datetime(2025, 3, 2, tzinfo=UTC)


def test_braintree_csv_reconciles_against_the_ledger() -> None:
    lines = parse_settlement_batch_csv(BRAINTREE_BATCH)
    report = reconcile(lines, [LedgerRecord(LineType.CHARGE, "abc123", eur(5_000), eur(95))])
    assert [m.line.provider_reference for m in report.matched] == ["abc123"]
    assert [x.provider_reference for x in report.missing_in_ledger] == ["def456"]


def test_braintree_csv_without_amount_column_is_refused() -> None:
    with pytest.raises(ReportFormatError):
        parse_settlement_batch_csv("Transaction ID,Transaction Type\nabc,sale\n")
