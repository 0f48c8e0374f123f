"""The overview's answers to "how long, what for, what now".

How long: rating.runout.forecast over the account's fees (its tariff by its
period, its packages, its discounts), read here as plain values. What for:
the monthly cost and the services (logins, addresses). What now: in a
restricted state, the amount that restores full service, a top-up with it
and the promised payment when rating.promised allows one; always what
happens next if nothing is paid.

The overview is the busiest page: packages, discounts and services are
one UNION ALL (CompiledSelect, plain tuples); the
banners and each tariff's no-fee profiles are kept per process for
CACHE_TTL_SECONDS.
"""

from __future__ import annotations

import datetime as dt
import itertools
import time
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

from flask import current_app
from sqlalchemy import (Date, Integer, String, bindparam, cast, false, literal, null, or_, select,
                        union_all)

from aaa.models import Service
from cabinet import labels
from config.db import CompiledSelect, Money
from rating import banners, fees, packages, promised, runout
from rating.accounts import DomainError
from rating.models import AccountPackage, Discount, Package, Tariff, VoicePlan, VoiceService

CACHE_TTL_SECONDS = 30.0

_PACKAGES = AccountPackage.__table__
_PACKAGE_TYPES = Package.__table__
_DISCOUNTS = Discount.__table__
_SERVICES = Service.__table__
_PHONES = VoiceService.__table__
_VOICE_PLANS = VoicePlan.__table__

# One round trip for the three lists (each round trip costs the busiest
# page more than its rows): the account's packages switched on, its
# discounts not yet ended and its active services, in shared columns:
#   source    amount  percent  from/until  ref         t1      t2    t3 .. t7
#   package   fee     -        -           package id  period  name  -
#   discount  amount  percent  from/until  package id  target  -     -
#   service   -       -        -           service id  kind    login mac, circuit id,
#                                                              IPv4, pool, IPv6 prefix
#   phone     -       -        -           service id  number  SIP login, voice plan
def _or_null(column, type_):
    # A NULL says its type (PostgreSQL's UNION needs it); a column is left
    # alone (SQLite's CAST AS DATE would make a number of a date).
    return column if column is not None else cast(null(), type_)


def _columns(source, *, amount=None, percent=None, valid_from=None, valid_until=None,
             ref=None, texts=()):
    texts = list(texts) + [None] * (7 - len(texts))
    return [literal(source).label("source"), _or_null(amount, Money()).label("amount"),
            _or_null(percent, Money()).label("percent"),
            _or_null(valid_from, Date).label("valid_from"),
            _or_null(valid_until, Date).label("valid_until"),
            _or_null(ref, Integer).label("ref"),
            *[_or_null(text, String).label(f"t{n}") for n, text in enumerate(texts, 1)]]


_EXTRAS = CompiledSelect(union_all(
    select(*_columns("package", amount=_PACKAGE_TYPES.c.fee, ref=_PACKAGES.c.package_id,
                     texts=(_PACKAGE_TYPES.c.fee_period, _PACKAGE_TYPES.c.name)))
    .select_from(_PACKAGES.join(_PACKAGE_TYPES, _PACKAGE_TYPES.c.id == _PACKAGES.c.package_id))
    .where(_PACKAGES.c.account_id == bindparam("account_id"), _PACKAGES.c.active.is_(True)),
    select(*_columns("discount", amount=_DISCOUNTS.c.amount, percent=_DISCOUNTS.c.percent,
                     valid_from=_DISCOUNTS.c.valid_from, valid_until=_DISCOUNTS.c.valid_until,
                     ref=_DISCOUNTS.c.package_id, texts=(_DISCOUNTS.c.target,)))
    .where(_DISCOUNTS.c.account_id == bindparam("account_id"),
           _DISCOUNTS.c.revoked == false(),
           or_(_DISCOUNTS.c.valid_until.is_(None), _DISCOUNTS.c.valid_until > bindparam("today"))),
    select(*_columns("service", ref=_SERVICES.c.id,
                     texts=(_SERVICES.c.kind, _SERVICES.c.login, _SERVICES.c.mac,
                            _SERVICES.c.circuit_id, _SERVICES.c.static_ipv4, _SERVICES.c.pool,
                            _SERVICES.c.ipv6_prefix)))
    .where(_SERVICES.c.account_id == bindparam("account_id"), _SERVICES.c.active.is_(True)),
    select(*_columns("phone", ref=_PHONES.c.id,
                     texts=(_PHONES.c.number, _PHONES.c.login, _VOICE_PLANS.c.name)))
    .select_from(_PHONES.join(_VOICE_PLANS, _VOICE_PLANS.c.id == _PHONES.c.plan_id))
    .where(_PHONES.c.account_id == bindparam("account_id"), _PHONES.c.state == "active")))
# Services beyond this many are not listed on the overview.
MAX_SERVICES = 20


@dataclass(frozen=True)
class ServiceView:
    ref: int
    kind: str
    login: str | None
    mac: str | None
    circuit_id: str | None
    static_ipv4: str | None
    pool: str | None
    ipv6_prefix: str | None


@dataclass(frozen=True)
class PhoneView:
    """A phone number or SIP login of the account (rating.telephony)."""

    ref: int
    number: str | None
    login: str | None
    plan: str


@dataclass(frozen=True)
class PromisedOffer:
    amount: Decimal | None     # what the form offers; None: not offered
    max_amount: Decimal
    term_days: int
    reason: str | None = None  # why not (a rating.promised sentence)


@dataclass(frozen=True)
class Overview:
    forecast: runout.Forecast | None
    days_left: int | None
    package_names: tuple[str, ...]
    services: tuple[ServiceView, ...]
    # A restricted account: pay at least ``needed``; ``suggested`` also
    # pays a month of fees ahead.
    suggested: Decimal | None = None
    promised: PromisedOffer | None = None
    banner: banners.BannerView | None = None
    # The speed of each rung ahead (a throttle's), by profile.
    rung_rates: dict | None = None
    phones: tuple[PhoneView, ...] = ()

    @property
    def last_day(self) -> dt.date | None:
        """The last day of full service: the day before it runs out."""
        if self.forecast is None or self.forecast.runs_out_on is None:
            return None
        return self.forecast.runs_out_on - dt.timedelta(days=1)


def _cached(key: str, loader):
    cache = current_app.extensions.setdefault("abonent_overview", {})
    now = time.monotonic()
    found = cache.get(key)
    if found is not None and found[0] > now:
        return found[1]
    value = loader()
    cache[key] = (now + CACHE_TTL_SECONDS, value)
    return value


def _tariff_stops_in(session, tariff_id: int, ladder) -> frozenset[str]:
    """The ladder's verdicts under which the tariff's fee is not charged
    (rating.fees.unserved_profiles), per process for CACHE_TTL_SECONDS."""
    def load():
        tariff = session.get(Tariff, tariff_id)
        return frozenset(fees.unserved_profiles(tariff, ladder)) if tariff else frozenset()
    return _cached(f"stops:{tariff_id}:{hash(ladder)}", load)


def current_banners(session, now: dt.datetime):
    return _cached("banners", lambda: banners.upcoming(session, now))


def _turn() -> int:
    counter = current_app.extensions.setdefault("abonent_banner_turns", itertools.count())
    return next(counter)


def _promised_offer(session, account, needed: Decimal, now: dt.datetime,
                    settings) -> PromisedOffer:
    rules = promised.PromisedRules.from_settings(settings)
    # Whole roubles, at least what restores the service, at most the limit.
    amount = min(rules.max_amount, max(Decimal(1), needed.to_integral_value(ROUND_CEILING)))
    if needed > rules.max_amount:
        return PromisedOffer(None, rules.max_amount, rules.term_days)
    try:
        promised.check(session, account, amount, now, rules)
    except DomainError as error:
        return PromisedOffer(None, rules.max_amount, rules.term_days,
                             reason=labels.error_text(error))
    return PromisedOffer(amount, rules.max_amount, rules.term_days)


def _forecast(session, rows, account, ladder, today: dt.date) -> runout.Forecast | None:
    """rating.runout.forecast over the account's tariff and the packages and
    discounts among ``rows`` (_EXTRAS); None when nothing is charged for
    service (not active, or no tariff)."""
    if account.state != "active" or account.tariff is None:
        return None
    package_stop = frozenset(packages.UNSERVED_PROFILES)
    recurring = [runout.RecurringFee(account.tariff.fee, account.tariff.fee_period,
                                     stops_in=_tariff_stops_in(session, account.tariff_id,
                                                               ladder))]
    recurring += [runout.RecurringFee(row.amount, row.t1, "package", row.ref, package_stop)
                  for row in rows if row.source == "package"]
    discounts = [runout.DiscountTerms(row.t1, row.percent, row.amount, row.valid_from,
                                      row.valid_until, row.ref)
                 for row in rows if row.source == "discount"]
    return runout.forecast(balance=account.balance, credit_limit=account.credit_limit,
                           fees=recurring, discounts=discounts, today=today, ladder=ladder)


def forecast_for(session, reads, account, *, ladder, today: dt.date) -> runout.Forecast | None:
    """The forecast alone (the JSON API's account overview)."""
    rows = _EXTRAS.all(reads, {"account_id": account.id, "today": today})
    return _forecast(session, rows, account, ladder, today)


def build(session, reads, account, *, ladder, today: dt.date, now: dt.datetime, settings,
          may_pay: bool) -> Overview:
    """The overview's facts for ``account`` (a cabinet.queries.AccountView)."""
    rows = _EXTRAS.all(reads, {"account_id": account.id, "today": today})
    services = tuple(sorted((ServiceView(*row[5:]) for row in rows
                             if row.source == "service"), key=lambda s: s.ref))[:MAX_SERVICES]
    phones = tuple(sorted((PhoneView(row.ref, row.t1, row.t2, row.t3) for row in rows
                           if row.source == "phone"), key=lambda p: p.ref))[:MAX_SERVICES]
    shown = banners.for_account(current_banners(session, now), now=now,
                                tariff_id=account.tariff_id,
                                balance=account.balance)
    banner = banners.pick(shown, _turn())
    names = tuple(row.t2 for row in rows if row.source == "package")
    result = _forecast(session, rows, account, ladder, today)
    if result is None:
        return Overview(None, None, names, services, banner=banner, phones=phones)
    days_left = None if result.runs_out_on is None else (result.runs_out_on - today).days
    rates = {rung.profile: rung.rate_kbps or account.tariff.negative_rate_kbps
             for rung in ladder}
    if result.profile == "normal":
        return Overview(result, days_left, names, services, banner=banner, rung_rates=rates,
                        phones=phones)
    suggested = (result.needed + result.monthly_cost).to_integral_value(ROUND_CEILING)
    offer = _promised_offer(session, account, result.needed, now, settings) if may_pay \
        else None
    return Overview(result, days_left, names, services, suggested=suggested, promised=offer,
                    banner=banner, rung_rates=rates, phones=phones)
