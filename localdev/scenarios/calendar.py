"""Calendar arithmetic of the simulated clock (Unix seconds, UTC): billing periods and month ends."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime

DAY = 86_400


def timestamp(year: int, month: int, day: int = 1, hour: int = 0, minute: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp())


def iso(instant: int) -> str:
    """ISO 8601 in UTC with a `Z`, the form ChartMogul's Import API takes."""
    return datetime.fromtimestamp(instant, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def add_months(instant: int, months: int, anchor_day: int | None = None) -> int:
    """`instant` moved by whole months, keeping the time of day; the day is clamped to the month's length.

    Stripe bills monthly on the anchor's day and falls back to the month's last day (Jan 31 → Feb 28 → Mar 31),
    so periods are computed from the anchor, never by chaining clamped dates.
    """
    moment = datetime.fromtimestamp(instant, tz=UTC)
    index = moment.year * 12 + moment.month - 1 + months
    year, month = divmod(index, 12)
    month += 1
    day = min(anchor_day or moment.day, calendar.monthrange(year, month)[1])
    return int(moment.replace(year=year, month=month, day=day).timestamp())


def period_boundary(anchor: int, interval: str, interval_count: int, n: int) -> int:
    """Start of the `n`-th billing period (0 = the anchor) of a price's interval."""
    if interval == "day":
        return anchor + n * interval_count * DAY
    if interval == "week":
        return anchor + n * interval_count * 7 * DAY
    if interval == "month":
        return add_months(anchor, n * interval_count, anchor_day=_day(anchor))
    if interval == "year":
        return add_months(anchor, n * 12 * interval_count, anchor_day=_day(anchor))
    raise ValueError(f"unknown interval {interval!r}")


def _day(instant: int) -> int:
    return datetime.fromtimestamp(instant, tz=UTC).day


def month_start(instant: int) -> int:
    moment = datetime.fromtimestamp(instant, tz=UTC)
    return timestamp(moment.year, moment.month)


def month_label(instant: int) -> str:
    return datetime.fromtimestamp(instant, tz=UTC).strftime("%Y-%m")


def months_between(start: int, end: int) -> list[tuple[str, int]]:
    """`(YYYY-MM, first instant of the next month)` for every month from `start`'s up to the one holding `end - 1`."""
    months = []
    cursor = month_start(start)
    while cursor < end:
        following = add_months(cursor, 1)
        months.append((month_label(cursor), following))
        cursor = following
    return months


def format_date(instant: int) -> str:
    """`15 Mar 2025`, as Stripe writes dates in proration descriptions."""
    return datetime.fromtimestamp(instant, tz=UTC).strftime("%-d %b %Y")
