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
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Mapping, Optional, Protocol

from sqlalchemy import (JSON, Boolean, CheckConstraint, DateTime, ForeignKey, Integer,
                        String, UniqueConstraint, false, func, select, update)
from sqlalchemy.orm import Mapped, Session, mapped_column

from config.db import Base, Money, money, utcnow
from rating import accounts, oplog
from rating.accounts import DomainError
from rating.models import Account
from rating import validate

# "expired": nobody paid within payments.pending_expiry_minutes; the
# provider may still report it paid later (the money is then credited, and
# its history says it came late).
STATUSES = ("pending", "paid", "declined", "expired")
# What a provider may report; "paid" and "declined" are final.
CALLBACK_STATUSES = ("paid", "declined")
# Who moved a payment (its history's "source").
SOURCES = ("cabinet", "webhook", "poll", "cli", "scheduler", "agent")
REFUND_STATUSES = ("pending", "succeeded", "canceled")


def _in(column: str, values) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class ProviderPayment(Base):
    """A payment started with a provider; settled by its callback, by a poll
    of the provider, or written already paid by an agent (OSMP)."""

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
    # The key the provider's create call carried: a repeated start with the
    # same key (a double click, a retry after a timeout) is this payment.
    idempotence_key: Mapped[Optional[str]] = mapped_column(String(64), unique=True)
    # Where the subscriber's browser goes to confirm (the provider's page).
    confirmation_url: Mapped[Optional[str]] = mapped_column(String(1000))
    # "cabinet" (the subscriber started it), "autopay" (the scheduler did).
    origin: Mapped[Optional[str]] = mapped_column(String(16))
    # The 54-FZ receipt data sent with the payment (rating.yookassa.receipt).
    receipt: Mapped[Optional[dict]] = mapped_column(JSON)
    # The payment method the provider saved for autopayment, and how to
    # name it to the subscriber ("Bank card *4444").
    method_id: Mapped[Optional[str]] = mapped_column(String(64))
    method_title: Mapped[Optional[str]] = mapped_column(String(64))
    # Credited after it had expired on our side.
    late: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class PaymentEvent(Base):
    """One change of a payment's state: its history, oldest first."""

    __tablename__ = "provider_payment_events"
    __table_args__ = (CheckConstraint(_in("source", SOURCES), name="source"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("provider_payments.id"), index=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    from_status: Mapped[Optional[str]] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(16))
    detail: Mapped[Optional[str]] = mapped_column(String(255))


class PaymentRefund(Base):
    """Money sent back to the card a payment came from. Its ledger entry's
    key is ``refund:<provider>-<idempotence key>``: one entry per refund,
    however often the refund is retried."""

    __tablename__ = "provider_refunds"
    __table_args__ = (
        CheckConstraint(_in("status", REFUND_STATUSES), name="status"),
        CheckConstraint("amount > 0", name="amount"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("provider_payments.id"), index=True)
    idempotence_key: Mapped[str] = mapped_column(String(64), unique=True)
    refund_id: Mapped[Optional[str]] = mapped_column(String(64))
    amount: Mapped[Decimal] = mapped_column(Money)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    actor: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    entry_id: Mapped[Optional[int]] = mapped_column(ForeignKey("ledger_entries.id"))


class PaymentError(DomainError):
    pass


class BadSignature(PaymentError):
    pass


class UnknownTransaction(PaymentError):
    pass


class AmountMismatch(PaymentError):
    pass


class ProviderUnavailable(PaymentError):
    """The provider did not answer, or refused the call; nothing changed."""


class RefundRefused(PaymentError):
    pass


@dataclass(frozen=True)
class Checkout:
    redirect_url: str
    txn_id: str
    # What the provider said at once: "pending" until the subscriber
    # confirms; "paid" for a charge of a saved method that went through.
    status: str = "pending"


@dataclass(frozen=True)
class Notice:
    """A verified callback, or the provider's answer to a poll."""

    txn_id: str
    amount: Decimal
    status: str  # "paid", "declined", or "pending" (not final yet)
    # A payment method the provider saved for later charges (autopay).
    method_id: str | None = None
    method_title: str | None = None


@dataclass(frozen=True)
class RefundResult:
    refund_id: str
    status: str  # REFUND_STATUSES
    amount: Decimal


@dataclass(frozen=True)
class CreateRequest:
    """What a provider needs to create a payment beyond account and amount."""

    idempotence_key: str
    return_url: str | None = None
    receipt: dict | None = None
    save_method: bool = False
    method_id: str | None = None  # charge this saved method, no confirmation
    description: str | None = None


class Provider(Protocol):
    name: str

    def create(self, account: Account, amount: Decimal,
               request: CreateRequest | None = None) -> Checkout: ...

    def verify_callback(self, body: bytes, headers: Mapping[str, str]) -> Notice: ...


class PollingProvider(Provider, Protocol):
    """A provider that answers "what is the state of payment X" (a lost
    callback is recovered by asking) and sends money back."""

    def fetch(self, txn_id: str) -> Notice: ...

    def refund(self, txn_id: str, amount: Decimal, *, idempotence_key: str,
               receipt: dict | None = None) -> RefundResult: ...


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

    def create(self, account: Account, amount: Decimal,
               request: CreateRequest | None = None) -> Checkout:
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

def record_event(session: Session, payment_id: int, from_status: str | None, to_status: str,
                 source: str, detail: str | None = None) -> None:
    """Add a line to a payment's history."""
    if source not in SOURCES:
        raise ValueError(f"unknown payment event source {source!r}")
    session.add(PaymentEvent(payment_id=payment_id, from_status=from_status,
                             to_status=to_status, source=source,
                             detail=(detail or None) and detail[:255]))


def _amount(amount, limits: Limits) -> Decimal:
    try:
        value = validate.amount(amount, negative_ok=True)
    except (ValueError, TypeError, ArithmeticError):
        raise PaymentError("a top-up must be an amount like 100 or 99.50") from None
    if not limits.min_amount <= value <= limits.max_amount:
        raise PaymentError(f"a top-up must be between {limits.min_amount} and "
                           f"{limits.max_amount}")
    return value


def find_by_key(session: Session, idempotence_key: str) -> ProviderPayment | None:
    return session.scalar(select(ProviderPayment)
                          .where(ProviderPayment.idempotence_key == idempotence_key))


def start(session: Session, provider: Provider, account: Account, amount, limits: Limits,
          *, actor: str, request: CreateRequest | None = None, origin: str = "cabinet",
          source: str = "cabinet") -> tuple[ProviderPayment, Checkout]:
    """Begin a top-up: validate the amount, ask the provider, record it pending.

    With ``request.idempotence_key``, a start repeated with the same key
    (a double click, a retry after a timeout) returns the first payment:
    the provider answers a repeated key with the same payment, and we keep
    one row for it.
    """
    value = _amount(amount, limits)
    if account.state == "closed":
        raise PaymentError("a closed account cannot be topped up")
    if request is not None:
        if not validate_key(request.idempotence_key):
            raise PaymentError("an idempotence key must be 1-64 letters, digits, '-' or '_'")
        earlier = find_by_key(session, request.idempotence_key)
        if earlier is not None:
            if earlier.account_id != account.id or earlier.amount != value:
                raise PaymentError("this payment was already started with another amount "
                                   "or account")
            return earlier, Checkout(earlier.confirmation_url or "", earlier.txn_id,
                                     earlier.status)
    checkout = provider.create(account, value, request)
    row = ProviderPayment(provider=provider.name, txn_id=checkout.txn_id,
                          account_id=account.id, amount=value, origin=origin,
                          idempotence_key=request.idempotence_key if request else None,
                          confirmation_url=checkout.redirect_url or None,
                          receipt=request.receipt if request else None)
    session.add(row)
    session.flush()
    record_event(session, row.id, None, "pending", source,
                 f"started by {actor}" + (" (a saved payment method)"
                                          if request and request.method_id else ""))
    oplog.record(session, account_id=account.id, actor=actor, action="topup.start",
                 amount=value, provider=provider.name, txn_id=checkout.txn_id)
    return row, checkout


_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


def validate_key(key) -> bool:
    return isinstance(key, str) and 0 < len(key) <= 64 and set(key) <= _KEY_CHARS


def new_key() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class Settlement:
    payment_id: int
    account_id: int
    status: str
    amount: Decimal
    credited: bool  # True only for the callback that moved the money
    late: bool = False  # credited after it had expired on our side


def find(session: Session, provider: str, txn_id: str) -> ProviderPayment | None:
    return session.scalar(select(ProviderPayment).where(ProviderPayment.provider == provider,
                                                        ProviderPayment.txn_id == txn_id))


def settle(session: Session, provider: str, notice: Notice, *,
           source: str = "webhook") -> Settlement:
    """Apply a verified callback (or a poll's answer); idempotent.

    The amount must equal what the subscriber started (AmountMismatch, and
    nothing changes). ``paid`` credits through add_payment with the key
    ``payment:<provider>:<txn id>``; a repeat credits nothing. A final
    status is never changed by a later, different one. An expired payment
    the provider reports paid is credited all the same (the bank took the
    money), and its history says it came late. ``pending`` changes nothing.
    """
    row = find(session, provider, notice.txn_id)
    if row is None:
        raise UnknownTransaction(f"transaction {notice.txn_id} is unknown")
    if notice.amount != row.amount:
        raise AmountMismatch(f"transaction {notice.txn_id}: the provider says "
                             f"{notice.amount}, the payment was for {row.amount}")
    if notice.status not in CALLBACK_STATUSES:
        return Settlement(row.id, row.account_id, row.status, row.amount, False)
    actor = f"provider:{provider}"
    was = row.status
    if was not in ("pending", "expired"):
        return Settlement(row.id, row.account_id, row.status, row.amount, False)
    late = was == "expired" and notice.status == "paid"
    # Compare and set: of two callbacks at once, the second UPDATE waits for
    # the first and then finds the status changed.
    moved = session.execute(
        update(ProviderPayment)
        .where(ProviderPayment.id == row.id, ProviderPayment.status == was)
        .values(status=notice.status, settled_at=utcnow(), late=late,
                method_id=notice.method_id, method_title=notice.method_title)
        .returning(ProviderPayment.id)
        .execution_options(synchronize_session=False)).scalar_one_or_none()
    session.expire(row)
    if moved is None:
        return Settlement(row.id, row.account_id, row.status, row.amount, False)
    detail = None
    if late:
        detail = "the provider reported it paid after it had expired here: credited late"
    if notice.method_id:
        detail = (detail + "; " if detail else "") + "payment method saved for autopayment"
    record_event(session, row.id, was, notice.status, source, detail)
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
    return Settlement(row.id, row.account_id, "paid", row.amount, posting.created, late)


def expire_pending(session: Session, now: dt.datetime, minutes: int, *,
                   source: str = "scheduler") -> int:
    """Mark payments pending for longer than ``minutes`` expired; returns
    how many. Idempotent: an expired payment is no longer pending."""
    cutoff = now - dt.timedelta(minutes=minutes)
    ids = list(session.scalars(select(ProviderPayment.id)
                               .where(ProviderPayment.status == "pending",
                                      ProviderPayment.created_at < cutoff)
                               .order_by(ProviderPayment.id)))
    count = 0
    for payment_id in ids:
        moved = session.execute(
            update(ProviderPayment)
            .where(ProviderPayment.id == payment_id, ProviderPayment.status == "pending")
            .values(status="expired", settled_at=now)
            .returning(ProviderPayment.id)
            .execution_options(synchronize_session=False)).scalar_one_or_none()
        if moved is not None:
            record_event(session, payment_id, "pending", "expired", source,
                         f"not paid within {minutes} minutes")
            count += 1
    return count


@dataclass(frozen=True)
class PollResult:
    checked: int
    settled: list[Settlement]
    errors: list[str]


def poll(Session, provider: PollingProvider, now: dt.datetime, *, lookback_days: int = 7,
         source: str = "poll", limit: int = 500) -> PollResult:
    """Ask the provider about its payments still pending here, and about
    those expired within ``lookback_days`` (a bank may confirm late): the
    recovery for a lost callback. One transaction per payment, so one bad
    answer does not hold back the rest."""
    since = now - dt.timedelta(days=lookback_days)
    with Session() as session:
        rows = list(session.execute(
            select(ProviderPayment.id, ProviderPayment.txn_id)
            .where(ProviderPayment.provider == provider.name,
                   ProviderPayment.status.in_(("pending", "expired")),
                   ProviderPayment.created_at >= since)
            .order_by(ProviderPayment.id).limit(limit)))
    settled, errors = [], []
    for _payment_id, txn_id in rows:
        with Session() as session:
            try:
                notice = provider.fetch(txn_id)
                result = settle(session, provider.name, notice, source=source)
                session.commit()
            except PaymentError as error:
                session.rollback()
                errors.append(f"{txn_id}: {error}")
                continue
            if notice.status in CALLBACK_STATUSES and result.status == notice.status:
                settled.append(result)
    return PollResult(len(rows), settled, errors)


def refunded_total(session: Session, payment_id: int) -> Decimal:
    total = session.scalar(select(func.coalesce(func.sum(PaymentRefund.amount), 0))
                           .where(PaymentRefund.payment_id == payment_id,
                                  PaymentRefund.status != "canceled"))
    return money(total or 0)


def refund(session: Session, provider: PollingProvider, payment: ProviderPayment, amount=None,
           *, actor: str, idempotence_key: str | None = None, receipt: dict | None = None,
           source: str = "cli", reason: str | None = None) -> tuple[PaymentRefund, bool]:
    """Send ``amount`` (default: all that is left) of a paid payment back to
    the card, and take it off the balance with its own ledger entry.

    Refunds may be partial; together they never exceed the payment
    (RefundRefused, and nothing changes). With ``idempotence_key`` a
    retried refund is the same refund: the provider returns the first
    answer, and the ledger key ``refund:<provider>-<key>`` posts once.
    Returns (the refund, whether this call created it).
    """
    from rating import corrections  # corrections imports the fee run; keep it lazy

    if idempotence_key is not None:
        if not validate_key(idempotence_key):
            raise PaymentError("an idempotence key must be 1-64 letters, digits, '-' or '_'")
        earlier = session.scalar(select(PaymentRefund)
                                 .where(PaymentRefund.idempotence_key == idempotence_key))
        if earlier is not None:
            if earlier.payment_id != payment.id:
                raise RefundRefused("this refund key belongs to another payment")
            return earlier, False
    # Lock the payment: two refunds at once cannot both see the same total.
    locked = session.scalar(select(ProviderPayment).where(ProviderPayment.id == payment.id)
                            .with_for_update())
    if locked.status != "paid":
        raise RefundRefused(f"payment {payment.id} is {locked.status}; only a paid payment "
                            f"can be refunded")
    left = locked.amount - refunded_total(session, payment.id)
    if amount is None:
        value = left
    else:
        try:
            value = validate.amount(amount, "refund amount", positive=True)
        except (ValueError, TypeError, ArithmeticError):
            raise RefundRefused("a refund must be an amount like 100 or 99.50") from None
    if value <= 0 or value > left:
        raise RefundRefused(f"cannot refund {value}: {left} of payment {payment.id} "
                            f"is left to refund")
    key = idempotence_key or new_key()
    answer = provider.refund(locked.txn_id, value, idempotence_key=key, receipt=receipt)
    if answer.amount != value:
        raise ProviderUnavailable(f"the provider refunded {answer.amount}, not {value}")
    row = PaymentRefund(payment_id=payment.id, idempotence_key=key, refund_id=answer.refund_id,
                        amount=value, status=answer.status, actor=actor)
    session.add(row)
    session.flush()
    if answer.status != "canceled":
        account = session.get(Account, locked.account_id)
        correction = corrections.refund(session, account, value,
                                        # The subscriber reads it in either
                                        # language: the bank's id by default.
                                        reason=reason or locked.txn_id,
                                        actor=actor, external_id=f"{locked.provider}-{key}")
        row.entry_id = correction.postings[0].entry_id
    record_event(session, payment.id, "paid", "paid", source,
                 f"refund {value} ({answer.status}) by {actor}")
    session.flush()
    return row, True


def history(session: Session, payment_id: int) -> list[PaymentEvent]:
    return list(session.scalars(select(PaymentEvent).where(PaymentEvent.payment_id == payment_id)
                                .order_by(PaymentEvent.at, PaymentEvent.id)))


def refunds_of(session: Session, payment_id: int) -> list[PaymentRefund]:
    return list(session.scalars(select(PaymentRefund)
                                .where(PaymentRefund.payment_id == payment_id)
                                .order_by(PaymentRefund.id)))


def saved_method(session: Session, account_id: int, provider: str) -> ProviderPayment | None:
    """The account's latest paid payment whose method the provider saved."""
    return session.scalar(select(ProviderPayment)
                          .where(ProviderPayment.account_id == account_id,
                                 ProviderPayment.provider == provider,
                                 ProviderPayment.status == "paid",
                                 ProviderPayment.method_id.is_not(None))
                          .order_by(ProviderPayment.id.desc()).limit(1))
