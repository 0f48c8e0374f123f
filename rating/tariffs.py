"""Pure tariff arithmetic over plain values: what a day of a tariff costs.

``Tariff.fee`` is the price of a month. With ``fee_period = "daily"`` it is
spread over the days of the month (pro-rata on start, change and close
fall out of charging day by day); with ``"monthly"`` it is charged whole
once a month, on the first day the account is active in it.
"""

from __future__ import annotations

import calendar
import datetime as dt
from decimal import ROUND_HALF_UP, Decimal

from config.db import MONEY_SCALE

_QUANTUM = Decimal(1).scaleb(-MONEY_SCALE)


def days_in_month(day: dt.date) -> int:
    return calendar.monthrange(day.year, day.month)[1]


def daily_fee(monthly_fee: Decimal, day: dt.date) -> Decimal:
    """The charge for one day of a month-priced tariff, rounded half up."""
    return (monthly_fee / days_in_month(day)).quantize(_QUANTUM, rounding=ROUND_HALF_UP)


def fee_key(account_id: int, period: str, day: dt.date) -> str:
    """The idempotency key of a fee: one per account and day (or month)."""
    if period == "daily":
        return f"fee:{account_id}:{day.isoformat()}"
    return f"fee:{account_id}:{day:%Y-%m}"


def fee_for(monthly_fee: Decimal, period: str, day: dt.date) -> Decimal:
    return daily_fee(monthly_fee, day) if period == "daily" else monthly_fee


def upgrade_difference(old_fee: Decimal, new_fee: Decimal, starts_on: dt.date) -> Decimal:
    """A switch "now" to a dearer monthly tariff after the month's fee was
    charged at the old one: the difference for the days left in the month,
    the start day included, rounded half up. A cheaper tariff refunds
    nothing (its fee starts with the next month)."""
    if new_fee <= old_fee:
        return Decimal("0.00")
    days = days_in_month(starts_on)
    left = days - starts_on.day + 1
    return ((new_fee - old_fee) * left / days).quantize(_QUANTUM, rounding=ROUND_HALF_UP)


def upgrade_key(account_id: int, starts_on: dt.date, tariff_id: int) -> str:
    return f"fee-upgrade:{account_id}:{starts_on:%Y-%m}:{tariff_id}"
