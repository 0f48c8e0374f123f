from decimal import Decimal

import pytest

from rating import policies
from rating.tariffs import daily_fee, fee_key
import datetime as dt


@pytest.mark.parametrize("balance, credit, expected", [
    ("10", "0", "normal"), ("0", "0", "normal"), ("-0.01", "0", "suspended"),
    ("-0.01", "100", "throttled"), ("-100", "100", "throttled"), ("-100.01", "100", "suspended"),
])
def test_ladder(balance, credit, expected):
    assert policies.decide(Decimal(balance), Decimal(credit)) == expected


def test_a_custom_ladder_warns_before_zero():
    ladder = (policies.Rung("suspended", Decimal("0"), past_credit=True),
              policies.Rung("throttled", Decimal("0")),
              policies.Rung("warned", Decimal("50")))
    assert policies.decide(Decimal("49.99"), Decimal("0"), ladder) == "warned"
    assert policies.decide(Decimal("50"), Decimal("0"), ladder) == "normal"


def test_daily_fee_rounds_half_up_per_month_length():
    assert daily_fee(Decimal("100.00"), dt.date(2026, 2, 1)) == Decimal("3.57")
    assert daily_fee(Decimal("310.00"), dt.date(2026, 1, 1)) == Decimal("10.00")
    assert daily_fee(Decimal("0.45"), dt.date(2026, 1, 1)) == Decimal("0.01")
    assert fee_key(5, "daily", dt.date(2026, 1, 2)) == "fee:5:2026-01-02"
    assert fee_key(5, "monthly", dt.date(2026, 1, 2)) == "fee:5:2026-01"
