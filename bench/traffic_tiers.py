"""A simulated day of traffic through the rollup path, then tiering and
retention, on a scratch PostgreSQL database (issue 19).

    python bench/traffic_tiers.py [--subscribers 1000000] [--intervals 4]
        [--history-accounts 200] [--history-days 31] [--queries 300]
        [--url postgresql+psycopg://postgres@127.0.0.1/postgres]

What it writes, all through the collector's own write (collector.flush.
write_unit: the replay row, binary COPY into a staging table, and the same
INSERT ... ON CONFLICT DO UPDATE into traffic_rollups the collector runs):

- the day 2026-11-01 for ``--subscribers`` accounts, each with traffic in
  ``--intervals`` of the day's 288 five-minute intervals (spread over the
  day), one class, both directions: subscribers x intervals x 2 rows. A
  whole day (288 intervals) for a million subscribers is 576M rows, more
  than this shared 2-core box writes in the time; the figures per row are
  measured and the day's volume is arithmetic (docs/traffic-tiers.md);
- ``--history-days`` whole days (288 intervals, two classes, both
  directions) around it for ``--history-accounts`` of them, so that the
  cabinet's month graph has a month of rows to read.

Then one tiering run as of 2026-12-08 (settings defaults: days summed into
hours after 3 days, ``--hourly-after-days``, their 5-minute rows kept for
the day graph 35 days, ``--five-minute-days``), which sums the days before
2026-12-05 into the hourly tier, moves the partitions of those from
2026-11-03 on to the detail tier and drops the older ones. Prints the
tables' sizes before and after (pg_total_relation_size summed over the
partitions), bytes per row of each tier, the write and tiering times (wall,
and CPU seconds of this process and of the PostgreSQL backends it used),
and the p50/p99 of the cabinet's month graph (cabinet.queries.daily_traffic,
November) and day graph (cabinet.traffic_reads.load_series, a day kept at
5 minutes in the detail tier and an hourly one) for the history accounts.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from sqlalchemy import event, text  # noqa: E402

from bench.procstat import cpu_seconds  # noqa: E402
from bench.scratch import DEFAULT_URL, scratch_database  # noqa: E402
from cabinet import queries, traffic_reads  # noqa: E402
from collector import tiers  # noqa: E402
from collector.flush import FlushUnit, write_unit  # noqa: E402
from collector.models import INTERVAL_SECONDS  # noqa: E402
from config.db import make_sessionmaker  # noqa: E402
from rating import reports  # noqa: E402

TZ = "Europe/Moscow"
DAY = dt.datetime(2026, 11, 1)
NOW = dt.datetime(2026, 12, 8, 3, 0)
CLASSES = ["internet", "local"]
UNIT_ROWS = 1_000_000


def _keys(accounts: np.ndarray, interval: int, classes: int) -> np.ndarray:
    """The collector's rollup keys (collector.rollup): account | interval |
    class | direction, sorted as a flush writes them."""
    parts = []
    for traffic_class in range(classes):
        for direction in (0, 1):
            parts.append((accounts.astype(np.uint64) << np.uint64(35))
                         | (np.uint64(interval) << np.uint64(9))
                         | np.uint64(traffic_class << 1 | direction))
    keys = np.concatenate(parts)
    keys.sort()
    return keys


def _write(engine, Session, keys: np.ndarray) -> int:
    rng = np.random.default_rng(len(keys))
    written = 0
    for start in range(0, len(keys), UNIT_ROWS):
        part = keys[start:start + UNIT_ROWS]
        unit = FlushUnit(keys=part, octets=rng.integers(1_000, 50_000_000, len(part),
                                                        dtype=np.uint64),
                         packets=rng.integers(1, 40_000, len(part), dtype=np.uint64),
                         class_names=CLASSES, digests=os.urandom(16), flows=len(part))
        with Session() as session:
            write_unit(session, unit, origin="bench")
            session.commit()
        written += len(part)
    return written


def _sizes(engine) -> dict:
    with engine.connect() as connection:
        found = {}
        for tier in (tiers.FINE, tiers.DETAIL, tiers.HOURLY, tiers.DAILY):
            parts = tiers.partitions(connection, tier)
            table = tiers.TABLES[tier].name
            rows = connection.execute(text(f"SELECT count(*) FROM {table}")).scalar()
            found[tier] = (sum(p.bytes for p in parts), rows)
    return found


def _print_sizes(label: str, sizes: dict) -> None:
    for tier, (size, rows) in sizes.items():
        per_row = f"{size / rows:.0f} B/row" if rows else "-"
        print(f"  {label:6} {tier:6} {size / 2**20:9.1f} MiB {rows:>11,} rows  {per_row}")


def _percentiles(samples: list[float]) -> str:
    samples = sorted(samples)
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    return (f"p50 {statistics.median(samples) * 1000:6.1f} ms  p99 {p99 * 1000:6.1f} ms  "
            f"max {samples[-1] * 1000:6.1f} ms  (n={len(samples)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=1_000_000)
    parser.add_argument("--intervals", type=int, default=4,
                        help="5-minute intervals with traffic per subscriber in the day")
    parser.add_argument("--history-accounts", type=int, default=200)
    parser.add_argument("--history-days", type=int, default=31)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--five-minute-days", type=int, default=35,
                        help="the retention setting the tiering runs with (as of 2026-12-08)")
    parser.add_argument("--hourly-after-days", type=int, default=3,
                        help="the retention setting the tiering runs with (as of 2026-12-08)")
    parser.add_argument("--url", default=DEFAULT_URL)
    args = parser.parse_args()
    if not (1 <= args.intervals <= 288 and args.subscribers >= args.history_accounts >= 1):
        parser.error("--intervals must be 1..288 and --subscribers >= --history-accounts >= 1")
    print(f"load average at start: {os.getloadavg()[0]:.2f} (nproc {os.cpu_count()})")
    with scratch_database(args.url, prefix="abonent_bench_tiers") as (engine, _url):
        backends: set[int] = set()
        event.listen(engine, "checkout",
                     lambda dbapi, _record, _proxy: backends.add(dbapi.info.backend_pid))
        Session = make_sessionmaker(engine)
        with engine.begin() as connection:
            connection.execute(text(
                "INSERT INTO accounts (number, kind, name, state, credit_limit, balance, "
                "profile, created_at, version) SELECT lpad(g::text, 9, '0'), 'person', "
                "'Bench ' || g, 'active', 0, 0, 'normal', now(), 1 "
                "FROM generate_series(1, :n) g"), {"n": args.subscribers})
            first_id = connection.execute(text("SELECT min(id) FROM accounts")).scalar()
        # Partitions for the simulated days (the scheduler makes them ahead).
        with engine.begin() as connection:
            for offset in range(-8, args.history_days):
                tiers.ensure_partition(connection, tiers.FINE, DAY + offset * tiers.DAY)
        ids = np.arange(first_id, first_id + args.subscribers, dtype=np.uint64)
        history = ids[:: max(1, args.subscribers // args.history_accounts)][
            :args.history_accounts]

        wall, own, server = time.monotonic(), time.process_time(), cpu_seconds(backends)
        rows = 0
        day_index = int((DAY - dt.datetime(1970, 1, 1)).total_seconds()) // INTERVAL_SECONDS
        step = 288 // args.intervals
        for n in range(args.intervals):
            rows += _write(engine, Session, _keys(ids, day_index + n * step, 1))
        day_wall = time.monotonic() - wall
        day_rows = rows
        print(f"the day: {args.subscribers:,} subscribers x {args.intervals} intervals x 2 "
              f"directions = {day_rows:,} rows in {day_wall:.1f} s "
              f"({day_rows / day_wall:,.0f} rows/s; CPU: bench {time.process_time() - own:.1f} s, "
              f"PostgreSQL {cpu_seconds(backends) - server:.1f} s)")
        wall = time.monotonic()
        first_day = DAY - 7 * tiers.DAY
        for day in range(args.history_days):
            base = int((first_day + day * tiers.DAY - dt.datetime(1970, 1, 1))
                       .total_seconds()) // INTERVAL_SECONDS
            # Interval after interval, each sorted: the collector writes a
            # day as 288 intervals' flushes, so one account's rows of a day
            # sit on as many heap pages as it has intervals, not on a few.
            keys = np.concatenate([_keys(history, base + i, 2) for i in range(288)])
            rows += _write(engine, Session, keys)
        print(f"history: {len(history)} accounts x {args.history_days} days x 288 x 2 classes "
              f"x 2 = {rows - day_rows:,} rows in {time.monotonic() - wall:.1f} s")
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("VACUUM ANALYZE")
        before = _sizes(engine)
        print("sizes (pg_total_relation_size, heap + indexes):")
        _print_sizes("before", before)

        retention = tiers.Retention(five_minute_days=args.five_minute_days,
                                    hourly_after_days=args.hourly_after_days, timezone=TZ)
        wall, own, server = time.monotonic(), time.process_time(), cpu_seconds(backends)
        report = tiers.run(engine, retention, NOW)
        took = time.monotonic() - wall
        print(f"tiering: {report.days_moved} days moved, {report.partitions_dropped} "
              f"partitions dropped, {len(report.partitions_created)} made, in {took:.1f} s "
              f"(CPU: bench {time.process_time() - own:.1f} s, PostgreSQL "
              f"{cpu_seconds(backends) - server:.1f} s); complete from {report.complete_from}")
        wall = time.monotonic()
        again = tiers.run(engine, retention, NOW)
        print(f"tiering again: {again.days_moved} in {time.monotonic() - wall:.2f} s")
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("VACUUM ANALYZE")
        after = _sizes(engine)
        _print_sizes("after", after)

        month = reports.month("2026-11", TZ)
        hourly_day = (reports.moment("2026-11-01", "day", TZ),
                      reports.moment("2026-11-01", "day", TZ, end=True))
        fine_day = (reports.moment("2026-11-10", "day", TZ),
                    reports.moment("2026-11-10", "day", TZ, end=True))
        rng = random.Random(19)
        samples = {"month": [], "day (hourly tier)": [], "day (5-minute detail)": []}
        one = []
        with Session() as session:
            for _ in range(args.queries):
                account_id = int(rng.choice(history))
                began = time.perf_counter()
                graph = queries.daily_traffic(session, account_id, month.start, month.end, TZ)
                samples["month"].append(time.perf_counter() - began)
                for label, (start, end) in (("day (hourly tier)", hourly_day),
                                            ("day (5-minute detail)", fine_day)):
                    began = time.perf_counter()
                    traffic_reads.load_series(session, account_id, start, end)
                    samples[label].append(time.perf_counter() - began)
                session.rollback()
            # A subscriber of the big day only (a few intervals).
            for _ in range(min(args.queries, 100)):
                account_id = int(rng.choice(ids))
                began = time.perf_counter()
                queries.daily_traffic(session, account_id, month.start, month.end, TZ)
                one.append(time.perf_counter() - began)
                session.rollback()
        assert len(graph) >= min(args.history_days - 8, 20), "the month graph lacks days"
        print(f"cabinet graphs ({len(history)} accounts with a month of rows; "
              f"load average {os.getloadavg()[0]:.2f}):")
        for label, values in samples.items():
            print(f"  {label:20} {_percentiles(values)}")
        print(f"  {'month (day only)':20} {_percentiles(one)}")


if __name__ == "__main__":
    main()
