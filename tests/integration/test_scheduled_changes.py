"""Changes scheduled for a day (issue 21): made once on their day by two
scheduler processes at once; cancelled before the day, nothing happens."""

import datetime as dt
import multiprocessing
from collections import Counter

import pytest
from sqlalchemy import func, select

from rating import bulk, changes, jobs, scheduled_changes
from rating.models import (Account, AccountOption, LedgerEntry, OperationLog, OptionType,
                           ProfileChange, ScheduledChange)
from rating.validate import DomainError
from tests.conftest import make_context
from tests.factories import make_account, make_tariff

TODAY = dt.date(2026, 12, 6)
DAY = dt.date(2026, 12, 10)


def _scheduler_node(db_url, days, barrier, done):
    """One scheduler process: each day, both nodes make the due changes at once."""
    node = make_context(db_url)
    try:
        counts = Counter()
        for day in days:
            barrier.wait(timeout=120)
            with node.Session() as session:
                counts.update(scheduled_changes.apply_due(session, day))
        done.put(dict(counts))
    finally:
        node.dispose()


def test_two_schedulers_make_each_change_once_on_its_day(db_url):
    context = make_context(db_url)
    with context.Session() as session:
        old = make_tariff(session, fee="300.00", fee_period="daily")
        new = make_tariff(session, fee="600.00", fee_period="daily")
        session.add(OptionType(code="turbo", name="Turbo", kind="turbo", price="50.00",
                               duration_hours=24, rate_multiplier=2))
        session.flush()
        ids = [make_account(session, tariff=old.name, balance="1000").id for _ in range(30)]
        accounts = [session.get(Account, i) for i in ids]
        for account in accounts[:20]:
            scheduled_changes.schedule(session, account, "tariff", {"tariff": new.name}, DAY,
                                       today=TODAY, actor="admin:test")
        for account in accounts[20:]:
            scheduled_changes.schedule(session, account, "option", {"option": "turbo"}, DAY,
                                       today=TODAY, actor="admin:test")
        cancelled = scheduled_changes.schedule(session, accounts[0], "freeze",
                                               {"until": "2026-12-25"}, DAY, today=TODAY,
                                               actor="admin:test")
        session.commit()
        scheduled_changes.cancel(session, cancelled.id, today=TODAY, actor="admin:test")
        session.commit()
    days = [DAY - dt.timedelta(days=1), DAY, DAY + dt.timedelta(days=1)]
    spawn = multiprocessing.get_context("spawn")
    barrier, done = spawn.Barrier(2), spawn.Queue()
    nodes = [spawn.Process(target=_scheduler_node, args=(db_url, days, barrier, done))
             for _ in range(2)]
    for node in nodes:
        node.start()
    for node in nodes:
        node.join(300)
    assert [node.exitcode for node in nodes] == [0, 0]
    results = [done.get(timeout=5) for _ in nodes]
    assert sum(r.get("applied", 0) for r in results) == 30
    assert sum(r.get("failed", 0) for r in results) == 0
    with context.Session() as session:
        states = Counter(session.scalars(select(ScheduledChange.state)))
        assert states == Counter({"applied": 30, "cancelled": 1})
        # The tariff is the day's own (a scheduled change "now" starts on its day).
        rows = session.execute(select(Account.next_tariff_id, Account.next_tariff_from)
                               .where(Account.id.in_(ids[:20]))).all()
        assert set(rows) == {(new.id, DAY)}
        assert session.scalar(select(func.count()).select_from(AccountOption)) == 10
        keys = session.scalars(select(LedgerEntry.idempotency_key)
                               .where(LedgerEntry.kind == "option")).all()
        assert len(keys) == 10 and all(":sched" in k for k in keys)
        assert session.scalar(select(func.count()).select_from(ProfileChange).where(
            ProfileChange.reason == "option:turbo")) == 10
        # The cancelled freeze never happened.
        assert session.get(Account, ids[0]).state == "active"
        actions = Counter(session.scalars(select(OperationLog.action)))
        assert actions["tariff.change"] == 20 and actions["option.buy"] == 10
        assert actions["account.freeze"] == 0 and actions["change.cancel"] == 1
    # The fee run of the day switches the tariff before charging it.
    jobs.run_fees(context.engine, context.Session, DAY)
    with context.Session() as session:
        assert set(session.scalars(select(Account.tariff_id).where(
            Account.id.in_(ids[:20])))) == {new.id}
        fees = session.scalars(select(LedgerEntry.amount).where(
            LedgerEntry.account_id == ids[0], LedgerEntry.idempotency_key ==
            f"fee:{ids[0]}:{DAY.isoformat()}")).all()
        assert [str(f) for f in fees] == ["-19.35"]  # 600/31, the new tariff's day
    context.dispose()


def test_cancel_and_schedule_refuse_what_cannot_be(ctx):
    with ctx.Session() as session:
        tariff = make_tariff(session)
        account = make_account(session, tariff=tariff.name)
        with pytest.raises(DomainError, match="after today"):
            scheduled_changes.schedule(session, account, "unfreeze", {}, TODAY, today=TODAY,
                                       actor="a")
        with pytest.raises(DomainError):
            scheduled_changes.schedule(session, account, "tariff", {"tariff": "none"}, DAY,
                                       today=TODAY, actor="a")
        row = scheduled_changes.schedule(session, account, "unfreeze", {}, DAY, today=TODAY,
                                         actor="a")
        session.commit()
        with pytest.raises(changes.Refusal, match="can no longer be cancelled"):
            scheduled_changes.cancel(session, row.id, today=DAY, actor="a")
        # Its day finds the account not frozen: failed, with the reason.
        assert scheduled_changes.apply_due(session, DAY) == {"applied": 0, "failed": 1}
        session.refresh(row)
        assert (row.state, row.reason_code) == ("failed", "not_frozen")
        with pytest.raises(changes.Refusal):
            scheduled_changes.cancel(session, row.id, today=TODAY, actor="a")
        with pytest.raises(DomainError, match="does not exist"):
            scheduled_changes.cancel(session, "x", today=TODAY, actor="a")


def test_a_bulk_change_for_a_day_schedules_each_account_and_reverts_by_cancelling(ctx):
    terms = changes.Terms(now=dt.datetime(2026, 12, 6, 9), today=TODAY, actor="admin:test")
    with ctx.Session() as session:
        old = make_tariff(session)
        new = make_tariff(session)
        ids = [make_account(session, tariff=old.name).id for _ in range(6)]
        session.commit()
        operation = bulk.preview(session, "tariff", {"tariff": new.name}, ids, terms,
                                 effective_on=DAY)
        operation_id = operation.id
        # Closed between the preview and the apply: refused then.
        session.get(Account, ids[-1]).state = "closed"
        session.commit()
    applied = bulk.apply(ctx.Session, operation_id, terms)
    assert (applied.state, applied.done, applied.refused) == ("partially", 5, 1)
    with ctx.Session() as session:
        assert bulk.totals(session, operation_id).scheduled == 5
        assert session.scalar(select(func.count()).select_from(Account).where(
            Account.next_tariff_id.is_not(None))) == 0
        back = bulk.revert(session, operation_id, terms)
        session.commit()
        back_id = back.id
    bulk.apply(ctx.Session, back_id, terms)
    with ctx.Session() as session:
        assert Counter(session.scalars(select(ScheduledChange.state))) == {"cancelled": 5}
        assert scheduled_changes.apply_due(session, DAY) == {"applied": 0, "failed": 0}
