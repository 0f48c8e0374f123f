"""Read models for the cabinet's pages: plain values, one query or two each.

Reads only; every change goes through rating/ (rating.cabinet_ops).
Every query is scoped by the logged-in account's id.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, func, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from aaa import archive
from aaa.models import Session as NetworkSession
from config.db import CompiledSelect
from rating import timewindows
from rating.traffic import usage as traffic_usage
from rating.models import (Account, AccountOption, CabinetUser, OperationLog, OptionType,
                           OrgGrant, Tariff)


@dataclass(frozen=True)
class TariffView:
    name: str
    fee: Decimal
    fee_period: str
    rate_down_kbps: int
    rate_up_kbps: int
    negative_rate_kbps: int
    windows: tuple = ()   # time-of-day windows (rating.timewindows)


@dataclass(frozen=True)
class AccountView:
    id: int
    number: str
    name: str
    kind: str
    state: str
    balance: Decimal
    credit_limit: Decimal
    profile: str
    email: str | None
    phone: str | None
    phone_landline: str | None
    tariff: TariffView | None
    frozen_until: dt.date | None = None
    # An ordered tariff change that has not started yet: the tariff's name.
    next_tariff: str | None = None
    next_tariff_from: dt.date | None = None
    tariff_id: int | None = None
    # Issue 21: a spending limit slows the line until then (rating.spending).
    limit_throttled_until: dt.datetime | None = None


@dataclass(frozen=True)
class SessionView:
    started_at: dt.datetime
    stopped_at: dt.datetime | None
    framed_ip: str | None
    # Seen from the subscriber: "down" is what the NAS sent to them
    # (Acct-Output-Octets), "up" what they sent (Acct-Input-Octets).
    octets_down: int
    octets_up: int
    terminate_cause: str | None

    @property
    def octets_total(self) -> int:
        return self.octets_down + self.octets_up


# Plain Core reads (tables, not ORM entities): building ORM objects and
# their identity map was most of the cost of the busiest pages. The
# dashboard's statements are built once, with bound parameters: building
# one costs about as much as running it.
_ACCOUNTS = Account.__table__
_TARIFFS = Tariff.__table__
_NEXT_TARIFFS = Tariff.__table__.alias("next_tariffs")
_USERS = CabinetUser.__table__
_SESSIONS = NetworkSession.__table__
_OPTIONS = AccountOption.__table__
_OPTION_TYPES = OptionType.__table__

_ACCOUNT_COLUMNS = (
    _ACCOUNTS.c.id, _ACCOUNTS.c.number, _ACCOUNTS.c.name, _ACCOUNTS.c.kind, _ACCOUNTS.c.state,
    _ACCOUNTS.c.balance, _ACCOUNTS.c.credit_limit, _ACCOUNTS.c.profile, _ACCOUNTS.c.email,
    _ACCOUNTS.c.phone, _ACCOUNTS.c.phone_landline, _ACCOUNTS.c.frozen_until,
    _ACCOUNTS.c.next_tariff_from, _NEXT_TARIFFS.c.name.label("next_tariff"),
    _ACCOUNTS.c.tariff_id, _TARIFFS.c.name.label("tariff_name"), _TARIFFS.c.fee,
    _TARIFFS.c.fee_period, _TARIFFS.c.rate_down_kbps, _TARIFFS.c.rate_up_kbps,
    _TARIFFS.c.negative_rate_kbps, _TARIFFS.c.rules.label("tariff_rules"),
    _ACCOUNTS.c.limit_throttled_until)
_ACCOUNT_JOINS = (_ACCOUNTS.outerjoin(_TARIFFS, _TARIFFS.c.id == _ACCOUNTS.c.tariff_id)
                  .outerjoin(_NEXT_TARIFFS, _NEXT_TARIFFS.c.id == _ACCOUNTS.c.next_tariff_id))


def _account_of(row) -> AccountView:
    return AccountView(
        id=row.id, number=row.number, name=row.name, kind=row.kind, state=row.state,
        balance=row.balance, credit_limit=row.credit_limit, profile=row.profile,
        email=row.email, phone=row.phone, phone_landline=row.phone_landline,
        tariff=None if row.tariff_id is None else TariffView(
            name=row.tariff_name, fee=row.fee, fee_period=row.fee_period,
            rate_down_kbps=row.rate_down_kbps, rate_up_kbps=row.rate_up_kbps,
            negative_rate_kbps=row.negative_rate_kbps,
            windows=timewindows.from_rules(row.tariff_rules)),
        frozen_until=row.frozen_until, next_tariff=row.next_tariff,
        next_tariff_from=row.next_tariff_from if row.next_tariff is not None else None,
        tariff_id=row.tariff_id, limit_throttled_until=row.limit_throttled_until)


_ACCOUNT = (select(*_ACCOUNT_COLUMNS).select_from(_ACCOUNT_JOINS)
            .where(_ACCOUNTS.c.id == bindparam("account_id")))


def account_view(db: Session, account_id: int) -> AccountView | None:
    row = db.execute(_ACCOUNT, {"account_id": account_id}).first()
    return None if row is None else _account_of(row)


@dataclass(frozen=True)
class LoginView:
    """A cabinet login and its account, read in one SELECT per request."""

    user_id: int
    account_id: int
    login: str
    role: str
    session_epoch: int
    account: AccountView
    # Issue 21: the login has rights on a customer's branches (rating.org);
    # without, its role on its own account decides, as before.
    has_grants: bool = False


_GRANTS = OrgGrant.__table__
_LOGIN = CompiledSelect(
    select(_USERS.c.id.label("user_id"), _USERS.c.account_id, _USERS.c.login,
           _USERS.c.role, _USERS.c.session_epoch,
           select(_GRANTS.c.id).where(_GRANTS.c.cabinet_user_id == _USERS.c.id)
           .exists().label("has_grants"), *_ACCOUNT_COLUMNS)
    .select_from(_USERS.join(_ACCOUNT_JOINS, _ACCOUNTS.c.id == _USERS.c.account_id))
    .where(_USERS.c.id == bindparam("user_id")))


def login_view(db: Session | Connection, user_id: int) -> LoginView | None:
    row = _LOGIN.first(db, {"user_id": user_id})
    if row is None:
        return None
    return LoginView(row.user_id, row.account_id, row.login, row.role, row.session_epoch,
                     _account_of(row), bool(row.has_grants))


@dataclass(frozen=True)
class ActiveOptionView:
    name: str
    kind: str
    rate_multiplier: int
    starts_at: dt.datetime
    ends_at: dt.datetime


_ACTIVE_OPTIONS = CompiledSelect(
    select(_OPTION_TYPES.c.name, _OPTION_TYPES.c.kind, _OPTION_TYPES.c.rate_multiplier,
           _OPTIONS.c.starts_at, _OPTIONS.c.ends_at)
    .select_from(_OPTIONS.join(_OPTION_TYPES, _OPTION_TYPES.c.id == _OPTIONS.c.option_type_id))
    .where(_OPTIONS.c.account_id == bindparam("account_id"), _OPTIONS.c.status == "active",
           _OPTIONS.c.ends_at > bindparam("now"))
    .order_by(_OPTIONS.c.ends_at))


def active_options(db: Session | Connection, account_id: int,
                   now: dt.datetime) -> list[ActiveOptionView]:
    """rating.options.active_options as plain values: not ended, soonest end first."""
    rows = _ACTIVE_OPTIONS.all(db, {"account_id": account_id, "now": now})
    return [ActiveOptionView(*row) for row in rows]


_RECENT_SESSIONS = CompiledSelect(
    select(_SESSIONS.c.started_at, _SESSIONS.c.stopped_at, _SESSIONS.c.framed_ip,
           _SESSIONS.c.octets_out, _SESSIONS.c.octets_in, _SESSIONS.c.terminate_cause)
    .where(_SESSIONS.c.account_id == bindparam("account_id"))
    .order_by(_SESSIONS.c.started_at.desc(), _SESSIONS.c.id.desc())
    .limit(bindparam("limit")))


def recent_sessions(db: Session | Connection, account_id: int,
                    limit: int = 10) -> list[SessionView]:
    rows = _RECENT_SESSIONS.all(db, {"account_id": account_id, "limit": limit})
    return [SessionView(*row) for row in rows]


def sessions_between(db: Session, account_id: int, start: dt.datetime, end: dt.datetime,
                     limit: int = 1000) -> list[SessionView]:
    """Sessions that overlap [start, end): started before the end and not
    stopped before the start; archived ones too (aaa.archive), so last
    year's sessions are where the subscriber looks for them."""
    both = archive.all_sessions()
    rows = db.execute(
        select(both.c.started_at, both.c.stopped_at, both.c.framed_ip,
               both.c.octets_out, both.c.octets_in, both.c.terminate_cause)
        .where(both.c.account_id == account_id, both.c.started_at < end,
               or_(both.c.stopped_at.is_(None), both.c.stopped_at >= start))
        .order_by(both.c.started_at.desc(), both.c.id.desc())
        .limit(limit)).all()
    return [SessionView(*row) for row in rows]


@dataclass(frozen=True)
class OperationView:
    created_at: dt.datetime
    actor: str
    action: str
    details: dict


def operations(db: Session, account_id: int, limit: int = 200) -> list[OperationView]:
    rows = db.execute(
        select(OperationLog.created_at, OperationLog.actor, OperationLog.action,
               OperationLog.details)
        .where(OperationLog.account_id == account_id)
        .order_by(OperationLog.created_at.desc(), OperationLog.id.desc()).limit(limit)).all()
    return [OperationView(*row) for row in rows]


def _hour(column, dialect: str):
    if dialect == "postgresql":
        return func.date_trunc("hour", column)
    return func.strftime("%Y-%m-%d %H:00:00", column)


def daily_traffic(db: Session, account_id: int, start: dt.datetime, end: dt.datetime,
                  timezone: str) -> dict[dt.date, tuple[int, int]]:
    """{local day: (octets down, octets up)} from the traffic rollups.

    Summed per hour in SQL (at most 24 rows a day reach Python), then per
    local day here, since SQLite has no time zones. Read through every
    traffic tier (rating.traffic.usage): hourly rows are hours already, and
    a daily row starts at the operator's midnight, so a month spanning the
    tiers' boundaries adds up each moment once. When both NetFlow and
    RADIUS rollups exist for the account, NetFlow's are used: counting both
    would double the volume.
    """
    dialect = db.get_bind().dialect.name
    rollups = traffic_usage()
    hour = _hour(rollups.c.interval_start, dialect).label("hour")
    # One pass over the rows, grouped by source too: a subscriber with
    # traffic in every interval has tens of thousands of rows in a month,
    # and reading them once for the sources and again for the sums doubled
    # the month graph's time.
    by_source: dict[str, list] = {}
    for source, hour_value, direction, octets in db.execute(
            select(rollups.c.source, hour, rollups.c.direction, func.sum(rollups.c.bytes))
            .where(rollups.c.account_id == account_id, rollups.c.interval_start >= start,
                   rollups.c.interval_start < end)
            .group_by(rollups.c.source, hour, rollups.c.direction)):
        by_source.setdefault(source, []).append((hour_value, direction, octets))
    if not by_source:
        return {}
    rows = by_source["netflow" if "netflow" in by_source else min(by_source)]
    zone = ZoneInfo(timezone)
    result: dict[dt.date, list[int]] = {}
    for hour_value, direction, octets in rows:
        if isinstance(hour_value, str):
            hour_value = dt.datetime.fromisoformat(hour_value)
        day = hour_value.replace(tzinfo=dt.timezone.utc).astimezone(zone).date()
        totals = result.setdefault(day, [0, 0])
        # "in" is toward the subscriber (collector.models): their download.
        totals[0 if direction == "in" else 1] += int(octets or 0)
    return {day: (down, up) for day, (down, up) in result.items()}
