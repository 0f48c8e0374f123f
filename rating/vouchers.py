"""Vouchers (prepaid cards, карты оплаты): a code worth a fixed amount,
redeemed once into one account's balance.

Only a SHA-256 of the code is stored, with its last four characters for
the admin's listing: a leaked database does not hand out money. A code has
79 random bits (16 characters of a 31-letter alphabet), so a plain hash is
enough; nobody can try 2^79 codes.

Redeeming is a claim and a payment in one transaction:

- the claim is ``UPDATE vouchers SET redeemed_by = … WHERE id = … AND
  redeemed_by IS NULL``: of two accounts racing for one code, PostgreSQL
  lets the second UPDATE re-check the row after the first commits, and it
  finds it taken; SQLite serialises writers (BEGIN IMMEDIATE);
- the payment goes through rating.accounts.add_payment with the ledger key
  ``payment:voucher:<voucher id>``, so even a claim that somehow ran twice
  credits once, and the balance policies run as for any payment.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass
from decimal import Decimal
from typing import Optional

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Integer, String, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from config.db import Base, Money, utcnow
from rating import accounts, oplog
from rating.accounts import DomainError
from rating.models import Account
from rating import validate

# No 0/O, 1/I/L: a code is read off a scratch card and typed on a phone.
# 31 letters, 16 of them: 79 random bits.
ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 16
GROUP = 4
MAX_COUNT = 10_000
MAX_AMOUNT = Decimal("100000.00")
PROVIDER = "voucher"

_BATCH = re.compile(r"^[0-9A-Za-z._-]{1,32}$")


class Voucher(Base):
    __tablename__ = "vouchers"
    __table_args__ = (CheckConstraint("amount > 0", name="amount"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # SHA-256 (hex) of the normalised code; the code itself is never stored.
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The last characters, so an admin can tell cards apart in a listing.
    code_tail: Mapped[str] = mapped_column(String(8))
    batch: Mapped[str] = mapped_column(String(32), index=True)
    amount: Mapped[Decimal] = mapped_column(Money)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    redeemed_by: Mapped[Optional[int]] = mapped_column(ForeignKey("accounts.id"), index=True)
    redeemed_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)


class WrongVoucher(DomainError):
    """No such code (or a malformed one). Counts toward the rate limit."""


class VoucherUsed(DomainError):
    """The code is real but another account redeemed it."""


@dataclass(frozen=True)
class IssuedVoucher:
    id: int
    code: str  # shown once, at issue
    amount: Decimal
    batch: str


@dataclass(frozen=True)
class Redemption:
    voucher_id: int
    amount: Decimal
    entry_id: int
    created: bool  # False: this account had redeemed it already (a double submit)


# -- codes (pure) -------------------------------------------------------------

def new_code() -> str:
    raw = "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))
    return format_code(raw)


def format_code(raw: str) -> str:
    return "-".join(raw[i:i + GROUP] for i in range(0, len(raw), GROUP))


def normalize_code(code: str | None) -> str | None:
    """What the subscriber typed -> the 16 characters, or None if it cannot be a code.

    Spaces and dashes are ignored, case too; O and I typed by mistake read
    as 0 and 1 would be wrong letters anyway, so they simply fail.
    """
    cleaned = re.sub(r"[\s-]", "", code or "").upper()
    if len(cleaned) != CODE_LENGTH or any(c not in ALPHABET for c in cleaned):
        return None
    return cleaned


def code_hash(normalized: str) -> str:
    return hashlib.sha256(normalized.encode("ascii")).hexdigest()


# -- use cases ----------------------------------------------------------------

def issue(session: Session, *, count: int, amount, batch: str | None = None,
          actor: str = "admin") -> list[IssuedVoucher]:
    """Make ``count`` vouchers of ``amount``; the codes are returned once."""
    if not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
        raise DomainError(f"the count must be 1 to {MAX_COUNT}")
    try:
        value = validate.amount(amount, negative_ok=True)
    except (ValueError, TypeError, ArithmeticError):
        raise DomainError(f"amount must be an amount like 100 or 99.50, not {amount!r}") from None
    if not Decimal("0") < value <= MAX_AMOUNT:
        raise DomainError(f"a voucher must be worth 0.01 to {MAX_AMOUNT}")
    batch = batch or utcnow().strftime("%Y%m%d-%H%M%S")
    if not _BATCH.match(batch):
        raise DomainError("a batch name must be 1-32 letters, digits, dots, dashes or "
                          "underscores")
    codes = []
    seen = set()
    while len(codes) < count:
        code = new_code()
        digest = code_hash(normalize_code(code))
        if digest in seen:
            continue
        seen.add(digest)
        codes.append((code, digest))
    rows = [Voucher(code_hash=digest, code_tail=code[-GROUP:], batch=batch, amount=value)
            for code, digest in codes]
    session.add_all(rows)
    session.flush()
    oplog.record(session, account_id=None, actor=actor, action="voucher.issue", batch=batch,
                 count=count, amount=value)
    return [IssuedVoucher(row.id, code, value, batch) for row, (code, _) in zip(rows, codes)]


def redeem(session: Session, account: Account, code: str, *, actor: str,
           now: dt.datetime | None = None) -> Redemption:
    """Credit the voucher's amount to ``account``, once.

    Raises WrongVoucher for a code that does not exist, VoucherUsed for one
    another account has redeemed. The same account redeeming again (a
    double submit) gets the first redemption back with ``created=False``.
    """
    normalized = normalize_code(code)
    if normalized is None:
        raise WrongVoucher("the voucher code is wrong")
    voucher = session.scalar(select(Voucher).where(Voucher.code_hash == code_hash(normalized)))
    if voucher is None:
        raise WrongVoucher("the voucher code is wrong")
    if account.state == "closed":
        raise DomainError("a closed account cannot be topped up")
    now = now or utcnow()
    claimed = session.execute(
        update(Voucher).where(Voucher.id == voucher.id, Voucher.redeemed_by.is_(None))
        .values(redeemed_by=account.id, redeemed_at=now)
        .returning(Voucher.id)
        .execution_options(synchronize_session=False)).scalar_one_or_none()
    session.expire(voucher)
    if claimed is None and voucher.redeemed_by != account.id:
        raise VoucherUsed("this voucher has already been used")
    posting = accounts.add_payment(session, account, voucher.amount,
                                   external_id=str(voucher.id), provider=PROVIDER, actor=actor,
                                   memo=f"voucher …{voucher.code_tail}",
                                   memo_args={"tail": voucher.code_tail})
    if posting.created:
        oplog.record(session, account_id=account.id, actor=actor, action="voucher.redeem",
                     amount=voucher.amount, voucher=f"…{voucher.code_tail}")
    return Redemption(voucher.id, voucher.amount, posting.entry_id, posting.created)


@dataclass(frozen=True)
class VoucherRow:
    id: int
    batch: str
    code_tail: str
    amount: Decimal
    created_at: dt.datetime
    redeemed_by: str | None  # account number
    redeemed_at: dt.datetime | None


def listing(session: Session, *, batch: str | None = None,
            limit: int = 1000, offset: int = 0) -> list[VoucherRow]:
    query = (select(Voucher, Account.number)
             .outerjoin(Account, Account.id == Voucher.redeemed_by)
             .order_by(Voucher.id).limit(limit).offset(offset))
    if batch:
        query = query.where(Voucher.batch == batch)
    return [VoucherRow(v.id, v.batch, v.code_tail, v.amount, v.created_at, number,
                       v.redeemed_at) for v, number in session.execute(query)]
