"""Voluntary freeze (добровольная блокировка): no fee while frozen, the
network suspended, back to active on the chosen day."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from config.db import money
from rating import oplog, policies
from rating.accounts import DomainError
from rating.models import Account
from rating.options import set_profile


@dataclass(frozen=True)
class FreezeRules:
    """The operator's freeze terms (settings ``[freeze]``)."""

    min_days: int = 7
    max_days: int = 90
    # Charged per frozen day instead of the tariff's fee.
    fee_per_day: Decimal = Decimal("0.00")

    @classmethod
    def from_settings(cls, settings) -> "FreezeRules":
        section = settings.section("freeze")
        return cls(min_days=section["min_days"], max_days=section["max_days"],
                   fee_per_day=money(section["fee_per_day"]))

    def first_until(self, today: dt.date) -> dt.date:
        """The earliest day a freeze started today may end on."""
        return today + dt.timedelta(days=self.min_days)

    def last_until(self, today: dt.date) -> dt.date:
        return today + dt.timedelta(days=self.max_days)


def freeze(session: Session, account: Account, until: dt.date, today: dt.date, *,
           min_days: int, max_days: int, actor: str = "subscriber") -> None:
    if account.state != "active":
        raise DomainError("only an active account can be frozen")
    days = (until - today).days
    if not min_days <= days <= max_days:
        raise DomainError(f"a freeze lasts from {min_days} to {max_days} days")
    account.state = "frozen"
    account.frozen_until = until
    set_profile(session, account, "suspended", "freeze")
    oplog.record(session, account_id=account.id, actor=actor, action="account.freeze",
                 until=until)


def unfreeze(session: Session, account: Account, *, actor: str = "subscriber") -> None:
    if account.state != "frozen":
        raise DomainError("the account is not frozen")
    account.state = "active"
    account.frozen_until = None
    set_profile(session, account, policies.decide(account.balance, account.credit_limit,
                                                   policies.ladder_in_force(session)),
                "unfreeze")
    oplog.record(session, account_id=account.id, actor=actor, action="account.unfreeze")


def thaw_due(session: Session, today: dt.date) -> int:
    """The scheduler's pass: end freezes whose last day has passed."""
    due = session.scalars(select(Account).where(Account.state == "frozen",
                                                Account.frozen_until <= today)).all()
    for account in due:
        unfreeze(session, account, actor="scheduler")
    return len(due)
