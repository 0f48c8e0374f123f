"""Sessions the NAS went silent about are closed by the scheduler's job,
with their pool addresses, on both databases."""

import datetime as dt

from sqlalchemy import select

from aaa.accounting import STALE_CAUSE, close_stale_sessions
from aaa.models import IpLease, Session as RadiusSession
from tests.factories import make_account, make_nas

NOW = dt.datetime(2026, 8, 1, 12, 0)
SILENT_FOR = dt.timedelta(minutes=15)     # 3 interim intervals of 300 s


def test_only_sessions_silent_for_k_intervals_are_closed_with_their_lease(session):
    account = make_account(session)
    nas = make_nas(session)

    def open_session(name, heard_ago, ip=None, stopped=None):
        heard = NOW - heard_ago
        row = RadiusSession(nas_id=nas.id, acct_session_id=name, username="u",
                            account_id=account.id, framed_ip=ip,
                            started_at=heard - dt.timedelta(hours=1), updated_at=heard,
                            stopped_at=stopped, terminate_cause="User-Request" if stopped else None)
        session.add(row)
        return row

    silent = open_session("silent", dt.timedelta(minutes=16), ip="100.64.0.9")
    session.add(IpLease(account_id=account.id, address="100.64.0.9",
                        valid_from=silent.started_at, open_address="100.64.0.9"))
    fresh = open_session("fresh", dt.timedelta(minutes=14), ip="100.64.0.10")
    done = open_session("done", dt.timedelta(hours=5),
                        stopped=NOW - dt.timedelta(hours=5))
    session.commit()

    with session.get_bind().connect() as connection:
        assert close_stale_sessions(connection, NOW, SILENT_FOR) == 1
        connection.commit()
        # Again: nothing left to close.
        assert close_stale_sessions(connection, NOW, SILENT_FOR) == 0
        connection.commit()
    session.expire_all()
    assert (silent.stopped_at, silent.terminate_cause) == (silent.updated_at, STALE_CAUSE)
    assert fresh.stopped_at is None
    assert (done.stopped_at, done.terminate_cause) == (NOW - dt.timedelta(hours=5),
                                                       "User-Request")
    lease = session.scalar(select(IpLease).where(IpLease.address == "100.64.0.9"))
    assert (lease.valid_to, lease.open_address) == (silent.updated_at, None)


def test_a_session_closed_as_stale_reopens_when_the_nas_speaks_again(session):
    """Our Stale-Session close is a guess: a newer Interim reopens the
    session and its address's lease (from where the closed lease ended), an
    older retransmit does not, and a later Stop puts the real end in place.
    An Interim whose Start never arrived opens a lease too."""
    from aaa.accounting import INTERIM, START, STOP, AcctRecord, apply_batch

    account_id, nas_id = make_account(session).id, make_nas(session).id
    session.commit()    # SQLite: a session's open transaction holds the write lock
    t0 = NOW - dt.timedelta(hours=1)

    def record(name, status, minutes, ip, **extra):
        return AcctRecord(nas_id=nas_id, status=status, event_time=t0 + dt.timedelta(
            minutes=minutes), acct_session_id=name, username="u", framed_ip=ip,
            session_time=minutes * 60, account_id=account_id, saw_start=status == START,
            **extra)

    def write(*records):
        with session.get_bind().begin() as connection:      # as the server's writer
            apply_batch(connection, list(records))
        session.expire_all()

    def state(name):
        row = session.scalar(select(RadiusSession).where(RadiusSession.acct_session_id == name))
        leases = session.scalars(select(IpLease).where(IpLease.session_id == row.id)
                                 .order_by(IpLease.valid_from)).all()
        found = ((row.stopped_at, row.terminate_cause, row.octets_in),
                 [(lease.valid_from, lease.valid_to, lease.open_address) for lease in leases])
        session.rollback()
        return found

    write(record("s1", START, 0, "100.64.0.21"), record("s1", INTERIM, 5, "100.64.0.21"),
          record("s2", START, 0, "100.64.0.22"))
    heard = t0 + dt.timedelta(minutes=5)
    with session.get_bind().connect() as connection:
        assert close_stale_sessions(connection, heard + SILENT_FOR + dt.timedelta(minutes=1),
                                    SILENT_FOR) == 2
        connection.commit()
    session.expire_all()
    row, leases = state("s1")
    assert row == (heard, STALE_CAUSE, 0)
    assert leases == [(t0, heard, None)]

    write(record("s1", INTERIM, 5, "100.64.0.21", octets_in=7))     # a late retransmit
    row, leases = state("s1")
    assert row == (heard, STALE_CAUSE, 7)
    assert leases == [(t0, heard, None)]

    write(record("s1", INTERIM, 25, "100.64.0.21", octets_in=900))
    row, leases = state("s1")
    assert row == (None, None, 900)
    assert leases == [(t0, heard, None), (heard, None, "100.64.0.21")]

    end = t0 + dt.timedelta(minutes=30)
    write(record("s1", STOP, 30, "100.64.0.21", octets_in=1000, terminate_cause="User-Request"),
          record("s2", STOP, 40, "100.64.0.22", terminate_cause="Lost-Carrier"))
    row, leases = state("s1")
    assert row == (end, "User-Request", 1000)
    assert leases == [(t0, heard, None), (heard, end, None)]
    row, _ = state("s2")    # a Stop after our guess: the NAS's end and cause win
    assert row == (t0 + dt.timedelta(minutes=40), "Lost-Carrier", 0)

    write(record("s3", INTERIM, 10, "100.64.0.23"))                 # its Start was lost
    row, leases = state("s3")
    assert row == (None, None, 0) and leases == [(t0, None, "100.64.0.23")]
