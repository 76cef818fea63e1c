"""``evledger receivables …``: billed supplies whose capture failed, aged; and the two events
that settle one without the provider: money that arrived another way, or a write-off.

The ageing list reads the ledger's payment states (``connectors.finance.receivables``) and never
migrates. ``collect`` and ``write-off`` publish ReceivableCollected / ReceivableWrittenOff to
``payments.events``, where the ledger projector books them (docs/accounting.md, "Receivables");
the amount is checked against the open receivable there, and a refusal is a rejection with its
reason code (``evledger payments show ID`` shows the result).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import typer
from rich.table import Table

from connectors import finance
from connectors.settings import Settings
from entrypoints.cli_ledger import _amounts, _conn, _csv, _fail, _next, console
from ledger.envelope import Envelope, Source
from ledger.errors import LedgerError
from ledger.money import Money

receivables_app = typer.Typer(
    help="Customer receivables: billed supplies whose capture failed.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    """Add ``evledger receivables`` to ``app``."""
    app.add_typer(receivables_app, name="receivables")


@receivables_app.command("ageing")
def ageing(
    as_of: datetime = typer.Option(
        None,
        "--as-of",
        help="age them at this time (default now); a bare date is its midnight in the books' zone",
        formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M%z", "%Y-%m-%d"],
    ),
    include_settled: bool = typer.Option(False, "--all", help="collected or written off too"),
    limit: int = typer.Option(1000, help="rows per page"),
    offset: int = typer.Option(0, help="rows to skip"),
    csv_file: Path = typer.Option(None, "--csv", help="write CSV here instead of a table"),
) -> None:
    """Open receivables, oldest first, with their age from the supply date and ageing bucket
    (0-30, 31-60, 61-90, 90+ days), and the totals per bucket."""
    zone = ZoneInfo(Settings.from_env().books_time_zone)
    at = as_of if as_of is None or as_of.tzinfo else as_of.replace(tzinfo=zone)
    try:
        with _conn() as conn:
            page = finance.receivables(
                conn, as_of=at, include_settled=include_settled, limit=limit, offset=offset
            )
    except LedgerError as exc:
        raise _fail(exc) from exc
    if _csv(csv_file, page, finance.ReceivableRow):
        return
    when = (at or datetime.now(UTC)).astimezone(zone)
    title = f"receivables as of {when:%Y-%m-%d %H:%M %Z}"
    columns = ("payment", "cdr", "supplied", "age (days)", "bucket", "amount", "collected",
               "written off", "open")  # fmt: skip
    table = Table(*columns, title=title)
    totals: dict[tuple[str, str], int] = {}
    for r in page:
        supplied = f"{r.since.astimezone(zone):%Y-%m-%d}"
        money = _amounts(r.currency, r.amount, r.collected, r.written_off, r.open)
        table.add_row(r.payment_id, r.cdr_id, supplied, str(r.age_days), r.bucket, *money)
        totals[(r.bucket, r.currency)] = totals.get((r.bucket, r.currency), 0) + r.open
    console.print(table if len(page) else "no receivables")
    if totals:
        summary = Table("bucket", "currency", "open", title="ageing (this page)")
        for (bucket, currency), amount in sorted(totals.items()):
            summary.add_row(bucket, currency, *_amounts(currency, amount))
        console.print(summary)
    _next(page)


@receivables_app.command("collect")
def collect(
    payment_id: str,
    cdr_id: str,
    amount: str = typer.Option(..., help="in major units of the payment's currency, e.g. 33.28"),
    reference: str = typer.Option(..., help="where the money came from, e.g. the bank transaction"),
) -> None:
    """Book money for a receivable that arrived outside the provider (Dr bank)."""
    from ledger.events import ReceivableCollected

    def build(env: Envelope, money: Money) -> ReceivableCollected:
        return ReceivableCollected(env, payment_id, cdr_id, money, reference)

    _publish(payment_id, build, amount)


@receivables_app.command("write-off")
def write_off(
    payment_id: str,
    cdr_id: str,
    amount: str = typer.Option(..., help="in major units of the payment's currency, e.g. 33.28"),
    reason: str = typer.Option(..., help="why it is given up, e.g. 'insolvency of the customer'"),
    vat_relief: bool = typer.Option(
        False, help="reclaim the VAT in it, where the country of supply allows bad-debt relief"
    ),
) -> None:
    """Write a receivable off as bad debt (with VAT relief: only the net is expensed)."""
    from ledger.events import ReceivableWrittenOff

    def build(env: Envelope, money: Money) -> ReceivableWrittenOff:
        return ReceivableWrittenOff(env, payment_id, cdr_id, money, reason, vat_relief)

    _publish(payment_id, build, amount)


def _publish(payment_id: str, build: Callable[[Envelope, Money], Any], amount: str) -> None:
    """Publish the event ``build(envelope, money)`` makes, in the payment's currency."""
    from entrypoints.bootstrap import bootstrap

    try:
        with _conn() as conn:
            payment = finance.payment(conn, payment_id)
        money = Money.of(amount, payment.currency)
    except LedgerError as exc:
        raise _fail(exc) from exc
    app = bootstrap()
    event = build(Envelope.new(payment.network_id, Source.internal), money)
    publisher = app.publisher()
    publisher.publish(event)
    publisher.flush()
    console.print(
        f"published {type(event).__name__} {money} for payment {payment_id} to payments.events; "
        "the ledger projector books it (evledger payments show ID)"
    )
