"""Profile changes reach the NAS through CoA: loss, duplication, NAKs,
supersession and a worker killed mid-batch, against a NAS simulator on
loopback."""

import datetime as dt
import random

import pytest
from sqlalchemy import select

from aaa import coa, enforcement
from aaa.models import EnforcementAttempt, EnforcementJob, Session as RadiusSession
from aaa.simulator import CoaResponder
from rating import fees, ledger
from rating.models import Account
from tests.factories import make_account, make_nas, make_tariff

FAST = dict(irt=0.05, mrt=0.4, mrd=1.5)  # RFC 5080's shape, scaled down for tests
MIKROTIK_RATE_LIMIT = (14988, 8)


def coa_nas(session, responder, **params):
    return make_nas(session, vendor="mikrotik", secret="coa-secret", coa_port=responder.port,
                    **params)


def spend(session, account_id, amount, key):
    """Usage that lowers the balance, then the ladder's verdict on it."""
    ledger.post(session, account_id=account_id, amount=amount, kind="traffic", key=key,
                author="t")
    fees.apply_policies(session)


def open_session(session, account, nas, n):
    now = dt.datetime(2026, 6, 1, 10, 0)
    row = RadiusSession(nas_id=nas.id, acct_session_id=f"sess-{n}", username=f"user{n}",
                        account_id=account.id, framed_ip=f"10.0.{n // 250}.{n % 250 + 1}",
                        started_at=now, updated_at=now)
    session.add(row)
    session.flush()
    return row


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


def test_lossy_nas_every_job_reaches_a_final_state(ctx, nas_sim):
    responder = nas_sim(drop_rate=0.3, duplicate_rate=0.1,
                        nak_sessions={"sess-3", "sess-7"}, seed=5)
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
    sent = enforcement.run_once(ctx.Session, timers=FAST)
    assert sent == 40
    with ctx.Session() as session:
        jobs = session.scalars(select(EnforcementJob)).all()
        statuses = {j.status for j in jobs}
        assert statuses <= set(enforcement.FINAL)
        by_session = {session.get(RadiusSession, j.session_id).acct_session_id: j for j in jobs}
    assert {s for s, j in by_session.items() if j.status == "nak"} == {"sess-3", "sess-7"}
    assert by_session["sess-3"].last_error == "Error-Cause 503"
    done = {s for s, j in by_session.items() if j.status == "done"}
    # With 30 % loss and ~5 sends each, a job failing every send is very rare;
    # every done job was really applied on the NAS.
    assert len(done) >= 36 and done <= set(responder.disconnected | set(responder.applied))
    assert any(j.attempts > 1 for j in by_session.values())
    with ctx.Session() as session:
        audit = session.scalars(select(EnforcementAttempt)).all()
        assert len(audit) == 40
        assert sum(a.transmissions for a in audit) == sum(j.attempts for j in jobs)
        assert {a.error_cause for a in audit if a.outcome == "nak"} == {503}
    # Retransmits were byte-identical: no session's request got two identifiers.
    assert responder.requests_seen > 40


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
        claimed = enforcement._claim(session, enforcement.utcnow(), 100)
        session.commit()
    assert len(claimed) == 5
    assert enforcement.run_once(ctx.Session, timers=FAST) == 0  # leases still held
    later = enforcement.utcnow() + dt.timedelta(seconds=enforcement.LEASE_S + 1)
    assert enforcement.run_once(ctx.Session, timers=FAST, now=later) == 5
    with ctx.Session() as session:
        assert set(session.scalars(select(EnforcementJob.status))) == {"done"}
    assert len(responder.applied) == 5


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
    now = dt.datetime(2026, 6, 1, 12, 0)
    with ctx.Session() as session:
        tariff = make_tariff(session, rate_down_kbps=20_000, rate_up_kbps=10_000)
        account = make_account(session, tariff=tariff.name, balance="100")
        nas = coa_nas(session, responder)
        open_session(session, account, nas, 1)
        options.create_option_type(session, code="turbo", name="Turbo", kind="turbo",
                                   price="30", duration_hours=24, rate_multiplier=2)
        options.buy(session, account, "turbo", now, request_id="r1")
        session.commit()
    enforcement.run_once(ctx.Session, timers=FAST)
    assert b"20000k/40000k" in b"".join(responder.applied["sess-1"][26])
    with ctx.Session() as session:
        options.expire(session, now + dt.timedelta(hours=24))
        session.commit()
    enforcement.run_once(ctx.Session, timers=FAST)
    assert b"10000k/20000k" in b"".join(responder.applied["sess-1"][26])
    assert responder.disconnected == set()  # the session was never dropped


def test_a_payment_lifts_the_throttle_at_once(ctx, nas_sim):
    from rating.accounts import add_payment
    responder = nas_sim()
    with ctx.Session() as session:
        tariff = make_tariff(session, negative_rate_kbps=300)
        account = make_account(session, tariff=tariff.name, credit_limit="100")
        nas = coa_nas(session, responder)
        open_session(session, account, nas, 1)
        spend(session, account.id, "-40", "t")
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
    later = enforcement.utcnow() + dt.timedelta(seconds=enforcement.LEASE_S + 1)
    assert enforcement.run_once(ctx.Session, timers=FAST, now=later) == 6
    with ctx.Session() as session:
        assert set(session.scalars(select(EnforcementJob.status))) == {"done"}
    assert len(responder.applied) == 6
