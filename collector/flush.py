"""Writing the collector's sums: flush units, their database write and the local spool.

A ``FlushUnit`` is what one flush takes from the receive path: the summed
rollup (three numpy columns: packed key, octets, packets), the 16-byte keys
of the export packets that contributed (replay memory) and a ``batch_id``.
``write_unit`` stores it in one transaction: the replay set row first
(``batch_id`` unique: a unit already stored is recognised and skipped), then
the rollups, on PostgreSQL by binary COPY into a temporary table and one
``INSERT … SELECT … ON CONFLICT`` (the cost is the server's, not the
collector's: the receive thread keeps the GIL), on SQLite by a multi-row
upsert.

A unit that cannot be written (the database is down or slow, or the
collector is stopping) goes to the ``Spool``: one ``.npz`` file per unit in
a local directory, written atomically and fsynced. The next collector to
start on this data directory reads every spool file's packet keys into its
replay memory and applies the files it can lock; a unit stored before its
file was removed is skipped by its ``batch_id``, so nothing is counted twice.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import fcntl
import json
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Sequence

import numpy as np
from sqlalchemy import text

from collector.attribute import DIRECTIONS
from collector.models import INTERVAL_SECONDS, ReplaySet

log = logging.getLogger("abonent.collector")

DIGEST_BYTES = 16
_ACCOUNT_SHIFT = np.uint64(35)
_INTERVAL_SHIFT = np.uint64(9)
_INTERVAL_MASK = np.uint64((1 << 26) - 1)
_CLASS_SHIFT = np.uint64(1)
_CLASS_MASK = np.uint64(0xFF)
_EPOCH = dt.datetime(1970, 1, 1)
# PostgreSQL timestamps count microseconds from 2000-01-01.
_PG_EPOCH_SECONDS = 946_684_800


def split_digests(blob: bytes) -> list[bytes]:
    """Packet keys stored end to end (a replay set, a spool file, a unit)."""
    return [blob[i:i + DIGEST_BYTES] for i in range(0, len(blob), DIGEST_BYTES)]


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


@dataclasses.dataclass
class FlushUnit:
    """One flush's worth of sums and packet keys; see the module docstring."""

    keys: np.ndarray                 # uint64: account | interval | class | direction
    octets: np.ndarray               # uint64
    packets: np.ndarray              # uint64
    class_names: list[str]
    digests: bytes                   # the packets' keys, DIGEST_BYTES each
    flows: int                       # flows decoded into this unit (counted as kept)
    batch_id: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex)
    created: float = 0.0             # time.time() when taken
    path: Path | None = None         # its spool file, once spooled
    lock: object = None              # the open, locked spool file (see Spool.claim)
    recovered: bool = False          # read from a spool written by an earlier process
    rows: int = -1                   # rollup rows (kept when the columns go to disk)

    def __post_init__(self):
        if self.rows < 0:
            self.rows = len(self.keys)

    @property
    def packet_count(self) -> int:
        return len(self.digests) // DIGEST_BYTES

    def digest_list(self) -> list[bytes]:
        return split_digests(self.digests)

    def columns(self) -> dict[str, np.ndarray]:
        """account_id, interval (index of 5 minutes since 1970), class, direction."""
        keys = self.keys
        return {"account": (keys >> _ACCOUNT_SHIFT).astype(np.int64),
                "interval": ((keys >> _INTERVAL_SHIFT) & _INTERVAL_MASK).astype(np.int64),
                "class": ((keys >> _CLASS_SHIFT) & _CLASS_MASK).astype(np.int64),
                "direction": (keys & np.uint64(1)).astype(np.int64)}

    def as_rows(self) -> list[dict]:
        """The sums as TrafficRollup rows."""
        c = self.columns()
        names = self.class_names
        return [
            {"account_id": a,
             "interval_start": _EPOCH + dt.timedelta(seconds=i * INTERVAL_SECONDS),
             "traffic_class": names[k], "direction": DIRECTIONS[d],
             "bytes": b, "packets": p, "source": "netflow"}
            for a, i, k, d, b, p in zip(c["account"].tolist(), c["interval"].tolist(),
                                        c["class"].tolist(), c["direction"].tolist(),
                                        self.octets.tolist(), self.packets.tolist())]


# -- the database write -------------------------------------------------------------

def write_unit(session, unit: FlushUnit, origin: str = "", pause=None) -> bool:
    """Store ``unit`` in the session's transaction; False if it was stored before.

    ``pause(seconds)``, if given, is called between the parts of a large
    unit with the time the last part took: the collector uses it to leave
    the CPU to its receiving thread now and then (PostgreSQL's work for a
    flush would otherwise take a core for seconds on a small box)."""
    claimed = _claim_batch(session, unit, origin)
    if not claimed:
        return False
    if unit.rows:
        if session.bind.dialect.name == "postgresql":
            _copy_rollups(session, unit, pause)
        else:
            upsert_rows(session, unit.as_rows())
    return True


def _claim_batch(session, unit: FlushUnit, origin: str) -> bool:
    table = ReplaySet.__table__
    values = {"batch_id": unit.batch_id, "seen_at": _utcnow(), "origin": origin[:64],
              "packets": unit.packet_count, "rows": unit.rows, "flows": int(unit.flows),
              "digests": unit.digests}
    if session.bind.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    statement = insert(table).values(values).on_conflict_do_nothing(
        index_elements=["batch_id"]).returning(table.c.id)
    return session.execute(statement).first() is not None


def upsert_rows(session, rows: Sequence[dict], chunk: int = 2000) -> None:
    """Add ``rows`` to traffic_rollups (bytes/packets summed on conflict)."""
    from collector.models import TrafficRollup

    if session.bind.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    for start in range(0, len(rows), chunk):
        statement = insert(TrafficRollup).values(list(rows[start:start + chunk]))
        statement = statement.on_conflict_do_update(
            index_elements=["account_id", "interval_start", "traffic_class", "direction",
                            "source"],
            set_={"bytes": TrafficRollup.bytes + statement.excluded.bytes,
                  "packets": TrafficRollup.packets + statement.excluded.packets})
        session.execute(statement)


# One COPY row: a field count, then (length, value) per field, big-endian.
_COPY_ROW = np.dtype([("fields", ">i2"),
                      ("l_account", ">i4"), ("account", ">i8"),
                      ("l_time", ">i4"), ("time", ">i8"),
                      ("l_class", ">i4"), ("class", ">i2"),
                      ("l_direction", ">i4"), ("direction", ">i2"),
                      ("l_bytes", ">i4"), ("bytes", ">i8"),
                      ("l_packets", ">i4"), ("packets", ">i8")])
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
_COPY_TRAILER = (-1).to_bytes(2, "big", signed=True)


def copy_buffer(unit: FlushUnit) -> bytes:
    """The unit's sums in PostgreSQL's binary COPY format, built by numpy."""
    return b"".join((_COPY_HEADER, _copy_rows(unit).tobytes(), _COPY_TRAILER))


def _copy_rows(unit: FlushUnit) -> np.ndarray:
    c = unit.columns()
    rows = np.empty(unit.rows, _COPY_ROW)
    rows["fields"] = 6
    for name, size in (("account", 8), ("time", 8), ("class", 2), ("direction", 2),
                       ("bytes", 8), ("packets", 8)):
        rows["l_" + name] = size
    rows["account"] = c["account"]
    rows["time"] = (c["interval"] * INTERVAL_SECONDS - _PG_EPOCH_SECONDS) * 1_000_000
    rows["class"] = c["class"]
    rows["direction"] = c["direction"]
    rows["bytes"] = unit.octets.astype(np.int64)
    rows["packets"] = unit.packets.astype(np.int64)
    return rows


# Rows per COPY and upsert: a part takes PostgreSQL a few hundred ms.
PART_ROWS = 25_000


def _copy_rollups(session, unit: FlushUnit, pause=None) -> None:
    session.execute(text(
        "CREATE TEMPORARY TABLE collector_stage (account_id bigint, interval_start timestamp, "
        "class smallint, direction smallint, bytes bigint, packets bigint) ON COMMIT DROP"))
    rows = _copy_rows(unit)
    upsert = text(
        "INSERT INTO traffic_rollups (account_id, interval_start, traffic_class, direction, "
        "bytes, packets, source) "
        "SELECT s.account_id, s.interval_start, (CAST(:classes AS text[]))[s.class + 1], "
        "(CAST(:directions AS text[]))[s.direction + 1], s.bytes, s.packets, 'netflow' "
        "FROM collector_stage s "
        "ON CONFLICT (account_id, interval_start, traffic_class, direction, source) "
        "DO UPDATE SET bytes = traffic_rollups.bytes + excluded.bytes, "
        "packets = traffic_rollups.packets + excluded.packets")
    parameters = {"classes": list(unit.class_names), "directions": list(DIRECTIONS)}
    # The parts go in key order (account first), as every collector writes
    # them: concurrent flushes lock shared rows in the same order.
    for start in range(0, len(rows), PART_ROWS):
        began = time.monotonic()
        if start:
            session.execute(text("TRUNCATE collector_stage"))
        cursor = session.connection().connection.cursor()
        try:
            with cursor.copy("COPY collector_stage FROM STDIN (FORMAT BINARY)") as copy:
                copy.write(b"".join((_COPY_HEADER, rows[start:start + PART_ROWS].tobytes(),
                                     _COPY_TRAILER)))
        finally:
            cursor.close()
        session.execute(upsert, parameters)
        if pause is not None and start + PART_ROWS < len(rows):
            pause(time.monotonic() - began)


# -- the local spool ------------------------------------------------------------------

class Spool:
    """Flush units on local disk, one ``<batch_id>.npz`` each."""

    SUFFIX = ".npz"

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def save(self, unit: FlushUnit) -> Path:
        """Write ``unit`` durably (temp file, fsync, rename, fsync the folder).
        The file stays locked by this process (``unit.lock``) until it is
        applied or the process ends, so no other collector applies it meanwhile."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{unit.batch_id}{self.SUFFIX}"
        temporary = self.folder / f".{unit.batch_id}.tmp"
        meta = {"batch_id": unit.batch_id, "class_names": list(unit.class_names),
                "flows": int(unit.flows), "created": unit.created}
        handle = open(temporary, "wb")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            np.savez(handle, keys=unit.keys, octets=unit.octets, packets=unit.packets,
                     digests=np.frombuffer(unit.digests, np.uint8),
                     meta=np.array(json.dumps(meta)))
            handle.flush()
            os.fsync(handle.fileno())
            os.replace(temporary, path)
        except BaseException:
            handle.close()
            try:
                temporary.unlink()
            except OSError:
                pass
            raise
        self._sync_folder()
        release(unit)
        unit.path, unit.lock = path, handle
        return path

    def _sync_folder(self) -> None:
        try:
            descriptor = os.open(self.folder, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)

    def paths(self) -> list[Path]:
        if not self.folder.exists():
            return []
        return sorted(self.folder.glob(f"*{self.SUFFIX}"), key=lambda p: p.stat().st_mtime
                      if p.exists() else 0)

    @staticmethod
    def read(handle_or_path, path: Path | None = None) -> FlushUnit:
        with np.load(handle_or_path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            unit = FlushUnit(keys=data["keys"], octets=data["octets"], packets=data["packets"],
                             class_names=list(meta["class_names"]),
                             digests=data["digests"].tobytes(), flows=int(meta["flows"]),
                             batch_id=str(meta["batch_id"]),
                             created=float(meta.get("created") or 0.0))
        unit.path = path if path is not None else Path(handle_or_path)
        return unit

    def peek_digests(self) -> list[bytes]:
        """Every spooled packet key (for the replay memory of a starting collector)."""
        digests: list[bytes] = []
        for path in self.paths():
            try:
                with np.load(path, allow_pickle=False) as data:
                    blob = data["digests"].tobytes()
            except (OSError, ValueError, KeyError) as error:
                log.warning("collector spool file %s unreadable: %s", path.name, error)
                continue
            digests.extend(split_digests(blob))
        return digests

    def claim(self) -> list[FlushUnit]:
        """The spooled units no running collector holds, each locked for this one.
        (A half-written file a killed collector left is removed: its unit was
        not yet spooled, so it was counted as lost, not kept.)"""
        for partial in self.folder.glob(".*.tmp") if self.folder.exists() else []:
            try:
                with open(partial, "rb") as handle:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    partial.unlink()
            except OSError:
                continue
        units = []
        for path in self.paths():
            try:
                handle = open(path, "rb")
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()               # another collector is applying it
                continue
            if not path.exists():            # applied and removed while we opened it
                handle.close()
                continue
            try:
                unit = self.read(handle, path)
            except (OSError, ValueError, KeyError) as error:
                log.error("collector spool file %s unreadable, left for an operator: %s",
                          path.name, error)
                handle.close()
                continue
            unit.lock = handle
            unit.recovered = True
            units.append(unit)
        return units

    @staticmethod
    def remove(unit: FlushUnit) -> None:
        if unit.path is not None:
            try:
                unit.path.unlink()
            except FileNotFoundError:
                pass
        release(unit)


def release(unit: FlushUnit) -> None:
    if unit.lock is not None:
        try:
            unit.lock.close()
        except OSError:
            pass
        unit.lock = None
