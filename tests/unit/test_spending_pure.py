"""Spending limits' pure parts: the month in the operator's zone, the limit's
throttle as an input of desired_profile, figures parsed and written."""

import datetime as dt
from decimal import Decimal

import pytest

from rating import notify_texts, spending
from rating.profile import LIMIT_PROFILE, ActiveOption, TariffSpeeds, desired_profile
from rating.validate import DomainError

NOW = dt.datetime(2026, 12, 15, 12, 0)
UNTIL = dt.datetime(2026, 12, 31, 21, 0)


def want(until, *, rung="normal", tariff=TariffSpeeds(100_000, 50_000, 2_000), options=(),
         now=NOW):
    return desired_profile(state="active", rung=rung, tariff=tariff, options=options, now=now,
                           limit_throttled_until=until)


def test_a_reached_limit_slows_the_line_until_the_month_ends():
    assert want(None).key == "full:100000/50000"
    slowed = want(UNTIL)
    assert (slowed.name, slowed.key, slowed.valid_until) == (LIMIT_PROFILE, "full:2000/2000",
                                                            UNTIL)
    # No slow speed on the tariff: 1 Mbit/s, never above the tariff's own.
    assert want(UNTIL, tariff=TariffSpeeds(100_000, 50_000, 0)).key == "full:1024/1024"
    assert want(UNTIL, tariff=TariffSpeeds(512, 512, 0)).key == "full:512/512"
    assert want(UNTIL, now=UNTIL).key == "full:100000/50000"


def test_the_ladder_still_wins_and_a_turbo_does_not_lift_the_limit():
    turbo = ActiveOption("turbo", "turbo", 2, NOW - dt.timedelta(hours=1),
                         NOW + dt.timedelta(hours=5))
    assert want(UNTIL, options=[turbo]).name == LIMIT_PROFILE
    assert want(UNTIL, rung="suspended").access == "none"


def test_the_month_is_the_operators():
    month = spending.month_of(dt.datetime(2026, 12, 31, 21, 30), "Europe/Moscow")
    assert (month.label, month.start, month.end) == (
        "2027-01", dt.datetime(2026, 12, 31, 21, 0), dt.datetime(2027, 1, 31, 21, 0))
    assert spending.month_of(dt.datetime(2026, 12, 31, 21, 30), "UTC").label == "2026-12"


def test_figures_are_parsed_and_written_per_language():
    assert spending.parse_figure("money", "1 500,5".replace(" ", "")) == (Decimal("1500.50"),
                                                                         None)
    assert spending.parse_figure("traffic", "2,5") == (None, 2_500_000_000)
    for metric, value in (("traffic", "0"), ("traffic", "nan"), ("money", "abc"),
                          ("cpu", "1")):
        with pytest.raises(DomainError):
            spending.parse_figure(metric, value)
    quantity = notify_texts.Quantity(Decimal("1234.50"), "rub")
    assert quantity.text("ru") == "1\u202f234,50 ₽" and quantity.text("en") == "1,234.50 RUB"
    assert notify_texts.Quantity(Decimal("1.60"), "gb").text("ru") == "1,60 ГБ"
