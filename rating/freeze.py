"""Voluntary freeze (добровольная блокировка): no fee while frozen, the
network suspended, back to active on the chosen day."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from rating import oplog, policies
from rating.accounts import DomainError
from rating.models import Account
from rating.options import set_profile


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
    set_profile(session, account, policies.decide(account.balance, account.credit_limit),
                "unfreeze")
    oplog.record(session, account_id=account.id, actor=actor, action="account.unfreeze")


def thaw_due(session: Session, today: dt.date) -> int:
    """The scheduler's pass: end freezes whose last day has passed."""
    due = session.scalars(select(Account).where(Account.state == "frozen",
                                                Account.frozen_until <= today)).all()
    for account in due:
        unfreeze(session, account, actor="scheduler")
    return len(due)
