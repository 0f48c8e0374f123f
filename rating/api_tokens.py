"""Personal API tokens of cabinet users: the table and its use cases.

A token is shown to its user once, when it is made; the store keeps only
its SHA-256 (a token is 256 random bits, so a fast hash is enough: there
is nothing to guess) and a short prefix that is not secret, for telling
tokens apart in a list. A token's scope is a role no higher than its
user's role: an owner may make a read-only ("viewer") token for a script
that only reads. When the user's role is later lowered, the token never
gets more than the user now has.

Like the other use cases, these work inside the caller's transaction and
raise ``DomainError`` with a sentence for the user. The secret never
reaches the operation log, nor any log line.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from typing import Optional

from sqlalchemy import (CheckConstraint, DateTime, ForeignKey, Integer, String, func, select,
                        update)
from sqlalchemy.orm import Mapped, Session, mapped_column

from config.db import Base, utcnow
from rating import oplog
from rating.accounts import DomainError, NotFound
from rating.choices import USER_ROLES
from rating.models import CabinetUser

TOKEN_MARK = "abt_"          # tells an abonent token apart in a config file or a leak scan
PREFIX_LENGTH = 12           # "abt_" and 8 characters of the random part: shown, not secret
NAME_MAX_LENGTH = 100
MAX_ACTIVE_PER_USER = 20
MAX_LIFETIME_DAYS = 366
# Lowest first: a token's scope may be any role up to its user's.
ROLE_RANK = {"viewer": 0, "accountant": 1, "owner": 2}
assert set(ROLE_RANK) == set(USER_ROLES)


class ApiToken(Base):
    __tablename__ = "api_tokens"
    __table_args__ = (
        CheckConstraint("scope IN ('owner', 'accountant', 'viewer')", name="scope"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("cabinet_users.id", ondelete="CASCADE"),
                                         index=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX_LENGTH))
    prefix: Mapped[str] = mapped_column(String(16))
    # hex SHA-256 of the whole token; looked up by equality only.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scope: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    revoked_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)

    def status(self, now: dt.datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


@dataclass(frozen=True)
class Caller:
    """Who a valid token speaks for: a plain value, detached from the session."""

    token_id: int
    prefix: str
    user_id: int
    account_id: int
    login: str
    role: str  # the lower of the token's scope and the user's role now


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def allowed_scopes(role: str) -> tuple[str, ...]:
    """The scopes a user of this role may give a token, highest first."""
    return tuple(sorted((r for r in USER_ROLES if ROLE_RANK[r] <= ROLE_RANK[role]),
                        key=ROLE_RANK.get, reverse=True))


def lower_role(first: str, second: str) -> str:
    return first if ROLE_RANK[first] <= ROLE_RANK[second] else second


def create(session: Session, user_id: int, *, name: str, scope: str | None = None,
           expires_in_days: int | None = None, now: dt.datetime | None = None,
           actor: str) -> tuple[ApiToken, str]:
    """Make a token; returns the row and the secret, which is never stored."""
    now = now or utcnow()
    user = session.get(CabinetUser, user_id)
    if user is None:
        raise NotFound("cabinet user does not exist")
    name = (name or "").strip()
    if not name or len(name) > NAME_MAX_LENGTH or any(ord(c) < 32 for c in name):
        raise DomainError("a token needs a name of 1 to 100 characters")
    scope = scope or user.role
    if scope not in allowed_scopes(user.role):
        raise DomainError("a token cannot have more rights than its user")
    if expires_in_days is not None and not 1 <= expires_in_days <= MAX_LIFETIME_DAYS:
        raise DomainError("a token may live 1 to 366 days")
    active = session.scalar(select(func.count()).select_from(ApiToken).where(
        ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None),
        (ApiToken.expires_at.is_(None)) | (ApiToken.expires_at > now)))
    if active >= MAX_ACTIVE_PER_USER:
        raise DomainError("a login may have at most 20 active tokens; revoke one first")
    secret = TOKEN_MARK + secrets.token_urlsafe(32)
    token = ApiToken(user_id=user_id, name=name, prefix=secret[:PREFIX_LENGTH],
                     token_hash=digest(secret), scope=scope, created_at=now,
                     expires_at=(now + dt.timedelta(days=expires_in_days)
                                 if expires_in_days else None))
    session.add(token)
    session.flush()
    oplog.record(session, account_id=user.account_id, actor=actor, action="api_token.create",
                 token_name=name, prefix=token.prefix, scope=scope,
                 expires_at=token.expires_at)
    return token, secret


def revoke(session: Session, user_id: int, token_id: int, *, now: dt.datetime | None = None,
           actor: str) -> bool:
    """Revoke one of the user's own tokens; False when it was revoked already.

    Another user's token is "not found", so ids cannot be probed.
    """
    token = session.get(ApiToken, token_id)
    if token is None or token.user_id != user_id:
        raise NotFound("no such token")
    if token.revoked_at is not None:
        return False
    token.revoked_at = now or utcnow()
    session.flush()
    account_id = session.scalar(select(CabinetUser.account_id)
                                .where(CabinetUser.id == user_id))
    oplog.record(session, account_id=account_id, actor=actor, action="api_token.revoke",
                 token_name=token.name, prefix=token.prefix)
    return True


def revoke_all(session: Session, user_id: int, *, now: dt.datetime | None = None,
               actor: str) -> int:
    """Revoke every live token of the user: what a stolen session made must
    not outlive a password change, a reset or "log out everywhere". One
    UPDATE; returns how many were revoked (written to the operation log)."""
    now = now or utcnow()
    revoked = session.execute(
        update(ApiToken).where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=now).execution_options(synchronize_session=False)).rowcount
    if revoked:
        for token in list(session.identity_map.values()):
            if isinstance(token, ApiToken) and token.user_id == user_id:
                session.expire(token)
        account_id = session.scalar(select(CabinetUser.account_id)
                                    .where(CabinetUser.id == user_id))
        oplog.record(session, account_id=account_id, actor=actor,
                     action="api_token.revoke_all", tokens=revoked)
    return revoked


def tokens_of(session: Session, user_id: int) -> list[ApiToken]:
    return list(session.scalars(select(ApiToken).where(ApiToken.user_id == user_id)
                                .order_by(ApiToken.created_at.desc(), ApiToken.id.desc())))


def authenticate(session: Session, secret: str, now: dt.datetime | None = None
                 ) -> Caller | None:
    """The caller a presented token stands for, or None (unknown, revoked,
    expired). One indexed read; changes nothing."""
    if not secret.startswith(TOKEN_MARK) or len(secret) > 200:
        return None
    now = now or utcnow()
    row = session.execute(
        select(ApiToken.id, ApiToken.prefix, ApiToken.scope, ApiToken.expires_at,
               ApiToken.revoked_at, CabinetUser.id, CabinetUser.account_id,
               CabinetUser.login, CabinetUser.role)
        .join(CabinetUser, CabinetUser.id == ApiToken.user_id)
        .where(ApiToken.token_hash == digest(secret))).first()
    if row is None:
        return None
    token_id, prefix, scope, expires_at, revoked_at, user_id, account_id, login, role = row
    if revoked_at is not None or (expires_at is not None and expires_at <= now):
        return None
    return Caller(token_id, prefix, user_id, account_id, login, lower_role(scope, role))
