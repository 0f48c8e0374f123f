"""Use cases for tariffs, accounts, cabinet users and payments.

Each function works inside the caller's transaction and raises
``DomainError`` (with a sentence fit for a user) on bad input.
"""

from __future__ import annotations

import re
import uuid
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from rating import fees, ledger, oplog, validate
from rating.choices import ACCOUNT_KINDS, FEE_PERIODS, USER_ROLES
from rating.models import Account, CabinetUser, Tariff
from rating.passwords import hash_password
from rating.validate import DomainError, NotFound

__all__ = ["DomainError", "NotFound"]


# 1 Tbit/s: a speed beyond it is a typo (and would not fit a RADIUS integer
# in bit/s); prepaid traffic up to an exabyte.
MAX_KBPS = 1_000_000_000
MAX_PREPAID_MB = 10 ** 12

_ACCOUNT_NUMBER = re.compile(r"^[0-9A-Za-z-]{1,32}$")


def create_tariff(session: Session, *, name: str, fee, rate_down_kbps: int, rate_up_kbps: int,
                  fee_period: str = "monthly", negative_rate_kbps: int = 0,
                  price_per_gb="0", prepaid_mb: int = 0, switch_min_days: int = 0,
                  actor: str = "admin") -> Tariff:
    if fee_period not in FEE_PERIODS:
        raise DomainError(f"fee period must be one of {', '.join(FEE_PERIODS)}")
    if switch_min_days < 0 or prepaid_mb < 0:
        raise DomainError("switch interval and prepaid traffic cannot be negative")
    if rate_down_kbps <= 0 or rate_up_kbps <= 0 or negative_rate_kbps < 0:
        raise DomainError("speeds must be positive numbers of kbit/s")
    name = validate.name(name, "tariff name", 100)
    if max(rate_down_kbps, rate_up_kbps, negative_rate_kbps) > MAX_KBPS:
        raise DomainError(f"speeds must be at most {MAX_KBPS} kbit/s (1 Tbit/s)")
    if prepaid_mb > MAX_PREPAID_MB:
        raise DomainError(f"prepaid traffic must be at most {MAX_PREPAID_MB} MB")
    if session.scalar(select(Tariff.id).where(Tariff.name == name)) is not None:
        raise DomainError(f"tariff {name!r} already exists")
    tariff = Tariff(name=name, fee=_amount(fee, "fee"), fee_period=fee_period,
                    rate_down_kbps=rate_down_kbps, rate_up_kbps=rate_up_kbps,
                    negative_rate_kbps=negative_rate_kbps,
                    price_per_gb=_amount(price_per_gb, "price per GB"), prepaid_mb=prepaid_mb,
                    switch_min_days=switch_min_days)
    if tariff.fee < 0 or tariff.price_per_gb < 0:
        raise DomainError("prices cannot be negative")
    session.add(tariff)
    session.flush()
    oplog.record(session, account_id=None, actor=actor, action="tariff.add", name=name)
    return tariff


def find_tariff(session: Session, name: str) -> Tariff:
    tariff = session.scalar(select(Tariff).where(Tariff.name == name))
    if tariff is None:
        raise NotFound(f"tariff {name!r} does not exist")
    return tariff


def offered_tariff(session: Session, name: str) -> Tariff:
    """A tariff a new account (or a switch) may choose: it exists and is not
    archived; subscribers already on an archived tariff keep it."""
    tariff = find_tariff(session, name)
    if tariff.archived:
        raise DomainError(f"tariff {name!r} is archived and cannot be chosen")
    return tariff


def create_account(session: Session, *, number: str, name: str, tariff: str | None = None,
                   kind: str = "person", email: str | None = None, phone: str | None = None,
                   credit_limit="0", actor: str = "admin") -> Account:
    if not _ACCOUNT_NUMBER.match(number or ""):
        raise DomainError("account number must be 1-32 letters, digits or dashes")
    if kind not in ACCOUNT_KINDS:
        raise DomainError(f"account kind must be one of {', '.join(ACCOUNT_KINDS)}")
    name = validate.name(name, "account name")
    email = validate.email(email)
    phone = validate.phone(phone)
    if session.scalar(select(Account.id).where(Account.number == number)) is not None:
        raise DomainError(f"account {number} already exists")
    limit = _amount(credit_limit, "credit limit")
    if limit < 0:
        raise DomainError("credit limit cannot be negative")
    account = Account(number=number, name=name, kind=kind, email=email, phone=phone,
                      credit_limit=limit,
                      tariff_id=offered_tariff(session, tariff).id if tariff else None)
    session.add(account)
    session.flush()
    oplog.record(session, account_id=account.id, actor=actor, action="account.add",
                 number=number, tariff=tariff)
    return account


def find_account(session: Session, number: str) -> Account:
    account = session.scalar(select(Account).where(Account.number == number))
    if account is None:
        raise NotFound(f"account {number} does not exist")
    return account


def create_cabinet_user(session: Session, account: Account, *, login: str, password: str,
                        role: str = "owner", email: str | None = None,
                        actor: str = "admin") -> CabinetUser:
    if role not in USER_ROLES:
        raise DomainError(f"role must be one of {', '.join(USER_ROLES)}")
    if len(password) < 6:
        raise DomainError("password must be at least 6 characters")
    if session.scalar(select(CabinetUser.id).where(CabinetUser.login == login)) is not None:
        raise DomainError(f"cabinet login {login!r} is taken")
    user = CabinetUser(account_id=account.id, login=login, password_hash=hash_password(password),
                       role=role, email=email)
    session.add(user)
    session.flush()
    oplog.record(session, account_id=account.id, actor=actor, action="cabinet_user.add",
                 login=login, role=role)
    return user


def add_payment(session: Session, account: Account, amount, *, external_id: str | None = None,
                provider: str = "manual", actor: str = "admin",
                memo: str | None = None, memo_args: dict | None = None) -> ledger.Posting:
    """A payment; idempotent on (provider, external_id) when one is given.
    ``memo_args`` add to the payment's memo code's (rating.choices.MEMO_CODES)."""
    value = validate.amount(amount, "payment amount", positive=True)
    external_id = validate.external_id(external_id)
    memo = validate.memo(memo)
    key = f"payment:{provider}:{external_id or uuid.uuid4().hex}"
    try:
        posting = ledger.post(session, account_id=account.id, amount=value, kind="payment",
                              key=key, author=actor, memo=memo, memo_code="payment",
                              memo_args={"provider": provider, **(memo_args or {})})
    except ledger.KeyConflict:
        raise DomainError(f"payment {external_id} was already recorded with another amount "
                          f"or account") from None
    if posting.created:
        oplog.record(session, account_id=account.id, actor=actor, action="payment.add",
                     amount=value, external_id=external_id, provider=provider)
        # A payment can lift a throttle at once: the ladder runs after every
        # posting, not only on the periodic pass.
        fees.apply_policies(session, account.id, account.id + 1, reason="payment")
        # "Payment received", queued in the payment's transaction and keyed
        # by its ledger key: a payment posted again notifies once.
        from rating import notify
        session.refresh(account, ["balance"])
        notify.payment_received(session, account, value, key)
    return posting


def _amount(value, what: str) -> Decimal:
    return validate.amount(value, what)
