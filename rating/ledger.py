"""The money ledger.

Rules (DESIGN "Money that cannot go wrong"):
- an entry is immutable; a mistake is corrected by a reversal entry;
- every entry carries an idempotency key, unique in the table: posting the
  same key again changes nothing and returns the first posting;
- ``accounts.balance`` is a cache of the entries' sum, changed by one atomic
  ``UPDATE ... SET balance = balance + :amount`` in the same transaction as
  the entry;
- a guarded debit is refused by the store itself: the UPDATE carries the
  bound in its WHERE clause, which PostgreSQL re-checks on the locked row,
  so two concurrent debits cannot both pass a check made before either.

Exceptions::

    LedgerError
     ├── UnknownAccount
     ├── InsufficientFunds
     └── KeyConflict        (same key, different account/amount/kind)

The caller owns the transaction: these functions never commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from config.db import money
from rating.choices import LEDGER_KINDS, MEMO_CODES
from rating.models import Account, LedgerEntry


class LedgerError(Exception):
    pass


class UnknownAccount(LedgerError):
    def __init__(self, account_id):
        super().__init__(f"account {account_id} does not exist")
        self.account_id = account_id


class InsufficientFunds(LedgerError):
    def __init__(self, account_id: int, amount: Decimal):
        super().__init__(f"account {account_id}: a debit of {-amount} would pass the credit limit")
        self.account_id = account_id
        self.amount = amount


class KeyConflict(LedgerError):
    def __init__(self, key: str):
        super().__init__(f"idempotency key {key!r} was already used for a different entry")
        self.key = key


@dataclass(frozen=True)
class Posting:
    entry_id: int
    account_id: int
    amount: Decimal
    kind: str
    key: str
    created: bool  # False: the key had been posted before; nothing changed now


def _insert_entry(session: Session, values: dict) -> int | None:
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (insert(LedgerEntry).values(**values)
                 .on_conflict_do_nothing(index_elements=["idempotency_key"])
                 .returning(LedgerEntry.id))
    return session.execute(statement).scalar_one_or_none()


def post(session: Session, *, account_id: int, amount, kind: str, key: str, author: str,
         memo: str | None = None, guarded: bool = False,
         reverses_id: int | None = None, memo_code: str | None = None,
         memo_args: dict | None = None) -> Posting:
    """Post one entry; idempotent on ``key``.

    ``memo`` is the operator's text; ``memo_code`` and ``memo_args`` say the
    same as data (rating.choices.MEMO_CODES), which the cabinet words in
    the reader's language. The arguments are plain JSON values: strings
    (amounts and dates as text), numbers, booleans.

    ``guarded=True`` refuses (InsufficientFunds) a debit that would take the
    balance below ``-credit_limit``; nothing is written then.
    """
    amount = money(amount)
    if kind not in LEDGER_KINDS:
        raise ValueError(f"unknown ledger kind {kind!r}")
    if not key:
        raise ValueError("an idempotency key is required")
    if memo_code is not None and memo_code not in MEMO_CODES:
        raise ValueError(f"unknown memo code {memo_code!r}")
    values = dict(account_id=account_id, amount=amount, kind=kind, idempotency_key=key,
                  author=author, memo=memo, reverses_id=reverses_id, memo_code=memo_code,
                  memo_args=_plain(memo_args) if memo_args else None)
    # A savepoint, so that a refused guarded debit leaves the caller's
    # transaction as it was.
    try:
        return _post(session, values, guarded)
    except IntegrityError:
        if session.get(Account, account_id) is None:
            raise UnknownAccount(account_id) from None
        raise


def _plain(args: dict) -> dict:
    """JSON-safe arguments: a Decimal, date or time as its ISO text."""
    return {name: (value if value is None or isinstance(value, (str, int, float, bool))
                   else value.isoformat() if hasattr(value, "isoformat") else str(value))
            for name, value in args.items()}


def _post(session: Session, values: dict, guarded: bool) -> Posting:
    account_id, amount, kind, key = (values[k] for k in ("account_id", "amount", "kind",
                                                          "idempotency_key"))
    with session.begin_nested():
        entry_id = _insert_entry(session, values)
        if entry_id is None:
            existing = session.execute(
                select(LedgerEntry).where(LedgerEntry.idempotency_key == key)).scalar_one()
            if (existing.account_id, existing.amount, existing.kind) != (account_id, amount, kind):
                raise KeyConflict(key)
            return Posting(existing.id, account_id, existing.amount, existing.kind, key, False)
        statement = (update(Account).where(Account.id == account_id)
                     .values(balance=Account.balance + amount)
                     .returning(Account.id)
                     .execution_options(synchronize_session=False))
        if guarded and amount < 0:
            statement = statement.where(Account.balance + amount >= -Account.credit_limit)
        if session.execute(statement).scalar_one_or_none() is None:
            if session.get(Account, account_id) is None:
                raise UnknownAccount(account_id)
            raise InsufficientFunds(account_id, amount)
    # A loaded Account in this session must not show the old balance.
    loaded = session.identity_map.get(session.identity_key(Account, account_id))
    if loaded is not None:
        session.expire(loaded, ["balance"])
    return Posting(entry_id, account_id, amount, kind, key, True)


def reverse(session: Session, entry_id: int, *, author: str, memo: str | None = None,
            memo_code: str | None = None, memo_args: dict | None = None) -> Posting:
    """Cancel an entry with an opposite one (kind ``correction``); once only."""
    entry = session.get(LedgerEntry, entry_id)
    if entry is None:
        raise LedgerError(f"ledger entry {entry_id} does not exist")
    if entry.reverses_id is not None:
        raise LedgerError(f"ledger entry {entry_id} is itself a reversal")
    return post(session, account_id=entry.account_id, amount=-entry.amount, kind="correction",
                key=f"reversal:{entry.id}", author=author,
                memo=memo or f"reversal of entry {entry.id}", reverses_id=entry.id,
                memo_code=memo_code or "reversal",
                memo_args=memo_args or {"entry": entry.id, "kind": entry.kind,
                                        "reason": memo,
                                        "day": entry.created_at.date().isoformat()})


def balance_mismatches(session: Session) -> list[tuple[int, Decimal, Decimal]]:
    """Accounts whose cached balance differs from the sum of their entries."""
    sums = (select(LedgerEntry.account_id, func.sum(LedgerEntry.amount).label("total"))
            .group_by(LedgerEntry.account_id).subquery())
    rows = session.execute(
        select(Account.id, Account.balance, func.coalesce(sums.c.total, 0))
        .outerjoin(sums, sums.c.account_id == Account.id)).all()
    return [(account_id, cached, total) for account_id, cached, total in rows if cached != total]
