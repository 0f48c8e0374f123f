"""1,000,000 Asterisk CDRs imported and rated against a 50,000-prefix table
on PostgreSQL (issue 17; target: 30 s or less).

    python bench/cdr_import.py [--cdrs N] [--prefixes N] [--numbers N] [--url postgresql+psycopg://postgres@127.0.0.1:5432/postgres]

Creates a scratch database, a voice plan with a package, a rate table of
--prefixes random prefixes (imported the way `abonent rates import` does),
--numbers accounts with a phone number each, and a Master.csv of --cdrs
records (80% answered, 1-600 s, a tenth to our own numbers). Then times
the import exactly as `abonent cdr import` runs it (one transaction) and
prints seconds and CDRs/s; then imports the file again (all duplicates).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, select, text  # noqa: E402

from bench.procstat import cpu_seconds  # noqa: E402
from bench.scratch import scratch_database  # noqa: E402
from config.db import make_sessionmaker  # noqa: E402
from rating import cdr, phones  # noqa: E402
from rating.ledger import balance_mismatches  # noqa: E402
from rating.models import Call, LedgerEntry  # noqa: E402
from rating.telephony import Config, NumberRules, Rate  # noqa: E402


def make_rates(count: int, rng: random.Random) -> list[Rate]:
    prefixes = {"7", "7495", "7499", "7812", "79"}
    while len(prefixes) < count:
        prefixes.add(str(rng.randint(1, 99)) + str(rng.randint(0, 10 ** rng.randint(1, 6))))
    return [Rate(p, f"zone{len(p)}-{p[:2]}", Decimal(rng.randint(50, 3000)) / 100,
                 Decimal(rng.randint(10, 50)) / 100 if rng.random() < 0.3 else None,
                 *rng.choice([(60, 60), (30, 6), (1, 1)]),
                 Decimal("0.50") if rng.random() < 0.1 else Decimal("0.00"))
            for p in sorted(prefixes)]


def write_cdrs(path: str, count: int, ours: list[str], rng: random.Random) -> None:
    start = dt.datetime(2026, 11, 1)
    with open(path, "w") as out:
        for i in range(count):
            calling = "8" + ours[rng.randrange(len(ours))][1:]
            roll = rng.random()
            if roll < 0.1:
                called = "8" + ours[rng.randrange(len(ours))][1:]
            elif roll < 0.7:
                called = "8495" + str(rng.randint(1000000, 9999999))
            else:
                called = "810" + str(rng.randint(1, 99)) + str(rng.randint(10 ** 8, 10 ** 9))
            when = start + dt.timedelta(seconds=i * 2)
            answered = rng.random() < 0.8
            billsec = rng.randint(1, 600) if answered else 0
            begin = when.strftime("%Y-%m-%d %H:%M:%S")
            answer = (when + dt.timedelta(seconds=3)).strftime("%Y-%m-%d %H:%M:%S") \
                if answered else ""
            end = (when + dt.timedelta(seconds=3 + billsec)).strftime("%Y-%m-%d %H:%M:%S")
            out.write(f'"","{calling}","{called}","from-internal","","SIP/{i}","SIP/t-{i}",'
                      f'"Dial","SIP/trunk","{begin}","{answer}","{end}",{billsec + 3},'
                      f'{billsec},"{"ANSWERED" if answered else "NO ANSWER"}",'
                      f'"DOCUMENTATION","bench.{i}",""\n')


def timed_import(Session, path: str, config: Config):
    """Import as `abonent cdr import` does (one transaction): (report, seconds).
    Also prints this process's CPU seconds: on a shared box the wall time
    counts the others' work too."""
    started, cpu = time.perf_counter(), time.process_time()
    with Session() as session:
        backend = session.scalar(text("SELECT pg_backend_pid()"))
        backend_cpu = cpu_seconds([backend])
        report = cdr.import_cdrs(session, path, "asterisk", config=config)
        session.commit()
        backend_cpu = cpu_seconds([backend]) - backend_cpu
    print(f"  (this process: {time.process_time() - cpu:.1f} CPU s; "
          f"PostgreSQL backend: {backend_cpu:.1f} CPU s; "
          f"load average {os.getloadavg()[0]:.1f})")
    return report, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cdrs", type=int, default=1_000_000)
    parser.add_argument("--prefixes", type=int, default=50_000)
    parser.add_argument("--numbers", type=int, default=10_000)
    parser.add_argument("--url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--no-repeat", action="store_true", help="Skip the second import.")
    args = parser.parse_args()
    rng = random.Random(17)
    config = Config(NumberRules(), "Europe/Moscow")
    ours = [f"7495{n:07d}" for n in rng.sample(range(10 ** 7), args.numbers)]
    with scratch_database(args.url) as (engine, url), tempfile.TemporaryDirectory() as tmp:
        Session = make_sessionmaker(engine)
        started = time.perf_counter()
        with Session() as session:
            phones.save_plan(session, "Bench", free_minutes=100, actor="bench")
            phones.import_rates(session, "Bench", make_rates(args.prefixes, rng), actor="bench")
            session.commit()
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO accounts (number, kind, name, state, credit_limit, balance, "
                "profile, created_at, version) SELECT 'B' || g, 'person', 'Bench ' || g, "
                "'active', 0, 0, 'normal', now(), 1 FROM generate_series(1, :n) g"),
                {"n": args.numbers})
            conn.execute(text(
                "INSERT INTO voice_services (account_id, number, plan_id, state, created_at) "
                "SELECT a.id, n.number, (SELECT id FROM voice_plans), 'active', now() "
                "FROM unnest(CAST(:numbers AS text[])) WITH ORDINALITY AS n(number, i) "
                "JOIN accounts a ON a.number = 'B' || n.i"), {"numbers": ours})
            conn.execute(text("ANALYZE"))
        print(f"seeded {args.prefixes:,} prefixes and {args.numbers:,} numbers in "
              f"{time.perf_counter() - started:.1f} s")
        path = os.path.join(tmp, "Master.csv")
        started = time.perf_counter()
        write_cdrs(path, args.cdrs, ours, rng)
        print(f"wrote {args.cdrs:,} CDRs ({os.path.getsize(path) / 1e6:.0f} MB) in "
              f"{time.perf_counter() - started:.1f} s")
        report, elapsed = timed_import(Session, path, config)
        print(f"cdr import: {report.records:,} CDRs imported and rated in {elapsed:.1f} s "
              f"({report.records / elapsed:,.0f} CDRs/s; {report.by_columns:,} by columns); "
              f"{report.entries:,} ledger entries, charged {report.charged}")
        with Session() as session:
            calls = session.scalar(select(func.count()).select_from(Call))
            entries = session.scalar(select(func.count()).select_from(LedgerEntry))
            mismatches = balance_mismatches(session)
        print(f"calls stored: {calls:,}; ledger entries: {entries:,}; "
              f"balances equal to the ledger: {'yes' if not mismatches else 'NO'}")
        if not args.no_repeat:
            again, elapsed = timed_import(Session, path, config)
            print(f"repeat import: {again.inserted:,} new, {again.duplicates:,} duplicates "
                  f"in {elapsed:.1f} s")


if __name__ == "__main__":
    main()
