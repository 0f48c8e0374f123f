"""Shared by bench/radius_acct.py and bench/radius_auth.py: a scratch
PostgreSQL database, a RADIUS server in a child process, and a windowed UDP
load generator on loopback."""

from __future__ import annotations

import multiprocessing
import selectors
import socket
import time
import uuid
from contextlib import contextmanager

from decimal import Decimal

from sqlalchemy import create_engine, insert, select, text
from sqlalchemy.engine import make_url

from config.db import make_engine
from config.migrate import upgrade
from aaa.models import Nas, Service
from rating.models import Account, Tariff

SECRET = b"bench-secret"
DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@contextmanager
def scratch_database(base_url: str, subscribers: int):
    name = f"abonent_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(base_url).set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    try:
        upgrade(engine)
        # Through the models, so that every column default applies.
        with engine.begin() as conn:
            tariff_id = conn.execute(insert(Tariff).returning(Tariff.id), dict(
                name="Bench", fee=Decimal("600.00"), rate_down_kbps=100_000,
                rate_up_kbps=50_000, negative_rate_kbps=1000)).scalar_one()
            conn.execute(insert(Account), [dict(number=f"{n:09d}", name=f"Bench {n}",
                                                tariff_id=tariff_id)
                                           for n in range(1, subscribers + 1)])
            ids = conn.execute(select(Account.id).order_by(Account.id)).scalars().all()
            conn.execute(insert(Service), [dict(account_id=i, kind="pppoe", login=f"user{i}",
                                                password=f"pw{i}") for i in ids])
            conn.execute(insert(Nas), dict(name="bench", address="127.0.0.1",
                                           secret=SECRET.decode(), vendor="mikrotik"))
        with engine.connect() as conn:
            conn.execute(text("ANALYZE"))
            conn.commit()
        engine.dispose()
        yield url
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _serve(url: str, ready, stop, ports) -> None:
    import logging

    from aaa.server import RadiusServer
    from config.context import open_context
    from config.settings import load_settings

    logging.basicConfig(level=logging.ERROR)
    from aaa.server import tune_process
    tune_process()  # as `abonent serve radius` does
    ctx = open_context(settings=load_settings(environ={"ABONENT_DATABASE_URL": url}))
    server = RadiusServer(ctx, host="127.0.0.1", auth_port=0, acct_port=0).start()
    ports.put((server.auth_port, server.acct_port))
    ready.set()
    stop.wait()
    ports.put(dict(server.stats))
    server.stop()
    ctx.dispose()


@contextmanager
def server_process(url: str):
    context = multiprocessing.get_context("spawn")
    ready, stop, ports = context.Event(), context.Event(), context.Queue()
    process = context.Process(target=_serve, args=(url, ready, stop, ports), daemon=True)
    process.start()
    if not ready.wait(60):
        process.kill()
        raise SystemExit("the RADIUS server did not start")
    auth_port, acct_port = ports.get()
    stats = {}
    try:
        yield auth_port, acct_port, stats
    finally:
        stop.set()
        try:
            stats.update(ports.get(timeout=30))
        except Exception:
            pass
        process.join(30)
        if process.is_alive():
            process.kill()


def load(requests: list[bytes], port: int, *, window: int, seconds: float,
         lost_after_s: float = 2.0):
    """Send pre-built ``requests`` (request n carries identifier n % 256)
    with at most ``window`` unanswered; returns (answered, lost, elapsed_s,
    latencies_s). A request unanswered after ``lost_after_s`` counts as lost."""
    count = len(requests)
    per_identifier = max(1, (window + 255) // 256)
    sockets = []
    selector = selectors.DefaultSelector()
    for number in range(per_identifier):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.connect(("127.0.0.1", port))
        sock.setblocking(False)
        sockets.append(sock)
        selector.register(sock, selectors.EVENT_READ, number)
    # free[identifier] = sockets on which that identifier is not in flight
    free = [list(range(per_identifier)) for _ in range(256)]
    outstanding: dict[tuple[int, int], float] = {}
    latencies = []
    answered = lost = sent = 0
    clock = time.perf_counter
    started = clock()
    stop_at = started + seconds
    last_sweep = started
    while (sent < count or outstanding) and clock() < stop_at:
        while sent < count and len(outstanding) < window:
            identifier = sent & 0xFF
            if not free[identifier]:
                break
            number = free[identifier].pop()
            try:
                sockets[number].send(requests[sent])
            except BlockingIOError:
                free[identifier].append(number)
                break
            outstanding[(number, identifier)] = clock()
            sent += 1
        for key, _ in selector.select(0.05):
            sock = key.fileobj
            while True:
                try:
                    reply = sock.recv(4096)
                except (BlockingIOError, ConnectionRefusedError):
                    break
                slot = (key.data, reply[1])
                began = outstanding.pop(slot, None)
                if began is not None:
                    latencies.append(clock() - began)
                    answered += 1
                    free[slot[1]].append(slot[0])
        now = clock()
        if now - last_sweep > 0.5:
            last_sweep = now
            for slot, began in list(outstanding.items()):
                if now - began > lost_after_s:
                    del outstanding[slot]
                    lost += 1
                    free[slot[1]].append(slot[0])
    elapsed = clock() - started
    for sock in sockets:
        sock.close()
    return answered, lost, elapsed, latencies


def percentile(values, fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]
