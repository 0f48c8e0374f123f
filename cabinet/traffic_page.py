"""The traffic pages: a month by day, a day by 5-minute interval.

The month's bars link to each day with traffic; a day shows the channel
load (bit/s per interval, download and upload, by traffic class) as a
server-drawn SVG with the same figures in a table for screen readers and
for copying. Months and days are the operator's local ones; nothing is
offered after today (there is no traffic from the future to show).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from babel import dates
from sqlalchemy import select
from flask import current_app, render_template, request
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user

from cabinet import charts, labels, periods, queries, traffic_reads
from cabinet.app import db
from cabinet.formatting import number_symbols, volume
from rating import traffic
from rating.models import Account, Tariff

# Traffic classes as the collector names them (collector.attribute);
# a class without a label here is shown by its name.
CLASSES = {"internet": _l("Internet"), "local": _l("Local network"),
           "peering": _l("Peering"), "other": _l("Other")}

# Sentences of PeriodError raised here, marked for translation.
MESSAGES = (_l("this month has not begun yet"),
            _l("this day has not begun yet"),
            _l("a period must lie between the years 1970 and 2999"))


def _timezone() -> str:
    return current_app.config["BABEL_DEFAULT_TIMEZONE"]


def class_label(code: str) -> str:
    label = CLASSES.get(code)
    return str(label) if label is not None else code


def month_name(first_day: dt.date) -> str:
    """"November 2026", "ноябрь 2026 г.": the locale's stand-alone month."""
    return dates.format_skeleton("yMMMM", first_day, locale=get_locale())


def day_name(day: dt.date) -> str:
    return dates.format_date(day, "long", locale=get_locale())


_RATE_UNITS = ((10 ** 9, "%(value)s Gbit/s"), (10 ** 6, "%(value)s Mbit/s"),
               (10 ** 3, "%(value)s kbit/s"), (1, "%(value)s bit/s"))


def bitrate(bits_per_second: int) -> str:
    """A load in the largest unit that leaves at least 1, to a tenth."""
    for size, template in _RATE_UNITS:
        if bits_per_second >= size or size == 1:
            tenths = (bits_per_second * 10 + size // 2) // size
            whole, tenth = divmod(tenths, 10)
            number = f"{whole:,}.{tenth}" if tenth and size > 1 else f"{whole:,}"
            return _(template, value=number.translate(number_symbols(get_locale())))
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class MonthNav:
    previous: str
    previous_label: str
    label: str
    following: str | None  # None: the next month has not begun
    following_label: str | None


def month_nav(period: periods.Period, today: dt.date) -> MonthNav:
    previous = periods.shift_month(period.first_day, -1)
    following = periods.shift_month(period.first_day, 1)
    following_day = dt.date.fromisoformat(following + "-01")
    previous_day = dt.date.fromisoformat(previous + "-01")
    if following_day > today:
        return MonthNav(previous, month_name(previous_day), month_name(period.first_day),
                        None, None)
    return MonthNav(previous, month_name(previous_day), month_name(period.first_day),
                    following, month_name(following_day))


def past_month(value: str | None, today: dt.date) -> periods.Period:
    """The month asked for, refusing one that has not begun."""
    period = periods.month(value, _timezone(), today)
    if period.first_day > today:
        raise periods.PeriodError("this month has not begun yet")
    return period


def month_page():
    today = periods.local_today(_timezone())
    try:
        period = past_month(request.args.get("month"), today)
    except periods.PeriodError as error:
        return render_template("traffic.html", error=labels.error_text(error), period=None,
                               chart=None, series=[]), 400
    daily = queries.daily_traffic(db(), current_user.account_id, period.start_utc,
                                  period.end_utc, _timezone())
    # Days after today are not drawn: a month in progress ends today.
    series = [(day, *daily.get(day, (0, 0))) for day in period.days if day <= today]
    chart = charts.daily_bars(series, title=_("Traffic by day"), label_down=_("Downloaded"),
                              label_up=_("Uploaded"), format_volume=volume)
    source = traffic_reads.source_for(db(), current_user.account_id, period.start_utc,
                                      period.end_utc)
    return render_template("traffic.html", period=period, chart=chart, series=series,
                           total_down=sum(s[1] for s in series),
                           total_up=sum(s[2] for s in series),
                           updated_at=traffic_reads.last_updated(db(), current_user.account_id,
                                                                 source),
                           nav=month_nav(period, today), day_name=day_name)


def _local_label(moment: dt.datetime, zone: ZoneInfo) -> str:
    return moment.replace(tzinfo=dt.timezone.utc).astimezone(zone).strftime("%H:%M")


def day_page():
    zone_name = _timezone()
    today = periods.local_today(zone_name)
    try:
        day = periods.parse_day(request.args.get("day"), today)
        if day > today:
            raise periods.PeriodError("this day has not begun yet")
        period = periods.days(day, day, zone_name)
    except periods.PeriodError as error:
        return render_template("traffic_day.html", error=labels.error_text(error),
                               day=None), 400
    series = traffic_reads.load_series(db(), current_user.account_id, period.start_utc,
                                       period.end_utc)
    zone = ZoneInfo(zone_name)
    classes = series.classes
    down = [[series.bits_per_second(i, c, "in") for c in classes] for i in range(series.count)]
    up = [[series.bits_per_second(i, c, "out") for c in classes] for i in range(series.count)]
    ticks = {}
    for index in range(series.count):
        local = series.interval_start(index).replace(tzinfo=dt.timezone.utc).astimezone(zone)
        if local.minute == 0 and local.hour % 3 == 0:
            ticks[index] = local.strftime("%H")
    chart = charts.load_graph(series.count, down, up,
                              title=_("Channel load on %(day)s", day=day_name(day)),
                              ticks=ticks, format_rate=bitrate, label_down=_("Download"),
                              label_up=_("Upload"))
    rows = []
    for index in series.busy_intervals():
        start = series.interval_start(index)
        rows.append(dict(
            start=start.isoformat(timespec="minutes"),
            label=f"{_local_label(start, zone)}–"
                  f"{_local_label(series.interval_end(index), zone)}",
            cells=[(c, d, series.bits_per_second(index, c, d),
                    bitrate(series.bits_per_second(index, c, d)))
                   for c in classes for d in ("in", "out")]))
    peak = {d: max([sum(v) for v in values] + [0]) for d, values in (("in", down), ("out", up))}
    previous = day - dt.timedelta(days=1)
    following = day + dt.timedelta(days=1)
    return render_template(
        "traffic_day.html", day=day, day_label=day_name(day), chart=chart, rows=rows,
        classes=[(c, class_label(c)) for c in classes],
        class_totals=[(class_label(c), series.class_total(c, "in"),
                       series.class_total(c, "out")) for c in classes],
        total_down=series.total("in"), total_up=series.total("out"),
        peak_down=bitrate(peak["in"]), peak_up=bitrate(peak["out"]),
        updated_at=series.updated_at, month=day.strftime("%Y-%m"),
        month_label=month_name(day.replace(day=1)),
        previous=previous.isoformat(), previous_label=day_name(previous),
        following=following.isoformat() if following <= today else None,
        following_label=day_name(following))


def session_costs(account_id: int, rows, now: dt.datetime):
    """Each listed session's traffic cost (rating.traffic.session_costs),
    or None where the tariff does not price traffic and nothing was
    charged: the page then shows no cost at all."""
    session = db()
    tariff = session.scalar(select(Tariff).join(Account, Account.tariff_id == Tariff.id)
                            .where(Account.id == account_id))
    priced = tariff is not None and traffic.TrafficRules.of(tariff).charges_anything
    if not rows:
        return None
    first = min(r.started_at for r in rows)
    last = max((r.stopped_at or now) for r in rows)
    charges = traffic.hourly_charges(session, account_id, first, last)
    if not priced and not any(charges.values()):
        return None
    return traffic.session_costs(charges, [(r.started_at, r.stopped_at) for r in rows], now)


def today_summary():
    """Today's traffic for the overview's block: the same figures as the
    day's graph, read the same way (cabinet.traffic_reads)."""
    from cabinet.app import reads
    zone_name = _timezone()
    today = periods.local_today(zone_name)
    period = periods.days(today, today, zone_name)
    totals = traffic_reads.summary(reads(), current_user.account_id, period.start_utc,
                                   period.end_utc)
    return dict(day=today.isoformat(), down=totals.octets_down, up=totals.octets_up,
                updated_at=totals.updated_at)
