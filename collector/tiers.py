"""Traffic data with a lifecycle: the 5-minute, hourly and daily tiers.

Three tables with the same columns and key (collector.models): the
collector and the RADIUS roll-up write 5-minute rows; a scheduler job
(``run``) moves each tier's rows past their retention into the tier above
and drops them. Readers read the union of the tiers (rating.traffic.usage),
each tier for the times it is complete, so nothing is counted twice and
nothing is missed:

- every 5-minute row;
- hourly rows before ``traffic_tiers['5min'].complete_from``;
- daily rows before ``traffic_tiers['hourly'].complete_from``.

Moving a day down is one transaction (``_compact_day``): the tier above
gets that day's sums from the tier below, computed now and *replacing*
what it held (an upsert of sums that updates only a row whose sums
changed), the day's rows below are dropped (on PostgreSQL its partition),
and ``complete_from`` moves past the day. A run repeated, or a second node
after the first, finds nothing to move; the job's lock (rating.jobs) and a
row lock on the tier's ``traffic_tiers`` row keep two runs from
overlapping.

Late data: a row for an interval still in its tier is simply there when
its day is moved (the sums are computed at the move, from everything the
day holds). A row that arrives after its day was moved ("a straggler":
below ``complete_from``; on PostgreSQL it lands in the default partition)
is still counted by readers, since every 5-minute row is; the next run
deletes it and *adds* it to the tier above in one statement (DELETE ...
RETURNING, summed, upserted with ``bytes + excluded.bytes``): counted once,
before and after.

PostgreSQL partitions (declarative, by range of ``interval_start``): the
5-minute tier by UTC day, the hourly tier by UTC month, the daily tier by
UTC year, each with a DEFAULT partition so that a row no partition holds
(a clock years off, a scheduler down for longer than the partitions made
ahead) is stored, never refused. ``ensure_partitions`` makes the partitions
of the days ahead; a partition whose range has rows in the default
partition takes them over in the same transaction. The hourly tier is in
UTC hours; the daily tier in the operator's days (settings ``timezone``),
so a month or a day in reports and the cabinet adds up exactly.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, literal, or_, select, text
from sqlalchemy.engine import Connection, Engine

from collector.models import (TrafficRollup, TrafficRollupDaily, TrafficRollupDetail,
                              TrafficRollupHourly, TrafficTier)
from config.db import utcnow

log = logging.getLogger("abonent.collector.tiers")

FINE, DETAIL, HOURLY, DAILY = "5min", "detail", "hourly", "daily"
TABLES = {FINE: TrafficRollup.__table__, DETAIL: TrafficRollupDetail.__table__,
          HOURLY: TrafficRollupHourly.__table__, DAILY: TrafficRollupDaily.__table__}
KEY = ("account_id", "interval_start", "traffic_class", "direction", "source")
# Issue 20: the 5-minute partitions take the collector's upserts; half of
# each page kept free keeps those updates HOT.
FINE_FILLFACTOR = 50
DAY = dt.timedelta(days=1)
# One run moves at most this many days per tier (bounded work; the next
# run goes on where it stopped).
MAX_DAYS_PER_RUN = 400
DROP_LOCK_TIMEOUT = "30s"


class TierError(ValueError):
    """Retention settings that make no sense; the message names the setting."""


@dataclasses.dataclass(frozen=True)
class Retention:
    """How long each tier keeps its rows (settings ``[traffic_tiers]``)."""

    five_minute_days: int = 35
    hourly_after_days: int = 3
    hourly_months: int = 13
    daily_years: int = 0                # 0: daily rows are kept for ever
    partitions_ahead_days: int = 7
    timezone: str = "UTC"

    def __post_init__(self):
        if self.five_minute_days < 2:
            raise TierError("setting traffic_tiers.five_minute_days must be 2 or more "
                            f"(today and yesterday at 5 minutes), not {self.five_minute_days}")
        if not 2 <= self.hourly_after_days <= self.five_minute_days:
            raise TierError("setting traffic_tiers.hourly_after_days must be 2 or more (today "
                            "and yesterday at 5 minutes) and at most five_minute_days, not "
                            f"{self.hourly_after_days}")
        if self.hourly_months < 1 or self.hourly_months * 28 <= self.five_minute_days:
            raise TierError("setting traffic_tiers.hourly_months must cover more than "
                            f"five_minute_days, not {self.hourly_months}")
        if self.daily_years < 0 or (self.daily_years
                                    and self.daily_years * 12 <= self.hourly_months):
            raise TierError("setting traffic_tiers.daily_years must be 0 (for ever) or cover "
                            f"more than hourly_months, not {self.daily_years}")
        if not 1 <= self.partitions_ahead_days <= 366:
            raise TierError("setting traffic_tiers.partitions_ahead_days must be 1..366, "
                            f"not {self.partitions_ahead_days}")

    @classmethod
    def from_settings(cls, settings) -> "Retention":
        section = settings.section("traffic_tiers")
        return cls(five_minute_days=section["five_minute_days"],
                   hourly_after_days=section["hourly_after_days"],
                   hourly_months=section["hourly_months"],
                   daily_years=section["daily_years"],
                   partitions_ahead_days=section["partitions_ahead_days"],
                   timezone=settings.get("", "timezone"))

    # The cut-offs: rows before them belong to the tier above.
    def fine_cutoff(self, now: dt.datetime) -> dt.datetime:
        """A UTC midnight (the 5-minute tier's partitions are UTC days):
        days before it are summed into hours, their 5-minute rows kept in
        the detail tier."""
        return _day_floor(now) - self.hourly_after_days * DAY

    def detail_cutoff(self, now: dt.datetime) -> dt.datetime:
        """5-minute rows of the detail tier before this UTC midnight go."""
        return _day_floor(now) - self.five_minute_days * DAY

    def hourly_cutoff(self, now: dt.datetime) -> dt.datetime:
        """The operator's midnight ``hourly_months`` months back."""
        return _local_midnight(_months_back(_local_date(now, self.timezone),
                                            self.hourly_months), self.timezone)

    def daily_cutoff(self, now: dt.datetime) -> dt.datetime | None:
        if not self.daily_years:
            return None
        return _local_midnight(_months_back(_local_date(now, self.timezone),
                                            12 * self.daily_years), self.timezone)


# -- time ---------------------------------------------------------------------------

def _day_floor(moment: dt.datetime) -> dt.datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def _local_date(moment: dt.datetime, timezone: str) -> dt.date:
    return moment.replace(tzinfo=dt.timezone.utc).astimezone(ZoneInfo(timezone)).date()


def _local_midnight(day: dt.date, timezone: str) -> dt.datetime:
    local = dt.datetime.combine(day, dt.time()).replace(tzinfo=ZoneInfo(timezone))
    return local.astimezone(dt.timezone.utc).replace(tzinfo=None)


def _months_back(day: dt.date, months: int) -> dt.date:
    index = day.year * 12 + day.month - 1 - months
    year, month = divmod(index, 12)
    month += 1
    for last in (31, 30, 29, 28):
        try:
            return dt.date(year, month, min(day.day, last))
        except ValueError:
            continue
    raise AssertionError("unreachable")


def _as_datetime(value) -> dt.datetime | None:
    if value is None or isinstance(value, dt.datetime):
        return value
    return dt.datetime.fromisoformat(str(value))


# -- partitions (PostgreSQL) ----------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Partition:
    table: str
    name: str
    start: dt.datetime | None          # None: the default partition
    end: dt.datetime | None
    bytes: int = 0
    rows: int = 0                      # the planner's estimate


_BOUND = re.compile(r"FROM \('([^']+)'\) TO \('([^']+)'\)")


def partitions(connection: Connection, tier: str) -> list[Partition]:
    """The tier's partitions with their ranges and sizes (PostgreSQL), by start."""
    parent = TABLES[tier].name
    rows = connection.execute(text(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid), "
        "pg_total_relation_size(c.oid), GREATEST(c.reltuples, 0)::bigint "
        "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = :parent"),
        {"parent": parent}).all()
    found = []
    for name, bound, size, estimate in rows:
        match = _BOUND.search(bound or "")
        start = end = None
        if match:
            start, end = (dt.datetime.fromisoformat(match.group(1)),
                          dt.datetime.fromisoformat(match.group(2)))
        found.append(Partition(parent, name, start, end, int(size), int(estimate)))
    return sorted(found, key=lambda p: (p.start is None, p.start or dt.datetime.min))


def partition_range(tier: str, moment: dt.datetime) -> tuple[str, dt.datetime, dt.datetime]:
    """(name, start, end) of the partition of ``tier`` holding ``moment``."""
    parent = TABLES[tier].name
    if tier in (FINE, DETAIL):
        start = _day_floor(moment)
        return f"{parent}_p{start:%Y%m%d}", start, start + DAY
    if tier == HOURLY:
        start = _day_floor(moment).replace(day=1)
        end = (start + dt.timedelta(days=32)).replace(day=1)
        return f"{parent}_p{start:%Y%m}", start, end
    start = _day_floor(moment).replace(month=1, day=1)
    return f"{parent}_p{start:%Y}", start, start.replace(year=start.year + 1)


def ensure_partition(connection: Connection, tier: str, moment: dt.datetime,
                     existing: set[str] | None = None) -> str | None:
    """Create the partition of ``tier`` holding ``moment`` unless it exists;
    its name if created. Rows of its range already in the default partition
    move into it in the same transaction (PostgreSQL refuses to create a
    partition whose rows sit in the default one)."""
    name, start, end = partition_range(tier, moment)
    if existing is None:
        existing = {p.name for p in partitions(connection, tier)}
    if name in existing:
        return None
    parent = TABLES[tier].name
    default = f"{parent}_default"
    bounds = {"start": start, "end": end}
    stray = connection.execute(text(
        f"SELECT 1 FROM {default} WHERE interval_start >= :start AND interval_start < :end "
        "LIMIT 1"), bounds).first()
    columns = ", ".join(c.name for c in TABLES[tier].columns)
    if stray:
        connection.execute(text(
            f"CREATE TEMPORARY TABLE tier_moving ON COMMIT DROP AS "
            f"WITH moved AS (DELETE FROM {default} WHERE interval_start >= :start "
            f"AND interval_start < :end RETURNING {columns}) SELECT * FROM moved"), bounds)
    fill = f" WITH (fillfactor = {FINE_FILLFACTOR})" if tier == FINE else ""
    connection.execute(text(
        f"CREATE TABLE {name} PARTITION OF {parent} FOR VALUES FROM ('{start.isoformat(' ')}') "
        f"TO ('{end.isoformat(' ')}'){fill}"))
    if stray:
        connection.execute(text(f"INSERT INTO {parent} ({columns}) SELECT {columns} "
                                "FROM tier_moving"))
        connection.execute(text("DROP TABLE tier_moving"))
    existing.add(name)
    log.info("traffic.partition_created table=%s partition=%s moved_from_default=%s",
             parent, name, bool(stray))
    return name


def ensure_partitions(engine: Engine, retention: Retention,
                      now: dt.datetime | None = None) -> list[str]:
    """The partitions of the days ahead: the 5-minute tier's from yesterday
    to ``partitions_ahead_days`` ahead, the hourly tier's months and the
    daily tier's years around now. Nothing on SQLite."""
    if engine.dialect.name != "postgresql":
        return []
    now = now or utcnow()
    created = []
    wanted = [(FINE, _day_floor(now) + n * DAY)
              for n in range(-1, retention.partitions_ahead_days + 1)]
    wanted += [(HOURLY, now + dt.timedelta(days=d)) for d in (-31, 0, 31)]
    wanted += [(DAILY, now.replace(month=1, day=1) + dt.timedelta(days=d)) for d in (-1, 0, 366)]
    # Days kept at 5 minutes whose rows went to the default partition (the
    # scheduler was down longer than the partitions made ahead) get theirs.
    with engine.connect() as connection:
        since = tier_bounds(connection).get(FINE) or retention.fine_cutoff(now)
        stray_days = connection.execute(text(
            f"SELECT DISTINCT date_trunc('day', interval_start) FROM {TABLES[FINE].name}_default "
            "WHERE interval_start >= :since AND interval_start < :yesterday"),
            {"since": since, "yesterday": _day_floor(now) - DAY}).scalars().all()
    wanted = [(FINE, day) for day in sorted(stray_days)] + wanted
    for tier, moment in wanted:
        with engine.begin() as connection:
            made = ensure_partition(connection, tier, moment)
            if made:
                created.append(made)
    return created


# -- moving rows up a tier -----------------------------------------------------------

def _bucket(connection: Connection, column, tier: str):
    """The start of the target bucket of a lower row (hourly: its UTC hour),
    in the column's stored form on each database."""
    if tier != HOURLY:
        raise ValueError(tier)
    if connection.dialect.name == "postgresql":
        return func.date_trunc("hour", column)
    # SQLAlchemy stores a SQLite DateTime as 'YYYY-MM-DD HH:MM:SS.ffffff'.
    return func.strftime("%Y-%m-%d %H:00:00.000000", column)


def _upsert(connection: Connection, target: str, source_select, *, add: bool):
    """INSERT the selected sums into ``target``'s tier; on a key already
    there either replace its sums (a rebuild: a row whose sums did not
    change is not written) or add to them (stragglers)."""
    if connection.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    table = TABLES[target]
    statement = insert(table).from_select(
        ["account_id", "interval_start", "traffic_class", "direction", "source", "bytes",
         "packets"], source_select)
    if add:
        return statement.on_conflict_do_update(
            index_elements=list(KEY),
            set_={"bytes": table.c.bytes + statement.excluded.bytes,
                  "packets": table.c.packets + statement.excluded.packets})
    return statement.on_conflict_do_update(
        index_elements=list(KEY),
        set_={"bytes": statement.excluded.bytes, "packets": statement.excluded.packets},
        where=or_(table.c.bytes != statement.excluded.bytes,
                  table.c.packets != statement.excluded.packets))


def _sums_select(connection: Connection, lower: str, upper: str, start: dt.datetime,
                 end: dt.datetime):
    """The sums of ``lower``'s rows in [start, end) per ``upper`` bucket."""
    table = TABLES[lower]
    groups = [table.c.account_id, table.c.traffic_class, table.c.direction, table.c.source]
    if upper == HOURLY:
        bucket = _bucket(connection, table.c.interval_start, HOURLY).label("interval_start")
        groups.append(bucket)
    else:
        # One operator's day at a time: its UTC start is the bucket (a
        # constant, so not grouped by).
        bucket = literal(start, TABLES[DAILY].c.interval_start.type).label("interval_start")
    return (select(table.c.account_id, bucket, table.c.traffic_class, table.c.direction,
                   table.c.source, func.sum(table.c.bytes), func.sum(table.c.packets))
            .where(table.c.interval_start >= start, table.c.interval_start < end)
            .group_by(*groups))


def _lock_tier(connection: Connection, tier: str) -> dt.datetime | None:
    """The tier's ``complete_from``, its row locked for this transaction."""
    table = TrafficTier.__table__
    statement = select(table.c.complete_from).where(table.c.tier == tier)
    if connection.dialect.name == "postgresql":
        statement = statement.with_for_update()
    row = connection.execute(statement).first()
    if row is None:
        connection.execute(table.insert().values(tier=tier))
        return None
    return _as_datetime(row[0])


def _set_complete_from(connection: Connection, tier: str, moment: dt.datetime) -> None:
    table = TrafficTier.__table__
    connection.execute(table.update().where(table.c.tier == tier)
                       .values(complete_from=moment, updated_at=utcnow()))


def _delete_range(connection: Connection, tier: str, start: dt.datetime | None,
                  end: dt.datetime) -> int:
    """Remove ``tier``'s rows in [start, end) (start None: everything before
    ``end``): whole partitions inside the range are dropped, the rest
    deleted. Returns the partitions dropped."""
    table = TABLES[tier]
    dropped = 0
    if connection.dialect.name == "postgresql":
        for part in partitions(connection, tier):
            if part.start is None:
                continue
            if part.end <= end and (start is None or part.start >= start):
                # Dropping a partition locks the whole table until the
                # commit, which follows at once; waiting longer than this
                # for the collector's and the pages' transactions to let go
                # fails the move (rolled back whole, retried next run).
                connection.execute(text(f"SET LOCAL lock_timeout = '{DROP_LOCK_TIMEOUT}'"))
                connection.execute(text(f"DROP TABLE {part.name}"))
                dropped += 1
                log.info("traffic.partition_dropped table=%s partition=%s", table.name,
                         part.name)
    condition = table.c.interval_start < end
    if start is not None:
        condition = and_(condition, table.c.interval_start >= start)
    connection.execute(table.delete().where(condition))
    return dropped


def _keep_detail(connection: Connection, start: dt.datetime, end: dt.datetime) -> int:
    """The 5-minute rows of [start, end), just summed into hours, move to
    the detail tier. On PostgreSQL a whole day's partition is detached from
    ``traffic_rollups`` and attached to ``traffic_rollups_detail`` (no row
    copied; the lock on the parent is as short as a drop's, and bounded the
    same way); otherwise the rows are copied and deleted. The first day
    moved in starts the tier. Returns the partitions dropped."""
    table, detail = TABLES[FINE], TABLES[DETAIL]
    if _lock_tier(connection, DETAIL) is None:
        _set_complete_from(connection, DETAIL, start)
    if connection.dialect.name == "postgresql":
        name, p_start, p_end = partition_range(FINE, start)
        kept, _start, _end = partition_range(DETAIL, start)
        # Not when the detail tier already holds rows of the day (its own
        # partition, or late rows in its default one): then rows are copied.
        if ((p_start, p_end) == (start, end)
                and name in {p.name for p in partitions(connection, FINE)}
                and kept not in {p.name for p in partitions(connection, DETAIL)}
                and connection.execute(text(
                    f"SELECT 1 FROM {detail.name}_default WHERE interval_start >= :start "
                    "AND interval_start < :end LIMIT 1"),
                    {"start": start, "end": end}).first() is None):
            connection.execute(text(f"SET LOCAL lock_timeout = '{DROP_LOCK_TIMEOUT}'"))
            connection.execute(text(f"ALTER TABLE {table.name} DETACH PARTITION {name}"))
            connection.execute(text(f"ALTER TABLE {name} RENAME TO {kept}"))
            # The collector's updates are over: new pages may be full. The
            # day graph reads by account (the primary key): the interval
            # index, which misled the planner there, goes.
            connection.execute(text(f"ALTER TABLE {kept} SET (fillfactor = 100)"))
            for index in connection.execute(text(
                    "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                    "WHERE i.indrelid = CAST(:kept AS regclass) AND NOT i.indisprimary"),
                    {"kept": kept}).scalars().all():
                connection.execute(text(f'DROP INDEX "{index}"'))
            # Like the hourly tier, the detail tier checks no account (its
            # rows had theirs checked): the key the partition took along
            # from traffic_rollups goes too.
            for key in connection.execute(text(
                    "SELECT conname FROM pg_constraint WHERE conrelid = CAST(:kept AS regclass) "
                    "AND contype = 'f'"), {"kept": kept}).scalars().all():
                connection.execute(text(f'ALTER TABLE {kept} DROP CONSTRAINT "{key}"'))
            connection.execute(text(
                f"ALTER TABLE {detail.name} ATTACH PARTITION {kept} FOR VALUES FROM "
                f"('{start.isoformat(' ')}') TO ('{end.isoformat(' ')}')"))
            log.info("traffic.partition_detail partition=%s", kept)
            return 0
        ensure_partition(connection, DETAIL, start)
    connection.execute(_upsert(connection, DETAIL, select(
        *(table.c[c] for c in KEY), table.c.bytes, table.c.packets).where(
        table.c.interval_start >= start, table.c.interval_start < end), add=True))
    return _delete_range(connection, FINE, start, end)


def _expire_detail(engine: Engine, cutoff: dt.datetime, report: TierRun) -> None:
    """The detail tier's days before ``cutoff`` go (their hours stay)."""
    with engine.begin() as connection:
        detail_from = _lock_tier(connection, DETAIL)
        fine_from = tier_bounds(connection).get(FINE)
        if detail_from is None or fine_from is None:
            return
        cutoff = min(cutoff, fine_from)
        if detail_from >= cutoff:
            return
        report.partitions_dropped += _delete_range(connection, DETAIL, None, cutoff)
        _set_complete_from(connection, DETAIL, cutoff)


def _add_sums(connection: Connection, tier: str, rows, bucket=None) -> None:
    """Add rows (key columns, bytes, packets), summed per ``bucket`` of
    their interval (as they are if None), to ``tier``'s rows."""
    sums: dict[tuple, list[int]] = {}
    for account_id, moment, traffic_class, direction, source, octets, packets in rows:
        moment = _as_datetime(moment)
        key = (account_id, bucket(moment) if bucket else moment, traffic_class, direction,
               source)
        total = sums.setdefault(key, [0, 0])
        total[0] += int(octets)
        total[1] += int(packets)
    if not sums:
        return
    if connection.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    target = TABLES[tier]
    statement = insert(target)
    statement = statement.on_conflict_do_update(
        index_elements=list(KEY),
        set_={"bytes": target.c.bytes + statement.excluded.bytes,
              "packets": target.c.packets + statement.excluded.packets})
    connection.execute(statement, [
        dict(account_id=k[0], interval_start=k[1], traffic_class=k[2], direction=k[3],
             source=k[4], bytes=v[0], packets=v[1]) for k, v in sums.items()])


def _fold_stragglers(connection: Connection, lower: str, upper: str, before: dt.datetime,
                     timezone: str, detail_from: dt.datetime | None = None) -> int:
    """Rows of ``lower`` before ``before`` (its tier moved on without them)
    are deleted and added to ``upper`` in one statement: counted once.
    5-minute rows from ``detail_from`` on are added to the detail tier as
    well, so the day graph of their day keeps them."""
    table = TABLES[lower]
    columns = [table.c[name] for name in KEY] + [table.c.bytes, table.c.packets]
    rows = connection.execute(table.delete().where(table.c.interval_start < before)
                              .returning(*columns)).all()
    if not rows:
        return 0

    def bucket(moment: dt.datetime) -> dt.datetime:
        if upper == HOURLY:
            return moment.replace(minute=0, second=0, microsecond=0)
        return _local_midnight(_local_date(moment, timezone), timezone)

    _add_sums(connection, upper, rows, bucket)
    if detail_from is not None:
        _add_sums(connection, DETAIL, [row for row in rows
                                       if _as_datetime(row[1]) >= detail_from])
    log.info("traffic.stragglers_folded tier=%s rows=%d into=%s", lower, len(rows), upper)
    return len(rows)


def _first_row(connection: Connection, tier: str, start: dt.datetime | None,
               end: dt.datetime) -> dt.datetime | None:
    table = TABLES[tier]
    statement = select(func.min(table.c.interval_start)).where(table.c.interval_start < end)
    if start is not None:
        statement = statement.where(table.c.interval_start >= start)
    return _as_datetime(connection.execute(statement).scalar())


@dataclasses.dataclass
class TierRun:
    """What one run did (``abonent traffic tiers run --json``)."""

    partitions_created: list[str] = dataclasses.field(default_factory=list)
    partitions_dropped: int = 0
    days_moved: dict[str, int] = dataclasses.field(default_factory=dict)
    stragglers: dict[str, int] = dataclasses.field(default_factory=dict)
    rows_expired: int = 0
    complete_from: dict[str, str | None] = dataclasses.field(default_factory=dict)
    skipped: bool = False

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _move_up(engine: Engine, lower: str, upper: str, cutoff: dt.datetime,
             retention: Retention, report: TierRun, limit: dt.datetime | None = None,
             on_day=None) -> None:
    """Move ``lower``'s rows before ``cutoff`` into ``upper``, a day per
    transaction (a UTC day from the 5-minute tier, an operator's day from
    the hourly one), then fold its stragglers."""
    if limit is not None:
        cutoff = min(cutoff, limit)
    days = 0
    while days < MAX_DAYS_PER_RUN:
        with engine.begin() as connection:
            complete_from = _lock_tier(connection, lower)
            if complete_from is not None and complete_from >= cutoff:
                break
            first = _first_row(connection, lower, complete_from, cutoff)
            if first is None:
                # Nothing left below the cut-off: the tier starts there.
                _set_complete_from(connection, lower, cutoff)
                break
            if lower == FINE:
                start = _day_floor(first)
                end = min(start + DAY, cutoff)
            else:
                local = _local_date(first, retention.timezone)
                start = _local_midnight(local, retention.timezone)
                end = min(_local_midnight(local + DAY, retention.timezone), cutoff)
            if complete_from is not None:
                start = max(start, complete_from)
            if connection.dialect.name == "postgresql":
                ensure_partition(connection, upper, start)
                if lower == FINE:
                    # The collector's late rows for this day wait for the
                    # commit (and then land in the default partition).
                    name, p_start, p_end = partition_range(FINE, start)
                    if (p_start, p_end) == (start, end) and name in {
                            p.name for p in partitions(connection, FINE)}:
                        connection.execute(text(f"LOCK TABLE {name} IN SHARE MODE"))
            connection.execute(_upsert(
                connection, upper, _sums_select(connection, lower, upper, start, end),
                add=False))
            if lower == FINE:
                report.partitions_dropped += _keep_detail(connection, start, end)
            else:
                report.partitions_dropped += _delete_range(connection, lower, start, end)
            _set_complete_from(connection, lower, end)
            days += 1
        if on_day is not None:
            on_day(1)
    report.days_moved[lower] = days
    with engine.begin() as connection:
        complete_from = _lock_tier(connection, lower)
        if complete_from is not None:
            detail_from = None
            if lower == FINE:
                detail_from = _lock_tier(connection, DETAIL) or complete_from
            report.stragglers[lower] = _fold_stragglers(connection, lower, upper,
                                                        complete_from, retention.timezone,
                                                        detail_from=detail_from)
            # Partitions wholly before the tier's start (made ahead, or left
            # empty by the moves) go too.
            report.partitions_dropped += _delete_range(connection, lower, None, complete_from)


def _expire_daily(engine: Engine, cutoff: dt.datetime | None, report: TierRun) -> None:
    if cutoff is None:
        return
    with engine.begin() as connection:
        _lock_tier(connection, DAILY)
        table = TABLES[DAILY]
        report.rows_expired = connection.execute(
            select(func.count()).select_from(table)
            .where(table.c.interval_start < cutoff)).scalar() or 0
        report.partitions_dropped += _delete_range(connection, DAILY, None, cutoff)
        _set_complete_from(connection, DAILY, cutoff)


def backlog_days(engine: Engine, retention: Retention, now: dt.datetime | None = None) -> int:
    """About how many days a run would move (for a progress bar)."""
    now = now or utcnow()
    bounds = tier_bounds(engine)
    total = 0
    with engine.connect() as connection:
        for tier, cutoff in ((FINE, retention.fine_cutoff(now)),
                             (HOURLY, retention.hourly_cutoff(now))):
            first = bounds.get(tier) or _first_row(connection, tier, None, cutoff)
            if first is not None and first < cutoff:
                total += (cutoff - first).days + 1
    return min(total, 2 * MAX_DAYS_PER_RUN)


def run(engine: Engine, retention: Retention, now: dt.datetime | None = None,
        on_day=None) -> TierRun:
    """One tiering run: partitions ahead, the 5-minute tier's old days into
    the hourly tier, the hourly tier's old days into the daily one, daily
    rows past their retention dropped. Idempotent; one node at a time."""
    from rating.jobs import job_lock

    now = now or utcnow()
    report = TierRun()
    with job_lock(engine, "traffic_tiers") as held:
        if not held:
            report.skipped = True
            return report
        report.partitions_created = ensure_partitions(engine, retention, now)
        _move_up(engine, FINE, HOURLY, retention.fine_cutoff(now), retention, report,
                 on_day=on_day)
        _expire_detail(engine, retention.detail_cutoff(now), report)
        with engine.connect() as connection:
            fine_from = _as_datetime(connection.execute(
                select(TrafficTier.complete_from).where(TrafficTier.tier == FINE)).scalar())
        # The hourly tier is complete only where the 5-minute one moved on.
        if fine_from is not None:
            _move_up(engine, HOURLY, DAILY, retention.hourly_cutoff(now), retention, report,
                     limit=fine_from, on_day=on_day)
        _expire_daily(engine, retention.daily_cutoff(now), report)
        report.complete_from = {tier: (value.isoformat() if value else None)
                                for tier, value in tier_bounds(engine).items()}
    log.info("traffic.tiers_run days=%s stragglers=%s dropped=%d created=%d",
             report.days_moved, report.stragglers, report.partitions_dropped,
             len(report.partitions_created))
    return report


def tier_bounds(engine_or_connection) -> dict[str, dt.datetime | None]:
    table = TrafficTier.__table__

    def read(connection):
        return {tier: _as_datetime(value) for tier, value in connection.execute(
            select(table.c.tier, table.c.complete_from))}

    if isinstance(engine_or_connection, Engine):
        with engine_or_connection.connect() as connection:
            return read(connection)
    return read(engine_or_connection)


def inspect(engine: Engine, retention: Retention, now: dt.datetime | None = None) -> dict:
    """Each tier: its table, rows, bytes on disk, where it is complete from,
    its cut-off now, and (PostgreSQL) its partitions."""
    now = now or utcnow()
    cutoffs = {FINE: retention.fine_cutoff(now), DETAIL: retention.detail_cutoff(now),
               HOURLY: retention.hourly_cutoff(now), DAILY: retention.daily_cutoff(now)}
    bounds = tier_bounds(engine)
    tiers = []
    with engine.connect() as connection:
        postgres = connection.dialect.name == "postgresql"
        for tier, table in TABLES.items():
            entry = {"tier": tier, "table": table.name,
                     "complete_from": _iso(bounds.get(tier)),
                     "cutoff": _iso(cutoffs[tier])}
            if postgres:
                parts = partitions(connection, tier)
                entry["bytes"] = sum(p.bytes for p in parts)
                entry["rows_estimate"] = sum(p.rows for p in parts)
                entry["partitions"] = [
                    {"name": p.name, "from": _iso(p.start), "to": _iso(p.end),
                     "bytes": p.bytes, "rows_estimate": p.rows} for p in parts]
            else:
                entry["rows"] = connection.execute(
                    select(func.count()).select_from(table)).scalar()
            tiers.append(entry)
    return {"dialect": engine.dialect.name, "tiers": tiers,
            "retention": {"five_minute_days": retention.five_minute_days,
                          "hourly_after_days": retention.hourly_after_days,
                          "hourly_months": retention.hourly_months,
                          "daily_years": retention.daily_years,
                          "partitions_ahead_days": retention.partitions_ahead_days,
                          "timezone": retention.timezone}}


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None
