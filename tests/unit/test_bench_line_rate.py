"""The pure parts of bench/collector_line_rate.py: what nfdump and
/proc/net/udp say, and which rate of the ladder counts as lossless."""

from __future__ import annotations

from bench.collector_line_rate import (highest_lossless, loss_fraction, parse_nfdump_stat,
                                       rung_seed, summarize, udp_sockets)

NFDUMP_I = """Ident: bench
Flows: 400320
Flows_tcp: 200337
Flows_udp: 199983
Packets: 300420053
Bytes: 300619577016
Bytes_tcp: 150495601396
First: 1796537561
Sequence failures: 3
"""

PROC_NET_UDP = """\
   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  120: 0100007F:752B 00000000:0000 07 00000000:00012A00 00:00000000 00000000     0        0 4242 2 0000000000000000 17
  121: 0100007F:752B 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4243 2 0000000000000000 0
  300: 00000000:0801 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4244 2 0000000000000000 99
"""


def test_nfdump_stat_record():
    assert parse_nfdump_stat(NFDUMP_I) == {"flows": 400320, "bytes": 300619577016,
                                           "packets": 300420053, "sequence_failures": 3}
    assert parse_nfdump_stat("") == {"flows": 0, "bytes": 0, "packets": 0,
                                     "sequence_failures": 0}


def test_udp_sockets_on_one_port_summed_by_the_caller():
    sockets = udp_sockets(PROC_NET_UDP, 0x752B)
    assert sockets == [{"queue": 0x12A00, "drops": 17}, {"queue": 0, "drops": 0}]
    assert udp_sockets(PROC_NET_UDP, 9) == []


def test_loss_is_a_share_and_never_negative():
    assert loss_fraction(1000, 999) == 0.001
    assert loss_fraction(1000, 1001) == 0.0
    assert loss_fraction(0, 0) == 0.0


def test_highest_lossless_stops_at_the_first_lossy_rung():
    rungs = [dict(rate=1e6, loss=0.0), dict(rate=3e6, loss=0.0005), dict(rate=2e6, loss=0.01),
             dict(rate=0.5e6, loss=0.0)]
    # 3M was lossless, but 2M below it was not: 1M is the figure.
    assert highest_lossless(rungs, 0.001) == 1e6
    assert highest_lossless([dict(rate=0.5e6, loss=0.5)], 0.001) is None
    assert highest_lossless([], 0.001) is None


def test_summary_ratio_to_nfcapd_per_protocol():
    results = [
        dict(protocol=5, collector="nfcapd", rate=1e6, loss=0.0, stop_s=0.0),
        dict(protocol=5, collector="nfcapd", rate=2e6, loss=0.0, stop_s=0.1),
        dict(protocol=5, collector="abonent-w1", rate=1e6, loss=0.0, stop_s=4.0),
        dict(protocol=5, collector="abonent-w1", rate=2e6, loss=0.2, stop_s=9.0),
        dict(protocol=9, collector="abonent-w1", rate=1e6, loss=0.0, stop_s=None),
    ]
    rows = {(r["protocol"], r["collector"]): r for r in summarize(results, 0.001)}
    assert rows[5, "nfcapd"]["max_lossless_flows_s"] == 2e6
    assert rows[5, "nfcapd"]["ratio_to_nfcapd"] is None
    assert rows[5, "abonent-w1"]["max_lossless_flows_s"] == 1e6
    assert rows[5, "abonent-w1"]["ratio_to_nfcapd"] == 0.5
    assert rows[5, "abonent-w1"]["max_stop_s"] == 9.0
    assert rows[9, "abonent-w1"]["ratio_to_nfcapd"] is None      # no nfcapd run
    assert rows[9, "abonent-w1"]["max_stop_s"] is None


def test_same_exports_for_every_collector_at_a_rung_others_at_the_next():
    assert rung_seed(5, 1e6) == rung_seed(5, 1e6)
    assert len({rung_seed(p, r) for p in (5, 9, 10) for r in (0.5e6, 1e6, 2e6)}) == 9


def test_exporters_reach_different_workers():
    from bench.collector_line_rate import exporter_addresses
    from config.workers import spread

    def worker(address, workers):
        return spread(workers, int.from_bytes(bytes(map(int, address.split("."))), "big"))

    assert exporter_addresses(1, spread=spread) == ("127.0.0.2", "127.0.0.3")
    for workers in (2, 3, 4):
        first, second = exporter_addresses(workers, spread=spread)
        assert worker(first, workers) != worker(second, workers)
