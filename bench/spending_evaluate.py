"""Spending limits on PostgreSQL: the time one evaluation of every limit
takes (rating.spending.evaluate), the first run (which fires warnings and
actions) and a re-run (which must change nothing).

    python bench/spending_evaluate.py [--accounts 20000] [--units 100] [--url postgresql+psycopg://postgres@127.0.0.1:5432/postgres]

Creates a scratch database with one company of N accounts spread over U
units, a month's fee for each account (amounts from 1 to 999) and a limit
on every account (500 RUB, throttle) and on every unit (50,000 RUB,
notify); then evaluates twice and prints the times, the limits acted on,
and the statements each run issued (set-based: they do not grow with N).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import event, text  # noqa: E402

from bench.scratch import DEFAULT_URL, scratch_database  # noqa: E402
from config.db import make_sessionmaker, utcnow  # noqa: E402
from rating import spending  # noqa: E402

ZONE = "Europe/Moscow"


def seed(engine, accounts: int, units: int) -> None:
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO customers (id, kind, name, documents, created_at) "
                          "VALUES (1, 'company', 'Bench LLC', 'per_account', now())"))
        conn.execute(text(
            "INSERT INTO org_units (id, customer_id, parent_id, name, position, created_at) "
            "SELECT g, 1, NULL, 'Unit ' || g, g, now() FROM generate_series(1, :u) g"),
            {"u": units})
        conn.execute(text(
            "INSERT INTO accounts (number, kind, name, state, credit_limit, balance, profile, "
            "created_at, version, email, notify_channels, customer_id, org_unit_id) "
            "SELECT lpad(g::text, 9, '0'), 'company', 'Line ' || g, 'active', 0, 1000, "
            "'normal', now(), 1, 'line' || g || '@example.net', '[\"email\"]', 1, "
            "1 + g % :u FROM generate_series(1, :n) g"), {"n": accounts, "u": units})
        conn.execute(text(
            "INSERT INTO ledger_entries (account_id, amount, kind, idempotency_key, author, "
            "created_at) SELECT id, -(1 + id % 999), 'fee', 'bench:' || id, 'bench', "
            "(now() at time zone 'utc') - interval '1 minute' FROM accounts"))
        conn.execute(text(
            "INSERT INTO spending_limits (account_id, metric, amount, warn_percent, action, "
            "revision, author, created_at, updated_at) SELECT id, 'money', 500, 80, "
            "'throttle', 1, 'bench', now(), now() FROM accounts"))
        conn.execute(text(
            "INSERT INTO spending_limits (org_unit_id, metric, amount, warn_percent, action, "
            "revision, author, created_at, updated_at) SELECT id, 'money', 50000, 80, "
            "'notify', 1, 'bench', now(), now() FROM org_units"))
    with engine.connect() as conn:
        conn.execute(text("ANALYZE"))
        conn.commit()


def timed(Session, engine) -> tuple[float, int, spending.Evaluation]:
    statements = []

    def count(*_args):
        statements.append(1)

    event.listen(engine, "before_cursor_execute", count)
    started = time.perf_counter()
    with Session() as session:
        outcome = spending.evaluate(session, utcnow(), ZONE)
        session.commit()
    seconds = time.perf_counter() - started
    event.remove(engine, "before_cursor_execute", count)
    return seconds, len(statements), outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=20_000)
    parser.add_argument("--units", type=int, default=100)
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--profile", action="store_true",
                        help="Profile a third run and print where its time goes.")
    args = parser.parse_args()
    with scratch_database(args.url) as (engine, _url):
        seed(engine, args.accounts, args.units)
        Session = make_sessionmaker(engine)
        for name in ("first run", "re-run"):
            seconds, statements, outcome = timed(Session, engine)
            print(f"{name}: {outcome.limits:,} limits over {args.accounts:,} accounts in "
                  f"{seconds:.2f} s, {statements:,} statements; warned {len(outcome.warned):,}, "
                  f"acted {len(outcome.acted):,}, notices {outcome.notices:,}")
        if args.profile:
            import cProfile
            import pstats
            profiler = cProfile.Profile()
            profiler.enable()
            timed(Session, engine)
            profiler.disable()
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
