"""Self-service use cases: password reset by e-mail and notification settings.

Like rating.cabinet_ops, every function works inside the caller's
transaction (never commits) and raises ``DomainError`` with a sentence for
the user; every change goes to the operation log.

A reset token exists in clear only in the mail and in the link the
subscriber follows: the table keeps its SHA-256, so a copy of the database
(or a backup) cannot be used to take over a login. A token works once and
until ``expires_at``; using it ends every session of the login.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass
from decimal import Decimal
from typing import Iterable, Optional

from sqlalchemy import DateTime, ForeignKey, Integer, String, case, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from config.db import Base, utcnow
from rating import api_tokens, cabinet_ops, oplog
from rating.accounts import DomainError, NotFound
from rating.models import Account, CabinetUser
from rating.passwords import hash_password, verify_password
from rating import validate

# A second link is not mailed within this time of the last one (a mail
# bomb through the form costs the attacker one mail a minute per login).
RESEND_AFTER = dt.timedelta(seconds=60)
IDENTIFIER_MAX_LENGTH = 64


class PasswordReset(Base):
    """A password reset link: only the SHA-256 of its token is stored."""

    __tablename__ = "password_resets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("cabinet_users.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)
    used_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    # "reset" (the forgotten-password mail) or "invite" (a company owner
    # invited a new login, rating.company_users): each page takes its own.
    purpose: Mapped[str] = mapped_column(String(16), default="reset", server_default="reset")


class ResetLinkError(DomainError):
    """The link itself is no good (unknown, used, expired): a new one is needed."""


@dataclass(frozen=True)
class ResetMail:
    """What the mail needs. ``token`` is the only clear copy: it goes into
    the mail and nowhere else (not the database, not a log)."""

    token: str
    recipient: str
    user_id: int
    login: str
    account_number: str
    expires_at: dt.datetime

    def __repr__(self) -> str:  # a stray log of the object must not leak the token
        return f"ResetMail(user_id={self.user_id}, expires_at={self.expires_at})"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def find_user(session: Session, identifier: str) -> CabinetUser | None:
    """A cabinet login by its name, else the owner login of an account number."""
    identifier = (identifier or "").strip()
    if not identifier or len(identifier) > IDENTIFIER_MAX_LENGTH:
        return None
    user = session.scalar(select(CabinetUser).where(CabinetUser.login == identifier))
    if user is not None:
        return user
    account_id = session.scalar(select(Account.id).where(Account.number == identifier))
    if account_id is None:
        return None
    return session.scalars(
        select(CabinetUser).where(CabinetUser.account_id == account_id)
        .order_by(case((CabinetUser.role == "owner", 0), else_=1), CabinetUser.id)).first()


def request_reset(session: Session, identifier: str, now: dt.datetime, *, minutes: int,
                  actor: str) -> ResetMail | None:
    """Make a reset link for the login or account number, if it exists and
    has an e-mail. None otherwise; the caller must answer the same either way."""
    if minutes < 1:
        raise DomainError("a reset link must live at least one minute")
    user = find_user(session, identifier)
    if user is None:
        return None
    recipient = user.email or user.account.email
    if not recipient:
        return None
    recent = session.scalar(select(PasswordReset.id).where(
        PasswordReset.user_id == user.id, PasswordReset.used_at.is_(None),
        PasswordReset.created_at > now - RESEND_AFTER).limit(1))
    if recent is not None:
        return None
    token = secrets.token_urlsafe(32)
    expires_at = now + dt.timedelta(minutes=minutes)
    session.add(PasswordReset(user_id=user.id, token_hash=token_hash(token), created_at=now,
                              expires_at=expires_at))
    session.flush()
    oplog.record(session, account_id=user.account_id, actor=actor,
                 action="password_reset.request", login=user.login)
    return ResetMail(token=token, recipient=recipient, user_id=user.id, login=user.login,
                     account_number=user.account.number, expires_at=expires_at)


# What a refused link is called, by purpose: the sentence the page shows.
LINK_NAMES = {"reset": "password reset link", "invite": "invitation link"}


def check_reset(session: Session, token: str, now: dt.datetime, *,
                purpose: str = "reset") -> PasswordReset:
    """The link's row if the token may still be used for ``purpose``;
    ResetLinkError if not (a link made for the other purpose is not valid)."""
    name = LINK_NAMES[purpose]
    row = None
    if token and len(token) <= 128:
        row = session.scalar(select(PasswordReset).where(
            PasswordReset.token_hash == token_hash(token)))
    if row is None or row.purpose != purpose:
        raise ResetLinkError(f"this {name} is not valid")
    if row.used_at is not None:
        raise ResetLinkError(f"this {name} has already been used")
    if row.expires_at <= now:
        raise ResetLinkError(f"this {name} has expired")
    return row


def reset_login(session: Session, token: str, now: dt.datetime, *,
                purpose: str = "reset") -> str:
    """The login a valid link resets (shown on the form)."""
    row = check_reset(session, token, now, purpose=purpose)
    return session.scalar(select(CabinetUser.login).where(CabinetUser.id == row.user_id))


def check_new_password(user: CabinetUser, new: str) -> None:
    """rating.cabinet_ops' rules for a new password (same sentences)."""
    if not cabinet_ops.PASSWORD_MIN_LENGTH <= len(new) <= cabinet_ops.PASSWORD_MAX_LENGTH:
        raise DomainError("the new password must be 8 to 256 characters long")
    if new.strip().lower() == user.login.lower():
        raise DomainError("the password must not be the login")
    if verify_password(new, user.password_hash):
        raise DomainError("the new password must differ from the current one")


def complete_reset(session: Session, token: str, new: str, now: dt.datetime, *,
                   actor: str, purpose: str = "reset") -> CabinetUser:
    """Set the new password, spend the token (and any other open link of
    the login) and end every session of the login. An invitation's link
    (``purpose="invite"``) is logged as its acceptance."""
    row = check_reset(session, token, now, purpose=purpose)
    user = session.get(CabinetUser, row.user_id)
    if user is None:
        raise NotFound("cabinet user does not exist")
    check_new_password(user, new)
    # One atomic claim: two tabs sending the form at once set it once.
    claimed = session.execute(
        update(PasswordReset)
        .where(PasswordReset.id == row.id, PasswordReset.used_at.is_(None),
               PasswordReset.expires_at > now)
        .values(used_at=now).execution_options(synchronize_session=False)).rowcount
    if claimed != 1:
        raise ResetLinkError(f"this {LINK_NAMES[purpose]} has already been used")
    session.execute(
        update(PasswordReset)
        .where(PasswordReset.user_id == user.id, PasswordReset.used_at.is_(None))
        .values(used_at=now).execution_options(synchronize_session=False))
    session.expire(row)
    cabinet_ops._bump_epoch(session, user.id, password_hash=hash_password(new))
    oplog.record(session, account_id=user.account_id, actor=actor,
                 action="password.reset" if purpose == "reset" else "cabinet_user.accept",
                 login=user.login)
    api_tokens.revoke_all(session, user.id, now=now, actor=actor)
    return user


# -- notification settings -------------------------------------------------------

NOTIFY_CHANNELS = ("email", "sms", "telegram")
THRESHOLD_MAX = Decimal("100000.00")
# A Telegram chat id is an integer; groups and channels are negative.
_CHAT_ID = re.compile(r"^-?[0-9]{1,20}$")


@dataclass(frozen=True)
class NotificationSettings:
    channels: tuple[str, ...]
    low_balance_threshold: Decimal | None
    telegram_chat_id: str | None
    email: str | None
    phone: str | None


def notification_settings(session: Session, account_id: int) -> NotificationSettings:
    account = session.get(Account, account_id)
    if account is None:
        raise NotFound(f"account {account_id} does not exist")
    return NotificationSettings(tuple(account.notify_channels or ()),
                                account.low_balance_threshold, account.telegram_chat_id,
                                account.email, account.phone)


def _threshold(value) -> Decimal | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        amount = validate.amount(value, negative_ok=True)
    except (ValueError, TypeError, ArithmeticError):
        raise DomainError("the low-balance threshold must be an amount like 100 or 99.50") \
            from None
    if not Decimal(0) <= amount <= THRESHOLD_MAX:
        raise DomainError("the low-balance threshold must be between 0 and 100000")
    return amount


def update_notification_settings(session: Session, account_id: int, *,
                                 channels: Iterable[str], low_balance_threshold,
                                 telegram_chat_id: str | None, actor: str) -> dict:
    """Set the channels, the low-balance threshold and the Telegram chat;
    returns {field: (old, new)} of what changed."""
    account = session.get(Account, account_id)
    if account is None:
        raise NotFound(f"account {account_id} does not exist")
    wanted_channels = set(channels or ())
    unknown = wanted_channels - set(NOTIFY_CHANNELS)
    if unknown:
        raise DomainError("a notification channel must be e-mail, SMS or Telegram")
    chosen = [name for name in NOTIFY_CHANNELS if name in wanted_channels]
    chat = (telegram_chat_id or "").strip() or None
    if chat is not None and not _CHAT_ID.match(chat):
        raise DomainError("a Telegram chat id is a number like 123456789")
    threshold = _threshold(low_balance_threshold)
    if "email" in chosen and not account.email:
        raise DomainError("notices by e-mail need an e-mail address in the contacts")
    if "sms" in chosen and not account.phone:
        raise DomainError("notices by SMS need a mobile phone number in the contacts")
    if "telegram" in chosen and chat is None:
        raise DomainError("notices in Telegram need a Telegram chat id")
    old_channels = list(account.notify_channels or [])
    changed = {}
    if old_channels != chosen:
        changed["channels"] = (", ".join(old_channels), ", ".join(chosen))
        account.notify_channels = chosen
    if account.low_balance_threshold != threshold:
        changed["low_balance_threshold"] = (account.low_balance_threshold, threshold)
        account.low_balance_threshold = threshold
    if account.telegram_chat_id != chat:
        changed["telegram_chat_id"] = (account.telegram_chat_id, chat)
        account.telegram_chat_id = chat
    _record_notify_changes(session, account_id, actor, changed)
    return changed


def _record_notify_changes(session: Session, account_id: int, actor: str, changed: dict) -> None:
    """Audit {field: (old, new)} of a notice setting as "old → new" ('—' for none)."""
    if changed:
        session.flush()
        oplog.record(session, account_id=account_id, actor=actor, action="notify.update",
                     **{name: f"{old if old not in (None, '') else '—'} → "
                              f"{new if new not in (None, '') else '—'}"
                        for name, (old, new) in changed.items()})


# -- which notices on which channel, and their language (issue 16) ---------------

@dataclass(frozen=True)
class NoticeMatrix:
    kinds: tuple[str, ...]
    channels: tuple[str, ...]       # the channels the account chose
    on: frozenset[str]              # "kind:channel" pairs that are on
    language: str | None


def notice_matrix(session: Session, account_id: int) -> NoticeMatrix:
    from rating import notify
    account = session.get(Account, account_id)
    if account is None:
        raise NotFound(f"account {account_id} does not exist")
    channels = tuple(c for c in NOTIFY_CHANNELS if c in (account.notify_channels or ()))
    off = set(account.notify_off or ())
    on = frozenset(f"{kind}:{channel}" for kind in notify.KINDS for channel in channels
                   if f"{kind}:{channel}" not in off)
    return NoticeMatrix(notify.KINDS, channels, on, account.language)


def update_notice_matrix(session: Session, account_id: int, *, on: Iterable[str],
                         language: str | None, actor: str) -> dict:
    """Turn (kind, channel) pairs on or off and set the notices' language;
    returns {field: (old, new)} of what changed."""
    from rating import notify, notify_texts
    account = session.get(Account, account_id)
    if account is None:
        raise NotFound(f"account {account_id} does not exist")
    # Only the channels the account uses are on the page: pairs of the
    # others keep what they were.
    shown = [c for c in NOTIFY_CHANNELS if c in (account.notify_channels or ())]
    every = {f"{kind}:{channel}" for kind in notify.KINDS for channel in shown}
    wanted = set(on or ())
    if wanted - every:
        raise DomainError("a notice must be one of the kinds on the page")
    if language not in (None, "", *notify_texts.LANGUAGES):
        raise DomainError("the language of notices must be Russian or English")
    language = language or None
    old_off = sorted(account.notify_off or [])
    off = sorted((set(old_off) - every) | (every - wanted))
    changed = {}
    if old_off != off:
        changed["notices_off"] = (", ".join(old_off), ", ".join(off))
        account.notify_off = off
    if account.language != language:
        changed["language"] = (account.language, language)
        account.language = language
    _record_notify_changes(session, account_id, actor, changed)
    return changed
