"""rating.runout.forecast: the day the money runs out, at the fees an
account pays, checked against the fee run's rules day by day."""

import datetime as dt
import random
from decimal import Decimal

import pytest

from rating import policies
from rating.runout import DiscountTerms, RecurringFee, charge_on, forecast

D = Decimal
TODAY = dt.date(2026, 12, 6)          # December: 31 days
SUSPENDED = frozenset({"suspended"})


def tariff(fee, period="monthly"):
    return RecurringFee(D(fee), period, stops_in=SUSPENDED)


def package(fee, period="monthly", package_id=1):
    return RecurringFee(D(fee), period, target="package", package_id=package_id,
                        stops_in=SUSPENDED)


def by_hand(balance, credit, fees, discounts=(), today=TODAY, days=800,
            ladder=policies.DEFAULT_LADDER):
    """The fee run, one day after another: [(day, new profile)]."""
    profile = policies.decide(balance, credit, ladder)
    steps = []
    for n in range(1, days):
        day = today + dt.timedelta(days=n)
        balance -= charge_on(fees, discounts, day, profile)
        decided = policies.decide(balance, credit, ladder)
        if decided != profile:
            steps.append((day, decided))
            profile = decided
    return steps


def steps_of(result):
    return [(step.day, step.profile) for step in result.steps]


def test_a_daily_fee_runs_out_the_day_its_share_passes_the_balance():
    # 310.00 a month in December: 10.00 a day; 100.00 lasts ten more days.
    result = forecast(balance=D("100.00"), credit_limit=D(0), fees=[tariff("310.00", "daily")],
                      today=TODAY)
    assert result.profile == "normal" and result.needed == 0
    assert result.runs_out_on == dt.date(2026, 12, 17)  # 100 - 11 × 10 < 0
    assert steps_of(result) == [(dt.date(2026, 12, 17), "suspended")]
    assert result.steps[0].balance == D("-10.00")
    assert result.monthly_cost == D("310.00")
    # Exactly zero is still full service: ten days of fees leave 0.00.
    assert forecast(balance=D("99.99"), credit_limit=D(0), fees=[tariff("310.00", "daily")],
                    today=TODAY).runs_out_on == dt.date(2026, 12, 16)


def test_a_monthly_fee_is_taken_on_the_first():
    result = forecast(balance=D("1000.00"), credit_limit=D(0), fees=[tariff("600.00")],
                      today=TODAY)
    # 1 January: 400.00 left; 1 February: -200.00.
    assert result.runs_out_on == dt.date(2027, 2, 1)
    assert result.monthly_cost == D("600.00")  # the fees of a whole month
    early = forecast(balance=D("1000.00"), credit_limit=D(0), fees=[tariff("600.00")],
                     today=dt.date(2026, 11, 30))
    assert early.runs_out_on == dt.date(2027, 1, 1)  # 1 Dec: 400, 1 Jan: -200


def test_packages_add_to_the_tariff():
    fees = [tariff("310.00", "daily"), package("5.00", "daily"), package("100.00", package_id=2)]
    result = forecast(balance=D("200.00"), credit_limit=D(0), fees=fees, today=TODAY)
    # 15.00 a day from 7 December: 13 days take 195.00, the 14th goes below.
    assert result.runs_out_on == dt.date(2026, 12, 20)
    assert steps_of(result) == by_hand(D("200.00"), D(0), fees)[:1]
    # Across the 1st the monthly package counts too.
    late = forecast(balance=D("500.00"), credit_limit=D(0), fees=fees, today=TODAY)
    assert steps_of(late) == by_hand(D("500.00"), D(0), fees)[:1]
    assert late.runs_out_on == dt.date(2027, 1, 2)  # 125.00 on 31 Dec, 1 Jan takes 115.00


def test_a_discount_stretches_the_money_and_its_end_shortens_it():
    fees = [tariff("310.00", "daily")]
    half = DiscountTerms("tariff", D(50), None, dt.date(2026, 12, 1), None)
    with_discount = forecast(balance=D("100.00"), credit_limit=D(0), fees=fees,
                             discounts=[half], today=TODAY)
    assert with_discount.runs_out_on == dt.date(2026, 12, 27)  # 5.00 a day
    assert with_discount.monthly_cost == D("155.00")
    # The same discount ending on 12 December: 5 days at 5.00, then 10.00 a day.
    ending = DiscountTerms("tariff", D(50), None, dt.date(2026, 12, 1), dt.date(2026, 12, 12))
    result = forecast(balance=D("100.00"), credit_limit=D(0), fees=fees, discounts=[ending],
                      today=TODAY)
    assert result.runs_out_on == dt.date(2026, 12, 19)  # 75.00 left on the 11th
    assert steps_of(result) == by_hand(D("100.00"), D(0), fees, [ending])[:1]
    # A discount on a package leaves the tariff's fee alone; a fixed one
    # never exceeds the fee.
    other = DiscountTerms("package", None, D("999.00"), dt.date(2026, 1, 1), None)
    assert forecast(balance=D("100.00"), credit_limit=D(0), fees=fees, discounts=[other],
                    today=TODAY).runs_out_on == dt.date(2026, 12, 17)
    assert charge_on(fees + [package("5.00", "daily")], [other], TODAY, "normal") == D("10.00")


def test_no_fees_means_no_run_out_date():
    for fees in ([], [tariff("0.00")], [tariff("0.00", "daily")]):
        result = forecast(balance=D("10.00"), credit_limit=D(0), fees=fees, today=TODAY)
        assert result.no_fees and result.runs_out_on is None and result.steps == ()
        assert result.monthly_cost == 0


def test_a_large_balance_lasts_beyond_the_horizon():
    result = forecast(balance=D("100000.00"), credit_limit=D(0), fees=[tariff("300.00")],
                      today=TODAY)
    assert result.beyond_horizon and result.runs_out_on is None and not result.no_fees


def test_a_credit_limit_throttles_first_then_suspends():
    fees = [tariff("310.00", "daily")]
    result = forecast(balance=D("20.00"), credit_limit=D("50.00"), fees=fees, today=TODAY)
    assert steps_of(result) == [(dt.date(2026, 12, 9), "throttled"),
                                (dt.date(2026, 12, 14), "suspended")]
    assert [step.mode for step in result.steps] == [policies.THROTTLE, policies.BLOCK]
    assert steps_of(result) == by_hand(D("20.00"), D("50.00"), fees)


def test_a_negative_balance_needs_the_debt_paid_and_says_what_comes_next():
    fees = [tariff("310.00", "daily")]
    throttled = forecast(balance=D("-30.00"), credit_limit=D("50.00"), fees=fees, today=TODAY)
    assert throttled.profile == "throttled" and throttled.needed == D("30.00")
    assert throttled.runs_out_on is None  # full service has ended already
    assert steps_of(throttled) == [(dt.date(2026, 12, 9), "suspended")]
    suspended = forecast(balance=D("-80.50"), credit_limit=D("50.00"), fees=fees, today=TODAY)
    assert suspended.profile == "suspended" and suspended.needed == D("80.50")
    assert suspended.steps == ()  # no fee while suspended: the debt stays
    assert not suspended.charged_now and throttled.charged_now
    # A fee charged while suspended (the tariff's rule) changes nothing ahead:
    # the ladder has no worse rung.
    always = RecurringFee(D("310.00"), "daily")
    charged = forecast(balance=D("-80.50"), credit_limit=D("50.00"), fees=[always],
                       today=TODAY)
    assert charged.steps == () and charged.charged_now


def test_a_custom_ladder_with_a_warning_rung():
    ladder = (policies.Rung("suspended", D(0), past_credit=True, mode=policies.BLOCK),
              policies.Rung("warned", D(50), mode=policies.THROTTLE, rate_kbps=5000))
    fees = [tariff("310.00", "daily")]
    result = forecast(balance=D("70.00"), credit_limit=D(0), fees=fees, today=TODAY,
                      ladder=ladder)
    assert steps_of(result) == [(dt.date(2026, 12, 9), "warned"),
                                (dt.date(2026, 12, 14), "suspended")]
    assert forecast(balance=D("10.00"), credit_limit=D(0), fees=fees, today=TODAY,
                    ladder=ladder).needed == D("40.00")


def test_random_accounts_agree_with_the_day_by_day_run():
    rng = random.Random(15)
    for _ in range(200):
        fees = [tariff(f"{rng.randint(0, 1500)}.{rng.randint(0, 99):02d}",
                       rng.choice(["daily", "monthly"]))]
        for package_id in range(rng.randint(0, 2)):
            fees.append(package(f"{rng.randint(1, 300)}.00", rng.choice(["daily", "monthly"]),
                                package_id))
        discounts = []
        if rng.random() < 0.5:
            start = TODAY + dt.timedelta(days=rng.randint(-10, 60))
            discounts.append(DiscountTerms(
                rng.choice(["tariff", "package"]),
                D(rng.randint(1, 100)) if rng.random() < 0.5 else None,
                None, start, start + dt.timedelta(days=rng.randint(1, 90))))
            if discounts[0].percent is None:
                discounts[0] = DiscountTerms(discounts[0].target, None,
                                             D(f"{rng.randint(1, 50)}.00"),
                                             discounts[0].valid_from, discounts[0].valid_until)
        balance = D(f"{rng.randint(-500, 3000)}.{rng.randint(0, 99):02d}")
        credit = D(rng.choice([0, 0, 100, 300]))
        today = TODAY + dt.timedelta(days=rng.randint(0, 400))
        result = forecast(balance=balance, credit_limit=credit, fees=fees, discounts=discounts,
                          today=today, horizon_days=400)
        expected = [(day, profile) for day, profile in
                    by_hand(balance, credit, fees, discounts, today, days=400)]
        assert steps_of(result) == expected, (balance, credit, fees, discounts, today)


@pytest.mark.parametrize("balance", ["0.00", "-0.01"])
def test_needed_is_what_brings_the_balance_to_the_top_threshold(balance):
    result = forecast(balance=D(balance), credit_limit=D(0), fees=[tariff("100.00")],
                      today=TODAY)
    assert result.needed == (D(0) if balance == "0.00" else D("0.01"))
