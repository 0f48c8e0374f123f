"""Cabinet dashboard throughput and latency over HTTP (req/s, p50, p99).

    python -m bench.cabinet_dashboard [--accounts 10000] [--sessions 20] [--users 50]
        [--concurrency 8] [--seconds 10] [--url postgresql+psycopg://postgres@127.0.0.1/postgres]

Creates a scratch PostgreSQL database (or uses ``--url sqlite:///file``),
seeds N accounts, each with a cabinet login, a payment and S RADIUS
sessions, starts ``CabinetServer`` (the threaded werkzeug server of
``abonent serve cabinet``) on a free loopback port, logs U subscribers in,
then C client threads fetch ``GET /`` with their cookies for T seconds.
Prints requests per second and latency percentiles of the dashboard.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import logging
import re
import statistics
import tempfile
import threading
import time
import urllib.parse
import uuid
from decimal import Decimal

from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import make_url

from aaa.models import Nas, Session as NetworkSession
from cabinet.app import CabinetServer
from config.context import open_context
from config.migrate import upgrade
from config.settings import load_settings
from rating.models import Account, CabinetUser, LedgerEntry, Tariff
from rating.passwords import hash_password

PASSWORD = "bench-password-1"


def seed(ctx, accounts: int, sessions: int) -> None:
    password_hash = hash_password(PASSWORD)  # one scrypt, shared: seeding is not the figure
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    with ctx.Session() as db:
        db.add(Tariff(id=1, name="Bench 100", fee=Decimal("600.00"), rate_down_kbps=100_000,
                      rate_up_kbps=50_000, negative_rate_kbps=1_000))
        db.add(Nas(id=1, name="bench-nas", address="192.0.2.1", secret="bench"))
        db.flush()
        batch = 5_000
        for low in range(1, accounts + 1, batch):
            ids = range(low, min(low + batch, accounts + 1))
            db.execute(insert(Account), [dict(id=n, number=f"{n:09d}", name=f"Bench {n}",
                                              tariff_id=1, balance=Decimal("500.00"))
                                         for n in ids])
            db.execute(insert(CabinetUser), [dict(id=n, account_id=n, login=f"bench{n}",
                                                  password_hash=password_hash) for n in ids])
            db.execute(insert(LedgerEntry), [dict(account_id=n, amount=Decimal("500.00"),
                                                  kind="payment", author="bench",
                                                  idempotency_key=f"payment:bench:{n}")
                                             for n in ids])
            rows = []
            for n in ids:
                for s in range(sessions):
                    start = now - dt.timedelta(hours=6 * (s + 1))
                    rows.append(dict(nas_id=1, acct_session_id=f"{n}-{s}", username=f"u{n}",
                                     account_id=n, framed_ip=f"100.64.{n % 250}.{s % 250}",
                                     started_at=start, updated_at=start,
                                     stopped_at=start + dt.timedelta(hours=5),
                                     octets_in=n * 1000, octets_out=n * 100_000))
            if rows:
                db.execute(insert(NetworkSession), rows)
        db.commit()


def log_in(host: str, port: int, login: str) -> str:
    """The session cookie after a form login (GET for the token, then POST)."""
    conn = http.client.HTTPConnection(host, port, timeout=30)
    conn.request("GET", "/login")
    response = conn.getresponse()
    page = response.read().decode()
    cookie = response.getheader("Set-Cookie").split(";")[0]
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    body = urllib.parse.urlencode({"login": login, "password": PASSWORD, "csrf_token": token})
    conn = http.client.HTTPConnection(host, port, timeout=30)
    conn.request("POST", "/login", body, {"Content-Type": "application/x-www-form-urlencoded",
                                          "Cookie": cookie})
    response = conn.getresponse()
    response.read()
    if response.status != 302:
        raise SystemExit(f"login of {login} failed with HTTP {response.status}")
    return response.getheader("Set-Cookie").split(";")[0]


def hammer(host: str, port: int, cookies: list[str], concurrency: int,
           seconds: float) -> tuple[list[float], int]:
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def worker(index: int) -> None:
        nonlocal errors
        mine: list[float] = []
        bad = 0
        n = index
        while time.perf_counter() < deadline:
            cookie = cookies[n % len(cookies)]
            n += concurrency
            started = time.perf_counter()
            conn = http.client.HTTPConnection(host, port, timeout=30)
            conn.request("GET", "/", headers={"Cookie": cookie})
            response = conn.getresponse()
            body = response.read()
            conn.close()
            mine.append(time.perf_counter() - started)
            if response.status != 200 or b'data-test="balance"' not in body:
                bad += 1
        with lock:
            latencies.extend(mine)
            errors += bad

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--sessions", type=int, default=20, help="sessions per account")
    parser.add_argument("--users", type=int, default=50, help="subscribers logged in")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    # werkzeug's access log line per request would be part of the figure.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)

    scratch = None
    if args.url.startswith("postgresql"):
        scratch = f"abonent_bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine(args.url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{scratch}"'))
        url = make_url(args.url).set(database=scratch).render_as_string(hide_password=False)
    else:
        url = args.url
    data_dir = tempfile.mkdtemp(prefix="abonent-bench-")
    ctx = open_context(settings=load_settings(environ={"ABONENT_DATABASE_URL": url,
                                                       "ABONENT_DATA_DIR": data_dir}))
    try:
        upgrade(ctx.engine)
        started = time.perf_counter()
        seed(ctx, args.accounts, args.sessions)
        print(f"seeded {args.accounts} accounts x {args.sessions} sessions "
              f"in {time.perf_counter() - started:.1f} s ({ctx.engine.dialect.name})")
        server = CabinetServer(ctx, host="127.0.0.1", port=0).start()
        try:
            step = max(1, args.accounts // args.users)
            cookies = [log_in("127.0.0.1", server.port, f"bench{n}")
                       for n in range(1, args.accounts + 1, step)][:args.users]
            hammer("127.0.0.1", server.port, cookies, args.concurrency, 1)  # warm-up
            latencies, errors = hammer("127.0.0.1", server.port, cookies, args.concurrency,
                                       args.seconds)
        finally:
            server.stop()
        latencies.sort()
        count = len(latencies)
        p99 = latencies[min(count - 1, int(count * 0.99))]
        print(f"dashboard GET /: {count / args.seconds:.0f} req/s over {args.seconds:.0f} s, "
              f"concurrency {args.concurrency}, {len(cookies)} subscribers, errors {errors}")
        print(f"latency p50 {statistics.median(latencies) * 1000:.1f} ms, "
              f"p99 {p99 * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms")
    finally:
        ctx.dispose()
        if scratch:
            admin = create_engine(args.url, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)'))
            admin.dispose()


if __name__ == "__main__":
    main()
