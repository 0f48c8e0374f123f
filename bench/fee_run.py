"""Daily fee run on PostgreSQL with N accounts (default 1,000,000).

    python bench/fee_run.py [--accounts N] [--workers 2] [--url postgresql+psycopg://postgres@127.0.0.1/postgres]

Creates a scratch database, seeds N active accounts on a daily tariff with
one set-based statement, runs the fee run for one day and prints the time;
then runs it again (every key exists: nothing is charged) and prints that.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, select, text

from config.db import make_sessionmaker
from rating import fees
from rating.models import LedgerEntry
from bench.scratch import scratch_database  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    with scratch_database(args.url) as (engine, url):
        started = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO tariffs (name, fee, fee_period, rate_down_kbps, "
                              "rate_up_kbps, negative_rate_kbps, prepaid_mb, price_per_gb, "
                              "usage_source, switch_min_days, rules, archived, created_at) "
                              "VALUES ('Bench', 600, 'daily', 100000, 50000, 1000, 0, 0, "
                              "'radius', 0, '{}', false, now())"))
            conn.execute(text(
                "INSERT INTO accounts (number, kind, name, state, tariff_id, credit_limit, "
                "balance, profile, created_at, version) "
                "SELECT lpad(g::text, 9, '0'), 'person', 'Bench ' || g, 'active', "
                "(SELECT id FROM tariffs LIMIT 1), 0, 1000, 'normal', now(), 1 "
                "FROM generate_series(1, :n) g"), {"n": args.accounts})
        with engine.connect() as conn:
            conn.execute(text("ANALYZE"))
            conn.commit()
        print(f"seeded {args.accounts:,} accounts in {time.perf_counter() - started:.1f} s")
        Session = make_sessionmaker(engine)
        day = dt.date(2026, 11, 23)
        started = time.perf_counter()
        result = fees.charge_day_parallel(Session, day, workers=args.workers)
        elapsed = time.perf_counter() - started
        with Session() as session:
            entries = session.scalar(select(func.count()).select_from(LedgerEntry))
        print(f"fee run: {result.charged:,} accounts charged in {elapsed:.1f} s "
              f"({result.charged / elapsed:,.0f} accounts/s); ledger entries: {entries:,}")
        started = time.perf_counter()
        again = fees.charge_day_parallel(Session, day, workers=args.workers)
        elapsed = time.perf_counter() - started
        print(f"repeat run: {again.charged:,} charged in {elapsed:.1f} s")


if __name__ == "__main__":
    main()
