"""Issue 13 (collector hardening) end to end: real UDP on 127.0.0.1 into both databases."""

import datetime as dt
import random
import struct


from collector.server import CollectorServer
from tests.conftest import make_context
from tests.factories import make_account, make_service
from tests.integration.test_collector_server import T0, packets_stored, rollups, send, unix
from tests.netflow_packets import V9_V4_TEMPLATE, data_set, template_set, v5_packet, v9_packet


def test_junk_is_not_remembered_and_a_later_replay_counts_once(db_url, tmp_path):
    """Junk datagrams leave no replay memory and no collector_packets rows, so
    a real packet is not pushed out of a small replay window and its replay
    after the flood counts nothing; junk v9/IPFIX headers add no losses."""
    ctx = make_context(db_url, data_dir=tmp_path)
    with ctx.Session() as s, s.begin():
        account = make_account(s)
        make_service(s, account, static_ipv4="100.64.1.1")
        account_id = account.id
    secs = unix(T0 + dt.timedelta(minutes=2))
    real = [v5_packet([dict(src="8.8.8.8", dst="100.64.1.1", bytes=1000, packets=2,
                            first_ms=99_000, last_ms=99_500)],
                      sequence=0, unix_secs=secs, uptime_ms=100_000),
            v9_packet([template_set(9, 256, V9_V4_TEMPLATE),
                       data_set(256, V9_V4_TEMPLATE,
                                [dict(src="100.64.1.1", dst="8.8.4.4", bytes=70, packets=1,
                                      first_ms=99_000, last_ms=99_500)])],
                      sequence=0, source_id=7, unix_secs=secs, uptime_ms=100_000)]
    rng = random.Random(13)
    junk = []
    for n in range(3000):
        if n % 3 == 0:
            junk.append(rng.randbytes(rng.randrange(0, 1400)))
        elif n % 3 == 1:     # the exporter's v9 source id, a random sequence, broken sets
            junk.append(struct.pack(">HHIIII", 9, 1, 100_000, secs, rng.getrandbits(32), 7)
                        + struct.pack(">HH", 256, 2000) + rng.randbytes(50))
        else:                # an IPFIX header claiming less than the datagram
            junk.append(struct.pack(">HHIII", 10, 16, secs, rng.getrandbits(32), 0)
                        + rng.randbytes(40))
    server = CollectorServer(ctx, "127.0.0.1", 0, flush_seconds=3600, write_stats=False,
                             replay_capacity=128)
    with server:
        send(server.port, real)
        server.wait_idle()
        for start in range(0, len(junk), 500):
            send(server.port, junk[start:start + 500])
            server.wait_idle(quiet_seconds=0.1)
        send(server.port, real)
        send(server.port, [v9_packet([data_set(256, V9_V4_TEMPLATE,
                                               [dict(src="100.64.1.1", dst="8.8.4.4",
                                                     bytes=30, packets=1, first_ms=99_000,
                                                     last_ms=99_500)])],
                                     sequence=1, source_id=7, unix_secs=secs,
                                     uptime_ms=100_000)])
        server.wait_idle()
        stats = server.stats()
    assert stats["packets"] == 2 + len(junk) + 1, stats
    assert stats["drops"] == len(junk)
    assert stats["replayed_packets"] == 2
    assert stats["replay_window_packets"] == 3
    assert stats["sequence_lost_packets"] == 0 and stats["sequence_lost_flows"] == 0
    assert stats.get("sequence_late", 0) == 0
    assert rollups(ctx) == [(account_id, T0, "internet", "in", 1000, 2),
                            (account_id, T0, "internet", "out", 100, 2)]
    assert packets_stored(ctx) == 3
    ctx.dispose()


def test_long_flow_across_the_uptime_wrap_lands_in_the_intervals_it_spans(db_url, tmp_path):
    """A flow from T0+3 min to T0+14 min whose exporter's uptime wrapped at
    T0+12 min: stored where it happened, by the seconds it had in each interval."""
    ctx = make_context(db_url, data_dir=tmp_path)
    with ctx.Session() as s, s.begin():
        account = make_account(s)
        make_service(s, account, static_ipv4="100.64.1.2")
        account_id = account.id
    export = unix(T0 + dt.timedelta(minutes=15))
    uptime = 180_000                       # 3 minutes after the wrap
    wrap = 2**32
    at = lambda minute: (uptime - (15 - minute) * 60_000) % wrap   # noqa: E731
    packet = v5_packet([dict(src="8.8.8.8", dst="100.64.1.2", bytes=6600, packets=66,
                             first_ms=at(3), last_ms=at(14))],
                       sequence=0, unix_secs=export, uptime_ms=uptime)
    server = CollectorServer(ctx, "127.0.0.1", 0, flush_seconds=3600, write_stats=False)
    with server:
        send(server.port, [packet])
        server.wait_idle()
    five = dt.timedelta(minutes=5)
    assert rollups(ctx) == [(account_id, T0, "internet", "in", 1200, 12),
                            (account_id, T0 + five, "internet", "in", 3000, 30),
                            (account_id, T0 + 2 * five, "internet", "in", 2400, 24)]
    ctx.dispose()


def _send_from(source, port, packets):
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        for packet in packets:
            sock.sendto(packet, ("127.0.0.1", port))


def test_only_allowed_exporters_count_and_a_forced_rate_applies(db_url, tmp_path):
    """collector.exporters and collector.sampling from the settings (env vars):
    127.0.0.1 is not allowed, 127.0.0.2 keeps its own rate, 127.0.0.3 is
    forced to 1 in 10 whatever its v5 header says."""
    from tests.integration.test_collector_server import collector_stats

    ctx = make_context(db_url, data_dir=tmp_path, collector_exporters="127.0.0.2,127.0.0.3/32",
                       collector_sampling="127.0.0.3=10")
    with ctx.Session() as s, s.begin():
        account = make_account(s)
        make_service(s, account, static_ipv4="100.64.1.3")
        account_id = account.id
    secs = unix(T0 + dt.timedelta(minutes=1))
    flow = [dict(src="8.8.8.8", dst="100.64.1.3", bytes=100, packets=1, first_ms=100_000)]
    server = CollectorServer(ctx, "127.0.0.1", 0, flush_seconds=3600)
    with server:
        _send_from("127.0.0.1", server.port, [v5_packet(flow, sequence=n, unix_secs=secs)
                                              for n in range(50)])
        _send_from("127.0.0.2", server.port, [v5_packet(flow, unix_secs=secs,
                                                        sampling=(1 << 14) | 2)])
        _send_from("127.0.0.3", server.port, [v5_packet(flow, unix_secs=secs,
                                                        sampling=(1 << 14) | 1000)])
        server.wait_idle()
        stats = server.stats()
    assert stats["drops_exporter_not_allowed"] == 50 and stats["drops"] == 50
    assert stats["replay_window_packets"] == 2
    assert rollups(ctx) == [(account_id, T0, "internet", "in", 200 + 1000, 2 + 10)]
    assert packets_stored(ctx) == 2
    assert collector_stats(db_url, tmp_path)["counters"]["drops_exporter_not_allowed"] == 50
    ctx.dispose()


def test_serve_collector_refuses_a_bad_exporter_list_in_one_sentence(tmp_path):
    import os
    import subprocess
    import sys

    env = dict(os.environ, ABONENT_DATA_DIR=str(tmp_path),
               ABONENT_COLLECTOR_EXPORTERS="192.0.2.0/24,router-7")
    run = subprocess.run([sys.executable, "-m", "scripts.cli", "serve", "collector", "--port",
                          "0"], env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2, run.stderr
    assert "collector.exporters" in run.stderr and "'router-7'" in run.stderr
    assert "Traceback" not in run.stderr
