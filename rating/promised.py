"""Promised payment (обещанный платёж): money now, taken back at its due
time unless the subscriber paid it back meanwhile.

The grant is a ledger entry of kind ``promised`` keyed per account and day,
so a double-submitted form grants once; its expiry is a reversal of that
entry (``reversal:ID`` is unique), so two expiry runs reverse once.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from config.db import money
from rating import ledger, oplog
from rating.accounts import DomainError
from rating.models import Account, LedgerEntry, PromisedPayment
from rating import validate


@dataclass(frozen=True)
class PromisedRules:
    max_amount: Decimal = Decimal("500.00")
    term_days: int = 5
    once_per_days: int = 30
    allowed_below: Decimal = Decimal("100.00")
    fee: Decimal = Decimal("0.00")

    @classmethod
    def from_settings(cls, settings) -> "PromisedRules":
        section = settings.section("promised")
        return cls(max_amount=money(section["max_amount"]), term_days=section["term_days"],
                   once_per_days=section["once_per_days"],
                   allowed_below=money(section["allowed_below"]), fee=money(section["fee"]))


def check(session: Session, account: Account, amount: Decimal, now: dt.datetime,
          rules: PromisedRules) -> None:
    """Raise DomainError with the reason when a grant is not allowed."""
    if account.state != "active":
        raise DomainError("a promised payment needs an active account")
    if amount <= 0 or amount > rules.max_amount:
        raise DomainError(f"a promised payment must be between 0.01 and {rules.max_amount}")
    if account.balance >= rules.allowed_below:
        raise DomainError(f"a promised payment is available when the balance is below "
                          f"{rules.allowed_below}")
    since = now - dt.timedelta(days=rules.once_per_days)
    recent = session.scalar(select(func.count()).select_from(PromisedPayment).where(
        PromisedPayment.account_id == account.id, PromisedPayment.granted_at > since))
    if recent:
        raise DomainError(f"a promised payment can be taken once in {rules.once_per_days} days")


def grant(session: Session, account: Account, amount, now: dt.datetime, rules: PromisedRules,
          *, actor: str = "subscriber") -> PromisedPayment:
    try:
        amount = validate.amount(amount, negative_ok=True)
    except (TypeError, ValueError, ArithmeticError):
        # NaN, Infinity, 1e400, 10.005: no amount of money.
        raise DomainError("a promised payment must be an amount like 100 or 99.50") from None
    key = f"promised:{account.id}:{now.date().isoformat()}"
    existing = session.scalar(select(PromisedPayment).join(
        LedgerEntry, LedgerEntry.id == PromisedPayment.entry_id)
        .where(LedgerEntry.idempotency_key == key))
    if existing is not None:
        return existing
    check(session, account, amount, now, rules)
    due_at = now + dt.timedelta(days=rules.term_days)
    posting = ledger.post(session, account_id=account.id, amount=amount, kind="promised",
                          key=key, author=actor, memo="promised payment",
                          memo_code="promised", memo_args={"due": due_at})
    if rules.fee > 0:
        ledger.post(session, account_id=account.id, amount=-rules.fee, kind="fee",
                    key=f"promised-fee:{posting.entry_id}", author=actor,
                    memo="promised payment fee", memo_code="promised_fee")
    promise = PromisedPayment(account_id=account.id, entry_id=posting.entry_id, amount=amount,
                              granted_at=now, due_at=due_at)
    session.add(promise)
    session.flush()
    oplog.record(session, account_id=account.id, actor=actor, action="promised.grant",
                 amount=amount, due_at=promise.due_at)
    # The money is there to restore the service: the ladder's verdict (and
    # the enforcer's outbox) moves now, as for a payment, not at the next
    # periodic policy run.
    from rating import fees
    fees.apply_policies(session, account.id, account.id + 1, reason="promised")
    return promise


def expire(session: Session, now: dt.datetime) -> list[tuple[int, str]]:
    """Close promises that are due: repaid ones quietly, the rest by reversal."""
    closed = []
    due = session.scalars(select(PromisedPayment).where(
        PromisedPayment.status == "open", PromisedPayment.due_at <= now)
        .order_by(PromisedPayment.id)).all()
    for promise in due:
        paid = session.scalar(select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(
            LedgerEntry.account_id == promise.account_id, LedgerEntry.kind == "payment",
            LedgerEntry.created_at >= promise.granted_at)) or Decimal(0)
        if paid >= promise.amount:
            promise.status = "repaid"
        else:
            ledger.reverse(session, promise.entry_id, author="scheduler:promised",
                           memo="promised payment expired", memo_code="promised_expired",
                           memo_args={"granted": promise.granted_at})
            promise.status = "expired"
        promise.closed_at = now
        oplog.record(session, account_id=promise.account_id, actor="scheduler",
                     action=f"promised.{promise.status}", amount=promise.amount)
        closed.append((promise.id, promise.status))
    return closed
