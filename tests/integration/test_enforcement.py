"""The enforcer keeps each open session's NAS profile equal to its desired
profile: loss, duplication, NAKs (retried, falling back to Disconnect,
closing a session the NAS does not know), supersession, per-NAS lanes and
a worker killed mid-batch, against NAS simulators on loopback."""

import dataclasses
import datetime as dt
import random
import threading
import time

import pytest
from sqlalchemy import func, select

from aaa import coa, enforcement
from aaa.models import EnforcementAttempt, EnforcementJob, Session as RadiusSession
from aaa.simulator import CoaResponder
from rating import fees, ledger
from rating.models import Account, AccountOption
from tests.factories import make_account, make_nas, make_tariff

FAST = dict(irt=0.05, mrt=0.4, mrd=1.5)  # RFC 5080's shape, scaled down for tests
QUICK = enforcement.Settings(irt=0.05, mrt=0.2, mrd=0.6, backoff_initial=0.2, backoff_max=1.0,
                             sweep_interval=3600)
MIKROTIK_RATE_LIMIT = (14988, 8)


def coa_nas(session, responder, **params):
    return make_nas(session, vendor="mikrotik", secret="coa-secret", coa_port=responder.port,
                    **params)


def spend(session, account_id, amount, key):
    """Usage that lowers the balance, then the ladder's verdict on it."""
    ledger.post(session, account_id=account_id, amount=amount, kind="traffic", key=key,
                author="t")
    fees.apply_policies(session)


def open_session(session, account, nas, n, applied=None):
    """An open session, ``applied`` the profile its NAS has (its Class)."""
    now = dt.datetime(2026, 6, 1, 10, 0)
    row = RadiusSession(nas_id=nas.id, acct_session_id=f"sess-{n}", username=f"user{n}",
                        account_id=account.id, framed_ip=f"10.0.{n // 250}.{n % 250 + 1}",
                        started_at=now, updated_at=now, profile=applied)
    session.add(row)
    session.flush()
    return row


def throttled_session(session, nas, *, negative_rate_kbps, credit_limit="50", spent="-10",
                      n=1, applied=None):
    """One subscriber with an open session on ``nas``, then usage that puts
    it below zero: the ladder throttles it to ``negative_rate_kbps``."""
    tariff = make_tariff(session, negative_rate_kbps=negative_rate_kbps)
    account = make_account(session, tariff=tariff.name, credit_limit=credit_limit)
    open_session(session, account, nas, n, applied)
    spend(session, account.id, spent, f"use-{account.id}")
    return account


@pytest.fixture
def nas_sim():
    responders = []

    def start(**kwargs):
        responder = CoaResponder(secret=b"coa-secret", **kwargs).start()
        responders.append(responder)
        return responder
    yield start
    for responder in responders:
        responder.stop()


def test_schedule_follows_rfc5080():
    times = coa.schedule(random.Random(1))
    gaps = [b - a for a, b in zip([0.0] + times, times)]
    assert 1.8 <= gaps[0] <= 2.2
    assert all(g <= 16 * 1.1 for g in gaps)
    assert times[-1] < 30 and len(times) == 4  # 2, 4, 8, 16 -> sent at ~2, 6, 14, 30


def test_negative_balance_throttles_the_live_session_by_coa(ctx, nas_sim):
    responder = nas_sim()
    with ctx.Session() as session:
        tariff = make_tariff(session, rate_down_kbps=100_000, rate_up_kbps=50_000,
                             negative_rate_kbps=512)
        account = make_account(session, tariff=tariff.name, credit_limit="100")
        nas = coa_nas(session, responder)
        open_session(session, account, nas, 1)
        spend(session, account.id, "-1", "t1")
        session.commit()
    assert enforcement.run_once(ctx.Session, timers=FAST) == 1
    with ctx.Session() as session:
        job = session.scalars(select(EnforcementJob)).one()
        assert (job.action, job.status, job.profile) == ("coa", "done", "throttled")
    told = responder.applied["sess-1"]
    assert b"512k/512k" in b"".join(told[26])
    # A payment restores the tariff speed (up/down: rx/tx from MikroTik's side).
    with ctx.Session() as session:
        from rating.accounts import add_payment
        add_payment(session, session.get(Account, account.id), "10", external_id="p")
        fees.apply_policies(session)
        session.commit()
    enforcement.run_once(ctx.Session, timers=FAST)
    assert b"50000k/100000k" in b"".join(responder.applied["sess-1"][26])


def test_a_lossy_nas_converges_every_session_by_retrying(ctx, nas_sim):
    responder = nas_sim(drop_rate=0.5, duplicate_rate=0.1, seed=5)
    with ctx.Session() as session:
        tariff = make_tariff(session)
        nas = coa_nas(session, responder)
        accounts = []
        for n in range(40):
            account = make_account(session, tariff=tariff.name, credit_limit="10")
            open_session(session, account, nas, n)
            accounts.append(account.id)
        session.commit()
        for account_id in accounts:
            spend(session, account_id, "-5", f"t{account_id}")
        session.commit()
    rounds = 0
    while rounds < 40:
        rounds += 1
        later = enforcement.utcnow() + dt.timedelta(seconds=QUICK.backoff_max * rounds)
        if enforcement.run_once(ctx.Session, settings=QUICK, now=later) == 0:
            with ctx.Session() as session:
                if not session.scalar(select(func.count()).select_from(EnforcementJob).where(
                        EnforcementJob.status.in_(enforcement.ACTIVE))):
                    break
    with ctx.Session() as session:
        jobs = session.scalars(select(EnforcementJob)).all()
        assert {j.status for j in jobs} == {"done"}
        assert {s.profile for s in session.scalars(select(RadiusSession))} == {"full:1000/1000"}
        audit = session.scalars(select(EnforcementAttempt)).all()
        # Half the requests lost: some sessions needed more than one exchange,
        # each kept; the transmissions add up to the jobs' counts.
        assert len(audit) > 40 and any(j.tries > 1 for j in jobs)
        assert sum(a.transmissions for a in audit) == sum(j.attempts for j in jobs)
        assert {a.outcome for a in audit} == {"ack", "timeout"}
    assert set(responder.applied) == {f"sess-{n}" for n in range(40)}


def test_a_timeout_is_tried_again_with_capped_backoff_while_the_session_is_open(ctx, nas_sim):
    responder = nas_sim()
    responder.silent = True
    settings = enforcement.Settings(irt=0.05, mrt=0.1, mrd=0.2, backoff_initial=1.0,
                                    backoff_max=3.0)
    with ctx.Session() as session:
        throttled_session(session, coa_nas(session, responder), negative_rate_kbps=256)
        session.commit()
    now = enforcement.utcnow()
    waits = []
    for _ in range(5):
        before = enforcement.utcnow()
        assert enforcement.run_once(ctx.Session, settings=settings, now=now) == 1
        after = enforcement.utcnow()
        with ctx.Session() as session:
            job = session.scalars(select(EnforcementJob)).one()
            assert job.status == "pending" and job.last_error == "no answer within 0.2 s"
            # The backoff counts from when the exchange was recorded, some
            # moment of the run: it lies between these two (a busy box
            # widens the span, it does not fail the test).
            waits.append(((job.next_attempt_at - after).total_seconds(),
                          (job.next_attempt_at - before).total_seconds()))
            now = job.next_attempt_at

    def about(wait, low, high):
        return wait[0] - 0.01 <= high and wait[1] + 0.01 >= low
    # 1, 2, then the cap of 3 s (each ±10 %, never above the cap).
    assert about(waits[0], 0.9, 1.1) and about(waits[1], 1.8, 2.2), waits
    assert all(about(w, 2.7, 3.0) and w[0] <= 3.0 for w in waits[2:]), waits
    responder.silent = False
    assert enforcement.run_once(ctx.Session, settings=settings, now=now) == 1
    with ctx.Session() as session:
        job = session.scalars(select(EnforcementJob)).one()
        assert (job.status, job.tries) == ("done", 6)
        assert session.scalars(select(RadiusSession)).one().profile == "full:256/256"
        assert len(session.scalars(select(EnforcementAttempt)).all()) == 6


def test_nak_503_closes_the_session_as_stale_and_its_lease(ctx, nas_sim):
    from aaa.accounting import STALE_CAUSE
    from aaa.models import IpLease
    responder = nas_sim(nak_sessions={"sess-1"})
    with ctx.Session() as session:
        account = make_account(session, credit_limit="50")
        nas = coa_nas(session, responder)
        row = open_session(session, account, nas, 1)
        session.add(IpLease(account_id=account.id, address=row.framed_ip,
                            valid_from=row.started_at, open_address=row.framed_ip,
                            session_id=row.id))
        spend(session, account.id, "-10", "a")
        session.commit()
    enforcement.run_once(ctx.Session, settings=QUICK)
    with ctx.Session() as session:
        closed = session.scalars(select(RadiusSession)).one()
        assert (closed.stopped_at, closed.terminate_cause) == (closed.updated_at, STALE_CAUSE)
        lease = session.scalars(select(IpLease)).one()
        assert lease.open_address is None and lease.valid_to == closed.updated_at
        job = session.scalars(select(EnforcementJob)).one()
        assert job.status == "closed" and "503" in job.last_error
    # Nothing more is sent for a closed session.
    assert enforcement.run_once(ctx.Session, settings=QUICK, sweep=True) == 0


@pytest.mark.parametrize("fallback", [True, False])
def test_a_nak_saying_coa_cannot_work_falls_back_to_disconnect(ctx, nas_sim, fallback):
    responder = nas_sim(nak_rate=1.0, nak_cause=405)  # Unsupported-Service
    settings = dataclasses.replace(QUICK, disconnect_fallback=fallback)
    with ctx.Session() as session:
        account = make_account(session, credit_limit="50")
        nas = coa_nas(session, responder)
        open_session(session, account, nas, 1)
        spend(session, account.id, "-10", "a")
        session.commit()
    enforcement.run_once(ctx.Session, settings=settings)
    responder.nak_rate = 0.0
    later = enforcement.utcnow() + dt.timedelta(seconds=settings.backoff_max + 1)
    enforcement.run_once(ctx.Session, settings=settings, now=later)
    with ctx.Session() as session:
        job = session.scalars(select(EnforcementJob)).one()
        outcomes = [(a.outcome, a.error_cause) for a in session.scalars(
            select(EnforcementAttempt).order_by(EnforcementAttempt.id))]
    assert outcomes == [("nak", 405), ("ack", None)]
    if fallback:
        assert (job.action, job.status) == ("disconnect", "done")
        assert responder.disconnected == {"sess-1"} and "sess-1" not in responder.applied
    else:
        assert (job.action, job.status) == ("coa", "done")
        assert responder.disconnected == set() and "sess-1" in responder.applied


def test_the_sweep_finds_a_difference_no_change_announced(ctx, nas_sim):
    """A session whose NAS has another profile than it should (its Class
    said so, or a CoA went astray) is found by the sweep alone."""
    responder = nas_sim()
    with ctx.Session() as session:
        account = make_account(session)
        nas = coa_nas(session, responder)
        open_session(session, account, nas, 1, "full:1/1")
        open_session(session, account, nas, 2, "full:100000/50000")  # in line already
        session.commit()
    assert enforcement.run_once(ctx.Session, settings=QUICK) == 0  # no outbox row
    assert enforcement.run_once(ctx.Session, settings=QUICK, sweep=True) == 1
    assert b"50000k/100000k" in b"".join(responder.applied["sess-1"][26])
    assert "sess-2" not in responder.applied
    with ctx.Session() as session:
        assert {s.profile for s in session.scalars(select(RadiusSession))} == {
            "full:100000/50000"}


def test_a_silent_nas_holds_up_only_its_own_lane(ctx, nas_sim):
    healthy = nas_sim()
    silent = nas_sim(host="127.0.0.2")
    silent.silent = True
    settings = dataclasses.replace(QUICK, mrd=4.0, mrt=1.0, lane_size=4)
    with ctx.Session() as session:
        tariff = make_tariff(session, negative_rate_kbps=700)
        good_nas = coa_nas(session, healthy)
        bad_nas = make_nas(session, vendor="mikrotik", secret="coa-secret",
                           coa_port=silent.port, address="127.0.0.2")
        accounts = []
        for n in range(30):
            account = make_account(session, tariff=tariff.name, credit_limit="50")
            open_session(session, account, bad_nas if n % 2 else good_nas, n)
            accounts.append(account.id)
        session.commit()
    worker = enforcement.Enforcer(ctx.Session, settings, threads=16, poll_s=0.05)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        started = time.monotonic()
        with ctx.Session() as session:
            for account_id in accounts:
                spend(session, account_id, "-10", f"s{account_id}")
            session.commit()
        while len(healthy.applied) < 15 and time.monotonic() - started < 10:
            time.sleep(0.02)
        elapsed = time.monotonic() - started
    finally:
        worker.stop()
        thread.join(10)
    # Every healthy session got its CoA before the silent NAS's first
    # exchange gave up (mrd: were they behind it, they would wait for it at
    # least that long), and the silent NAS never had more than its lane in
    # flight.
    assert len(healthy.applied) == 15 and elapsed < settings.mrd
    assert 1 <= len({auth for _, auth in silent.received}) <= 4  # its lane: 4 exchanges


def test_a_newer_profile_supersedes_a_pending_one(ctx, nas_sim):
    responder = nas_sim()
    with ctx.Session() as session:
        tariff = make_tariff(session, negative_rate_kbps=256)
        account = make_account(session, tariff=tariff.name, credit_limit="50")
        nas = coa_nas(session, responder)
        open_session(session, account, nas, 1)
        spend(session, account.id, "-10", "a")
        enforcement.expand(session)
        ledger.post(session, account_id=account.id, amount="20", kind="payment", key="b",
                    author="t")
        fees.apply_policies(session)
        session.commit()
    enforcement.run_once(ctx.Session, timers=FAST)
    with ctx.Session() as session:
        jobs = session.scalars(select(EnforcementJob).order_by(EnforcementJob.id)).all()
        assert [(j.profile, j.status) for j in jobs] == [("throttled", "superseded"),
                                                         ("normal", "done")]
    assert responder.requests_seen == 1


def test_jobs_of_a_killed_worker_are_taken_again_after_the_lease(ctx, nas_sim):
    responder = nas_sim()
    with ctx.Session() as session:
        tariff = make_tariff(session)
        nas = coa_nas(session, responder)
        for n in range(5):
            account = make_account(session, tariff=tariff.name, credit_limit="10")
            open_session(session, account, nas, n)
            spend(session, account.id, "-1", f"k{n}")
        enforcement.expand(session)
        # A worker claims the batch and dies before sending (kill -9).
        claimed = enforcement._claim(session, enforcement.utcnow(), 100, enforcement.Settings())
        session.commit()
    assert len(claimed) == 5
    assert enforcement.run_once(ctx.Session, timers=FAST) == 0  # leases still held
    later = enforcement.utcnow() + dt.timedelta(seconds=enforcement.Settings().lease_s + 1)
    assert enforcement.run_once(ctx.Session, timers=FAST, now=later) == 5
    with ctx.Session() as session:
        assert set(session.scalars(select(EnforcementJob.status))) == {"done"}
    assert len(responder.applied) == 5


def test_only_the_newest_claim_of_a_job_finishes_it(ctx, nas_sim):
    # A worker stalls past its lease with an exchange done but not recorded
    # (a loaded box, a slow database); the job is claimed again and sent
    # again. The stale result must not finish the job: that would free the
    # session for a newer job while the second copy of the older CoA may
    # still reach the NAS after it (seen in the convergence test under load).
    responder = nas_sim()
    with ctx.Session() as session:
        tariff = make_tariff(session)
        account = make_account(session, tariff=tariff.name, credit_limit="10")
        open_session(session, account, coa_nas(session, responder), 1)
        spend(session, account.id, "-1", "k")
        enforcement.expand(session)
        session.commit()
    settings = dataclasses.replace(QUICK, backoff_initial=30, backoff_max=30)
    rng = random.Random(1)
    now = enforcement.utcnow()
    with ctx.Session() as session:
        [first] = enforcement._claim(session, now, 10, settings)
        session.commit()
    stale = enforcement.exchange(first, settings, rng)
    later = now + dt.timedelta(seconds=settings.lease_s + 1)
    with ctx.Session() as session:
        [second] = enforcement._claim(session, later, 10, settings)
        session.commit()
    assert second.job_id == first.job_id and second.lease_until > first.lease_until
    with ctx.Session() as session:
        assert enforcement.record(session, [stale], settings, rng, now=later) == ["lost-lease"]
        session.commit()
    with ctx.Session() as session:
        job = session.get(EnforcementJob, first.job_id)
        assert job.status == "sending" and job.next_attempt_at == second.lease_until
        # The session stays taken while the second exchange is out.
        assert enforcement._claim(session, later, 10, settings) == []
    fresh = enforcement.exchange(second, settings, rng)
    with ctx.Session() as session:
        assert enforcement.record(session, [fresh], settings, rng, now=later) == ["ack"]
        session.commit()
    with ctx.Session() as session:
        assert session.get(EnforcementJob, first.job_id).status == "done"
        assert session.scalars(select(RadiusSession.profile)).one() is not None
    assert responder.requests_seen == 2


def test_suspension_disconnects_and_a_gone_session_counts_as_done(ctx, nas_sim):
    responder = nas_sim(nak_sessions={"sess-2"})
    with ctx.Session() as session:
        tariff = make_tariff(session)
        nas = coa_nas(session, responder)
        account = make_account(session, tariff=tariff.name)
        open_session(session, account, nas, 1)
        open_session(session, account, nas, 2)
        spend(session, account.id, "-1", "x")
        session.commit()
    enforcement.run_once(ctx.Session, timers=FAST)
    with ctx.Session() as session:
        jobs = session.scalars(select(EnforcementJob).order_by(EnforcementJob.id)).all()
        assert [(j.action, j.status) for j in jobs] == [("disconnect", "done")] * 2
    assert responder.disconnected == {"sess-1"}


def test_admin_kicks_a_session_and_lists_jobs(ctx, db_url, nas_sim):
    import json

    from click.testing import CliRunner

    from scripts.cli import cli
    responder = nas_sim()
    with ctx.Session() as session:
        account = make_account(session)
        nas = make_nas(session, secret="coa-secret", coa_port=responder.port)
        open_session(session, account, nas, 9)
        session.commit()
    runner = CliRunner()
    env = {"ABONENT_DATABASE_URL": db_url}
    kicked = runner.invoke(cli, ["session", "kick", "sess-9", "--json"], env=env)
    assert kicked.exit_code == 0, kicked.output
    assert json.loads(kicked.stdout)["status"] == "done"
    assert responder.disconnected == {"sess-9"}
    listed = json.loads(runner.invoke(cli, ["coa", "list", "--json"], env=env).stdout)
    assert [(j["acct_session_id"], j["action"], j["status"]) for j in listed] == [
        ("sess-9", "disconnect", "done")]
    missing = runner.invoke(cli, ["session", "kick", "nope"], env=env)
    assert missing.exit_code == 2 and "no open session nope" in missing.stderr


def test_turbo_reaches_the_nas_and_its_expiry_restores_the_speed(ctx, nas_sim):
    from rating import options
    responder = nas_sim()
    now = enforcement.utcnow()
    with ctx.Session() as session:
        tariff = make_tariff(session, rate_down_kbps=20_000, rate_up_kbps=10_000)
        account = make_account(session, tariff=tariff.name, balance="100")
        nas = coa_nas(session, responder)
        open_session(session, account, nas, 1)
        options.create_option_type(session, code="turbo", name="Turbo", kind="turbo",
                                   price="30", duration_hours=24, rate_multiplier=3)
        options.buy(session, account, "turbo", now, request_id="r1")
        session.commit()
    enforcement.run_once(ctx.Session, timers=FAST)
    # The option type's own multiplier, not a hard-coded ×2.
    assert b"30000k/60000k" in b"".join(responder.applied["sess-1"][26])
    with ctx.Session() as session:
        # The turbo ends: its end is written (the expiry pass) as a change.
        option = session.scalars(select(AccountOption)).one()
        option.ends_at = enforcement.utcnow()
        options.expire(session, enforcement.utcnow())
        session.commit()
    enforcement.run_once(ctx.Session, timers=FAST)
    assert b"10000k/20000k" in b"".join(responder.applied["sess-1"][26])
    assert responder.disconnected == set()  # the session was never dropped


def test_a_payment_lifts_the_throttle_at_once(ctx, nas_sim):
    from rating.accounts import add_payment
    responder = nas_sim()
    with ctx.Session() as session:
        account = throttled_session(session, coa_nas(session, responder),
                                    negative_rate_kbps=300, credit_limit="100", spent="-40")
        session.commit()
        enforcement.run_once(ctx.Session, timers=FAST)
        assert b"300k/300k" in b"".join(responder.applied["sess-1"][26])
        add_payment(session, account, "50", external_id="bank-1")  # no periodic pass
        session.commit()
    enforcement.run_once(ctx.Session, timers=FAST)
    assert b"50000k/100000k" in b"".join(responder.applied["sess-1"][26])


def test_kill_9_of_the_worker_mid_batch_loses_no_job(ctx, db_url, nas_sim):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path
    responder = nas_sim(drop_rate=1.0)  # the NAS is silent while the worker runs
    with ctx.Session() as session:
        tariff = make_tariff(session)
        nas = coa_nas(session, responder)
        for n in range(6):
            account = make_account(session, tariff=tariff.name, credit_limit="10")
            open_session(session, account, nas, n)
            spend(session, account.id, "-1", f"k{n}")
        session.commit()
    env = dict(os.environ, ABONENT_DATABASE_URL=db_url)
    worker = subprocess.Popen([str(Path(sys.executable).with_name("abonent")), "serve",
                               "enforcer", "--interval", "0.1"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while responder.requests_seen < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert responder.requests_seen >= 6  # the whole batch is in flight
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    with ctx.Session() as session:
        assert set(session.scalars(select(EnforcementJob.status))) == {"sending"}
    responder.drop_rate = 0.0
    later = enforcement.utcnow() + dt.timedelta(seconds=enforcement.Settings().lease_s + 1)
    assert enforcement.run_once(ctx.Session, timers=FAST, now=later) == 6
    with ctx.Session() as session:
        assert set(session.scalars(select(EnforcementJob.status))) == {"done"}
    assert len(responder.applied) == 6


def test_the_operator_sees_desired_against_applied_and_why(ctx, db_url, nas_sim):
    import json

    from click.testing import CliRunner

    from scripts.cli import cli
    responder = nas_sim()
    responder.silent = True
    with ctx.Session() as session:
        throttled_session(session, coa_nas(session, responder, name="bras-7"),
                          negative_rate_kbps=640, n=5, applied="full:100000/50000")
        session.commit()
    enforcement.run_once(ctx.Session, settings=QUICK)
    runner = CliRunner()
    env = {"ABONENT_DATABASE_URL": db_url}
    shown = runner.invoke(cli, ["session", "show", "sess-5", "--json"], env=env)
    assert shown.exit_code == 0, shown.output
    view = json.loads(shown.stdout)
    assert (view["desired"], view["applied"], view["in_line"]) == (
        "full:640/640", "full:100000/50000", False)
    assert view["reason"].startswith("coa tried 1 time(s), last: no answer within 0.6 s")
    assert [a["outcome"] for a in view["attempts"]] == ["timeout"]
    text = runner.invoke(cli, ["session", "show", "sess-5"], env=env).stdout
    assert "desired          full:640/640" in text and "next try at" in text
    listed = json.loads(runner.invoke(cli, ["coa", "list", "--active", "--json"],
                                      env=env).stdout)
    assert [(j["nas"], j["target"], j["applied"], j["status"], j["tries"]) for j in listed] == [
        ("bras-7", "full:640/640", "full:100000/50000", "pending", 1)]
    responder.silent = False
    later = enforcement.utcnow() + dt.timedelta(seconds=QUICK.backoff_max + 1)
    enforcement.run_once(ctx.Session, settings=QUICK, now=later)
    view = json.loads(runner.invoke(cli, ["session", "show", "sess-5", "--json"],
                                    env=env).stdout)
    assert (view["applied"], view["in_line"], view["reason"]) == ("full:640/640", True,
                                                                 "in line")
    missing = runner.invoke(cli, ["session", "show", "nope"], env=env)
    assert missing.exit_code == 2 and "no session nope" in missing.stderr


def test_a_nas_vendor_override_is_checked_and_used_by_the_enforcer(ctx, db_url, nas_sim):
    import json

    from click.testing import CliRunner

    from scripts.cli import cli
    responder = nas_sim()
    runner = CliRunner()
    env = {"ABONENT_DATABASE_URL": db_url}
    with ctx.Session() as session:
        account = make_account(session, credit_limit="50")
        nas = coa_nas(session, responder, name="edge-1")
        open_session(session, account, nas, 3)
        session.commit()
    bad = runner.invoke(cli, ["nas", "set", "edge-1", "--override",
                              '{"rate": [["Filter-Id", "{password}"]]}'], env=env)
    assert bad.exit_code == 2 and "may use only" in bad.stderr
    good = runner.invoke(cli, ["nas", "set", "edge-1", "--json", "--override",
                               '{"rate": [["Filter-Id", "shape-{down_kbps}"]]}'], env=env)
    assert good.exit_code == 0, good.output
    assert json.loads(good.stdout)["vendor_override"] == {
        "rate": [["Filter-Id", "shape-{down_kbps}"]]}
    with ctx.Session() as session:
        spend(session, account.id, "-10", "s")
        session.commit()
    enforcement.run_once(ctx.Session, settings=QUICK)
    assert responder.applied["sess-3"][11] == [b"shape-1000"]  # Filter-Id
    assert 26 not in responder.applied["sess-3"]  # no Mikrotik-Rate-Limit any more


def test_enforcer_metrics_count_sessions_out_of_line_and_outcomes(ctx, nas_sim):
    from prometheus_client import CollectorRegistry, generate_latest
    responder = nas_sim()
    responder.silent = True
    with ctx.Session() as session:
        nas = coa_nas(session, responder)
        for n in range(3):
            account = make_account(session, credit_limit="50")
            open_session(session, account, nas, n)
            spend(session, account.id, "-10", f"m{n}")
        session.commit()
    worker = enforcement.Enforcer(ctx.Session, QUICK, threads=4, poll_s=0.05)
    registry = CollectorRegistry()
    registry.register(enforcement.EnforcerMetrics(worker))
    worker.step(time.monotonic())
    time.sleep(QUICK.mrd + 0.3)
    worker.step(time.monotonic())
    text = generate_latest(registry).decode()
    worker.stop()
    assert "abonent_enforcement_sessions_out_of_line 3.0" in text
    assert 'abonent_enforcement_exchanges_total{outcome="timeout"} 3.0' in text
    age = float(text.split("\nabonent_enforcement_oldest_out_of_line_seconds ")[1].split()[0])
    assert 0.5 < age < 10


def test_suspension_with_redirect_sends_the_session_to_the_captive_portal(ctx, nas_sim):
    from rating.accounts import add_payment
    from rating.policies import REDIRECT, ladder_from_settings
    portal = dataclasses.replace(QUICK, ladder=ladder_from_settings(
        {"suspend_mode": REDIRECT, "redirect_rate_kbps": 256}))
    responder = nas_sim()
    with ctx.Session() as session:
        account = make_account(session)
        nas = coa_nas(session, responder)
        open_session(session, account, nas, 1, "full:100000/50000")
        spend(session, account.id, "-10", "s")
        session.commit()
    enforcement.run_once(ctx.Session, settings=portal)
    told = responder.applied["sess-1"]
    assert b"".join(told[26]).count(b"256k/256k") == 1
    assert b"abonent-redirect" in b"".join(told[26])  # Mikrotik-Address-List
    assert responder.disconnected == set()  # still online, can reach the cabinet
    with ctx.Session() as session:
        assert session.scalar(select(RadiusSession.profile)) == "redirect:256/256"
        add_payment(session, session.get(Account, account.id), "100", external_id="p")
        session.commit()
    # RouterOS cannot take a session off an address list by CoA: a reconnect.
    enforcement.run_once(ctx.Session, settings=portal)
    assert responder.disconnected == {"sess-1"}


@pytest.mark.parametrize("vendor,expected", [
    ("mikrotik", [("Mikrotik-Rate-Limit", "700k/700k")]),
    ("cisco", [("Cisco-AVPair", "ip:qos-policy-in=add-class(sub,(class-default),police(700000))"),
               ("Cisco-AVPair",
                "ip:qos-policy-out=add-class(sub,(class-default),shape(700000))")]),
    ("juniper", [("ERX-Ingress-Policy-Name", "rate-700k"),
                 ("ERX-Egress-Policy-Name", "rate-700k")]),
    ("huawei", [("Huawei-Input-Average-Rate", 700_000),
                ("Huawei-Output-Average-Rate", 700_000)]),
    ("accel-ppp", [("Filter-Id", "700/700")]),
])
def test_each_vendor_gets_its_own_attributes_on_the_wire(ctx, nas_sim, vendor, expected):
    """The CoA-Request as the NAS receives it: the session's identity and,
    byte for byte, the vendor's rate attributes — nothing else."""
    from aaa.dictionary import encode
    from aaa.packet import decode
    responder = nas_sim()
    with ctx.Session() as session:
        nas = make_nas(session, vendor=vendor, secret="coa-secret", coa_port=responder.port)
        throttled_session(session, nas, negative_rate_kbps=700, applied="full:100000/50000")
        session.commit()
    enforcement.run_once(ctx.Session, settings=QUICK)
    sent = responder.applied["sess-1"]
    identity = {1: [b"user1"], 44: [b"sess-1"], 8: [bytes([10, 0, 0, 2])]}
    body = b"".join(encode(name, value) for name, value in expected)
    wanted = decode(bytes([43, 0]) + (20 + len(body)).to_bytes(2, "big") + bytes(16) + body)
    rest = {kind: values for kind, values in sent.items() if kind not in identity and kind != 80}
    assert {kind: sent[kind] for kind in identity} == identity
    assert rest == wanted.attributes
