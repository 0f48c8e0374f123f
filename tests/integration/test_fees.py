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


def test_no_fee_while_suspended_for_debt_and_it_resumes_the_day_service_returns(session):
    """A suspended subscriber has no service: the debt does not grow. A
    throttled one still has service (at the negative speed) and pays; a
    tariff may say it charges while suspended."""
    from rating.accounts import add_payment
    from rating.policies import REDIRECT, ladder_from_settings
    daily = make_tariff(session, fee="310.00", fee_period="daily", negative_rate_kbps=512)
    no_throttle = make_tariff(session, fee="310.00", fee_period="daily", negative_rate_kbps=0)
    strict = make_tariff(session, fee="310.00", fee_period="daily")
    strict.rules = {"fee_while_suspended": True}
    suspended = make_account(session, tariff=daily.name, credit_limit="50")
    throttled = make_account(session, tariff=daily.name, credit_limit="50")
    cut_off = make_account(session, tariff=no_throttle.name, credit_limit="50")
    charged_anyway = make_account(session, tariff=strict.name)
    for account, amount in ((suspended, "-60"), (throttled, "-20"), (cut_off, "-1"),
                            (charged_anyway, "-60")):
        ledger.post(session, account_id=account.id, amount=amount, kind="correction",
                    key=f"debt-{account.id}", author="t")
    fees.apply_policies(session)
    session.commit()
    for account in (suspended, throttled, cut_off, charged_anyway):
        session.refresh(account)
    assert [a.profile for a in (suspended, throttled, cut_off, charged_anyway)] == [
        "suspended", "throttled", "throttled", "suspended"]
    for day in (1, 2, 3):
        fees.charge_day(session, dt.date(2026, 1, day))
    session.commit()

    def fee_days(account):
        return [key.rsplit(":", 1)[1] for key in session.scalars(
            select(LedgerEntry.idempotency_key).where(LedgerEntry.account_id == account.id,
                                                      LedgerEntry.kind == "fee")
            .order_by(LedgerEntry.id))]
    assert fee_days(suspended) == [] and fee_days(cut_off) == []
    assert fee_days(throttled) == fee_days(charged_anyway) == [
        "2026-01-01", "2026-01-02", "2026-01-03"]
    # Paid on the 4th: service returns, and so does the fee, from that day.
    add_payment(session, suspended, "100", external_id="bank-4")
    session.commit()
    fees.charge_day(session, dt.date(2026, 1, 4))
    session.commit()
    assert fee_days(suspended) == ["2026-01-04"]
    # The captive portal is no service either.
    portal = ladder_from_settings({"suspend_mode": REDIRECT, "redirect_rate_kbps": 0})
    assert fees.unserved_profiles(daily, portal) == ["suspended"]
    assert fees.unserved_profiles(no_throttle) == ["suspended", "throttled"]
    assert fees.unserved_profiles(strict) == []
