"""Spending limits (issue 21): crossed mid-month, the warning and the action
each fire once; throttle and block extras hold until the next month or a
raised limit; the spend report adds up to the ledger."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal

import pytest
from sqlalchemy import func, insert, select, update

from config.db import utcnow
from rating import cabinet_ops, corrections, jobs, ledger, options, packages, spending
from rating.models import (Account, LedgerEntry, Notification, ProfileChange,
                           SpendingLimitState)
from collector.models import TrafficRollup
from rating.validate import DomainError
from tests.conftest import make_context
from tests.factories import make_account, make_service

ZONE = "Europe/Moscow"
# Mid-December in Moscow; the month runs from 2026-11-30 21:00 UTC.
MID = dt.datetime(2026, 12, 15, 9, 0)
NEXT_MONTH = dt.datetime(2026, 12, 31, 21, 0)


def charge(session, account, amount, *, at=MID, key=None, kind="fee", memo_code=None):
    posting = ledger.post(session, account_id=account.id, amount=-Decimal(amount), kind=kind,
                          key=key or f"test:{account.id}:{kind}:{amount}:{at.isoformat()}",
                          author="test", memo_code=memo_code)
    session.execute(update(LedgerEntry).where(LedgerEntry.id == posting.entry_id)
                    .values(created_at=at))
    return posting


def notices(session, kind=None):
    statement = select(Notification.account_id, Notification.kind).where(
        Notification.kind.like("spend-%")).order_by(Notification.id)
    if kind is not None:
        statement = statement.where(Notification.kind == kind)
    return session.execute(statement).all()


def test_month_is_the_operators_calendar_month():
    month = spending.month_of(MID, ZONE)
    assert (month.label, month.start, month.end) == (
        "2026-12", dt.datetime(2026, 11, 30, 21, 0), NEXT_MONTH)
    assert spending.month_of(NEXT_MONTH, ZONE).label == "2027-01"


def test_a_limit_crossed_mid_month_warns_once_and_acts_once(ctx, session):
    account = make_account(session, balance="5000", email="boss@example.net")
    spending.set_limit(session, account_id=account.id, metric="money", value="1000",
                       action="notify", warn_percent=80, actor="test", now=MID, timezone=ZONE)
    charge(session, account, "700")
    # A payment is not spending; last month's charge is not this month's.
    charge(session, account, "900", at=dt.datetime(2026, 11, 30, 20, 59), key="last-month")
    session.commit()
    assert spending.evaluate(session, MID, ZONE).warned == []

    charge(session, account, "150")         # 850: past 80 %
    session.commit()
    first = spending.evaluate(session, MID, ZONE)
    again = spending.evaluate(session, MID, ZONE)
    session.commit()
    assert len(first.warned) == 1 and first.acted == []
    assert again.warned == [] and again.acted == []
    assert notices(session) == [(account.id, "spend-warning")]

    charge(session, account, "200")         # 1050: reached
    session.commit()
    reached = spending.evaluate(session, MID, ZONE)
    session.commit()
    assert len(reached.acted) == 1
    assert spending.evaluate(session, MID + dt.timedelta(hours=1), ZONE).acted == []
    session.commit()
    assert notices(session) == [(account.id, "spend-warning"), (account.id, "spend-reached")]
    state = session.scalar(select(SpendingLimitState))
    assert state.used_money == Decimal("1050.00") and state.month == "2026-12"
    body = session.scalar(select(Notification.body).where(Notification.kind == "spend-reached"))
    assert "1\u202f050,00 ₽" in body and "1\u202f000,00 ₽" in body


def test_two_job_runs_at_once_act_once(ctx, session):
    accounts = [make_account(session, balance="100", email=f"u{i}@example.net")
                for i in range(3)]
    for account in accounts:
        spending.set_limit(session, account_id=account.id, metric="money", value="50",
                           action="throttle", actor="test", now=MID, timezone=ZONE)
        charge(session, account, "60")
    session.commit()
    results, errors = [], []
    barrier = threading.Barrier(2)

    def run():
        context = make_context(ctx.engine.url.render_as_string(hide_password=False))
        try:
            barrier.wait()
            results.append(jobs.run_spending(context.engine, context.Session, ZONE, now=MID))
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)
        finally:
            context.dispose()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    acted = sorted(a for r in results if r is not None for a in r.acted)
    assert len(acted) == 3 and len(set(acted)) == 3
    assert len(notices(session, "spend-throttled")) == 3
    # Each account's profile changed once, for the network to follow.
    assert session.scalar(select(func.count()).select_from(ProfileChange).where(
        ProfileChange.reason.like("limit:%"))) == 3


def test_throttle_slows_the_account_and_lifts_next_month(ctx, session):
    account = make_account(session, balance="1000")
    spending.set_limit(session, account_id=account.id, metric="money", value="100",
                       action="throttle", actor="test", now=MID, timezone=ZONE)
    charge(session, account, "120")
    session.commit()
    spending.evaluate(session, MID, ZONE)
    session.commit()
    session.refresh(account)
    assert account.limit_throttled_until == NEXT_MONTH
    speed = cabinet_ops.speed_now(session, account, MID, timezone=ZONE)
    # The tariff's slow speed (negative_rate_kbps) while the limit holds.
    assert (speed.profile, speed.rate_down_kbps) == ("limit-throttled", 1_000)
    assert cabinet_ops.speed_now(session, account, NEXT_MONTH, timezone=ZONE).profile == "normal"
    # RADIUS's cached view and the enforcer ask the same function.
    from aaa import enforcement
    from aaa.authorize import subscriber_profile
    from aaa.directory import SubscriberDirectory
    service = make_service(session, account)
    session.commit()
    view = SubscriberDirectory(ctx.Session).by_login(service.login)
    assert subscriber_profile(view, MID, timezone=ZONE).name == "limit-throttled"
    assert enforcement.desired_profiles(session, MID, account_ids=[account.id],
                                        timezone=ZONE)[account.id].key == "full:1000/1000"

    # The first run of the new month clears it and tells the network.
    outcome = spending.evaluate(session, NEXT_MONTH + dt.timedelta(minutes=5), ZONE)
    session.commit()
    session.refresh(account)
    assert outcome.expired == 1 and account.limit_throttled_until is None
    assert session.scalar(select(ProfileChange.reason).order_by(ProfileChange.id.desc())
                          .limit(1)) == "limit:month-ended"


def test_raising_the_limit_lifts_the_throttle(session):
    account = make_account(session, balance="1000", email="it@example.net")
    limit, _ = spending.set_limit(session, account_id=account.id, metric="money", value="100",
                                  action="throttle", actor="test", now=MID, timezone=ZONE)
    charge(session, account, "120")
    spending.evaluate(session, MID, ZONE)
    session.commit()
    version = session.get(Account, account.id).version
    spending.set_limit(session, account_id=account.id, metric="money", value="500",
                       action="throttle", actor="test", now=MID, timezone=ZONE)
    session.commit()
    session.refresh(account)
    assert account.limit_throttled_until is None and account.version == version + 1
    # Lowered below the spending again: it acts again (a new revision).
    spending.set_limit(session, account_id=account.id, metric="money", value="110",
                       action="throttle", actor="test", now=MID, timezone=ZONE)
    session.commit()
    session.refresh(account)
    assert account.limit_throttled_until == NEXT_MONTH
    assert len(notices(session, "spend-throttled")) == 2
    spending.remove_limit(session, limit.id, actor="test", now=MID, timezone=ZONE)
    session.commit()
    session.refresh(account)
    assert account.limit_throttled_until is None


def test_block_extras_refuses_a_turbo_and_a_package_with_the_reason(session):
    turbo = options.create_option_type(session, code="turbo", name="Turbo x2", kind="turbo",
                                       price="50.00", duration_hours=24, rate_multiplier=2)
    pack = packages.create(session, name="TV", fee="10.00", actor="test")
    account = make_account(session, balance="1000")
    spending.set_limit(session, account_id=account.id, metric="money", value="100",
                       action="block_extras", actor="test", now=MID, timezone=ZONE)
    charge(session, account, "100")
    spending.evaluate(session, MID, ZONE)
    session.commit()
    session.refresh(account)
    assert account.extras_blocked_until == NEXT_MONTH
    balance = account.balance
    with pytest.raises(DomainError, match="monthly spending limit is reached"):
        options.check(session, account, turbo.code, MID)
    with pytest.raises(DomainError, match="monthly spending limit is reached"):
        options.buy(session, account, turbo.code, MID, request_id="r1")
    with pytest.raises(DomainError, match="monthly spending limit is reached"):
        packages.switch(session, account, pack, True, today=MID.date(), actor="test")
    session.rollback()
    assert session.get(Account, account.id).balance == balance
    # Raising the limit lets the turbo be bought.
    spending.set_limit(session, account_id=account.id, metric="money", value="300",
                       action="block_extras", actor="test", now=MID, timezone=ZONE)
    session.commit()
    session.refresh(account)
    assert account.extras_blocked_until is None
    assert options.buy(session, account, turbo.code, MID, request_id="r2").created


def test_traffic_limit_counts_rollup_bytes(session):
    account = make_account(session, balance="100", email="t@example.net")
    spending.set_limit(session, account_id=account.id, metric="traffic", value="1.5",
                       action="notify", actor="test", now=MID, timezone=ZONE)
    session.execute(insert(TrafficRollup), [
        {"account_id": account.id, "interval_start": MID, "traffic_class": "internet",
         "direction": "in", "bytes": 1_000_000_000, "packets": 1, "source": "netflow"},
        {"account_id": account.id, "interval_start": MID, "traffic_class": "internet",
         "direction": "out", "bytes": 600_000_000, "packets": 1, "source": "netflow"}])
    session.commit()
    assert len(spending.evaluate(session, MID, ZONE).acted) == 1
    session.commit()
    body = session.scalar(select(Notification.body).where(Notification.kind == "spend-reached"))
    assert "1,60 ГБ" in body and "1,50 ГБ" in body
    [view] = spending.listing(session, MID, ZONE)
    assert view.used == 1_600_000_000 and view.acted and view.share == 106


def test_bad_limits_are_refused_and_change_nothing(session):
    account = make_account(session)
    for kwargs, message in [
            (dict(metric="money", value="-5"), "more than zero"),
            (dict(metric="cpu", value="5"), "metric must be one of"),
            (dict(metric="traffic", value="lots"), "number of GB"),
            (dict(metric="money", value="5", action="explode"), "action must be one of"),
            (dict(metric="money", value="5", warn_percent=100), "warn percent")]:
        with pytest.raises(DomainError, match=message):
            spending.set_limit(session, account_id=account.id, actor="test", now=MID,
                               timezone=ZONE, **kwargs)
    assert spending.listing(session, MID, ZONE) == []


def test_report_sums_equal_the_ledger_by_service(session):
    first = make_account(session, balance="2000")
    second = make_account(session, balance="2000")
    charge(session, first, "300")                                   # tariff fee
    charge(session, first, "50", kind="option", memo_code="turbo")  # options
    charge(session, first, "10", memo_code="package")               # packages
    charge(session, second, "7.25", kind="traffic", memo_code="traffic")
    charge(session, second, "3.40", kind="call", memo_code="calls")  # calls
    corrections.charge(session, second, "5", reason="cable", actor="test",
                       external_id="c1")                            # other
    session.execute(update(LedgerEntry).where(LedgerEntry.memo_code == "charge")
                    .values(created_at=MID))
    session.commit()
    result = spending.report(session, [first.id, second.id], dt.date(2026, 12, 1),
                             dt.date(2026, 12, 31), ZONE)
    by_number = {row.number: row for row in result.rows}
    assert by_number[first.number].services == {
        "tariff": Decimal("300.00"), "options": Decimal("50.00"),
        "packages": Decimal("10.00"), "traffic": Decimal("0.00"), "calls": Decimal("0.00"),
        "other": Decimal("0.00")}
    assert by_number[second.number].services["traffic"] == Decimal("7.25")
    assert by_number[second.number].services["calls"] == Decimal("3.40")
    assert by_number[second.number].services["other"] == Decimal("5.00")
    spent_in_ledger = -session.scalar(select(func.sum(LedgerEntry.amount)).where(
        LedgerEntry.amount < 0, LedgerEntry.created_at >= MID - dt.timedelta(days=1)))
    assert result.total == spent_in_ledger == Decimal("375.65")
    # A day outside the period is left out.
    empty = spending.report(session, [first.id], dt.date(2026, 12, 16), dt.date(2026, 12, 16),
                            ZONE)
    assert empty.total == Decimal("0.00")


def company(session):
    """A company: Head office > Sales (two lines) and IT (one line)."""
    from rating import org
    customer = org.create_customer(session, kind="company", name="Romashka LLC", actor="test")
    head = org.create_unit(session, customer.id, "Head office", actor="test")
    sales = org.create_unit(session, customer.id, "Sales", actor="test", parent_id=head.id)
    it = org.create_unit(session, customer.id, "IT", actor="test", parent_id=head.id)
    lines = {}
    for name, unit in (("sales-1", sales), ("sales-2", sales), ("it-1", it)):
        account = make_account(session, balance="1000", kind="company",
                               email=f"{name}@example.net")
        org.attach_account(session, account.id, customer.id, actor="test", unit_id=unit.id)
        lines[name] = account
    outsider = make_account(session, balance="1000", email="other@example.net")
    return customer, {"head": head, "sales": sales, "it": it}, lines, outsider


def test_a_branch_limit_sums_its_subtree_and_acts_on_each_line_once(session):
    customer, units, lines, outsider = company(session)
    spending.set_limit(session, org_unit_id=units["sales"].id, metric="money", value="500",
                       action="throttle", warn_percent=50, actor="test", now=MID,
                       timezone=ZONE)
    charge(session, lines["sales-1"], "200")
    charge(session, lines["it-1"], "400")      # another branch: not Sales' spending
    charge(session, outsider, "999")
    session.commit()
    assert spending.evaluate(session, MID, ZONE).acted == []
    charge(session, lines["sales-2"], "320")   # Sales: 520
    session.commit()
    assert len(spending.evaluate(session, MID, ZONE).acted) == 1
    assert spending.evaluate(session, MID, ZONE).acted == []
    session.commit()
    slowed = {a.id for a in session.scalars(select(Account).where(
        Account.limit_throttled_until.is_not(None)))}
    assert slowed == {lines["sales-1"].id, lines["sales-2"].id}
    assert sorted(notices(session, "spend-throttled")) == sorted(
        [(lines["sales-1"].id, "spend-throttled"), (lines["sales-2"].id, "spend-throttled")])
    # The warning was passed by on the way: it never goes after the action.
    assert notices(session, "spend-warning") == []


def test_customer_report_has_branch_totals_equal_to_the_ledger(session):
    customer, units, lines, outsider = company(session)
    charge(session, lines["sales-1"], "100")
    charge(session, lines["sales-2"], "25.50", kind="option", memo_code="turbo")
    charge(session, lines["it-1"], "40", memo_code="package")
    charge(session, outsider, "999")
    session.commit()
    ids, where = spending.customer_scope(session, customer.id)
    result = spending.report(session, ids, dt.date(2026, 12, 1), dt.date(2026, 12, 31), ZONE,
                             where)
    totals = {name: total for _, name, _, total in result.units()}
    assert totals == {"IT": Decimal("40.00"), "Sales": Decimal("125.50")}
    assert result.total == Decimal("165.50")
    # One branch with the units under it.
    ids, where = spending.customer_scope(session, customer.id, units["head"].id)
    assert sorted(ids) == sorted(a.id for a in lines.values())
    ids, _ = spending.customer_scope(session, customer.id, units["it"].id)
    assert ids == [lines["it-1"].id]
    with pytest.raises(DomainError):
        spending.customer_scope(session, customer.id + 1)


def test_a_company_notice_reaches_exactly_the_branchs_accounts(session):
    from rating import company_notices, org
    from rating.accounts import create_cabinet_user
    customer, units, lines, outsider = company(session)
    admin = create_cabinet_user(session, lines["sales-1"], login="sales-admin",
                                password="long-password-1", role="owner")
    viewer = create_cabinet_user(session, lines["it-1"], login="it-viewer",
                                 password="long-password-1", role="viewer")
    org.grant(session, admin.id, customer.id, "view,users", actor="test",
              unit_id=units["sales"].id)
    org.grant(session, viewer.id, customer.id, "view", actor="test")
    lines["sales-2"].notify_channels = ["email", "sms"]
    lines["sales-2"].phone = "+79161234567"
    session.flush()
    assert [b.unit_name for b in spending.branches(session, admin.id, "users")] == ["Sales"]
    text = "The office line moves on Monday <b>&</b>"
    row = company_notices.send(session, cabinet_user_id=admin.id,
                               branch_key=f"{customer.id}:{units['sales'].id}", text=text,
                               actor="cabinet:sales-admin", now=MID)
    session.commit()
    got = session.execute(select(Notification.account_id, Notification.channel,
                                 Notification.subject, Notification.body)
                          .where(Notification.broadcast_id == row.id)
                          .order_by(Notification.account_id, Notification.channel)).all()
    assert [(a, c) for a, c, _, _ in got] == [
        (lines["sales-1"].id, "email"), (lines["sales-2"].id, "email"),
        (lines["sales-2"].id, "sms")]
    assert {body for _, _, _, body in got} == {text}
    assert {subject for _, _, subject, _ in got} == {"Сообщение от Romashka LLC"}
    assert [n.id for n in company_notices.sent(session, admin.id)] == [row.id]
    # A branch out of reach, a login without the right, bad texts: refused.
    for user_id, key in ((admin.id, f"{customer.id}:{units['it'].id}"),
                         (admin.id, f"{customer.id}:"), (viewer.id, f"{customer.id}:")):
        with pytest.raises(DomainError, match="no such branch"):
            company_notices.send(session, cabinet_user_id=user_id, branch_key=key, text="hi",
                                 actor="x", now=MID)
    for bad in ("", "x" * 501, "bell\x07"):
        with pytest.raises(DomainError):
            company_notices.send(session, cabinet_user_id=admin.id,
                                 branch_key=f"{customer.id}:{units['sales'].id}", text=bad,
                                 actor="cabinet:sales-admin", now=MID)
    # At most PER_HOUR an hour.
    for number in range(company_notices.PER_HOUR - 1):
        company_notices.send(session, cabinet_user_id=admin.id,
                             branch_key=f"{customer.id}:{units['sales'].id}",
                             text=f"notice {number}", actor="cabinet:sales-admin", now=MID)
    with pytest.raises(DomainError, match="an hour"):
        company_notices.send(session, cabinet_user_id=admin.id,
                             branch_key=f"{customer.id}:{units['sales'].id}", text="one more",
                             actor="cabinet:sales-admin", now=MID)
