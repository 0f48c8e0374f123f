"""A bulk tariff change over 10,000 accounts on PostgreSQL, previewed and
applied; target: both within 30 s.

    python bench/bulk_change.py [--accounts 10000] [--url postgresql+psycopg://postgres@127.0.0.1/postgres]

Creates a scratch database, seeds N active accounts on a monthly tariff
whose month is paid (one set-based statement each), then previews the
change to a dearer tariff (each account's pro-rata difference) and applies
it through rating.bulk, as `abonent bulk preview` and `apply` do. Prints
the preview, apply and total seconds, and checks every account got its
order and log line.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, select, text  # noqa: E402

from bench.scratch import DEFAULT_URL, scratch_database  # noqa: E402
from config.db import make_sessionmaker  # noqa: E402
from rating import bulk, changes  # noqa: E402
from rating.models import Account, OperationLog  # noqa: E402

TODAY = dt.date(2026, 12, 6)


def seed(engine, count: int) -> None:
    with engine.begin() as conn:
        for name, fee in (("Bench 600", 600), ("Bench 900", 900)):
            conn.execute(text(
                "INSERT INTO tariffs (name, fee, fee_period, rate_down_kbps, rate_up_kbps, "
                "negative_rate_kbps, prepaid_mb, price_per_gb, usage_source, switch_min_days, "
                "rules, archived, created_at) VALUES (:name, :fee, 'monthly', 100000, 50000, "
                "1000, 0, 0, 'radius', 0, '{}', false, now())"), {"name": name, "fee": fee})
        conn.execute(text(
            "INSERT INTO accounts (number, kind, name, state, tariff_id, credit_limit, "
            "balance, profile, created_at, version) "
            "SELECT lpad(g::text, 9, '0'), 'person', 'Bench ' || g, 'active', "
            "(SELECT id FROM tariffs WHERE name = 'Bench 600'), 0, 400, 'normal', now(), 1 "
            "FROM generate_series(1, :n) g"), {"n": count})
        # The month is paid at the old tariff: the change charges the difference.
        conn.execute(text(
            "INSERT INTO ledger_entries (account_id, amount, kind, idempotency_key, author, "
            "created_at) SELECT id, -600, 'fee', 'fee:' || id || :month, 'bench', now() "
            "FROM accounts"), {"month": f":{TODAY:%Y-%m}"})
    with engine.connect() as conn:
        conn.execute(text("ANALYZE"))
        conn.commit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--url", default=DEFAULT_URL,
                        help="Where the scratch database is created (a DSN).")
    args = parser.parse_args()
    with scratch_database(args.url, prefix="abonent_bench_bulk") as (engine, _url):
        seed(engine, args.accounts)
        Session = make_sessionmaker(engine)
        terms = changes.Terms(now=dt.datetime(2026, 12, 6, 9), today=TODAY, actor="bench")
        started = time.perf_counter()
        with Session() as session:
            ids = bulk.select_accounts(session, tariff="Bench 600")
            operation = bulk.preview(session, "tariff", {"tariff": "Bench 900"}, ids, terms,
                                     selection={"tariff": "Bench 600"})
            session.commit()
            operation_id = operation.id
            shown = bulk.totals(session, operation_id)
        previewed = time.perf_counter() - started
        started = time.perf_counter()
        finished = bulk.apply(Session, operation_id, terms)
        applied = time.perf_counter() - started
        with Session() as session:
            ordered = session.scalar(select(func.count()).select_from(Account).where(
                Account.next_tariff_id.is_not(None)))
            lines = session.scalar(select(func.count()).select_from(OperationLog).where(
                OperationLog.action == "tariff.change"))
        total = previewed + applied
        print(f"bulk tariff change, {args.accounts:,} accounts on PostgreSQL: preview "
              f"{previewed:.1f} s ({shown.ready:,} ready, cost {shown.cost}), apply "
              f"{applied:.1f} s ({finished.done:,} done, state {finished.state}), "
              f"total {total:.1f} s (target <= 30 s: {'met' if total <= 30 else 'NOT met'})")
        if ordered != args.accounts or lines != args.accounts:
            print(f"error: {ordered} orders and {lines} log lines for {args.accounts} accounts")
            raise SystemExit(1)


if __name__ == "__main__":
    main()
