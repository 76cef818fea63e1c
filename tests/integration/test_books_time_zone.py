"""Days and months of the revenue and VAT reports begin in the books' time zone
(EVLEDGER_BOOKS_TIME_ZONE): a charge supplied at 23:30 UTC on 30 November is December's in
Berlin and November's in UTC."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest

from connectors import finance, postgres
from connectors import ledger_store as store
from connectors.settings import Settings, SettingsError
from entrypoints.bootstrap import App, database_url
from ledger.accounting.posting_rules import EntryContext, RevenueShare, captured
from ledger.dimensions import Dimension
from ledger.money import Money

LATE_NOVEMBER = datetime(2026, 11, 30, 23, 30, tzinfo=UTC)


@pytest.fixture
def book(app: App) -> Iterator[str]:
    """A migrated database with one capture of 11.90 (10.00 + 1.90 VAT, DE) on 30 November,
    23:30 UTC."""
    name = f"books_zone_{uuid.uuid4().hex[:10]}"
    url = postgres.create_database(app.database_url, name)
    ctx = EntryContext("ev-1", "P-1", "net", LATE_NOVEMBER)
    share = RevenueShare(Dimension.ENERGY, "ST-1", "DE", 1000, 190)
    entries = captured(ctx, "sandbox", Money(1190, "EUR"), [share])
    with postgres.connect(url) as conn:
        store.write_entries(
            conn, [store.StoredEntry(e, "PaymentCaptured", "sandbox") for e in entries]
        )
        conn.commit()
    try:
        yield url
    finally:
        postgres.drop_database(app.database_url, name)


def reports(url: str) -> tuple[list[str], list[date]]:
    with postgres.connect(url) as conn:
        days = [r.key for r in finance.revenue(conn, by=finance.RevenueBy.DAY)]
        months = [r.period for r in finance.vat(conn)]
    return days, months


def test_revenue_days_and_vat_months_begin_in_the_books_time_zone(book: str) -> None:
    assert reports(book) == (["2026-11-30"], [date(2026, 11, 1)])
    berlin = Settings(database_url=book, books_time_zone="Europe/Berlin")
    assert reports(database_url(berlin)) == (["2026-12-01"], [date(2026, 12, 1)])
    new_york = Settings(database_url=book, books_time_zone="America/New_York")
    assert reports(database_url(new_york)) == (["2026-11-30"], [date(2026, 11, 1)])


def test_the_zone_keeps_other_connection_options_and_a_bad_zone_is_refused() -> None:
    url = postgres.with_books_time_zone(
        "postgresql://u@h:5432/db?options=-c%20statement_timeout%3D5000", "Europe/Berlin"
    )
    assert "statement_timeout" in url and "evledger.books_time_zone=Europe/Berlin" in url
    assert postgres.with_books_time_zone("postgresql://u@h/db", "UTC") == "postgresql://u@h/db"
    with pytest.raises(SettingsError, match="EVLEDGER_BOOKS_TIME_ZONE"):
        Settings(books_time_zone="Mars/Olympus")
