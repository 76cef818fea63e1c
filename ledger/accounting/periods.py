"""Accounting periods: calendar months in the books' time zone, closed one after another.

Closing a period locks it: its filed figures never change. An entry dated in a locked period
(a late event: a capture whose supply was in a closed month) is booked on the first instant of
the first open period instead, and keeps its original date beside it (``Relocation``), so the
next period's close pack lists it with the date it belongs to. See docs/finance-close.md.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from ledger.accounting.journal import JournalEntry
from ledger.errors import ValidationError

_PERIOD = re.compile(r"(\d{4})-(0[1-9]|1[0-2])")


class InvalidPeriod(ValidationError):
    code = "INVALID_PERIOD"


class PeriodAlreadyClosed(ValidationError):
    code = "PERIOD_CLOSED"


class PeriodNotNext(ValidationError):
    """Periods close in order: the month before must be closed first."""

    code = "PERIOD_NOT_NEXT"


class PeriodNotOver(ValidationError):
    code = "PERIOD_NOT_OVER"


@dataclass(frozen=True, slots=True)
class Period:
    """One calendar month in the books' zone: [starts_at, ends_at)."""

    name: str
    """``YYYY-MM``."""
    zone: str
    starts_at: datetime
    ends_at: datetime

    @classmethod
    def of(cls, name: str, zone: str) -> Period:
        """The month ``name`` (``YYYY-MM``) in ``zone``. Raises InvalidPeriod."""
        found = _PERIOD.fullmatch(name)
        if found is None:
            raise InvalidPeriod("a period is a month written YYYY-MM, e.g. 2026-11", period=name)
        year, month = int(found[1]), int(found[2])
        tz = ZoneInfo(zone)
        starts = datetime(year, month, 1, tzinfo=tz)
        ends = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=tz)
        return cls(name, zone, starts, ends)

    def previous(self) -> Period:
        starts = self.starts_at
        year, month = (
            (starts.year - 1, 12) if starts.month == 1 else (starts.year, starts.month - 1)
        )
        return Period.of(f"{year:04d}-{month:02d}", self.zone)


def check_closable(period: Period, locked_until: datetime | None, now: datetime) -> None:
    """Raise unless ``period`` may be closed now: it is over, not closed yet, and it is the
    month right after the last closed one (the first close may be any finished month)."""
    ids = {"period": period.name, "time_zone": period.zone}
    if period.ends_at > now:
        raise PeriodNotOver(f"{period.name} ends at {period.ends_at.isoformat()}", **ids)
    if locked_until is not None and period.ends_at <= locked_until:
        raise PeriodAlreadyClosed(f"the books are locked until {locked_until.isoformat()}", **ids)
    if locked_until is not None and period.starts_at != locked_until:
        raise PeriodNotNext(
            f"close the periods in order: the books are locked until {locked_until.isoformat()}",
            **ids,
        )


@dataclass(frozen=True, slots=True)
class Relocation:
    """An entry dated in a locked period, booked at the first open instant instead."""

    entry_id: str
    original_occurred_at: datetime
    booked_at: datetime


def relocate(
    entries: Sequence[JournalEntry], locked_until: datetime | None
) -> tuple[list[JournalEntry], list[Relocation]]:
    """``entries`` with every one dated before ``locked_until`` moved to it, and what moved."""
    if locked_until is None:
        return list(entries), []
    out: list[JournalEntry] = []
    moved: list[Relocation] = []
    for e in entries:
        if e.occurred_at < locked_until:
            moved.append(Relocation(e.entry_id, e.occurred_at, locked_until))
            e = JournalEntry(
                e.entry_id, e.event_id, e.payment_id, e.network_id, locked_until, e.kind, e.postings
            )
        out.append(e)
    return out, moved
