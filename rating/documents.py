"""A company's monthly documents: the invoice (счёт) and the act (акт).

Both list the services of one month as the ledger charged them: the
subscription fee, traffic and options, each summed, with corrections of
those charges taken off the line they correct. The figures are the
ledger's; the cabinet only lays them out.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from rating.accounts import DomainError, NotFound
from rating.models import Account, LedgerEntry

# Ledger kinds that are services rendered, in the order they are listed.
SERVICE_KINDS = ("fee", "traffic", "option")


@dataclass(frozen=True)
class DocumentLine:
    kind: str
    entries: int
    amount: Decimal  # positive: what the service cost


@dataclass(frozen=True)
class MonthDocument:
    account_id: int
    number: str  # the document's number: <account number>-<YYYYMM>
    first_day: dt.date
    last_day: dt.date
    lines: tuple[DocumentLine, ...]
    total: Decimal


def month_services(session: Session, account_id: int, first_day: dt.date, last_day: dt.date,
                   start: dt.datetime, end: dt.datetime) -> MonthDocument:
    """The services of [start, end) (UTC bounds of the local month)."""
    account = session.get(Account, account_id)
    if account is None:
        raise NotFound(f"account {account_id} does not exist")
    if account.kind != "company":
        raise DomainError("invoices and acts are issued to companies only")
    if end <= start:
        raise DomainError("the period must end after it starts")
    reversed_entry = aliased(LedgerEntry)
    # A correction counts under the kind of the entry it reverses.
    kind = func.coalesce(reversed_entry.kind, LedgerEntry.kind)
    rows = session.execute(
        select(kind, func.count(), func.sum(LedgerEntry.amount))
        .select_from(LedgerEntry)
        .outerjoin(reversed_entry, reversed_entry.id == LedgerEntry.reverses_id)
        .where(LedgerEntry.account_id == account_id, LedgerEntry.created_at >= start,
               LedgerEntry.created_at < end, kind.in_(SERVICE_KINDS))
        .group_by(kind)).all()
    sums = {row_kind: (count, -Decimal(total)) for row_kind, count, total in rows}
    lines = tuple(DocumentLine(k, sums[k][0], sums[k][1]) for k in SERVICE_KINDS
                  if k in sums and sums[k][1] != 0)
    total = sum((line.amount for line in lines), Decimal("0.00"))
    return MonthDocument(account_id, f"{account.number}-{first_day:%Y%m}", first_day, last_day,
                         lines, total)


# -- consolidated documents (issue 21) --

@dataclass(frozen=True)
class ConsolidatedLine:
    account_id: int
    number: str
    name: str
    amounts: dict  # kind -> positive amount
    total: Decimal


@dataclass(frozen=True)
class ConsolidatedDocument:
    """One invoice or act for many accounts of a customer: a line per account."""

    number: str  # C<customer id>[-U<unit id>]-<YYYYMM>
    first_day: dt.date
    last_day: dt.date
    lines: tuple[ConsolidatedLine, ...]
    total: Decimal


def consolidated_services(session: Session, number: str, account_ids,
                          first_day: dt.date, last_day: dt.date, start: dt.datetime,
                          end: dt.datetime) -> ConsolidatedDocument:
    """The services of [start, end) of every account, summed per account and
    kind in one statement (corrections under the kind they correct, as in
    month_services); accounts charged nothing are left out. ``account_ids``:
    a list, or a SELECT of ids (rating.org.branch_query)."""
    if end <= start:
        raise DomainError("the period must end after it starts")
    lines: list[ConsolidatedLine] = []
    if not isinstance(account_ids, (list, tuple, set)) or account_ids:
        reversed_entry = aliased(LedgerEntry)
        kind = func.coalesce(reversed_entry.kind, LedgerEntry.kind)
        rows = session.execute(
            select(LedgerEntry.account_id, Account.number, Account.name, kind,
                   func.sum(LedgerEntry.amount))
            .select_from(LedgerEntry)
            .join(Account, Account.id == LedgerEntry.account_id)
            .outerjoin(reversed_entry, reversed_entry.id == LedgerEntry.reverses_id)
            .where(LedgerEntry.account_id.in_(account_ids), LedgerEntry.created_at >= start,
                   LedgerEntry.created_at < end, kind.in_(SERVICE_KINDS))
            .group_by(LedgerEntry.account_id, Account.number, Account.name, kind)
            .order_by(Account.number)).all()
        sums: dict[int, dict[str, Decimal]] = {}
        names: dict[int, tuple[str, str]] = {}
        for account_id, account_number, name, row_kind, total in rows:
            names.setdefault(account_id, (account_number, name))
            if total:
                sums.setdefault(account_id, {})[row_kind] = -Decimal(total)
        for account_id, (account_number, name) in names.items():
            if account_id not in sums:
                continue
            amounts = {k: sums[account_id][k] for k in SERVICE_KINDS if k in sums[account_id]}
            total = sum(amounts.values(), Decimal("0.00"))
            if total != 0:
                lines.append(ConsolidatedLine(account_id, account_number, name, amounts, total))
    total = sum((line.total for line in lines), Decimal("0.00"))
    return ConsolidatedDocument(f"{number}-{first_day:%Y%m}", first_day, last_day,
                                tuple(lines), total)
