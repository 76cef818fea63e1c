"""The dashboard's time ranges: hourly up to 7 days, whole UTC days beyond, the default range."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from connectors import analytics

NOW = datetime(2026, 12, 4, 6, 41, 12, tzinfo=UTC)


def filters(since: datetime, until: datetime) -> analytics.Filters:
    return analytics.Filters("n", since, until)


def test_up_to_seven_days_is_charted_per_hour_and_longer_per_day() -> None:
    assert analytics.bucket_of(filters(NOW - timedelta(days=7), NOW)) == "hour"
    assert analytics.bucket_of(filters(NOW - timedelta(days=7, seconds=1), NOW)) == "day"


def test_the_default_range_is_the_last_seven_days_to_the_end_of_this_hour() -> None:
    since, until = analytics.default_range(NOW)
    assert until == datetime(2026, 12, 4, 7, tzinfo=UTC)
    assert until - since == timedelta(days=7)


def test_days_are_utc_days_whatever_zone_the_caller_wrote() -> None:
    cet = timezone(timedelta(hours=1))
    at = datetime(2026, 12, 4, 0, 30, tzinfo=cet)  # 2026-12-03 23:30 UTC
    assert analytics.day_floor(at) == datetime(2026, 12, 3, tzinfo=UTC)
    assert analytics.day_ceiling(at) == datetime(2026, 12, 4, tzinfo=UTC)
    midnight = datetime(2026, 12, 4, tzinfo=UTC)
    assert analytics.day_ceiling(midnight) == midnight  # already whole: unchanged
