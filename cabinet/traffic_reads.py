"""Read models for the traffic pages: a day's channel load per 5-minute
interval, a period's totals and when the numbers were last updated.

The rollups are the collector's 5-minute intervals (collector.models,
``INTERVAL_SECONDS``), so a day's graph is drawn at the data's own
granularity: nothing finer exists, and nothing coarser is needed.

Every query names the account and a range of ``interval_start``, which the
rollups' unique key (account, interval, class, direction, source) serves as
an index range. One source is counted per account and period: NetFlow's
where it has any, else RADIUS's (the same traffic counted twice would
double it), as cabinet.queries.daily_traffic does, so the month's chart,
the day's graph and the overview agree.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from collector.models import INTERVAL_SECONDS, TrafficRollup

INTERVAL = dt.timedelta(seconds=INTERVAL_SECONDS)


def source_for(db: Session, account_id: int, start: dt.datetime,
               end: dt.datetime) -> str | None:
    """The rollup source counted for the account over [start, end)."""
    sources = set(db.scalars(select(TrafficRollup.source).where(
        TrafficRollup.account_id == account_id, TrafficRollup.interval_start >= start,
        TrafficRollup.interval_start < end).distinct()))
    if not sources:
        return None
    return "netflow" if "netflow" in sources else sorted(sources)[0]


@dataclass
class LoadSeries:
    """Octets per interval, class and direction over [start, end)."""

    start: dt.datetime
    end: dt.datetime
    source: str | None
    # {(interval index, traffic class, direction): octets}
    octets: dict[tuple[int, str, str], int] = field(default_factory=dict)
    updated_at: dt.datetime | None = None

    @property
    def count(self) -> int:
        return int((self.end - self.start) / INTERVAL)

    def interval_start(self, index: int) -> dt.datetime:
        return self.start + index * INTERVAL

    @property
    def classes(self) -> list[str]:
        """Classes seen, "internet" first, then by name."""
        seen = {traffic_class for _index, traffic_class, _direction in self.octets}
        return sorted(seen, key=lambda c: (c != "internet", c))

    def total(self, direction: str) -> int:
        return sum(v for (_i, _c, d), v in self.octets.items() if d == direction)

    def class_total(self, traffic_class: str, direction: str) -> int:
        return sum(v for (_i, c, d), v in self.octets.items()
                   if c == traffic_class and d == direction)

    def bits_per_second(self, index: int, traffic_class: str, direction: str) -> int:
        """The interval's mean load, rounded to a whole bit/s."""
        octets = self.octets.get((index, traffic_class, direction), 0)
        return (octets * 8 + INTERVAL_SECONDS // 2) // INTERVAL_SECONDS

    def busy_intervals(self) -> list[int]:
        return sorted({index for index, _c, _d in self.octets})


def load_series(db: Session, account_id: int, start: dt.datetime,
                end: dt.datetime) -> LoadSeries:
    """Octets per 5-minute interval, class and direction: one index range,
    at most 288 intervals x classes x 2 rows for a day."""
    source = source_for(db, account_id, start, end)
    series = LoadSeries(start, end, source)
    if source is None:
        return series
    rows = db.execute(
        select(TrafficRollup.interval_start, TrafficRollup.traffic_class,
               TrafficRollup.direction, func.sum(TrafficRollup.bytes))
        .where(TrafficRollup.account_id == account_id, TrafficRollup.interval_start >= start,
               TrafficRollup.interval_start < end, TrafficRollup.source == source)
        .group_by(TrafficRollup.interval_start, TrafficRollup.traffic_class,
                  TrafficRollup.direction)).all()
    for interval_start, traffic_class, direction, octets in rows:
        if isinstance(interval_start, str):  # pragma: no cover - SQLite driver quirks
            interval_start = dt.datetime.fromisoformat(interval_start)
        index = int((interval_start - start) / INTERVAL)
        key = (index, traffic_class, "in" if direction == "in" else "out")
        series.octets[key] = series.octets.get(key, 0) + int(octets or 0)
    series.updated_at = last_updated(db, account_id, source)
    return series


def last_updated(db: Session, account_id: int, source: str | None,
                 now: dt.datetime | None = None) -> dt.datetime | None:
    """When the account's counted traffic was last updated: the end of its
    newest 5-minute interval, or now while that interval is still running
    (a rollup is upserted as its flows arrive). The newest interval is one
    step down the rollups' key index."""
    if source is None:
        return None
    newest = db.scalar(select(func.max(TrafficRollup.interval_start)).where(
        TrafficRollup.account_id == account_id, TrafficRollup.source == source))
    if newest is None:
        return None
    if isinstance(newest, str):  # SQLite returns max() of a DateTime as text
        newest = dt.datetime.fromisoformat(newest)
    now = now or dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    return min(newest + INTERVAL, now.replace(microsecond=0))


@dataclass(frozen=True)
class TrafficSummary:
    """A period's totals from the rollups, for the overview's block."""

    octets_down: int
    octets_up: int
    updated_at: dt.datetime | None


def summary(db, account_id: int, start: dt.datetime, end: dt.datetime) -> TrafficSummary:
    """Totals over [start, end), counted as the graphs count them: one
    grouped read of the range (the source chosen from its rows) and one
    step down the index for the time."""
    rows = db.execute(
        select(TrafficRollup.source, TrafficRollup.direction, func.sum(TrafficRollup.bytes))
        .where(TrafficRollup.account_id == account_id, TrafficRollup.interval_start >= start,
               TrafficRollup.interval_start < end)
        .group_by(TrafficRollup.source, TrafficRollup.direction)).all()
    sources = {source for source, _direction, _octets in rows}
    if not sources:
        return TrafficSummary(0, 0, None)
    source = "netflow" if "netflow" in sources else sorted(sources)[0]
    totals = {direction: int(octets or 0) for row_source, direction, octets in rows
              if row_source == source}
    return TrafficSummary(totals.get("in", 0), totals.get("out", 0),
                          last_updated(db, account_id, source))
