"""Jinja filters: money, speeds, volumes and times as a subscriber reads them.

Money arrives as Decimal from rating/ and is only formatted here, with two
decimals in the page's locale; the cabinet never does arithmetic on it.

babel is the reference for every text here; the common cases take shorter
paths that give the same text (tests/unit/test_cabinet_formatting.py holds
them to babel's): a page formats dozens of values, and babel's general
machinery was a good part of the dashboard's time.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from decimal import Decimal
from functools import lru_cache
from operator import attrgetter, getitem
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, dates, numbers
from flask import Flask, has_app_context
from flask.globals import _cv_request
from flask_babel import get_locale, get_timezone, get_translations
from jinja2 import pass_context
from markupsafe import Markup

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

    __slots__ = ("locale", "locale_key", "zone", "translations", "symbols")

    def __init__(self):
        # Outside a request (a PDF made by a command), babel's default.
        self.locale = get_locale() or Locale.parse(numbers.LC_NUMERIC or "en_US_POSIX")
        self.locale_key = str(self.locale)
        self.zone = _zoneinfo(get_timezone()) if has_app_context() else dt.timezone.utc
        self.translations = get_translations()
        self.symbols = number_symbols(self.locale)


@lru_cache(maxsize=64)
def _zoneinfo(zone: dt.tzinfo) -> dt.tzinfo:
    """Flask-Babel's pytz zone as the standard library's ZoneInfo of the
    same name: its astimezone runs in C, pytz's fromutc in Python (a page
    converts twenty times). pytz's own zone where the system has no such
    zone data."""
    try:
        return ZoneInfo(str(zone))
    except (ZoneInfoNotFoundError, ValueError):
        return zone


def _request() -> _Request:
    # Kept on the request context itself: reaching it through ``g`` (a
    # werkzeug proxy) ~90 times a page cost more than the formatting.
    context = _cv_request.get(None)
    if context is None:
        return _Request()
    try:
        return context.abonent_format
    except AttributeError:
        cached = context.abonent_format = _Request()
        return cached


def locale_key() -> str:
    """The page's locale, as a string (a cache key)."""
    return _request().locale_key


def locale() -> Locale:
    """The page's locale (babel's default outside a request)."""
    return _request().locale


def gettext(message: str, **variables) -> str:
    text = _request().translations.ugettext(message)
    return text % variables if variables else text


_NUMBER_SYMBOLS: dict[str, dict[int, str]] = {}

# Beyond this many digits babel's quantize runs out of the decimal
# context's 28 digits of precision (and raises): babel's path, unchanged.
_FAST_DIGITS = 20
_FAST_LIMIT = 10 ** _FAST_DIGITS


def number_symbols(locale: Locale) -> dict[int, str]:
    """A str.translate table from Python's "," and "." to the locale's group
    and decimal symbols: what babel puts in a "#,##0.00" pattern."""
    key = str(locale)
    table = _NUMBER_SYMBOLS.get(key)
    if table is None:
        table = _NUMBER_SYMBOLS[key] = str.maketrans({
            ",": numbers.get_group_symbol(locale), ".": numbers.get_decimal_symbol(locale)})
    return table


def _round_half_even(numerator: int, denominator: int) -> int:
    """numerator / denominator (both > 0) to a whole number, as Decimal's
    default context rounds (half to even)."""
    whole, rest = divmod(numerator, denominator)
    if rest * 2 > denominator or (rest * 2 == denominator and whole & 1):
        whole += 1
    return whole


def money(value: Decimal | None) -> str:
    if value is None:
        return "—"
    if not isinstance(value, Decimal):
        raise TypeError(f"money must be a Decimal, not {type(value).__name__}")
    request = _request()
    if value.is_finite() and value.adjusted() < _FAST_DIGITS:
        # Half-even to two places, sign kept even on a zero, as babel's
        # "#,##0.00" does.
        return f"{value:,.2f}".translate(request.symbols)
    return _MONEY.apply(value, request.locale)


CURRENCY_SIGN = "\u20bd"  # ₽ in every language: "RUB" reads as a code, not money
_CURRENCY_PATTERNS: dict[str, tuple[str, str]] = {}


def _currency_pattern(locale: Locale) -> tuple[str, str]:
    """The text before and after the number in the locale's currency
    pattern ("¤#,##0.00" in English, "#,##0.00 ¤" in Russian)."""
    key = str(locale)
    found = _CURRENCY_PATTERNS.get(key)
    if found is None:
        pattern = locale.currency_formats["standard"].pattern.split(";")[0]
        number = pattern.strip("\u00a4")
        if pattern.startswith("\u00a4"):
            space = number[:len(number) - len(number.lstrip("\u00a0 "))]
            found = (CURRENCY_SIGN + space, "")
        else:
            space = number[len(number.rstrip("\u00a0 ")):]
            found = ("", space + CURRENCY_SIGN)
        _CURRENCY_PATTERNS[key] = found
    return found


def money_with_currency(value: Decimal | None) -> str:
    """An amount with its currency, in the locale's format: "1 069,35 ₽" in
    Russian, "₽1,069.35" in English; a minus before it all."""
    if value is None:
        return "—"
    before, after = _currency_pattern(_request().locale)
    text = money(value)
    sign = ""
    if text.startswith("-"):
        sign, text = "-", text[1:]
    return f"{sign}{before}{text}{after}"


def csv_number(value: Decimal) -> str:
    """An amount as a spreadsheet of the locale reads a number: no group
    separators, the locale's decimal sign ("-1069,35" in Russian)."""
    return f"{value:.2f}".replace(".", numbers.get_decimal_symbol(_request().locale))


def speed(kbps: int | None) -> str:
    if not kbps:
        return "—"
    request = _request()
    if kbps >= 1000:
        if type(kbps) is int and kbps < _FAST_LIMIT:
            # "#,##0.#": tenths of a Mbit/s, half to even, no ",0".
            tenths = _round_half_even(kbps, 100)
            whole, tenth = divmod(tenths, 10)
            value = (f"{whole:,}.{tenth}" if tenth else f"{whole:,}").translate(request.symbols)
        else:
            value = _AT_MOST_ONE_DECIMAL.apply(Decimal(kbps) / 1000, request.locale)
        return gettext("%(value)s Mbit/s", value=value)
    value = str(kbps) if kbps > 0 else numbers.format_decimal(kbps, locale=request.locale)
    return gettext("%(value)s kbit/s", value=value)


def N_(message: str) -> str:
    """Marks a msgid for extraction without translating it."""
    return message


_UNITS = (N_("B"), N_("KB"), N_("MB"), N_("GB"), N_("TB"), N_("PB"))


def volume(octets: int | None) -> str:
    octets = int(octets or 0)
    request = _request()
    if octets < _FAST_LIMIT:
        # Whole bytes ("#,##0"), else tenths of the largest unit that leaves
        # at least 1 ("#,##0.0"), half to even: babel's text, in integers.
        unit = 0
        size = 1
        while octets >= size * 1000 and unit < len(_UNITS) - 1:
            size *= 1000
            unit += 1
        if unit == 0:
            number = f"{octets:,}"
        else:
            whole, tenth = divmod(_round_half_even(octets * 10, size), 10)
            number = f"{whole:,}.{tenth}"
        return f"{number.translate(request.symbols)} {request.translations.ugettext(_UNITS[unit])}"
    value = Decimal(octets)
    unit = 0
    while value >= 1000 and unit < len(_UNITS) - 1:
        value /= 1000
        unit += 1
    pattern = _WHOLE if unit == 0 else _ONE_DECIMAL
    return (f"{pattern.apply(value, request.locale)} "
            f"{request.translations.ugettext(_UNITS[unit])}")


_STANDARD = ("short", "medium", "long", "full")
_DATETIME_FORMATTERS: dict[tuple[str, str], Callable[[dt.datetime], str]] = {}

# Pattern fields whose text depends on one part of the wall-clock time
# alone: the part, and the value babel formats it on (any other part).
_PARTS = {"y": "year", "M": "month", "L": "month", "d": "day", "H": "hour", "h": "hour",
          "K": "hour", "k": "hour", "a": "hour", "m": "minute", "s": "second"}
_PART_VALUES = {"month": range(1, 13), "day": range(1, 32), "hour": range(24),
                "minute": range(60), "second": range(60)}


class _Years(dict):
    """A year field's text per year, from babel, filled as years come."""

    def __init__(self, locale: Locale, field: str):
        super().__init__()
        self.locale = locale
        self.field = field

    def __missing__(self, year: int) -> str:
        text = self[year] = dates.DateTimeFormat(dt.datetime(year, 1, 1), self.locale)[self.field]
        return text


def _field_table(locale: Locale, char: str, count: int, part: str):
    """{part's value: babel's text of the field} for one field."""
    field = char * count
    if part == "year":
        return _Years(locale, field)
    table = [""] * (max(_PART_VALUES[part]) + 1)
    for value in _PART_VALUES[part]:
        moment = dt.datetime(2000, 1, 1).replace(**{part: value})
        table[value] = dates.DateTimeFormat(moment, locale)[field]
    return table


def _compiled(locale: Locale, tokens) -> Callable[[dt.datetime], str] | None:
    """A formatter for babel's tokens of a pattern (literal text and fields)
    that looks each field's text up, or None if a field needs more than one
    part of the time (a weekday, a time zone...)."""
    template = []
    lookups = []
    for kind, value in tokens:
        if kind == "chars":
            template.append(value.replace("{", "{{").replace("}", "}}"))
            continue
        char, count = value
        part = _PARTS.get(char)
        if part is None:
            return None
        template.append("{}")
        lookups.append((part, _field_table(locale, char, count, part)))
    text = "".join(template)
    if not lookups:
        return lambda value: text.format()
    # The parts fetched by one attrgetter and looked up by map(getitem):
    # both loops in C (a page formats twenty times).
    parts = attrgetter(*(part for part, _table in lookups))
    tables = tuple(table for _part, table in lookups)
    if len(tables) == 1:
        table = tables[0]
        return lambda value: text.format(table[parts(value)])

    def formatter(value):
        return text.format(*map(getitem, tables, parts(value)))
    return formatter


# The day as the locale writes it in words and the time to the minute
# ("5 дек. 2026 г., 07:41", "Dec 5, 2026, 7:41 AM"): the cabinet's default,
# which no reader takes for another day (12/5/26) and shows no seconds.
DAY_TIME = "day_time"
# (date-time joint, date, time) formats of a format name.
_PARTS_OF = {DAY_TIME: ("medium", "medium", "short")}


def _standard_tokens(locale: Locale, format: str) -> list:
    """A standard format's date and time patterns spliced into the locale's
    date-time pattern, as babel.dates.format_datetime joins them."""
    joint_format, date_format, time_format = _PARTS_OF.get(format, (format, format, format))
    joint = dates.get_datetime_format(joint_format, locale).replace("'", "")
    parts = {"{0}": dates.tokenize_pattern(dates.get_time_format(time_format, locale).pattern),
             "{1}": dates.tokenize_pattern(dates.get_date_format(date_format, locale).pattern)}
    tokens = []
    for piece in re.split(r"(\{[01]\})", joint):
        if piece in parts:
            tokens.extend(parts[piece])
        elif piece:
            tokens.append(("chars", piece))
    return tokens


def _datetime_formatter(locale: Locale, format: str,
                        locale_key: str | None = None) -> Callable[[dt.datetime], str]:
    """What babel.dates.format_datetime does with a format, with the
    locale's patterns looked up and parsed once per process, and the text of
    each field looked up in a table babel filled."""
    key = (locale_key or str(locale), format)
    formatter = _DATETIME_FORMATTERS.get(key)
    if formatter is None:
        if format in _STANDARD or format in _PARTS_OF:
            formatter = _compiled(locale, _standard_tokens(locale, format))
            if formatter is None:
                joint_format, date_format, time_format = _PARTS_OF.get(
                    format, (format, format, format))
                joint = dates.get_datetime_format(joint_format, locale).replace("'", "")
                day = dates.parse_pattern(dates.get_date_format(date_format, locale))
                hour = dates.parse_pattern(dates.get_time_format(time_format, locale))

                def formatter(value, locale=locale, joint=joint, day=day, hour=hour):
                    return (joint.replace("{0}", hour.apply(value, locale))
                            .replace("{1}", day.apply(value, locale)))
        else:
            formatter = _compiled(locale, dates.tokenize_pattern(format))
            if formatter is None:
                pattern = dates.parse_pattern(format)

                def formatter(value, locale=locale, pattern=pattern):
                    return pattern.apply(value, locale)
        _DATETIME_FORMATTERS[key] = formatter
    return formatter


def when(value: dt.datetime | None, format: str = DAY_TIME) -> str:
    """A stored (naive UTC) time in the operator's time zone."""
    if value is None:
        return "—"
    request = _request()
    local = value.replace(tzinfo=dt.timezone.utc).astimezone(request.zone)
    return _datetime_formatter(request.locale, format, request.locale_key)(local)


# Messages per catalogue whose Markup _() keeps; the templates' literals
# are a few hundred, a bound in case a template passes _() a variable.
_MARKUP_CACHE_SIZE = 2048


@pass_context
def _template_gettext(context, message: str, **variables) -> str:
    """The templates' _(): what jinja2.ext's newstyle gettext does (escaped
    variables, "%%" always read as a format), without its alias's two extra
    context.call hops per message; a page has some forty. A message without
    variables is made into Markup once per catalogue."""
    translations = _request().translations
    if not context.eval_ctx.autoescape:
        return translations.ugettext(message) % variables
    if variables:
        return Markup(translations.ugettext(message)) % variables
    try:
        cache = translations.abonent_markup
    except AttributeError:
        cache = translations.abonent_markup = {}
    text = cache.get(message)
    if text is None:
        if len(cache) >= _MARKUP_CACHE_SIZE:
            cache.clear()
        text = cache[message] = Markup(translations.ugettext(message)) % {}
    return text


def register(app: Flask) -> None:
    from cabinet import labels
    # The templates' _() and ngettext() through the request's cached
    # catalogue (same texts as Flask-Babel's, fewer lookups per call).
    app.jinja_env.install_gettext_callables(
        gettext=lambda s: _request().translations.ugettext(s),
        ngettext=lambda s, p, n: _request().translations.ungettext(s, p, n),
        newstyle=True)
    app.jinja_env.globals["_"] = _template_gettext
    from cabinet import history_text, ledger_text
    app.jinja_env.filters.update(money=money, speed=speed, volume=volume, when=when,
                                 rub=money_with_currency, ledger_line=ledger_text.describe,
                                 details=history_text.details,
                                 ledger_kind=labels.kind, action=labels.action,
                                 field=labels.field,
                                 promise_status=labels.promise_status)
