"""Import N accounts with a PPPoE service and an opening balance each
(default 100,000) through the `abonent import` executable, on PostgreSQL.

    python bench/import_accounts.py [--accounts N] [--url postgresql+psycopg://postgres@127.0.0.1:5432/postgres]

Creates a scratch database (named after --url's server; the database in
the URL is only where CREATE DATABASE is issued), writes three CSV files
(accounts, services, balances; every tenth balance negative), runs
`abonent import accounts|services|balances` one after the other and prints
the time of each and the total (the figure: issue 14 asks for <= 60 s for
100,000), then runs all three again (nothing may change) and checks the
counts and that the cached balances equal the ledger. Drops the database.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text
from bench.scratch import scratch_database  # noqa: E402


EXE = str(Path(sys.executable).with_name("abonent"))


def write_files(directory: Path, count: int) -> dict[str, Path]:
    paths = {kind: directory / f"{kind}.csv" for kind in ("accounts", "services", "balances")}
    with open(paths["accounts"], "w", newline="") as accounts, \
            open(paths["services"], "w", newline="") as services, \
            open(paths["balances"], "w", newline="") as balances:
        a, s, b = csv.writer(accounts), csv.writer(services), csv.writer(balances)
        a.writerow(["number", "name", "tariff", "phone", "email", "credit_limit"])
        s.writerow(["account", "login", "password", "static_ip"])
        b.writerow(["account", "amount"])
        for n in range(1, count + 1):
            number = f"{n:07d}"
            a.writerow([number, f"Subscriber {n}", "Home" if n % 3 else "Fast",
                        f"+7912{n:07d}", f"user{n}@example.com", "100" if n % 5 == 0 else "0"])
            # Every other service has a static address in 10.0.0.0/8.
            address = f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}" if n % 2 else ""
            s.writerow([number, f"u{number}", f"pw{n:07d}", address])
            amount = Decimal(n % 1000) + Decimal("0.50")
            b.writerow([number, f"-{amount}" if n % 10 == 0 else str(amount)])
    return paths


def run(kind: str, path: Path, env: dict) -> float:
    started = time.perf_counter()
    completed = subprocess.run([EXE, "import", kind, str(path), "--json"], env=env,
                               capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if completed.returncode != 0:
        sys.exit(f"import {kind} failed ({completed.returncode}): {completed.stderr.strip()}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    with scratch_database(args.url, "abonent_bench_import") as (engine, url):
        with tempfile.TemporaryDirectory() as scratch:
            env = {k: v for k, v in os.environ.items() if not k.startswith("ABONENT_")}
            env.update(ABONENT_DATABASE_URL=url, ABONENT_DATA_DIR=scratch,
                       ABONENT_ACTOR="admin:bench")
            subprocess.run([EXE, "tariff", "add", "Home", "--fee", "600", "--down", "100000",
                            "--up", "50000"], env=env, check=True, capture_output=True)
            subprocess.run([EXE, "tariff", "add", "Fast", "--fee", "900", "--down", "500000",
                            "--up", "100000"], env=env, check=True, capture_output=True)
            started = time.perf_counter()
            paths = write_files(Path(scratch), args.accounts)
            print(f"wrote 3 CSV files for {args.accounts:,} accounts in "
                  f"{time.perf_counter() - started:.1f} s")
            total = 0.0
            for kind, path in paths.items():
                elapsed = run(kind, path, env)
                total += elapsed
                print(f"import {kind}: {elapsed:.1f} s")
            print(f"imported {args.accounts:,} accounts with services and opening balances "
                  f"in {total:.1f} s on PostgreSQL (issue 14 asks for <= 60 s for 100,000)")
            again = sum(run(kind, path, env) for kind, path in paths.items())
            print(f"second run of the same three files (nothing to change): {again:.1f} s")
        with engine.connect() as conn:
            accounts = conn.scalar(text("SELECT count(*) FROM accounts"))
            services = conn.scalar(text("SELECT count(*) FROM services"))
            entries = conn.scalar(text("SELECT count(*) FROM ledger_entries"))
            drift = conn.scalar(text(
                "SELECT count(*) FROM accounts a LEFT JOIN (SELECT account_id, sum(amount) s "
                "FROM ledger_entries GROUP BY account_id) l ON l.account_id = a.id "
                "WHERE a.balance <> coalesce(l.s, 0)"))
        print(f"check: {accounts:,} accounts, {services:,} services, {entries:,} ledger entries, "
              f"{drift} balances apart from the ledger")
        if (accounts, services, entries, drift) != (args.accounts,) * 3 + (0,):
            sys.exit("check failed")


if __name__ == "__main__":
    main()
