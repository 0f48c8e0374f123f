"""Autopayment: charge a subscriber's saved card when the money left lasts
fewer than N days, if the subscriber turned it on in the cabinet.

The card is the payment method the provider saved with the account's
latest paid card payment (rating.payments.saved_method); a subscriber who
turns autopay on with no saved card has the next card payment saved.

Once a day at most, per account, however many schedulers run the job and
however often: the job first claims (account, day) by inserting an
``autopay_attempts`` row in a transaction of its own; the second claimant
hits the primary key and stops. The provider's idempotence key is
``autopay-<account id>-<day>`` too, so a run that crashed between the
provider's answer and our commit, re-run, gets the same payment back and
not a second charge. A failed charge is not retried that day.

Days left: rating.runout.forecast over the tariff's fee and the balance
ladder (packages and discounts are left out here; the cabinet's overview
counts them).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import Optional

from sqlalchemy import (Boolean, Date, DateTime, ForeignKey, Integer, String, false, select)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from config.db import Base, Money, money, utcnow
from rating import oplog, payments, policies, runout, validate
from rating.accounts import DomainError
from rating.models import Account

log = logging.getLogger(__name__)

MAX_DAYS = 30


class AutopaySetting(Base):
    __tablename__ = "autopay_settings"

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    amount: Mapped[Decimal] = mapped_column(Money)
    days_below: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class AutopayAttempt(Base):
    """One charge a day per account: the claim, then what came of it."""

    __tablename__ = "autopay_attempts"

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    payment_id: Mapped[Optional[int]] = mapped_column(ForeignKey("provider_payments.id"))
    outcome: Mapped[str] = mapped_column(String(200), default="claimed")


def get(session: Session, account_id: int) -> AutopaySetting | None:
    return session.get(AutopaySetting, account_id)


def configure(session: Session, account: Account, *, enabled: bool, amount, days_below,
              limits: payments.Limits, actor: str) -> AutopaySetting:
    """Turn autopay on or off with its amount and threshold (validated)."""
    try:
        value = validate.amount(amount, "autopayment amount", positive=True)
    except (ValueError, TypeError, ArithmeticError):
        raise DomainError("an autopayment must be an amount like 500 or 99.50") from None
    if not limits.min_amount <= value <= limits.max_amount:
        raise DomainError(f"an autopayment must be between {limits.min_amount} and "
                          f"{limits.max_amount}")
    try:
        days = int(days_below)
    except (TypeError, ValueError):
        days = 0
    if not 1 <= days <= MAX_DAYS:
        raise DomainError(f"the days for an autopayment must be from 1 to {MAX_DAYS}")
    row = get(session, account.id)
    if row is None:
        row = AutopaySetting(account_id=account.id)
        session.add(row)
    row.enabled, row.amount, row.days_below = bool(enabled), value, days
    session.flush()
    oplog.record(session, account_id=account.id, actor=actor,
                 action="autopay.on" if enabled else "autopay.off", amount=value, days=days)
    return row


def days_left(account: Account, today: dt.date,
              ladder=policies.DEFAULT_LADDER) -> int | None:
    """Whole days until full service ends if nothing is paid; 0 when it has
    ended already; None when nothing is charged (no tariff, no fee)."""
    if account.state != "active" or account.tariff is None:
        return None
    fee = runout.RecurringFee(account.tariff.fee, account.tariff.fee_period)
    forecast = runout.forecast(balance=account.balance, credit_limit=account.credit_limit,
                               fees=[fee], today=today, ladder=ladder)
    if forecast.no_fees:
        return None
    if forecast.profile != "normal":
        return 0
    if forecast.runs_out_on is None:
        return None
    return (forecast.runs_out_on - today).days


@dataclass(frozen=True)
class AutopayResult:
    account_id: int
    outcome: str  # "paid", "pending", "skipped: …", "failed: …"
    payment_id: int | None = None


def _claim(Session: sessionmaker, account_id: int, day: dt.date) -> bool:
    with Session() as session:
        session.add(AutopayAttempt(account_id=account_id, day=day))
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            return False
    return True


def _finish(Session: sessionmaker, account_id: int, day: dt.date, outcome: str,
            payment_id: int | None = None) -> None:
    with Session() as session:
        row = session.get(AutopayAttempt, (account_id, day))
        row.outcome, row.payment_id = outcome[:200], payment_id
        session.commit()


def run(Session: sessionmaker, provider, today: dt.date, *, limits: payments.Limits,
        vat_code: int = 1, ladder=policies.DEFAULT_LADDER) -> list[AutopayResult]:
    """Charge every account whose autopay is on, whose card is saved and
    whose days left dropped below its threshold; at most once a day each."""
    from rating.yookassa import receipt as make_receipt
    with Session() as session:
        candidates = list(session.scalars(select(AutopaySetting)
                                          .where(AutopaySetting.enabled.is_(True))
                                          .order_by(AutopaySetting.account_id)))
        due = []
        for setting in candidates:
            account = session.get(Account, setting.account_id)
            left = days_left(account, today, ladder)
            if left is None or left >= setting.days_below:
                continue
            method = payments.saved_method(session, account.id, provider.name)
            if method is None:
                continue
            due.append((account.id, setting.amount, method.method_id, left))
    results = []
    for account_id, amount, method_id, left in due:
        if not _claim(Session, account_id, today):
            results.append(AutopayResult(account_id, "skipped: charged today already"))
            continue
        key = f"autopay-{account_id}-{today.isoformat()}"
        with Session() as session:
            account = session.get(Account, account_id)
            try:
                request = payments.CreateRequest(
                    idempotence_key=key, method_id=method_id,
                    receipt=make_receipt(account, amount, vat_code),
                    description=f"Автоплатёж, л/с {account.number}")
                row, checkout = payments.start(session, provider, account, amount, limits,
                                               actor="scheduler:autopay", request=request,
                                               origin="autopay", source="scheduler")
                outcome = "pending"
                if checkout.status in payments.CALLBACK_STATUSES:
                    notice = payments.Notice(checkout.txn_id, money(amount), checkout.status)
                    outcome = payments.settle(session, provider.name, notice,
                                              source="scheduler").status
                session.commit()
                payment_id = row.id
            except DomainError as error:
                session.rollback()
                log.warning("autopay.failed account_id=%s reason=%s", account_id, error)
                _finish(Session, account_id, today, f"failed: {error}")
                results.append(AutopayResult(account_id, f"failed: {error}"))
                continue
        log.info("autopay.charged account_id=%s days_left=%s amount=%s outcome=%s",
                 account_id, left, amount, outcome)
        _finish(Session, account_id, today, outcome, payment_id)
        results.append(AutopayResult(account_id, outcome, payment_id))
    return results
