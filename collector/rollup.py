"""Per (account, 5-minute interval, class, direction) sums, and their upsert.

``Rollup.add`` keeps a batch of attributed rows as a key per row; batches
pile up and are summed together by one sort and running sums when enough
are pending, and at flush time. A flush (collector.flush) writes the sums
and the keys of the export packets that contributed in one transaction: a
replayed export packet is recognised by ``ReplayGuard`` and skipped, and a
packet whose rollup was never committed is not remembered as seen.
"""

from __future__ import annotations

import datetime as dt
from typing import Sequence

import numpy as np
from sqlalchemy import delete, select

from collector.attribute import ATTRIBUTED_DTYPE, Attributed
from collector.flush import DIGEST_BYTES, FlushUnit, split_digests
from collector.models import INTERVAL_SECONDS, ReplaySet

_ACCOUNT_SHIFT = np.uint64(35)
_INTERVAL_SHIFT = np.uint64(9)
_INTERVAL_MASK = np.uint64((1 << 26) - 1)
_CLASS_SHIFT = np.uint64(1)
_CLASS_MASK = np.uint64(0xFF)
_LOW_MASK = np.uint64((1 << 9) - 1)
MAX_ACCOUNT_ID = (1 << 28) - 1


def _reduce(keys: np.ndarray, octets: np.ndarray, packets: np.ndarray):
    """One row per distinct key, sorted, with its octets and packets summed."""
    if not len(keys):
        return keys, octets, packets
    packed = _packed_order(keys)
    if packed is None:
        # Equal keys are summed, so their order does not matter.
        order = np.argsort(keys)
        keys = keys[order]
    else:
        order, keys = packed
    return _sum_sorted(keys, octets[order], packets[order])


def _merge(a: tuple, b: tuple) -> tuple:
    """Two summed, sorted parts as one: a stable argsort of their joined keys
    is timsort finding two runs and merging them in one pass (and the
    gathers that follow read two streams in order), cheaper than sorting
    the summed rows again with the new ones."""
    keys = np.concatenate((a[0], b[0]))
    order = np.argsort(keys, kind="stable")
    return _sum_sorted(keys[order], np.concatenate((a[1], b[1]))[order],
                       np.concatenate((a[2], b[2]))[order])


def _sum_sorted(keys: np.ndarray, octets: np.ndarray, packets: np.ndarray) -> tuple:
    last = np.empty(len(keys), bool)                  # the last row of each key
    last[-1] = True
    np.not_equal(keys[1:], keys[:-1], out=last[:-1])
    ends = np.flatnonzero(last)
    return keys[ends], _segment_sums(octets, ends), _segment_sums(packets, ends)


def _segment_sums(values: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Sums of the runs of ``values`` that end at ``ends``: differences of
    the running sum. Unsigned arithmetic wraps, so the differences are exact
    while each run's sum fits in 64 bits. ``np.add.reduceat`` costs a call
    of the inner loop per run, and most runs here are one row long."""
    totals = np.cumsum(values, dtype=np.uint64)[ends]
    totals[1:] -= totals[:-1].copy()
    return totals


def _packed_order(keys: np.ndarray):
    """``(order, keys[order])`` by one plain sort instead of an argsort, or None.

    The keys of a buffer use few of their 64 bits: accounts below a million
    take 20 of the 28 account bits, and the intervals span a few of 2^26
    values. Re-packed as ``account | interval - first | class, direction``
    they leave room for the row number in the low bits, so ``np.sort`` (SIMD,
    about 3x faster than ``np.argsort`` on 64-bit keys, and 8x faster than
    the stable one) gives the order and the sorted keys at once.
    """
    n = len(keys)
    index_bits = max(1, (n - 1).bit_length())
    account = keys >> _ACCOUNT_SHIFT
    interval = (keys >> _INTERVAL_SHIFT) & _INTERVAL_MASK
    low = keys & _LOW_MASK                             # class and direction
    first = int(interval.min())
    interval_bits = (int(interval.max()) - first).bit_length()
    low_bits = int(low.max()).bit_length()
    account_bits = int(account.max()).bit_length()
    if account_bits + interval_bits + low_bits + index_bits > 64:
        return None
    packed = account << np.uint64(interval_bits + low_bits)
    if interval_bits:
        interval -= np.uint64(first)
        packed |= interval << np.uint64(low_bits)
    packed |= low
    packed <<= np.uint64(index_bits)
    packed |= np.arange(n, dtype=np.uint64)
    packed.sort()
    order = (packed & np.uint64((1 << index_bits) - 1)).astype(np.intp)
    packed >>= np.uint64(index_bits)
    # Back to the canonical layout (same order: both compare account first).
    low = packed & np.uint64((1 << low_bits) - 1)
    interval = (packed >> np.uint64(low_bits)) & np.uint64((1 << interval_bits) - 1)
    interval += np.uint64(first)
    packed >>= np.uint64(interval_bits + low_bits)
    packed <<= _ACCOUNT_SHIFT
    packed |= interval << _INTERVAL_SHIFT
    packed |= low
    return order, packed


# A flow claiming to last longer than this is spread over its last this
# many seconds (settings collector.max_flow_seconds): exporters expire
# flows after minutes (softflowd's maxlife is a week), and a span of years
# is a clock error, whose rows must not grow without bound.
DEFAULT_MAX_FLOW_SECONDS = 86_400
MAX_FLOW_SECONDS_LIMIT = 2**31
_PIECES_PER_CHUNK = 1 << 20


def spread(time, end, octets, packets, max_seconds: int = DEFAULT_MAX_FLOW_SECONDS,
           in_place: bool = False):
    """Flows that span several intervals, as one row per interval; vectorised.

    A flow covers the seconds [start, end) (a flow with end == start, one
    instant); interval k of its span gets the octets and packets of the
    seconds it holds, by exact integer shares: the part up to second b is
    ``floor(X * (b - start) / (end - start))`` (computed in float64: exact
    while ``X * (b - start)`` < 2^53, monotonic beyond), and the whole of X
    at its end, so the parts of a flow sum to its counts exactly. A flow
    longer than ``max_seconds`` is spread over its last ``max_seconds``.

    None when every flow lies in one interval (the usual case: nothing
    copied). Otherwise ``(time, octets, packets, keep, row, extra)``: the
    rows' own columns with each spread flow reduced to its first interval
    (its time moved there if its start was capped), ``keep`` a mask of the
    rows left with anything (None: all), and the further pieces as ``row``
    (which of the given rows each piece belongs to) and ``extra``
    (time, octets, packets of each piece). Pieces that got nothing (a few
    octets over many intervals) are left out. ``in_place``: ``time``,
    ``octets`` and ``packets`` are the caller's to lose, and are changed
    instead of copied.
    """
    time = np.asarray(time, np.int64)
    end = np.asarray(end, np.int64)
    first = time // INTERVAL_SECONDS
    long = np.flatnonzero((end - 1) // INTERVAL_SECONDS > first)
    if not len(long):
        return None
    if not in_place:
        time, octets, packets = time.copy(), octets.copy(), packets.copy()
    start = np.maximum(time[long], end[long] - max_seconds)
    stop = end[long]
    time[long] = start                      # a capped start: its first interval
    first = start // INTERVAL_SECONDS
    count = (stop - 1) // INTERVAL_SECONDS - first + 1      # intervals, >= 2
    parts = [[], [], [], []]
    # Most flows that cross a boundary cross one: two pieces, no gathers.
    two = count == 2
    if two.any():
        pick = np.flatnonzero(two)
        _spread_two(long[pick], start[pick], stop[pick], first[pick], octets, packets, parts)
        if len(pick) < len(long):
            more = np.flatnonzero(~two)
            long_more, start, stop, first, count = (long[more], start[more], stop[more],
                                                    first[more], count[more])
        else:
            long_more = long[:0]
    else:
        long_more = long
    if len(long_more):
        bounds = np.cumsum(count)
        # Bounded work arrays: at most about _PIECES_PER_CHUNK pieces at a time.
        cuts = np.searchsorted(bounds, np.arange(_PIECES_PER_CHUNK, int(bounds[-1]),
                                                 _PIECES_PER_CHUNK), side="right")
        for lo, hi in zip(np.concatenate(([0], cuts)), np.concatenate((cuts, [len(long_more)]))):
            if lo == hi:
                continue
            _spread_chunk(long_more[lo:hi], start[lo:hi], stop[lo:hi], first[lo:hi],
                          count[lo:hi], octets, packets, parts)
    row = np.concatenate(parts[0])
    extra = [np.concatenate(p) for p in parts[1:]]
    keep = None
    empty = (octets[long] == 0) & (packets[long] == 0)
    if empty.any():
        # A first interval that got nothing: no row for it.
        keep = np.ones(len(time), bool)
        keep[long[empty]] = False
    return time, octets, packets, keep, row, extra


def _share(value: np.ndarray, upto: np.ndarray, duration: np.ndarray) -> np.ndarray:
    """floor(value * upto / duration), at most value; float64 (SIMD): exact
    while value * upto < 2^53, monotonic in ``upto`` beyond. (Truncation is
    the floor of these non-negative numbers; through int64, which converts
    much faster than uint64, capped below 2^63.)"""
    scaled = value.astype(np.float64)
    scaled *= upto
    scaled /= duration
    np.minimum(scaled, 9.2e18, out=scaled)
    return np.minimum(scaled.astype(np.int64).view(np.uint64), value)


def _spread_two(rows, start, stop, first, octets, packets, parts) -> None:
    """``_spread_chunk`` for flows of exactly two intervals."""
    boundary = (first + 1) * INTERVAL_SECONDS
    upto = (boundary - start).astype(np.float64)
    duration = (stop - start).astype(np.float64)
    tails = []
    for column in (octets, packets):
        value = column[rows]
        head = _share(value, upto, duration)
        column[rows] = head
        value -= head
        tails.append(value)
    some = (tails[0] != 0) | (tails[1] != 0)
    if not some.all():
        rows, boundary, tails = rows[some], boundary[some], [t[some] for t in tails]
    parts[0].append(rows)
    parts[1].append(boundary)
    parts[2].append(tails[0])
    parts[3].append(tails[1])


def _spread_chunk(rows, start, stop, first, count, octets, packets, parts) -> None:
    """Pieces of flows ``rows``; their first pieces' counts go into ``octets``
    and ``packets`` (in place), the others into ``parts``."""
    total = int(count.sum())
    flow = np.repeat(np.arange(len(rows)), count)
    heads = np.zeros(len(rows), np.int64)
    np.cumsum(count[:-1], out=heads[1:])
    piece = np.arange(total, dtype=np.int64) - heads[flow]
    interval = first[flow] + piece
    # Each piece ends at its interval's end, the last at the flow's end.
    upto = np.minimum((interval + 1) * INTERVAL_SECONDS, stop[flow]) - start[flow]
    duration = (stop - start)[flow].astype(np.float64)
    upto = upto.astype(np.float64)
    last = np.empty(total, bool)             # a flow's last piece: the whole flow so far
    last[:-1] = piece[1:] == 0
    last[-1] = True
    shares = []
    for column in (octets, packets):
        value = column[rows]
        cumulative = _share(value[flow], upto, duration)
        cumulative[last] = value
        share = np.empty(total, np.uint64)
        share[0] = cumulative[0]
        np.subtract(cumulative[1:], cumulative[:-1], out=share[1:])
        share[heads] = cumulative[heads]
        column[rows] = share[heads]
        shares.append(share)
    later = np.ones(total, bool)
    later[heads] = False
    later &= (shares[0] != 0) | (shares[1] != 0)
    parts[0].append(rows[flow[later]])
    parts[1].append(interval[later] * INTERVAL_SECONDS)
    parts[2].append(shares[0][later])
    parts[3].append(shares[1][later])


class Rollup:
    """In-memory sums waiting for a flush.

    Batches are kept as they come (a key per row, mostly distinct within a
    batch) and summed together when the rows pending pass ``compact_at``,
    doubling each time, and before they are read: one sort over many
    batches costs less than a sort per batch and a merge.
    """

    def __init__(self, compact_at: int = 2_000_000,
                 max_flow_seconds: int = DEFAULT_MAX_FLOW_SECONDS):
        self._parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._size = 0
        self._reduced = True            # _parts is one summed, sorted part (or none)
        self._head_summed = False       # _parts[0] is summed and sorted, the rest raw
        self.compact_at = compact_at
        self._next_compact = compact_at
        self.dropped_rows = 0
        if not 0 < max_flow_seconds <= MAX_FLOW_SECONDS_LIMIT:
            raise ValueError(f"max_flow_seconds must be 1..{MAX_FLOW_SECONDS_LIMIT}")
        self.max_flow_seconds = int(max_flow_seconds)

    def add(self, rows: np.ndarray) -> None:
        """Rows of ATTRIBUTED_DTYPE."""
        assert rows.dtype == ATTRIBUTED_DTYPE
        self.add_columns(rows["account"], rows["time"], rows["class"], rows["direction"],
                         rows["bytes"], rows["packets"], rows["end"])

    def add_attributed(self, result: Attributed) -> None:
        """Takes the result's columns over: their contents change (a spread
        flow keeps its first interval's share)."""
        self.add_columns(result.account, result.time, result.traffic_class, result.direction,
                         result.bytes, result.packets, result.end, in_place=True)

    def add_columns(self, account, time, traffic_class, direction, octets, packets,
                    end=None, in_place: bool = False) -> None:
        """Rows as columns. A row whose ``end`` lies in a later interval than
        its ``time`` (its start) is spread over the intervals it spans, in
        proportion to the seconds it spent in each (see ``spread``)."""
        if not len(account):
            return
        ok = (account >= 0) & (account <= MAX_ACCOUNT_ID) & (time >= 0)
        if not ok.all():
            self.dropped_rows += int((~ok).sum())
            account, time, traffic_class, direction, octets, packets = (
                column[ok] for column in (account, time, traffic_class, direction, octets,
                                          packets))
            if end is not None:
                end = end[ok]
            if not len(account):
                return
        octets, packets = np.asarray(octets, np.uint64), np.asarray(packets, np.uint64)
        if end is not None:
            pieces = spread(time, end, octets, packets, self.max_flow_seconds,
                            in_place=in_place and time.dtype == np.int64)
            if pieces is not None:
                time, octets, packets, keep, row, (piece_time, piece_octets,
                                                   piece_packets) = pieces
                if len(row):
                    self._append(account[row], piece_time, traffic_class[row], direction[row],
                                 piece_octets, piece_packets)
                if keep is not None:
                    account, time, traffic_class, direction, octets, packets = (
                        column[keep] for column in (account, time, traffic_class, direction,
                                                    octets, packets))
        self._append(account, time, traffic_class, direction, octets, packets)

    def _append(self, account, time, traffic_class, direction, octets, packets) -> None:
        if not len(account):
            return
        interval = (time // INTERVAL_SECONDS).astype(np.uint64)
        keys = account.astype(np.uint64) << _ACCOUNT_SHIFT
        keys |= (interval & _INTERVAL_MASK) << _INTERVAL_SHIFT
        keys |= (traffic_class.astype(np.uint64) & _CLASS_MASK) << _CLASS_SHIFT
        keys |= direction
        self._parts.append((keys, octets, packets))
        self._size += len(keys)
        self._reduced = False
        if self._size > self._next_compact:
            self._compact()
            # Sum again only when the rows pending have doubled: keeps the
            # cost per row constant when many distinct keys are waiting.
            self._next_compact = max(self.compact_at, 2 * self._size)

    def _compact(self) -> None:
        if self._reduced:
            return
        summed = self._parts[0] if self._head_summed else None
        raw = self._parts[1:] if self._head_summed else self._parts
        keys, octets, packets = (np.concatenate([p[i] for p in raw]) for i in range(3))
        part = _reduce(keys, octets, packets)
        self._parts = [part if summed is None else _merge(summed, part)]
        self._size = len(self._parts[0][0])
        self._reduced = self._head_summed = True

    def __len__(self) -> int:
        self._compact()
        return self._size

    @property
    def raw_rows(self) -> int:
        """Rows held, summed or not (no work)."""
        return self._size

    def absorb(self, other: "Rollup") -> None:
        """Take ``other``'s rows over and sum them with these (``other`` is
        left to be dropped). The collector's flusher sums here, off the
        receive thread (numpy's sorts and ufuncs run without the GIL)."""
        if not other._parts:
            return
        if self._parts:
            self._compact()                   # one summed head, then the raw rows
            self._parts = self._parts + other._parts
            self._size += other._size
            self._reduced = False
        else:
            self._parts, self._size = list(other._parts), other._size
            self._reduced, self._head_summed = other._reduced, other._head_summed
        self._compact()

    def totals(self) -> tuple[int, int, int]:
        """(keys, bytes, packets) pending, after merging every batch."""
        if not self._parts:
            return 0, 0, 0
        self._compact()
        keys, octets, packets = self._parts[0]
        return len(keys), int(octets.sum()), int(packets.sum())

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The pending sums as (key, octets, packets) columns, summed and
        sorted by key, emptying the buffer."""
        if not self._parts:
            empty = np.empty(0, np.uint64)
            return empty, empty, empty
        self._compact()
        keys, octets, packets = self._parts[0]
        self._parts, self._size, self._next_compact = [], 0, self.compact_at
        self._head_summed = False
        return keys, octets, packets

    def take(self, class_names: Sequence[str]) -> list[dict]:
        """The pending sums as rows for TrafficRollup, emptying the buffer."""
        keys, octets, packets = self.arrays()
        return FlushUnit(keys, octets, packets, list(class_names), b"", 0).as_rows()


class ReplayGuard:
    """Digests of recent export packets; bounded, oldest forgotten first.

    Two generations of sets: new digests go into the recent one, and when it
    holds half the capacity it becomes the older one and the one before is
    dropped. So between half and all of the last ``capacity`` packets are
    remembered, at the price of a set lookup (an ordered dict costs twice
    that per packet, and packets come at 100k/s).
    """

    def __init__(self, capacity: int = 262_144):
        # ~130 bytes per remembered packet (bytes object + set slot): the
        # default window costs ~32 MiB and covers minutes of a busy exporter.
        self.capacity = capacity
        self._generation = max(1, capacity // 2)
        self._recent: set[bytes] = set()
        self._older: set[bytes] = set()
        self.pending: list[bytes] = []       # accepted since the last flush

    def __len__(self) -> int:
        return len(self._recent) + len(self._older)

    def load(self, session, since: dt.datetime) -> int:
        """The packets of the newest flushes since ``since``, up to the capacity."""
        query = (select(ReplaySet.digests).where(ReplaySet.seen_at >= since)
                 .order_by(ReplaySet.seen_at.desc(), ReplaySet.id.desc()))
        blobs, count = [], 0
        for blob in session.scalars(query.execution_options(yield_per=16)):
            blob = bytes(blob)
            blobs.append(blob)
            count += len(blob) // DIGEST_BYTES
            if count >= self.capacity:
                break
        loaded = 0
        for blob in reversed(blobs):           # oldest first: the newest stay longest
            digests = split_digests(blob)
            self.seed(digests[-self.capacity:])
            loaded += len(digests)
        return min(loaded, self.capacity)

    def load_peers(self, session, since: dt.datetime, known: set[int],
                   exclude_origin: str) -> tuple[list[bytes], set[int]]:
        """The packet keys other collectors stored since ``since`` in replay
        sets not in ``known`` (not seeded here: the caller seeds them under
        its lock), and the ids of the sets in that window (the caller's
        next ``known``). Several collectors behind one exporter address
        (anycast, or a failover) learn each other's packets this way while
        they run, not only when they start. By time with an overlap, not
        by id: ids are taken before commit, so a set committed late may
        have a smaller id than one already read."""
        ids = session.scalars(select(ReplaySet.id).where(
            ReplaySet.seen_at >= since, ReplaySet.origin != exclude_origin)).all()
        new = [i for i in ids if i not in known]
        digests: list[bytes] = []
        for start in range(0, len(new), 64):
            for blob in session.scalars(select(ReplaySet.digests).where(
                    ReplaySet.id.in_(new[start:start + 64]))):
                digests.extend(split_digests(bytes(blob)))
        return digests, set(ids)

    def seed(self, digests: Sequence[bytes]) -> None:
        """Remember packets counted elsewhere (stored, or spooled), without
        adding them to ``pending``."""
        for start in range(0, len(digests), self._generation):
            part = digests[start:start + self._generation]
            self._recent.update(part)
            if len(self._recent) >= self._generation:
                self._older, self._recent = self._recent, set()

    def __contains__(self, digest: bytes) -> bool:
        return digest in self._recent or digest in self._older

    def generations(self) -> tuple[set, set]:
        """The two sets to look a digest up in (valid until ``remember``)."""
        return self._recent, self._older

    def remember(self, digests: Sequence[bytes]) -> None:
        """Packets counted (decoded): remembered, and written at the next flush.
        Only these: junk that did not decode must not push real packets
        out of the window, nor fill the stored replay sets. A batch goes in
        at once, so a generation may pass its half of the capacity by
        less than a batch."""
        if not digests:
            return
        self._recent.update(digests)
        if len(self._recent) >= self._generation:
            self._older, self._recent = self._recent, set()
        self.pending.extend(digests)


def prune_replay_sets(session, before: dt.datetime) -> int:
    result = session.execute(delete(ReplaySet).where(ReplaySet.seen_at < before))
    return result.rowcount or 0
