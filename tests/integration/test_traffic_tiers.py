"""Traffic tiers (collector.tiers): 5-minute rows move to hourly and daily
rows; every reader's figures stay the same; late rows count once; the
PostgreSQL partitions are made ahead and dropped."""

import datetime as dt
import json
import threading

import pytest
from sqlalchemy import func, select, text

from cabinet import queries, traffic_reads
from collector import tiers
from collector.flush import upsert_rows
from collector.models import (TrafficRollup, TrafficRollupDaily, TrafficRollupDetail,
                              TrafficRollupHourly)
from rating import reports, spending, traffic
from tests.conftest import make_context
from tests.factories import make_account

TZ = "Europe/Moscow"
NOW = dt.datetime(2026, 12, 20, 12, 0)
FIRST = dt.datetime(2026, 9, 28, 0, 0)
# Days summed into hours after 3 days, their 5-minute rows kept for the day
# graph 10 days, hourly rows for 1 month, then the operator's days.
RETENTION = tiers.Retention(five_minute_days=10, hourly_after_days=3, hourly_months=1,
                            timezone=TZ)


def _rows(account_id: int, step_minutes: int = 115, scale: int = 1):
    rows, moment, n = [], FIRST, 0
    while moment < NOW:
        for traffic_class in ("internet", "local"):
            for direction in ("in", "out"):
                n += 1
                rows.append(dict(account_id=account_id, interval_start=moment,
                                 traffic_class=traffic_class, direction=direction,
                                 bytes=(n * 7919 % 100_003) * scale, packets=n % 97 + 1,
                                 source="netflow"))
        moment += dt.timedelta(minutes=step_minutes)
    return rows


@pytest.fixture
def seeded(ctx):
    with ctx.Session() as session:
        first = make_account(session)
        second = make_account(session)
        session.commit()
        ids = (first.id, second.id)
        upsert_rows(session, _rows(first.id) + _rows(second.id, step_minutes=290, scale=3))
        session.commit()
    return ids


def _snapshot(ctx):
    with ctx.engine.connect() as connection:
        return {model.__tablename__: sorted(
            tuple(row) for row in connection.execute(select(*model.__table__.columns)))
            for model in (TrafficRollup, TrafficRollupDetail, TrafficRollupHourly,
                          TrafficRollupDaily)}


def _readers(ctx, account_id: int) -> dict:
    """Every reader's figures for the account (and the all-accounts totals)."""
    figures = {}
    with ctx.Session() as session:
        for label in ("2026-09", "2026-10", "2026-11", "2026-12"):
            month = reports.month(label, TZ)
            figures[f"cabinet-month-{label}"] = queries.daily_traffic(
                session, account_id, month.start, month.end, TZ)
            for by in ("class", "day"):
                figures[f"report-{by}-{label}"] = reports.traffic(session, account_id, month, by)
            figures[f"spending-{label}"] = spending.traffic_bytes(session, month.start,
                                                                  month.end)
        for day in ("2026-10-05", "2026-11-19", "2026-11-20", "2026-12-01", "2026-12-10",
                    "2026-12-11", "2026-12-16", "2026-12-17", "2026-12-19"):
            start = reports.moment(day, "day", TZ)
            end = reports.moment(day, "day", TZ, end=True)
            series = traffic_reads.load_series(session, account_id, start, end)
            figures[f"day-{day}"] = (series.total("in"), series.total("out"),
                                     {c: series.class_total(c, "in") for c in series.classes})
            if day in ("2026-12-11", "2026-12-16", "2026-12-17", "2026-12-19"):
                # Drawn at 5 minutes before and after (the detail tier).
                figures[f"bars-{day}"] = dict(series.octets)
            summary = traffic_reads.summary(session, account_id, start, end)
            figures[f"summary-{day}"] = (summary.octets_down, summary.octets_up)
        hour = dt.datetime(2026, 12, 10, 9, 0)
        figures["rating-hour"] = sorted(
            (a, c, int(v)) for a, _t, c, v in traffic._usage(
                session, [account_id], hour, hour + dt.timedelta(hours=1), ("in", "out"),
                "netflow"))
        figures["rating-month-before"] = sum(
            int(v) for *_x, v in traffic._usage(session, [account_id],
                                                 dt.datetime(2026, 11, 30, 21),
                                                 dt.datetime(2026, 12, 19, 10),
                                                 ("in",), "netflow"))
    return figures


def _total(ctx) -> int:
    with ctx.Session() as session:
        return int(session.scalar(select(func.sum(traffic.rollups.c.bytes))) or 0)


def test_readers_read_the_same_figures_before_and_after_tiering_and_reruns_change_nothing(
        ctx, seeded):
    account_id = seeded[0]
    raw_total = _total(ctx)
    before = _readers(ctx, account_id)
    assert before["cabinet-month-2026-11"] and before["rating-hour"]
    # November's cabinet month = the raw sum of its rows (directions summed).
    month = reports.month("2026-11", TZ)
    with ctx.engine.connect() as connection:
        raw_november = connection.execute(
            select(func.sum(TrafficRollup.bytes)).where(
                TrafficRollup.account_id == account_id,
                TrafficRollup.interval_start >= month.start,
                TrafficRollup.interval_start < month.end)).scalar()
    assert sum(d + u for d, u in before["cabinet-month-2026-11"].values()) == raw_november

    report = tiers.run(ctx.engine, RETENTION, NOW)
    assert report.days_moved["5min"] > 70 and report.days_moved["hourly"] > 40
    bounds = tiers.tier_bounds(ctx.engine)
    assert bounds["5min"] == dt.datetime(2026, 12, 17)
    assert bounds["detail"] == dt.datetime(2026, 12, 10)
    assert bounds["hourly"] == dt.datetime(2026, 11, 19, 21)     # Moscow's midnight
    with ctx.engine.connect() as connection:
        assert connection.execute(select(func.min(TrafficRollup.interval_start))).scalar() \
            >= dt.datetime(2026, 12, 17)
        # The hourly tier has every day before the 5-minute tier; the
        # detail tier keeps the 5-minute rows of the last of them.
        newest_hour = connection.execute(select(func.max(TrafficRollupHourly.interval_start))
                                         ).scalar()
        first, last = connection.execute(select(
            func.min(TrafficRollupDetail.interval_start),
            func.max(TrafficRollupDetail.interval_start))).one()
    assert dt.datetime(2026, 12, 16) <= newest_hour < dt.datetime(2026, 12, 17)
    assert dt.datetime(2026, 12, 10) <= first < dt.datetime(2026, 12, 11)
    assert dt.datetime(2026, 12, 16) <= last < dt.datetime(2026, 12, 17)
    with ctx.engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(
            TrafficRollupDaily.__table__)).scalar() > 0
    assert _total(ctx) == raw_total
    after = _readers(ctx, account_id)
    assert after == before

    # The day graph is drawn at the resolution its tier has.
    with ctx.Session() as session:
        for day, step in (("2026-10-05", 86_400), ("2026-12-01", 3_600),
                          ("2026-12-11", 300), ("2026-12-19", 300)):
            start = reports.moment(day, "day", TZ)
            series = traffic_reads.load_series(session, account_id, start,
                                               reports.moment(day, "day", TZ, end=True))
            assert series.step_seconds == step
            assert series.count == 86_400 // step

    snapshot = _snapshot(ctx)
    again = tiers.run(ctx.engine, RETENTION, NOW)
    assert again.days_moved == {"5min": 0, "hourly": 0}
    assert _snapshot(ctx) == snapshot


def test_late_rows_count_once_before_and_after_the_next_run(ctx, seeded):
    account_id = seeded[0]
    tiers.run(ctx.engine, RETENTION, NOW)
    total = _total(ctx)
    month = reports.month("2026-12", TZ)
    day_12 = (reports.moment("2026-12-12", "day", TZ),
              reports.moment("2026-12-12", "day", TZ, end=True))

    def bars_12():
        with ctx.Session() as session:
            series = traffic_reads.load_series(session, account_id, *day_12)
        assert series.step_seconds == 300
        return series.octets

    with ctx.Session() as session:
        december = queries.daily_traffic(session, account_id, month.start, month.end, TZ)
    bars = bars_12()
    late = [  # through the collector's own write statement
        dict(account_id=account_id, interval_start=dt.datetime(2026, 12, 10, 9, 5),
             traffic_class="internet", direction="in", bytes=1_000_000, packets=10,
             source="netflow"),      # its day is in the hourly tier
        dict(account_id=account_id, interval_start=dt.datetime(2026, 10, 5, 3, 0),
             traffic_class="ix", direction="out", bytes=2_000_000, packets=20,
             source="netflow"),      # its day is in the daily tier
        dict(account_id=account_id, interval_start=dt.datetime(2026, 12, 18, 1, 0),
             traffic_class="internet", direction="in", bytes=4_000_000, packets=40,
             source="netflow"),      # still a 5-minute day
        dict(account_id=account_id, interval_start=dt.datetime(2026, 12, 12, 10, 35),
             traffic_class="internet", direction="in", bytes=8_000_000, packets=80,
             source="netflow"),      # hourly, its 5-minute rows in the detail tier
    ]
    with ctx.Session() as session:
        upsert_rows(session, late)
        session.commit()
    expected = total + 15_000_000
    assert _total(ctx) == expected          # counted at once, from the 5-minute tier
    # The day graph of a detail day draws it at once in its 5-minute bar.
    bar = ((dt.datetime(2026, 12, 12, 10, 35) - day_12[0]) // dt.timedelta(minutes=5),
           "internet", "in")
    with_late = {**bars, bar: bars.get(bar, 0) + 8_000_000}
    assert bars_12() == with_late
    with ctx.Session() as session:
        now_december = queries.daily_traffic(session, account_id, month.start, month.end, TZ)
    assert now_december[dt.date(2026, 12, 10)][0] == december[dt.date(2026, 12, 10)][0] \
        + 1_000_000

    report = tiers.run(ctx.engine, RETENTION, NOW)
    assert report.stragglers["5min"] == 3
    assert report.stragglers["hourly"] == 1      # the October row went on to the days
    assert _total(ctx) == expected
    assert bars_12() == with_late               # folded into the detail tier too
    with ctx.engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(
            TrafficRollup.__table__).where(
            TrafficRollup.interval_start < dt.datetime(2026, 12, 17))).scalar() == 0
        ix = connection.execute(select(TrafficRollupDaily.bytes).where(
            TrafficRollupDaily.traffic_class == "ix")).all()
        assert ix == [(2_000_000,)]
    with ctx.Session() as session:
        assert queries.daily_traffic(session, account_id, month.start, month.end, TZ) \
            == now_december
    snapshot = _snapshot(ctx)
    tiers.run(ctx.engine, RETENTION, NOW)
    assert _snapshot(ctx) == snapshot and _total(ctx) == expected


def test_daily_rows_past_their_years_are_dropped(ctx, seeded):
    retention = tiers.Retention(five_minute_days=3, hourly_months=1, daily_years=1,
                                timezone=TZ)
    later = dt.datetime(2027, 11, 1, 12)     # days before 2026-11-01 expire
    report = tiers.run(ctx.engine, retention, later)
    assert report.rows_expired > 0
    bounds = tiers.tier_bounds(ctx.engine)
    with ctx.engine.connect() as connection:
        oldest = connection.execute(select(func.min(TrafficRollupDaily.interval_start))
                                    ).scalar()
        assert connection.execute(select(func.count()).select_from(
            TrafficRollup.__table__)).scalar() == 0
    assert oldest >= bounds["daily"] == dt.datetime(2026, 10, 31, 21)
    assert tiers.run(ctx.engine, retention, later).rows_expired == 0


def test_bad_retention_is_refused_with_the_setting_named(db_url, abonent):
    with pytest.raises(tiers.TierError, match="five_minute_days"):
        tiers.Retention(five_minute_days=1)
    with pytest.raises(tiers.TierError, match="hourly_months"):
        tiers.Retention(five_minute_days=60, hourly_months=2)
    for days in (1, 36):
        with pytest.raises(tiers.TierError, match="hourly_after_days"):
            tiers.Retention(hourly_after_days=days)
    result = abonent("traffic-tiers", "run", "--now", "yesterday", code=2)
    assert "--now" in result.stderr and result.stderr.count("\n") == 1


def test_the_command_runs_and_shows_the_tiers(ctx, seeded, abonent):
    result = abonent("traffic-tiers", "run", "--now", "2026-12-20T12:00", "--json")
    document = json.loads(result.stdout)
    assert document["days_moved"]["5min"] > 70      # default: hourly after 3 days
    assert document["complete_from"]["5min"] == "2026-12-17T00:00:00"
    assert document["complete_from"]["detail"] == "2026-11-15T00:00:00"    # 35 days
    shown = json.loads(abonent("traffic-tiers", "show", "--json").stdout)
    assert [t["tier"] for t in shown["tiers"]] == ["5min", "detail", "hourly", "daily"]
    assert shown["tiers"][0]["complete_from"] == "2026-12-17T00:00:00"
    assert shown["tiers"][1]["complete_from"] == "2026-11-15T00:00:00"
    assert shown["retention"]["five_minute_days"] == 35
    assert shown["retention"]["hourly_after_days"] == 3
    again = json.loads(abonent("traffic-tiers", "run", "--now", "2026-12-20T12:00",
                               "--json").stdout)
    assert again["days_moved"] == {"5min": 0, "hourly": 0}
    assert "5min" in abonent("traffic-tiers", "show").stdout


def _partition_names(connection, tier):
    return {p.name: p for p in tiers.partitions(connection, tier)}


def test_partitions_are_made_ahead_take_over_default_rows_and_are_dropped(pg_url):
    context = make_context(pg_url)
    try:
        with context.engine.begin() as connection:
            # Another test may have made them: this one watches them made.
            for day in range(19, 28):
                connection.execute(text(f"DROP TABLE IF EXISTS traffic_rollups_p202612{day}"))
            # A day that moves to the hourly tier as its whole partition.
            for name in ("traffic_rollups_p20261214", "traffic_rollups_detail_p20261214"):
                connection.execute(text(f"DROP TABLE IF EXISTS {name}"))
            tiers.ensure_partition(connection, tiers.FINE, dt.datetime(2026, 12, 14))
        with context.Session() as session:
            account = make_account(session)
            session.commit()
            upsert_rows(session, _rows(account.id, step_minutes=180))
            session.commit()
        with context.engine.connect() as connection:
            had = _partition_names(connection, tiers.FINE)
            in_default = connection.execute(text(
                "SELECT count(*) FROM traffic_rollups_default "
                "WHERE interval_start >= '2026-12-19'")).scalar()
        assert "traffic_rollups_p20261222" not in had and in_default > 0
        tiers.run(context.engine, RETENTION, NOW)
        with context.engine.connect() as connection:
            fine = _partition_names(connection, tiers.FINE)
            # Made ahead: yesterday to a week on, each a UTC day.
            for day in range(19, 28):
                part = fine[f"traffic_rollups_p202612{day}"]
                assert part.end - part.start == dt.timedelta(days=1)
            # None left before the 5-minute tier's start.
            assert all(p.start is None or p.end > dt.datetime(2026, 12, 17)
                       for p in fine.values())
            # The rows of the days kept that were in the default partition
            # moved into theirs (made ahead, or for days the scheduler missed).
            assert connection.execute(text(
                "SELECT count(*) FROM traffic_rollups_default")).scalar() == 0
            assert "traffic_rollups_p20261217" in fine
            assert connection.execute(text(
                "SELECT count(*) FROM traffic_rollups_p20261219")).scalar() > 0
            # Its partition was detached and attached to the detail tier
            # with its rows, which the day graph reads.
            assert "traffic_rollups_p20261214" not in fine
            detail = _partition_names(connection, tiers.DETAIL)
            assert detail["traffic_rollups_detail_p20261214"].start == dt.datetime(2026, 12, 14)
            assert connection.execute(text(
                "SELECT count(*) FROM traffic_rollups_detail_p20261214")).scalar() == 32
            hourly = _partition_names(connection, tiers.HOURLY)
            assert "traffic_rollups_hourly_p202612" in hourly
            assert "traffic_rollups_hourly_p202610" not in hourly     # all in daily rows
            assert "traffic_rollups_daily_p2026" in _partition_names(connection, tiers.DAILY)
            # A row for a dropped day lands in the default partition, is read,
            # and the next run folds it into the hourly tier.
            connection.execute(text(
                "INSERT INTO traffic_rollups (account_id, interval_start, traffic_class, "
                "direction, bytes, packets, source) VALUES "
                "(:a, '2026-12-01 10:00', 'internet', 'in', 5, 1, 'netflow')"),
                {"a": account.id})
            connection.commit()
            assert connection.execute(text(
                "SELECT count(*) FROM traffic_rollups_default "
                "WHERE interval_start < '2026-12-17'")).scalar() == 1
        total = _total(context)
        assert tiers.run(context.engine, RETENTION, NOW).stragglers["5min"] == 1
        assert _total(context) == total
    finally:
        context.dispose()


def test_two_nodes_running_at_once_move_each_day_once(pg_url):
    context = make_context(pg_url)
    try:
        with context.Session() as session:
            account = make_account(session)
            session.commit()
            upsert_rows(session, _rows(account.id, step_minutes=240))
            session.commit()
        total = _total(context)
        reports_made = []
        threads = [threading.Thread(target=lambda: reports_made.append(
            tiers.run(context.engine, RETENTION, NOW))) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert len(reports_made) == 2
        moved = [r.days_moved.get("5min", 0) for r in reports_made if not r.skipped]
        assert sum(moved) == max(moved) > 70
        tiers.run(context.engine, RETENTION, NOW)
        assert _total(context) == total
    finally:
        context.dispose()
