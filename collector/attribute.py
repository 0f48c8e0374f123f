"""Which account a flow belongs to, and which traffic class, vectorised.

An address table holds, per family, sorted disjoint integer ranges (a single
address is a range of one) and, for each range, the static owner and the
RADIUS leases with their time spans. A lookup is one ``np.searchsorted`` over
the ranges and, where leases exist, one over ``range << 32 | valid_from``
keys; no Python loop runs per flow.

IPv6 is matched on the upper 64 bits (delegated prefixes are /48../64); a
lease of a single IPv6 address stands for its /64.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np
from sqlalchemy import or_, select

from collector.decode import FLOW_DTYPE

NO_ACCOUNT = -1
_FOREVER = np.int64(2**32 - 1)
_EPOCH = dt.datetime(1970, 1, 1)


def _seconds(value: dt.datetime | None, default: int) -> int:
    if value is None:
        return default
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return max(0, min(int((value - _EPOCH).total_seconds()), int(_FOREVER)))


def _range(text: str) -> tuple[int, int, int]:
    """(family, first, last) as integers: IPv4 full width, IPv6 upper 64 bits."""
    if "/" not in text and ":" not in text:
        try:
            value = int.from_bytes(socket.inet_pton(socket.AF_INET, text.strip()), "big")
            return 4, value, value
        except OSError:
            raise ValueError(f"not an IPv4 address: {text!r}") from None
    network = ipaddress.ip_network(text.strip(), strict=False)
    if network.version == 4:
        return 4, int(network.network_address), int(network.broadcast_address)
    if network.prefixlen > 64:
        network = network.supernet(new_prefix=64)
    return 6, int(network.network_address) >> 64, int(network.broadcast_address) >> 64


@dataclass(frozen=True)
class Assignment:
    account_id: int
    prefix: str                      # "10.0.0.5", "10.0.0.0/30", "2001:db8:1::/56"
    valid_from: dt.datetime | None = None   # None with valid_to None: static
    valid_to: dt.datetime | None = None


class _FamilyTable:
    def __init__(self, rows: Sequence[tuple[int, int, int, int, int, bool]]):
        # rows: (first, last, account, t0, t1, is_lease); built with array
        # operations, so a million services load in well under a second.
        n = len(rows)
        first = np.fromiter((r[0] for r in rows), np.uint64, n)
        last = np.fromiter((r[1] for r in rows), np.uint64, n)
        account = np.fromiter((r[2] for r in rows), np.int64, n)
        t0 = np.fromiter((r[3] for r in rows), np.uint64, n)
        t1 = np.fromiter((r[4] for r in rows), np.int64, n)
        is_lease = np.fromiter((r[5] for r in rows), bool, n)
        order = np.lexsort((last, first))
        pairs_first, pairs_last = first[order], last[order]
        new = np.ones(n, bool)
        new[1:] = (pairs_first[1:] != pairs_first[:-1]) | (pairs_last[1:] != pairs_last[:-1])
        unique_index = np.cumsum(new) - 1              # per sorted row: its distinct range
        u_first, u_last = pairs_first[new], pairs_last[new]
        # Disjoint ranges: one nested in (or overlapping) an earlier one is
        # dropped, the wider keeps it; operators do not assign nested prefixes.
        reach = np.maximum.accumulate(u_last) if len(u_last) else u_last
        keep = np.ones(len(u_first), bool)
        keep[1:] = u_first[1:] > reach[:-1]
        kept_index = np.cumsum(keep) - 1
        kept_index[~keep] = -1
        self.starts = np.ascontiguousarray(u_first[keep])
        self.ends = np.ascontiguousarray(u_last[keep])
        self.static = np.full(len(self.starts), NO_ACCOUNT, np.int64)
        row_range = np.empty(n, np.int64)
        row_range[order] = kept_index[unique_index] if n else row_range[order]
        statics = (~is_lease) & (row_range >= 0)
        self.static[row_range[statics]] = account[statics]
        leased = is_lease & (row_range >= 0)
        keys = (row_range[leased].astype(np.uint64) << np.uint64(32)) | t0[leased]
        lease_order = np.argsort(keys, kind="stable")
        self.lease_keys = keys[lease_order]
        self.lease_ends = t1[leased][lease_order]
        self.lease_accounts = account[leased][lease_order]

    @classmethod
    def from_arrays(cls, addresses: np.ndarray, accounts: np.ndarray) -> "_FamilyTable":
        """Fast path for many single static addresses (bench, big static bases)."""
        table = cls.__new__(cls)
        order = np.argsort(addresses, kind="stable")
        table.starts = np.ascontiguousarray(addresses[order].astype(np.uint64))
        table.ends = table.starts
        table.static = np.ascontiguousarray(accounts[order].astype(np.int64))
        table.lease_keys = np.zeros(0, np.uint64)
        table.lease_ends = np.zeros(0, np.int64)
        table.lease_accounts = np.zeros(0, np.int64)
        return table

    dense_top = None     # IPv4 only: /16 → block number × 65536 (the last block: no subscriber)
    dense_flat = None    # (blocks + 1) × 65536 int32 codes, one per address (see build_dense)

    def build_dense(self, max_blocks: int = 256) -> None:
        """IPv4: a direct map per used /16 (256 KiB each), when few enough are used.

        Replaces the binary search by two array gathers; addresses outside
        every used /16 (most remote ends of flows) are rejected by the first.
        Each address holds a code: its static owner (>= 0) when its range has
        no lease, so most lookups end there; -1 for nobody; ``-2 - index``
        for a range with leases (or an owner beyond int32), looked up further.
        """
        if not len(self.starts) or int(self.ends[-1]) >= 2**32:
            return
        first16 = (self.starts >> np.uint64(16)).astype(np.int64)
        last16 = (self.ends >> np.uint64(16)).astype(np.int64)
        spans = last16 - first16 + 1
        used = np.unique(np.concatenate(
            [first16] + [np.arange(a, b + 1) for a, b in zip(first16[spans > 1],
                                                           last16[spans > 1])]))
        if len(used) > max_blocks:
            return
        index = np.arange(len(self.starts), dtype=np.int64)
        further = np.zeros(len(self.starts), bool)
        further[(self.lease_keys >> np.uint64(32)).astype(np.int64)] = True
        further |= self.static >= 2**31
        codes = np.where(further, -2 - index, self.static).astype(np.int32)
        # Unused /16s point at one extra block of -1s, so a lookup is two
        # gathers with no mask. int32: the gathers are random reads, and
        # half the bytes keep more of the map in the caches (two collector
        # workers share one L3).
        top = np.full(65536, len(used), np.int64)
        top[used] = np.arange(len(used))
        blocks = np.full((len(used) + 1, 65536), -1, np.int32)
        single = self.starts == self.ends
        addresses = self.starts[single].astype(np.int64)
        blocks[top[addresses >> 16], addresses & 0xFFFF] = codes[single]
        for i in np.flatnonzero(~single):      # prefixes: few
            first, last = int(self.starts[i]), int(self.ends[i])
            for block in range(first >> 16, (last >> 16) + 1):
                low = max(first, block << 16) & 0xFFFF
                high = min(last, (block << 16) | 0xFFFF) & 0xFFFF
                blocks[top[block], low:high + 1] = codes[i]
        self.dense_top, self.dense_flat = (top << 16).astype(np.int32), blocks.reshape(-1)

    @property
    def nbytes(self) -> int:
        arrays = [self.starts, self.static, self.lease_keys, self.lease_ends,
                  self.lease_accounts]
        if self.ends is not self.starts:
            arrays.append(self.ends)
        if self.dense_top is not None:
            arrays += [self.dense_top, self.dense_flat]
        return sum(a.nbytes for a in arrays)

    def lookup(self, keys: np.ndarray, times: np.ndarray) -> np.ndarray:
        if not len(self.starts) or not len(keys):
            return np.full(len(keys), NO_ACCOUNT, np.int64)
        if self.dense_top is not None:
            wide = keys.astype(np.int64)
            codes = self.dense_flat[self.dense_top[wide >> 16] | (wide & 0xFFFF)]
            result = codes.astype(np.int64)      # owners; -1 is NO_ACCOUNT
            further = np.flatnonzero(codes < NO_ACCOUNT)
            if len(further):
                i = -2 - result[further]
                found = self.static[i]
                self._leases(i, np.ones(len(i), bool), times[further], found)
                result[further] = found
            return result
        result = np.full(len(keys), NO_ACCOUNT, np.int64)
        i = np.searchsorted(self.starts, keys, side="right").astype(np.int64) - 1
        inside = i >= 0
        i[~inside] = 0
        if self.ends is self.starts:
            inside &= self.starts[i] == keys
        else:
            inside &= keys <= self.ends[i]
        result[inside] = self.static[i[inside]]
        self._leases(i, inside, times, result)
        return result

    def _leases(self, i: np.ndarray, inside: np.ndarray, times: np.ndarray,
                result: np.ndarray) -> None:
        """Where range ``i`` had a lease at ``times``, its holder into ``result``."""
        if not len(self.lease_keys):
            return
        t = np.clip(times, 0, int(_FOREVER)).astype(np.uint64)
        probe = (i.astype(np.uint64) << np.uint64(32)) | t
        j = np.searchsorted(self.lease_keys, probe, side="right").astype(np.int64) - 1
        ok = inside & (j >= 0)
        j[~ok] = 0
        ok &= (self.lease_keys[j] >> np.uint64(32)) == i.astype(np.uint64)
        ok &= times < self.lease_ends[j]
        result[ok] = self.lease_accounts[j[ok]]


class AddressTable:
    """Addresses and prefixes each account held, and when."""

    def __init__(self, assignments: Iterable[Assignment] = ()):
        rows = {4: [], 6: []}
        for a in assignments:
            try:
                family, first, last = _range(a.prefix)
            except ValueError:
                continue
            is_lease = a.valid_from is not None or a.valid_to is not None
            rows[family].append((first, last, int(a.account_id), _seconds(a.valid_from, 0),
                                 _seconds(a.valid_to, int(_FOREVER)), is_lease))
        self.v4 = _FamilyTable(rows[4])
        self.v4.build_dense()
        self.v6 = _FamilyTable(rows[6])

    @classmethod
    def from_static_ipv4(cls, addresses: np.ndarray, accounts: np.ndarray) -> "AddressTable":
        table = cls()
        table.v4 = _FamilyTable.from_arrays(addresses, accounts)
        table.v4.build_dense()
        return table

    @property
    def nbytes(self) -> int:
        return self.v4.nbytes + self.v6.nbytes

    def lookup(self, hi: np.ndarray, lo: np.ndarray, v6: np.ndarray,
               times: np.ndarray) -> np.ndarray:
        """Account id per address (NO_ACCOUNT where none held it at that time)."""
        is6 = v6.astype(bool)
        if not is6.any():
            return self.v4.lookup(lo, times)
        result = np.full(len(lo), NO_ACCOUNT, np.int64)
        is4 = ~is6
        result[is4] = self.v4.lookup(lo[is4], times[is4])
        result[is6] = self.v6.lookup(hi[is6], times[is6])
        return result


def load_address_table(session, since: dt.datetime | None = None) -> AddressTable:
    """Static IPv4 and IPv6 prefixes of active services, and leases (ending after ``since``)."""
    from aaa.models import IpLease, Service

    assignments = []
    for account_id, ipv4, ipv6 in session.execute(
            select(Service.account_id, Service.static_ipv4, Service.ipv6_prefix)
            .where(Service.active.is_(True))):
        if ipv4:
            assignments.append(Assignment(account_id, ipv4))
        if ipv6:
            assignments.append(Assignment(account_id, ipv6))
    query = select(IpLease.account_id, IpLease.address, IpLease.valid_from, IpLease.valid_to)
    if since is not None:
        query = query.where(or_(IpLease.valid_to.is_(None), IpLease.valid_to >= since))
    for account_id, address, valid_from, valid_to in session.execute(query):
        assignments.append(Assignment(account_id, address, valid_from or _EPOCH, valid_to))
    return AddressTable(assignments)


class TrafficClasses:
    """Prefix lists → class names; the most specific prefix wins; default "internet"."""

    def __init__(self, lists: Mapping[str, Sequence[str]] | None = None,
                 default: str = "internet"):
        self.names = [default] + sorted(n for n in (lists or {}) if n != default)
        ids = {name: i for i, name in enumerate(self.names)}
        prefixes = {4: [], 6: []}
        for name, items in (lists or {}).items():
            for text in items:
                family, first, last = _range(text)
                prefixes[family].append((first, last, ids[name]))
        self.tables = {family: self._flatten(items) for family, items in prefixes.items()}

    @staticmethod
    def _flatten(items):
        """Nested prefixes → disjoint (start, class) boundaries, most specific winning."""
        if not items:
            return np.zeros(1, np.uint64), np.zeros(1, np.int64)
        points = sorted({0} | {p[0] for p in items} | {p[1] + 1 for p in items})
        starts, classes = [], []
        for point in points:
            best, best_size = 0, None
            for first, last, class_id in items:
                if first <= point <= last and (best_size is None or last - first < best_size):
                    best, best_size = class_id, last - first
            if classes and classes[-1] == best:
                continue
            starts.append(min(point, 2**64 - 1))
            classes.append(best)
        return np.array(starts, np.uint64), np.array(classes, np.int64)

    def classify(self, hi: np.ndarray, lo: np.ndarray, v6: np.ndarray) -> np.ndarray:
        if len(self.names) == 1:
            return np.zeros(len(lo), np.int64)
        is6 = v6.astype(bool)
        result = np.empty(len(lo), np.int64)
        for family, mask, keys in ((4, ~is6, lo), (6, is6, hi)):
            starts, classes = self.tables[family]
            if len(starts) == 1 and classes[0] == 0:
                result[mask] = 0
                continue
            chosen = keys[mask]
            result[mask] = classes[np.searchsorted(starts, chosen, side="right") - 1]
        return result


ATTRIBUTED_DTYPE = np.dtype([("account", "<i8"), ("time", "<i8"), ("class", "<i8"),
                             ("direction", "u1"), ("bytes", "<u8"), ("packets", "<u8"),
                             ("end", "<i8")])
DIRECTION_IN, DIRECTION_OUT = 0, 1
DIRECTIONS = ("in", "out")


@dataclass
class Attributed:
    """Attributed rows as columns (contiguous arrays: cheap to build and to
    sum); ``rows`` gives them as one ATTRIBUTED_DTYPE array."""

    account: np.ndarray           # int64
    time: np.ndarray              # int64, unix seconds
    traffic_class: np.ndarray     # int64, index into TrafficClasses.names
    direction: np.ndarray         # uint8, DIRECTION_IN / DIRECTION_OUT
    bytes: np.ndarray             # uint64
    packets: np.ndarray           # uint64
    unattributed_flows: int
    unattributed_bytes: int
    end: np.ndarray | None = None  # int64, unix seconds: the flow's end (None: its start)

    @property
    def rows(self) -> np.ndarray:
        rows = np.empty(len(self.account), ATTRIBUTED_DTYPE)
        rows["account"], rows["time"], rows["class"] = self.account, self.time, self.traffic_class
        rows["direction"], rows["bytes"], rows["packets"] = self.direction, self.bytes, self.packets
        rows["end"] = self.time if self.end is None else self.end
        return rows


def attribute(flows: np.ndarray, table: AddressTable, classes: TrafficClasses) -> Attributed:
    """Each flow → rows (account, time, class, direction, bytes, packets).

    The destination's owner receives it ("in"), the source's owner sends it
    ("out"); traffic between two subscribers gives one row each. The class
    comes from the other side's address.

    A flow gives its row in its own place (the destination's owner if it has
    one, else the source's), so the columns are the flows' own with no
    gather; flows between two subscribers add their "out" rows at the end,
    and flows of nobody are left out.
    """
    assert flows.dtype == FLOW_DTYPE
    times = flows["time"]
    v6 = flows["v6"]
    dst_account = table.lookup(flows["dst_hi"], flows["dst_lo"], v6, times)
    src_account = table.lookup(flows["src_hi"], flows["src_lo"], v6, times)
    to_sub = dst_account != NO_ACCOUNT
    from_sub = src_account != NO_ACCOUNT
    account = np.where(to_sub, dst_account, src_account)
    direction = (~to_sub).view(np.uint8)              # DIRECTION_OUT where not "in"
    if len(classes.names) == 1:
        traffic_class = np.zeros(len(flows), np.int64)
    else:
        traffic_class = classes.classify(np.where(to_sub, flows["src_hi"], flows["dst_hi"]),
                                         np.where(to_sub, flows["src_lo"], flows["dst_lo"]), v6)
    columns = [account, np.ascontiguousarray(times), traffic_class, direction,
               np.ascontiguousarray(flows["bytes"]), np.ascontiguousarray(flows["packets"]),
               np.ascontiguousarray(flows["end"])]
    unattributed = unattributed_bytes = 0
    both = np.flatnonzero(to_sub & from_sub)
    kept = to_sub | from_sub
    if not kept.all():
        lost = ~kept
        unattributed = int(lost.sum())
        unattributed_bytes = int(columns[4][lost].sum())
        columns = [column[kept] for column in columns]
    if len(both):
        out_class = (np.zeros(len(both), np.int64) if len(classes.names) == 1 else
                     classes.classify(flows["dst_hi"][both], flows["dst_lo"][both], v6[both]))
        extra = [src_account[both], times[both], out_class,
                 np.full(len(both), DIRECTION_OUT, np.uint8), flows["bytes"][both],
                 flows["packets"][both], flows["end"][both]]
        columns = [np.concatenate((column, more)) for column, more in zip(columns, extra)]
    account, times, traffic_class, direction, octets, packets, ends = columns
    return Attributed(account=account, time=times, traffic_class=traffic_class,
                      direction=direction, bytes=octets, packets=packets,
                      unattributed_flows=unattributed, unattributed_bytes=unattributed_bytes,
                      end=ends)
