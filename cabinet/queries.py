"""Read models for the cabinet's pages: plain values, one query or two each.

Reads only; every change goes through rating/ (rating.cabinet_ops).
Every query is scoped by the logged-in account's id.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from zoneinfo import ZoneInfo

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from aaa.models import Session as NetworkSession
from collector.models import TrafficRollup
from rating.models import Account, OperationLog


@dataclass(frozen=True)
class TariffView:
    name: str
    fee: Decimal
    fee_period: str
    rate_down_kbps: int
    rate_up_kbps: int
    negative_rate_kbps: int


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


def account_view(db: Session, account_id: int) -> AccountView | None:
    account = db.get(Account, account_id)
    if account is None:
        return None
    tariff = account.tariff
    return AccountView(
        id=account.id, number=account.number, name=account.name, kind=account.kind,
        state=account.state, balance=account.balance, credit_limit=account.credit_limit,
        profile=account.profile, email=account.email, phone=account.phone,
        phone_landline=account.phone_landline,
        tariff=None if tariff is None else TariffView(
            name=tariff.name, fee=tariff.fee, fee_period=tariff.fee_period,
            rate_down_kbps=tariff.rate_down_kbps, rate_up_kbps=tariff.rate_up_kbps,
            negative_rate_kbps=tariff.negative_rate_kbps))


def recent_sessions(db: Session, account_id: int, limit: int = 10) -> list[SessionView]:
    rows = db.execute(
        select(NetworkSession.started_at, NetworkSession.stopped_at, NetworkSession.framed_ip,
               NetworkSession.octets_out, NetworkSession.octets_in,
               NetworkSession.terminate_cause)
        .where(NetworkSession.account_id == account_id)
        .order_by(NetworkSession.started_at.desc(), NetworkSession.id.desc())
        .limit(limit)).all()
    return [SessionView(*row) for row in rows]


def sessions_between(db: Session, account_id: int, start: dt.datetime, end: dt.datetime,
                     limit: int = 1000) -> list[SessionView]:
    """Sessions that overlap [start, end): started before the end and not
    stopped before the start."""
    rows = db.execute(
        select(NetworkSession.started_at, NetworkSession.stopped_at, NetworkSession.framed_ip,
               NetworkSession.octets_out, NetworkSession.octets_in,
               NetworkSession.terminate_cause)
        .where(NetworkSession.account_id == account_id, NetworkSession.started_at < end,
               or_(NetworkSession.stopped_at.is_(None), NetworkSession.stopped_at >= start))
        .order_by(NetworkSession.started_at.desc(), NetworkSession.id.desc())
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
    local day here, since SQLite has no time zones. When both NetFlow and
    RADIUS rollups exist for the account, NetFlow's are used: counting both
    would double the volume.
    """
    dialect = db.get_bind().dialect.name
    hour = _hour(TrafficRollup.interval_start, dialect).label("hour")
    where = (TrafficRollup.account_id == account_id, TrafficRollup.interval_start >= start,
             TrafficRollup.interval_start < end)
    sources = set(db.scalars(select(TrafficRollup.source).where(*where).distinct()))
    if not sources:
        return {}
    source = "netflow" if "netflow" in sources else sorted(sources)[0]
    rows = db.execute(
        select(hour, TrafficRollup.direction, func.sum(TrafficRollup.bytes))
        .where(*where, TrafficRollup.source == source)
        .group_by(hour, TrafficRollup.direction)).all()
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
