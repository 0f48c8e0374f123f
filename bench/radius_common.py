"""Shared by bench/radius_acct.py and bench/radius_auth.py: a scratch
PostgreSQL database, a RADIUS server in a child process, and a windowed UDP
load generator on loopback."""

from __future__ import annotations

import os
import selectors
import socket
import struct
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import insert, select, text

from bench import scratch
from bench.cbuild import compiled
from bench.procstat import cpu_seconds
from aaa.models import Nas, Service
from rating.models import Account, Tariff

SECRET = b"bench-secret"
DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
NAS_SOURCES = 8  # source addresses the load generator sends from


@contextmanager
def scratch_database(base_url: str, subscribers: int):
    """A scratch database (bench.scratch) with ``subscribers`` PPPoE
    services and one NAS entry for the loopback fleet; yields its URL."""
    with scratch.scratch_database(base_url) as (engine, url):
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
            # One NAS entry for the loopback fleet the load generator binds.
            conn.execute(insert(Nas), dict(name="bench", address="127.0.0.0/24",
                                           secret=SECRET.decode(), vendor="mikrotik"))
        with engine.connect() as conn:
            conn.execute(text("ANALYZE"))
            conn.commit()
        engine.dispose()
        yield url


@contextmanager
def server_process(url: str, workers: int = 0):
    """The RADIUS server as ``abonent serve radius`` runs it: ``workers``
    processes sharing the ports (aaa.workers; 0 = one per CPU). Yields
    (auth_port, acct_port, stats); stats fill in (summed) on exit."""
    import logging

    from aaa.workers import RadiusWorkers, default_count
    from config.settings import load_settings

    logging.basicConfig(level=logging.ERROR)
    # ABONENT_RADIUS_* from the environment apply (batch_ms, batch_max, ...).
    environ = {k: v for k, v in os.environ.items() if k.startswith("ABONENT_RADIUS_")}
    settings = load_settings(environ={**environ, "ABONENT_DATABASE_URL": url})
    pool = RadiusWorkers(settings, workers or default_count(settings), host="127.0.0.1",
                         auth_port=0, acct_port=0).start()
    stats: dict = {}
    pids = pool.pids()
    cpu_before = cpu_seconds(pids)
    try:
        yield pool.auth_port, pool.acct_port, stats
    finally:
        # Less at the mercy of whatever else the box runs than req/s.
        stats["server_cpu_s"] = round(cpu_seconds(pids) - cpu_before, 2)
        stats.update(pool.stop())
        stats["workers"] = pool.count


def _echo(port: int, stop) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.settimeout(0.2)
    receive, send = sock.recvfrom, sock.sendto
    while not stop.is_set():
        try:
            data, source = receive(4096)
        except (TimeoutError, socket.timeout):
            continue
        # An Access-Accept's header for the request, nothing checked, nothing
        # signed: what the generator matches a reply by (socket, identifier).
        send(b"\x02" + data[1:2] + b"\x00\x14" + data[4:20], source)


@contextmanager
def echo_process(workers: int = 0):
    """The floor of a Python RADIUS server: ``workers`` processes (0 = one
    per CPU) sharing a port by SO_REUSEPORT, each a bare recvfrom/sendto
    loop answering every datagram with a 20-octet header and doing nothing
    else. Yields the port. What abonent's receive loop costs beyond it is
    the RADIUS work; what it costs itself bounds any Python server."""
    import multiprocessing

    # A free port, released before the children bind it: a socket held
    # open here (and in each forked child) would join their SO_REUSEPORT
    # group and take its share of the datagrams unanswered.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    context = multiprocessing.get_context("fork")
    stop = context.Event()
    processes = [context.Process(target=_echo, args=(port, stop), daemon=True)
                 for _ in range(workers or os.cpu_count() or 1)]
    for process in processes:
        process.start()
    time.sleep(0.3)
    try:
        yield port
    finally:
        stop.set()
        for process in processes:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()


@dataclass
class LoadResult:
    answered: int
    lost: int
    elapsed_s: float
    p50_s: float
    p99_s: float
    cpu_s: float        # what the load generator itself spent
    generator: str


def load(requests: list[bytes], port: int, *, window: int, seconds: float,
         generator: str = "c", sources: int = NAS_SOURCES) -> LoadResult:
    """Send pre-built ``requests`` (request n carries identifier n % 256)
    with at most ``window`` unanswered, by the C generator (bench/udpload.c,
    compiled on first use) or, without a C compiler or with
    ``generator="python"``, by the Python one."""
    if generator == "c":
        binary = compiled("udpload.c")
        if binary is not None:
            return _load_c(binary, requests, port, window, seconds, sources)
        print("bench: no C compiler (cc); using the Python load generator, which costs "
              "the server several times more of the box's CPU")
    return _load_python(requests, port, window=window, seconds=seconds, sources=sources)


def _load_c(binary, requests, port, window, seconds, sources) -> LoadResult:
    payload = b"".join(struct.pack("!H", len(r)) + r for r in requests)
    result = subprocess.run([binary, str(port), str(window), str(seconds), str(sources)],
                            input=payload, capture_output=True, check=True,
                            timeout=seconds + 60)
    answered, lost, elapsed, p50, p99, cpu = result.stdout.split()
    return LoadResult(int(answered), int(lost), float(elapsed), float(p50), float(p99),
                      float(cpu), "C (bench/udpload.c)")


def _load_python(requests: list[bytes], port: int, *, window: int, seconds: float,
                 lost_after_s: float = 2.0, sources: int = NAS_SOURCES) -> LoadResult:
    """The same in Python: request n carries identifier n % 256; a request
    unanswered after ``lost_after_s`` counts as lost.

    The sockets are bound to ``sources`` loopback addresses (127.0.0.1,
    127.0.0.2, ...): a fleet of NASes, which is what lets the kernel spread
    the datagrams over the server's worker processes."""
    count = len(requests)
    per_identifier = max(sources, (window + 255) // 256)
    sockets = []
    selector = selectors.DefaultSelector()
    for number in range(per_identifier):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.bind((f"127.0.0.{1 + number % sources}", 0))
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
    cpu_started = time.process_time()
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
    return LoadResult(answered, lost, elapsed, percentile(latencies, 0.5),
                      percentile(latencies, 0.99), time.process_time() - cpu_started,
                      "Python")


def percentile(values, fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def report(what: str, result: LoadResult, window: int, stats: dict) -> None:
    """The figure lines both benches print."""
    answered = max(1, result.answered)
    print(f"{what}: {result.answered:,} in {result.elapsed_s:.2f} s = "
          f"{result.answered / result.elapsed_s:,.0f} req/s; lost {result.lost}; "
          f"window {window}; p50 {result.p50_s * 1000:.2f} ms, "
          f"p99 {result.p99_s * 1000:.2f} ms; {stats.get('workers')} server processes")
    print(f"CPU per request: server {stats['server_cpu_s'] / answered * 1e6:.0f} us, "
          f"load generator ({result.generator}) {result.cpu_s / answered * 1e6:.0f} us; "
          f"server stats {stats}")
