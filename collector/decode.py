"""NetFlow v5, v9 (RFC 3954) and IPFIX (RFC 7011) datagrams → NumPy flow arrays.

Pure: bytes in, arrays and counters out; no sockets, no database.

Every decoder produces records of ``FLOW_DTYPE`` (native byte order):

- ``time``: flow start, Unix seconds (falls back to flow end, then export time)
- ``end``: flow end, Unix seconds, never before ``time`` (falls back to ``time``)
- ``src_hi``/``src_lo``, ``dst_hi``/``dst_lo``: addresses as two 64-bit halves;
  an IPv4 address is ``hi = 0, lo = address`` with ``v6 = 0``
- ``bytes``/``packets``: already multiplied by the sampling interval
- ``proto``

A datagram is never walked record by record: a NetFlow v5 payload is viewed
with ``np.frombuffer`` through a big-endian record dtype, and a v9/IPFIX data
set through a dtype built from its template. The only per-record Python loop
is for IPFIX templates with variable-length fields, whose record boundaries
can only be found by walking them (they are rare in flow exports).

Templates live in a bounded store keyed by (exporter, source id / observation
domain, template id); data sets that arrive before their template are held
for a bounded time and size, then decoded or counted as dropped.
"""

from __future__ import annotations

import struct
import zlib
import time as _time
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterable

import numpy as np

FLOW_DTYPE = np.dtype([
    ("time", "<i8"),
    ("end", "<i8"),
    ("src_hi", "<u8"), ("src_lo", "<u8"),
    ("dst_hi", "<u8"), ("dst_lo", "<u8"),
    ("v6", "u1"),
    ("proto", "u1"),
    ("bytes", "<u8"), ("packets", "<u8"),
])

EMPTY_FLOWS = np.zeros(0, FLOW_DTYPE)

# --- NetFlow v5 -----------------------------------------------------------

V5_HEADER = struct.Struct(">HHIIIIBBH")
V5_RECORD = np.dtype([
    ("src", ">u4"), ("dst", ">u4"), ("nexthop", ">u4"), ("input", ">u2"), ("output", ">u2"),
    ("packets", ">u4"), ("bytes", ">u4"), ("first", ">u4"), ("last", ">u4"),
    ("sport", ">u2"), ("dport", ">u2"), ("pad1", "u1"), ("tcp_flags", "u1"), ("proto", "u1"),
    ("tos", "u1"), ("src_as", ">u2"), ("dst_as", ">u2"), ("src_mask", "u1"), ("dst_mask", "u1"),
    ("pad2", ">u2"),
])
V5_HEADER_DTYPE = np.dtype([
    ("version", ">u2"), ("count", ">u2"), ("uptime", ">u4"), ("secs", ">u4"), ("nsecs", ">u4"),
    ("sequence", ">u4"), ("engine_type", "u1"), ("engine_id", "u1"), ("sampling", ">u2"),
])
assert V5_RECORD.itemsize == 48 and V5_HEADER.size == V5_HEADER_DTYPE.itemsize == 24
V5_MAX_RECORDS = 30

V9_HEADER = struct.Struct(">HHIIII")      # version, count, uptime, secs, sequence, source id
IPFIX_HEADER = struct.Struct(">HHIII")    # version, length, export time, sequence, domain
SET_HEADER = struct.Struct(">HH")
# A header and the first set's header, at once (Decoder.decode's inline path).
_IPFIX_ONE_SET = struct.Struct(">HHIIIHH")
_V9_ONE_SET = struct.Struct(">HHIIIIHH")

# Information elements we read (IANA numbers; v9 uses the same for these).
IE_OCTETS, IE_PACKETS, IE_PROTO = 1, 2, 4
IE_SRC4, IE_DST4, IE_SRC6, IE_DST6 = 8, 12, 27, 28
IE_LAST_UPTIME, IE_FIRST_UPTIME = 21, 22
IE_OUT_OCTETS, IE_OUT_PACKETS = 23, 24
IE_SAMPLING_INTERVAL, IE_SAMPLER_RANDOM_INTERVAL = 34, 50
IE_OCTETS_TOTAL, IE_PACKETS_TOTAL = 85, 86
IE_START_S, IE_END_S, IE_START_MS, IE_END_MS = 150, 151, 152, 153
IE_START_US, IE_END_US, IE_START_NS, IE_END_NS = 154, 155, 156, 157
IE_START_DELTA_US, IE_END_DELTA_US = 158, 159
IE_SYSTEM_INIT_MS = 160
IE_SAMPLING_PACKET_INTERVAL, IE_SAMPLING_PACKET_SPACE = 305, 306

# IE -> (semantic name, allowed lengths). Unsigned integers may use reduced
# size encoding (RFC 7011 6.2), so counters accept 1..8 octets.
_UINT = (1, 2, 3, 4, 5, 6, 7, 8)
KNOWN_FIELDS = {
    IE_OCTETS: ("octets", _UINT), IE_PACKETS: ("packets", _UINT),
    IE_OUT_OCTETS: ("out_octets", _UINT), IE_OUT_PACKETS: ("out_packets", _UINT),
    IE_OCTETS_TOTAL: ("octets_total", _UINT), IE_PACKETS_TOTAL: ("packets_total", _UINT),
    IE_PROTO: ("proto", (1,)),
    IE_SRC4: ("src4", (4,)), IE_DST4: ("dst4", (4,)),
    IE_SRC6: ("src6", (16,)), IE_DST6: ("dst6", (16,)),
    IE_FIRST_UPTIME: ("first_uptime", (4,)), IE_LAST_UPTIME: ("last_uptime", (4,)),
    IE_START_S: ("start_s", (4,)), IE_END_S: ("end_s", (4,)),
    IE_START_MS: ("start_ms", (8,)), IE_END_MS: ("end_ms", (8,)),
    IE_START_US: ("start_ntp", (8,)), IE_END_US: ("end_ntp", (8,)),
    IE_START_NS: ("start_ntp", (8,)), IE_END_NS: ("end_ntp", (8,)),
    IE_START_DELTA_US: ("start_delta_us", (4,)), IE_END_DELTA_US: ("end_delta_us", (4,)),
    IE_SYSTEM_INIT_MS: ("system_init_ms", (8,)),
    IE_SAMPLING_INTERVAL: ("sampling", _UINT), IE_SAMPLER_RANDOM_INTERVAL: ("sampling", _UINT),
    IE_SAMPLING_PACKET_INTERVAL: ("spi", _UINT), IE_SAMPLING_PACKET_SPACE: ("sps", _UINT),
}

_WRAP = 1 << 32          # sysUptime is a 32-bit count of milliseconds
_HALF_WRAP = 1 << 31


def uptime_offset(at, uptime) -> np.ndarray:
    """Milliseconds from the export (sysUptime ``uptime``) back to the
    sysUptime ``at`` a flow started or ended: zero or negative.

    Both are 32-bit counters that wrap every 49.7 days, so the difference is
    taken modulo 2^32 as a signed number: a flow that started just before
    the wrap and was exported just after it ("later" than the export, as
    plain numbers) started a little before the export, not 49.7 days after
    it. An instant a little after the export (an exporter's rounding) is the
    export itself; a flow cannot start after it is exported.
    """
    delta = np.asarray(at, np.int64) - uptime
    delta += _HALF_WRAP
    delta &= _WRAP - 1
    delta -= _HALF_WRAP
    return np.minimum(delta, 0, out=delta)


VARLEN = 65535
MAX_TEMPLATE_FIELDS = 256
MAX_RECORD_LENGTH = 8192
NTP_UNIX_OFFSET = 2208988800


class Counters(dict):
    """Named integer counters; missing names read as 0."""

    def __missing__(self, key):
        return 0

    def add(self, name: str, amount: int = 1) -> None:
        self[name] = self.get(name, 0) + int(amount)


@dataclass(frozen=True)
class Template:
    """A v9/IPFIX (options) template compiled to a NumPy dtype."""

    fields: tuple            # ((ie, length, enterprise), ...)
    scope_count: int         # options templates: number of scope fields; data: -1
    dtype: np.dtype | None   # fixed-length records; None when any field is variable
    record_length: int       # minimum length for variable-length templates
    names: frozenset         # semantic names present in ``dtype``
    fast: bool = False       # fixed-length flow records: decoded by the batched path
    itemsize: int = 0

    @property
    def is_options(self) -> bool:
        return self.scope_count >= 0


    @property
    def size(self) -> int:
        """Rough bytes of memory, for the template memory cap."""
        return 200 + 24 * len(self.fields)


class TemplateError(ValueError):
    pass


@lru_cache(maxsize=2048)
def compile_template(fields: tuple, scope_count: int = -1) -> Template:
    """Template fields → ``Template``; raises TemplateError on absurd input."""
    if not fields or len(fields) > MAX_TEMPLATE_FIELDS:
        raise TemplateError(f"template has {len(fields)} fields")
    names, formats, offsets, seen = [], [], [], set()
    offset, variable = 0, False
    for ie, length, enterprise in fields:
        if length == 0:
            raise TemplateError(f"field {ie} has length 0")
        if length == VARLEN:
            variable = True
            continue
        known = KNOWN_FIELDS.get(ie) if enterprise == 0 else None
        if known is not None and length in known[1] and known[0] not in seen:
            name = known[0]
            seen.add(name)
            if length == 16:
                names += [name + "_hi", name + "_lo"]
                formats += [">u8", ">u8"]
                offsets += [offset, offset + 8]
            else:
                names.append(name)
                formats.append(f">u{length}" if length in (1, 2, 4, 8) else f"({length},)u1")
                offsets.append(offset)
        offset += length
    if offset > MAX_RECORD_LENGTH or (offset == 0 and not variable):
        raise TemplateError(f"template record length {offset} is absurd")
    dtype = None
    if not variable:
        dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets,
                          "itemsize": offset})
    return Template(fields=fields, scope_count=scope_count, dtype=dtype,
                    record_length=offset, names=frozenset(seen),
                    fast=dtype is not None and scope_count < 0, itemsize=offset)


def _uint(records: np.ndarray, name: str) -> np.ndarray:
    """A counter column as uint64, whatever its encoded length."""
    column = records[name]
    if column.dtype.kind == "u" and column.ndim == 1:
        return column.astype(np.uint64)
    # Reduced-size odd lengths (3, 5, 6, 7 octets): big-endian bytes.
    raw = column.astype(np.uint64)
    width = raw.shape[1]
    shifts = np.arange(width - 1, -1, -1, dtype=np.uint64) * np.uint64(8)
    return (raw << shifts).sum(axis=1, dtype=np.uint64)


@dataclass
class _Pending:
    body: bytes
    context: tuple
    arrived: float


@dataclass
class DecoderLimits:
    max_templates: int = 4096                 # across all exporters
    max_template_bytes: int = 4 * 1024 * 1024
    hold_seconds: float = 30.0                # data waiting for its template
    max_held_bytes: int = 4 * 1024 * 1024
    max_held_sets: int = 10_000


@dataclass
class Decoder:
    """Stateful decoder for one collector process: templates, sequences, held data."""

    limits: DecoderLimits = field(default_factory=DecoderLimits)
    counters: Counters = field(default_factory=Counters)

    def __post_init__(self):
        self.templates: OrderedDict = OrderedDict()   # (exporter, domain, tid) -> Template
        self.template_bytes = 0
        self.sampling: dict = {}                      # (exporter, version, domain) -> rate
        self.sequences: dict = {}                     # (exporter, version, domain) -> next
        self.system_init: dict = {}                   # (exporter, version, domain) -> ms
        self.held: OrderedDict = OrderedDict()        # (exporter, domain, tid) -> [_Pending]
        self.held_bytes = 0
        self.held_sets = 0
        self._groups: dict = {}                       # id(template) -> queued data sets
        self._last_had_unknown = False
        self.last_error = ""
        # exporter -> sampling rate set by the operator (collector.sampling):
        # it replaces whatever the exporter's headers, options or records say.
        self.forced_sampling: dict = {}
        # False: every v9/IPFIX packet the whole way (the tests' reference).
        self.inline = True

    # -- public API ---------------------------------------------------------

    def decode(self, datagrams: Iterable[tuple[object, bytes]],
               now: float | None = None, valid: np.ndarray | None = None) -> np.ndarray:
        """Decode ``(exporter, payload)`` pairs into one FLOW_DTYPE array.

        ``exporter`` is any hashable naming the sender (its IP address).
        ``valid``, a boolean array as long as ``datagrams``, is set True for
        each datagram that decoded: a whole, well-formed export packet (its
        flows may be none, or held for a template). The others were dropped
        and changed nothing.
        """
        now = _time.time() if now is None else now
        v5 = []
        v5_index = []
        parts = []
        self._groups = {}
        received = 0
        # The common v9/IPFIX packet (one data set of a known fixed-length
        # template filling it: what _one_known_set takes) is handled inline:
        # per packet one unpack and a few dict lookups instead of five
        # method calls. Any other packet goes the whole way (_v9, _ipfix).
        templates, groups, sequences = self.templates, self._groups, self.sequences
        metas: dict = {}        # (exporter, version, domain) -> (init, rate, forced)
        inline = self.inline
        ipfix_records = None    # records of the IPFIX packets taken inline
        for index, (exporter, data) in enumerate(datagrams):
            received += 1
            size = len(data)
            if size < 4:
                self._drop("truncated")
                continue
            version = (data[0] << 8) | data[1]
            if version == 5:
                v5.append((exporter, data))    # decoded together below
                v5_index.append(index)
                continue
            if not inline:
                fits = False
            elif version == 10 and size >= 20:
                _, length, secs, sequence, domain, set_id, set_length = \
                    _IPFIX_ONE_SET.unpack_from(data)
                fits = length == size and set_id >= 256 and set_length == size - 16
                offset, uptime, count = 20, None, None
            elif version == 9 and size >= 24:
                _, count, uptime, secs, sequence, domain, set_id, set_length = \
                    _V9_ONE_SET.unpack_from(data)
                fits = count <= size - 20 and set_id >= 256 and set_length == size - 20
                offset = 24
            else:
                fits = False
            template = templates.get((exporter, domain, set_id)) if fits else None
            if template is not None and template.fast:
                records = (size - offset) // template.itemsize
                if records:
                    key = (exporter, version, domain)
                    meta = metas.get(key)
                    if meta is None:
                        meta = metas[key] = self._meta_parts(version, exporter, domain)
                    init, rate, forced = meta
                    if uptime is None:
                        uptime = -1 if init is None else secs * 1000 - init
                    group = groups.get(id(template))
                    if group is None:
                        group = groups[id(template)] = (template, [], [])
                    group[1].append(data[offset:offset + records * template.itemsize])
                    group[2].append((records, secs, uptime, rate, forced))
                if count is None:       # IPFIX counts records, v9 packets
                    ipfix_records = (ipfix_records or 0) + records
                    count, counter = records, "sequence_lost_flows"
                else:
                    count, counter = 1, "sequence_lost_packets"
                key = (exporter, version, domain)
                if sequences.get(key) == sequence:
                    sequences[key] = (sequence + count) & 0xFFFFFFFF
                else:
                    self._sequence(exporter, version, domain, sequence, count, counter)
                if valid is not None:
                    valid[index] = True
                continue
            # Options records and templates may change the sampling and
            # boot times the inline path read.
            metas.clear()
            try:
                if version == 9:
                    ok = self._v9(exporter, data, now)
                elif version == 10:
                    ok = self._ipfix(exporter, data, now)
                else:
                    self._drop("bad_version")
                    ok = False
            except (struct.error, ValueError, IndexError, TypeError, OverflowError):
                self._drop("malformed")
                ok = False
            if ok and valid is not None:
                valid[index] = True
        self.counters.add("packets", received)
        if ipfix_records is not None:
            self.counters.add("ipfix_records", ipfix_records)
        self._expire_held(now)
        groups, self._groups = self._groups, {}
        try:
            if v5:
                good = np.zeros(len(v5), bool)
                parts.append(self._v5_batch(v5, good))
                if valid is not None:
                    valid[np.asarray(v5_index)[good]] = True
            for template, chunks, metas in groups.values():
                flows = self._group_flows(template, chunks, metas)
                if flows is not None:
                    parts.append(flows)
        except (ValueError, OverflowError, TypeError, IndexError) as error:
            # Values no exporter sends (a boot time beyond int64 ...): the
            # batch's flows are dropped and counted, the collector goes on.
            self.counters.add("drops")
            self.counters.add("drops_malformed")
            self.counters.add("batches_dropped")
            self.last_error = repr(error)
            if valid is not None:
                valid[:] = False      # nothing of the batch was counted
            return EMPTY_FLOWS
        parts = [p for p in parts if len(p)]
        if not parts:
            return EMPTY_FLOWS
        flows = parts[0] if len(parts) == 1 else np.concatenate(parts)
        self.counters.add("flows", len(flows))
        return flows

    def template_count(self) -> int:
        return len(self.templates)

    # -- NetFlow v5 ----------------------------------------------------------

    def _v5_batch(self, items: list, good_out: np.ndarray) -> np.ndarray:
        """Every v5 datagram of a batch at once: the headers become one array,
        validity, sequence numbers and sampling are checked as arrays, and
        the records of all good datagrams are read from one joined buffer.
        ``good_out`` (one per item) is set True for the datagrams decoded."""
        datas = [data for _, data in items]
        lengths = np.fromiter(map(len, datas), np.int64, len(datas))
        short = lengths < V5_HEADER.size
        positions = np.arange(len(items))
        if short.any():
            self._drop("truncated", int(short.sum()))
            keep = np.flatnonzero(~short)
            positions = positions[keep]
            items, datas, lengths = [items[i] for i in keep], [datas[i] for i in keep], \
                lengths[keep]
            if not items:
                return EMPTY_FLOWS
        starts = np.zeros(len(datas), np.int64)
        np.cumsum(lengths[:-1], out=starts[1:])
        exact = not (lengths % 24).any()
        if exact:
            # Every length a multiple of 24 (24 + 48 n, as exporters send):
            # joined, the datagrams are 24-octet units, a header every so many.
            units = np.frombuffer(b"".join(datas), "V24")
            head = units[starts // 24].view(V5_HEADER_DTYPE)
        else:
            head = np.frombuffer(b"".join([data[:24] for data in datas]), V5_HEADER_DTYPE)
        counts = head["count"].astype(np.int64)
        # A count beyond what fits in a datagram, or nanoseconds beyond a second:
        # not an export packet.
        malformed = (counts == 0) | (counts > V5_MAX_RECORDS) | (head["nsecs"] >= 1_000_000_000)
        truncated = ~malformed & (lengths < 24 + 48 * counts)
        good = ~(malformed | truncated)
        whole_batch = bool(good.all())
        if not whole_batch:
            self._drop("malformed", int(malformed.sum()))
            self._drop("truncated", int(truncated.sum()))
            keep = np.flatnonzero(good)
            items, datas = [items[i] for i in keep], [datas[i] for i in keep]
            head, counts = head[keep], counts[keep]
            positions = positions[keep]
            if not items:
                return EMPTY_FLOWS
        good_out[positions] = True
        self._v5_sequences(items, head, counts)
        if exact and whole_batch and (lengths == 24 + 48 * counts).all():
            # Nothing dropped and no trailing octets: the records are every
            # unit but the headers, in order (one copy, no loop).
            records_mask = np.ones(len(units), bool)
            records_mask[starts // 24] = False
            records = units[records_mask].view(V5_RECORD)
        else:
            records = np.frombuffer(b"".join([data[24:24 + 48 * int(n)] for data, n
                                              in zip(datas, counts)]), V5_RECORD)
        export_ms = head["secs"].astype(np.int64) * 1000 + head["nsecs"].astype(np.int64) // 1_000_000
        uptime = head["uptime"].astype(np.int64)
        if len(head) > 1:
            export_ms, uptime = np.repeat(export_ms, counts), np.repeat(uptime, counts)
        sampling = head["sampling"].astype(np.int64)
        rates = np.where(sampling >> 14 != 0, np.maximum(sampling & 0x3FFF, 1), 1)
        if self.forced_sampling:
            forced = self.forced_sampling
            chosen = np.fromiter((forced.get(exporter, 0) for exporter, _ in items), np.int64,
                                 len(items))
            rates = np.where(chosen > 0, chosen, rates)
        out = np.empty(len(records), FLOW_DTYPE)
        out["time"] = (export_ms + uptime_offset(records["first"], uptime)) // 1000
        out["end"] = np.maximum((export_ms + uptime_offset(records["last"], uptime)) // 1000,
                                out["time"])
        out["src_hi"] = 0
        out["src_lo"] = records["src"]
        out["dst_hi"] = 0
        out["dst_lo"] = records["dst"]
        out["v6"] = 0
        out["proto"] = records["proto"]
        if rates.max() == 1:
            out["bytes"] = records["bytes"]
            out["packets"] = records["packets"]
        else:
            rate = np.repeat(rates.astype(np.uint64), counts)
            out["bytes"] = records["bytes"].astype(np.uint64) * rate
            out["packets"] = records["packets"].astype(np.uint64) * rate
        return out

    def _v5_sequences(self, items: list, head: np.ndarray, counts: np.ndarray) -> None:
        """Flow sequence numbers per (exporter, engine), in arrival order.

        Without a late packet the losses of a run are the sum of its gaps,
        an array expression; a run with a late packet is walked one datagram
        at a time (``_sequence``), which is what the arrays stand for.
        """
        exporters: dict = {}
        exporter_of = np.fromiter((exporters.setdefault(exporter, len(exporters))
                                   for exporter, _ in items), np.int64, len(items))
        engine = (head["engine_type"].astype(np.int64) << 8) | head["engine_id"]
        group = (exporter_of << 16) | engine
        names = list(exporters)
        sequence = head["sequence"].astype(np.int64)
        several = len(exporters) > 1 or engine.min() != engine.max()
        for value in np.unique(group) if several else group[:1]:
            rows = np.flatnonzero(group == value) if several else slice(None)
            seq, n = sequence[rows], counts[rows]
            exporter, domain = names[int(value) >> 16], int(value) & 0xFFFF
            key = (exporter, 5, domain)
            expected = np.empty(len(seq), np.int64)
            expected[1:] = (seq[:-1] + n[:-1]) & 0xFFFFFFFF
            previous = self.sequences.get(key)
            expected[0] = seq[0] if previous is None else previous
            gaps = (seq - expected) & 0xFFFFFFFF
            if (gaps >= 0x80000000).any():
                for one, many in zip(seq.tolist(), n.tolist()):
                    self._sequence(exporter, 5, domain, one, many, "sequence_lost_flows")
                continue
            lost = int(gaps.sum())
            if lost:
                self.counters.add("sequence_lost_flows", lost)
            self._expect(key, int(seq[-1] + n[-1]))

    # -- NetFlow v9 ----------------------------------------------------------

    def _v9(self, exporter, data: bytes, now: float) -> bool:
        """One v9 export packet; False (and nothing changed) when it is not one."""
        if len(data) < 20:
            self._drop("truncated")
            return False
        _, count, uptime, secs, sequence, source = V9_HEADER.unpack_from(data)
        if count <= len(data) - 20 and self._one_known_set(9, exporter, source, secs, uptime,
                                                           data, 20, len(data)) >= 0:
            self._sequence(exporter, 9, source, sequence, 1, "sequence_lost_packets")
            return True
        # Every record (or FlowSet, as some exporters count) takes at least
        # an octet; the sets must tile the packet. Only then is the header's
        # sequence number believed.
        if count > len(data) - 20 or not self._sets_valid(data, 20, len(data)):
            self._drop("malformed")
            return False
        self._sequence(exporter, 9, source, sequence, 1, "sequence_lost_packets")
        context = (9, exporter, source, secs, uptime)
        self._sets(data, 20, len(data), context, now)
        return True

    # -- IPFIX ---------------------------------------------------------------

    def _ipfix(self, exporter, data: bytes, now: float) -> bool:
        """One IPFIX message; False (and nothing changed) when it is not one."""
        if len(data) < 16:
            self._drop("truncated")
            return False
        _, length, export_time, sequence, domain = IPFIX_HEADER.unpack_from(data)
        if length < 16 or length > len(data):
            self._drop("truncated")
            return False
        if length == len(data):
            records = self._one_known_set(10, exporter, domain, export_time, None, data, 16,
                                          length)
            if records >= 0:
                self.counters.add("ipfix_records", records)
                self._sequence(exporter, 10, domain, sequence, records, "sequence_lost_flows",
                               unknown=False)
                return True
        # A UDP datagram carries exactly one message (RFC 7011 10.3.3), and
        # its sets tile it: only then is the header's sequence number believed.
        if length != len(data) or not self._sets_valid(data, 16, length):
            self._drop("malformed")
            return False
        context = (10, exporter, domain, export_time, None)
        records = self._sets(data, 16, length, context, now)
        if records < 0:
            return False
        self._sequence(exporter, 10, domain, sequence, records, "sequence_lost_flows",
                       unknown=self._last_had_unknown)
        return True

    # -- sets shared by v9 and IPFIX ------------------------------------------

    def _one_known_set(self, version, exporter, domain, secs, uptime, data, offset,
                       end) -> int:
        """The common packet, short: one data set of a known template with
        fixed-length fields that fills the rest of the message. Its records
        are queued (as ``_sets`` would) and their number returned; -1, with
        nothing changed, for any other packet (``_sets`` walks it)."""
        if offset + 4 > end:
            return -1
        set_id, set_length = SET_HEADER.unpack_from(data, offset)
        if set_id < 256 or set_length != end - offset:
            return -1
        template = self.templates.get((exporter, domain, set_id))
        if template is None or not template.fast:
            return -1
        self._last_had_unknown = False
        size = template.itemsize
        count = (set_length - 4) // size       # the rest is padding
        if count:
            meta = self._set_meta(version, exporter, domain, secs, uptime)
            group = self._groups.get(id(template))
            if group is None:
                group = self._groups[id(template)] = (template, [], [])
            start = offset + 4
            group[1].append(data[start:start + count * size])
            group[2].append((count,) + meta)
        return count

    @staticmethod
    def _sets_valid(data, offset, end) -> bool:
        """Set headers that tile ``data[offset:end]`` (less under 4 octets of
        padding): checked before any set is used, so a malformed packet
        teaches no template and counts no flow."""
        while offset + 4 <= end:
            set_length = (data[offset + 2] << 8) | data[offset + 3]
            if set_length < 4 or offset + set_length > end:
                return False
            offset += set_length
        return True

    def _sets(self, data, offset, end, context, now) -> int:
        """Walk the sets of one message; returns its data records (IPFIX), -1 if malformed."""
        version, exporter, domain, secs, uptime = context
        template_set, options_set = (0, 1) if version == 9 else (2, 3)
        self._last_had_unknown = False
        templates, groups = self.templates, self._groups
        records = queued = 0
        meta = None
        while offset + 4 <= end:
            set_id, set_length = SET_HEADER.unpack_from(data, offset)
            if set_length < 4 or offset + set_length > end:
                self._drop("malformed")
                return -1
            start = offset + 4
            offset += set_length
            if set_id >= 256:
                template = templates.get((exporter, domain, set_id))
                if template is None:
                    self._hold((exporter, domain, set_id), data[start:offset], context, now)
                    self._last_had_unknown = True
                elif template.fast:
                    # The common case, kept short: queue the set's records;
                    # a batch's sets of one template become one array.
                    size = template.itemsize
                    count = (set_length - 4) // size   # the rest is padding
                    if count:
                        records += count
                        queued += count
                        if meta is None:
                            meta = self._set_meta(version, exporter, domain, secs, uptime)
                        group = groups.get(id(template))
                        if group is None:
                            group = groups[id(template)] = (template, [], [])
                        group[1].append(data[start:start + count * size])
                        group[2].append((count,) + meta)
                else:
                    before = self.counters["ipfix_records"]
                    self._data(template, data[start:offset], context)
                    records += self.counters["ipfix_records"] - before
                    meta = None
            elif set_id == template_set:
                self._templates(version, exporter, domain, data[start:offset], options=False)
            elif set_id == options_set:
                self._templates(version, exporter, domain, data[start:offset], options=True)
            else:
                self.counters.add("sets_reserved")
        if version == 10:
            self.counters.add("ipfix_records", queued)
        return records

    def _set_meta(self, version, exporter, domain, secs, uptime) -> tuple:
        """(secs, uptime, sampling rate, rate forced by configuration)."""
        init, rate, forced = self._meta_parts(version, exporter, domain)
        if uptime is None:
            uptime = -1 if init is None else secs * 1000 - init
        return secs, uptime, rate, forced

    def _meta_parts(self, version, exporter, domain) -> tuple:
        """(boot time in ms from an options record or None, sampling rate,
        whether the rate is forced by configuration)."""
        key = (exporter, version, domain)
        forced = self.forced_sampling.get(exporter) if self.forced_sampling else None
        if forced:
            return self.system_init.get(key), forced, True
        return self.system_init.get(key), self.sampling.get(key, 1), False

    def _templates(self, version, exporter, domain, body: bytes, options: bool) -> None:
        pos, end = 0, len(body)
        while pos + 4 <= end:
            tid, count = SET_HEADER.unpack_from(body, pos)
            pos += 4
            scope_count = -1
            if options:
                if version == 9:
                    # v9 options: scope and option lengths in bytes.
                    if pos + 2 > end:
                        break
                    scope_bytes = count
                    option_bytes = struct.unpack_from(">H", body, pos)[0]
                    pos += 2
                    if scope_bytes % 4 or option_bytes % 4:
                        self.counters.add("templates_rejected")
                        return
                    scope_count, count = scope_bytes // 4, (scope_bytes + option_bytes) // 4
                else:
                    if count == 0:
                        self._withdraw(exporter, domain, tid)
                        continue
                    if pos + 2 > end:
                        break
                    scope_count = struct.unpack_from(">H", body, pos)[0]
                    pos += 2
                    if scope_count == 0 or scope_count > count:
                        self.counters.add("templates_rejected")
                        return
            elif count == 0:
                if version == 10:
                    self._withdraw(exporter, domain, tid)
                    continue
                # v9 has no withdrawal; a zero-field template is padding or junk.
                return
            if tid < 256 or count > MAX_TEMPLATE_FIELDS:
                self.counters.add("templates_rejected")
                return
            fields = []
            for _ in range(count):
                if pos + 4 > end:
                    self.counters.add("templates_rejected")
                    return
                ie, length = SET_HEADER.unpack_from(body, pos)
                pos += 4
                enterprise = 0
                if version == 10 and ie & 0x8000:
                    if pos + 4 > end:
                        self.counters.add("templates_rejected")
                        return
                    enterprise = struct.unpack_from(">I", body, pos)[0]
                    ie &= 0x7FFF
                    pos += 4
                if version == 9 and length == VARLEN:
                    length = 0  # v9 has no variable-length fields: reject below
                fields.append((ie, length, enterprise))
            try:
                template = compile_template(tuple(fields), scope_count)
            except TemplateError:
                self.counters.add("templates_rejected")
                return
            self._store(exporter, domain, tid, template)

    def _store(self, exporter, domain, tid, template: Template) -> None:
        key = (exporter, domain, tid)
        old = self.templates.pop(key, None)
        if old is not None:
            self.template_bytes -= old.size
            if old.fields != template.fields or old.scope_count != template.scope_count:
                self.counters.add("templates_redefined")
        else:
            self.counters.add("templates_learned")
        self.templates[key] = template
        self.template_bytes += template.size
        while (len(self.templates) > self.limits.max_templates
               or self.template_bytes > self.limits.max_template_bytes):
            _, evicted = self.templates.popitem(last=False)
            self.template_bytes -= evicted.size
            self.counters.add("templates_evicted")
        held = self.held.pop(key, None)
        if held:
            for pending in held:
                self.held_bytes -= len(pending.body)
                self.held_sets -= 1
                self.counters.add("held_sets_decoded")
                self._data(template, pending.body, pending.context, late=True)

    def _withdraw(self, exporter, domain, tid) -> None:
        if tid == 2 or tid == 3:   # all (options) templates of this domain
            keys = [k for k in self.templates if k[0] == exporter and k[1] == domain
                    and self.templates[k].is_options == (tid == 3)]
        else:
            keys = [(exporter, domain, tid)]
        for key in keys:
            old = self.templates.pop(key, None)
            if old is not None:
                self.template_bytes -= old.size
                self.counters.add("templates_withdrawn")

    # -- data ------------------------------------------------------------------

    def _records(self, template: Template, body: bytes) -> np.ndarray:
        if template.dtype is not None:
            size = template.dtype.itemsize
            count = len(body) // size   # the rest is padding
            return np.frombuffer(body, template.dtype, count)
        return self._varlen_records(template, body)

    def _varlen_records(self, template: Template, body: bytes) -> np.ndarray:
        """Walk records with variable-length fields; keep the fixed fields packed."""
        fixed = tuple(f for f in template.fields if f[1] != VARLEN)
        dtype = compile_template(fixed, template.scope_count).dtype if fixed else None
        chunks, pos, end = [], 0, len(body)
        while pos < end:
            record, ok = [], True
            for ie, length, _ in template.fields:
                if length == VARLEN:
                    if pos >= end:
                        ok = False
                        break
                    length = body[pos]
                    pos += 1
                    if length == 255:
                        if pos + 2 > end:
                            ok = False
                            break
                        length = (body[pos] << 8) | body[pos + 1]
                        pos += 2
                    pos += length
                else:
                    record.append(body[pos:pos + length])
                    pos += length
                if pos > end:
                    ok = False
                    break
            if not ok:
                break   # trailing padding or a truncated record
            chunks.append(b"".join(record))
        if dtype is None or not chunks:
            return np.zeros(0, dtype or np.dtype([("x", "u1")]))
        return np.frombuffer(b"".join(chunks), dtype)

    def _data(self, template: Template, body: bytes, context, late: bool = False) -> None:
        version, exporter, domain, secs, uptime = context
        if template.fast:
            count = len(body) // template.dtype.itemsize   # the rest is padding
            if version == 10 and not late:
                self.counters.add("ipfix_records", count)
            if not count:
                return
            group = self._groups.get(id(template))
            if group is None:
                group = self._groups[id(template)] = (template, [], [])
            group[1].append(body[:count * template.dtype.itemsize])
            group[2].append((count,) + self._set_meta(version, exporter, domain, secs, uptime))
            return
        records = self._records(template, body)
        if version == 10 and not late:
            self.counters.add("ipfix_records", len(records))
        if not len(records):
            return
        if template.is_options:
            rate = self._options_sampling(records, template)
            if rate:
                self.sampling[(exporter, version, domain)] = rate
                self.counters.add("sampling_updates")
            if "system_init_ms" in template.names:
                init = int(records["system_init_ms"][-1])
                if 0 < init < 2**42:        # a boot time before year 2109
                    self.system_init[(exporter, version, domain)] = init
                while len(self.system_init) > 4 * self.limits.max_templates:
                    self.system_init.pop(next(iter(self.system_init)))
            while len(self.sampling) > 4 * self.limits.max_templates:
                self.sampling.pop(next(iter(self.sampling)))
            return
        # Variable-length records: their fixed fields, packed, as a fixed template.
        fixed = compile_template(tuple(f for f in template.fields if f[1] != VARLEN))
        self._data(fixed, records.tobytes(), context, late=True)

    def _group_flows(self, template: Template, chunks, metas) -> np.ndarray | None:
        records = np.frombuffer(b"".join(chunks), template.dtype)
        counts = np.fromiter((m[0] for m in metas), np.int64, len(metas))
        if len(metas) == 1:
            secs, uptime, rates = metas[0][1], metas[0][2], metas[0][3]
        else:
            secs = np.repeat(np.fromiter((m[1] for m in metas), np.int64, len(metas)), counts)
            uptime = np.repeat(np.fromiter((m[2] for m in metas), np.int64, len(metas)), counts)
            rates = np.repeat(np.fromiter((m[3] for m in metas), np.uint64, len(metas)), counts)
        # A template belongs to one exporter: its rate is forced for every set or none.
        return self._flows(template, records, secs, uptime, rates, forced=metas[0][4])

    @staticmethod
    def _options_sampling(records, template) -> int:
        names = template.names
        if "sampling" in names:
            return int(_uint(records, "sampling")[-1])
        if "spi" in names:
            interval = int(_uint(records, "spi")[-1])
            space = int(_uint(records, "sps")[-1]) if "sps" in names else 0
            return (interval + space) // interval if interval else 0
        return 0

    def _flows(self, template: Template, records, secs, uptime, rates,
               forced: bool = False) -> np.ndarray | None:
        names = template.names
        out = np.empty(len(records), FLOW_DTYPE)
        if "src4" in names and "dst4" in names:
            out["src_hi"] = 0
            out["src_lo"] = records["src4"]
            out["dst_hi"] = 0
            out["dst_lo"] = records["dst4"]
            out["v6"] = 0
        elif "src6" in names and "dst6" in names:
            out["src_hi"] = records["src6_hi"]
            out["src_lo"] = records["src6_lo"]
            out["dst_hi"] = records["dst6_hi"]
            out["dst_lo"] = records["dst6_lo"]
            out["v6"] = 1
        else:
            self.counters.add("records_without_addresses", len(records))
            return None
        for octets, packets in (("octets", "packets"), ("octets_total", "packets_total"),
                                ("out_octets", "out_packets")):
            if octets in names:
                out["bytes"] = _uint(records, octets)
                out["packets"] = _uint(records, packets) if packets in names else 0
                break
        else:
            self.counters.add("records_without_counters", len(records))
            return None
        out["proto"] = records["proto"] if "proto" in names else 0
        out["time"], out["end"] = self._times(names, records, secs, uptime)
        if "sampling" in names and not forced:
            per_record = _uint(records, "sampling")
            per_record = np.where(per_record == 0, np.uint64(1) * rates, per_record)
            out["bytes"] *= per_record
            out["packets"] *= per_record
        elif np.any(rates != 1):
            out["bytes"] *= np.asarray(rates, np.uint64)
            out["packets"] *= np.asarray(rates, np.uint64)
        return out

    @staticmethod
    def _absolute(names, records, secs, edge: str):
        """A flow's start or end from an absolute time field, Unix seconds
        (None when the template has none: uptime fields are used then)."""
        if f"{edge}_s" in names:
            return records[f"{edge}_s"].astype(np.int64)
        if f"{edge}_ms" in names:
            return (records[f"{edge}_ms"] // 1000).astype(np.int64)
        if f"{edge}_ntp" in names:
            return (records[f"{edge}_ntp"] >> np.uint64(32)).astype(np.int64) - NTP_UNIX_OFFSET
        if f"{edge}_delta_us" in names:
            return secs - (records[f"{edge}_delta_us"] // 1_000_000).astype(np.int64)
        return None

    @staticmethod
    def _times(names, records, secs, uptime):
        """(start, end) of each record, Unix seconds, end never before start."""
        start = Decoder._absolute(names, records, secs, "start")
        end = Decoder._absolute(names, records, secs, "end")
        if (start is None or end is None) and ("first_uptime" in names
                                               or "last_uptime" in names):
            # sysUptime times: relative to the exporter's boot. The header's
            # uptime (v9), or the export time less the boot time from an
            # options record (IPFIX); uptime < 0: the boot time is unknown,
            # the export time stands in.
            if "system_init_ms" in names:
                uptime = secs * 1000 - records["system_init_ms"].astype(np.int64)
            known = np.asarray(uptime) >= 0
            export_ms = np.asarray(secs, np.int64) * 1000
            if start is None and "first_uptime" in names:
                start = np.where(known, (export_ms + uptime_offset(records["first_uptime"],
                                                                   uptime)) // 1000, secs)
            if end is None and "last_uptime" in names:
                end = np.where(known, (export_ms + uptime_offset(records["last_uptime"],
                                                                 uptime)) // 1000, secs)
        if start is None:
            start = end if end is not None else np.zeros(len(records), np.int64) + secs
        if end is None:
            return start, start
        return start, np.maximum(end, start)

    # -- held data (before its template) ----------------------------------------

    def _hold(self, key, body, context, now) -> None:
        self.counters.add("sets_unknown_template")
        size = len(body)
        if size > self.limits.max_held_bytes:
            self.counters.add("held_sets_dropped")
            return
        while self.held and (self.held_bytes + size > self.limits.max_held_bytes
                             or self.held_sets + 1 > self.limits.max_held_sets):
            old_key, pendings = next(iter(self.held.items()))
            dropped = pendings.pop(0)
            self.held_bytes -= len(dropped.body)
            self.held_sets -= 1
            self.counters.add("held_sets_dropped")
            if not pendings:
                del self.held[old_key]
        self.held.setdefault(key, []).append(_Pending(body, context, now))
        self.held_bytes += size
        self.held_sets += 1

    def _expire_held(self, now) -> None:
        if not self.held:
            return
        limit = now - self.limits.hold_seconds
        for key in list(self.held):
            pendings = self.held[key]
            while pendings and pendings[0].arrived < limit:
                dropped = pendings.pop(0)
                self.held_bytes -= len(dropped.body)
                self.held_sets -= 1
                self.counters.add("held_sets_dropped")
            if not pendings:
                del self.held[key]

    # -- sequence numbers ----------------------------------------------------------

    def _sequence(self, exporter, version, domain, sequence, count, counter, unknown=False):
        key = (exporter, version, domain)
        expected = self.sequences.get(key)
        if expected is not None:
            gap = (sequence - expected) & 0xFFFFFFFF
            if gap == 0:
                pass
            elif gap < 0x80000000:
                self.counters.add(counter, gap)
            else:
                self.counters.add("sequence_late")
        if unknown:
            # Records of an unknown template cannot be counted; resynchronise.
            self.sequences.pop(key, None)
        elif expected is None or gap < 0x80000000:
            self._expect(key, sequence + count)

    def _expect(self, key, sequence: int) -> None:
        """The next sequence number of (exporter, version, domain); the oldest
        key is forgotten beyond a bound, so spoofed exporters cannot grow it."""
        self.sequences[key] = sequence & 0xFFFFFFFF
        if len(self.sequences) > 4 * self.limits.max_templates:
            self.sequences.pop(next(iter(self.sequences)))

    def _drop(self, reason: str, count: int = 1) -> None:
        self.counters.add("drops", count)
        self.counters.add("drops_" + reason, count)


KEY_BYTES = 128


def exporter_seed(exporter) -> int:
    """The CRC-32 of an exporter's name: the start value of its packet keys."""
    return zlib.crc32(str(exporter).encode())


_KEY_CRC = struct.Struct(">I").pack
_crc32 = zlib.crc32


def packet_key(exporter, data: bytes, seed: int | None = None) -> bytes:
    """16 bytes naming one export packet from one exporter (replay detection).

    A CRC-32 of the exporter, the datagram's length and its first
    ``KEY_BYTES`` bytes (the header and the first records), then the
    header's time and sequence number: v9 (uptime, secs, sequence) and IPFIX
    (export time, sequence, domain) have them in bytes 4..16; v5 has uptime
    and secs in 4..12 and the flow sequence in 16..20. A replayed packet
    gives the same key. Two different packets of one exporter differ in
    their sequence number, so a CRC collision alone (one in 2^32 pairs:
    about one in a run of 100,000 packets) cannot make a new packet look
    like a replay. The CRC covers a prefix: over a whole 1,464-byte v5
    datagram it cost 3x more than the rest of the replay check.
    """
    if seed is None:
        seed = exporter_seed(exporter)
    size = len(data)
    crc = _KEY_CRC(_crc32(data[:KEY_BYTES], seed ^ size))
    if size >= 20:          # every export packet: no padding, one concatenation
        if data[0] == 0 and data[1] == 5:
            return crc + data[4:12] + data[16:20]
        return crc + data[4:16]
    header = data[4:12] + data[16:20] if data[:2] == b"\x00\x05" else data[4:16]
    return crc + header.ljust(12, b"\0")
