"""How long the money lasts: one pure function over plain values.

``forecast`` answers the overview's "how long": from the balance, the
credit limit, the balance ladder and the fees an account pays (its tariff
by its period, its packages, less its discounts), the days on which the
ladder's verdict will change if nothing is paid — "on DATE the speed
drops", "on DATE the service stops" — and the amount that brings a
restricted account back to full service.

It follows the daily fee run (rating.fees, rating.packages,
rating.promotions) rule for rule:
- the run charges a day's fees once that day has begun; today's are taken
  as charged, so the first day ahead is tomorrow;
- a daily tariff costs its month's fee spread over the month's days
  (rating.tariffs.daily_fee); a daily package costs its fee every day; a
  monthly fee (tariff or package) is charged whole on the 1st;
- a fee is not charged while the account is in a profile that gives no
  service (``RecurringFee.stops_in``): a suspended account's debt does
  not grow, so the forecast ends there;
- a discount valid on the day a fee is charged reduces it (a percent,
  rounded half up, or a fixed amount), never below zero;
- options already bought (turbo, traffic packs) were paid when bought and
  cost nothing ahead.

The answer is computed segment by segment (a month, cut where a discount
starts or ends) in closed form, not day by day: the overview is the
busiest page and a large balance must not cost a loop over years.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal

from rating import policies
from rating.tariffs import daily_fee

CENT = Decimal("0.01")
# How far ahead the forecast looks; beyond it the money "lasts more than
# two years" and no date is given.
HORIZON_DAYS = 731


@dataclass(frozen=True)
class RecurringFee:
    """A fee the fee run charges: the tariff's or a package's."""

    amount: Decimal          # the price of its period (a daily tariff: of the month)
    period: str              # "daily" or "monthly"
    target: str = "tariff"   # "tariff" or "package" (what a discount names)
    package_id: int | None = None
    # The ladder's verdicts under which the run does not charge it.
    stops_in: frozenset[str] = frozenset()

    def price_on(self, day: dt.date) -> Decimal:
        """What the run charges for it on ``day`` (before discounts)."""
        if self.period == "monthly":
            return self.amount if day.day == 1 else Decimal(0)
        if self.target == "tariff":
            return daily_fee(self.amount, day)  # a month's fee spread over its days
        return self.amount


@dataclass(frozen=True)
class DiscountTerms:
    target: str                      # "tariff" or "package"
    percent: Decimal | None
    amount: Decimal | None
    valid_from: dt.date
    valid_until: dt.date | None      # exclusive; None: no end
    package_id: int | None = None    # a package discount on one package only

    def valid_on(self, day: dt.date) -> bool:
        return self.valid_from <= day and (self.valid_until is None or day < self.valid_until)

    def applies_to(self, fee: RecurringFee) -> bool:
        return self.target == fee.target and (self.package_id is None
                                              or self.package_id == fee.package_id)


@dataclass(frozen=True)
class Step:
    """The ladder's verdict changes on ``day`` (after that day's fees)."""

    day: dt.date
    profile: str
    mode: str          # policies.THROTTLE / REDIRECT / BLOCK
    balance: Decimal   # the balance that day


@dataclass(frozen=True)
class Forecast:
    profile: str                 # the ladder's verdict for the balance now
    needed: Decimal              # the least payment that gives full service again
    monthly_cost: Decimal        # this month's fees at today's prices and discounts
    steps: tuple[Step, ...] = field(default=())  # what happens next, soonest first
    no_fees: bool = False        # nothing is charged: the money never runs out
    beyond_horizon: bool = False  # the money lasts past HORIZON_DAYS
    # Whether fees are charged in the profile now (a suspension stops them,
    # unless the tariff says otherwise): does a debt still grow?
    charged_now: bool = True

    @property
    def runs_out_on(self) -> dt.date | None:
        """The day full service ends, if it is still on and ends within the horizon."""
        if self.profile != "normal" or not self.steps:
            return None
        return self.steps[0].day


def charge_on(fees, discounts, day: dt.date, profile: str) -> Decimal:
    """What the fee run takes on ``day`` from an account in ``profile``."""
    total = Decimal(0)
    for fee in fees:
        if profile in fee.stops_in:
            continue
        price = fee.price_on(day)
        if price <= 0:
            continue
        off = Decimal(0)
        for discount in discounts:
            if discount.applies_to(fee) and discount.valid_on(day):
                if discount.percent is not None:
                    off += (price * discount.percent / 100).quantize(CENT, ROUND_HALF_UP)
                else:
                    off += min(discount.amount, price)
        total += price - min(off, price)
    return total


def _month_start(day: dt.date) -> dt.date:
    return day.replace(day=1)


def _next_month(day: dt.date) -> dt.date:
    return (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def _segments(start: dt.date, end: dt.date, discounts):
    """[from, to) ranges inside one month each, cut where a discount starts
    or ends: within one, every day but the 1st costs the same."""
    cuts = {d for discount in discounts for d in (discount.valid_from, discount.valid_until)
            if d is not None and start < d < end}
    day = start
    while day < end:
        limit = min([_next_month(day), end] + [c for c in cuts if c > day])
        yield day, limit
        day = limit


def _crossing(balance: Decimal, threshold: Decimal, start: dt.date, end: dt.date, fees,
              discounts, profile: str) -> tuple[dt.date, Decimal] | None:
    """The first day in [start, end) after whose fees the balance is below
    ``threshold``, and the balance then; None if it stays at or above."""
    for first, limit in _segments(start, end, discounts):
        # The first day of a segment may be a 1st (monthly fees); the rest
        # of it costs ``per_day`` each.
        balance -= charge_on(fees, discounts, first, profile)
        if balance < threshold:
            return first, balance
        days = (limit - first).days - 1
        if days <= 0:
            continue
        per_day = charge_on(fees, discounts, first + dt.timedelta(days=1), profile)
        if per_day <= 0:
            continue
        if balance - per_day * days < threshold:
            # The k-th day is the first with balance - k * per_day < threshold.
            k = int(((balance - threshold) / per_day).to_integral_value(ROUND_FLOOR)) + 1
            return first + dt.timedelta(days=k), balance - per_day * k
        balance -= per_day * days
    return None


def month_cost(fees, discounts, day: dt.date) -> Decimal:
    """The fees of ``day``'s month in full service, discounts included."""
    total = Decimal(0)
    month = _month_start(day)
    for first, limit in _segments(month, _next_month(month), discounts):
        total += charge_on(fees, discounts, first, "normal")
        days = (limit - first).days - 1
        if days > 0:
            total += charge_on(fees, discounts, first + dt.timedelta(days=1), "normal") * days
    return total


def forecast(*, balance: Decimal, credit_limit: Decimal, fees, discounts=(),
             today: dt.date, ladder: tuple[policies.Rung, ...] = policies.DEFAULT_LADDER,
             horizon_days: int = HORIZON_DAYS) -> Forecast:
    """What happens to an account if nothing is paid, from ``today`` (the
    operator's local day, its fees already charged) on."""
    fees = tuple(fee for fee in fees if fee.amount > 0)
    discounts = tuple(discounts)
    profile = now_profile = policies.decide(balance, credit_limit, ladder)
    top = max(rung.threshold(credit_limit) for rung in ladder) if ladder else Decimal(0)
    needed = max(Decimal(0), top - balance).quantize(CENT, ROUND_CEILING)
    monthly_cost = month_cost(fees, discounts, today)
    if not fees:
        return Forecast(now_profile, needed, monthly_cost, no_fees=True, charged_now=False)
    charged_now = any(now_profile not in fee.stops_in for fee in fees)
    modes = {rung.profile: rung.mode for rung in ladder}
    thresholds = sorted({rung.threshold(credit_limit) for rung in ladder}, reverse=True)
    start = today + dt.timedelta(days=1)
    end = today + dt.timedelta(days=horizon_days)
    steps = []
    while start < end:
        below = [t for t in thresholds if t <= balance]
        if not below or all(profile in fee.stops_in for fee in fees):
            break  # the worst rung already, or nothing is charged any more
        found = _crossing(balance, below[0], start, end, fees, discounts, profile)
        if found is None:
            return Forecast(now_profile, needed, monthly_cost, tuple(steps),
                            beyond_horizon=True, charged_now=charged_now)
        day, balance = found
        profile = policies.decide(balance, credit_limit, ladder)
        steps.append(Step(day, profile, modes.get(profile, policies.BLOCK), balance))
        start = day + dt.timedelta(days=1)
    return Forecast(now_profile, needed, monthly_cost, tuple(steps), charged_now=charged_now)
