"""rating's side of the plan pages: offers, the limit check, cancelling an
ordered change, a monthly tariff's first charge, the option check, freeze
terms; on both databases."""

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import select

from config.settings import load_settings
from rating import fees, freeze, options, tariff_change
from rating.accounts import DomainError
from rating.models import LedgerEntry, OperationLog
from tests.factories import make_account, make_tariff

NOW = dt.datetime(2026, 5, 20, 12, 0)
TODAY = NOW.date()


def test_offers_leave_out_the_current_and_archived_tariffs(session):
    home = make_tariff(session, name="Home", fee="600.00")
    fast = make_tariff(session, name="Fast", fee="900.00")
    cheap = make_tariff(session, name="Cheap", fee="300.00")
    old = make_tariff(session, name="Old", fee="100.00")
    old.archived = True
    account = make_account(session, tariff=home.name)
    assert [t.name for t in tariff_change.offers(session, account)] == ["Cheap", "Fast"]
    assert tariff_change.offer(session, account, str(fast.id)) is fast
    assert tariff_change.offer(session, account, cheap.id) is cheap
    for tampered in (home.id, old.id, "999999", "x", None, "1" * 30, "-1"):
        with pytest.raises(DomainError, match="not offered"):
            tariff_change.offer(session, account, tampered)


def test_cancel_gives_the_frequency_limit_back(session):
    home = make_tariff(session, name="Home", fee="600.00", fee_period="daily")
    fast = make_tariff(session, name="Fast", fee="900.00", fee_period="daily",
                       switch_min_days=30)
    account = make_account(session, tariff=home.name, balance="100")
    earlier = NOW - dt.timedelta(days=40)
    account.tariff_changed_at = earlier
    tariff_change.change(session, account, "Fast", "next_period", NOW, TODAY, actor="t")
    assert tariff_change.pending(session, account) == tariff_change.Pending(
        "Fast", dt.date(2026, 6, 1))
    tariff_change.check_limit(account, home, NOW)  # Home has no limit
    with pytest.raises(DomainError, match="changed again from 2026-06-19"):
        tariff_change.check_limit(account, fast, NOW)

    assert tariff_change.cancel(session, account, TODAY, actor="t").tariff == "Fast"
    assert (account.next_tariff_id, account.next_tariff_from, account.tariff_changed_at) == \
        (None, None, earlier)
    actions = session.scalars(select(OperationLog.action).where(
        OperationLog.account_id == account.id).order_by(OperationLog.id)).all()
    assert actions[-2:] == ["tariff.change", "tariff.cancel"]
    with pytest.raises(DomainError, match="no tariff change to cancel"):
        tariff_change.cancel(session, account, TODAY)


def test_a_change_cannot_be_cancelled_on_its_start_day(session):
    home = make_tariff(session, name="Home", fee="600.00")
    make_tariff(session, name="Fast", fee="900.00")
    account = make_account(session, tariff=home.name)
    tariff_change.change(session, account, "Fast", "now", NOW, TODAY)
    with pytest.raises(DomainError, match="already started"):
        tariff_change.cancel(session, account, TODAY + dt.timedelta(days=1))
    assert account.next_tariff_id is not None


def test_switch_again_from_takes_the_longest_limit(session):
    assert tariff_change.switch_again_from(session, NOW) is None
    make_tariff(session, name="A", switch_min_days=14)
    make_tariff(session, name="B", switch_min_days=30)
    archived = make_tariff(session, name="C", switch_min_days=90)
    archived.archived = True
    session.flush()
    assert tariff_change.switch_again_from(session, NOW) == NOW + dt.timedelta(days=30)


def test_a_dearer_monthly_tariff_now_charges_the_difference_for_the_days_left(session):
    monthly = make_tariff(session, name="Monthly", fee="500.00", fee_period="monthly")
    make_tariff(session, name="Monthly Plus", fee="800.00", fee_period="monthly")
    make_tariff(session, name="Monthly Lite", fee="300.00", fee_period="monthly")
    account = make_account(session, tariff=monthly.name, balance="1000")
    session.commit()
    before = tariff_change.preview(session, account, "Monthly Plus", "now", TODAY)
    assert before.charged_on_start == Decimal("800.00")
    fees.charge_day(session, TODAY)  # May's fee, keyed per account and month
    # From May 21: 11 of May's 31 days at 300 more a month.
    now_plan = tariff_change.preview(session, account, "Monthly Plus", "now", TODAY)
    assert (now_plan.starts_on, now_plan.charged_on_start) == (
        dt.date(2026, 5, 21), Decimal("106.45"))
    # A cheaper tariff now refunds nothing; its fee starts with June.
    cheaper = tariff_change.preview(session, account, "Monthly Lite", "now", TODAY)
    assert cheaper.charged_on_start == Decimal("0.00")
    next_plan = tariff_change.preview(session, account, "Monthly Plus", "next_period", TODAY)
    assert (next_plan.starts_on, next_plan.charged_on_start) == \
        (dt.date(2026, 6, 1), Decimal("800.00"))
    # And that is what the switch and the fee run do: the difference on
    # May 21 (once, however often the switch is applied), 800 in June.
    tariff_change.change(session, account, "Monthly Plus", "now", NOW, TODAY)
    session.commit()
    tomorrow = TODAY + dt.timedelta(days=1)
    assert tariff_change.apply_due(session, tomorrow) == 1
    assert tariff_change.apply_due(session, tomorrow) == 0
    session.commit()
    lines = session.execute(select(LedgerEntry.kind, LedgerEntry.amount,
                                   LedgerEntry.idempotency_key)
                            .where(LedgerEntry.account_id == account.id,
                                   LedgerEntry.kind == "fee")
                            .order_by(LedgerEntry.id)).all()
    assert [(kind, amount) for kind, amount, _ in lines] == [
        ("fee", Decimal("-500.00")), ("fee", Decimal("-106.45"))]
    assert lines[1].idempotency_key.startswith(f"fee-upgrade:{account.id}:2026-05:")
    assert fees.charge_day(session, tomorrow).charged == 0
    assert fees.charge_day(session, dt.date(2026, 6, 1)).charged == 1
    session.refresh(account)
    assert account.balance == Decimal("1000.00") - Decimal("500.00") - Decimal("106.45") \
        - Decimal("800.00")


def test_the_option_check_says_why_before_buying(session):
    options.create_option_type(session, code="turbo", name="Turbo", kind="turbo", price="50")
    options.create_option_type(session, code="gb10", name="10 GB", kind="traffic",
                               price="150", traffic_mb=10_000, duration_hours=720)
    assert [o.code for o in options.on_sale(session)] == ["turbo", "gb10"]
    account = make_account(session, balance="100", credit_limit="49.99")
    assert options.check(session, account, "turbo", NOW).code == "turbo"
    with pytest.raises(DomainError, match="not enough money"):
        options.check(session, account, "gb10", NOW)  # 100 - 150 < -49.99
    account.credit_limit = Decimal("50.00")
    assert options.check(session, account, "gb10", NOW).code == "gb10"  # exactly the limit
    with pytest.raises(DomainError, match="not on sale"):
        options.check(session, account, "nope", NOW)
    options.buy(session, account, "turbo", NOW, request_id="r-1")
    with pytest.raises(DomainError, match="already active"):
        options.check(session, account, "turbo", NOW)
    account.state = "frozen"
    with pytest.raises(DomainError, match="active account"):
        options.check(session, account, "gb10", NOW)


def test_freeze_terms_come_from_the_settings():
    rules = freeze.FreezeRules.from_settings(load_settings(environ={
        "ABONENT_FREEZE_MIN_DAYS": "3", "ABONENT_FREEZE_MAX_DAYS": "30",
        "ABONENT_FREEZE_FEE_PER_DAY": "2.5"}))
    assert rules == freeze.FreezeRules(3, 30, Decimal("2.50"))
    assert rules.first_until(TODAY) == dt.date(2026, 5, 23)
    assert rules.last_until(TODAY) == dt.date(2026, 6, 19)
    defaults = freeze.FreezeRules.from_settings(load_settings(environ={}))
    assert (defaults.min_days, defaults.max_days, defaults.fee_per_day) == \
        (7, 90, Decimal("0.00"))
