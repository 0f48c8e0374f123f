"""Report speed on PostgreSQL with N accounts (default 100,000).

    python bench/reports.py [--accounts N] [--days 10] [--url postgresql+psycopg://postgres@127.0.0.1/postgres]

Creates a scratch database and seeds, with set-based statements, N accounts
with a payment and a daily fee for ``--days`` days of November 2026 (half of
them end in debt), one RADIUS session each and NetFlow rollups in both
directions (every tenth account 30 % short). Then times, through the same
functions the commands call: report reconcile, report debtors, report
revenue by kind, tariff and day; prints each time and row count.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from decimal import Decimal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text

from config.db import make_sessionmaker
from rating import reports
from bench.scratch import scratch_database  # noqa: E402


def seed(engine, accounts: int, days: int) -> None:
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO tariffs (name, fee, fee_period, rate_down_kbps, rate_up_kbps, "
            "negative_rate_kbps, prepaid_mb, price_per_gb, usage_source, switch_min_days, "
            "rules, archived, created_at) VALUES ('Bench', 60, 'daily', 100000, 50000, 1000, "
            "0, 0, 'radius', 0, '{}', false, now())"))
        conn.execute(text(
            "INSERT INTO accounts (number, kind, name, state, tariff_id, credit_limit, balance, "
            "profile, created_at, version) "
            "SELECT lpad(g::text, 9, '0'), 'person', 'Bench ' || g, 'active', "
            "(SELECT id FROM tariffs LIMIT 1), 0, "
            "CASE WHEN g % 2 = 0 THEN 1000 ELSE 100 END - 60 * :days, 'normal', now(), 1 "
            "FROM generate_series(1, :n) g"), {"n": accounts, "days": days})
        conn.execute(text(
            "INSERT INTO ledger_entries (account_id, amount, kind, idempotency_key, author, "
            "created_at) SELECT a.id, CASE WHEN a.id % 2 = 0 THEN 1000 ELSE 100 END, "
            "'payment', 'payment:bench:' || a.id, 'bench', timestamp '2026-11-01 06:00' "
            "FROM accounts a"))
        conn.execute(text(
            "INSERT INTO ledger_entries (account_id, amount, kind, idempotency_key, author, "
            "created_at) SELECT a.id, -60, 'fee', 'fee:' || a.id || ':' || d, 'bench', "
            "timestamp '2026-11-01 21:00' + d * interval '1 day' "
            "FROM accounts a, generate_series(1, :days) d"), {"days": days})
        conn.execute(text("INSERT INTO nas (name, address, secret, vendor, coa_port, "
                          "require_message_authenticator, limit_proxy_state, created_at) "
                          "VALUES ('bras1', '10.0.0.1', 's', 'generic', 3799, 'auto', 'auto', "
                          "now())"))
        conn.execute(text(
            "INSERT INTO sessions (nas_id, acct_session_id, username, account_id, started_at, "
            "updated_at, stopped_at, octets_in, octets_out, packets_in, packets_out, "
            "session_time) SELECT (SELECT id FROM nas), 's' || a.id, 'u' || a.id, a.id, "
            "timestamp '2026-11-05 10:00', timestamp '2026-11-05 11:00', "
            "timestamp '2026-11-05 11:00', 300000000, 700000000, 0, 0, 3600 FROM accounts a"))
        conn.execute(text(
            "INSERT INTO traffic_rollups (account_id, interval_start, traffic_class, direction, "
            "bytes, packets, source) "
            "SELECT a.id, timestamp '2026-11-05 10:00', 'internet', d.direction, "
            "CASE WHEN a.id % 10 = 0 THEN d.bytes * 7 / 10 ELSE d.bytes END, 0, 'netflow' "
            "FROM accounts a, (VALUES ('in', 700000000::bigint), ('out', 300000000::bigint)) "
            "AS d(direction, bytes)"))
    with engine.connect() as conn:
        conn.execute(text("ANALYZE"))
        conn.commit()


def timed(label: str, function) -> None:
    started = time.perf_counter()
    rows = function()
    print(f"{label}: {time.perf_counter() - started:.2f} s, {len(rows):,} rows")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    with scratch_database(args.url) as (engine, url):
        started = time.perf_counter()
        seed(engine, args.accounts, args.days)
        print(f"seeded {args.accounts:,} accounts, {args.accounts * (args.days + 1):,} ledger "
              f"entries in {time.perf_counter() - started:.1f} s")
        Session = make_sessionmaker(engine)
        month = reports.month("2026-11", "Europe/Moscow")
        with Session() as session:
            timed("report reconcile", lambda: reports.reconcile(session, month, Decimal(10)))
            timed("report debtors (first 1000)",
                  lambda: reports.debtors(session, Decimal(0), None, 1000, 0))
            timed("report debtors --days 0 (all)",
                  lambda: reports.debtors(session, Decimal(0), dt.datetime(2100, 1, 1),
                                          10 ** 9, 0))
            for by in ("kind", "tariff", "day"):
                timed(f"report revenue --by {by}", lambda: reports.revenue(session, month, by))


if __name__ == "__main__":
    main()
