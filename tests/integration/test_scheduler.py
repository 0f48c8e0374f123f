"""Fee jobs on two scheduler processes over 60 simulated days with an outage."""

import datetime as dt
import multiprocessing
from decimal import Decimal

from sqlalchemy import func, select

from rating import jobs, ledger
from rating.models import Account, LedgerEntry
from tests.conftest import make_context
from tests.factories import make_account, make_tariff


def _scheduler_node(db_url, start, days, outage, barrier, done):
    """One scheduler process: each simulated day, both nodes fire at once."""
    node = make_context(db_url)
    try:
        for offset in range(days):
            today = start + dt.timedelta(days=offset)
            barrier.wait(timeout=120)
            if today in outage:
                continue  # both nodes down: the next run catches up
            jobs.run_fees(node.engine, node.Session, today)
        done.put("ok")
    finally:
        node.dispose()


def test_two_schedulers_over_60_days_with_an_outage_charge_once_a_day(db_url):
    node_a = make_context(db_url)
    with node_a.Session() as session:
        tariff = make_tariff(session, fee="300.00", fee_period="daily")
        ids = [make_account(session, tariff=tariff.name, balance="10000").id for _ in range(25)]
        session.commit()
    start = dt.date(2026, 3, 1)
    outage = {start + dt.timedelta(days=d) for d in (20, 21, 22)}
    spawn = multiprocessing.get_context("spawn")
    barrier, done = spawn.Barrier(2), spawn.Queue()
    nodes = [spawn.Process(target=_scheduler_node, args=(db_url, start, 60, outage, barrier, done))
             for _ in range(2)]
    for node in nodes:
        node.start()
    for node in nodes:
        node.join(300)
    assert [node.exitcode for node in nodes] == [0, 0]
    assert [done.get(timeout=5) for _ in nodes] == ["ok", "ok"]
    with node_a.Session() as session:
        fees_per_account = session.execute(
            select(LedgerEntry.account_id, func.count()).where(LedgerEntry.kind == "fee")
            .group_by(LedgerEntry.account_id)).all()
        assert sorted(fees_per_account) == [(i, 60) for i in sorted(ids)]
        keys = session.scalars(select(LedgerEntry.idempotency_key)
                               .where(LedgerEntry.account_id == ids[0])).all()
        assert {k for k in keys if k.startswith("fee:")} == {
            f"fee:{ids[0]}:{start + dt.timedelta(days=d)}" for d in range(60)}
        expected = Decimal("10000.00") - sum(
            (Decimal("300.00") / (31 if (start + dt.timedelta(days=d)).month in (3, 5) else 30))
            .quantize(Decimal("0.01")) for d in range(60))
        assert set(session.scalars(select(Account.balance))) == {expected}
        assert ledger.balance_mismatches(session) == []
    assert jobs.last_fee_day(node_a.Session) == start + dt.timedelta(days=59)
    node_a.dispose()


def test_the_lock_lets_one_node_in(pg_url):
    context = make_context(pg_url)
    with jobs.job_lock(context.engine, "fees") as first:
        with jobs.job_lock(context.engine, "fees") as second:
            assert first is True and second is False
    with jobs.job_lock(context.engine, "fees") as again:
        assert again is True
    context.dispose()


def test_operator_day_is_not_utc_day():
    late_evening_utc = dt.datetime(2026, 3, 1, 22, 30)
    assert jobs.local_today("Europe/Moscow", late_evening_utc) == dt.date(2026, 3, 2)
    assert jobs.local_today("UTC", late_evening_utc) == dt.date(2026, 3, 1)


def test_the_scheduler_process_has_both_jobs_scheduled(ctx):
    from scripts.serve_scheduler import build_scheduler
    scheduler = build_scheduler(ctx, fee_minutes=5, policy_seconds=30)
    jobs_by_id = {job.id: job for job in scheduler.get_jobs()}
    assert set(jobs_by_id) == {"fees", "policies", "traffic", "notifications",
                               "notify_deliver", "radius_usage", "stale_sessions", "stale_calls",
                               "payment_expiry", "spending", "archive", "traffic_tiers"}
    assert jobs_by_id["fees"].trigger.interval == dt.timedelta(minutes=5)
    assert jobs_by_id["policies"].trigger.interval == dt.timedelta(seconds=30)
