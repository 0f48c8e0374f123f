"""Builders of NetFlow v5/v9/IPFIX export packets and pcap files, for tests and bench.

Written from RFC 3954 / RFC 7011 and the NetFlow v5 layout; independent of
collector.decode so a decoder bug is not mirrored here.
"""

from __future__ import annotations

import ipaddress
import struct

V5_RECORD = struct.Struct(">IIIHHIIIIHHBBBBHHBBH")


def ip4(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def v5_packet(flows, *, sequence=0, unix_secs=1_700_000_000, uptime_ms=100_000, sampling=0,
              engine=(0, 0)) -> bytes:
    """flows: iterable of dicts with src, dst (text), bytes, packets, first_ms and last_ms
    (uptime; last_ms defaults to first_ms: a flow of one instant), proto."""
    flows = list(flows)
    header = struct.pack(">HHIIIIBBH", 5, len(flows), uptime_ms, unix_secs, 0, sequence,
                         engine[0], engine[1], sampling)
    body = b"".join(
        V5_RECORD.pack(ip4(f["src"]), ip4(f["dst"]), 0, 0, 0, f.get("packets", 1), f["bytes"],
                       f.get("first_ms", uptime_ms),
                       f.get("last_ms", f.get("first_ms", uptime_ms)),
                       f.get("sport", 1000), f.get("dport", 80), 0, 0, f.get("proto", 6), 0,
                       0, 0, 0, 0, 0)
        for f in flows)
    return header + body


# A v9/IPFIX template: list of (ie, length). Field values per flow come from
# the flow dict under these names.
V4_TEMPLATE = [(8, 4), (12, 4), (1, 4), (2, 4), (4, 1), (150, 4)]
V6_TEMPLATE = [(27, 16), (28, 16), (1, 8), (2, 8), (4, 1), (150, 4)]
V9_V4_TEMPLATE = [(8, 4), (12, 4), (1, 4), (2, 4), (4, 1), (22, 4), (21, 4)]


def _value(ie: int, length: int, flow: dict, uptime_ms: int) -> bytes:
    if ie in (8, 12, 27, 28):
        address = ipaddress.ip_address(flow["src" if ie in (8, 27) else "dst"])
        return address.packed
    number = {1: flow.get("bytes", 0), 2: flow.get("packets", 1), 4: flow.get("proto", 6),
              150: flow.get("time", 1_700_000_000),
              151: flow.get("end", flow.get("time", 1_700_000_000)),
              22: flow.get("first_ms", uptime_ms),
              21: flow.get("last_ms", flow.get("first_ms", uptime_ms)),
              34: flow.get("sampling", 1)}.get(ie, 0)
    return number.to_bytes(length, "big")


def _set(set_id: int, body: bytes) -> bytes:
    pad = (-len(body)) % 4
    return struct.pack(">HH", set_id, 4 + len(body) + pad) + body + b"\0" * pad


def template_set(version: int, template_id: int, fields) -> bytes:
    body = struct.pack(">HH", template_id, len(fields))
    body += b"".join(struct.pack(">HH", ie, length) for ie, length in fields)
    return _set(0 if version == 9 else 2, body)


def options_template_set(version: int, template_id: int, scope, options) -> bytes:
    if version == 9:
        body = struct.pack(">HHH", template_id, 4 * len(scope), 4 * len(options))
    else:
        body = struct.pack(">HHH", template_id, len(scope) + len(options), len(scope))
    body += b"".join(struct.pack(">HH", ie, length) for ie, length in list(scope) + list(options))
    return _set(1 if version == 9 else 3, body)


def data_set(template_id: int, fields, flows, uptime_ms: int = 100_000) -> bytes:
    body = b"".join(b"".join(_value(ie, length, f, uptime_ms) for ie, length in fields)
                    for f in flows)
    return _set(template_id, body)


def raw_set(set_id: int, body: bytes) -> bytes:
    return _set(set_id, body)


def v9_packet(sets, *, sequence=0, source_id=0, unix_secs=1_700_000_000,
              uptime_ms=100_000) -> bytes:
    sets = list(sets)
    return struct.pack(">HHIIII", 9, len(sets), uptime_ms, unix_secs, sequence,
                       source_id) + b"".join(sets)


def ipfix_packet(sets, *, sequence=0, domain=0, export_time=1_700_000_000) -> bytes:
    body = b"".join(sets)
    return struct.pack(">HHIII", 10, 16 + len(body), export_time, sequence, domain) + body


# --- pcap ---------------------------------------------------------------------

def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f">{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def frame(src: str, dst: str, size: int, *, proto: str = "udp", sport=40000, dport=53) -> bytes:
    """An Ethernet frame whose IP packet is ``size`` bytes long (IPv4 or IPv6)."""
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    number = 6 if proto == "tcp" else 17
    if s.version == 4:
        l4_len = size - 20
        ethertype = 0x0800
    else:
        l4_len = size - 40
        ethertype = 0x86DD
    if proto == "tcp":
        l4 = struct.pack(">HHIIBBHHH", sport, dport, 1, 0, 5 << 4, 0x18, 65535, 0, 0)
    else:
        l4 = struct.pack(">HHHH", sport, dport, l4_len, 0)
    l4 += b"\0" * (l4_len - len(l4))
    if s.version == 4:
        header = struct.pack(">BBHHHBBH4s4s", 0x45, 0, size, 1, 0, 64, number, 0, s.packed,
                             d.packed)
        header = header[:10] + struct.pack(">H", _checksum(header)) + header[12:]
    else:
        header = struct.pack(">IHBB16s16s", 6 << 28, l4_len, number, 64, s.packed, d.packed)
    return b"\x02\0\0\0\0\x01\x02\0\0\0\0\x02" + struct.pack(">H", ethertype) + header + l4


def pcap(frames, start: float = 1_700_000_000.0, step: float = 0.001) -> bytes:
    """A classic pcap (microseconds, Ethernet link type) of ``frames``."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for index, data in enumerate(frames):
        stamp = start + index * step
        seconds = int(stamp)
        micros = int(round((stamp - seconds) * 1e6))
        out.append(struct.pack("<IIII", seconds, micros, len(data), len(data)) + data)
    return b"".join(out)
