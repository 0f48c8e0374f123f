"""Exports made by softflowd from a pcap, received by nfcapd and by our collector at once.

nfcapd (nfdump) listens for softflowd and repeats every export packet to our
collector (``nfcapd -R``), so both see the very same datagrams; per-address
byte totals from ``nfdump -o csv`` must equal ours, and both must equal the
sizes of the IP packets the test wrote into the pcap.
"""

import collections
import csv
import io
import ipaddress
import os
import socket
import subprocess
import tempfile
import time

import pytest
from sqlalchemy import select

from aaa.models import Service
from collector.models import TrafficRollup
from collector.server import CollectorServer
from tests.conftest import free_udp_port, make_context, need_program
from tests.factories import make_account, make_service
from tests.netflow_packets import frame, pcap

pytestmark = pytest.mark.peer

SUBSCRIBERS_V4 = [f"100.64.3.{i}" for i in range(1, 6)]
SUBSCRIBERS_V6 = [f"2001:db8:7:{i}::10" for i in range(1, 4)]
INTERNET_V4 = ["93.184.216.34", "151.101.1.69", "8.8.8.8"]
INTERNET_V6 = ["2a00:1450:4010::8a", "2606:4700::1111"]


def build_frames(with_v6: bool):
    """Known traffic: (frames, {address: {"in": bytes, "out": bytes}})."""
    frames, totals = [], collections.defaultdict(lambda: {"in": 0, "out": 0})
    pairs = [(s, r) for s in SUBSCRIBERS_V4 for r in INTERNET_V4]
    if with_v6:
        pairs += [(s, r) for s in SUBSCRIBERS_V6 for r in INTERNET_V6]
    for n, (subscriber, remote) in enumerate(pairs):
        proto = "tcp" if n % 2 else "udp"
        for k in range(3 + n % 4):
            up = 60 + (n * 37 + k * 11) % 900
            down = 80 + (n * 53 + k * 29) % 1400
            frames.append(frame(subscriber, remote, up, proto=proto, sport=20000 + n, dport=443))
            frames.append(frame(remote, subscriber, down, proto=proto, sport=443,
                                dport=20000 + n))
            totals[subscriber]["out"] += up
            totals[subscriber]["in"] += down
    return frames, totals


def wait_until_bound(port, timeout=10.0):
    """Until someone (nfcapd) holds the UDP port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on udp port {port}")


def nfdump_totals(nfdump, folder):
    out = subprocess.run([nfdump, "-R", str(folder), "-o", "csv", "-q"], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    header = subprocess.run([nfdump, "-R", str(folder), "-o", "csv", "-c", "1"],
                            capture_output=True, text=True, timeout=60,
                            check=True).stdout.splitlines()[0].split(",")
    totals = collections.defaultdict(lambda: {"in": 0, "out": 0})
    for row in csv.reader(io.StringIO(out)):
        if len(row) < len(header):
            continue
        record = dict(zip(header, row))
        size = int(record["ibyt"])
        totals[str(ipaddress.ip_address(record["sa"]))]["out"] += size
        totals[str(ipaddress.ip_address(record["da"]))]["in"] += size
    return totals


@pytest.mark.parametrize("version", [5, 9, 10])
def test_softflowd_exports_match_nfdump_per_address(db_url, tmp_path, version):
    softflowd = need_program("softflowd")
    nfcapd = need_program("nfcapd")
    nfdump = need_program("nfdump")
    ctx = make_context(db_url, data_dir=tmp_path / "data")
    with_v6 = version != 5
    frames, expected = build_frames(with_v6)
    (tmp_path / "traffic.pcap").write_bytes(pcap(frames))
    with ctx.Session() as s, s.begin():
        for address in SUBSCRIBERS_V4:
            make_service(s, make_account(s), static_ipv4=address)
        for address in SUBSCRIBERS_V6:
            make_service(s, make_account(s), ipv6_prefix=address.replace("::10", "::/64"))
    with ctx.Session() as s:
        owner = {}
        for account_id, v4, v6 in s.execute(select(Service.account_id, Service.static_ipv4,
                                                   Service.ipv6_prefix)):
            owner[account_id] = v4 or v6.replace("::/64", "::10")

    flows_dir = tmp_path / "nfcapd"
    flows_dir.mkdir()
    server = CollectorServer(ctx, "127.0.0.1", 0, flush_seconds=3600)
    server.start()
    nfcapd_port = free_udp_port()
    nfcapd_process = subprocess.Popen(
        [nfcapd, "-b", "127.0.0.1", "-p", str(nfcapd_port), "-w", str(flows_dir),
         "-R", f"127.0.0.1/{server.port}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_until_bound(nfcapd_port)
        # No control socket (-c none): with one, softflowd sometimes sat in
        # accept() after the pcap instead of exiting. Its pid file goes to a
        # folder of its own.
        with tempfile.TemporaryDirectory(prefix="abonent-softflowd-") as folder:
            os.chmod(folder, 0o755)
            command = [softflowd, "-r", str(tmp_path / "traffic.pcap"),
                       "-n", f"127.0.0.1:{nfcapd_port}", "-v", str(version), "-d",
                       "-c", "none", "-p", f"{folder}/pid"]
            if with_v6:
                command.append("-6")
            run = subprocess.run(command, capture_output=True, text=True, timeout=30)
        assert run.returncode == 0, run.stderr
        server.wait_idle(quiet_seconds=0.3)
    finally:
        nfcapd_process.terminate()
        log = nfcapd_process.communicate(timeout=30)[0].decode(errors="replace")
        server.stop()
    stats = server.stats()
    assert stats["drops"] == 0 and stats["packets"] > 0, (stats, log)

    ours = collections.defaultdict(lambda: {"in": 0, "out": 0})
    with ctx.Session() as s:
        for account_id, direction, size in s.execute(select(
                TrafficRollup.account_id, TrafficRollup.direction, TrafficRollup.bytes)):
            ours[owner[account_id]][direction] += size
    theirs = nfdump_totals(nfdump, flows_dir)
    subscribers = SUBSCRIBERS_V4 + (SUBSCRIBERS_V6 if with_v6 else [])
    for address in subscribers:
        assert ours[address] == theirs[address] == expected[address], (address, log)
    assert stats["unattributed_bytes"] == 0
    ctx.dispose()
