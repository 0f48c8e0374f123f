"""Use cases behind the subscriber cabinet: contacts, password, statement, speed.

Like rating.accounts, every function works inside the caller's transaction
(never commits) and raises ``DomainError`` with a sentence for the user.
Every change is written to the operation log with the cabinet user as the
actor; passwords never reach the log.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from rating import api_tokens, oplog, policies, timewindows
from rating.accounts import DomainError, NotFound
from rating.choices import CREDIT_KINDS
from rating.models import Account, CabinetUser, LedgerEntry
from rating.options import running_speed_options
from rating.passwords import hash_password, verify_password
from rating.profile import FULL, ActiveOption, TariffSpeeds, desired_profile

PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 256  # the messages below name these figures

# Deliberately loose: one @, a dot in the domain, no spaces. The real check
# is the confirmation mail, not a regular expression.
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")
_PHONE_CHARACTERS = re.compile(r"^\+?[0-9 ()\-]+$")


# -- contacts ---------------------------------------------------------------

def normalize_email(value: str | None) -> str | None:
    value = (value or "").strip()
    if not value:
        return None
    if len(value) > 200 or not _EMAIL.match(value):
        raise DomainError("e-mail must look like name@example.ru")
    return value


def normalize_phone(value: str | None) -> str | None:
    """``+7 (912) 345-67-89`` -> ``+79123456789``; 5 to 15 digits (E.164)."""
    value = (value or "").strip()
    if not value:
        return None
    if not _PHONE_CHARACTERS.match(value):
        raise DomainError("a phone number may hold only digits, spaces, brackets, dashes "
                          "and a leading +")
    digits = re.sub(r"\D", "", value)
    if not 5 <= len(digits) <= 15:
        raise DomainError("a phone number must have 5 to 15 digits")
    return ("+" if value.startswith("+") else "") + digits


def update_contacts(session: Session, account_id: int, *, email: str | None,
                    phone: str | None, phone_landline: str | None, actor: str) -> dict:
    """Set the account's contacts; returns {field: (old, new)} of what changed."""
    account = session.get(Account, account_id)
    if account is None:
        raise NotFound(f"account {account_id} does not exist")
    wanted = {"email": normalize_email(email), "phone": normalize_phone(phone),
              "phone_landline": normalize_phone(phone_landline)}
    changed = {name: (getattr(account, name), value) for name, value in wanted.items()
               if getattr(account, name) != value}
    if changed:
        for name, (_old, new) in changed.items():
            setattr(account, name, new)
        session.flush()
        oplog.record(session, account_id=account_id, actor=actor, action="contacts.update",
                     **{f"{name}": f"{old or '—'} → {new or '—'}"
                        for name, (old, new) in changed.items()})
    return changed


# -- password and sessions ----------------------------------------------------

def change_password(session: Session, user_id: int, *, current: str, new: str,
                    actor: str) -> int:
    """Check the current password, store the new one and end every other
    session (the epoch bump). Returns the new session epoch."""
    user = session.get(CabinetUser, user_id)
    if user is None:
        raise NotFound("cabinet user does not exist")
    if not verify_password(current, user.password_hash):
        raise WrongPassword("the current password is wrong")
    if not PASSWORD_MIN_LENGTH <= len(new) <= PASSWORD_MAX_LENGTH:
        raise DomainError("the new password must be 8 to 256 characters long")
    if new == current:
        raise DomainError("the new password must differ from the current one")
    if new.strip().lower() == user.login.lower():
        raise DomainError("the password must not be the login")
    epoch = _bump_epoch(session, user_id, password_hash=hash_password(new))
    oplog.record(session, account_id=user.account_id, actor=actor, action="password.change",
                 login=user.login)
    # A token made in a stolen session must not outlive the password.
    api_tokens.revoke_all(session, user_id, actor=actor)
    return epoch


def end_other_sessions(session: Session, user_id: int, *, actor: str,
                       revoke_tokens: bool = True) -> int:
    """"Log out everywhere": every session of this login ends at its next
    request, and (unless ``revoke_tokens`` is False: a plain logout) every
    API token of the login is revoked."""
    user = session.get(CabinetUser, user_id)
    if user is None:
        raise NotFound("cabinet user does not exist")
    epoch = _bump_epoch(session, user_id)
    oplog.record(session, account_id=user.account_id, actor=actor, action="sessions.end_all",
                 login=user.login)
    if revoke_tokens:
        api_tokens.revoke_all(session, user_id, actor=actor)
    return epoch


def password_matches(session: Session, user_id: int, password: str) -> bool:
    """Whether ``password`` is the login's current one (asked again before
    a step a stolen session must not take alone)."""
    user = session.get(CabinetUser, user_id)
    return user is not None and verify_password(password or "", user.password_hash)


def _bump_epoch(session: Session, user_id: int, **values) -> int:
    # One atomic UPDATE: two concurrent changes both move the epoch on.
    epoch = session.execute(
        update(CabinetUser).where(CabinetUser.id == user_id)
        .values(session_epoch=CabinetUser.session_epoch + 1, **values)
        .returning(CabinetUser.session_epoch)
        .execution_options(synchronize_session=False)).scalar_one()
    loaded = session.identity_map.get(session.identity_key(CabinetUser, user_id))
    if loaded is not None:
        session.expire(loaded)
    return epoch


# -- money: the statement -------------------------------------------------

@dataclass(frozen=True)
class StatementLine:
    entry_id: int
    created_at: dt.datetime
    kind: str
    amount: Decimal
    memo: str | None
    balance_after: Decimal
    # What it is for, as data (rating.choices.MEMO_CODES): the cabinet
    # words it in the reader's language; ``memo`` is the operator's text.
    key: str | None = None
    memo_code: str | None = None
    memo_args: dict | None = None


@dataclass(frozen=True)
class Statement:
    """Money flow of one account over [start, end): opening + lines = closing."""

    account_id: int
    start: dt.datetime
    end: dt.datetime
    opening: Decimal
    lines: tuple[StatementLine, ...]
    credits: Decimal
    debits: Decimal
    closing: Decimal


def describe(kind: str, key: str) -> str | None:
    """What an entry without a memo is for, read from its key.

    The fee run writes no memo (a million rows a day); its key
    ``fee:ACCOUNT:YYYY-MM-DD`` (daily) or ``fee:ACCOUNT:YYYY-MM`` (monthly)
    names the period the fee pays for.
    """
    if kind == "fee" and key.startswith("fee:") and key.count(":") == 2:
        return f"fee for {key.rsplit(':', 1)[1]}"
    return None


def _sum_before(session: Session, account_id: int, moment: dt.datetime) -> Decimal:
    return session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.amount), 0))
        .where(LedgerEntry.account_id == account_id, LedgerEntry.created_at < moment))


def statement(session: Session, account_id: int, start: dt.datetime,
              end: dt.datetime) -> Statement:
    """The ledger between two UTC moments, with running balance.

    Opening and closing come from the store's own sums, so the statement
    agrees with the ledger even if the lines were to miss something; the
    tests check that opening + lines == closing.
    """
    if end <= start:
        raise DomainError("the period must end after it starts")
    opening = _sum_before(session, account_id, start)
    closing = _sum_before(session, account_id, end)
    rows = session.execute(
        select(LedgerEntry.id, LedgerEntry.created_at, LedgerEntry.kind, LedgerEntry.amount,
               LedgerEntry.memo, LedgerEntry.idempotency_key, LedgerEntry.memo_code,
               LedgerEntry.memo_args)
        .where(LedgerEntry.account_id == account_id, LedgerEntry.created_at >= start,
               LedgerEntry.created_at < end)
        .order_by(LedgerEntry.created_at, LedgerEntry.id)).all()
    running = opening
    lines = []
    credits = debits = Decimal("0.00")
    for entry_id, created_at, kind, amount, memo, key, memo_code, memo_args in rows:
        memo = memo or describe(kind, key)
        running += amount
        if amount >= 0:
            credits += amount
        else:
            debits += amount
        lines.append(StatementLine(entry_id, created_at, kind, amount, memo, running, key,
                                   memo_code, memo_args))
    return Statement(account_id, start, end, opening, tuple(lines), credits, debits, closing)


def payments(session: Session, account_id: int, limit: int = 100) -> list[LedgerEntry]:
    """Money that came in (payments, promised payments, refunds), newest first."""
    return list(session.scalars(
        select(LedgerEntry)
        .where(LedgerEntry.account_id == account_id, LedgerEntry.kind.in_(CREDIT_KINDS))
        .order_by(LedgerEntry.created_at.desc(), LedgerEntry.id.desc()).limit(limit)))


class WrongPassword(DomainError):
    """The current password given to confirm a change is not the login's."""


# -- why this speed -------------------------------------------------------

@dataclass(frozen=True)
class SpeedNow:
    profile: str
    rate_down_kbps: int
    rate_up_kbps: int
    until: dt.datetime | None  # a speed option (turbo): when it ends
    access: str = FULL         # rating.profile: full, redirect (payment pages only), none


def speed_now(session: Session, account: Account, now: dt.datetime,
              ladder: tuple[policies.Rung, ...] = policies.DEFAULT_LADDER,
              timezone: str = "UTC") -> SpeedNow | None:
    """The speed the network gives the account now, and the profile that
    explains it: rating.profile.desired_profile, as RADIUS and the enforcer
    ask it."""
    tariff = account.tariff
    if tariff is None:
        return None
    running = running_speed_options(session, now, [account.id]).get(account.id, ())
    return _speed(account.state, account.profile, tariff.rate_down_kbps, tariff.rate_up_kbps,
                  tariff.negative_rate_kbps, running, now, ladder,
                  timewindows.from_rules(tariff.rules), timezone,
                  account.limit_throttled_until)


def speed_with_options(profile: str, rate_down_kbps: int, rate_up_kbps: int,
                       negative_rate_kbps: int, options, now: dt.datetime, *,
                       state: str = "active",
                       ladder: tuple[policies.Rung, ...] = policies.DEFAULT_LADDER,
                       windows: tuple = (), timezone: str = "UTC",
                       limit_throttled_until: dt.datetime | None = None) -> SpeedNow:
    """Pure: speed_now over the account's active options a page listed anyway
    (each with ``name``, ``kind``, ``rate_multiplier``, ``starts_at`` and
    ``ends_at``, as cabinet.queries.active_options gives them)."""
    running = tuple(ActiveOption(o.name, o.kind, o.rate_multiplier, o.starts_at, o.ends_at)
                    for o in options)
    return _speed(state, profile, rate_down_kbps, rate_up_kbps, negative_rate_kbps, running,
                  now, ladder, windows, timezone, limit_throttled_until)


def _speed(state, profile, rate_down_kbps, rate_up_kbps, negative_rate_kbps, running, now,
           ladder, windows=(), timezone="UTC", limit_throttled_until=None) -> SpeedNow:
    wanted = desired_profile(state=state, rung=profile,
                             tariff=TariffSpeeds(rate_down_kbps, rate_up_kbps,
                                                 negative_rate_kbps,
                                                 tuple(w for w in windows if w.has_speed),
                                                 timezone),
                             options=running, now=now, ladder=ladder,
                             limit_throttled_until=limit_throttled_until)
    if not wanted.gives_session:
        return SpeedNow(wanted.name, 0, 0, None, wanted.access)
    return SpeedNow(wanted.name, wanted.down_kbps, wanted.up_kbps, wanted.until, wanted.access)