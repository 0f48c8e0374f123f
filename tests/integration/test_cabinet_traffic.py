"""The traffic pages on SQLite and PostgreSQL through the Flask test client:
a day's channel load per 5-minute interval against the rollups inserted,
month names and navigation that stops at the current month, today's totals
on the overview equal to the day's graph, and sessions' traffic cost
against the hourly charges in the ledger. Russian and English."""

from __future__ import annotations

import datetime as dt
import html
import re
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from cabinet import periods
from collector.models import TrafficRollup
from config.db import utcnow
from rating import traffic
from rating.accounts import create_cabinet_user
from rating.models import LedgerEntry
from tests.factories import make_account, make_tariff
from tests.integration.cabinet_helpers import (  # noqa: F401 (fixtures)
    Subscriber, app, cabinet_ctx, client, csrf_token, log_in, logged_in, seed_network_session,
    seed_subscriber)

ZONE = ZoneInfo("Europe/Moscow")  # the settings' default time zone
GB = 10 ** 9


@pytest.fixture
def subscriber(cabinet_ctx):
    return seed_subscriber(cabinet_ctx, balance="500")


def _rollups(ctx, account_id, rows):
    """rows: (interval start UTC, class, direction, bytes, source)."""
    with ctx.Session() as session:
        for start, traffic_class, direction, octets, source in rows:
            session.add(TrafficRollup(account_id=account_id, interval_start=start,
                                      traffic_class=traffic_class, direction=direction,
                                      bytes=octets, packets=1, source=source))
        session.commit()


def _to_ru(client, path):
    client.post("/lang", data={"lang": "ru", "next": path,
                               "csrf_token": csrf_token(client.get(path).text)})


# -- a day's channel load ----------------------------------------------------------

# 2026-11-03 in Moscow (UTC+3) is 2026-11-02 21:00 .. 2026-11-03 21:00 UTC.
DAY_START = dt.datetime(2026, 11, 2, 21, 0)
LOAD = [
    # 12:00 local: internet both ways and some local traffic down.
    (dt.datetime(2026, 11, 3, 9, 0), "internet", "in", 375_000_000, "netflow"),
    (dt.datetime(2026, 11, 3, 9, 0), "internet", "out", 37_500_000, "netflow"),
    (dt.datetime(2026, 11, 3, 9, 0), "local", "in", 7_500_000, "netflow"),
    # 12:05 local: internet down only.
    (dt.datetime(2026, 11, 3, 9, 5), "internet", "in", 123_457, "netflow"),
    # 23:55 local, the day's last interval.
    (dt.datetime(2026, 11, 3, 20, 55), "internet", "in", 1_000, "netflow"),
    # The next local day: not this day's.
    (dt.datetime(2026, 11, 3, 21, 0), "internet", "in", 999_000_000, "netflow"),
    # The same traffic as RADIUS counted it: never added to NetFlow's.
    (dt.datetime(2026, 11, 3, 9, 0), "internet", "in", 375_000_000, "radius"),
]


def _load_table(page):
    """{(interval UTC, class, direction): bit/s} from the page's table."""
    figures = {}
    for start, row in re.findall(r'<tr data-interval="([^"]+)">(.*?)</tr>', page, re.S):
        for code, direction, bps in re.findall(
                r'data-class="([^"]+)" data-direction="([^"]+)" data-bps="(\d+)"', row):
            figures[(start, code, direction)] = int(bps)
    return figures


def test_the_day_shows_each_intervals_load_by_class(logged_in, cabinet_ctx, subscriber):
    _rollups(cabinet_ctx, subscriber.account_id, LOAD)
    response = logged_in.get("/traffic/day?day=2026-11-03")
    assert response.status_code == 200
    page = response.text
    assert "<h1>Channel load on November 3, 2026</h1>" in page
    figures = _load_table(page)
    # bit/s = octets x 8 / 300 s, rounded: per interval, class and direction.
    assert figures[("2026-11-03T09:00", "internet", "in")] == 10_000_000
    assert figures[("2026-11-03T09:00", "internet", "out")] == 1_000_000
    assert figures[("2026-11-03T09:00", "local", "in")] == 200_000
    assert figures[("2026-11-03T09:00", "local", "out")] == 0
    assert figures[("2026-11-03T09:05", "internet", "in")] == 3292  # 3292.18...
    assert figures[("2026-11-03T20:55", "internet", "in")] == 27
    assert {start for start, _c, _d in figures} == {"2026-11-03T09:00", "2026-11-03T09:05",
                                                    "2026-11-03T20:55"}
    # The row's local time and the figure as read.
    row = re.search(r'<tr data-interval="2026-11-03T09:00">(.*?)</tr>', page, re.S).group(1)
    assert "12:00–12:05" in row and ">10 Mbit/s<" in row and ">200 kbit/s<" in row
    assert "Internet" in page and "Local network" in page
    # The graph: a slot per interval of the local day, the busy ones drawn,
    # heights in proportion to the load on one scale.
    svg = re.search(r'<svg class="chart.*?</svg>', page, re.S).group(0)
    assert 'role="img"' in svg and "<title>Channel load on November 3, 2026</title>" in svg
    busy = re.findall(r'<g data-interval="(\d+)">', svg)
    assert busy == ["144", "145", "287"]  # 12:00, 12:05 and 23:55 local
    rects = re.search(r'<g data-interval="144">(.*?)</g>', svg).group(1)
    by_class = {css: float(h) for css, h in re.findall(
        r'<rect class="([^"]+)" [^>]*height="([\d.]+)"', rects)}
    assert set(by_class) == {"c0", "c1", "c0 out"}  # internet down, local down, internet up
    assert by_class["c0"] == pytest.approx(10 * by_class["c0 out"], rel=0.01)
    assert by_class["c0"] == pytest.approx(50 * by_class["c1"], rel=0.01)
    # Totals of the local day, NetFlow only; the peak is the busiest interval.
    assert re.search(r'data-test="day-down">382.6 MB<', page)
    assert re.search(r'data-test="day-up">37.5 MB<', page)
    assert re.search(r'data-test="peak-down">10.2 Mbit/s<', page)
    # Navigation: the day before, the month, the day after.
    assert 'href="?day=2026-11-02"' in page and 'href="?day=2026-11-04"' in page
    assert "/traffic?month=2026-11" in page


def test_the_day_page_in_russian(logged_in, cabinet_ctx, subscriber):
    _rollups(cabinet_ctx, subscriber.account_id, LOAD)
    _to_ru(logged_in, "/traffic/day?day=2026-11-03")
    page = logged_in.get("/traffic/day?day=2026-11-03").text
    # babel puts a narrow no-break space before "г."
    assert re.search(r"<h1>.*?</h1>", page).group(0) == \
        "<h1>Загрузка канала 3 ноября 2026\u202fг.</h1>"
    row = re.search(r'<tr data-interval="2026-11-03T09:00">(.*?)</tr>', page, re.S).group(1)
    assert ">10 Мбит/с<" in row and ">200 кбит/с<" in row
    assert "Интернет" in page and "Локальная сеть" in page
    assert "ноябрь 2026" in page
    assert _load_table(page)[("2026-11-03T09:05", "internet", "in")] == 3292


def test_a_day_without_traffic_says_so(logged_in, cabinet_ctx, subscriber):
    page = logged_in.get("/traffic/day?day=2026-11-03").text
    assert 'data-test="no-traffic"' in page and '<svg class="chart' not in page


@pytest.mark.parametrize("path, message", [
    ("/traffic/day?day=garbage", "A date must look like 2026-11-23"),
    ("/traffic/day?day=2099-01-01", "This day has not begun yet"),
    ("/traffic?month=2099-01", "This month has not begun yet"),
    ("/traffic?month=11-2026", "A month must look like 2026-11"),
    ("/sessions?month=2099-01", "This month has not begun yet"),
    # Year 1 in Moscow begins before datetime's range: refused, not a 500.
    ("/traffic?month=0001-01", "A period must lie between the years 1970 and 2999"),
    ("/traffic/day?day=0001-01-01", "A period must lie between the years 1970 and 2999"),
    ("/sessions?month=0001-02", "A period must lie between the years 1970 and 2999"),
])
def test_bad_or_future_periods_are_refused(logged_in, path, message):
    response = logged_in.get(path)
    assert response.status_code == 400
    assert message in html.unescape(response.text)


# -- the month ---------------------------------------------------------------------

def test_months_are_named_and_the_next_month_stops_at_today(logged_in, cabinet_ctx,
                                                             subscriber):
    _rollups(cabinet_ctx, subscriber.account_id, LOAD)
    page = logged_in.get("/traffic?month=2026-11").text
    assert re.search(r'data-test="month">November 2026<', page)
    assert re.search(r'data-test="previous-month">← October 2026<', page)
    assert 'href="?month=2026-12"' in page  # this month had begun when written
    # Each day with traffic links to its day view.
    assert page.count('href="/traffic/day?day=2026-11-03"') == 1
    assert re.search(r'<tr data-day="2026-11-04">.*?999\.0 MB', page, re.S)
    assert 'data-day="2026-11-05"' in page and '<tr data-day="2026-11-05"' not in page

    today = periods.local_today("Europe/Moscow")
    current = logged_in.get("/traffic").text
    assert 'data-test="next-month"' not in current
    previous = periods.shift_month(today.replace(day=1), -1)
    assert f'href="?month={previous}"' in current
    # The current month's bars end today.
    assert f'data-day="{today.isoformat()}"' in current
    assert f'data-day="{(today + dt.timedelta(days=1)).isoformat()}"' not in current
    sessions = logged_in.get("/sessions").text
    assert 'data-test="next-month"' not in sessions

    _to_ru(logged_in, "/traffic?month=2026-11")
    page = logged_in.get("/traffic?month=2026-11").text
    assert re.search(r'data-test="month">ноябрь 2026\u202fг\.<', page)
    assert re.search(r'data-test="previous-month">← октябрь 2026\u202fг\.<', page)


# -- the overview and the day's graph agree -------------------------------------------

def test_the_overview_shows_todays_totals_of_the_days_graph(logged_in, cabinet_ctx,
                                                           subscriber):
    now = utcnow()
    today = periods.local_today("Europe/Moscow")
    day = periods.days(today, today, "Europe/Moscow")
    newest = now - dt.timedelta(minutes=15)
    newest = max(day.start_utc, newest.replace(minute=newest.minute - newest.minute % 5,
                                               second=0, microsecond=0))
    _rollups(cabinet_ctx, subscriber.account_id, [
        # Another class, so the rows differ even when both are at midnight.
        (day.start_utc, "local", "in", 200_000_000, "netflow"),
        (newest, "internet", "in", 133_000_000, "netflow"),
        (newest, "internet", "out", 20_000_000, "netflow"),
        (newest, "internet", "in", 999_000_000, "radius"),
        (day.start_utc - dt.timedelta(minutes=5), "internet", "in", 5 * GB, "netflow"),
    ])
    overview = logged_in.get("/").text
    assert re.search(r'data-test="today-down">333.0 MB<', overview)
    assert re.search(r'data-test="today-up">20.0 MB<', overview)
    graph = logged_in.get(f"/traffic/day?day={today.isoformat()}").text
    assert re.search(r'data-test="day-down">333.0 MB<', graph)
    assert re.search(r'data-test="day-up">20.0 MB<', graph)
    shown = re.search(r'data-test="traffic-updated">Last updated: ([^<]+)<', overview).group(1)
    assert shown == re.search(r'data-test="traffic-updated">Last updated: ([^<]+)<',
                              graph).group(1)
    end = newest + dt.timedelta(minutes=5)
    if end <= now:  # else the newest interval is still running: "now"
        local = end.replace(tzinfo=dt.timezone.utc).astimezone(ZONE)
        assert shown.endswith(local.strftime("%-I:%M\u202f%p")), shown
        assert "." not in shown
    _to_ru(logged_in, "/")
    overview = logged_in.get("/").text
    assert "Трафик сегодня" in overview and "Обновлено" in overview


# -- sessions and what they cost ---------------------------------------------------------

def _priced_subscriber(ctx, **tariff) -> Subscriber:
    with ctx.Session() as session:
        plan = make_tariff(session, **tariff)
        account = make_account(session, balance="1000", tariff=plan.name)
        create_cabinet_user(session, account, login=f"priced{account.id}",
                            password="correct-horse-1")
        session.commit()
        return Subscriber(account.id, account.number, f"priced{account.id}",
                          "correct-horse-1")


def _cost_cells(page):
    return [Decimal(c.replace(",", "")) for c in re.findall(
        r'data-test="session-cost">₽([\d,.]+)<', page)]


def test_sessions_cost_their_share_of_the_hourly_charges(client, cabinet_ctx):
    payer = _priced_subscriber(cabinet_ctx, price_per_gb="2.00")
    hour = dt.datetime(2026, 11, 3, 10)
    _rollups(cabinet_ctx, payer.account_id, [
        (hour, "internet", "in", 1 * GB, "radius"),                       # 2.00
        (hour + dt.timedelta(hours=1), "internet", "in", 3 * GB, "radius"),  # 6.00
        (hour + dt.timedelta(hours=2, minutes=5), "internet", "in", GB // 2, "radius"),  # 1.00
    ])
    with cabinet_ctx.Session() as session:
        for back in range(3):
            traffic.charge_hour(session, hour + dt.timedelta(hours=back), "Europe/Moscow")
        session.commit()
    # Late flows for 11:00: an adjustment of 1.00 under the hour's ":r1" key.
    _rollups(cabinet_ctx, payer.account_id, [
        (hour + dt.timedelta(hours=1, minutes=30), "internet", "in", GB // 2, "radius")])
    with cabinet_ctx.Session() as session:
        traffic.charge_hour(session, hour + dt.timedelta(hours=1), "Europe/Moscow")
        session.commit()
        ledger_total = -session.scalar(select(func.sum(LedgerEntry.amount)).where(
            LedgerEntry.account_id == payer.account_id, LedgerEntry.kind == "traffic"))
    assert ledger_total == Decimal("10.00")
    # The first session has 10:00 and a third of 11:00; the second the rest
    # of 11:00 and 12:00 (newest first on the page).
    seed_network_session(cabinet_ctx, payer.account_id, framed_ip="10.0.0.2",
                         started_at=dt.datetime(2026, 11, 3, 9, 30),
                         stopped_at=dt.datetime(2026, 11, 3, 11, 20))
    seed_network_session(cabinet_ctx, payer.account_id, framed_ip="10.0.0.3",
                         started_at=dt.datetime(2026, 11, 3, 11, 20),
                         stopped_at=dt.datetime(2026, 11, 3, 12, 40))
    assert log_in(client, payer.login, payer.password, lang="en").status_code == 302
    page = client.get("/sessions?month=2026-11").text
    assert "Traffic cost" in page and 'data-test="cost-note"' in page
    assert _cost_cells(page) == [Decimal("5.67"), Decimal("4.33")]
    assert sum(_cost_cells(page)) == ledger_total
    assert re.search(r'data-test="sessions-cost">₽10.00<', page)
    _to_ru(client, "/sessions?month=2026-11")
    page = client.get("/sessions?month=2026-11").text
    assert "Стоимость трафика" in page
    assert re.findall(r'data-test="session-cost">([^<]+)<', page) == ["5,67\u00a0₽", "4,33\u00a0₽"]


def test_sessions_show_no_cost_where_traffic_is_unpriced(logged_in, cabinet_ctx, subscriber):
    seed_network_session(cabinet_ctx, subscriber.account_id, framed_ip="10.0.0.9",
                         started_at=dt.datetime(2026, 11, 3, 9, 30),
                         stopped_at=dt.datetime(2026, 11, 3, 11, 20), octets_out=GB)
    page = logged_in.get("/sessions?month=2026-11").text
    assert "10.0.0.9" in page
    assert "Traffic cost" not in page and 'data-test="session-cost"' not in page
