"""A 12-minute TCP flow from a pcap, exported by softflowd (v5, v9, IPFIX),
repeated by nfcapd to our collector: counted in each 5-minute interval it
spans by the seconds it had there, with nfdump agreeing on its start and end."""

import datetime as dt
import os
import subprocess
import tempfile

import pytest

from collector.server import CollectorServer
from tests.conftest import free_udp_port, make_context, need_program
from tests.factories import make_account, make_service
from tests.integration.test_collector_server import rollups
from tests.integration.test_collector_softflowd import wait_until_bound
from tests.netflow_packets import frame, pcap

pytestmark = pytest.mark.peer

START = dt.datetime(2023, 11, 14, 22, 15)      # the pcap's first packet, on an interval
EPOCH = dt.datetime(1970, 1, 1)


@pytest.mark.parametrize("version", [5, 9, 10])
def test_softflowd_long_flow_is_spread_over_its_intervals(db_url, tmp_path, version):
    softflowd = need_program("softflowd")
    nfcapd = need_program("nfcapd")
    nfdump = need_program("nfdump")
    ctx = make_context(db_url, data_dir=tmp_path / "data")
    with ctx.Session() as s, s.begin():
        account = make_account(s)
        make_service(s, account, static_ipv4="100.64.3.1")
        account_id = account.id
    # 25 packets of 500 octets, one every 30 s: 22:15:00 to 22:27:00.
    frames = [frame("100.64.3.1", "93.184.216.34", 500, proto="tcp", sport=20000, dport=443)
              for _ in range(25)]
    (tmp_path / "long.pcap").write_bytes(
        pcap(frames, start=(START - EPOCH).total_seconds(), step=30.0))
    flows_dir = tmp_path / "nfcapd"
    flows_dir.mkdir()
    server = CollectorServer(ctx, "127.0.0.1", 0, flush_seconds=3600, write_stats=False)
    server.start()
    port = free_udp_port()
    nfcapd_process = subprocess.Popen(
        [nfcapd, "-b", "127.0.0.1", "-p", str(port), "-w", str(flows_dir),
         "-R", f"127.0.0.1/{server.port}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_until_bound(port)
        with tempfile.TemporaryDirectory(prefix="abonent-softflowd-") as folder:
            os.chmod(folder, 0o755)
            # -a: flow times from the pcap's clock, not the wall clock.
            run = subprocess.run([softflowd, "-a", "-r", str(tmp_path / "long.pcap"),
                                  "-n", f"127.0.0.1:{port}", "-v", str(version), "-d",
                                  "-c", "none", "-p", f"{folder}/pid"],
                                 capture_output=True, text=True, timeout=30)
        assert run.returncode == 0, run.stderr
        server.wait_idle(quiet_seconds=0.3)
    finally:
        nfcapd_process.terminate()
        log = nfcapd_process.communicate(timeout=30)[0].decode(errors="replace")
        server.stop()
    assert server.stats()["drops"] == 0, log
    five = dt.timedelta(minutes=5)
    # 300 s, 300 s and 120 s of 720: floor(12500 * 300 / 720) = 5208, ...
    assert rollups(ctx) == [(account_id, START, "internet", "out", 5208, 10),
                            (account_id, START + five, "internet", "out", 5208, 10),
                            (account_id, START + 2 * five, "internet", "out", 2084, 5)]
    if version != 10:
        # nfdump 1.7 shows softflowd's IPFIX uptime times swapped (end before
        # start); for v5 and v9 it agrees with the pcap and with us.
        shown = subprocess.run([nfdump, "-R", str(flows_dir), "-q", "-o",
                                "fmt:%ts|%te|%byt"], capture_output=True, text=True,
                               timeout=60, check=True,
                               env=dict(os.environ, TZ="UTC")).stdout.split("|")
        assert [part.strip() for part in shown] == [
            "2023-11-14 22:15:00.000", "2023-11-14 22:27:00.000", "12500"]
    ctx.dispose()
