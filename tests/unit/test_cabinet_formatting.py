"""The cabinet's filters give babel's text, in both languages, for any value.

cabinet.formatting takes short paths for the common cases (Python's number
formatting with the locale's symbols, time fields looked up in tables);
babel's own functions are the reference here.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from babel import dates, numbers
from flask import Flask
from flask_babel import Babel, get_timezone, get_translations
from hypothesis import given, settings, strategies as st

from cabinet import formatting
from cabinet.app import HERE
from cabinet.i18n import LOCALES

ZONES = ("Europe/Moscow", "Asia/Vladivostok", "America/New_York", "UTC")
FORMATS = ("short", "medium", "long", "yyyy-MM-dd HH:mm", "d MMMM y", "h:mm a, d.M.yy")


def _app(locale: str, zone: str) -> Flask:
    app = Flask(__name__)
    app.config.update(BABEL_DEFAULT_TIMEZONE=zone,
                      BABEL_TRANSLATION_DIRECTORIES=str(HERE / "translations"))
    Babel(app, locale_selector=lambda: locale)
    return app


APPS = {(locale, zone): _app(locale, zone) for locale in LOCALES for zone in ZONES}


def _babel_volume(octets: int, locale: str) -> str:
    """The cabinet's volume as it was written on babel alone."""
    value = Decimal(octets)
    unit = 0
    while value >= 1000 and unit < len(formatting._UNITS) - 1:
        value /= 1000
        unit += 1
    number = numbers.format_decimal(value, "#,##0" if unit == 0 else "#,##0.0", locale=locale)
    return f"{number} {get_translations().ugettext(formatting._UNITS[unit])}"


def _babel_speed(kbps: int, locale: str) -> str:
    if kbps >= 1000:
        value = numbers.format_decimal(Decimal(kbps) / 1000, "#,##0.#", locale=locale)
        return get_translations().ugettext("%(value)s Mbit/s") % {"value": value}
    value = numbers.format_decimal(kbps, locale=locale)
    return get_translations().ugettext("%(value)s kbit/s") % {"value": value}


locales = st.sampled_from(sorted(LOCALES))
amounts = st.decimals(allow_nan=False, allow_infinity=False, min_value=Decimal("-1e21"),
                      max_value=Decimal("1e21"))
money_like = st.builds(lambda units, places: Decimal(units).scaleb(-places),
                       st.integers(-10 ** 12, 10 ** 12), st.integers(0, 4))
octets = st.one_of(st.integers(0, 2 ** 64), st.integers(-10 ** 6, 10 ** 6),
                   st.integers(0, 10 ** 30),
                   # Around the unit steps and the rounding of a tenth.
                   st.builds(lambda power, k: 1000 ** power * k // 1000 + (k % 3) - 1,
                             st.integers(1, 6), st.integers(999, 1_000_100)))


@settings(max_examples=400, deadline=None)
@given(locale=locales, value=st.one_of(amounts, money_like))
def test_money_is_babels_two_decimals(locale, value):
    with APPS[(locale, "UTC")].test_request_context():
        assert formatting.money(value) == numbers.format_decimal(value, "#,##0.00",
                                                                 locale=locale)


@settings(max_examples=400, deadline=None)
@given(locale=locales, value=octets)
def test_volume_is_babels(locale, value):
    with APPS[(locale, "UTC")].test_request_context():
        assert formatting.volume(value) == _babel_volume(value, locale)


@settings(max_examples=300, deadline=None)
@given(locale=locales, value=st.one_of(st.integers(-10 ** 7, 10 ** 7),
                                       st.integers(1, 10 ** 24).map(lambda n: n * 50)))
def test_speed_is_babels(locale, value):
    with APPS[(locale, "UTC")].test_request_context():
        expected = "—" if not value else _babel_speed(value, locale)
        assert formatting.speed(value) == expected


# 1970 to 2037: the cabinet converts with zoneinfo, where babel's reference
# here uses pytz, and outside those years pytz is off: it rounds a zone's
# local mean time (Vladivostok's +8:47:31 until 1922) to the minute, and its
# tables stop at 2037 (no summer time in New York in 2038). The times a
# cabinet shows (sessions, payments) are inside.
@settings(max_examples=400, deadline=None)
@given(locale=locales, zone=st.sampled_from(ZONES), format=st.sampled_from(FORMATS),
       value=st.datetimes(min_value=dt.datetime(1970, 1, 1),
                          max_value=dt.datetime(2037, 12, 31)))
def test_when_is_babels_format_datetime(locale, zone, format, value):
    with APPS[(locale, zone)].test_request_context():
        # The zone as Flask-Babel gives it to the cabinet (pytz's).
        expected = dates.format_datetime(value.replace(tzinfo=dt.timezone.utc), format,
                                         tzinfo=get_timezone(), locale=locale)
        assert formatting.when(value, format) == expected


@pytest.mark.parametrize("locale, value, text", [
    ("ru", Decimal("1234.5"), "1\xa0234,50"), ("en", Decimal("-0.001"), "-0.00"),
    ("ru", Decimal("0.125"), "0,12"), ("en", Decimal("1e6"), "1,000,000.00"),
])
def test_money_examples(locale, value, text):
    with APPS[(locale, "UTC")].test_request_context():
        assert formatting.money(value) == text


def test_volume_and_time_examples():
    with APPS[("ru", "Europe/Moscow")].test_request_context():
        assert formatting.volume(999_950) == "1\xa0000,0 КБ"
        assert formatting.volume(1_250_000) == "1,2 МБ"
        # The default: the day in words, the time to the minute.
        assert formatting.when(dt.datetime(2026, 11, 23, 21, 5)) == "24 нояб. 2026\u202fг., 00:05"
        assert formatting.when(dt.datetime(2026, 11, 23, 21, 5), "short") == "24.11.2026, 00:05"
    with APPS[("en", "Europe/Moscow")].test_request_context():
        assert formatting.speed(1050) == "1 Mbit/s"
        assert formatting.speed(1150) == "1.2 Mbit/s"
        assert formatting.when(dt.datetime(2026, 11, 23, 9, 5)) == "Nov 23, 2026, 12:05\u202fPM"
        assert formatting.when(dt.datetime(2026, 11, 23, 9, 5), "short") == \
            "11/23/26, 12:05\u202fPM"
    with APPS[("en", "America/New_York")].test_request_context():
        # Summer time after 2037, where pytz's tables end.
        assert formatting.when(dt.datetime(2038, 7, 1, 16, 0)) == "Jul 1, 2038, 12:00\u202fPM"
