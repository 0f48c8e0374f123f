"""Cabinet dashboard throughput and latency over HTTP (req/s, p50, p99).

    python -m bench.cabinet_dashboard [--server werkzeug|gunicorn] [--accounts 100000]
        [--sessions 20] [--users 1] [--traffic-days 365] [--concurrency 8]
        [--requests 20000] [--seconds 20] [--workers 0] [--threads 0]
        [--path /] [--url postgresql+psycopg://postgres@127.0.0.1/postgres] [--profile 0]
        [--client python|wrk]

Creates a scratch PostgreSQL database (or uses ``--url sqlite:///file``),
seeds N accounts, each with a cabinet login, a payment and a few RADIUS
sessions, and gives each of the U subscribers who log in S sessions and a
year (D days) of 5-minute NetFlow rollups in both directions (105,120 x 2
rows each).
On PostgreSQL the seed is set-based (INSERT ... SELECT generate_series),
so 100,000 accounts take seconds. Then it serves the cabinet with
gunicorn (contrib/gunicorn.conf.py, cabinet.wsgi:app) or with
``CabinetServer`` (the threaded werkzeug server of ``abonent serve
cabinet``) on a free loopback port, logs the U subscribers in, and C
client threads on kept-alive connections fetch ``GET /`` with their
cookies until R requests are done or T seconds have passed, whichever
comes first. ``--client wrk`` drives the load with wrk (a C load generator:
the Python client threads share the cores with the server and cost it a
good part of them) for T seconds, one thread, C connections, the
subscribers' cookies taken in turn. Prints requests per second, latency
percentiles and the load average (the box may be shared). ``--profile N`` first runs N dashboards
in-process under cProfile and prints where the time goes.
"""
from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import http.client
import logging
import os
import pstats
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from decimal import Decimal
from pathlib import Path

from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import make_url

from aaa.models import Nas, Session as NetworkSession
from bench.procstat import children, cpu_seconds
from cabinet.app import CabinetServer, create_app
from collector.models import TrafficRollup
from config.context import open_context
from config.migrate import upgrade
from config.db import Base
from config.settings import load_settings
from rating.models import Account, CabinetUser, LedgerEntry, OptionType, Tariff
from rating.passwords import hash_password

PASSWORD = "bench-password-1"
ROOT = Path(__file__).resolve().parent.parent
INTERVALS_PER_DAY = 24 * 12  # 5-minute rollups


def _series_insert(table, columns: dict[str, str], source: str, params: dict) -> str:
    """``INSERT INTO table (...) SELECT ... FROM source``: the given SQL
    expressions, and every other NOT NULL column from its model default,
    so a column someone adds with a default does not break the seed."""
    names, values = [], []
    for column in table.columns:
        if column.name in columns:
            names.append(column.name)
            values.append(columns[column.name])
            continue
        default = column.default
        if (column.nullable or column.server_default is not None
                or (column.primary_key and default is None)):
            continue
        if default is None:
            raise SystemExit(f"seed: {table.name}.{column.name} needs a value")
        names.append(column.name)
        if default.is_callable:
            values.append(":now")  # utcnow
        else:
            key = f"d_{column.name}"
            params[key] = default.arg
            values.append(f":{key}")
    return (f"INSERT INTO {table.name} ({', '.join(names)}) "
            f"SELECT {', '.join(values)} FROM {source}")


def seed_series(ctx, accounts: int, sessions: int, other_sessions: int, traffic_ids: list[int],
                traffic_days: int) -> None:
    """Set-based seed for PostgreSQL: a handful of INSERT ... SELECT
    generate_series statements, one transaction, then ANALYZE. The
    logged-in subscribers (``traffic_ids``) get S sessions and the year of
    traffic, everyone else ``other_sessions`` sessions (each session row
    costs five index entries and two foreign-key checks)."""
    tables = Base.metadata.tables
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, second=0, microsecond=0)
    now = now.replace(minute=now.minute - now.minute % 5)
    params = {"now": now, "accounts": accounts, "hash": hash_password(PASSWORD)}
    statements = [
        _series_insert(tables["accounts"], {
            "id": "a", "number": "lpad(a::text, 9, '0')", "name": "'Bench ' || a",
            "tariff_id": "1", "balance": "500.00"}, "generate_series(1, :accounts) a", params),
        _series_insert(tables["cabinet_users"], {
            "id": "a", "account_id": "a", "login": "'bench' || a", "password_hash": ":hash"},
            "generate_series(1, :accounts) a", params),
        _series_insert(tables["ledger_entries"], {
            "account_id": "a", "amount": "500.00", "kind": "'payment'", "author": "'bench'",
            "idempotency_key": "'payment:bench:' || a"},
            "generate_series(1, :accounts) a", params),
    ]
    if sessions or other_sessions:
        params.update(sessions=sessions, other_sessions=other_sessions,
                      traffic_ids=traffic_ids)
        statements.append(_series_insert(tables["sessions"], {
            "nas_id": "1", "acct_session_id": "a || '-' || s", "username": "'u' || a",
            "account_id": "a", "framed_ip": "'100.64.' || (a % 250) || '.' || (s % 250)",
            "started_at": ":now - (s + 1) * interval '6 hours'",
            "updated_at": ":now - (s + 1) * interval '6 hours'",
            "stopped_at": ":now - (s + 1) * interval '6 hours' + interval '5 hours'",
            "octets_in": "a::bigint * 1000", "octets_out": "a::bigint * 100000"},
            "generate_series(1, :accounts) a, LATERAL generate_series(0, CASE WHEN "
            "a = ANY(CAST(:traffic_ids AS integer[])) THEN :sessions ELSE :other_sessions END - 1) s",
            params))
    if traffic_ids and traffic_days:
        params.update(traffic_ids=traffic_ids, intervals=traffic_days * INTERVALS_PER_DAY)
        statements.append(_series_insert(tables["traffic_rollups"], {
            "account_id": "a", "interval_start": ":now - i * interval '5 minutes'",
            "direction": "d", "bytes": "(i % 97 + 1) * (CASE d WHEN 'in' THEN 3000000 "
                                       "ELSE 200000 END)::bigint",
            "packets": "i % 97 + 1", "source": "'netflow'"},
            "unnest(CAST(:traffic_ids AS integer[])) a, generate_series(0, :intervals - 1) i, "
            "(VALUES ('in'), ('out')) AS v(d)", params))
    with ctx.Session() as db:
        _seed_catalogue(db)
        for statement in statements:
            db.execute(text(statement),
                       {k: v for k, v in params.items() if f":{k}" in statement})
        db.commit()
    with ctx.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE"))


def _seed_catalogue(db) -> None:
    """The tariff, the NAS and a turbo on sale (the dashboard offers it and draws its form)."""
    db.add(Tariff(id=1, name="Bench 100", fee=Decimal("600.00"), rate_down_kbps=100_000,
                  rate_up_kbps=50_000, negative_rate_kbps=1_000))
    db.add(Nas(id=1, name="bench-nas", address="192.0.2.1", secret="bench"))
    db.add(OptionType(code="turbo", name="Turbo", kind="turbo", price=Decimal("50.00"),
                      duration_hours=24, rate_multiplier=2))
    db.flush()


def seed_rows(ctx, accounts: int, sessions: int) -> None:
    """Row by row from Python (SQLite): fine for a few thousand accounts."""
    password_hash = hash_password(PASSWORD)  # one scrypt, shared: seeding is not the figure
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    with ctx.Session() as db:
        _seed_catalogue(db)
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


def seed_traffic_rows(ctx, account_ids, days: int) -> None:
    """A year of 5-minute rollups from Python (SQLite), in batches."""
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, second=0, microsecond=0)
    now = now.replace(minute=now.minute - now.minute % 5)
    with ctx.Session() as db:
        for account_id in account_ids:
            rows = []
            for i in range(days * INTERVALS_PER_DAY):
                start = now - dt.timedelta(minutes=5 * i)
                for direction, size in (("in", 3_000_000), ("out", 200_000)):
                    rows.append(dict(account_id=account_id, interval_start=start,
                                     direction=direction, bytes=(i % 97 + 1) * size,
                                     packets=i % 97 + 1, source="netflow"))
                if len(rows) >= 20_000:
                    db.execute(insert(TrafficRollup), rows)
                    rows = []
            if rows:
                db.execute(insert(TrafficRollup), rows)
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


class Gunicorn:
    """The cabinet under gunicorn with contrib/gunicorn.conf.py, on loopback."""

    def __init__(self, url: str, data_dir: str, port: int, workers: int, threads: int):
        env = dict(os.environ, ABONENT_DATABASE_URL=url, ABONENT_DATA_DIR=data_dir,
                   ABONENT_CABINET_BIND=f"127.0.0.1:{port}")
        if workers:
            env["ABONENT_CABINET_WORKERS"] = str(workers)
        if threads:
            env["ABONENT_CABINET_THREADS"] = str(threads)
        gunicorn = Path(sys.executable).with_name("gunicorn")
        self.port = port
        self.process = subprocess.Popen(
            [str(gunicorn), "-c", str(ROOT / "contrib" / "gunicorn.conf.py"), "cabinet.wsgi:app"],
            cwd=ROOT, env=env, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                raise SystemExit(f"gunicorn exited with {self.process.returncode}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/login")
                conn.getresponse().read()
                conn.close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise SystemExit("gunicorn did not start in 60 s")
                time.sleep(0.2)

    def cpu_seconds(self) -> float:
        """CPU time (user + system) of the master and its workers so far."""
        master = self.process.pid
        return cpu_seconds([master, *children(master)])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _free_port() -> int:
    import socket
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def hammer(host: str, port: int, cookies: list[str], concurrency: int, seconds: float,
           requests: int, path: str = "/") -> tuple[list[float], int, float]:
    """C threads, each on a kept-alive connection, fetch the dashboard until
    ``requests`` are done or ``seconds`` have passed. Returns latencies,
    errors and the elapsed time."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    issued = 0
    started_at = time.perf_counter()
    deadline = started_at + seconds

    def take() -> bool:
        nonlocal issued
        with lock:
            if issued >= requests:
                return False
            issued += 1
            return True

    def worker(index: int) -> None:
        nonlocal errors
        mine: list[float] = []
        bad = 0
        n = index
        conn = None
        while time.perf_counter() < deadline and take():
            cookie = cookies[n % len(cookies)]
            n += concurrency
            started = time.perf_counter()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(host, port, timeout=30)
                conn.request("GET", path, headers={"Cookie": cookie})
                response = conn.getresponse()
                body = response.read()
                if response.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                if conn is not None:
                    conn.close()
                conn = None
                bad += 1
                continue
            mine.append(time.perf_counter() - started)
            if response.status != 200 or (path == "/" and b'data-test="balance"' not in body):
                bad += 1
        if conn is not None:
            conn.close()
        with lock:
            latencies.extend(mine)
            errors += bad

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors, time.perf_counter() - started_at


# wrk's script: each request carries the next subscriber's cookie.
WRK_SCRIPT = """
cookies = {%s}
counter = 0
request = function()
  counter = counter + 1
  local cookie = cookies[(counter %% #cookies) + 1]
  return wrk.format("GET", nil, {["Cookie"] = cookie})
end
"""


def _wrk_seconds(text: str) -> float:
    """wrk's "12.34ms" / "1.20s" / "870.00us" as seconds."""
    for unit, scale in (("us", 1e-6), ("ms", 1e-3), ("s", 1.0), ("m", 60.0)):
        if text.endswith(unit):
            return float(text[:-len(unit)]) * scale
    raise ValueError(f"not a wrk duration: {text}")


def hammer_wrk(host: str, port: int, cookies: list[str], concurrency: int, seconds: float,
               path: str = "/") -> dict:
    """wrk -t1 -cC -dT --latency against the page. Returns requests,
    elapsed seconds, req/s, p50 and p99 (seconds) and the failures (socket
    errors and answers other than 2xx/3xx)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT % ", ".join(f'"{c}"' for c in cookies))
    try:
        output = subprocess.run(
            ["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--latency",
             "-s", script.name, f"http://{host}:{port}{path}"],
            check=True, capture_output=True, text=True).stdout
    finally:
        os.unlink(script.name)
    done = re.search(r"(\d+) requests in ([\d.]+)(\w+)", output)
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", output, re.MULTILINE))
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    count = int(done.group(1))
    elapsed = _wrk_seconds(done.group(2) + done.group(3))
    return {"requests": count, "elapsed": elapsed, "rate": count / elapsed,
            "p50": _wrk_seconds(latency["50"]), "p99": _wrk_seconds(latency["99"]),
            "errors": errors + (int(non_2xx.group(1)) if non_2xx else 0)}


def profile(ctx, login: str, count: int) -> None:
    """N dashboards in-process (Flask test client) under cProfile."""
    app = create_app(ctx)
    client = app.test_client()
    page = client.get("/login").text
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    client.post("/login", data={"login": login, "password": PASSWORD, "csrf_token": token})
    for _ in range(20):
        client.get("/")
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    for _ in range(count):
        assert client.get("/").status_code == 200
    profiler.disable()
    print(f"in-process dashboard: {(time.perf_counter() - started) / count * 1000:.2f} ms each "
          f"over {count}")
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", choices=("werkzeug", "gunicorn"), default="werkzeug")
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--sessions", type=int, default=20,
                        help="sessions per logged-in subscriber")
    parser.add_argument("--other-sessions", type=int, default=3,
                        help="sessions per other account (PostgreSQL seed)")
    parser.add_argument("--users", type=int, default=1, help="subscribers logged in")
    parser.add_argument("--traffic-days", type=int, default=365,
                        help="days of 5-minute rollups for each logged-in subscriber")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--requests", type=int, default=20_000, help="stop after this many")
    parser.add_argument("--seconds", type=float, default=20, help="or after this long")
    parser.add_argument("--workers", type=int, default=0,
                        help="gunicorn worker processes (0: contrib/gunicorn.conf.py's)")
    parser.add_argument("--threads", type=int, default=0,
                        help="threads per gunicorn worker (0: contrib/gunicorn.conf.py's)")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="first profile N in-process dashboards")
    parser.add_argument("--path", default="/",
                        help="the page to fetch: / (the dashboard), /traffic (reads the rollups)")
    parser.add_argument("--url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--client", choices=("python", "wrk"), default="python",
                        help="the load generator: Python threads (http.client) or wrk "
                             "(runs for --seconds; --requests does not apply)")
    args = parser.parse_args()
    # werkzeug's access log line per request would be part of the figure.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)

    scratch = None
    if args.url.startswith("postgresql"):
        scratch = f"abonent_bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine(args.url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{scratch}"'))
        admin.dispose()
        url = make_url(args.url).set(database=scratch).render_as_string(hide_password=False)
    else:
        url = args.url
    data_dir = tempfile.mkdtemp(prefix="abonent-bench-")
    ctx = open_context(settings=load_settings(environ={"ABONENT_DATABASE_URL": url,
                                                       "ABONENT_DATA_DIR": data_dir}))
    step = max(1, args.accounts // args.users)
    logins = [n for n in range(1, args.accounts + 1, step)][:args.users]
    try:
        upgrade(ctx.engine)
        started = time.perf_counter()
        if ctx.engine.dialect.name == "postgresql":
            seed_series(ctx, args.accounts, args.sessions, args.other_sessions, logins,
                        args.traffic_days)
        else:
            seed_rows(ctx, args.accounts, args.sessions)
            seed_traffic_rows(ctx, logins, args.traffic_days)
        with ctx.Session() as db:
            rollups = db.scalar(text("SELECT count(*) FROM traffic_rollups"))
        print(f"seeded {args.accounts} accounts x {args.sessions} sessions, {rollups} traffic "
              f"rollups in {time.perf_counter() - started:.1f} s ({ctx.engine.dialect.name})")
        if args.profile:
            profile(ctx, f"bench{logins[0]}", args.profile)

        if args.server == "gunicorn":
            server = Gunicorn(url, data_dir, _free_port(), args.workers, args.threads)
            stop = server.stop
            workers = args.workers or os.cpu_count() or 1
            threads = args.threads or 2
            where = f"gunicorn {workers} workers x {threads} threads (contrib/gunicorn.conf.py)"
        else:
            server = CabinetServer(ctx, host="127.0.0.1", port=0).start()
            stop = server.stop
            where = "werkzeug threaded server"
        try:
            cookies = [log_in("127.0.0.1", server.port, f"bench{n}") for n in logins]
            _, warm_errors, _ = hammer("127.0.0.1", server.port, cookies, args.concurrency, 2,
                                       500, args.path)  # warm-up
            if warm_errors and args.client == "wrk":
                # wrk counts a redirect to the login form as a success.
                raise SystemExit(f"warm-up: {warm_errors} requests did not get the page")
            cpu_before = server.cpu_seconds() if args.server == "gunicorn" else None
            if args.client == "wrk":
                figures = hammer_wrk("127.0.0.1", server.port, cookies, args.concurrency,
                                     args.seconds, args.path)
            else:
                latencies, errors, elapsed = hammer("127.0.0.1", server.port, cookies,
                                                    args.concurrency, args.seconds,
                                                    args.requests, args.path)
            cpu_used = server.cpu_seconds() - cpu_before if cpu_before is not None else None
        finally:
            stop()
        if args.client == "wrk":
            count = figures["requests"]
            print(f"GET {args.path} on {where}, wrk: {figures['rate']:.0f} req/s, {count} "
                  f"requests in {figures['elapsed']:.1f} s, concurrency {args.concurrency}, "
                  f"{len(cookies)} subscribers, errors {figures['errors']}")
            print(f"latency p50 {figures['p50'] * 1000:.1f} ms, "
                  f"p99 {figures['p99'] * 1000:.1f} ms")
        else:
            latencies.sort()
            count = len(latencies)
            p99 = latencies[min(count - 1, int(count * 0.99))]
            print(f"GET {args.path} on {where}: {count / elapsed:.0f} req/s, {count} requests "
                  f"in {elapsed:.1f} s, concurrency {args.concurrency}, {len(cookies)} "
                  f"subscribers, errors {errors}")
            print(f"latency p50 {statistics.median(latencies) * 1000:.1f} ms, "
                  f"p99 {p99 * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms")
        if cpu_used is not None:
            # Less at the mercy of the box's other load than req/s.
            print(f"gunicorn CPU per request: {cpu_used / count * 1000:.1f} ms")
        print("load average (1, 5, 15 min): " + ", ".join(f"{v:.2f}" for v in os.getloadavg())
              + f" on {os.cpu_count()} CPUs")
    finally:
        ctx.dispose()
        if scratch:
            admin = create_engine(args.url, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)'))
            admin.dispose()


if __name__ == "__main__":
    main()
