"""Jinja filters: money, speeds, volumes and times as a subscriber reads them.

Money arrives as Decimal from rating/ and is only formatted here, with two
decimals in the page's locale; the cabinet never does arithmetic on it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal

from babel import Locale, dates, numbers
from flask import Flask, g, has_app_context, has_request_context
from flask_babel import get_locale, get_timezone, get_translations

# Number patterns parsed once (babel parses a pattern string on every call).
_MONEY = numbers.parse_pattern("#,##0.00")
_WHOLE = numbers.parse_pattern("#,##0")
_ONE_DECIMAL = numbers.parse_pattern("#,##0.0")
_AT_MOST_ONE_DECIMAL = numbers.parse_pattern("#,##0.#")


class _Request:
    """The request's locale, time zone and catalogue, looked up once.

    A page formats dozens of values; going through Flask-Babel's context
    lookups for each was a good part of the dashboard's time.
    """

    __slots__ = ("locale", "zone", "translations")

    def __init__(self):
        # Outside a request (a PDF made by a command), babel's default.
        self.locale = get_locale() or Locale.parse(numbers.LC_NUMERIC or "en_US_POSIX")
        self.zone = get_timezone() if has_app_context() else dt.timezone.utc
        self.translations = get_translations()


def _request() -> _Request:
    if not has_request_context():
        return _Request()
    cached = g.get("_abonent_format")
    if cached is None:
        cached = g._abonent_format = _Request()
    return cached


def gettext(message: str, **variables) -> str:
    text = _request().translations.ugettext(message)
    return text % variables if variables else text


def money(value: Decimal | None) -> str:
    if value is None:
        return "—"
    if not isinstance(value, Decimal):
        raise TypeError(f"money must be a Decimal, not {type(value).__name__}")
    return _MONEY.apply(value, _request().locale)


def speed(kbps: int | None) -> str:
    if not kbps:
        return "—"
    locale = _request().locale
    if kbps >= 1000:
        mbps = Decimal(kbps) / 1000
        return gettext("%(value)s Mbit/s", value=_AT_MOST_ONE_DECIMAL.apply(mbps, locale))
    return gettext("%(value)s kbit/s", value=numbers.format_decimal(kbps, locale=locale))


def N_(message: str) -> str:
    """Marks a msgid for extraction without translating it."""
    return message


_UNITS = (N_("B"), N_("KB"), N_("MB"), N_("GB"), N_("TB"), N_("PB"))


def volume(octets: int | None) -> str:
    octets = int(octets or 0)
    value = Decimal(octets)
    unit = 0
    while value >= 1000 and unit < len(_UNITS) - 1:
        value /= 1000
        unit += 1
    pattern = _WHOLE if unit == 0 else _ONE_DECIMAL
    request = _request()
    return (f"{pattern.apply(value, request.locale)} "
            f"{request.translations.ugettext(_UNITS[unit])}")


_STANDARD = ("short", "medium", "long", "full")
_DATETIME_FORMATTERS: dict[tuple[str, str], Callable[[dt.datetime], str]] = {}


def _datetime_formatter(locale: Locale, format: str) -> Callable[[dt.datetime], str]:
    """What babel.dates.format_datetime does with a format, with the
    locale's patterns looked up and parsed once per process."""
    key = (str(locale), format)
    formatter = _DATETIME_FORMATTERS.get(key)
    if formatter is None:
        if format in _STANDARD:
            joint = dates.get_datetime_format(format, locale).replace("'", "")
            day = dates.parse_pattern(dates.get_date_format(format, locale))
            hour = dates.parse_pattern(dates.get_time_format(format, locale))

            def formatter(value, locale=locale, joint=joint, day=day, hour=hour):
                return (joint.replace("{0}", hour.apply(value, locale))
                        .replace("{1}", day.apply(value, locale)))
        else:
            pattern = dates.parse_pattern(format)

            def formatter(value, locale=locale, pattern=pattern):
                return pattern.apply(value, locale)
        _DATETIME_FORMATTERS[key] = formatter
    return formatter


def when(value: dt.datetime | None, format: str = "short") -> str:
    """A stored (naive UTC) time in the operator's time zone."""
    if value is None:
        return "—"
    request = _request()
    local = value.replace(tzinfo=dt.timezone.utc).astimezone(request.zone)
    return _datetime_formatter(request.locale, format)(local)


def register(app: Flask) -> None:
    from cabinet import labels
    # The templates' _() and ngettext() through the request's cached
    # catalogue (same texts as Flask-Babel's, fewer lookups per call).
    app.jinja_env.install_gettext_callables(
        gettext=lambda s: _request().translations.ugettext(s),
        ngettext=lambda s, p, n: _request().translations.ungettext(s, p, n),
        newstyle=True)
    app.jinja_env.filters.update(money=money, speed=speed, volume=volume, when=when,
                                 ledger_kind=labels.kind, action=labels.action,
                                 field=labels.field,
                                 promise_status=labels.promise_status)
