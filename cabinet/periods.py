"""Periods a subscriber asks for (a month, a range of days) as UTC bounds.

The subscriber thinks in the operator's local days (DESIGN: the time zone
applies to display and to "which day is it"); the store holds naive UTC.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

MAX_RANGE_DAYS = 400
MIN_YEAR, MAX_YEAR = 1970, 2999


class PeriodError(ValueError):
    pass


@dataclass(frozen=True)
class Period:
    first_day: dt.date
    last_day: dt.date  # inclusive
    start_utc: dt.datetime
    end_utc: dt.datetime  # exclusive

    @property
    def days(self) -> list[dt.date]:
        count = (self.last_day - self.first_day).days + 1
        return [self.first_day + dt.timedelta(days=n) for n in range(count)]


def _utc(day: dt.date, zone: ZoneInfo) -> dt.datetime:
    local = dt.datetime.combine(day, dt.time(), tzinfo=zone)
    return local.astimezone(dt.timezone.utc).replace(tzinfo=None)


def days(first_day: dt.date, last_day: dt.date, timezone: str) -> Period:
    # Year 1 in a zone east of UTC starts before datetime's range; no
    # subscriber's data is from before 1970 or after 2999 anyway.
    if first_day.year < MIN_YEAR or last_day.year > MAX_YEAR:
        raise PeriodError(f"a period must lie between the years {MIN_YEAR} and {MAX_YEAR}")
    if last_day < first_day:
        raise PeriodError("the period must end after it starts")
    if (last_day - first_day).days >= MAX_RANGE_DAYS:
        raise PeriodError(f"a period may be at most {MAX_RANGE_DAYS} days")
    zone = ZoneInfo(timezone)
    return Period(first_day, last_day, _utc(first_day, zone),
                  _utc(last_day + dt.timedelta(days=1), zone))


def month(value: str | None, timezone: str, today: dt.date) -> Period:
    """``2026-11`` -> that month; empty -> the current month."""
    if value:
        try:
            first = dt.datetime.strptime(value, "%Y-%m").date()
        except ValueError:
            raise PeriodError("a month must look like 2026-11") from None
    else:
        first = today.replace(day=1)
    following = (first.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return days(first, following - dt.timedelta(days=1), timezone)


def parse_day(value: str | None, default: dt.date) -> dt.date:
    if not value:
        return default
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise PeriodError("a date must look like 2026-11-23") from None


def local_today(timezone: str) -> dt.date:
    return dt.datetime.now(ZoneInfo(timezone)).date()


def shift_month(first_day: dt.date, months: int) -> str:
    index = first_day.year * 12 + first_day.month - 1 + months
    return f"{index // 12:04d}-{index % 12 + 1:02d}"
