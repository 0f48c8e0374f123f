"""A NAS having a bad day: retransmits, reordering, changed delays, reboots."""

import random

from sqlalchemy import func, select

from aaa.client import accounting_request, blast
from aaa.models import Session as RadiusSession
from aaa.server import RadiusServer
from tests import factories

SECRET = b"storm-secret"
SESSIONS = 1_000
INTERIMS = 5
OPEN_SESSIONS = 10_000


def _start(ctx, **settings):
    with ctx.Session() as session:
        account = factories.make_account(session)
        factories.make_service(session, account, login="storm", password="x")
        factories.make_nas(session, name="storm-nas", address="127.0.0.1",
                           secret=SECRET.decode())
        session.commit()
    return RadiusServer(ctx, host="127.0.0.1", auth_port=0, acct_port=0).start()


def _counters(rng, previous):
    return tuple(value + rng.randrange(0, 3 * 2**31) for value in previous)


def _pairs(session_id, status, octets, session_time, delay):
    octets_in, octets_out = octets
    pairs = [("Acct-Status-Type", status), ("Acct-Session-Id", session_id),
             ("User-Name", "storm"), ("Acct-Session-Time", session_time),
             ("Acct-Input-Octets", octets_in & 0xFFFFFFFF),
             ("Acct-Input-Gigawords", octets_in >> 32),
             ("Acct-Output-Octets", octets_out & 0xFFFFFFFF),
             ("Acct-Output-Gigawords", octets_out >> 32)]
    if status == "Stop":
        pairs.append(("Acct-Terminate-Cause", "User-Request"))
    if delay:
        pairs.append(("Acct-Delay-Time", delay))
    return pairs


def test_retransmit_storm_totals_match(ctx):
    rng = random.Random(20260101)
    server = _start(ctx)
    try:
        events = []  # (session_id, status, octets, session_time)
        expected_in = expected_out = 0
        for number in range(SESSIONS):
            session_id = f"storm-{number:05d}"
            octets = (0, 0)
            events.append((session_id, "Start", octets, 0))
            for step in range(1, INTERIMS + 1):
                octets = _counters(rng, octets)
                events.append((session_id, "Interim-Update", octets, step * 300))
            octets = _counters(rng, octets)
            events.append((session_id, "Stop", octets, (INTERIMS + 1) * 300))
            expected_in += octets[0]
            expected_out += octets[1]
        # Every event is sent 1-3 times; 30 % of the retransmits carry a
        # changed Acct-Delay-Time (a new packet by RFC 2866 §5.2, the same event).
        copies = []
        changed = retransmits = 0
        for event in events:
            for copy in range(rng.randint(1, 3)):
                delay = rng.randint(1, 30) if copy and rng.random() < 0.3 else 0
                retransmits += bool(copy)
                changed += bool(delay)
                copies.append((event, delay))
        assert 0.25 < changed / retransmits < 0.35
        rng.shuffle(copies)
        requests = [accounting_request(SECRET, index % 256, _pairs(*event, delay))
                    for index, (event, delay) in enumerate(copies)]
        replies = blast(requests, ("127.0.0.1", server.acct_port), SECRET, deadline_s=90)
        assert len(replies) == len(requests)
    finally:
        server.stop()
    with ctx.Session() as session:
        count, total_in, total_out, open_count = session.execute(
            select(func.count(), func.sum(RadiusSession.octets_in),
                   func.sum(RadiusSession.octets_out),
                   func.count(RadiusSession.stopped_at.is_(None)).filter(
                       RadiusSession.stopped_at.is_(None)))).one()
    assert count == SESSIONS
    assert (int(total_in), int(total_out)) == (expected_in, expected_out)
    assert open_count == 0


def test_accounting_on_with_many_open_sessions(ctx):
    server = _start(ctx)
    try:
        starts = [accounting_request(SECRET, index % 256,
                                     _pairs(f"open-{index}", "Start", (0, 0), 0, 0))
                  for index in range(OPEN_SESSIONS)]
        assert len(blast(starts, ("127.0.0.1", server.acct_port), SECRET,
                         deadline_s=90)) == OPEN_SESSIONS
        reboot = [accounting_request(SECRET, 0, [("Acct-Status-Type", "Accounting-On")])]
        assert len(blast(reboot, ("127.0.0.1", server.acct_port), SECRET)) == 1
    finally:
        server.stop()
    with ctx.Session() as session:
        causes = session.execute(select(RadiusSession.terminate_cause, func.count())
                                 .group_by(RadiusSession.terminate_cause)).all()
    assert causes == [("NAS-Reboot", OPEN_SESSIONS)]
