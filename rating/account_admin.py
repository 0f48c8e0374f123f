"""An admin's changes to an account: edit, block, unblock, close.

Each works in the caller's transaction, validates everything before it
changes anything (a DomainError leaves the account as it was) and writes
one operation-log row with the old and new values. A change that can
alter what the network gives (a block, a credit limit, a tariff) goes out
through the profile-change outbox (``rating.options.touch``): the
enforcer compares the open sessions with ``rating.profile.desired_profile``
and sends CoA or Disconnect, the same path as a suspension for debt.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy.orm import Session

from rating import fees, oplog, policies, tariff_change, validate
from rating.accounts import find_tariff
from rating.choices import ACCOUNT_KINDS
from rating.models import Account
from rating.options import touch
from rating.validate import DomainError

_UNSET = object()


@dataclass
class Edit:
    """What to change; a field left ``_UNSET`` stays as it is. An empty
    string for email or phone removes it."""

    name: object = _UNSET
    kind: object = _UNSET
    email: object = _UNSET
    phone: object = _UNSET
    credit_limit: object = _UNSET
    tariff: object = _UNSET
    tariff_when: str = "now"


def _shown(value):
    return None if value is None else str(value)


def edit(session: Session, account: Account, change: Edit, *, actor: str,
         now: dt.datetime, today: dt.date) -> dict[str, tuple]:
    """Apply ``change``; returns {field: (old, new)} of what changed (a
    tariff change is scheduled through rating.tariff_change and reported
    with the day it starts)."""
    if account.state == "closed":
        raise DomainError(f"account {account.number} is closed")
    new: dict[str, object] = {}
    if change.name is not _UNSET:
        new["name"] = validate.name(change.name, "account name")
    if change.kind is not _UNSET:
        if change.kind not in ACCOUNT_KINDS:
            raise DomainError(f"account kind must be one of {', '.join(ACCOUNT_KINDS)}")
        new["kind"] = change.kind
    if change.email is not _UNSET:
        new["email"] = validate.email(change.email)
    if change.phone is not _UNSET:
        new["phone"] = validate.phone(change.phone)
    if change.credit_limit is not _UNSET:
        new["credit_limit"] = validate.amount(change.credit_limit, "credit limit")
    tariff = None
    if change.tariff is not _UNSET:
        name = validate.name(change.tariff, "tariff name", 100)
        tariff = find_tariff(session, name)
        if change.tariff_when not in ("now", "next_period"):
            raise DomainError("a tariff change starts now or from the next period")
        if tariff.id == account.tariff_id:
            raise DomainError(f"account {account.number} already has tariff {tariff.name!r}")
    changed: dict[str, tuple] = {}
    for field, value in new.items():
        old = getattr(account, field)
        if old != value:
            changed[field] = (old, value)
            setattr(account, field, value)
    if tariff is not None:
        old_name = account.tariff.name if account.tariff else None
        if account.tariff_id is None:
            # No tariff yet: nothing to pro-rate, it applies at once.
            account.tariff_id = tariff.id
            account.tariff_changed_at = now
            session.flush()
            session.refresh(account, ["tariff"])
            changed["tariff"] = (old_name, tariff.name)
            touch(session, account, "tariff")
        else:
            if tariff.archived:
                raise DomainError(f"tariff {tariff.name!r} is not offered any more")
            plan = tariff_change.change(session, account, tariff.name, change.tariff_when,
                                        now, today, actor=actor)
            changed["tariff"] = (old_name, f"{tariff.name} from {plan.starts_on.isoformat()}")
    if not changed:
        raise DomainError("nothing changes: the account already has these values")
    if "credit_limit" in changed:
        # The ladder's verdict depends on it: a higher limit can lift a
        # suspension at once, a lower one can bring it.
        touch(session, account, "credit_limit")
        session.flush()
        fees.apply_policies(session, account.id, account.id + 1, reason="credit_limit")
    session.flush()
    oplog.record(session, account_id=account.id, actor=actor, action="account.edit",
                 **{field: f"{_shown(old)} -> {_shown(value)}"
                    for field, (old, value) in changed.items()})
    return changed


def block(session: Session, account: Account, *, reason: str, actor: str) -> None:
    """An admin block: RADIUS refuses the subscriber (account-blocked) and
    the enforcer disconnects live sessions (desired profile "blocked")."""
    reason = validate.text(reason, "reason", maximum=500)
    if account.state == "blocked":
        raise DomainError(f"account {account.number} is already blocked")
    if account.state == "closed":
        raise DomainError(f"account {account.number} is closed")
    old = account.state
    account.state = "blocked"
    account.frozen_until = None
    touch(session, account, "block")
    oplog.record(session, account_id=account.id, actor=actor, action="account.block",
                 state=f"{old} -> blocked", reason=reason)


def unblock(session: Session, account: Account, *, reason: str | None, actor: str,
            ladder: tuple = policies.DEFAULT_LADDER) -> None:
    reason = validate.text(reason, "reason", maximum=500, required=False)
    if account.state != "blocked":
        raise DomainError(f"account {account.number} is not blocked (it is {account.state})")
    account.state = "active"
    account.profile = policies.decide(account.balance, account.credit_limit, ladder)
    touch(session, account, "unblock")
    oplog.record(session, account_id=account.id, actor=actor, action="account.unblock",
                 state="blocked -> active", reason=reason)


def close(session: Session, account: Account, *, force: bool, reason: str | None,
          actor: str) -> None:
    """Close the account (the caller deactivates its services in the same
    transaction). A non-zero balance is money owed one way or the other:
    refused unless ``force``."""
    reason = validate.text(reason, "reason", maximum=500, required=False)
    if account.state == "closed":
        raise DomainError(f"account {account.number} is already closed")
    if account.balance != Decimal("0") and not force:
        raise DomainError(f"account {account.number} has a balance of {account.balance}; "
                          f"settle it first or give --force")
    old = account.state
    account.state = "closed"
    account.frozen_until = None
    account.next_tariff_id = None
    account.next_tariff_from = None
    touch(session, account, "close")
    oplog.record(session, account_id=account.id, actor=actor, action="account.close",
                 state=f"{old} -> closed", balance=account.balance, forced=force,
                 reason=reason)
