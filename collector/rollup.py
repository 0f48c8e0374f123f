"""Per (account, 5-minute interval, class, direction) sums, and their upsert.

``Rollup.add`` reduces a batch of attributed rows with a sort and
``np.add.reduceat`` into one row per key; batches pile up as small arrays
and are merged once more at flush time. ``flush`` writes one upsert per key
and the digests of the export packets that contributed, in one transaction:
a replayed export packet is recognised by ``ReplayGuard`` and skipped, and a
packet whose rollup was never committed is not remembered as seen.
"""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from typing import Iterable, Sequence

import numpy as np
from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite

from collector.attribute import ATTRIBUTED_DTYPE, DIRECTIONS, Attributed
from collector.models import INTERVAL_SECONDS, CollectorPacket, TrafficRollup

_ACCOUNT_SHIFT = np.uint64(35)
_INTERVAL_SHIFT = np.uint64(9)
_INTERVAL_MASK = np.uint64((1 << 26) - 1)
_CLASS_SHIFT = np.uint64(1)
_CLASS_MASK = np.uint64(0xFF)
MAX_ACCOUNT_ID = (1 << 28) - 1
_EPOCH = dt.datetime(1970, 1, 1)


def _reduce(keys: np.ndarray, octets: np.ndarray, packets: np.ndarray, runs: bool = False):
    if not len(keys):
        return keys, octets, packets
    # Equal keys are summed, so their order does not matter: introsort is
    # 2.5x faster than the stable sort on 30,000 random 64-bit keys. Parts
    # being merged are each sorted already: the stable sort (timsort) finds
    # those runs and merges them.
    order = np.argsort(keys, kind="stable" if runs else None)
    keys, octets, packets = keys[order], octets[order], packets[order]
    starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
    return keys[starts], np.add.reduceat(octets, starts), np.add.reduceat(packets, starts)


class Rollup:
    """In-memory sums waiting for a flush."""

    def __init__(self, compact_at: int = 2_000_000):
        self._parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._size = 0
        self.compact_at = compact_at
        self._next_compact = compact_at
        self.dropped_rows = 0

    def add(self, rows: np.ndarray) -> None:
        """Rows of ATTRIBUTED_DTYPE."""
        assert rows.dtype == ATTRIBUTED_DTYPE
        self.add_columns(rows["account"], rows["time"], rows["class"], rows["direction"],
                         rows["bytes"], rows["packets"])

    def add_attributed(self, result: Attributed) -> None:
        self.add_columns(result.account, result.time, result.traffic_class, result.direction,
                         result.bytes, result.packets)

    def add_columns(self, account, time, traffic_class, direction, octets, packets) -> None:
        if not len(account):
            return
        ok = (account >= 0) & (account <= MAX_ACCOUNT_ID) & (time >= 0)
        if not ok.all():
            self.dropped_rows += int((~ok).sum())
            account, time, traffic_class, direction, octets, packets = (
                column[ok] for column in (account, time, traffic_class, direction, octets,
                                          packets))
        interval = (time // INTERVAL_SECONDS).astype(np.uint64)
        keys = ((account.astype(np.uint64) << _ACCOUNT_SHIFT)
                | ((interval & _INTERVAL_MASK) << _INTERVAL_SHIFT)
                | ((traffic_class.astype(np.uint64) & _CLASS_MASK) << _CLASS_SHIFT)
                | direction.astype(np.uint64))
        part = _reduce(keys, octets, packets)
        self._parts.append(part)
        self._size += len(part[0])
        if self._size > self._next_compact and len(self._parts) > 1:
            self._compact()
            # Merge again only when the pending parts have doubled: keeps the
            # cost per row constant when many distinct keys are waiting.
            self._next_compact = max(self.compact_at, 2 * self._size)

    def _compact(self) -> None:
        keys, octets, packets = (np.concatenate([p[i] for p in self._parts]) for i in range(3))
        self._parts = [_reduce(keys, octets, packets, runs=True)]
        self._size = len(self._parts[0][0])

    def __len__(self) -> int:
        if len(self._parts) > 1:
            self._compact()
        return self._size

    def totals(self) -> tuple[int, int, int]:
        """(keys, bytes, packets) pending, after merging every batch."""
        if not self._parts:
            return 0, 0, 0
        self._compact()
        keys, octets, packets = self._parts[0]
        return len(keys), int(octets.sum()), int(packets.sum())

    def take(self, class_names: Sequence[str]) -> list[dict]:
        """The pending sums as rows for TrafficRollup, emptying the buffer."""
        if not self._parts:
            return []
        self._compact()
        keys, octets, packets = self._parts[0]
        self._parts, self._size, self._next_compact = [], 0, self.compact_at
        account = (keys >> _ACCOUNT_SHIFT).astype(np.int64)
        interval = ((keys >> _INTERVAL_SHIFT) & _INTERVAL_MASK).astype(np.int64)
        klass = ((keys >> _CLASS_SHIFT) & _CLASS_MASK).astype(np.int64)
        direction = (keys & np.uint64(1)).astype(np.int64)
        return [
            {"account_id": int(a),
             "interval_start": _EPOCH + dt.timedelta(seconds=int(i) * INTERVAL_SECONDS),
             "traffic_class": class_names[int(c)], "direction": DIRECTIONS[int(d)],
             "bytes": int(b), "packets": int(p), "source": "netflow"}
            for a, i, c, d, b, p in zip(account.tolist(), interval.tolist(), klass.tolist(),
                                        direction.tolist(), octets.tolist(), packets.tolist())]

    def restore(self, rows: list[dict], class_names: Sequence[str]) -> None:
        """Put rows back after a failed flush (they are merged with newer sums)."""
        if not rows:
            return
        ids = {name: i for i, name in enumerate(class_names)}
        out = np.empty(len(rows), ATTRIBUTED_DTYPE)
        out["account"] = [r["account_id"] for r in rows]
        out["time"] = [int((r["interval_start"] - _EPOCH).total_seconds()) for r in rows]
        out["class"] = [ids[r["traffic_class"]] for r in rows]
        out["direction"] = [DIRECTIONS.index(r["direction"]) for r in rows]
        out["bytes"] = [r["bytes"] for r in rows]
        out["packets"] = [r["packets"] for r in rows]
        self.add(out)


class ReplayGuard:
    """Digests of recent export packets; bounded, oldest forgotten first."""

    def __init__(self, capacity: int = 262_144):
        # ~165 bytes per remembered packet (bytes object + dict slot): the
        # default window costs ~40 MiB and covers minutes of a busy exporter.
        self.capacity = capacity
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self.pending: list[bytes] = []       # accepted since the last flush

    def load(self, session, since: dt.datetime) -> int:
        query = (select(CollectorPacket.digest).where(CollectorPacket.seen_at >= since)
                 .order_by(CollectorPacket.seen_at.desc()).limit(self.capacity))
        digests = list(session.scalars(query))
        for digest in reversed(digests):
            self._remember(bytes(digest))
        return len(digests)

    def _remember(self, digest: bytes) -> None:
        self._seen[digest] = None
        if len(self._seen) > self.capacity:
            self._seen.popitem(last=False)

    def accept(self, digest: bytes) -> bool:
        """True the first time a digest is seen; False for a replay."""
        if digest in self._seen:
            return False
        self._remember(digest)
        self.pending.append(digest)
        return True

    def forget(self, digests: Iterable[bytes]) -> None:
        """A flush failed: these packets are not counted anywhere."""
        for digest in digests:
            self._seen.pop(digest, None)


def _insert(session):
    return (postgresql.insert if session.bind.dialect.name == "postgresql" else sqlite.insert)


def upsert_rollups(session, rows: list[dict], digests: Sequence[bytes] = (),
                   now: dt.datetime | None = None, chunk: int = 2000) -> None:
    """Add ``rows`` to traffic_rollups (bytes/packets summed on conflict)."""
    insert = _insert(session)
    for start in range(0, len(rows), chunk):
        statement = insert(TrafficRollup).values(rows[start:start + chunk])
        statement = statement.on_conflict_do_update(
            index_elements=["account_id", "interval_start", "traffic_class", "direction",
                            "source"],
            set_={"bytes": TrafficRollup.bytes + statement.excluded.bytes,
                  "packets": TrafficRollup.packets + statement.excluded.packets})
        session.execute(statement)
    if digests:
        now = now or dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        values = [{"digest": d, "seen_at": now} for d in digests]
        for start in range(0, len(values), chunk):
            statement = insert(CollectorPacket).values(values[start:start + chunk])
            session.execute(statement.on_conflict_do_nothing(index_elements=["digest"]))


def prune_packets(session, before: dt.datetime) -> int:
    result = session.execute(delete(CollectorPacket).where(CollectorPacket.seen_at < before))
    return result.rowcount or 0
