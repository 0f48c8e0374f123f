"""A company's cabinet logins, managed by its owner: invite, role, remove.

Rules:
- only a company account has several logins with roles (a person's
  account has one login, its owner); only an owner of the account, on its
  own account, manages them (``Forbidden`` otherwise);
- an invitation makes the login at once, with a password no one knows, and
  a one-time link (a ``PasswordReset`` row with ``purpose="invite"``: only
  the link's SHA-256 is stored) by which the invitee sets a password; until
  then the login is "invited" and cannot log in; a new link replaces the
  old one;
- an owner changes another login's role or removes it, never their own
  (a slip would lock them out), and the company always keeps an owner who
  has accepted: the account's row is locked first, so two owners removing
  each other at once are decided one after the other and the second is
  refused;
- every change goes to the operation log with the acting login.

Like the other use cases, every function works in the caller's
transaction and raises ``DomainError`` with a sentence for the user.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from rating import api_tokens, oplog
from rating.cabinet_ops import normalize_email
from rating.choices import USER_ROLES
from rating.models import Account, CabinetUser, CabinetUserAccount
from rating.passwords import hash_password
from rating.selfservice import PasswordReset, token_hash
from rating.validate import DomainError, NotFound

INVITE_DAYS = 7
MAX_USERS = 100
_LOGIN = re.compile(r"^[\w.@+-]{1,64}$")


class Forbidden(DomainError):
    """The acting login may not manage this account's logins."""


@dataclass(frozen=True)
class CompanyUser:
    id: int
    login: str
    role: str
    email: str | None
    created_at: dt.datetime
    state: str  # "active", "invited" (the link still works) or "expired"
    invite_expires_at: dt.datetime | None


@dataclass(frozen=True)
class Invitation:
    """``token`` is the only clear copy of the link's secret: it goes into
    the mail (or is shown once to the owner) and nowhere else."""

    user_id: int
    login: str
    role: str
    recipient: str | None
    token: str
    expires_at: dt.datetime

    def __repr__(self) -> str:  # a stray log of the object must not leak the token
        return f"Invitation(user_id={self.user_id}, expires_at={self.expires_at})"


def check_login(value) -> str:
    value = (value or "").strip() if isinstance(value, str) else ""
    if not _LOGIN.match(value):
        raise DomainError("a login is 1 to 64 letters, digits or the signs . @ + - _")
    return value


def check_role(value) -> str:
    if value not in USER_ROLES:
        raise DomainError("choose the role from the list")
    return value


def _company(session: Session, account_id: int, by_user_id: int, *,
             lock: bool = False) -> Account:
    """The account, if ``by_user_id`` is one of its owners; with ``lock``
    its row is held until the commit (every change takes it first)."""
    account = session.get(Account, account_id, with_for_update={"of": Account} if lock else None,
                          populate_existing=lock)
    if account is None:
        raise NotFound("the account does not exist")
    actor = session.get(CabinetUser, by_user_id, populate_existing=lock)
    if actor is None or actor.account_id != account.id or actor.role != "owner":
        raise Forbidden("only the account's owner manages its cabinet users")
    if account.kind != "company":
        raise DomainError("cabinet users with roles are for company accounts")
    return account


def may_manage(session: Session, account_id: int, by_user_id: int) -> bool:
    try:
        _company(session, account_id, by_user_id)
    except DomainError:
        return False
    return True


def _invites(session: Session, user_ids) -> dict[int, list[PasswordReset]]:
    found: dict[int, list[PasswordReset]] = {}
    if user_ids:
        for row in session.scalars(select(PasswordReset).where(
                PasswordReset.user_id.in_(list(user_ids)),
                PasswordReset.purpose == "invite")):
            found.setdefault(row.user_id, []).append(row)
    return found


def _state(invites: list[PasswordReset], now: dt.datetime) -> tuple[str, dt.datetime | None]:
    """Invited while no link of the login was ever used (a password reset
    spends its invitations too): the login has no password of its own yet."""
    if not invites or any(row.used_at is not None for row in invites):
        return "active", None
    last = max(row.expires_at for row in invites)
    return ("invited" if last > now else "expired"), last


def listing(session: Session, account_id: int, now: dt.datetime) -> list[CompanyUser]:
    """The account's own logins (two queries, whatever their number), owners first."""
    users = list(session.scalars(select(CabinetUser).where(
        CabinetUser.account_id == account_id).order_by(CabinetUser.login)))
    invites = _invites(session, [u.id for u in users])
    rank = {role: n for n, role in enumerate(USER_ROLES)}
    rows = []
    for user in users:
        state, expires = _state(invites.get(user.id, []), now)
        rows.append(CompanyUser(user.id, user.login, user.role, user.email, user.created_at,
                                state, expires))
    return sorted(rows, key=lambda r: (rank.get(r.role, 9), r.login.lower()))


def _new_link(session: Session, user: CabinetUser, now: dt.datetime) -> tuple[str,
                                                                             dt.datetime]:
    token = secrets.token_urlsafe(32)
    expires_at = now + dt.timedelta(days=INVITE_DAYS)
    # An earlier link of the login stops working: the newest one counts.
    session.execute(update(PasswordReset).where(
        PasswordReset.user_id == user.id, PasswordReset.purpose == "invite",
        PasswordReset.used_at.is_(None), PasswordReset.expires_at > now)
        .values(expires_at=now).execution_options(synchronize_session=False))
    session.add(PasswordReset(user_id=user.id, token_hash=token_hash(token), created_at=now,
                              expires_at=expires_at, purpose="invite"))
    session.flush()
    return token, expires_at


def invite(session: Session, account_id: int, *, by_user_id: int, login: str | None,
           email: str | None, role: str, now: dt.datetime, actor: str) -> Invitation:
    """A new login of the company with ``role`` and a link to set its
    password. Without a login the e-mail is the login."""
    account = _company(session, account_id, by_user_id, lock=True)
    if account.state == "closed":
        raise DomainError("the account is closed")
    email = normalize_email(email)
    login = check_login(login if (login or "").strip() else email)
    role = check_role(role)
    if session.scalar(select(CabinetUser.id).where(CabinetUser.login == login)) is not None:
        raise DomainError("this login is taken; choose another")
    count = len(session.scalars(select(CabinetUser.id).where(
        CabinetUser.account_id == account.id)).all())
    if count >= MAX_USERS:
        raise DomainError("a company may have at most 100 cabinet users")
    # A password no one knows: the login cannot be used until the link is.
    user = CabinetUser(account_id=account.id, login=login, role=role, email=email,
                       password_hash=hash_password(secrets.token_urlsafe(32)))
    session.add(user)
    session.flush()
    token, expires_at = _new_link(session, user, now)
    oplog.record(session, account_id=account.id, actor=actor, action="cabinet_user.invite",
                 login=login, role=role, **({"email": email} if email else {}))
    return Invitation(user.id, login, role, email, token, expires_at)


def _member(session: Session, account: Account, user_id: int, by_user_id: int,
            what: str) -> CabinetUser:
    user = session.get(CabinetUser, user_id, populate_existing=True) \
        if isinstance(user_id, int) else None
    if user is None or user.account_id != account.id:
        raise NotFound("there is no such cabinet user of the account")
    if user.id == by_user_id:
        raise DomainError(f"you cannot {what} your own login; ask another owner")
    return user


def _keeps_an_owner(session: Session, account: Account, without: int, now: dt.datetime) -> None:
    owners = [u for u in listing(session, account.id, now)
              if u.role == "owner" and u.state == "active" and u.id != without]
    if not owners:
        raise DomainError("the company must keep at least one owner")


def new_invitation(session: Session, account_id: int, user_id: int, *, by_user_id: int,
                   now: dt.datetime, actor: str) -> Invitation:
    """A fresh link for a login that has not accepted yet (the mail was lost,
    the link expired); the old link stops working."""
    account = _company(session, account_id, by_user_id, lock=True)
    user = _member(session, account, user_id, by_user_id, "invite again")
    state, _expires = _state(_invites(session, [user.id]).get(user.id, []), now)
    if state == "active":
        raise DomainError("this user has already set a password")
    token, expires_at = _new_link(session, user, now)
    oplog.record(session, account_id=account.id, actor=actor, action="cabinet_user.invite",
                 login=user.login, role=user.role, **({"email": user.email} if user.email else {}))
    return Invitation(user.id, user.login, user.role, user.email, token, expires_at)


def change_role(session: Session, account_id: int, user_id: int, role: str, *,
                by_user_id: int, now: dt.datetime, actor: str) -> bool:
    """False if the login had the role already."""
    account = _company(session, account_id, by_user_id, lock=True)
    role = check_role(role)
    user = _member(session, account, user_id, by_user_id, "change the role of")
    if user.role == role:
        return False
    if user.role == "owner":
        _keeps_an_owner(session, account, user.id, now)
    old, user.role = user.role, role
    session.flush()
    # A token never outranks its login (rating.api_tokens lowers it when
    # used), so a lowered role needs no token revoked here.
    oplog.record(session, account_id=account.id, actor=actor, action="cabinet_user.role",
                 login=user.login, role=f"{old} → {role}")
    return True


def remove(session: Session, account_id: int, user_id: int, *, by_user_id: int,
           now: dt.datetime, actor: str) -> str:
    """Remove the login with its links, API tokens and family links; its
    sessions end at their next request (the loader finds no login).
    Returns the removed login."""
    account = _company(session, account_id, by_user_id, lock=True)
    user = _member(session, account, user_id, by_user_id, "remove")
    if user.role == "owner":
        _keeps_an_owner(session, account, user.id, now)
    login = user.login
    for model, column in ((CabinetUserAccount, CabinetUserAccount.cabinet_user_id),
                          (PasswordReset, PasswordReset.user_id),
                          (api_tokens.ApiToken, api_tokens.ApiToken.user_id)):
        session.execute(delete(model).where(column == user.id)
                        .execution_options(synchronize_session=False))
    session.delete(user)
    session.flush()
    oplog.record(session, account_id=account.id, actor=actor, action="cabinet_user.remove",
                 login=login)
    return login
