"""Pure parts of the traffic pages: a session's share of the hourly traffic
charges, and the channel-load graph's geometry."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest

from cabinet import charts
from rating.traffic import _shares, session_costs

HOUR = dt.datetime(2026, 11, 3, 10)


def _at(hours: float) -> dt.datetime:
    return HOUR + dt.timedelta(hours=hours)


@pytest.mark.parametrize("amount, weights", [
    (Decimal("1.00"), [1, 1, 1]), (Decimal("0.01"), [1, 1]), (Decimal("10.07"), [5, 3, 2]),
    (Decimal("-0.05"), [1, 3]), (Decimal("0"), [1, 2]),
])
def test_shares_add_up_to_the_amount_to_the_kopeck(amount, weights):
    shares = _shares(amount, weights)
    assert sum(shares) == amount
    assert all(share.as_tuple().exponent == -2 for share in shares)


def test_one_session_gets_each_hour_it_covers():
    charges = {_at(0): Decimal("2.00"), _at(1): Decimal("6.00"), _at(5): Decimal("9.99")}
    costs = session_costs(charges, [(_at(-0.5), _at(1.5))], now=_at(10))
    # The hour at 15:00 had no session (traffic on a static address): nobody's.
    assert costs == [Decimal("8.00")]


def test_an_hour_two_sessions_share_is_split_by_time():
    charges = {_at(1): Decimal("6.00")}
    first, second = (_at(0), _at(1 + 20 / 60)), (_at(1 + 20 / 60), None)
    assert session_costs(charges, [first, second], now=_at(3)) == [Decimal("2.00"),
                                                                    Decimal("4.00")]
    # A session still open counts until now, not until the hour's end.
    assert session_costs(charges, [first, second], now=_at(1 + 30 / 60)) == [
        Decimal("4.00"), Decimal("2.00")]


def test_the_load_graph_draws_busy_intervals_on_one_scale():
    down = [[0, 0] for _ in range(288)]
    up = [[0, 0] for _ in range(288)]
    down[10] = [8_000_000, 2_000_000]
    up[10] = [1_000_000, 0]
    down[200] = [5_000_000, 0]
    svg = charts.load_graph(288, down, up, title="Load <day>", ticks={0: "00", 144: "12"},
                            format_rate=lambda bps: f"{bps} bit/s", label_down="Down",
                            label_up="Up")
    assert "<title>Load &lt;day&gt;</title>" in svg  # escaped
    assert re.findall(r'<g data-interval="(\d+)">', svg) == ["10", "200"]
    assert "↓ 10000000 bit/s" in svg and "↑ 10000000 bit/s" in svg  # one scale, both ways
    group = re.search(r'<g data-interval="10">(.*?)</g>', svg).group(1)
    rects = {css: (float(y), float(h)) for css, y, h in re.findall(
        r'<rect class="([^"]+)" x="[^"]+" y="([^"]+)" width="[^"]+" height="([^"]+)"', group)}
    half = (charts.LOAD_HEIGHT - charts.TOP - charts.BOTTOM) / 2
    middle = charts.TOP + half
    # Download stacks up from the middle line, upload hangs below it.
    assert rects["c0"] == pytest.approx((middle - 0.8 * half, 0.8 * half))
    assert rects["c1"] == pytest.approx((middle - half, 0.2 * half))
    assert rects["c0 out"] == pytest.approx((middle, 0.1 * half))
    assert svg.count(">12</text>") == 1
