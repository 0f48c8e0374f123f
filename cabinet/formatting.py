"""Jinja filters: money, speeds, volumes and times as a subscriber reads them.

Money arrives as Decimal from rating/ and is only formatted here, with two
decimals in the page's locale; the cabinet never does arithmetic on it.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from flask import Flask
from flask_babel import format_datetime, format_decimal, gettext
from flask_babel import lazy_gettext as _l

_MONEY_FORMAT = "#,##0.00"


def money(value: Decimal | None) -> str:
    if value is None:
        return "—"
    if not isinstance(value, Decimal):
        raise TypeError(f"money must be a Decimal, not {type(value).__name__}")
    return format_decimal(value, format=_MONEY_FORMAT)


def speed(kbps: int | None) -> str:
    if not kbps:
        return "—"
    if kbps >= 1000:
        mbps = Decimal(kbps) / 1000
        return gettext("%(value)s Mbit/s", value=format_decimal(mbps, format="#,##0.#"))
    return gettext("%(value)s kbit/s", value=format_decimal(kbps))


_UNITS = (_l("B"), _l("KB"), _l("MB"), _l("GB"), _l("TB"), _l("PB"))


def volume(octets: int | None) -> str:
    octets = int(octets or 0)
    value = Decimal(octets)
    unit = 0
    while value >= 1000 and unit < len(_UNITS) - 1:
        value /= 1000
        unit += 1
    pattern = "#,##0" if unit == 0 else "#,##0.0"
    return f"{format_decimal(value, format=pattern)} {_UNITS[unit]}"


def when(value: dt.datetime | None, format: str = "short") -> str:
    """A stored (naive UTC) time in the operator's time zone."""
    if value is None:
        return "—"
    return format_datetime(value.replace(tzinfo=dt.timezone.utc), format)


def register(app: Flask) -> None:
    from cabinet import labels
    app.jinja_env.filters.update(money=money, speed=speed, volume=volume, when=when,
                                 ledger_kind=labels.kind, action=labels.action,
                                 field=labels.field,
                                 promise_status=labels.promise_status)
