"""The collector server end to end on both databases: UDP in, rollups out, replays once."""

import datetime as dt
import json
import socket

from click.testing import CliRunner
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import func, select

from aaa.models import IpLease
from collector.models import ReplaySet, TrafficRollup
from collector.server import CollectorServer, PipelineMetrics
from scripts.collector_cli import collector_group
from tests.conftest import make_context
from tests.factories import make_account, make_service
from tests.netflow_packets import (V9_V4_TEMPLATE, data_set, template_set, v5_packet,
                                   v9_packet)

# Three hours ago, on the hour: the collector keeps leases that ended within its
# lease window, so the test must not depend on the wall clock's date.
T0 = (dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, minute=0, second=0, microsecond=0)
      - dt.timedelta(hours=3))
EPOCH = dt.datetime(1970, 1, 1)


def unix(when):
    return int((when - EPOCH).total_seconds())


def send(port, packets):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for packet in packets:
            sock.sendto(packet, ("127.0.0.1", port))


def rollups(ctx):
    with ctx.Session() as s:
        rows = s.execute(select(TrafficRollup.account_id, TrafficRollup.interval_start,
                                TrafficRollup.traffic_class, TrafficRollup.direction,
                                TrafficRollup.bytes, TrafficRollup.packets)).all()
    return sorted(tuple(r) for r in rows)


def packets_stored(ctx) -> int:
    """Export packets remembered in the database (the replay sets of every flush)."""
    with ctx.Session() as s:
        return s.scalar(select(func.coalesce(func.sum(ReplaySet.packets), 0)))


def collector_stats(db_url, data_dir) -> dict:
    """`abonent collector stats --json`: the sum of the processes' stats files."""
    result = CliRunner().invoke(collector_group, ["stats", "--json"], obj={"config_path": None},
                                env={"ABONENT_DATABASE_URL": db_url,
                                     "ABONENT_DATA_DIR": str(data_dir)},
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_udp_exports_become_rollups_once_even_when_replayed(db_url, tmp_path):
    ctx = make_context(db_url, data_dir=tmp_path)
    with ctx.Session() as s, s.begin():
        static = make_account(s)
        make_service(s, static, static_ipv4="100.64.1.1")
        first, second = make_account(s), make_account(s)
        # 100.64.9.9 moves from `first` to `second` at 10:20.
        s.add_all([IpLease(account_id=first.id, address="100.64.9.9", valid_from=T0,
                           valid_to=T0 + dt.timedelta(minutes=20)),
                   IpLease(account_id=second.id, address="100.64.9.9",
                           valid_from=T0 + dt.timedelta(minutes=20))])
        ids = static.id, first.id, second.id
    secs = unix(T0 + dt.timedelta(minutes=30))
    uptime = 3_600_000
    at = lambda minute: uptime - (30 - minute) * 60_000    # noqa: E731 (uptime ms of T0+minute)
    packets = [
        v5_packet([dict(src="8.8.8.8", dst="100.64.1.1", bytes=1000, packets=2, first_ms=at(1)),
                   dict(src="100.64.1.1", dst="8.8.8.8", bytes=300, packets=3, first_ms=at(2)),
                   dict(src="8.8.8.8", dst="100.64.9.9", bytes=5000, packets=5, first_ms=at(10)),
                   dict(src="8.8.8.8", dst="100.64.9.9", bytes=7000, packets=7, first_ms=at(25)),
                   dict(src="8.8.8.8", dst="198.51.100.1", bytes=444, packets=1, first_ms=at(3))],
                  sequence=0, unix_secs=secs, uptime_ms=uptime),
        v9_packet([template_set(9, 256, V9_V4_TEMPLATE),
                   data_set(256, V9_V4_TEMPLATE,
                            [dict(src="100.64.1.1", dst="185.1.1.1", bytes=60, packets=1,
                                  first_ms=at(6))], uptime_ms=uptime)],
                  sequence=1, unix_secs=secs, uptime_ms=uptime),
    ]
    server = CollectorServer(ctx, "127.0.0.1", 0, classes={"peering": ["185.1.0.0/16"]},
                             flush_seconds=3600)
    with server:
        send(server.port, packets)
        server.wait_idle()
        registry = CollectorRegistry()
        registry.register(PipelineMetrics(server.pipeline))
        metrics = generate_latest(registry).decode()
    five = dt.timedelta(minutes=5)
    expected = sorted([
        (ids[0], T0, "internet", "in", 1000, 2), (ids[0], T0, "internet", "out", 300, 3),
        (ids[0], T0 + five, "peering", "out", 60, 1),
        (ids[1], T0 + 2 * five, "internet", "in", 5000, 5),
        (ids[2], T0 + 5 * five, "internet", "in", 7000, 7),
    ])
    assert rollups(ctx) == expected
    assert "abonent_collector_unattributed_bytes_total 444.0" in metrics
    assert "abonent_collector_flows_total 6.0" in metrics

    # A restarted collector recognises the same export packets and counts nothing twice.
    again = CollectorServer(ctx, "127.0.0.1", 0, flush_seconds=3600)
    with again:
        send(again.port, packets + [packets[0]])
        again.wait_idle()
        assert again.stats()["replayed_packets"] == 3
    assert rollups(ctx) == expected
    assert packets_stored(ctx) == 2

    stats = collector_stats(db_url, tmp_path)
    assert len(stats["processes"]) == 2
    assert stats["counters"]["unattributed_bytes"] == 444
    assert stats["counters"]["replayed_packets"] == 3
    assert stats["counters"]["packets"] == 2
    ctx.dispose()


def test_so_reuseport_lets_two_collectors_share_a_port(db_url, tmp_path):
    ctx = make_context(db_url, data_dir=tmp_path)
    one = CollectorServer(ctx, "127.0.0.1", 0, flush_seconds=3600, write_stats=False).start()
    try:
        two = CollectorServer(ctx, "127.0.0.1", one.port, flush_seconds=3600,
                              write_stats=False).start()
        two.stop()
    finally:
        one.stop()
    ctx.dispose()


def test_abonent_serve_collector_process(db_url, tmp_path):
    """The real command: listens, attributes, flushes, writes stats, stops on SIGTERM."""
    import os
    import subprocess
    import sys
    import time

    from tests.conftest import free_udp_port

    ctx = make_context(db_url, data_dir=tmp_path)
    with ctx.Session() as s, s.begin():
        account = make_account(s)
        make_service(s, account, static_ipv4="100.64.5.5")
        account_id = account.id
    classes = tmp_path / "classes.toml"
    classes.write_text('[classes]\nlocal = ["10.0.0.0/8"]\n')
    port = free_udp_port()
    env = dict(os.environ, ABONENT_DATABASE_URL=db_url, ABONENT_DATA_DIR=str(tmp_path))
    process = subprocess.Popen(
        [sys.executable, "-m", "scripts.cli", "serve", "collector", "--port", str(port),
         "--classes", str(classes), "--flush-seconds", "0.2"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        got = []
        while time.monotonic() < deadline and not got:
            send(port, [v5_packet([dict(src="10.1.1.1", dst="100.64.5.5", bytes=777)],
                                  sequence=0)])
            time.sleep(0.3)
            got = rollups(ctx)
    finally:
        process.terminate()
        _, err = process.communicate(timeout=20)
    assert process.returncode == 0, err.decode()
    assert got and got[0][0] == account_id and got[0][2:5] == ("local", "in", 777), got
    assert list((tmp_path / "collector").glob("stats-*.json")), err.decode()
    ctx.dispose()


def test_a_lease_made_while_running_is_picked_up(db_url, tmp_path):
    import time

    ctx = make_context(db_url, data_dir=tmp_path)
    server = CollectorServer(ctx, "127.0.0.1", 0, flush_seconds=3600, reload_seconds=0.2,
                             write_stats=False).start()
    try:
        with ctx.Session() as s, s.begin():
            account = make_account(s)
            s.add(IpLease(account_id=account.id, address="100.64.7.7", valid_from=T0))
            account_id = account.id
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and server.stats()["address_table_bytes"] == 0:
            time.sleep(0.05)
        send(server.port, [v5_packet([dict(src="1.1.1.1", dst="100.64.7.7", bytes=99)],
                                     unix_secs=unix(T0 + dt.timedelta(minutes=1)),
                                     uptime_ms=100_000)])
        server.wait_idle()
    finally:
        server.stop()
    assert rollups(ctx) == [(account_id, T0, "internet", "in", 99, 1)]
    ctx.dispose()
