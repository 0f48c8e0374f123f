"""Issue 20: the collector stops in bounded time and loses nothing it says it kept.

The real command (`abonent serve collector`) on both databases, real UDP on
127.0.0.1. The database is made to refuse writes by a transaction of the
test holding a lock on the rollups (PostgreSQL: LOCK TABLE; SQLite: BEGIN
IMMEDIATE), so a flush is stuck exactly when the collector is told to stop
or killed.
"""

import datetime as dt
import json
import os
import signal
import socket
import time

from sqlalchemy import create_engine, func, select, text

from collector.models import ReplaySet, TrafficRollup
from tests.conftest import free_udp_port, make_context
from tests.factories import make_account, make_service
from tests.integration.test_collector_server import collector_stats
from tests.netflow_packets import v5_packet
from tests.serve_process import ServeProcess

SUBSCRIBERS = 40


def _accounts(ctx) -> list[int]:
    with ctx.Session() as s, s.begin():
        ids = []
        for n in range(SUBSCRIBERS):
            account = make_account(s)
            make_service(s, account, static_ipv4=f"100.64.8.{n + 1}")
            ids.append(account.id)
    return ids


def _exports(first_sequence: int, count: int, salt: int) -> tuple[list[bytes], int, int]:
    """``count`` v5 packets of 30 flows to our subscribers: (packets, bytes, flows)."""
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    secs = int((now - dt.datetime(1970, 1, 1)).total_seconds())
    packets, total = [], 0
    for n in range(count):
        flows = [dict(src="93.184.216.34", dst=f"100.64.8.{(n + i) % SUBSCRIBERS + 1}",
                      bytes=1000 + salt + 7 * n + i, packets=1 + i % 3, first_ms=99_000,
                      last_ms=99_500) for i in range(30)]
        total += sum(f["bytes"] for f in flows)
        packets.append(v5_packet(flows, sequence=(first_sequence + n) * 30, unix_secs=secs,
                                 uptime_ms=100_000))
    return packets, total, 30 * count


def _send(port: int, packets: list[bytes]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for n, packet in enumerate(packets):
            sock.sendto(packet, ("127.0.0.1", port))
            if n % 200 == 199:
                time.sleep(0.01)    # a steady stream, not one burst


def _stored_bytes(ctx) -> int:
    with ctx.Session() as s:
        return int(s.scalar(select(func.coalesce(func.sum(TrafficRollup.bytes), 0))))


def _wait_stored(ctx, expected: int, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while True:
        stored = _stored_bytes(ctx)
        if stored == expected or time.monotonic() > deadline:
            return stored
        time.sleep(0.1)


class DatabaseHeld:
    """A transaction of the test that keeps the collector's flush from writing."""

    def __init__(self, db_url):
        self.engine = create_engine(db_url)
        self.connection = self.engine.connect()
        if self.engine.dialect.name == "postgresql":
            self.connection.execute(text("LOCK TABLE traffic_rollups IN EXCLUSIVE MODE"))
        else:
            self.connection.exec_driver_sql("BEGIN IMMEDIATE")

    def release(self):
        self.connection.rollback()
        self.connection.close()
        self.engine.dispose()


def _collector(db_url, tmp_path, port, **settings):
    env = {"ABONENT_DATABASE_URL": db_url, "ABONENT_DATA_DIR": str(tmp_path),
           "ABONENT_COLLECTOR_STOP_SECONDS": "1.5"}
    env.update({f"ABONENT_COLLECTOR_{k.upper()}": str(v) for k, v in settings.items()})
    return ServeProcess(["collector", "--host", "127.0.0.1", "--port", str(port),
                         "--workers", "1", "--flush-seconds", "0.5"], env,
                        ready="collector: listening")


def _own_stats(tmp_path, pid: int) -> dict:
    for path in (tmp_path / "collector").glob(f"stats-{pid}-*.json"):
        return json.loads(path.read_text())
    return {}


def _wait_stats(tmp_path, pid, check, timeout=15) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        document = _own_stats(tmp_path, pid)
        if (document and check(document["counters"])) or time.monotonic() > deadline:
            return document
        time.sleep(0.1)


def test_sigterm_during_a_stuck_flush_spools_and_the_next_start_counts_every_flow(
        db_url, tmp_path):
    ctx = make_context(db_url, data_dir=tmp_path)
    _accounts(ctx)
    port = free_udp_port()
    first, first_bytes, _ = _exports(0, 300, salt=0)
    second, second_bytes, second_flows = _exports(300, 1500, salt=5)

    collector = _collector(db_url, tmp_path, port)
    try:
        _send(port, first)
        assert _wait_stored(ctx, first_bytes) == first_bytes
        held = DatabaseHeld(db_url)
        try:
            _send(port, second)
            pid = collector.process.pid
            # Received and decoded, and the flush that should write them is stuck.
            stats = _wait_stats(tmp_path, pid, lambda c: c["flows"] >= 9000 + second_flows
                                and c["flows_pending"] >= second_flows)
            assert stats["counters"]["flows_pending"] >= second_flows, stats
            started = time.monotonic()
            collector.process.send_signal(signal.SIGTERM)
            code = collector.process.wait(timeout=30)
            stopped_in = time.monotonic() - started
        finally:
            held.release()
    finally:
        collector.stop()
    assert code == 0, "".join(collector.lines)
    assert stopped_in < 5, stopped_in
    stats = _own_stats(tmp_path, pid)
    assert stats["state"] == "stopped"
    assert stats["counters"]["flows_in_spool"] == second_flows
    assert stats["counters"]["flows_pending"] == 0
    assert stats["counters"]["flows_lost"] == 0
    assert list((tmp_path / "collector" / "spool").glob("*.npz"))
    assert _stored_bytes(ctx) == first_bytes

    # The next start applies the spool, once.
    again = _collector(db_url, tmp_path, port)
    try:
        assert _wait_stored(ctx, first_bytes + second_bytes) == first_bytes + second_bytes
        # A replay of the spooled exports is recognised (their keys came
        # back with the spool), and so is one of the first, stored exports.
        _send(port, second[:200] + first[:50])
        time.sleep(1.5)
        assert _stored_bytes(ctx) == first_bytes + second_bytes
        report = collector_stats(db_url, tmp_path)
        mine = [p for p in report["processes"] if p["pid"] == again.process.pid][0]
        assert mine["flows_recovered"] == second_flows
        assert report["counters"]["replayed_packets"] == 250
    finally:
        assert again.stop() == 0
    assert not list((tmp_path / "collector" / "spool").glob("*.npz"))
    with ctx.Session() as s:
        assert s.scalar(select(func.sum(ReplaySet.packets))) == len(first) + len(second)
    ctx.dispose()


def test_kill_9_loses_only_what_was_not_written_and_stats_say_how_much(db_url, tmp_path):
    ctx = make_context(db_url, data_dir=tmp_path)
    _accounts(ctx)
    port = free_udp_port()
    first, first_bytes, _ = _exports(0, 200, salt=1)
    second, second_bytes, second_flows = _exports(200, 400, salt=9)

    collector = _collector(db_url, tmp_path, port)
    pid = collector.process.pid
    try:
        _send(port, first)
        assert _wait_stored(ctx, first_bytes) == first_bytes
        held = DatabaseHeld(db_url)
        try:
            _send(port, second)
            _wait_stats(tmp_path, pid, lambda c: c["flows_pending"] >= second_flows)
            os.kill(pid, signal.SIGKILL)
            collector.process.wait(timeout=30)
        finally:
            held.release()
    finally:
        collector.stop()
    report = collector_stats(db_url, tmp_path)
    killed = [p for p in report["processes"] if p["pid"] == pid][0]
    assert killed["state"] == "killed"
    assert killed["flows_lost"] == second_flows
    assert report["counters"]["flows_lost"] == second_flows
    assert _stored_bytes(ctx) == first_bytes

    # The lost exports were never stored, so they are not taken for replays:
    # a router (or an operator) sending them again gets them counted, once.
    again = _collector(db_url, tmp_path, port)
    try:
        _send(port, second + first[:20])
        assert _wait_stored(ctx, first_bytes + second_bytes) == first_bytes + second_bytes
        time.sleep(0.7)
        assert _stored_bytes(ctx) == first_bytes + second_bytes
    finally:
        assert again.stop() == 0
    ctx.dispose()


def _distinct_rows(round_: int, flows: int = 4000) -> tuple[list[bytes], int]:
    """v5 exports whose flows each make their own rollup row: 40 accounts ×
    100 five-minute intervals, a different 100 per round."""
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    secs = int((now - dt.datetime(1970, 1, 1)).total_seconds())
    uptime = 300_000 * 1000
    records = [dict(src="93.184.216.34", dst=f"100.64.8.{j % SUBSCRIBERS + 1}", bytes=500 + j,
                    packets=1, first_ms=uptime - 300_000 * (round_ * 100 + j // SUBSCRIBERS))
               for j in range(flows)]
    packets = [v5_packet(records[i:i + 30], sequence=round_ * flows + i, unix_secs=secs,
                         uptime_ms=uptime) for i in range(0, flows, 30)]
    return packets, sum(r["bytes"] for r in records)


def test_a_database_outage_spools_the_backlog_and_applies_it_when_back(db_url, tmp_path):
    """Flushes cannot write while the database refuses; past max_pending_rows
    the oldest units go to the spool (the one being written stays); when the
    database is back every unit is written once and the spool is empty."""
    from collector.server import CollectorServer

    ctx = make_context(db_url, data_dir=tmp_path, collector_max_pending_rows=10_000)
    _accounts(ctx)
    spool = tmp_path / "collector" / "spool"
    server = CollectorServer(ctx, "127.0.0.1", 0, flush_seconds=0.3, write_stats=False)
    sent = 0
    with server:
        held = DatabaseHeld(db_url)
        try:
            for round_ in range(5):
                packets, total = _distinct_rows(round_)
                _send(server.port, packets)
                sent += total
                deadline = time.monotonic() + 10
                while server.stats()["queue_units"] < round_ + 1 and time.monotonic() < deadline:
                    time.sleep(0.05)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not (
                    list(spool.glob("*.npz")) and server.stats()["flows"] == 5 * 4000
                    and server.pipeline.rollup.raw_rows == 0):
                time.sleep(0.05)
            assert list(spool.glob("*.npz")), "the backlog past max_pending_rows is spooled"
            stats = server.stats()
            assert stats["flows_committed"] == 0 and stats["flows_in_spool"] > 0
            assert stats["flows_lost"] == 0
        finally:
            held.release()
        assert _wait_stored(ctx, sent, timeout=60) == sent
        deadline = time.monotonic() + 10
        while list(spool.glob("*.npz")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not list(spool.glob("*.npz"))
        assert server.stats()["flows_pending"] == 0
    assert server.stats()["flows_committed"] == 5 * 4000
    ctx.dispose()


def test_datagrams_queued_in_the_socket_at_stop_are_still_counted(db_url, tmp_path):
    """The receiver is held up (the test holds the pipeline's lock) while
    exports pile up in the socket; stop() is called; what the kernel held is
    taken and stored before the collector ends."""
    import threading

    from collector.server import CollectorServer

    ctx = make_context(db_url, data_dir=tmp_path)
    _accounts(ctx)
    packets, total, _ = _exports(0, 400, salt=3)
    server = CollectorServer(ctx, "127.0.0.1", 0, flush_seconds=3600, write_stats=False)
    server.start()
    server._lock.acquire()
    try:
        _send(server.port, packets[:1])
        time.sleep(0.3)                  # the receiver has it and waits for the lock
        _send(server.port, packets[1:])  # these wait in the socket
        stopping = threading.Thread(target=server.stop)
        stopping.start()
        time.sleep(0.3)
    finally:
        server._lock.release()
    stopping.join(30)
    assert not stopping.is_alive()
    assert server.pipeline.counters["packets"] == len(packets)
    assert _stored_bytes(ctx) == total
    ctx.dispose()
