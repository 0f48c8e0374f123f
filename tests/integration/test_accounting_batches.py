"""The PostgreSQL write path (set-based, issue 18) keeps the sessions and the
lease history exactly as the row-by-row statements do, which SQLite still
runs: the same random batches, crowded onto a few addresses so that Starts,
Stops, reopened sessions and Accounting-On meet on one address within a
batch, are written to both and the tables compared.

(Before issue 18 they differed after an Accounting-On: its lease close
matched every session the NAS had ever stopped, and each database took the
stop time of another one; see aaa.accounting._CLOSE_SESSION_LEASES.)"""

import datetime as dt
import random
from dataclasses import replace

import pytest
from sqlalchemy import select

from aaa import accounting
from aaa.accounting import ACCOUNTING_ON, INTERIM, START, STOP, AcctRecord
from aaa.models import IpLease
from aaa.models import Session as RadiusSession
from config.migrate import upgrade
from tests.conftest import make_context

T0 = dt.datetime(2026, 12, 6, 6, 0)


def _batches(seed: int, count: int = 60) -> list[list[AcctRecord]]:
    rng = random.Random(seed)
    batches = []
    clock = 0
    for _ in range(count):
        batch = []
        for _ in range(rng.randint(1, 12)):
            clock += rng.randint(0, 3)
            if rng.random() < 0.03:
                batch.append(AcctRecord(nas_id=rng.randint(1, 2), status=ACCOUNTING_ON,
                                        event_time=T0 + dt.timedelta(seconds=clock)))
                continue
            session = rng.randint(0, 24)
            status = rng.choice((START, START, INTERIM, INTERIM, STOP))
            batch.append(AcctRecord(
                nas_id=1 + session % 2, status=status,
                event_time=T0 + dt.timedelta(seconds=clock), acct_session_id=f"s{session}",
                username=f"u{session % 5}",
                # Five addresses for 25 sessions; now and then none at all.
                framed_ip=None if rng.random() < 0.1 else f"10.0.0.{rng.randint(1, 5)}",
                octets_in=clock * 10, session_time=rng.randint(0, 5),
                account_id=None if rng.random() < 0.05 else 1 + session % 3,
                service_id=1 + session % 3, saw_start=status == START,
                terminate_cause="User-Request" if status == STOP else None))
        batches.append(batch)
    return batches


def _tables(ctx):
    with ctx.Session() as session:
        ids = {row.id: (row.nas_id, row.acct_session_id)
               for row in session.scalars(select(RadiusSession))}
        sessions = sorted(
            (row.nas_id, row.acct_session_id, row.username, row.account_id, row.framed_ip,
             row.started_at, row.updated_at, row.stopped_at, row.octets_in,
             row.terminate_cause) for row in session.scalars(select(RadiusSession)))
        leases = sorted(
            (row.account_id, row.address, row.valid_from, row.valid_to, row.open_address,
             ids.get(row.session_id)) for row in session.scalars(select(IpLease)))
    return sessions, leases


def _write(ctx, batches) -> None:
    for batch in batches:
        with ctx.engine.begin() as connection:
            accounting.apply_batch(connection, [replace(r) for r in batch])


@pytest.mark.parametrize("seed", range(20))
def test_postgresql_batches_store_what_sqlite_row_by_row_stores(pg_url, tmp_path, seed):
    batches = _batches(seed)
    sqlite = make_context(f"sqlite:///{tmp_path / 'rows.sqlite3'}")
    postgresql = make_context(pg_url)
    try:
        upgrade(sqlite.engine)
        _write(sqlite, batches)
        _write(postgresql, batches)
        expected, got = _tables(sqlite), _tables(postgresql)
    finally:
        sqlite.dispose()
        postgresql.dispose()
    assert got[0] == expected[0]
    assert got[1] == expected[1]
    # The batches did crowd leases: some addresses changed hands.
    assert len(expected[1]) > 5
