"""Tariff change: a preview of what it costs and when it starts, then the
change now or from the next period, under the tariff's frequency limit."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from rating import oplog
from rating.accounts import DomainError, find_tariff
from rating.models import Account, ProfileChange, Tariff
from rating.tariffs import daily_fee, days_in_month


@dataclass(frozen=True)
class Preview:
    tariff: str
    starts_on: dt.date
    when: str  # now / next_period
    fee_per_day: Decimal | None
    fee_per_month: Decimal
    charged_on_start: Decimal
    rate_down_kbps: int
    rate_up_kbps: int


def _first_of_next_month(day: dt.date) -> dt.date:
    return day.replace(day=1) + dt.timedelta(days=days_in_month(day))


def allowed_from(account: Account, tariff: Tariff) -> dt.datetime | None:
    """When the frequency limit lets this account switch again (None: now)."""
    if not tariff.switch_min_days or account.tariff_changed_at is None:
        return None
    return account.tariff_changed_at + dt.timedelta(days=tariff.switch_min_days)


def preview(session: Session, account: Account, tariff_name: str, when: str,
            today: dt.date) -> Preview:
    tariff = find_tariff(session, tariff_name)
    if tariff.archived:
        raise DomainError(f"tariff {tariff_name!r} is not offered any more")
    if account.tariff_id == tariff.id:
        raise DomainError("this is the current tariff")
    if when not in ("now", "next_period"):
        raise DomainError("a change starts now or from the next period")
    # Today's fee is charged under the current tariff: a change "now" is
    # billed from tomorrow, so no day is charged twice.
    starts_on = today + dt.timedelta(days=1) if when == "now" else _first_of_next_month(today)
    per_day = daily_fee(tariff.fee, starts_on) if tariff.fee_period == "daily" else None
    return Preview(tariff=tariff.name, starts_on=starts_on, when=when, fee_per_day=per_day,
                   fee_per_month=tariff.fee,
                   charged_on_start=per_day if per_day is not None else tariff.fee,
                   rate_down_kbps=tariff.rate_down_kbps, rate_up_kbps=tariff.rate_up_kbps)


def change(session: Session, account: Account, tariff_name: str, when: str,
           now: dt.datetime, today: dt.date, *, actor: str = "subscriber") -> Preview:
    plan = preview(session, account, tariff_name, when, today)
    tariff = find_tariff(session, tariff_name)
    limit = allowed_from(account, tariff)
    if limit is not None and now < limit:
        raise DomainError(f"the tariff can be changed again from {limit:%Y-%m-%d}")
    account.next_tariff_id = tariff.id
    account.next_tariff_from = plan.starts_on
    account.tariff_changed_at = now
    oplog.record(session, account_id=account.id, actor=actor, action="tariff.change",
                 tariff=tariff.name, starts_on=plan.starts_on)
    return plan


def apply_due(session: Session, today: dt.date) -> int:
    """Switch accounts whose ordered change starts today or earlier (run
    before the fee run, so the day is charged at the new tariff)."""
    due = session.scalars(select(Account).where(Account.next_tariff_id.is_not(None),
                                                Account.next_tariff_from <= today)).all()
    for account in due:
        account.tariff_id = account.next_tariff_id
        account.next_tariff_id = None
        account.next_tariff_from = None
        account.version += 1
        # Same profile, new speeds: the live sessions must hear of it.
        session.add(ProfileChange(account_id=account.id, profile=account.profile,
                                  reason="tariff"))
        oplog.record(session, account_id=account.id, actor="scheduler",
                     action="tariff.applied", tariff_id=account.tariff_id)
    return len(due)
