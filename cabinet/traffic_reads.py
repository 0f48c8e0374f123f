"""Read models for the traffic pages: a day's channel load per 5-minute
interval, a period's totals and when the numbers were last updated.

The rollups are the collector's 5-minute intervals (collector.models,
``INTERVAL_SECONDS``), so a day's graph is drawn at the data's own
granularity. Older days live in coarser tiers (collector.tiers): a day
whose 5-minute rows are no longer kept (not even in the detail tier) is
drawn by hours, one past the hourly tier as a single bar; every read goes
through all tiers (rating.traffic.usage, detail_usage), so the numbers
stay the same when a day moves.

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

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from collector import tiers
from collector.models import INTERVAL_SECONDS, TrafficRollup
from config.db import CompiledSelect
from rating.traffic import detail_usage, usage

INTERVAL = dt.timedelta(seconds=INTERVAL_SECONDS)


def source_for(db: Session, account_id: int, start: dt.datetime,
               end: dt.datetime) -> str | None:
    """The rollup source counted for the account over [start, end)."""
    rollups = usage()
    sources = set(db.scalars(select(rollups.c.source).where(
        rollups.c.account_id == account_id, rollups.c.interval_start >= start,
        rollups.c.interval_start < end).distinct()))
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

    # The width of one interval: 5 minutes, or an hour or the whole day
    # where the day's rows are in a coarser tier.
    step_seconds: int = INTERVAL_SECONDS

    @property
    def step(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.step_seconds)

    @property
    def count(self) -> int:
        return max(1, -(-int((self.end - self.start).total_seconds()) // self.step_seconds))

    def interval_start(self, index: int) -> dt.datetime:
        return min(self.start + index * self.step, self.end)

    def interval_end(self, index: int) -> dt.datetime:
        return min(self.start + (index + 1) * self.step, self.end)

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
        seconds = max(1, int((self.interval_end(index) - self.interval_start(index))
                             .total_seconds()))
        return (octets * 8 + seconds // 2) // seconds

    def busy_intervals(self) -> list[int]:
        return sorted({index for index, _c, _d in self.octets})


def step_for(db: Session, start: dt.datetime) -> int:
    """The interval width a range starting at ``start`` can be drawn at:
    the coarsest tier holding any of it (collector.tiers)."""
    bounds = tiers.tier_bounds(db.connection())
    hourly_from = bounds.get("hourly")
    # 5-minute rows go on in the detail tier after their day is hourly.
    fine_from = bounds.get("detail") or bounds.get("5min")
    if hourly_from is not None and start < hourly_from:
        return 86_400
    if fine_from is not None and start < fine_from:
        return 3_600
    return INTERVAL_SECONDS


def load_series(db: Session, account_id: int, start: dt.datetime,
                end: dt.datetime) -> LoadSeries:
    """Octets per 5-minute interval, class and direction: one index range,
    at most 288 intervals x classes x 2 rows for a day (per hour or per day
    where the day's rows are in a coarser tier)."""
    source = source_for(db, account_id, start, end)
    series = LoadSeries(start, end, source, step_seconds=step_for(db, start))
    if source is None:
        return series
    rollups = detail_usage()
    rows = db.execute(
        select(rollups.c.interval_start, rollups.c.traffic_class,
               rollups.c.direction, func.sum(rollups.c.bytes))
        .where(rollups.c.account_id == account_id, rollups.c.interval_start >= start,
               rollups.c.interval_start < end, rollups.c.source == source)
        .group_by(rollups.c.interval_start, rollups.c.traffic_class,
                  rollups.c.direction)).all()
    step = series.step
    for interval_start, traffic_class, direction, octets in rows:
        if isinstance(interval_start, str):  # pragma: no cover - SQLite driver quirks
            interval_start = dt.datetime.fromisoformat(interval_start)
        index = int((interval_start - start) // step)
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
        # Nothing at 5 minutes: the newest row of the older tiers.
        rollups = usage()
        newest = db.scalar(select(func.max(rollups.c.interval_start)).where(
            rollups.c.account_id == account_id, rollups.c.source == source))
    return _updated(newest, now)


def _updated(newest, now: dt.datetime | None = None) -> dt.datetime | None:
    if newest is None:
        return None
    if isinstance(newest, str):  # SQLite's max() of a DateTime may come back as text
        newest = dt.datetime.fromisoformat(newest)
    now = now or dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    return min(newest + INTERVAL, now.replace(microsecond=0))


@dataclass(frozen=True)
class TrafficSummary:
    """A period's totals from the rollups, for the overview's block."""

    octets_down: int
    octets_up: int
    updated_at: dt.datetime | None


# The overview's read, compiled once (config.db.CompiledSelect): the
# overview is the busiest page, and building a statement costs about as
# much as running one this small. One round trip: the day's sums per
# source and direction (through every tier), each with its source's newest
# 5-minute interval (a step down the key index per group, at most four
# groups; today is always in the 5-minute tier).
_TABLE = usage("day_usage")
_NEWER = TrafficRollup.__table__.alias("newer")
_DAY_TOTALS = CompiledSelect(
    select(_TABLE.c.source, _TABLE.c.direction, func.sum(_TABLE.c.bytes).label("octets"),
           select(func.max(_NEWER.c.interval_start))
           .where(_NEWER.c.account_id == bindparam("account_id"),
                  _NEWER.c.source == _TABLE.c.source)
           .scalar_subquery().label("newest"))
    .where(_TABLE.c.account_id == bindparam("account_id"),
           _TABLE.c.interval_start >= bindparam("start"),
           _TABLE.c.interval_start < bindparam("end"))
    .group_by(_TABLE.c.source, _TABLE.c.direction))


def summary(db, account_id: int, start: dt.datetime, end: dt.datetime) -> TrafficSummary:
    """Totals over [start, end), counted as the graphs count them (the
    source chosen from the rows), and when they were last updated."""
    rows = _DAY_TOTALS.all(db, {"account_id": account_id, "start": start, "end": end})
    sources = {row.source for row in rows}
    if not sources:
        return TrafficSummary(0, 0, None)
    source = "netflow" if "netflow" in sources else sorted(sources)[0]
    totals = {row.direction: int(row.octets or 0) for row in rows if row.source == source}
    newest = max(row.newest for row in rows if row.source == source)
    return TrafficSummary(totals.get("in", 0), totals.get("out", 0), _updated(newest))
