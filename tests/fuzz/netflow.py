"""Fuzz target: NetFlow v5 / v9 / IPFIX datagrams through the collector's
pipeline (collector.server.Pipeline: replay guard, collector.decode.Decoder,
attribution, rollup), the code the collector's socket loop calls.

Input layout: one control octet, then datagrams, each a 2-octet big-endian
length and that many octets (a short last one takes what is left). The
control octet's low nibble splits the datagrams into two batches, its high
nibble advances the clock between them by 10 s steps (past the 30 s hold of
data waiting for a template, and the small limits below force evictions),
and its top bit makes odd datagrams come from a second exporter.

Contract (collector.decode docstring, DESIGN "nothing it sends may crash
us or be counted twice"):

- ``ingest`` never raises; it returns the number of flows it decoded.
- The flows are a FLOW_DTYPE array: ``v6`` is 0 or 1, an IPv4 flow has both
  high halves 0; at most one flow per 9 octets received (the smallest
  record with two addresses and a counter), at most 30 per v5 datagram.
- The decoder's books hold: held bytes and sets equal what is held and stay
  under the limits, template bytes equal the templates' sizes, the template
  count stays under its limit, counters are non-negative integers.
- The same batch sent again gives no flow: each datagram that decoded is
  refused as a replay (junk is never remembered), no flow counted twice.
"""

from __future__ import annotations

from tests.fuzz import check

INSTRUMENT = ["collector"]
EXPORTERS = ("192.0.2.1", "192.0.2.2")
NOW = 1_700_000_000.0


def split(data: bytes) -> tuple[int, list[bytes]]:
    if not data:
        return 0, []
    control, position, datagrams = data[0], 1, []
    while position < len(data) and len(datagrams) < 64:
        size = int.from_bytes(data[position:position + 2], "big")
        position += 2
        datagrams.append(data[position:position + size])
        position += size
    return control, datagrams


def join(control: int, datagrams) -> bytes:
    """The inverse of ``split`` (seeds and regression tests)."""
    return bytes((control,)) + b"".join(len(d).to_bytes(2, "big") + d for d in datagrams)


def setup():
    import numpy as np

    from collector.attribute import AddressTable, Assignment
    from collector.decode import FLOW_DTYPE, DecoderLimits
    from collector.server import Pipeline

    table = AddressTable([Assignment(1, "10.0.0.0/24"), Assignment(2, "2001:db8::/64"),
                          Assignment(3, "192.0.2.77")])
    limits = DecoderLimits(max_templates=4, max_template_bytes=4096, hold_seconds=30.0,
                           max_held_bytes=2048, max_held_sets=4)

    def check_books(decoder) -> None:
        held = [p for pendings in decoder.held.values() for p in pendings]
        check(all(decoder.held.values()), "an empty list is left in held")
        check(decoder.held_bytes == sum(len(p.body) for p in held), "held_bytes drifted")
        check(decoder.held_sets == len(held), "held_sets drifted")
        check(decoder.held_bytes <= limits.max_held_bytes, "held bytes over the limit")
        check(decoder.held_sets <= limits.max_held_sets, "held sets over the limit")
        check(decoder.template_bytes == sum(t.size for t in decoder.templates.values()),
              "template_bytes drifted")
        check(len(decoder.templates) <= limits.max_templates, "templates over the limit")
        check(decoder.template_bytes <= limits.max_template_bytes, "template bytes over limit")
        for name, value in decoder.counters.items():
            check(isinstance(value, int) and value >= 0, f"counter {name} = {value!r}")

    def check_flows(flows, received: int, v5_datagrams: int, total: int) -> None:
        check(isinstance(flows, np.ndarray) and flows.dtype == FLOW_DTYPE, "not FLOW_DTYPE")
        if not len(flows):
            return
        v6 = flows["v6"]
        check(bool(np.isin(v6, (0, 1)).all()), "v6 is not 0 or 1")
        v4 = v6 == 0
        check(not flows["src_hi"][v4].any() and not flows["dst_hi"][v4].any(),
              "an IPv4 flow with a high address half")
        check(total <= received // 9 + 30 * v5_datagrams,
              f"{total} flows from {received} octets")

    def one_input(data: bytes) -> None:
        control, datagrams = split(data)
        cut = control & 0x0F
        step = 10.0 * (control >> 4 & 0x07)
        two = bool(control & 0x80)
        pairs = [(EXPORTERS[two and i % 2], d) for i, d in enumerate(datagrams)]
        batches = [pairs[:cut], pairs[cut:]]
        pipeline = Pipeline(table, limits=limits, replay_capacity=1024)
        decoder = pipeline.decoder
        seen = []
        original_decode = decoder.decode

        decoded = []

        def decode(items, now=None, **options):
            flows = original_decode(items, now, **options)
            seen.append(flows)
            if options.get("valid") is not None:
                decoded.append(int(options["valid"].sum()))
            return flows

        decoder.decode = decode
        received = v5 = total = 0
        for index, batch in enumerate(batches):
            received += sum(len(d) for _, d in batch)
            v5 += sum(1 for _, d in batch if d[:2] == b"\x00\x05")
            count = pipeline.ingest(batch, NOW + index * step)
            check(isinstance(count, int) and count == len(seen[-1]), "ingest's count")
            total += count
            check_flows(seen[-1], received, v5, total)
            check_books(decoder)
        replayed = pipeline.counters["replayed_packets"]
        again = pipeline.ingest(pairs, NOW + 2 * step + 1)
        check(again == 0, f"a replayed batch gave {again} flows")
        # Only what decoded is remembered (junk must not push real packets
        # out of the replay memory): each of those is a replay now, and
        # nothing beyond the datagrams sent.
        again_replayed = pipeline.counters["replayed_packets"] - replayed
        check(sum(decoded[:len(batches)]) <= again_replayed <= len(pairs),
              "a replayed datagram was not counted as one")
        check_books(decoder)

    return one_input


def seeds() -> dict[str, bytes]:
    """Packets the collector tests build (tests/netflow_packets.py)."""
    from tests import netflow_packets as nf

    flows = [dict(src="10.0.0.5", dst="198.51.100.7", bytes=1500, packets=3),
             dict(src="198.51.100.7", dst="10.0.0.5", bytes=64000, packets=50, proto=17)]
    v6_flows = [dict(src="2001:db8::5", dst="2001:db8:ffff::1", bytes=900, packets=2)]
    options = nf.options_template_set(10, 300, [(149, 4)], [(305, 4), (306, 4)])
    options_data = nf.raw_set(300, (1).to_bytes(4, "big") + (1).to_bytes(4, "big")
                              + (99).to_bytes(4, "big"))
    varlen = nf.template_set(10, 400, [(8, 4), (12, 4), (1, 4), (82, 65535)])
    varlen_data = nf.raw_set(400, bytes([10, 0, 0, 5, 198, 51, 100, 7]) + (700).to_bytes(4, "big")
                             + b"\x04eth0")
    v9_options = nf.options_template_set(9, 257, [(1, 4)], [(34, 4)])
    v9_options_data = nf.raw_set(257, (1).to_bytes(4, "big") + (10).to_bytes(4, "big"))
    return {
        "v5": join(0x00, [nf.v5_packet(flows, sequence=10)]),
        "v5_sampled_two": join(0x01, [nf.v5_packet(flows, sampling=0x4000 | 10),
                                      nf.v5_packet(flows[:1], sequence=2)]),
        "v9": join(0x00, [nf.v9_packet([nf.template_set(9, 256, nf.V9_V4_TEMPLATE),
                                        nf.data_set(256, nf.V9_V4_TEMPLATE, flows)])]),
        "v9_options_sampling": join(0x00, [nf.v9_packet([
            v9_options, v9_options_data, nf.template_set(9, 256, nf.V9_V4_TEMPLATE),
            nf.data_set(256, nf.V9_V4_TEMPLATE, flows)])]),
        "v9_data_before_template": join(0x11, [
            nf.v9_packet([nf.data_set(256, nf.V9_V4_TEMPLATE, flows)], sequence=1),
            nf.v9_packet([nf.template_set(9, 256, nf.V9_V4_TEMPLATE)], sequence=2)]),
        "ipfix_v4": join(0x00, [nf.ipfix_packet([nf.template_set(10, 256, nf.V4_TEMPLATE),
                                                 nf.data_set(256, nf.V4_TEMPLATE, flows)])]),
        "ipfix_v6": join(0x00, [nf.ipfix_packet([nf.template_set(10, 258, nf.V6_TEMPLATE),
                                                 nf.data_set(258, nf.V6_TEMPLATE, v6_flows)])]),
        "ipfix_options_varlen": join(0x80, [
            nf.ipfix_packet([options, options_data]),
            nf.ipfix_packet([varlen, varlen_data], sequence=1)]),
        "ipfix_withdraw": join(0x21, [
            nf.ipfix_packet([nf.template_set(10, 256, nf.V4_TEMPLATE)]),
            nf.ipfix_packet([nf.raw_set(2, (256).to_bytes(2, "big") + bytes(2)),
                             nf.data_set(256, nf.V4_TEMPLATE, flows)], sequence=0)]),
    }
