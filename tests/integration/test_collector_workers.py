"""`abonent serve collector --workers 2`: two processes on one UDP port
(SO_REUSEPORT) summing into the same rollups, supervised by the parent."""

import datetime as dt
import re
import socket
import time

import pytest
from sqlalchemy import func, select

from collector.models import TrafficRollup
from tests.conftest import free_udp_port, make_context
from tests.factories import make_account, make_service
from tests.integration.test_collector_server import collector_stats
from tests.netflow_packets import v5_packet
from tests.serve_process import ServeProcess

EXPORTERS = 16   # loopback source addresses: the kernel hashes on them


def test_two_collector_workers_share_the_port_and_the_rollups(db_url, tmp_path):
    ctx = make_context(db_url, data_dir=tmp_path)
    with ctx.Session() as s, s.begin():
        accounts = []
        for n in range(EXPORTERS):
            account = make_account(s)
            make_service(s, account, static_ipv4=f"100.64.7.{n + 1}")
            accounts.append(account.id)
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    secs = int((now - dt.datetime(1970, 1, 1)).total_seconds())
    port = free_udp_port()
    collector = ServeProcess(
        ["collector", "--host", "127.0.0.1", "--port", str(port), "--workers", "2",
         "--flush-seconds", "0.3"],
        {"ABONENT_DATABASE_URL": db_url, "ABONENT_DATA_DIR": str(tmp_path)},
        ready="collector: 2 workers")
    try:
        for n in range(EXPORTERS):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.bind((f"127.0.0.{n + 1}", 0))
                for sequence in range(3):
                    sock.sendto(v5_packet(
                        [dict(src="93.184.216.34", dst=f"100.64.7.{n + 1}",
                              bytes=1000 * (n + 1) + sequence, packets=1)],
                        sequence=sequence, unix_secs=secs, uptime_ms=100_000),
                        ("127.0.0.1", port))
        expected = {accounts[n]: sum(1000 * (n + 1) + q for q in range(3))
                    for n in range(EXPORTERS)}
        deadline = time.monotonic() + 30
        while True:
            with ctx.Session() as s:
                stored = dict(s.execute(
                    select(TrafficRollup.account_id, func.sum(TrafficRollup.bytes))
                    .group_by(TrafficRollup.account_id)).all())
            if stored == expected or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert stored == expected
    finally:
        assert collector.stop() == 0
    # Each worker got some of the exporters (all 16 on one: 2 ** -15).
    flows = [int(m.group(1)) for line in collector.lines
             if (m := re.search(r"collector\.worker_stopped .* flows=(\d+)", line))]
    assert len(flows) == 2 and all(flows), "".join(collector.lines)
    assert sum(flows) == EXPORTERS * 3
    # `abonent collector stats` sums the workers' stats files.
    document = collector_stats(db_url, tmp_path)
    assert len(document["processes"]) == 2
    assert document["counters"]["flows"] == EXPORTERS * 3
    ctx.dispose()


@pytest.mark.parametrize("listen, exporter", [("127.0.0.1", "127.0.0.9"), ("::1", "::1")])
def test_one_exporter_reaches_one_worker_whatever_its_source_port(db_url, tmp_path, listen,
                                                                   exporter):
    """The workers steer by exporter address (steer_by_exporter, IPv4 and
    IPv6): 12 source ports of one exporter all reach one worker, so a replay
    of its export from yet another port is recognised as one and counted
    once."""
    ctx = make_context(db_url, data_dir=tmp_path)
    with ctx.Session() as s, s.begin():
        account = make_account(s)
        make_service(s, account, static_ipv4="100.64.8.1")
        account_id = account.id
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    secs = int((now - dt.datetime(1970, 1, 1)).total_seconds())
    port = free_udp_port()
    collector = ServeProcess(
        ["collector", "--host", listen, "--port", str(port), "--workers", "2",
         "--flush-seconds", "0.3"],
        {"ABONENT_DATABASE_URL": db_url, "ABONENT_DATA_DIR": str(tmp_path)},
        ready="collector: 2 workers")
    family = socket.AF_INET6 if ":" in listen else socket.AF_INET
    packets = [v5_packet([dict(src="93.184.216.34", dst="100.64.8.1", bytes=100 + n,
                               packets=1)], sequence=n, unix_secs=secs, uptime_ms=100_000)
               for n in range(12)]
    try:
        for data in packets + packets[:1]:      # the last one: a replay, from a new port
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                sock.bind((exporter, 0))
                sock.sendto(data, (listen, port))
        expected = sum(100 + n for n in range(12))
        deadline = time.monotonic() + 30
        while True:
            with ctx.Session() as s:
                stored = s.scalar(select(func.sum(TrafficRollup.bytes))
                                  .where(TrafficRollup.account_id == account_id))
            replayed = collector_stats(db_url, tmp_path)["counters"]["replayed_packets"]
            if (stored == expected and replayed == 1) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert (stored, replayed) == (expected, 1)
    finally:
        assert collector.stop() == 0
    flows = [int(m.group(1)) for line in collector.lines
             if (m := re.search(r"collector\.worker_stopped .* flows=(\d+)", line))]
    assert sorted(flows) == [0, 12], "".join(collector.lines)
    ctx.dispose()


def test_a_bad_worker_count_is_refused(db_url, tmp_path):
    import os
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "scripts.cli", "serve", "collector", "--port", "0"],
        env=dict(os.environ, ABONENT_DATABASE_URL=db_url, ABONENT_DATA_DIR=str(tmp_path),
                 ABONENT_COLLECTOR_WORKERS="-2"),
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "collector.workers" in result.stderr
