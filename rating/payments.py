"""Online payments through a provider (a bank's acquiring page).

A provider is two calls (``Provider``):

- ``create(account, amount)`` -> where to send the subscriber's browser and
  the provider's transaction id;
- ``verify_callback(body, headers)`` -> (transaction id, amount, status) from
  the provider's server-to-server notification, or ``BadSignature``.

Our side of a payment is a ``ProviderPayment`` row: written ``pending`` when
the subscriber starts it, settled by the callback. Money moves only on a
verified callback whose amount equals the row's, through
rating.accounts.add_payment with the ledger key
``payment:<provider>:<transaction id>``: a callback delivered twice (banks
retry until they get a 200) credits once.

``TestPay`` is the built-in test provider: its "bank page" is served by the
cabinet under /testpay/, and its callback is a JSON body signed with
HMAC-SHA256 under ``payments.testpay_secret``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from decimal import Decimal
from typing import Mapping, Optional, Protocol

from sqlalchemy import (CheckConstraint, DateTime, ForeignKey, Integer, String,
                        UniqueConstraint, select, update)
from sqlalchemy.orm import Mapped, Session, mapped_column

from config.db import Base, Money, money, utcnow
from rating import accounts, oplog
from rating.accounts import DomainError
from rating.models import Account
from rating import validate

STATUSES = ("pending", "paid", "declined")
# What a provider may report; "paid" and "declined" are final.
CALLBACK_STATUSES = ("paid", "declined")


def _in(column: str, values) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class ProviderPayment(Base):
    """A payment started with a provider; settled by its callback."""

    __tablename__ = "provider_payments"
    __table_args__ = (
        UniqueConstraint("provider", "txn_id"),
        CheckConstraint(_in("status", STATUSES), name="status"),
        CheckConstraint("amount > 0", name="amount"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    txn_id: Mapped[str] = mapped_column(String(64))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    amount: Mapped[Decimal] = mapped_column(Money)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    settled_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    entry_id: Mapped[Optional[int]] = mapped_column(ForeignKey("ledger_entries.id"))


class PaymentError(DomainError):
    pass


class BadSignature(PaymentError):
    pass


class UnknownTransaction(PaymentError):
    pass


class AmountMismatch(PaymentError):
    pass


@dataclass(frozen=True)
class Checkout:
    redirect_url: str
    txn_id: str


@dataclass(frozen=True)
class Notice:
    """A verified callback."""

    txn_id: str
    amount: Decimal
    status: str


class Provider(Protocol):
    name: str

    def create(self, account: Account, amount: Decimal) -> Checkout: ...

    def verify_callback(self, body: bytes, headers: Mapping[str, str]) -> Notice: ...


@dataclass(frozen=True)
class Limits:
    min_amount: Decimal = Decimal("10.00")
    max_amount: Decimal = Decimal("100000.00")

    @classmethod
    def from_settings(cls, settings) -> "Limits":
        section = settings.section("payments")
        return cls(money(section["min_topup"]), money(section["max_topup"]))


# -- the test provider --------------------------------------------------------

SIGNATURE_HEADER = "X-Testpay-Signature"


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class TestPay:
    """The built-in test provider. ``bank_url`` is where its pay page lives
    (the cabinet serves one at /testpay)."""

    name = "testpay"
    __test__ = False  # not a pytest class

    def __init__(self, secret: str, bank_url: str = "/testpay"):
        if not secret:
            raise ValueError("the test provider needs a secret")
        self._secret = secret
        self.bank_url = bank_url.rstrip("/")

    def __repr__(self) -> str:  # never show the secret
        return f"TestPay(bank_url={self.bank_url!r})"

    def create(self, account: Account, amount: Decimal) -> Checkout:
        txn_id = "tp-" + secrets.token_hex(12)
        return Checkout(f"{self.bank_url}/{txn_id}", txn_id)

    def notice_body(self, txn_id: str, amount: Decimal, status: str) -> tuple[bytes, dict]:
        """What the test bank sends: a JSON body and its signature header."""
        body = json.dumps({"txn_id": txn_id, "amount": f"{money(amount):.2f}",
                           "status": status}, separators=(",", ":")).encode()
        return body, {SIGNATURE_HEADER: sign(self._secret, body)}

    def verify_callback(self, body: bytes, headers: Mapping[str, str]) -> Notice:
        given = headers.get(SIGNATURE_HEADER) or ""
        if not hmac.compare_digest(given.strip().lower(), sign(self._secret, body)):
            raise BadSignature("the callback signature is wrong")
        try:
            data = json.loads(body)
            txn_id, status = str(data["txn_id"]), str(data["status"])
            # The amount is a decimal string: a JSON number would be a float.
            if not isinstance(data["amount"], str):
                raise TypeError("the amount must be a string")
            amount = money(data["amount"])
        except (ValueError, TypeError, KeyError, ArithmeticError):
            raise PaymentError("the callback body is not a payment notice") from None
        if status not in CALLBACK_STATUSES or not 0 < len(txn_id) <= 64:
            raise PaymentError("the callback body is not a payment notice")
        return Notice(txn_id, amount, status)


# -- use cases ----------------------------------------------------------------

def start(session: Session, provider: Provider, account: Account, amount, limits: Limits,
          *, actor: str) -> tuple[ProviderPayment, Checkout]:
    """Begin a top-up: validate the amount, ask the provider, record it pending."""
    try:
        value = validate.amount(amount, negative_ok=True)
    except (ValueError, TypeError, ArithmeticError):
        raise PaymentError("a top-up must be an amount like 100 or 99.50") from None
    if not limits.min_amount <= value <= limits.max_amount:
        raise PaymentError(f"a top-up must be between {limits.min_amount} and "
                           f"{limits.max_amount}")
    if account.state == "closed":
        raise PaymentError("a closed account cannot be topped up")
    checkout = provider.create(account, value)
    row = ProviderPayment(provider=provider.name, txn_id=checkout.txn_id,
                          account_id=account.id, amount=value)
    session.add(row)
    session.flush()
    oplog.record(session, account_id=account.id, actor=actor, action="topup.start",
                 amount=value, provider=provider.name, txn_id=checkout.txn_id)
    return row, checkout


@dataclass(frozen=True)
class Settlement:
    payment_id: int
    account_id: int
    status: str
    amount: Decimal
    credited: bool  # True only for the callback that moved the money


def find(session: Session, provider: str, txn_id: str) -> ProviderPayment | None:
    return session.scalar(select(ProviderPayment).where(ProviderPayment.provider == provider,
                                                        ProviderPayment.txn_id == txn_id))


def settle(session: Session, provider: str, notice: Notice) -> Settlement:
    """Apply a verified callback; idempotent.

    The amount must equal what the subscriber started (AmountMismatch, and
    nothing changes). ``paid`` credits through add_payment with the key
    ``payment:<provider>:<txn id>``; a repeat credits nothing. A final
    status is never changed by a later, different one.
    """
    row = find(session, provider, notice.txn_id)
    if row is None:
        raise UnknownTransaction(f"transaction {notice.txn_id} is unknown")
    if notice.amount != row.amount:
        raise AmountMismatch(f"transaction {notice.txn_id}: the callback says "
                             f"{notice.amount}, the payment was for {row.amount}")
    actor = f"provider:{provider}"
    # Only a pending payment moves; of two callbacks at once, the second
    # UPDATE waits for the first and then finds nothing pending.
    moved = session.execute(
        update(ProviderPayment)
        .where(ProviderPayment.id == row.id, ProviderPayment.status == "pending")
        .values(status=notice.status, settled_at=utcnow())
        .returning(ProviderPayment.id)
        .execution_options(synchronize_session=False)).scalar_one_or_none()
    session.expire(row)
    if moved is None:
        return Settlement(row.id, row.account_id, row.status, row.amount, False)
    if notice.status == "declined":
        oplog.record(session, account_id=row.account_id, actor=actor, action="topup.declined",
                     amount=row.amount, txn_id=notice.txn_id)
        return Settlement(row.id, row.account_id, "declined", row.amount, False)
    account = session.get(Account, row.account_id)
    posting = accounts.add_payment(session, account, row.amount, external_id=notice.txn_id,
                                   provider=provider, actor=actor,
                                   memo=f"{provider} {notice.txn_id}")
    session.execute(update(ProviderPayment).where(ProviderPayment.id == row.id)
                    .values(entry_id=posting.entry_id)
                    .execution_options(synchronize_session=False))
    session.expire(row)
    return Settlement(row.id, row.account_id, "paid", row.amount, posting.created)

