"""Reconciliation on the real stack: captures and refunds the connector booked against a Stripe
balance-transactions CSV holding every kind of line (matched, missing in the ledger, missing at
the provider, amount mismatch), then against the sandbox API; exceptions stored and resolved."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from connectors import postgres
from connectors.provider_registry import shared_sandbox
from entrypoints.bootstrap import App
from entrypoints.cli import app as cli
from tests.integration.test_settlement_processor import (
    authorize,
    capture,
    connector,
    create_database,
    drop_database,
    new_group,
    publish,
    refund,
    registry_of,
)


@pytest.fixture(scope="module")
def database(app: App) -> Iterator[str]:
    url = create_database(app, "evl_recon")
    yield url
    drop_database(app, url)


def booked(database: str, payment_id: str, action: str) -> tuple[str, int, int | None]:
    """(provider reference, amount, fee) the connector booked for one capture/refund."""
    with postgres.connect(database) as conn:
        row = conn.execute(
            "SELECT outcome_reference, amount_minor, fee_minor FROM provider_attempts"
            " WHERE payment_id = %s AND action = %s AND status = 'succeeded'",
            (payment_id, action),
        ).fetchone()
    assert row is not None, (payment_id, action)
    return str(row[0]), int(row[1]), row[2]


def major(minor: int | None) -> str:
    return f"{(minor or 0) / 100:.2f}"


def test_report_with_every_kind_of_mismatch_then_a_clean_api_run(
    app: App, database: str, tmp_path: Path
) -> None:
    sandbox = shared_sandbox("sandbox")  # the one `evledger reconcile` loads in this process
    # The shared sandbox also holds what earlier tests in this process settled (the e2e demo):
    # the API run below looks only at this test's window, as an operator would.
    started = (datetime.now(UTC) - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S")
    group = new_group(app, database)
    a, b, c = (f"P-{uuid.uuid4()}" for _ in range(3))
    publish(app, [
        authorize(a), capture(a, 3000), refund(a, 1000),
        authorize(b), capture(b, 2000),
        authorize(c), capture(c, 1500),
    ])  # fmt: skip
    instance = connector(app, database, group, registry_of(sandbox))
    instance.drain(idle_seconds=2)
    instance.close()

    a_charge, a_amount, a_fee = booked(database, a, "capture")
    a_refund, _, _ = booked(database, a, "refund")
    b_charge, _, b_fee = booked(database, b, "capture")
    c_charge, _, _ = booked(database, c, "capture")
    unknown = f"ch_external_{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    report = tmp_path / "balance.csv"
    report.write_text(
        "balance_transaction_id,reporting_category,source_id,gross,fee,currency,created_utc\n"
        f"txn_1,charge,{a_charge},{major(a_amount)},{major(a_fee)},eur,{now}\n"
        f"txn_2,refund,{a_refund},-10.00,0.00,eur,{now}\n"
        f"txn_3,charge,{b_charge},25.00,{major(b_fee)},eur,{now}\n"  # booked 20.00
        f"txn_4,charge,{unknown},12.00,0.42,eur,{now}\n"  # never booked
        f"txn_5,payout,po_1,-50.00,0.00,eur,{now}\n"  # payouts are matched elsewhere
    )  # c's capture is not in the report: missing at the provider
    runner = CliRunner()
    env = {"EVLEDGER_DATABASE_URL": database}

    first = runner.invoke(
        cli, ["reconcile", "--provider", "sandbox", "--report", str(report), "--format", "stripe"],
        env=env,
    )  # fmt: skip
    assert first.exit_code == 1, first.output  # not clean
    with postgres.connect(database) as conn:
        run = conn.execute(
            "SELECT source, matched, amount_mismatch, missing_in_ledger, missing_at_provider"
            " FROM reconciliation_runs ORDER BY id DESC LIMIT 1"
        ).fetchone()
        exceptions = conn.execute(
            "SELECT category, provider_reference, field, provider_amount, ledger_amount"
            " FROM reconciliation_exceptions WHERE status = 'open' ORDER BY category"
        ).fetchall()
    assert run == (str(report), 2, 1, 1, 1)
    assert exceptions == [
        ("amount_mismatch", b_charge, "amount", "EUR 25.00", "EUR 20.00"),
        ("missing_at_provider", c_charge, None, None, "EUR 15.00"),
        ("missing_in_ledger", unknown, None, "EUR 12.00", None),
    ]

    # The provider's own report (sandbox API) agrees with the ledger: the run is clean, and the
    # earlier exceptions for keys it saw are resolved. The external charge stays open.
    second = runner.invoke(cli, ["reconcile", "--provider", "sandbox", "--since", started], env=env)
    assert second.exit_code == 0, second.output
    listed = runner.invoke(cli, ["reconcile", "exceptions"], env=env)
    assert listed.exit_code == 0, listed.output
    with postgres.connect(database) as conn:
        still_open = conn.execute(
            "SELECT provider_reference FROM reconciliation_exceptions WHERE status = 'open'"
        ).fetchall()
        closed = dict(conn.execute(
            "SELECT provider_reference, status FROM reconciliation_exceptions"
            " WHERE status <> 'open'"
        ).fetchall())  # fmt: skip
    assert still_open == [(unknown,)]
    assert closed == {b_charge: "resolved", c_charge: "resolved"}
    assert "open reconciliation exceptions" in listed.output and "12.00" in listed.output
