"""The daily fee run on both databases."""

import datetime as dt
from decimal import Decimal

from sqlalchemy import func, select

from rating import fees, ledger
from rating.models import Account, LedgerEntry, ProfileChange
from tests.factories import make_account, make_tariff


def test_a_month_of_daily_fees_for_many_accounts_charges_each_day_once(session):
    daily = make_tariff(session, fee="310.00", fee_period="daily")
    monthly = make_tariff(session, fee="500.00", fee_period="monthly")
    ids_daily = [make_account(session, tariff=daily.name, balance="1000").id for _ in range(600)]
    ids_monthly = [make_account(session, tariff=monthly.name, balance="1000").id
                   for _ in range(400)]
    frozen = make_account(session, tariff=daily.name, balance="1000")
    frozen.state = "frozen"
    session.commit()
    for day in range(1, 32):
        fees.charge_day(session, dt.date(2026, 1, day), chunk=370)
    # A second node, or a rerun after a crash, changes nothing.
    again = fees.charge_day(session, dt.date(2026, 1, 15), chunk=370)
    assert again.charged == 0
    session.expire_all()
    count = session.scalar(select(func.count()).select_from(LedgerEntry)
                           .where(LedgerEntry.kind == "fee"))
    assert count == 600 * 31 + 400
    balances = dict(session.execute(select(Account.id, Account.balance)).all())
    for account_id in ids_daily:
        assert balances[account_id] == Decimal("1000.00") - 31 * Decimal("10.00")
    for account_id in ids_monthly:
        assert balances[account_id] == Decimal("500.00")
    assert balances[frozen.id] == Decimal("1000.00")
    assert ledger.balance_mismatches(session) == []


def test_fees_round_per_day_and_pass_zero_into_throttle_and_suspend(session):
    tariff = make_tariff(session, fee="100.00", fee_period="daily")
    account = make_account(session, tariff=tariff.name, balance="7.00", credit_limit="5")
    session.commit()
    day = dt.date(2026, 2, 1)  # 28 days: 100 / 28 = 3.571... -> 3.57
    fees.charge_day(session, day)
    session.refresh(account)
    assert account.balance == Decimal("3.43") and account.profile == "normal"
    fees.charge_day(session, day + dt.timedelta(days=1))
    session.refresh(account)
    assert account.balance == Decimal("-0.14") and account.profile == "throttled"
    fees.charge_day(session, day + dt.timedelta(days=2))
    fees.charge_day(session, day + dt.timedelta(days=3))
    session.refresh(account)
    assert account.balance == Decimal("-7.28") and account.profile == "suspended"
    changes = session.execute(select(ProfileChange.profile).order_by(ProfileChange.id)).scalars()
    assert list(changes) == ["throttled", "suspended"]


def test_a_fee_line_in_the_statement_says_which_period_it_pays_for(session):
    from rating.cabinet_ops import statement

    daily = make_tariff(session, fee="310.00", fee_period="daily")
    monthly = make_tariff(session, fee="500.00", fee_period="monthly")
    by_day = make_account(session, tariff=daily.name, balance="1000")
    by_month = make_account(session, tariff=monthly.name, balance="1000")
    session.commit()
    fees.charge_day(session, dt.date(2026, 1, 7))
    # The fee run writes no memo; the statement reads the period from the key.
    assert session.scalar(select(func.count()).select_from(LedgerEntry)
                          .where(LedgerEntry.memo.is_not(None))) == 0
    start, end = dt.datetime(2020, 1, 1), dt.datetime(2100, 1, 1)
    [day_line] = [line for line in statement(session, by_day.id, start, end).lines
                  if line.kind == "fee"]
    [month_line] = [line for line in statement(session, by_month.id, start, end).lines
                    if line.kind == "fee"]
    assert (day_line.memo, day_line.amount) == ("fee for 2026-01-07", Decimal("-10.00"))
    assert (month_line.memo, month_line.amount) == ("fee for 2026-01", Decimal("-500.00"))
