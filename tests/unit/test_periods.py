"""Accounting periods: months in the books' zone, closed in order, late entries relocated."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ledger.accounting.periods import Period, check_closable, relocate
from ledger.accounting.posting_rules import EntryContext, RevenueShare, captured
from ledger.dimensions import Dimension
from ledger.errors import LedgerError
from ledger.money import Money

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def test_a_period_is_a_month_in_the_books_zone() -> None:
    november = Period.of("2026-11", "Europe/Berlin")
    assert november.starts_at == datetime(2026, 10, 31, 23, 0, tzinfo=UTC)
    assert november.ends_at == datetime(2026, 11, 30, 23, 0, tzinfo=UTC)
    december = Period.of("2026-12", "UTC")
    assert (december.starts_at, december.ends_at) == (
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    )
    assert Period.of("2027-01", "UTC").previous() == december
    for bad in ("2026-13", "2026-1", "November", "2026-11-01"):
        with pytest.raises(LedgerError) as caught:
            Period.of(bad, "UTC")
        assert caught.value.code == "INVALID_PERIOD"


@pytest.mark.parametrize(
    ("period", "locked_until", "code"),
    [
        ("2026-12", None, "PERIOD_NOT_OVER"),
        ("2026-10", datetime(2026, 12, 1, tzinfo=UTC), "PERIOD_CLOSED"),
        ("2026-11", datetime(2026, 12, 1, tzinfo=UTC), "PERIOD_CLOSED"),
        ("2026-11", datetime(2026, 10, 1, tzinfo=UTC), "PERIOD_NOT_NEXT"),
    ],
)
def test_periods_close_once_in_order_and_only_when_over(
    period: str, locked_until: datetime | None, code: str
) -> None:
    with pytest.raises(LedgerError) as caught:
        check_closable(Period.of(period, "UTC"), locked_until, NOW)
    assert caught.value.code == code


def test_the_first_close_may_be_any_finished_month_and_the_next_follows_it() -> None:
    check_closable(Period.of("2026-06", "UTC"), None, NOW)
    check_closable(Period.of("2026-11", "UTC"), datetime(2026, 11, 1, tzinfo=UTC), NOW)


def test_entries_dated_in_a_locked_period_move_to_the_lock_and_keep_their_date() -> None:
    supplied, settled = datetime(2026, 11, 25, tzinfo=UTC), datetime(2026, 12, 2, tzinfo=UTC)
    share = RevenueShare(Dimension.ENERGY, "ST", "DE", 1000, 190)
    entries = captured(
        EntryContext("ev", "P", "net", settled), "sandbox", Money(1190, "EUR"), [share], supplied
    )
    lock = datetime(2026, 12, 1, tzinfo=UTC)
    moved_entries, moved = relocate(entries, lock)
    assert [e.occurred_at for e in moved_entries] == [lock, settled]
    assert [(m.entry_id, m.original_occurred_at) for m in moved] == [
        (entries[0].entry_id, supplied)
    ]
    assert [e.postings for e in moved_entries] == [e.postings for e in entries]
    assert relocate(entries, None) == (entries, [])
    assert relocate(entries, supplied - timedelta(days=1))[1] == []
