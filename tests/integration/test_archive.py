"""Data lifecycle (aaa.archive, issue 19): closed sessions and leases move to
their archive tables, old CoA audit and delivered notices are deleted; a
re-run changes nothing, a crash between batches loses nothing, the lease
history inside the collector's late window stays, readers still show
archived sessions, and two runs at once do the work once."""

from __future__ import annotations

import datetime as dt
import json
import threading

import pytest
from sqlalchemy import func, insert, select

from aaa import archive
from aaa.models import (EnforcementAttempt, EnforcementJob, IpLease, IpLeaseArchive,
                        Session as RadiusSession, SessionArchive)
from collector.radius_usage import RadiusUsageMark
from config.db import utcnow
from config.settings import COLLECTOR_LEASE_WINDOW_HOURS, SettingsError, load_settings
from rating.models import Notification, NotificationAttempt, SmsPart
from tests.conftest import make_context
from tests.factories import make_account, make_nas

NOW = dt.datetime(2026, 12, 1, 12, 0)
DAY = dt.timedelta(days=1)
SMALL = archive.Retention(batch_rows=3)


def _count(ctx, model) -> int:
    with ctx.engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(model.__table__))


def _ids(ctx, model) -> list[int]:
    with ctx.engine.connect() as conn:
        return sorted(conn.scalars(select(model.__table__.c.id)))


def _base(ctx):
    with ctx.Session() as session:
        account = make_account(session)
        nas = make_nas(session)
        session.commit()
        return account.id, nas.id, account.number, nas.name


def _sessions(ctx, account_id, nas_id, stops, *, prefix="s", started_days=None) -> list[int]:
    """One closed session per stop time (None: open), each an hour long."""
    rows = []
    for n, stop in enumerate(stops):
        start = (stop or NOW - (started_days or 1) * DAY) - dt.timedelta(hours=1)
        rows.append(dict(nas_id=nas_id, acct_session_id=f"{prefix}{n}", username="user1",
                         account_id=account_id, framed_ip=f"100.64.0.{n % 250 + 1}",
                         started_at=start, updated_at=stop or start, stopped_at=stop,
                         octets_in=1000 + n, octets_out=2000 + n, packets_in=1, packets_out=2,
                         session_time=3600, terminate_cause="User-Request" if stop else None,
                         profile="normal"))
    with ctx.engine.begin() as conn:
        conn.execute(insert(RadiusSession.__table__), rows)
        return list(conn.scalars(select(RadiusSession.id).where(
            RadiusSession.acct_session_id.startswith(prefix)).order_by(RadiusSession.id)))


def test_rows_past_retention_go_fresh_ones_stay_and_a_rerun_changes_nothing(ctx):
    account_id, nas_id, _, _ = _base(ctx)
    old = _sessions(ctx, account_id, nas_id, [NOW - 100 * DAY] * 7, prefix="old")
    fresh = _sessions(ctx, account_id, nas_id, [NOW - 10 * DAY] * 2, prefix="fresh")
    still_open = _sessions(ctx, account_id, nas_id, [None], prefix="open", started_days=200)
    # Moved, then past sessions_keep_days in the archive: deleted in the same run.
    _sessions(ctx, account_id, nas_id, [NOW - 1200 * DAY], prefix="ancient")
    held, coa_gone = _sessions(ctx, account_id, nas_id, [NOW - 100 * DAY] * 2, prefix="held")
    with ctx.engine.begin() as conn:
        before = {row.id: tuple(row) for row in conn.execute(
            select(RadiusSession.__table__).where(RadiusSession.id.in_(old)))}
        # A session a kept CoA job names stays hot; one whose job goes moves.
        jobs = conn.execute(insert(EnforcementJob.__table__).returning(EnforcementJob.id), [
            dict(account_id=account_id, session_id=held, nas_id=nas_id, action="coa",
                 attributes={}, status="done", attempts=1, tries=1, created_at=NOW - 60 * DAY,
                 next_attempt_at=NOW - 60 * DAY, finished_at=NOW - 60 * DAY),
            dict(account_id=account_id, session_id=coa_gone, nas_id=nas_id, action="coa",
                 attributes={}, status="nak", attempts=1, tries=1, created_at=NOW - 99 * DAY,
                 next_attempt_at=NOW - 99 * DAY, finished_at=NOW - 99 * DAY),
        ]).scalars().all()
        conn.execute(insert(EnforcementAttempt.__table__), [
            dict(job_id=job, nas_address="127.0.0.1", started_at=NOW - 99 * DAY,
                 finished_at=NOW - 99 * DAY, transmissions=1, outcome="ack") for job in jobs])
        conn.execute(insert(RadiusUsageMark.__table__), [
            dict(session_id=old[0], octets_in=1, octets_out=1, packets_in=1, packets_out=1),
            dict(session_id=fresh[0], octets_in=1, octets_out=1, packets_in=1, packets_out=1)])
        conn.execute(insert(IpLease.__table__), [
            dict(account_id=account_id, address="100.64.1.1", valid_from=NOW - 50 * DAY,
                 valid_to=NOW - 40 * DAY, open_address=None),
            dict(account_id=account_id, address="100.64.1.2", valid_from=NOW - 6 * DAY,
                 valid_to=NOW - 5 * DAY, open_address=None),
            dict(account_id=account_id, address="100.64.1.3", valid_from=NOW - 90 * DAY,
                 valid_to=None, open_address="100.64.1.3")])
        notices = conn.execute(insert(Notification.__table__).returning(Notification.id), [
            dict(account_id=account_id, channel="sms", kind="payment", key=f"k{n}",
                 recipient="+79990000000", subject="s", body="b", status=status, attempts=1,
                 created_at=NOW - days * DAY, language="ru", urgent=False, parts=1,
                 parts_delivered=0)
            for n, (status, days) in enumerate([("delivered", 200), ("failed", 181),
                                                ("pending", 200), ("unknown", 300),
                                                ("delivered", 20)])]).scalars().all()
        conn.execute(insert(NotificationAttempt.__table__), [
            dict(notification_id=notice, event="submit", outcome="sent",
                 started_at=NOW - 200 * DAY) for notice in notices])
        conn.execute(insert(SmsPart.__table__), [
            dict(message_id="m1", notification_id=notices[0], part=1, state="delivered")])

    result = archive.run(ctx.engine, SMALL, NOW)

    assert result.rows == {"coa": 1, "notifications": 2, "sessions": 9, "sessions_archive": 1,
                           "leases": 1, "leases_archive": 0}
    assert result.batches >= 3 + 1 + 1 + 1 + 1
    assert _ids(ctx, RadiusSession) == sorted(fresh + still_open + [held])
    assert _ids(ctx, SessionArchive) == sorted(old + [coa_gone])
    with ctx.engine.connect() as conn:
        after = {row.id: tuple(row) for row in conn.execute(
            select(SessionArchive.__table__).where(SessionArchive.id.in_(old)))}
        assert after == before          # same ids, same columns, same values
        assert sorted(conn.scalars(select(IpLease.address))) == ["100.64.1.2", "100.64.1.3"]
        assert list(conn.scalars(select(IpLeaseArchive.address))) == ["100.64.1.1"]
        assert list(conn.scalars(select(EnforcementJob.id))) == [jobs[0]]
        assert list(conn.scalars(select(EnforcementAttempt.job_id))) == [jobs[0]]
        assert sorted(conn.scalars(select(Notification.status))) == \
            ["delivered", "pending", "unknown"]
        assert list(conn.scalars(select(RadiusUsageMark.session_id))) == [fresh[0]]
    # (SQLite: one connection at a time in a thread; every one begins IMMEDIATE.)
    assert _count(ctx, NotificationAttempt) == 3 and _count(ctx, SmsPart) == 0

    snapshot = {m: _ids(ctx, m) for m in (RadiusSession, SessionArchive, IpLease,
                                          IpLeaseArchive, EnforcementJob, Notification)}
    again = archive.run(ctx.engine, SMALL, NOW)
    assert sum(again.rows.values()) == 0 and again.batches == 0
    assert {m: _ids(ctx, m) for m in snapshot} == snapshot


def test_a_crash_between_batches_loses_nothing_and_the_rerun_finishes(ctx):
    account_id, nas_id, _, _ = _base(ctx)
    old = _sessions(ctx, account_id, nas_id, [NOW - 100 * DAY] * 10)
    calls = []

    def crash(step, count):
        calls.append((step, count))
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")

    with pytest.raises(KeyboardInterrupt):
        archive.run(ctx.engine, SMALL, NOW, on_batch=crash)
    hot, cold = _ids(ctx, RadiusSession), _ids(ctx, SessionArchive)
    assert len(cold) == 6 and not set(hot) & set(cold) and sorted(hot + cold) == old

    archive.run(ctx.engine, SMALL, NOW)
    assert _ids(ctx, RadiusSession) == [] and _ids(ctx, SessionArchive) == old


def test_a_run_stops_at_its_time_limit_and_the_next_goes_on(ctx):
    account_id, nas_id, _, _ = _base(ctx)
    old = _sessions(ctx, account_id, nas_id, [NOW - 100 * DAY] * 4)
    stopped = archive.run(ctx.engine, archive.Retention(batch_rows=3, run_seconds=0), NOW)
    assert stopped.stopped_early and stopped.batches == 0
    assert archive.run(ctx.engine, SMALL, NOW).rows["sessions"] == 4
    assert _ids(ctx, SessionArchive) == old


# -- the late-data window ------------------------------------------------------

def test_lease_retention_inside_the_late_window_is_refused():
    from collector.server import LEASE_WINDOW
    assert LEASE_WINDOW == dt.timedelta(hours=COLLECTOR_LEASE_WINDOW_HOURS)
    with pytest.raises(SettingsError, match="archive.leases_hot_days .* late-data window"):
        load_settings(environ={"ABONENT_ARCHIVE_LEASES_HOT_DAYS": "6"})
    with pytest.raises(SettingsError, match="use 10 days or more"):
        load_settings(environ={"ABONENT_TRAFFIC_LATE_HOURS": "240",
                               "ABONENT_ARCHIVE_LEASES_HOT_DAYS": "9"})
    with pytest.raises(SettingsError, match="coa_days"):
        load_settings(environ={"ABONENT_ARCHIVE_COA_DAYS": "120"})
    with pytest.raises(SettingsError, match="sessions_keep_days"):
        load_settings(environ={"ABONENT_ARCHIVE_SESSIONS_KEEP_DAYS": "30"})
    assert load_settings(environ={"ABONENT_ARCHIVE_LEASES_HOT_DAYS": "7"}) \
        .get("archive", "leases_hot_days") == 7


def test_leases_within_the_late_window_stay_for_the_collector(db_url):
    """At the shortest retention allowed, a lease that ended just inside the
    collector's window is still in the address table it loads, and flows of
    its last minutes are still its account's."""
    from collector.attribute import load_address_table
    from collector.server import LEASE_WINDOW
    from tests.unit.test_collector_attribute import lookup
    context = make_context(db_url, archive_leases_hot_days=7)
    try:
        account_id, _, _, _ = _base(context)
        inside_end = NOW - LEASE_WINDOW + dt.timedelta(minutes=5)
        with context.engine.begin() as conn:
            conn.execute(insert(IpLease.__table__), [
                dict(account_id=account_id, address="100.64.2.1", valid_from=NOW - 8 * DAY,
                     valid_to=inside_end),
                dict(account_id=account_id, address="100.64.2.2", valid_from=NOW - 9 * DAY,
                     valid_to=NOW - LEASE_WINDOW - dt.timedelta(minutes=5))])
        result = archive.run(context.engine, archive.Retention.from_settings(context.settings),
                             NOW)
        assert result.rows["leases"] == 1
        with context.Session() as session:
            table = load_address_table(session, since=NOW - LEASE_WINDOW)
        assert lookup(table, "100.64.2.1", inside_end - dt.timedelta(minutes=1)) == account_id
        with context.engine.connect() as conn:
            assert list(conn.scalars(select(IpLease.address))) == ["100.64.2.1"]
            assert list(conn.scalars(select(IpLeaseArchive.address))) == ["100.64.2.2"]
    finally:
        context.dispose()


# -- readers -------------------------------------------------------------------

def test_readers_show_archived_sessions(db_url, tmp_path, abonent_exe):
    """The cabinet's sessions page for a month last year, `abonent session
    list/show` and the IP-at-time search find a session after it moved."""
    from cabinet.app import create_app
    from aaa.admin import find_accounts
    from tests.integration.cabinet_helpers import log_in, seed_subscriber
    context = make_context(db_url, data_dir=tmp_path)
    try:
        subscriber = seed_subscriber(context)
        with context.Session() as session:
            nas = make_nas(session)
            session.commit()
            nas_id, nas_name = nas.id, nas.name
        last_year = dt.datetime(2025, 10, 5, 8)
        with context.engine.begin() as conn:
            conn.execute(insert(RadiusSession.__table__), [dict(
                nas_id=nas_id, acct_session_id="old-0001", username="user1",
                account_id=subscriber.account_id, framed_ip="100.64.77.1",
                started_at=last_year, updated_at=last_year + dt.timedelta(hours=1),
                stopped_at=last_year + dt.timedelta(hours=1), octets_in=5, octets_out=10_000_000,
                packets_in=1, packets_out=1, session_time=3600, terminate_cause="User-Request",
                profile="normal")])
            conn.execute(insert(IpLease.__table__), [dict(
                account_id=subscriber.account_id, address="100.64.77.1", valid_from=last_year,
                valid_to=last_year + dt.timedelta(hours=1), open_address=None)])
        moved = archive.run(context.engine, archive.Retention(), NOW)
        assert moved.rows["sessions"] == 1 and moved.rows["leases"] == 1
        assert _count(context, RadiusSession) == 0

        client = create_app(context, testing=True).test_client()
        assert log_in(client, subscriber.login, subscriber.password, lang="en").status_code == 302
        page = client.get("/sessions?month=2025-10").text
        assert "100.64.77.1" in page and "10.0 MB" in page

        with context.Session() as session:
            found = find_accounts(session, "100.64.77.1", at=last_year + dt.timedelta(minutes=30))
        assert found == {subscriber.account_id: ["lease at time", "session at time"]}
    finally:
        context.dispose()

    listed = json.loads(abonent_exe("session", "list", "--account", subscriber.number,
                                    "--json").stdout)
    assert [(row["acct_session_id"], row["archived"]) for row in listed] == [("old-0001", True)]
    assert json.loads(abonent_exe("session", "list", "--active", "--json").stdout) == []
    shown = json.loads(abonent_exe("session", "show", "old-0001", "--json").stdout)
    assert shown["archived"] is True and shown["octets_out"] == 10_000_000
    assert shown["nas"] == nas_name
    assert "in the history" in abonent_exe("nas", "remove", nas_name, code=2).stderr


# -- the command ---------------------------------------------------------------

def test_archive_commands(db_url, abonent_exe):
    context = make_context(db_url)
    try:
        account_id, nas_id, _, _ = _base(context)
        old = _sessions(context, account_id, nas_id, [utcnow() - 100 * DAY] * 3)
    finally:
        context.dispose()
    status = json.loads(abonent_exe("archive", "status", "--json").stdout)
    sessions = {row["step"]: row for row in status["tables"]}["sessions"]
    assert (sessions["rows"], sessions["due"], sessions["retention_days"]) == (3, 3, 90)
    assert status["last_run"] is None

    ran = json.loads(abonent_exe("archive", "run", "--json").stdout)
    assert ran["rows"]["sessions"] == 3 and ran["skipped"] is False
    status = json.loads(abonent_exe("archive", "status", "--json").stdout)
    tables = {row["step"]: row for row in status["tables"]}
    assert tables["sessions"]["rows"] == 0 and tables["sessions_archive"]["rows"] == len(old)
    assert status["last_run"] is not None
    assert "sessions: 0 rows moved" in abonent_exe("archive", "run").stdout

    assert "unknown step calls" in abonent_exe("archive", "run", "--only", "calls", code=2).stderr
    refused = abonent_exe("archive", "run", env={"ABONENT_ARCHIVE_LEASES_HOT_DAYS": "2"}, code=2)
    assert "late-data window" in refused.stderr


# -- two runs at once --------------------------------------------------------------

def _race(target, count=2):
    results, errors = [], []
    start = threading.Barrier(count)

    def go():
        try:
            start.wait()
            results.append(target())
        except Exception as error:   # re-raised below, in the test's thread
            errors.append(error)
    threads = [threading.Thread(target=go) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    return results


def test_two_runs_at_once_do_the_work_once(ctx):
    """Two schedulers fire together: under the job lock one works (on
    PostgreSQL the other is told the lock is held); either way every row is
    moved once."""
    account_id, nas_id, _, _ = _base(ctx)
    old = _sessions(ctx, account_id, nas_id, [NOW - 100 * DAY] * 40)
    results = _race(lambda: archive.run_locked(ctx.engine, ctx.Session, SMALL, NOW))
    assert sum(r.rows["sessions"] for r in results) == 40
    assert _ids(ctx, SessionArchive) == old and _count(ctx, RadiusSession) == 0


def test_two_runs_without_the_lock_still_move_each_row_once(pg_url):
    """Even without the job lock (a node started by hand, a lock lost with
    its connection), the row locks and SKIP LOCKED keep each row single."""
    context = make_context(pg_url)
    try:
        account_id, nas_id, _, _ = _base(context)
        old = _sessions(context, account_id, nas_id, [NOW - 100 * DAY] * 300)
        results = _race(lambda: archive.run(context.engine, archive.Retention(batch_rows=7), NOW))
        assert sum(r.rows["sessions"] for r in results) == 300
        assert _ids(context, SessionArchive) == old and _count(context, RadiusSession) == 0
        from rating.jobs import job_lock
        with job_lock(context.engine, archive.JOB_NAME) as held:
            assert held
            assert archive.run_locked(context.engine, context.Session, SMALL, NOW).skipped
    finally:
        context.dispose()
