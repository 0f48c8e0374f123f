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
from sqlalchemy import select, text

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


def test_a_batch_prepared_while_the_leases_were_few_still_probes_their_index(pg_url):
    """The upsert is a prepared statement (aaa.accounting._execute): past its
    fifth run PostgreSQL would keep a generic plan made from the tables as
    they were then, here nearly empty, and read all of ip_leases for every
    row once it has grown (or, with sequential scans turned off, all of an
    index of it). Planned afresh on each run, a batch reads ip_leases by
    index probes only. (In a database of its own: the statistics it
    leaves would mislead the planner in the next tests.)"""
    from bench.scratch import scratch_database
    with scratch_database(pg_url, prefix="abonent_plans") as (_engine, url):
        _prepared_on_few_leases(url)


def _prepared_on_few_leases(url: str) -> None:
    ctx = make_context(url)

    def starts(first: int) -> list[AcctRecord]:
        return [AcctRecord(nas_id=1, status=START, event_time=T0, acct_session_id=f"p{n}",
                           username="u1", framed_ip=f"10.1.{n // 250}.{n % 250 + 1}",
                           account_id=1, service_id=1, saw_start=True)
                for n in range(first, first + 20)]

    def batch(run: int) -> list[AcctRecord]:
        # This run's Starts and the Stops of the last run's sessions: the
        # upsert and the statement that closes leases (_PG_CLOSE_LEASES).
        stops = [replace(r, status=STOP, event_time=T0 + dt.timedelta(minutes=5),
                         session_time=300, saw_start=False)
                 for r in (starts((run - 1) * 20) if run else [])]
        return starts(run * 20) + stops

    try:
        with ctx.engine.connect() as connection:
            # Statistics that say the tables are empty (a new installation).
            connection.execute(text("ANALYZE sessions"))
            connection.execute(text("ANALYZE ip_leases"))
            connection.commit()
            for run in range(8):
                with connection.begin():
                    accounting.apply_batch(connection, batch(run))
            with connection.begin():
                connection.execute(text(
                    "INSERT INTO ip_leases (account_id, address, valid_from, valid_to) "
                    "SELECT 2, '10.9.' || (g / 250) || '.' || (g % 250), :t, :t "
                    "FROM generate_series(1, 50000) AS g"), {"t": T0})
            # No ANALYZE: a storm outruns autovacuum; the planner then
            # knows the table's size only from its pages.
            # The backend's counts not yet reported include earlier
            # transactions' (PostgreSQL 15): the batch's are the difference.
            scans = text("SELECT seq_scan, idx_scan, idx_tup_fetch FROM pg_stat_xact_user_tables "
                         "WHERE relname = 'ip_leases'")
            with connection.begin():
                before = connection.execute(scans).one()
                accounting.apply_batch(connection, batch(8))
                after = connection.execute(scans).one()
                leases = connection.execute(text(
                    "SELECT acct_session_id FROM sessions JOIN ip_leases l "
                    "ON l.session_id = sessions.id WHERE l.open_address IS NOT NULL")).scalars()
                leases = sorted(leases)
                closed = connection.execute(text(
                    "SELECT count(*) FROM ip_leases WHERE account_id = 1 "
                    "AND open_address IS NULL AND valid_to IS NOT NULL")).scalar()
    finally:
        ctx.dispose()
    assert leases == sorted(f"p{n}" for n in range(160, 180))
    assert closed == 8 * 20
    assert after.idx_scan > before.idx_scan
    # Nor the whole of an index: one generic plan with sequential scans
    # turned off fetched a million rows through one in this batch.
    assert after.idx_tup_fetch - before.idx_tup_fetch < 1000
    assert after.seq_scan == before.seq_scan
