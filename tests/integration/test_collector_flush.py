"""collector.flush on both databases: a unit is stored once whatever happens
to it, by binary COPY (PostgreSQL) or upsert (SQLite), and the spool keeps it
whole and locked."""

import datetime as dt
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from sqlalchemy import func, select

from collector.flush import FlushUnit, Spool, write_unit
from collector.models import ReplaySet, TrafficRollup
from collector.rollup import Rollup
from tests.conftest import make_context
from tests.factories import make_account


def _unit(accounts, salt=0) -> FlushUnit:
    rollup = Rollup()
    n = len(accounts)
    times = 1_795_000_000 + 300 * np.arange(n, dtype=np.int64)
    alternate = (np.arange(n) % 2).astype(np.uint64)
    rollup.add_columns(np.array(accounts, np.int64), times, alternate, alternate,
                       np.full(n, 1000 + salt, np.uint64),
                       np.full(n, 3, np.uint64))
    keys, octets, packets = rollup.arrays()
    digests = b"".join(bytes([i % 256]) * 16 for i in range(5))
    return FlushUnit(keys, octets, packets, ["internet", "peering"], digests, flows=n)


def _rows(ctx):
    with ctx.Session() as s:
        return sorted(tuple(r) for r in s.execute(select(
            TrafficRollup.account_id, TrafficRollup.interval_start, TrafficRollup.traffic_class,
            TrafficRollup.direction, TrafficRollup.bytes, TrafficRollup.packets)).all())


def test_a_unit_is_stored_once_and_adds_to_existing_rows(db_url, tmp_path):
    ctx = make_context(db_url, data_dir=tmp_path)
    with ctx.Session() as s, s.begin():
        accounts = [make_account(s).id for _ in range(6)]
    unit = _unit(accounts)
    with ctx.Session() as s, s.begin():
        assert write_unit(s, unit, "test") is True
    with ctx.Session() as s, s.begin():
        assert write_unit(s, unit, "test") is False     # the same batch again
    start = dt.datetime(1970, 1, 1) + dt.timedelta(seconds=1_795_000_000 // 300 * 300)
    expected = [(a, start + dt.timedelta(minutes=5 * i), ["internet", "peering"][i % 2],
                 ["in", "out"][i % 2], 1000, 3) for i, a in enumerate(accounts)]
    assert _rows(ctx) == sorted(expected)
    # Another unit over the same keys adds to them (the ON CONFLICT sum).
    with ctx.Session() as s, s.begin():
        assert write_unit(s, _unit(accounts, salt=1), "test") is True
    assert [r[4] for r in _rows(ctx)] == [2001] * 6
    with ctx.Session() as s:
        sets = s.execute(select(ReplaySet.packets, ReplaySet.rows, ReplaySet.flows,
                                func.length(ReplaySet.digests))).all()
    assert sorted(tuple(r) for r in sets) == [(5, 6, 6, 80)] * 2
    ctx.dispose()


def test_the_spool_keeps_a_unit_whole_and_locked_by_its_writer(tmp_path):
    spool = Spool(tmp_path / "spool")
    unit = _unit([1, 2, 3])
    path = spool.save(unit)
    back = Spool.read(path)
    assert back.batch_id == unit.batch_id and back.flows == 3 and back.rows == 3
    assert back.class_names == ["internet", "peering"] and back.digests == unit.digests
    assert np.array_equal(back.keys, unit.keys) and np.array_equal(back.octets, unit.octets)
    assert spool.peek_digests() == unit.digest_list()
    # Another process cannot claim it while this one holds it...
    probe = textwrap.dedent(f"""
        from collector.flush import Spool
        print(len(Spool({str(tmp_path / 'spool')!r}).claim()))
    """)
    held = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert held.stdout.strip() == "0", held.stderr
    # ... and can once it lets go (a process that ends lets go too).
    from collector.flush import release
    release(unit)
    free = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert free.stdout.strip() == "1", free.stderr
    claimed = spool.claim()
    assert [u.batch_id for u in claimed] == [unit.batch_id] and claimed[0].recovered
    Spool.remove(claimed[0])
    assert spool.paths() == []


def test_a_half_written_spool_file_of_a_dead_process_is_removed(tmp_path):
    folder = tmp_path / "spool"
    folder.mkdir()
    (folder / ".deadbeef.tmp").write_bytes(b"PK\x03\x04 half a file")
    assert Spool(folder).claim() == []
    assert list(folder.iterdir()) == []


def test_a_unit_written_in_parts_with_pauses_is_whole(db_url, tmp_path, monkeypatch):
    """PostgreSQL writes a large unit in parts (PART_ROWS each) and pauses
    between them; the rollups are the same as in one go."""
    import collector.flush as flush

    monkeypatch.setattr(flush, "PART_ROWS", 4)
    ctx = make_context(db_url, data_dir=tmp_path)
    with ctx.Session() as s, s.begin():
        accounts = [make_account(s).id for _ in range(10)]
    pauses = []
    with ctx.Session() as s, s.begin():
        assert write_unit(s, _unit(accounts), "test", pause=pauses.append) is True
    assert [r[4] for r in _rows(ctx)] == [1000] * 10
    if ctx.engine.dialect.name == "postgresql":
        assert len(pauses) == 2 and all(p >= 0 for p in pauses)    # 4 + 4 + 2 rows
    ctx.dispose()


def test_a_flush_pauses_three_times_its_part_unless_stopping_or_behind():
    """The writer's pause between parts (CollectorServer._pace): three
    times the part's time, at most 1 s; none once stopping or while a
    further unit waits (the writer is behind)."""
    import threading
    from types import SimpleNamespace

    from collector.server import CollectorServer

    waits = []
    stopping = SimpleNamespace(is_set=lambda: False, wait=waits.append)
    writer = SimpleNamespace(_stopping=stopping, _queue_lock=threading.Lock(), _queue=["unit"],
                             PACE=CollectorServer.PACE)
    CollectorServer._pace(writer, 0.2)
    CollectorServer._pace(writer, 0.5)
    assert waits == [pytest.approx(0.6), 1.0]
    writer._queue.append("next unit")
    CollectorServer._pace(writer, 0.2)
    writer._queue[:] = ["unit"]
    stopping.is_set = lambda: True
    CollectorServer._pace(writer, 0.2)
    assert len(waits) == 2
