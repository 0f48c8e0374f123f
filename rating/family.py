"""Family accounts: one login watches and pays for a relative's account,
with the relative's consent.

Two ways to consent:
- the inviter names the account by its number; the account's holder sees
  the request in their own cabinet and accepts or declines it;
- the holder makes a one-time code in their cabinet and hands it over; the
  inviter enters the number and the code, and the link is made at once
  (only the code's SHA-256 is stored; it works once, for CODE_DAYS days).

The link is a ``CabinetUserAccount`` row with rights "view,pay" (rating.org):
the login sees the balance and tops it up, and changes nothing else. Why
not a grant: a grant covers a customer's branch and an account belongs to
one customer, while a grandmother's account may be watched by two children
of different households; a link is per (login, account), which is exactly
what a family relation is, and the account switcher already lists links.

Either side ends it: the inviter drops the link, or the holder removes a
watcher from their own account. Every step goes to the operation log of
the invited account, so its holder sees who asked, who accepted, who left.
Each function works in the caller's transaction and raises ``DomainError``
with a sentence for the user.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from rating import oplog
from rating.models import Account, CabinetUser, CabinetUserAccount, FamilyInvitation
from rating.selfservice import token_hash
from rating.validate import DomainError, NotFound

FAMILY_RIGHTS = "view,pay"
INVITE_DAYS = 14
CODE_DAYS = 1
# An inviter may have this many requests waiting at once: invitations are
# not a way to probe which account numbers exist.
MAX_PENDING = 10


class Forbidden(DomainError):
    """The acting login is neither side of this link or invitation."""


@dataclass(frozen=True)
class Watcher:
    """A family link seen from either side."""

    link_id: int
    user_id: int
    login: str
    account_id: int
    number: str
    name: str
    balance: object
    created_at: dt.datetime


def _holder(session: Session, user_id: int, account_id: int) -> CabinetUser:
    """The login, if it is the account's own owner login (who may consent)."""
    user = session.get(CabinetUser, user_id)
    if user is None or user.account_id != account_id or user.role != "owner":
        raise Forbidden("only the account's holder answers for it")
    return user


def _account_by_number(session: Session, number) -> Account:
    number = number.strip() if isinstance(number, str) else ""
    account = session.scalar(select(Account).where(Account.number == number)) if number else None
    if account is None or account.state == "closed":
        raise NotFound("no open account has this number")
    return account


def _linked(session: Session, user_id: int, account_id: int) -> bool:
    return session.scalar(select(CabinetUserAccount.id).where(
        CabinetUserAccount.cabinet_user_id == user_id,
        CabinetUserAccount.account_id == account_id)) is not None


def _check_target(session: Session, inviter: CabinetUser, account: Account) -> None:
    if account.id == inviter.account_id:
        raise DomainError("this is your own account")
    if _linked(session, inviter.id, account.id):
        raise DomainError("you already watch this account")


def invite(session: Session, inviter_user_id: int, number: str, now: dt.datetime, *,
           actor: str) -> FamilyInvitation:
    """Ask the holder of account ``number`` to let this login watch it."""
    inviter = session.get(CabinetUser, inviter_user_id)
    if inviter is None:
        raise NotFound("the cabinet user does not exist")
    account = _account_by_number(session, number)
    _check_target(session, inviter, account)
    pending = session.scalars(select(FamilyInvitation).where(
        FamilyInvitation.inviter_user_id == inviter.id, FamilyInvitation.state == "pending",
        FamilyInvitation.code_hash.is_(None), FamilyInvitation.expires_at > now)).all()
    if any(row.account_id == account.id for row in pending):
        raise DomainError("you have already asked; the holder has not answered yet")
    if len(pending) >= MAX_PENDING:
        raise DomainError("too many requests wait for an answer; wait for them first")
    row = FamilyInvitation(inviter_user_id=inviter.id, account_id=account.id, state="pending",
                           created_at=now, expires_at=now + dt.timedelta(days=INVITE_DAYS))
    session.add(row)
    session.flush()
    oplog.record(session, account_id=account.id, actor=actor, action="family.invite",
                 login=inviter.login, invitation=row.id)
    return row


def make_code(session: Session, holder_user_id: int, account_id: int, now: dt.datetime, *,
              actor: str) -> str:
    """A one-time code the holder hands to a relative; returned once, in clear.
    A new code replaces an unused one."""
    _holder(session, holder_user_id, account_id)
    session.execute(update(FamilyInvitation).where(
        FamilyInvitation.account_id == account_id, FamilyInvitation.code_hash.is_not(None),
        FamilyInvitation.state == "pending").values(state="cancelled", answered_at=now))
    code = "-".join(secrets.token_hex(3).upper() for _ in range(3))
    session.add(FamilyInvitation(account_id=account_id, code_hash=token_hash(code),
                                 state="pending", created_at=now,
                                 expires_at=now + dt.timedelta(days=CODE_DAYS)))
    oplog.record(session, account_id=account_id, actor=actor, action="family.code")
    return code


def redeem(session: Session, inviter_user_id: int, number: str, code: str,
           now: dt.datetime, *, actor: str) -> CabinetUserAccount:
    """The inviter enters the number and the holder's code: linked at once."""
    inviter = session.get(CabinetUser, inviter_user_id)
    if inviter is None:
        raise NotFound("the cabinet user does not exist")
    account = _account_by_number(session, number)
    code = (code or "").strip().upper() if isinstance(code, str) else ""
    row = session.scalar(select(FamilyInvitation).where(
        FamilyInvitation.code_hash == token_hash(code), FamilyInvitation.state == "pending",
        FamilyInvitation.account_id == account.id)) if code else None
    if row is None or row.expires_at <= now:
        # The same answer for a wrong, used or expired code.
        raise DomainError("the code is wrong or no longer valid; ask the holder for a new one")
    _check_target(session, inviter, account)
    row.state, row.answered_at, row.inviter_user_id = "accepted", now, inviter.id
    return _link(session, inviter, account, actor=actor, how="code", invitation=row.id)


def _link(session: Session, inviter: CabinetUser, account: Account, *, actor: str, how: str,
          invitation: int) -> CabinetUserAccount:
    link = CabinetUserAccount(cabinet_user_id=inviter.id, account_id=account.id,
                              rights=FAMILY_RIGHTS)
    session.add(link)
    session.flush()
    oplog.record(session, account_id=account.id, actor=actor, action="family.link",
                 login=inviter.login, how=how, invitation=invitation)
    return link


def answer(session: Session, invitation_id: int, holder_user_id: int, accept: bool,
           now: dt.datetime, *, actor: str) -> CabinetUserAccount | None:
    """The holder accepts (a link is made) or declines a pending request."""
    row = session.get(FamilyInvitation, invitation_id) if isinstance(invitation_id, int) \
        else None
    if row is None or row.code_hash is not None:
        raise NotFound("the invitation does not exist")
    _holder(session, holder_user_id, row.account_id)
    if row.state != "pending" or row.expires_at <= now:
        raise DomainError("the invitation has been answered or has expired")
    row.state, row.answered_at = ("accepted" if accept else "declined"), now
    if not accept:
        oplog.record(session, account_id=row.account_id, actor=actor, action="family.decline",
                     invitation=row.id)
        return None
    inviter = session.get(CabinetUser, row.inviter_user_id)
    account = session.get(Account, row.account_id)
    if _linked(session, inviter.id, account.id):
        return None
    return _link(session, inviter, account, actor=actor, how="request", invitation=row.id)


def end(session: Session, link_id: int, by_user_id: int, *, actor: str) -> None:
    """Either side ends a family link: the watcher, or the account's holder.
    Links an admin made without rights (issue 14) are the admin's to remove."""
    link = session.get(CabinetUserAccount, link_id) if isinstance(link_id, int) else None
    if link is None or link.rights is None:
        raise NotFound("the link does not exist")
    if link.cabinet_user_id != by_user_id:
        try:
            _holder(session, by_user_id, link.account_id)
        except Forbidden:
            raise NotFound("the link does not exist") from None
    watcher = session.get(CabinetUser, link.cabinet_user_id)
    oplog.record(session, account_id=link.account_id, actor=actor, action="family.end",
                 login=watcher.login if watcher else None)
    session.delete(link)
    session.flush()


def _watchers(session: Session, *conditions) -> list[Watcher]:
    rows = session.execute(
        select(CabinetUserAccount.id, CabinetUser.id, CabinetUser.login, Account.id,
               Account.number, Account.name, Account.balance, CabinetUserAccount.created_at)
        .join(CabinetUser, CabinetUser.id == CabinetUserAccount.cabinet_user_id)
        .join(Account, Account.id == CabinetUserAccount.account_id)
        .where(CabinetUserAccount.rights.is_not(None), *conditions)
        .order_by(Account.number, CabinetUser.login))
    return [Watcher(*row) for row in rows]


def watched_by(session: Session, user_id: int) -> list[Watcher]:
    """The relatives' accounts this login watches."""
    return _watchers(session, CabinetUserAccount.cabinet_user_id == user_id)


def watchers_of(session: Session, account_id: int) -> list[Watcher]:
    """Who watches this account."""
    return _watchers(session, CabinetUserAccount.account_id == account_id)


def incoming(session: Session, account_id: int, now: dt.datetime) -> list[tuple]:
    """(invitation, inviter login) waiting for this account's holder."""
    return list(session.execute(
        select(FamilyInvitation, CabinetUser.login)
        .join(CabinetUser, CabinetUser.id == FamilyInvitation.inviter_user_id)
        .where(FamilyInvitation.account_id == account_id, FamilyInvitation.state == "pending",
               FamilyInvitation.code_hash.is_(None), FamilyInvitation.expires_at > now)
        .order_by(FamilyInvitation.id)))


def outgoing(session: Session, user_id: int, now: dt.datetime) -> list[tuple]:
    """(invitation, account number) this login sent that wait for an answer."""
    return list(session.execute(
        select(FamilyInvitation, Account.number)
        .join(Account, Account.id == FamilyInvitation.account_id)
        .where(FamilyInvitation.inviter_user_id == user_id,
               FamilyInvitation.state == "pending", FamilyInvitation.code_hash.is_(None),
               FamilyInvitation.expires_at > now)
        .order_by(FamilyInvitation.id)))
