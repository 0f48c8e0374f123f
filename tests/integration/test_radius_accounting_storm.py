"""A BRAS reboots (issue 18): Accounting-On, then a storm of Starts for its
subscribers, each with its own Acct-Session-Id and a Framed-IP-Address from
the same pool as before the reboot; some Starts arrive twice. Over real UDP
to the real server (two worker processes on PostgreSQL, as ``abonent serve
radius`` runs there; one on SQLite).

Shown: every Start stored once, the NAS's sessions from before the reboot
closed at the Accounting-On with their leases, exactly one open lease per
address, held by the new session that has it, and the lease history of a
reused address in order (old lease closed, new one opened after it).
"""

import pytest
from sqlalchemy import func, select

from aaa.client import accounting_request, send_windowed
from aaa.models import IpLease
from aaa.models import Session as RadiusSession
from aaa.workers import RadiusWorkers, default_count
from tests import factories

SECRET = b"reboot-secret"
SUBSCRIBERS = 500
BEFORE = 2_000                 # sessions open when the BRAS reboots
STARTS = 100_000              # ~20 s on either database on a 2-core box
TWICE_EVERY = 10               # every 10th Start also comes again, as a new packet
ECHO_EVERY = 13                # every 13th is retransmitted at once, the same bytes


def _address(number: int) -> str:
    return f"10.{number >> 16 & 255}.{number >> 8 & 255}.{number & 255}"


def _start(identifier: int, prefix: str, number: int, delay: int = 0) -> bytes:
    pairs = [("Acct-Status-Type", "Start"), ("Acct-Session-Id", f"{prefix}-{number:06d}"),
             ("User-Name", f"reboot{number % SUBSCRIBERS}"),
             ("Framed-IP-Address", _address(number)), ("NAS-Port", number)]
    if delay:
        pairs.append(("Acct-Delay-Time", delay))
    return accounting_request(SECRET, identifier % 256, pairs)


@pytest.fixture
def fleet(ctx):
    with ctx.Session() as session:
        for n in range(SUBSCRIBERS):
            account = factories.make_account(session, number=f"18{n:06d}")
            factories.make_service(session, account, login=f"reboot{n}", password="x")
        factories.make_nas(session, name="bras", address="127.0.0.0/8",
                           secret=SECRET.decode(), vendor="mikrotik")
        session.commit()
    pool = RadiusWorkers(ctx.settings, default_count(ctx.settings), host="127.0.0.1",
                         auth_port=0, acct_port=0).start()
    try:
        yield pool, STARTS
    finally:
        pool.stop()


@pytest.mark.slow
def test_accounting_on_then_a_storm_of_starts(fleet, ctx):
    pool, count = fleet
    server = ("127.0.0.1", pool.acct_port)
    # Before the reboot: BEFORE open sessions on addresses the storm reuses.
    before = [_start(n, "old", n) for n in range(BEFORE)]
    assert len(send_windowed(before, server, SECRET)) == BEFORE
    reboot = [accounting_request(SECRET, 0, [("Acct-Status-Type", "Accounting-On")])]
    assert len(send_windowed(reboot, server, SECRET)) == 1

    # The storm: each Start once, every TWICE_EVERY-th again later as a new
    # packet (another identifier, and every other one a changed
    # Acct-Delay-Time, RFC 2866 §5.2), every ECHO_EVERY-th retransmitted
    # at once with the same bytes.
    numbers = list(range(count)) + list(range(0, count, TWICE_EVERY))
    storm = [_start(index, "new", number, delay=(index % 2) * 3 if index >= count else 0)
             for index, number in enumerate(numbers)]
    twice = frozenset(range(0, len(storm), ECHO_EVERY))
    replies = send_windowed(storm, server, SECRET, window=256, deadline_s=600, twice=twice)
    assert len(replies) == len(storm)

    with ctx.Session() as session:
        stored = {prefix: session.scalar(select(func.count()).where(
            RadiusSession.acct_session_id.like(f"{prefix}-%"))) for prefix in ("old", "new")}
        assert stored == {"old": BEFORE, "new": count}
        assert session.scalar(select(func.count()).select_from(RadiusSession)) == BEFORE + count
        old = session.execute(
            select(RadiusSession.terminate_cause, func.count(), func.min(RadiusSession.stopped_at),
                   func.max(RadiusSession.stopped_at))
            .where(RadiusSession.acct_session_id.like("old-%"))
            .group_by(RadiusSession.terminate_cause)).all()
        assert len(old) == 1 and old[0][:2] == ("NAS-Reboot", BEFORE)
        reboot_at = old[0][2]
        assert old[0][3] == reboot_at
        open_new = session.scalar(select(func.count()).where(
            RadiusSession.acct_session_id.like("new-%"), RadiusSession.stopped_at.is_(None)))
        assert open_new == count

        # Exactly one open lease per address: the new session's, its owner's.
        open_leases = session.execute(
            select(func.count(), func.count(func.distinct(IpLease.open_address)))
            .where(IpLease.open_address.is_not(None))).one()
        assert tuple(open_leases) == (count, count)
        mismatched = session.scalar(
            select(func.count()).select_from(IpLease)
            .join(RadiusSession, RadiusSession.id == IpLease.session_id)
            .where(IpLease.open_address.is_not(None),
                   (RadiusSession.framed_ip != IpLease.address)
                   | (RadiusSession.account_id != IpLease.account_id)
                   | RadiusSession.stopped_at.is_not(None)
                   | ~RadiusSession.acct_session_id.like("new-%")))
        assert mismatched == 0

        # The old sessions' leases closed at the reboot; on a reused
        # address the new lease starts after the old one ended.
        old_leases = session.execute(
            select(func.count(), func.min(IpLease.valid_to), func.max(IpLease.valid_to))
            .join(RadiusSession, RadiusSession.id == IpLease.session_id)
            .where(RadiusSession.acct_session_id.like("old-%"))).one()
        assert tuple(old_leases) == (BEFORE, reboot_at, reboot_at)
        history = session.execute(
            select(IpLease.address, IpLease.valid_from, IpLease.valid_to)
            .where(IpLease.address.in_([_address(n) for n in (0, 1, BEFORE - 1)]))
            .order_by(IpLease.address, IpLease.valid_from)).all()
        assert len(history) == 6
        for closed, opened in zip(history[::2], history[1::2]):
            assert closed.address == opened.address
            assert closed.valid_to == reboot_at and opened.valid_to is None
            assert opened.valid_from >= closed.valid_to
