"""Turbo bought, applied through the profile outbox, expired back."""

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from rating import cabinet_ops, fees, ledger, options
from rating.accounts import DomainError
from rating.models import AccountOption, LedgerEntry, ProfileChange
from tests.factories import make_account

NOW = dt.datetime(2026, 5, 10, 12, 0)


@pytest.fixture
def turbo(session):
    return options.create_option_type(session, code="turbo", name="Turbo x2", kind="turbo",
                                      price="50.00", duration_hours=24, rate_multiplier=2)


def profile_changes(session):
    return [(c.profile, c.reason) for c in
            session.scalars(select(ProfileChange).order_by(ProfileChange.id))]


def test_turbo_is_bought_once_per_request_and_expires_back(session, turbo):
    account = make_account(session, balance="120")
    first = options.buy(session, account, "turbo", NOW, request_id="form-1")
    again = options.buy(session, account, "turbo", NOW, request_id="form-1")
    session.commit()
    assert first.created and not again.created and again.entry_id == first.entry_id
    session.refresh(account)
    # The turbo stacks on the ladder's verdict; it is not a profile itself.
    assert account.balance == Decimal("70.00") and account.profile == "normal"
    assert cabinet_ops.speed_now(session, account, NOW).profile == "turbo"
    with pytest.raises(DomainError, match="already active"):
        options.buy(session, account, "turbo", NOW, request_id="form-2")
    assert options.expire(session, NOW + dt.timedelta(hours=23)) == 0
    assert options.expire(session, NOW + dt.timedelta(hours=24)) == 1
    session.commit()
    session.refresh(account)
    assert account.profile == "normal"
    assert profile_changes(session) == [("normal", "option:turbo"), ("normal", "option:expired")]
    assert ledger.balance_mismatches(session) == []


def test_turbo_cannot_be_bought_past_the_credit_limit(session, turbo):
    account = make_account(session, balance="49.99")
    with pytest.raises(DomainError, match="not enough money"):
        options.buy(session, account, "turbo", NOW, request_id="r")
    session.commit()
    assert session.scalar(select(func.count()).select_from(AccountOption)) == 0
    assert session.scalar(select(func.count()).select_from(LedgerEntry)
                          .where(LedgerEntry.kind == "option")) == 0


def test_negative_balance_overrides_turbo_and_expiry_keeps_the_throttle(session, turbo):
    account = make_account(session, balance="50", credit_limit="100")
    options.buy(session, account, "turbo", NOW, request_id="r")
    ledger.post(session, account_id=account.id, amount="-10", kind="traffic", key="t", author="t")
    fees.apply_policies(session)
    session.commit()
    session.refresh(account)
    assert account.profile == "throttled"
    options.expire(session, NOW + dt.timedelta(days=2))
    session.commit()
    session.refresh(account)
    assert account.profile == "throttled"


def test_speed_now_is_the_turbos_even_with_a_longer_traffic_pack_beside_it(session, turbo):
    """A traffic pack is not a turbo: the page shows the turbo's speed and its end."""
    from cabinet import queries
    from rating import cabinet_ops

    options.create_option_type(session, code="pack", name="10 GB", kind="traffic",
                               price="30.00", duration_hours=24 * 30, traffic_mb=10_000)
    account = make_account(session, balance="500")
    bought = options.buy(session, account, "turbo", NOW, request_id="t")
    options.buy(session, account, "pack", NOW, request_id="p")
    session.commit()
    later = NOW + dt.timedelta(hours=1)
    tariff = account.tariff
    speed = cabinet_ops.speed_now(session, account, later)
    assert speed.profile == "turbo" and speed.until == bought.ends_at
    assert speed.rate_down_kbps == 2 * tariff.rate_down_kbps
    # The dashboard's pure path over the options it lists says the same.
    listed = queries.active_options(session, account.id, later)
    assert {o.kind for o in listed} == {"turbo", "traffic"}
    assert cabinet_ops.speed_with_options(
        account.profile, tariff.rate_down_kbps, tariff.rate_up_kbps,
        tariff.negative_rate_kbps, listed, later) == speed
