"""Pure pieces of the cabinet: contact rules, the speed a profile gives,
periods in the operator's time zone, the SVG chart."""

from __future__ import annotations

import datetime as dt
import re
from types import SimpleNamespace

import pytest

from cabinet import charts, periods
from rating.accounts import DomainError
from rating.cabinet_ops import normalize_email, normalize_phone, speed_with_options


@pytest.mark.parametrize("raw, stored", [
    ("+7 (912) 345-67-89", "+79123456789"), ("8 912 345 67 89", "89123456789"),
    ("  ", None), (None, None), ("12345", "12345"),
])
def test_phone_numbers_are_stored_as_digits(raw, stored):
    assert normalize_phone(raw) == stored


@pytest.mark.parametrize("raw", ["call me", "+7 912", "1" * 16, "+7-912-abc", "++79123456789"])
def test_bad_phone_numbers_are_refused(raw):
    with pytest.raises(DomainError):
        normalize_phone(raw)


@pytest.mark.parametrize("raw, ok", [("a@b.ru", True), (" ivan@example.com ", True),
                                     ("a@b", False), ("a b@c.ru", False), ("@c.ru", False),
                                     ("a@@c.ru", False)])
def test_email_rule(raw, ok):
    if ok:
        assert normalize_email(raw) == raw.strip()
    else:
        with pytest.raises(DomainError):
            normalize_email(raw)


def _rates(speed):
    return speed.rate_down_kbps, speed.rate_up_kbps


def test_each_profile_gives_its_speed():
    now = dt.datetime(2026, 11, 23)

    def speed(profile, options=(), state="active"):
        return speed_with_options(profile, 100_000, 50_000, 1_000, options, now, state=state)
    assert _rates(speed("normal")) == (100_000, 50_000)
    assert _rates(speed("throttled")) == (1_000, 1_000)
    assert _rates(speed("suspended")) == (0, 0)
    assert _rates(speed("normal", state="frozen")) == (0, 0)
    ends = dt.datetime(2026, 11, 24)
    turbo = SimpleNamespace(name="Turbo", kind="turbo", rate_multiplier=3,
                            starts_at=now - dt.timedelta(hours=1), ends_at=ends)
    boosted = speed("normal", [turbo])
    assert (boosted.profile, *_rates(boosted), boosted.until) == ("turbo", 300_000, 150_000,
                                                                  ends)
    # A restricting rung wins while it holds; the turbo is not shown as on.
    assert speed("throttled", [turbo]) == speed("throttled")
    # A turbo that has ended gives the tariff's speed, nothing invented.
    ended = speed_with_options("normal", 100_000, 50_000, 1_000, [turbo],
                               ends + dt.timedelta(seconds=1))
    assert _rates(ended) == (100_000, 50_000)


def test_a_month_is_bounded_by_local_midnights():
    period = periods.month("2026-11", "Europe/Moscow", today=dt.date(2026, 1, 1))
    assert period.start_utc == dt.datetime(2026, 10, 31, 21, 0)
    assert period.end_utc == dt.datetime(2026, 11, 30, 21, 0)
    assert len(period.days) == 30
    assert periods.month(None, "UTC", today=dt.date(2024, 2, 17)).last_day == dt.date(2024, 2, 29)
    assert periods.shift_month(dt.date(2026, 1, 1), -1) == "2025-12"
    assert periods.shift_month(dt.date(2026, 12, 1), 1) == "2027-01"


@pytest.mark.parametrize("value", ["2026-13", "november", "2026/11"])
def test_a_bad_month_is_refused(value):
    with pytest.raises(periods.PeriodError):
        periods.month(value, "UTC", today=dt.date(2026, 1, 1))


def test_periods_are_bounded():
    with pytest.raises(periods.PeriodError):
        periods.days(dt.date(2026, 2, 1), dt.date(2026, 1, 1), "UTC")
    with pytest.raises(periods.PeriodError):
        periods.days(dt.date(2020, 1, 1), dt.date(2026, 1, 1), "UTC")


def test_chart_bars_are_proportional_and_escaped():
    series = [(dt.date(2026, 11, 1), 300, 100), (dt.date(2026, 11, 2), 150, 50),
              (dt.date(2026, 11, 3), 0, 0)]
    svg = str(charts.daily_bars(series, title="<Traffic>", label_down="down",
                                label_up="up", format_volume=str))
    assert "<Traffic>" not in svg and "&lt;Traffic&gt;" in svg
    heights = [float(h) for h in re.findall(r'class="down" x="[^"]+" y="[^"]+" '
                                            r'width="[^"]+" height="([^"]+)"', svg)]
    assert heights[0] == pytest.approx(2 * heights[1]) and heights[2] == 0
    assert "style=" not in svg  # the CSP allows no inline style


def test_chart_of_nothing_is_empty_not_an_error():
    svg = str(charts.daily_bars([], title="t", label_down="d", label_up="u", format_volume=str))
    assert svg.startswith("<svg") and "<rect" not in svg
