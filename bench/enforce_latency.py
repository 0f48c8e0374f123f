"""Money change → CoA-sent latency with one NAS in the fleet silent.

    python bench/enforce_latency.py [--sessions 10000] [--nases 4] [--payments 600]
                                    [--rate 60] [--url postgresql+psycopg://postgres@127.0.0.1/postgres]

Creates a scratch database, seeds N throttled subscribers with one open
session each, spread over NASes on 127.0.0.1 … 127.0.0.N (MikroTik CoA
simulators in this process; the last one never answers), starts
``abonent serve enforcer`` as its own process, then pays for random
subscribers at a steady rate (a payment lifts the throttle: the ladder's
verdict moves, the outbox row is written in the same transaction). For
each payment on a healthy NAS it measures the time from the commit to the
CoA-Request reaching the NAS, and prints p50/p99/max; payments on the
silent NAS keep its lane full all along.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from aaa.models import Nas, Session as RadiusSession
from aaa.simulator import CoaResponder
from config.db import make_engine, make_sessionmaker, utcnow
from config.migrate import upgrade
from rating.accounts import add_payment
from rating.models import Account

SECRET = "bench-coa"


def scratch_database(url: str) -> tuple[str, callable]:
    if url.startswith("sqlite"):
        folder = tempfile.mkdtemp(prefix="abonent-bench-")
        return f"sqlite:///{folder}/bench.sqlite3", lambda: None
    name = f"abonent_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop():
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    return make_url(url).set(database=name).render_as_string(hide_password=False), drop


def seed(engine, sessions: int, responders: list[CoaResponder]) -> None:
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO tariffs (name, fee, fee_period, rate_down_kbps, rate_up_kbps, "
            "negative_rate_kbps, prepaid_mb, price_per_gb, usage_source, switch_min_days, "
            "rules, archived, created_at) VALUES ('Bench', 600, 'monthly', 100000, 50000, "
            "1000, 0, 0, 'radius', 0, '{}', false, :now)"), {"now": now})
        tariff_id = conn.execute(text("SELECT id FROM tariffs")).scalar()
        for n, responder in enumerate(responders):
            conn.execute(Nas.__table__.insert().values(
                name=f"bras{n}", address=responder.host, secret=SECRET, vendor="mikrotik",
                coa_port=responder.port, require_message_authenticator="auto",
                limit_proxy_state="auto", created_at=now))
        nas_ids = [row[0] for row in conn.execute(text("SELECT id FROM nas ORDER BY id"))]
        conn.execute(Account.__table__.insert(), [dict(
            number=f"{n:09d}", kind="person", name=f"Bench {n}", state="active",
            tariff_id=tariff_id, credit_limit=100, balance=-10, profile="throttled",
            created_at=now, version=1, notify_channels=["email"]) for n in range(sessions)])
        ids = [row[0] for row in conn.execute(text("SELECT id FROM accounts ORDER BY id"))]
        conn.execute(RadiusSession.__table__.insert(), [dict(
            nas_id=nas_ids[n % len(nas_ids)], acct_session_id=f"s-{n}", username=f"u{n}",
            account_id=account_id, framed_ip=f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}",
            started_at=now, updated_at=now, octets_in=0, octets_out=0, packets_in=0,
            packets_out=0, session_time=0, profile="full:1000/1000")
            for n, account_id in enumerate(ids)])
        # The ledger agrees with the seeded balances.
        conn.execute(text(
            "INSERT INTO ledger_entries (account_id, amount, kind, idempotency_key, author, "
            "created_at) SELECT id, -10, 'correction', 'seed:' || id, 'bench', :now "
            "FROM accounts"), {"now": now})


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--nases", type=int, default=4)
    parser.add_argument("--payments", type=int, default=600)
    parser.add_argument("--rate", type=float, default=60.0, help="payments per second")
    parser.add_argument("--url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    responders = [CoaResponder(secret=SECRET.encode(), host=f"127.0.0.{n + 1}").start()
                  for n in range(args.nases)]
    responders[-1].silent = True
    url, drop = scratch_database(args.url)
    engine = make_engine(url)
    worker = None
    try:
        upgrade(engine)
        seed(engine, args.sessions, responders)
        Session = make_sessionmaker(engine)
        env = dict(os.environ, ABONENT_DATABASE_URL=url, ABONENT_COA_LANE_SIZE="32",
                   ABONENT_COA_SWEEP_INTERVAL="3600")
        worker = subprocess.Popen(
            [str(Path(sys.executable).with_name("abonent")), "serve", "enforcer",
             "--interval", "0.05"], env=env, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        time.sleep(2.0)  # the worker connects and finds nothing to do
        rng = random.Random(7)
        chosen = rng.sample(range(args.sessions), min(args.payments, args.sessions))
        paid_at: dict[str, float] = {}
        silent_index = args.nases - 1
        started = time.monotonic()
        with Session() as session:
            for i, n in enumerate(chosen):
                due = started + i / args.rate
                time.sleep(max(0.0, due - time.monotonic()))
                account = session.get(Account, session.scalar(
                    select(RadiusSession.account_id).where(
                        RadiusSession.acct_session_id == f"s-{n}")))
                add_payment(session, account, "600", external_id=f"bench-{n}")
                session.commit()
                if n % args.nases != silent_index:
                    paid_at[f"s-{n}"] = time.monotonic()
        deadline = time.monotonic() + 20
        healthy = responders[:-1]
        while time.monotonic() < deadline and sum(
                len(set(r.first_seen) & set(paid_at)) for r in healthy) < len(paid_at):
            time.sleep(0.1)
        latencies = [r.first_seen[sid] - paid_at[sid] for r in healthy
                     for sid in r.first_seen if sid in paid_at]
        missing = len(paid_at) - len(latencies)
        silent_requests = len({auth for _, auth in responders[-1].received})
        print(f"{len(latencies)} payments on {args.nases - 1} healthy NASes "
              f"({args.sessions:,} sessions, {args.nases} NASes, 1 silent, "
              f"{args.rate:g} payments/s, {engine.dialect.name})")
        if latencies:
            print(f"money change -> CoA sent: p50 {statistics.median(latencies) * 1000:.0f} ms, "
                  f"p99 {percentile(latencies, 0.99) * 1000:.0f} ms, "
                  f"max {max(latencies) * 1000:.0f} ms; never sent: {missing}")
        print(f"silent NAS: {silent_requests} CoA exchanges started in its lane")
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(40)
            except subprocess.TimeoutExpired:
                worker.kill()
        for responder in responders:
            responder.stop()
        engine.dispose()
        drop()


if __name__ == "__main__":
    main()
