"""NetFlow v5/v9/IPFIX decoding: templates, sequences, sampling, bad input."""

import ipaddress
import random
import struct
import zlib

import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st

from collector.decode import FLOW_DTYPE, Decoder, DecoderLimits
from tests.netflow_packets import (V4_TEMPLATE, V6_TEMPLATE, V9_V4_TEMPLATE, data_set,
                                   ip4, ipfix_packet, options_template_set, raw_set,
                                   template_set, v5_packet, v9_packet)

EXPORTER = "192.0.2.1"


def flows(n, src="10.0.0.{i}", dst="203.0.113.9", size=100, **extra):
    return [dict(src=src.format(i=i + 1), dst=dst, bytes=size * (i + 1), packets=i + 1, **extra)
            for i in range(n)]


def decode(decoder, *packets, now=1000.0, exporter=EXPORTER):
    return decoder.decode([(exporter, p) for p in packets], now=now)


def test_v5_records_become_an_array():
    d = Decoder()
    out = decode(d, v5_packet(flows(3), unix_secs=1_700_000_000, uptime_ms=60_000),
                 v5_packet(flows(2, size=7), sequence=3))
    assert out.dtype == FLOW_DTYPE and len(out) == 5
    assert out["src_lo"][:3].tolist() == [ip4("10.0.0.1"), ip4("10.0.0.2"), ip4("10.0.0.3")]
    assert out["dst_lo"][0] == ip4("203.0.113.9") and not out["v6"].any()
    assert out["bytes"].tolist() == [100, 200, 300, 7, 14]
    assert out["packets"].tolist() == [1, 2, 3, 1, 2]
    assert out["time"][0] == 1_700_000_000
    assert d.counters["flows"] == 5 and d.counters["sequence_lost_flows"] == 0


def test_v5_flow_time_is_its_start_not_the_export_time():
    packet = v5_packet([dict(src="10.0.0.1", dst="1.1.1.1", bytes=1, first_ms=40_000)],
                       unix_secs=1_700_000_000, uptime_ms=100_000)
    assert decode(Decoder(), packet)["time"][0] == 1_700_000_000 - 60


def test_v5_sequence_gaps_are_counted_exactly_per_engine():
    d = Decoder()
    decode(d, v5_packet(flows(2), sequence=100),
           v5_packet(flows(3), sequence=102),        # in order
           v5_packet(flows(1), sequence=110),        # 5 flows lost (105..109)
           v5_packet(flows(4), sequence=0, engine=(1, 2)),   # another engine: own counter
           v5_packet(flows(1), sequence=111 + 7))    # 7 lost
    assert d.counters["sequence_lost_flows"] == 12


def test_v5_sampling_interval_from_the_header():
    packet = v5_packet(flows(1, size=50), sampling=(1 << 14) | 100)
    out = decode(Decoder(), packet)
    assert out["bytes"][0] == 5000 and out["packets"][0] == 100


def test_v9_template_then_data_and_sequence_per_source_id():
    d = Decoder()
    tpl = template_set(9, 256, V9_V4_TEMPLATE)
    out = decode(d, v9_packet([tpl, data_set(256, V9_V4_TEMPLATE, flows(4))], sequence=7),
                 v9_packet([data_set(256, V9_V4_TEMPLATE, flows(2))], sequence=8),
                 v9_packet([data_set(256, V9_V4_TEMPLATE, flows(2))], sequence=12))
    assert len(out) == 8
    assert out["bytes"].sum() == 100 + 200 + 300 + 400 + 2 * (100 + 200)
    assert d.counters["sequence_lost_packets"] == 3
    # The same template id from another source id is a different template.
    other = decode(d, v9_packet([data_set(256, V9_V4_TEMPLATE, flows(1))], source_id=9))
    assert len(other) == 0 and d.counters["sets_unknown_template"] == 1


def test_data_before_its_template_is_held_then_decoded():
    d = Decoder()
    early = decode(d, v9_packet([data_set(300, V9_V4_TEMPLATE, flows(3))], sequence=1), now=10)
    assert len(early) == 0 and d.held_sets == 1
    late = decode(d, v9_packet([template_set(9, 300, V9_V4_TEMPLATE)], sequence=2), now=12)
    assert late["bytes"].tolist() == [100, 200, 300]
    assert d.held_sets == 0 and d.counters["held_sets_decoded"] == 1


def test_held_data_expires_and_is_counted_dropped():
    d = Decoder(DecoderLimits(hold_seconds=5))
    decode(d, ipfix_packet([data_set(400, V4_TEMPLATE, flows(3))]), now=10)
    decode(d, ipfix_packet([]), now=16)
    assert d.counters["held_sets_dropped"] == 1 and d.held_sets == 0
    out = decode(d, ipfix_packet([template_set(10, 400, V4_TEMPLATE)]), now=17)
    assert len(out) == 0


def test_held_data_is_bounded_in_bytes():
    d = Decoder(DecoderLimits(max_held_bytes=2000))
    for i in range(50):
        decode(d, ipfix_packet([data_set(500 + i, V4_TEMPLATE, flows(10))]), now=1)
    assert d.held_bytes <= 2000 and d.counters["held_sets_dropped"] > 0


def test_ipfix_template_redefinition_and_withdrawal():
    d = Decoder()
    decode(d, ipfix_packet([template_set(10, 256, V4_TEMPLATE)]))
    shorter = [(8, 4), (12, 4), (1, 4)]
    out = decode(d, ipfix_packet([template_set(10, 256, shorter),
                                  data_set(256, shorter, flows(2))]))
    assert out["bytes"].tolist() == [100, 200] and d.counters["templates_redefined"] == 1
    withdraw = raw_set(2, struct.pack(">HH", 256, 0))
    decode(d, ipfix_packet([withdraw]))
    assert d.template_count() == 0 and d.counters["templates_withdrawn"] == 1
    assert len(decode(d, ipfix_packet([data_set(256, shorter, flows(1))]))) == 0


def test_ipfix_sequence_counts_data_records():
    d = Decoder()
    tpl = template_set(10, 256, V4_TEMPLATE)
    decode(d, ipfix_packet([tpl, data_set(256, V4_TEMPLATE, flows(5))], sequence=0),
           ipfix_packet([data_set(256, V4_TEMPLATE, flows(3))], sequence=5),
           ipfix_packet([data_set(256, V4_TEMPLATE, flows(2))], sequence=8 + 11))
    assert d.counters["sequence_lost_flows"] == 11


def test_v9_options_sampling_interval_applies_to_data():
    d = Decoder()
    options = options_template_set(9, 257, scope=[(1, 4)], options=[(34, 4)])
    sampling = raw_set(257, struct.pack(">II", 0, 64))
    out = decode(d, v9_packet([options, sampling, template_set(9, 256, V9_V4_TEMPLATE),
                               data_set(256, V9_V4_TEMPLATE, flows(2))]))
    assert out["bytes"].tolist() == [6400, 12800] and out["packets"].tolist() == [64, 128]


def test_ipfix_sampling_packet_interval_and_space():
    d = Decoder()
    options = options_template_set(10, 258, scope=[(149, 4)], options=[(305, 4), (306, 4)])
    sampling = raw_set(258, struct.pack(">III", 0, 1, 9))   # 1 of every 10 packets
    out = decode(d, ipfix_packet([options, sampling, template_set(10, 256, V4_TEMPLATE),
                                  data_set(256, V4_TEMPLATE, flows(1))]))
    assert out["bytes"].tolist() == [1000]


def test_ipv6_flows():
    d = Decoder()
    out = decode(d, ipfix_packet([template_set(10, 260, V6_TEMPLATE),
                                  data_set(260, V6_TEMPLATE,
                                           flows(2, src="2001:db8:1::{i}", dst="2a00:1450::1"))]))
    assert out["v6"].tolist() == [1, 1]
    address = int(ipaddress.IPv6Address("2001:db8:1::2"))
    assert out["src_hi"][1] == address >> 64 and out["src_lo"][1] == address & (2**64 - 1)
    assert out["bytes"].tolist() == [100, 200]


def test_ipfix_variable_length_fields_and_reduced_size_counters():
    d = Decoder()
    # src, dst, a variable-length string (IE 96), octets in 3 bytes, packets in 1 byte.
    body = struct.pack(">HH", 270, 5) + struct.pack(">HHHHHHHHHH", 8, 4, 12, 4, 96, 65535,
                                                     1, 3, 2, 1)
    records = b""
    for i, name in enumerate([b"http", b"x" * 300, b""]):
        prefix = bytes([len(name)]) if len(name) < 255 else b"\xff" + struct.pack(">H", len(name))
        records += (ipaddress.IPv4Address(f"10.0.0.{i + 1}").packed + bytes([8, 8, 8, 8])
                    + prefix + name + (70000 + i).to_bytes(3, "big") + bytes([i + 1]))
    out = decode(d, ipfix_packet([raw_set(2, body), raw_set(270, records)]))
    assert out["bytes"].tolist() == [70000, 70001, 70002]
    assert out["packets"].tolist() == [1, 2, 3]
    assert out["src_lo"].tolist() == [ip4("10.0.0.1"), ip4("10.0.0.2"), ip4("10.0.0.3")]


def test_bad_input_is_counted_and_dropped():
    d = Decoder()
    good = v5_packet(flows(2))
    absurd = raw_set(2, struct.pack(">HH", 256, 3) + struct.pack(">HHHHHH", 8, 4, 1, 0, 2, 4))
    huge = raw_set(2, struct.pack(">HH", 257, 3) + struct.pack(">HHHHHH", 8, 4, 1, 60000, 2, 4))
    out = decode(d, b"", b"\x00\x05", good[:30], b"\x00\x07" + good[2:],
                 good[:2] + b"\x00\x00" + good[4:],               # count 0
                 ipfix_packet([absurd, huge]),
                 struct.pack(">HHIII", 10, 500, 0, 0, 0),         # length beyond the datagram
                 v9_packet([]) + b"\x01\x00\xff\xff", good)
    assert len(out) == 2
    assert d.counters["drops_truncated"] >= 3 and d.counters["drops_bad_version"] == 1
    assert d.counters["templates_rejected"] == 2 and d.counters["drops_malformed"] >= 2
    assert d.template_count() == 0


def test_template_flood_keeps_memory_under_the_cap():
    limits = DecoderLimits(max_templates=500, max_template_bytes=200_000)
    d = Decoder(limits)
    rng = random.Random(4)
    for batch in range(40):
        packets = []
        for _ in range(25):
            sets = []
            for _ in range(10):
                fields = [(rng.randrange(1, 400), rng.choice([1, 2, 4, 8, 16]))
                          for _ in range(rng.randrange(1, 60))]
                sets.append(template_set(10, rng.randrange(256, 65535), fields))
            packets.append(ipfix_packet(sets, domain=rng.randrange(1000)))
        decode(d, *packets, exporter=f"198.51.100.{batch}")
        assert d.template_count() <= 500 and d.template_bytes <= 200_000
    assert d.counters["templates_learned"] > 5000 and d.counters["templates_evicted"] > 0
    # Still decodes normal traffic afterwards.
    out = decode(d, ipfix_packet([template_set(10, 256, V4_TEMPLATE),
                                  data_set(256, V4_TEMPLATE, flows(3))]))
    assert len(out) == 3


def _valid_packets():
    return [
        v5_packet(flows(3)),
        v9_packet([template_set(9, 256, V9_V4_TEMPLATE), data_set(256, V9_V4_TEMPLATE, flows(3)),
                   options_template_set(9, 257, [(1, 4)], [(34, 4)]),
                   raw_set(257, struct.pack(">II", 0, 10))]),
        ipfix_packet([template_set(10, 256, V6_TEMPLATE),
                      data_set(256, V6_TEMPLATE, flows(2, src="2001:db8::{i}", dst="::1")),
                      options_template_set(10, 258, [(149, 4)], [(305, 4), (306, 4)]),
                      raw_set(258, struct.pack(">III", 0, 0, 0))]),
    ]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_decoders_never_crash(data):
    d = Decoder(DecoderLimits(max_templates=50, max_held_sets=20))
    base = bytearray(data.draw(st.sampled_from(_valid_packets())))
    for _ in range(data.draw(st.integers(0, 12))):
        position = data.draw(st.integers(0, len(base) - 1))
        base[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(base)))
    noise = data.draw(st.binary(max_size=300))
    version = data.draw(st.sampled_from([b"\x00\x05", b"\x00\x09", b"\x00\x0a", b""]))
    out = decode(d, bytes(base), bytes(base[:cut]), version + noise)
    assert out.dtype == FLOW_DTYPE
    assert d.counters["packets"] == 3
    assert np.all(out["v6"] <= 1)


def test_ipfix_uptime_times_use_the_system_init_time_from_options():
    d = Decoder()
    fields = [(8, 4), (12, 4), (22, 4), (21, 4), (1, 4), (2, 4)]
    data = data_set(256, fields, [dict(src="10.0.0.1", dst="1.1.1.1", bytes=5,
                                       first_ms=90_000, last_ms=95_000)])
    # Without the exporter's boot time the export time stands in.
    before = decode(d, ipfix_packet([template_set(10, 256, fields), data],
                                    export_time=1_700_000_500))
    assert before["time"].tolist() == [1_700_000_500]
    options = options_template_set(10, 258, [(144, 4)], [(160, 8)])
    init = raw_set(258, struct.pack(">IQ", 0, 1_700_000_000_000))
    after = decode(d, ipfix_packet([options, init, data], export_time=1_700_000_500))
    assert after["time"].tolist() == [1_700_000_090]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["192.0.2.1", "192.0.2.2"]),     # exporter
                          st.sampled_from([(0, 0), (1, 2)]),                # engine
                          st.integers(0, 4) | st.just(2**32 - 2),          # sequence step
                          st.integers(-1, 31),                              # flow count
                          st.sampled_from(["ok", "ok", "ok", "short", "extra", "extra48",
                                           "tiny"]),
                          st.sampled_from([0, (1 << 14) | 10])),           # sampling
                min_size=1, max_size=40))
def test_v5_batch_decodes_as_one_datagram_at_a_time(packets):
    """The batch path (header arrays, vectorised sequence gaps) must count
    exactly what decoding the same datagrams one by one counts: several
    exporters and engines interleaved, late packets, bad counts, truncation."""
    sequence = {}
    datagrams = []
    for exporter, engine, step, count, shape, sampling in packets:
        key = (exporter, engine)
        sequence[key] = (sequence.get(key, 1000) + step) & 0xFFFFFFFF
        records = flows(max(count, 0) or 1, size=3)[:max(count, 0)]
        data = v5_packet(records, sequence=sequence[key], engine=engine, sampling=sampling) \
            if records else struct.pack(">HHIIIIBBH", 5, 0, 1, 1, 0, 1, 0, 0, 0)
        if count > 30:      # a count beyond the v5 maximum
            data = data[:2] + struct.pack(">H", count) + data[4:]
        # "ok" batches take the joined-buffer path; "extra48" keeps every
        # length a multiple of 24 but has trailing octets; "extra" does not.
        data = {"ok": data, "short": data[:-5], "extra": data + b"\0" * 7,
                "extra48": data + b"\0" * 48, "tiny": data[:20]}[shape]
        datagrams.append((exporter, data))
    together, apart = Decoder(), Decoder()
    batch = together.decode(datagrams, now=1000.0)
    single = [apart.decode([datagram], now=1000.0) for datagram in datagrams]
    single = np.concatenate(single) if single else np.zeros(0, FLOW_DTYPE)
    assert batch.tobytes() == single.tobytes()
    assert dict(together.counters) == dict(apart.counters)
    assert together.sequences == apart.sequences


def test_a_crc_collision_between_two_v5_packets_is_not_a_replay():
    """Two different v5 packets with the same timestamps whose CRC-32s
    collide (found by a birthday search) still get different replay keys:
    the key carries the flow sequence number."""
    from collector.decode import packet_key

    rng = random.Random(7)
    seen = {}
    pair = None
    while pair is None:
        flow = dict(src="10.0.0.1", dst="203.0.113.9", bytes=rng.getrandbits(32), packets=1)
        data = v5_packet([flow], sequence=rng.getrandbits(32), unix_secs=1_700_000_000,
                         uptime_ms=100_000)
        crc = zlib.crc32(data)
        if crc in seen and seen[crc] != data:
            pair = seen[crc], data
        seen[crc] = data
    first, second = pair
    assert first[4:16] == second[4:16]      # the old key's header part: equal
    assert packet_key("x", first, 0) != packet_key("x", second, 0)
    assert packet_key("x", first, 0) == packet_key("x", bytes(first), 0)


# --- exporter uptime wrap (issue 13) ---------------------------------------------

WRAP = 2**32


def test_v5_flow_started_before_the_uptime_wrap_is_not_in_the_future():
    """sysUptime wraps every 49.7 days: a flow that started 5 s before the
    wrap and was exported 1 s after it started 6 s before the export."""
    packet = v5_packet([dict(src="10.0.0.1", dst="1.1.1.1", bytes=1, first_ms=WRAP - 5000,
                             last_ms=WRAP - 1000),
                        dict(src="10.0.0.1", dst="1.1.1.1", bytes=1, first_ms=WRAP - 5000,
                             last_ms=500)],
                       unix_secs=1_700_000_000, uptime_ms=1000)
    out = decode(Decoder(), packet)
    assert out["time"].tolist() == [1_700_000_000 - 6, 1_700_000_000 - 6]
    assert out["end"].tolist() == [1_700_000_000 - 2, 1_700_000_000 - 1]


def test_v5_start_a_little_after_the_export_is_the_export_time():
    packet = v5_packet([dict(src="10.0.0.1", dst="1.1.1.1", bytes=1, first_ms=100_300,
                             last_ms=100_400)],
                       unix_secs=1_700_000_000, uptime_ms=100_000)
    out = decode(Decoder(), packet)
    assert out["time"].tolist() == [1_700_000_000] and out["end"].tolist() == [1_700_000_000]


def test_v5_batch_of_several_exporters_across_the_wrap():
    before = v5_packet([dict(src="10.0.0.1", dst="1.1.1.1", bytes=1, first_ms=WRAP - 61_000,
                             last_ms=WRAP - 1000)],
                       unix_secs=1_700_000_000, uptime_ms=WRAP - 500)
    after = v5_packet([dict(src="10.0.0.2", dst="1.1.1.1", bytes=1, first_ms=WRAP - 61_000,
                            last_ms=200)],
                      unix_secs=1_700_000_001, uptime_ms=500, sequence=1)
    out = Decoder().decode([("192.0.2.1", before), ("192.0.2.2", after)], now=1000.0)
    assert out["time"].tolist() == [1_700_000_000 - 61, 1_700_000_001 - 62]
    assert out["end"].tolist() == [1_700_000_000 - 1, 1_700_000_000]


def test_v9_flow_started_before_the_uptime_wrap_is_not_in_the_future():
    d = Decoder()
    record = [dict(src="10.0.0.1", dst="1.1.1.1", bytes=10, first_ms=WRAP - 120_000,
                   last_ms=2_000)]
    out = decode(d, v9_packet([template_set(9, 256, V9_V4_TEMPLATE),
                               data_set(256, V9_V4_TEMPLATE, record)],
                              unix_secs=1_700_000_000, uptime_ms=3_000))
    assert out["time"].tolist() == [1_700_000_000 - 123]
    assert out["end"].tolist() == [1_700_000_000 - 1]


def test_ipfix_uptime_times_across_the_wrap_with_the_system_init_time():
    """IPFIX flowStartSysUpTime is 32-bit too: 50 days after boot it has wrapped."""
    d = Decoder()
    fields = [(8, 4), (12, 4), (22, 4), (21, 4), (1, 4), (2, 4)]
    boot_ms = 1_700_000_000_000
    export = 1_700_000_000 + 50 * 86400
    uptime = (export * 1000 - boot_ms) % WRAP
    data = data_set(256, fields, [dict(src="10.0.0.1", dst="1.1.1.1", bytes=5,
                                       first_ms=(uptime - 30_000) % WRAP,
                                       last_ms=(uptime - 10_000) % WRAP)])
    options = options_template_set(10, 258, [(144, 4)], [(160, 8)])
    init = raw_set(258, struct.pack(">IQ", 0, boot_ms))
    out = decode(d, ipfix_packet([options, init, template_set(10, 256, fields), data],
                                 export_time=export))
    assert out["time"].tolist() == [export - 30] and out["end"].tolist() == [export - 10]


def test_flow_end_comes_from_absolute_end_fields():
    d = Decoder()
    fields = V4_TEMPLATE + [(151, 4)]
    record = [dict(src="10.0.0.1", dst="1.1.1.1", bytes=10, time=1_700_000_000)]
    body = data_set(256, fields, record)
    out = decode(d, ipfix_packet([template_set(10, 256, fields), body]))
    assert out["time"].tolist() == [1_700_000_000] and out["end"].tolist() == [1_700_000_000]


# --- sequence numbers only from validated headers (issue 13) ---------------------

def test_junk_v9_headers_add_no_lost_packets():
    d = Decoder()
    tpl = template_set(9, 256, V9_V4_TEMPLATE)
    decode(d, v9_packet([tpl, data_set(256, V9_V4_TEMPLATE, flows(2))], sequence=10))
    rng = random.Random(3)
    junk = []
    for _ in range(300):
        header = struct.pack(">HHIIII", 9, rng.randrange(3), 100_000, 1_700_000_000,
                             rng.getrandbits(32), 0)
        # A set whose length runs past the datagram; a set shorter than its header.
        junk.append(header + struct.pack(">HH", 256, 900) + rng.randbytes(100))
        junk.append(header + struct.pack(">HH", 256, 2) + rng.randbytes(20))
        # Well-formed sets under a record count no packet of this size can hold.
        junk.append(header[:2] + struct.pack(">H", 60_000) + header[4:]
                    + data_set(256, V9_V4_TEMPLATE, flows(1)))
    out = decode(d, *junk)
    assert len(out) == 0 and d.counters["drops_malformed"] == 900
    decode(d, v9_packet([data_set(256, V9_V4_TEMPLATE, flows(2))], sequence=11))
    assert d.counters["sequence_lost_packets"] == 0 and d.counters["sequence_late"] == 0
    assert d.counters["flows"] == 4


def test_junk_ipfix_headers_add_no_lost_flows():
    d = Decoder()
    tpl = template_set(10, 256, V4_TEMPLATE)
    decode(d, ipfix_packet([tpl, data_set(256, V4_TEMPLATE, flows(5))], sequence=0))
    rng = random.Random(5)
    junk = []
    for _ in range(300):
        # A message header that claims less than the datagram holds.
        junk.append(struct.pack(">HHIII", 10, 16, 1_700_000_000, rng.getrandbits(32), 0)
                    + rng.randbytes(rng.randrange(1, 200)))
    out = decode(d, *junk)
    assert len(out) == 0 and d.counters["drops_malformed"] == 300
    decode(d, ipfix_packet([data_set(256, V4_TEMPLATE, flows(3))], sequence=5))
    assert d.counters["sequence_lost_flows"] == 0 and d.counters["sequence_late"] == 0


def test_decode_reports_which_datagrams_decoded():
    d = Decoder()
    packets = [v5_packet(flows(1)), b"\x00\x05" + b"\xff" * 40, b"junk",
               v9_packet([template_set(9, 256, V9_V4_TEMPLATE)]),
               ipfix_packet([]) + b"\0", ipfix_packet([data_set(999, V4_TEMPLATE, flows(1))]),
               v5_packet(flows(2), sequence=1)]
    valid = np.zeros(len(packets), bool)
    d.decode([(EXPORTER, p) for p in packets], now=1000.0, valid=valid)
    # Data held for a template still to come is a packet that decoded.
    assert valid.tolist() == [True, False, False, True, False, True, True]


_FIELDS = {9: V9_V4_TEMPLATE, 10: V4_TEMPLATE}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from([9, 10]),                          # version
                          st.sampled_from(["192.0.2.1", "192.0.2.2"]),      # exporter
                          st.sampled_from([0, 7]),                          # domain
                          st.sampled_from([256, 300]),                      # template id
                          st.integers(0, 3) | st.just(2**32 - 2),           # sequence step
                          st.integers(0, 6),                                # flows
                          st.sampled_from(["data", "data", "data", "template+data",
                                           "template", "sampling", "padded", "short",
                                           "second set", "withdraw"])),
                min_size=1, max_size=40))
def test_v9_and_ipfix_inline_path_decodes_as_the_whole_way(packets):
    """Decoder.decode takes the common packet (one data set of a known
    fixed-length template filling it) inline; the flows, counters,
    sequences and held data must be those of the whole way (_v9, _ipfix)
    for any mix: templates learnt, redefined and withdrawn in the batch,
    data before its template, sampling options, padding, truncation,
    sequence gaps and late packets, two exporters and domains."""
    sequence = {}
    datagrams = []
    for version, exporter, domain, tid, step, count, shape in packets:
        fields = _FIELDS[version]
        key = (version, exporter, domain)
        sequence[key] = (sequence.get(key, 1000) + step) & 0xFFFFFFFF
        records = flows(count, size=7)
        sets = {"data": [data_set(tid, fields, records)],
                "template+data": [template_set(version, tid, fields),
                                  data_set(tid, fields, records)],
                "template": [template_set(version, tid, fields)],
                "sampling": [options_template_set(version, 400, [(1, 4)] if version == 9
                                                  else [(144, 4)], [(34, 4)]),
                             raw_set(400, struct.pack(">II", 0, 4))],
                "padded": [data_set(tid, fields, records) + b"\0\0"],
                "short": [data_set(tid, fields, records)],
                "second set": [data_set(tid, fields, records), data_set(tid, fields, records)],
                "withdraw": [template_set(version, tid, [])]}[shape]
        if shape == "padded":   # the set's length takes the padding in
            body = sets[0]
            sets = [body[:2] + struct.pack(">H", len(body)) + body[4:]]
        if version == 9:
            data = v9_packet(sets, sequence=sequence[key], source_id=domain)
        else:
            data = ipfix_packet(sets, sequence=sequence[key], domain=domain)
        if shape == "short":
            data = data[:-3]
        datagrams.append((exporter, data))
    inline, whole = Decoder(), Decoder()
    whole.inline = False
    for _ in range(2):          # the second time every template is known
        got = inline.decode(datagrams, now=1000.0)
        expected = whole.decode(datagrams, now=1000.0)
        assert got.tobytes() == expected.tobytes()
        assert dict(inline.counters) == dict(whole.counters)
        assert inline.sequences == whole.sequences
        assert list(inline.held) == list(whole.held)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([b"\x00\x05", b"\x00\x09", b"\x00\x0a", b"\x05\x00", b""]),
       st.binary(max_size=1500), st.integers(0, 2**32 - 1))
def test_packet_keys_keep_their_stored_format(head, body, seed):
    """Keys are stored (collector_replay_sets) and read back by later
    versions: the CRC-32 of the first KEY_BYTES octets started from the
    exporter's seed xor the length, then octets 4..12 and 16..20 (v5) or
    4..16 of the header, zero-padded to 12."""
    from collector.decode import KEY_BYTES, packet_key
    data = head + body
    header = data[4:12] + data[16:20] if data[:2] == b"\x00\x05" else data[4:16]
    crc = zlib.crc32(data[:KEY_BYTES], seed ^ len(data))
    assert packet_key("192.0.2.1", data, seed) == \
        crc.to_bytes(4, "big") + header + b"\0" * (12 - len(header))
