"""Promised payment, voluntary freeze and tariff change, on both databases."""

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from rating import fees, freeze, jobs, ledger, promised, tariff_change
from rating.accounts import DomainError, add_payment
from rating.models import LedgerEntry, ProfileChange, PromisedPayment
from tests.factories import make_account, make_tariff

NOW = dt.datetime(2026, 4, 10, 9, 0)
RULES = promised.PromisedRules(max_amount=Decimal("300"), term_days=5, once_per_days=30,
                               allowed_below=Decimal("50"), fee=Decimal("10"))


def test_promised_payment_grant_and_expiry_reverses_once(session):
    account = make_account(session, balance="20")
    first = promised.grant(session, account, "200", NOW, RULES)
    again = promised.grant(session, account, "200", NOW, RULES)  # a double submit
    session.commit()
    assert again.id == first.id
    session.refresh(account)
    assert account.balance == Decimal("210.00")  # 20 + 200 - 10 fee
    assert promised.expire(session, NOW + dt.timedelta(days=4)) == []
    assert promised.expire(session, NOW + dt.timedelta(days=5)) == [(first.id, "expired")]
    assert promised.expire(session, NOW + dt.timedelta(days=6)) == []
    session.commit()
    session.refresh(account)
    assert account.balance == Decimal("10.00")
    assert ledger.balance_mismatches(session) == []


def test_a_repaid_promise_is_not_reversed(session):
    account = make_account(session, balance="0")
    promise = promised.grant(session, account, "100", NOW, RULES)
    session.commit()
    add_payment(session, account, "150", external_id="bank-7")
    session.commit()
    assert promised.expire(session, NOW + dt.timedelta(days=30)) == [(promise.id, "repaid")]
    session.commit()
    assert session.scalar(select(func.count()).select_from(LedgerEntry)
                          .where(LedgerEntry.reverses_id.is_not(None))) == 0


@pytest.mark.parametrize("balance, amount, message", [
    ("49.99", "300.01", "between 0.01 and 300"),
    ("50.00", "100", "balance is below 50"),
    ("10", "0", "between"),
])
def test_promised_payment_limits(session, balance, amount, message):
    account = make_account(session, balance=balance)
    with pytest.raises(DomainError, match=message):
        promised.grant(session, account, amount, NOW, RULES)
    session.rollback()
    assert session.scalar(select(func.count()).select_from(PromisedPayment)) == 0


def test_promised_payment_once_per_period(session):
    account = make_account(session, balance="0")
    promised.grant(session, account, "100", NOW, RULES)
    promised.expire(session, NOW + dt.timedelta(days=5))
    with pytest.raises(DomainError, match="once in 30 days"):
        promised.grant(session, account, "100", NOW + dt.timedelta(days=29), RULES)
    promised.grant(session, account, "100", NOW + dt.timedelta(days=31), RULES)


def test_freeze_stops_fees_and_thaws_on_its_day(session):
    tariff = make_tariff(session, fee="300.00", fee_period="daily")
    account = make_account(session, tariff=tariff.name, balance="1000")
    session.commit()
    today = dt.date(2026, 4, 10)
    with pytest.raises(DomainError, match="from 7 to 90 days"):
        freeze.freeze(session, account, today + dt.timedelta(days=3), today, min_days=7,
                      max_days=90)
    freeze.freeze(session, account, today + dt.timedelta(days=7), today, min_days=7,
                  max_days=90)
    session.commit()
    for offset in range(7):
        fees.charge_day(session, today + dt.timedelta(days=offset))
    session.refresh(account)
    assert account.balance == Decimal("1000.00") and account.profile == "suspended"
    assert freeze.thaw_due(session, today + dt.timedelta(days=7)) == 1
    session.commit()
    session.refresh(account)
    assert (account.state, account.profile) == ("active", "normal")
    assert [c.reason for c in session.scalars(select(ProfileChange))] == ["freeze", "unfreeze"]


def test_tariff_change_preview_next_period_and_frequency_limit(db_url):
    from tests.conftest import make_context
    ctx = make_context(db_url)
    with ctx.Session() as session:
        cheap = make_tariff(session, name="Cheap", fee="300.00", fee_period="daily",
                            switch_min_days=30)
        fast = make_tariff(session, name="Fast", fee="930.00", fee_period="daily",
                           rate_down_kbps=500_000, switch_min_days=30)
        account = make_account(session, tariff=cheap.name, balance="1000")
        session.commit()
        today = dt.date(2026, 5, 20)
        plan = tariff_change.preview(session, account, "Fast", "next_period", today)
        assert (plan.starts_on, plan.fee_per_day) == (dt.date(2026, 6, 1), Decimal("31.00"))
        now_plan = tariff_change.preview(session, account, "Fast", "now", today)
        assert now_plan.starts_on == dt.date(2026, 5, 21)
        with pytest.raises(DomainError, match="current tariff"):
            tariff_change.preview(session, account, "Cheap", "now", today)
        tariff_change.change(session, account, "Fast", "next_period",
                             dt.datetime(2026, 5, 20, 12), today)
        session.commit()
        account_id = account.id
    # The scheduler charges May at the old tariff and June at the new one.
    jobs_days = [dt.date(2026, 5, 20) + dt.timedelta(days=d) for d in range(13)]
    for day in jobs_days:
        jobs.run_fees(ctx.engine, ctx.Session, day)
    with ctx.Session() as session:
        amounts = session.scalars(select(LedgerEntry.amount).where(
            LedgerEntry.kind == "fee", LedgerEntry.account_id == account_id)
            .order_by(LedgerEntry.id)).all()
        assert amounts == [Decimal("-9.68")] * 12 + [Decimal("-31.00")]  # 300/31, 930/30
        assert session.scalar(select(func.count()).select_from(ProfileChange)
                              .where(ProfileChange.reason == "tariff")) == 1
        from rating.models import Account
        account = session.get(Account, account_id)
        with pytest.raises(DomainError, match="changed again from 2026-06-19"):
            tariff_change.change(session, account, "Cheap", "now",
                                 dt.datetime(2026, 6, 2, 12), dt.date(2026, 6, 2))
    ctx.dispose()


def test_a_frozen_day_costs_the_freeze_fee_once(session):
    tariff = make_tariff(session, fee="300.00", fee_period="daily")
    account = make_account(session, tariff=tariff.name, balance="100")
    today = dt.date(2026, 4, 10)
    freeze.freeze(session, account, today + dt.timedelta(days=10), today, min_days=7,
                  max_days=90)
    session.commit()
    for _ in range(2):
        fees.charge_day(session, today, freeze_fee=Decimal("1.50"))
    session.refresh(account)
    assert account.balance == Decimal("98.50")
    memo = session.scalar(select(LedgerEntry.memo).where(LedgerEntry.kind == "fee"))
    assert memo == "freeze fee for 2026-04-10"
