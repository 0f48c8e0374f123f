"""collector.server.Pipeline without sockets or a database: what junk may change."""

import random
import struct

from collector.server import Pipeline
from tests.netflow_packets import (V4_TEMPLATE, V9_V4_TEMPLATE, data_set, ipfix_packet,
                                   template_set, v5_packet, v9_packet)

EXPORTER = "192.0.2.1"


def junk(count, seed=1):
    """Datagrams an exporter never sends: random bytes, and random bytes
    behind a plausible v5, v9 or IPFIX version number."""
    rng = random.Random(seed)
    out = []
    for n in range(count):
        body = rng.randbytes(rng.randrange(0, 1400))
        out.append(([b"", b"\x00\x05", b"\x00\x09", b"\x00\x0a"][n % 4] + body))
    return out


def test_junk_is_not_remembered_and_cannot_push_a_real_packet_out():
    pipeline = Pipeline(replay_capacity=64)
    real = v5_packet([dict(src="8.8.8.8", dst="100.64.0.1", bytes=1000)], sequence=0)
    pipeline.ingest([(EXPORTER, real)])
    assert len(pipeline.guard) == 1 and len(pipeline.guard.pending) == 1
    for start in range(0, 20_000, 1000):
        pipeline.ingest([(EXPORTER, d) for d in junk(1000, seed=start)])
    assert len(pipeline.guard) == 1 and len(pipeline.guard.pending) == 1
    assert pipeline.counters["drops"] == 20_000
    # The real packet is still remembered: its replay counts nothing.
    assert pipeline.ingest([(EXPORTER, real)]) == 0
    assert pipeline.counters["replayed_packets"] == 1
    assert pipeline.counters["flows"] == 1


def test_a_repeat_within_one_batch_is_a_replay_only_when_the_first_copy_decoded():
    pipeline = Pipeline()
    real = v5_packet([dict(src="8.8.8.8", dst="100.64.0.1", bytes=1000)], sequence=0)
    bad = b"\x00\x07" + b"\x01" * 50
    assert pipeline.ingest([(EXPORTER, real), (EXPORTER, bad), (EXPORTER, real),
                            (EXPORTER, bad)]) == 1
    assert pipeline.counters["replayed_packets"] == 1
    assert pipeline.counters["packets"] == 3 and pipeline.counters["drops"] == 2
    assert len(pipeline.guard) == 1


def test_malformed_v9_and_ipfix_packets_are_not_remembered_and_teach_nothing():
    pipeline = Pipeline()
    template = template_set(9, 256, V9_V4_TEMPLATE)
    good = data_set(256, V9_V4_TEMPLATE, [dict(src="8.8.8.8", dst="100.64.0.1", bytes=10)])
    # A template and a data set, then a set whose length runs past the end.
    broken = v9_packet([template, good])[:-2] + struct.pack(">HH", 300, 400) + b"\0" * 30
    assert pipeline.ingest([(EXPORTER, broken)]) == 0
    assert pipeline.decoder.template_count() == 0 and len(pipeline.guard) == 0
    message = ipfix_packet([template_set(10, 256, V4_TEMPLATE)])
    assert pipeline.ingest([(EXPORTER, message + b"\0" * 8)]) == 0       # trailing octets
    assert pipeline.decoder.template_count() == 0 and len(pipeline.guard) == 0
    assert pipeline.counters["drops_malformed"] == 2


# --- exporter allow-list and forced sampling (issue 13) ---------------------------

def test_datagrams_from_exporters_outside_the_allow_list_change_nothing():
    from collector.exporters import ExporterPolicy

    pipeline = Pipeline(policy=ExporterPolicy(["192.0.2.0/28", "2001:db8::1"]))
    packet = v5_packet([dict(src="8.8.8.8", dst="100.64.0.1", bytes=1000)], sequence=0)
    template = v9_packet([template_set(9, 256, V9_V4_TEMPLATE)], sequence=5)
    assert pipeline.ingest([("192.0.2.99", packet), ("198.51.100.1", template),
                            ("::ffff:192.0.2.200", packet), ("not an address", packet)]) == 0
    assert pipeline.counters["drops_exporter_not_allowed"] == 4
    assert pipeline.counters["drops"] == 4 and pipeline.counters["packets"] == 4
    assert len(pipeline.guard) == 0 and pipeline.decoder.template_count() == 0
    assert not pipeline.decoder.sequences
    # Allowed: inside the prefix, an IPv4-mapped form of it, the IPv6 address.
    assert pipeline.ingest([("192.0.2.3", packet)]) == 1
    assert pipeline.ingest([("::ffff:192.0.2.4", packet)]) == 1
    assert pipeline.ingest([("2001:db8::1", packet)]) == 1
    assert pipeline.counters["drops_exporter_not_allowed"] == 4


def test_a_forced_sampling_rate_replaces_what_the_exporter_says():
    from collector.exporters import ExporterPolicy
    from tests.netflow_packets import options_template_set, raw_set

    policy = ExporterPolicy([], {"192.0.2.0/24": 10, "192.0.2.7": 100})
    from collector.attribute import AddressTable, Assignment

    pipeline = Pipeline(policy=policy, table=AddressTable([Assignment(1, "100.64.0.1")]))
    flow = [dict(src="8.8.8.8", dst="100.64.0.1", bytes=50, packets=2)]
    # v5 header says 1 in 1000; the operator says 1 in 100 for this exporter.
    v5 = v5_packet(flow, sampling=(1 << 14) | 1000)
    # v9 options say 1 in 64, and the records carry a rate of 5 (IE 34).
    fields = V9_V4_TEMPLATE + [(34, 4)]
    v9 = v9_packet([options_template_set(9, 257, scope=[(1, 4)], options=[(34, 4)]),
                    raw_set(257, struct.pack(">II", 0, 64)), template_set(9, 256, fields),
                    data_set(256, fields, [dict(flow[0], sampling=5)])])
    ipfix = ipfix_packet([template_set(10, 256, V4_TEMPLATE),
                          data_set(256, V4_TEMPLATE, flow)])
    out = []
    original = pipeline.rollup.add_attributed
    pipeline.rollup.add_attributed = lambda result: (out.append(result), original(result))
    pipeline.ingest([("192.0.2.7", v5), ("192.0.2.7", v9), ("192.0.2.8", ipfix),
                     ("203.0.113.1", v5)])
    sizes = sorted(int(b) for result in out for b in result.bytes)
    # 192.0.2.7: 100 (most specific) twice; 192.0.2.8: 10; 203.0.113.1: its header's 1000.
    assert sizes == [500, 5000, 5000, 50000]
