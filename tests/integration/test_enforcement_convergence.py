"""Convergence: whatever the money does, every open session ends with the
profile rating.profile.desired_profile gives it, on the NAS as well as in
our records, and no session waits longer than the backoff cap for a try.

Three NAS simulators on loopback — one losing 40 % of requests, one NAKing
some (transient Error-Cause 506, and a few sessions it does not know: 503),
one silent for a while and then back — and 1,000 sessions; a random
sequence of payments, usage, fee runs, Turbo purchases and expiries,
freezes, promised payments and tariff changes runs while the enforcer
works (its real loop, per-NAS lanes, on SQLite and PostgreSQL)."""

import datetime as dt
import random
import threading
import time
from collections import defaultdict
from decimal import Decimal

import pytest
from sqlalchemy import select

from aaa import enforcement
from aaa.models import EnforcementAttempt, EnforcementJob, Session as RadiusSession
from aaa.simulator import CoaResponder
from rating import fees, freeze, ledger, options, promised, tariff_change
from rating.accounts import DomainError, add_payment
from rating.models import Account, AccountOption
from rating.profile import NONE, parse_key
from tests.factories import make_account, make_nas, make_tariff

SESSIONS = 1000
SETTINGS = enforcement.Settings(irt=0.05, mrt=0.2, mrd=0.5, backoff_initial=0.2,
                                backoff_max=2.0, lane_size=64, sweep_interval=4.0)
MIKROTIK_RATE_LIMIT = b"\x00\x00\x3a\x8c\x08"  # vendor 14988, type 8


def rate_told(attributes) -> tuple[int, int] | None:
    """(down, up) from the Mikrotik-Rate-Limit a CoA carried ("up/down")."""
    for value in attributes.get(26, []):
        if value.startswith(MIKROTIK_RATE_LIMIT):
            up, down = value[6:].decode().split("/")
            return int(down.rstrip("k")), int(up.rstrip("k"))
    return None


@pytest.fixture
def responders():
    made = [CoaResponder(secret=b"coa-secret", host="127.0.0.1", drop_rate=0.4, seed=3),
            CoaResponder(secret=b"coa-secret", host="127.0.0.2", nak_rate=0.3, nak_cause=506,
                         seed=4),
            CoaResponder(secret=b"coa-secret", host="127.0.0.3", seed=5)]
    for responder in made:
        responder.start()
    yield made
    for responder in made:
        responder.stop()


def _in_line(ctx) -> tuple[int, list]:
    """(open sessions, the ones whose recorded profile is not the desired one)."""
    with ctx.Session() as session:
        wanted = enforcement.desired_profiles(session, enforcement.utcnow(), SETTINGS.ladder)
        rows = session.scalars(select(RadiusSession).where(
            RadiusSession.stopped_at.is_(None))).all()
    off = [(r.acct_session_id, r.profile, wanted[r.account_id].key) for r in rows
           if r.profile != NONE and r.profile != wanted[r.account_id].key]
    return len(rows), off


@pytest.mark.slow
def test_every_open_session_converges_to_its_desired_profile(ctx, responders):
    lossy, naky, flaky = responders
    flaky.silent = True
    rng = random.Random(12)
    now = enforcement.utcnow()
    today = now.date()
    with ctx.Session() as session:
        home = make_tariff(session, name="Home", fee="500.00", rate_down_kbps=50_000,
                           rate_up_kbps=20_000, negative_rate_kbps=512)
        make_tariff(session, name="Fast", fee="900.00", rate_down_kbps=200_000,
                    rate_up_kbps=100_000, negative_rate_kbps=0)
        options.create_option_type(session, code="turbo", name="Turbo ×3", kind="turbo",
                                   price="40", duration_hours=24, rate_multiplier=3)
        nases = [make_nas(session, vendor="mikrotik", secret="coa-secret",
                          coa_port=r.port, address=r.host) for r in responders]
        accounts, owner = [], {}
        for n in range(SESSIONS):
            account = make_account(session, tariff=home.name,
                                   credit_limit=str(rng.choice([0, 100, 300])),
                                   balance=str(rng.choice([0, 50, 400, 1500])))
            nas = nases[n % 3]
            at = now - dt.timedelta(minutes=5)
            row = RadiusSession(nas_id=nas.id, acct_session_id=f"s-{n}", username=f"u{n}",
                                account_id=account.id, framed_ip=None, started_at=at,
                                updated_at=at)
            session.add(row)
            accounts.append(account.id)
            owner[f"s-{n}"] = account.id
        session.flush()
        fees.apply_policies(session)
        # Each session starts with what its Access-Accept gave (its Class).
        wanted = enforcement.desired_profiles(session, now, SETTINGS.ladder, accounts)
        start_key = {}
        for row in session.scalars(select(RadiusSession)):
            row.profile = start_key[row.acct_session_id] = wanted[row.account_id].key
        session.commit()
    naky.nak_sessions.update({"s-1", "s-4", "s-7"})  # gone from that NAS: 503

    worker = enforcement.Enforcer(ctx.Session, SETTINGS, threads=192, poll_s=0.05)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    started = time.monotonic()
    done_ops = defaultdict(int)
    rules = promised.PromisedRules(max_amount=Decimal("500"), allowed_below=Decimal("100"),
                                   once_per_days=30, term_days=5)
    try:
        for step in range(400):
            if step == 150:
                flaky.silent = False  # the silent BRAS is back
            account_id = rng.choice(accounts)
            op = rng.choice(["pay", "spend", "spend", "turbo", "expire", "freeze", "promise",
                             "tariff", "fees"] if step % 100 else ["fees"])
            with ctx.Session() as session:
                account = session.get(Account, account_id)
                try:
                    if op == "pay":
                        add_payment(session, account, str(rng.choice([100, 600])),
                                    external_id=f"pay-{step}")
                    elif op == "spend":
                        ledger.post(session, account_id=account_id, amount=str(-rng.choice(
                            [50, 400, 900])), kind="traffic", key=f"use-{step}", author="t")
                        fees.apply_policies(session, account_id, account_id + 1)
                    elif op == "turbo":
                        options.buy(session, account, "turbo", enforcement.utcnow(),
                                    request_id=f"t-{step}")
                    elif op == "expire":
                        running = session.scalars(select(AccountOption).where(
                            AccountOption.status == "active")).first()
                        if running is not None:
                            running.ends_at = enforcement.utcnow()
                            options.expire(session, enforcement.utcnow())
                    elif op == "freeze":
                        if account.state == "frozen":
                            freeze.unfreeze(session, account)
                        else:
                            freeze.freeze(session, account, today + dt.timedelta(days=10),
                                          today, min_days=7, max_days=90)
                    elif op == "promise":
                        promised.grant(session, account, "300", enforcement.utcnow(), rules)
                        fees.apply_policies(session, account_id, account_id + 1)
                    elif op == "tariff":
                        target = "Fast" if account.tariff.name == "Home" else "Home"
                        tariff_change.change(session, account, target, "now",
                                             enforcement.utcnow(), today)
                        tariff_change.apply_due(session, today + dt.timedelta(days=1))
                    elif op == "fees":
                        fees.charge_day(session, today + dt.timedelta(days=step // 100))
                    session.commit()
                    done_ops[op] += 1
                except DomainError:
                    session.rollback()
            if step % 20 == 0:
                time.sleep(0.05)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            total, off = _in_line(ctx)
            if not off:
                break
            time.sleep(0.5)
    finally:
        worker.stop()
        thread.join(15)
    assert set(done_ops) >= {"pay", "spend", "turbo", "expire", "freeze", "promise", "tariff",
                             "fees"}, done_ops
    total, off = _in_line(ctx)
    assert off == [] and total > SESSIONS - 10

    # What the NASes really have agrees with our records.
    by_host = {r.host: r for r in responders}
    with ctx.Session() as session:
        rows = session.execute(select(RadiusSession, enforcement.Nas.address).join(
            enforcement.Nas, enforcement.Nas.id == RadiusSession.nas_id)).all()
        for row, address in rows:
            nas = by_host[address]
            if row.stopped_at is not None:
                assert row.acct_session_id in nas.nak_sessions  # only the 503 ones
                continue
            if row.profile == NONE:
                # Disconnected, or a Disconnect the NAS answered "no such
                # session" (503), which is as good.
                assert row.acct_session_id in nas.disconnected | nas.nak_sessions
            elif row.acct_session_id in nas.applied:
                told = rate_told(nas.applied[row.acct_session_id])
                assert told == parse_key(row.profile)[1:], row.acct_session_id
            else:
                assert row.profile == start_key[row.acct_session_id]
        # No session waited longer than the backoff cap (plus the loop's
        # bookkeeping: a poll, a claim, a batch recorded) between two tries.
        tries = defaultdict(list)
        for attempt, job_id in session.execute(
                select(EnforcementAttempt, EnforcementAttempt.job_id)
                .order_by(EnforcementAttempt.started_at)):
            tries[job_id].append(attempt)
        gaps = [later.started_at - earlier.finished_at
                for attempts in tries.values()
                for earlier, later in zip(attempts, attempts[1:])]
        assert gaps and max(gaps) <= dt.timedelta(seconds=SETTINGS.backoff_max + 2.0)
        retried = session.scalars(select(EnforcementJob).where(EnforcementJob.tries > 1)).all()
        assert retried  # the lossy, NAKing and silent NASes made the enforcer retry
    assert lossy.requests_seen and naky.requests_seen and flaky.requests_seen
    assert time.monotonic() - started < 150
