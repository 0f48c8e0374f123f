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
