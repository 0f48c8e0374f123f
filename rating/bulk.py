"""Bulk changes: one service change for hundreds or thousands of accounts.

The life of an operation:

- ``preview`` writes the operation (state ``previewed``) and one item per
  account: what the change will cost it, or why it cannot be made
  (``refused``, a reason code and sentence). Nothing of the accounts
  changes.
- ``apply`` makes the change on every ``ready`` item through the same rule
  a single change goes through (rating.changes), so ledger keys, log lines
  and the profile-change outbox (CoA) are those of one change per account.
  One transaction per chunk: each item leaves ``ready`` in the transaction
  that changes its account, so an apply cut short (a crash, a lost
  connection) is continued by applying again, and nothing is made twice;
  two applies at once take different chunks (``FOR UPDATE SKIP LOCKED``
  on PostgreSQL). The rules are checked again on apply: an account that
  changed since the preview may be refused then. The operation's counts
  (``done``, ``refused``) are its progress.
- An operation with ``effective_on`` schedules each change for that day
  (rating.scheduled_changes) instead of making it now.
- ``revert`` previews a new operation of the reversing changes
  (rating.changes.reversal) for the accounts the first one changed; it is
  applied like any other, and marks the first ``reverted``.

Reads are batched (a thousand accounts a query); the per-account work is
the single-change rule over values already read.

Exceptions: DomainError (bad input, nothing changed).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import Callable, Iterable

from sqlalchemy import case, func, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from config.db import utcnow
from rating import changes, ledger, oplog, scheduled_changes
from rating.models import Account, BulkItem, BulkOperation, ScheduledChange, Tariff
from rating.validate import DomainError, NotFound

log = logging.getLogger(__name__)

STATES = ("previewed", "applying", "applied", "partially", "reverted")
READ_CHUNK = 1000
APPLY_CHUNK = 500
MAX_ACCOUNTS = 100_000


@dataclass(frozen=True)
class Totals:
    total: int
    ready: int
    refused: int
    done: int
    scheduled: int
    cost: Decimal
    by_reason: dict[str, int]


# -- selection ------------------------------------------------------------------------

def select_accounts(session: Session, *, account_ids: Iterable[int] | None = None,
                    numbers: Iterable[str] | None = None, tariff: str | None = None,
                    customer_id: int | None = None, unit_id: int | None = None) -> list[int]:
    """Account ids: those given (by id or number), those on a tariff, or a
    customer's (an org unit's subtree) when the org tree exists; several
    criteria narrow each other. Unknown numbers are a DomainError."""
    chosen: set[int] | None = None

    def narrow(found: Iterable[int]):
        nonlocal chosen
        found = set(found)
        chosen = found if chosen is None else chosen & found

    if numbers is not None:
        numbers = [str(n).strip() for n in numbers if str(n).strip()]
        found = {}
        for start in range(0, len(numbers), READ_CHUNK):
            found.update(session.execute(select(Account.number, Account.id).where(
                Account.number.in_(numbers[start:start + READ_CHUNK]))).all())
        missing = [n for n in numbers if n not in found]
        if missing:
            raise NotFound(f"no account {missing[0]!r}" + (
                f" (and {len(missing) - 1} more unknown)" if len(missing) > 1 else ""))
        narrow(found.values())
    if account_ids is not None:
        narrow(account_ids)
    if tariff is not None:
        found_tariff = session.scalar(select(Tariff.id).where(Tariff.name == tariff))
        if found_tariff is None:
            raise NotFound(f"tariff {tariff!r} does not exist")
        narrow(session.scalars(select(Account.id).where(Account.tariff_id == found_tariff)))
    if customer_id is not None:
        try:
            from rating import org
        except ImportError:
            raise DomainError("customers are not available in this version") from None
        narrow(org.branch_accounts(session, customer_id, unit_id))
    if chosen is None:
        raise DomainError("choose the accounts: a list, a tariff or a customer")
    if not chosen:
        raise DomainError("no account matches the selection")
    if len(chosen) > MAX_ACCOUNTS:
        raise DomainError(f"at most {MAX_ACCOUNTS} accounts in one operation")
    return sorted(chosen)


# -- preview --------------------------------------------------------------------------

def preview(session: Session, kind: str, parameters: dict, account_ids: list[int],
            terms: changes.Terms, *, selection: dict | None = None,
            effective_on: dt.date | None = None, progress: Callable[[int], None] | None = None,
            ) -> BulkOperation:
    """Write the operation and its items (cost or refusal each); the caller commits."""
    if kind not in changes.KINDS:
        raise DomainError(f"a change is one of {', '.join(changes.KINDS)}")
    if effective_on is not None and effective_on <= terms.today:
        raise DomainError("a change is scheduled for a day after today")
    parameters = changes.check_parameters(session, kind, parameters,
                                          today=effective_on or terms.today)
    if effective_on is not None:
        terms = _on_day(terms, effective_on)
    operation = BulkOperation(kind=kind, parameters=parameters, selection=selection or {},
                              effective_on=effective_on, created_by=terms.actor)
    session.add(operation)
    session.flush()
    _write_items(session, operation, [(a, None) for a in account_ids], terms, progress)
    return operation


def _on_day(terms: changes.Terms, day: dt.date) -> changes.Terms:
    """The terms a change scheduled for ``day`` will meet (as far as known now)."""
    return changes.Terms(now=terms.now, today=day, actor=terms.actor,
                         freeze_rules=terms.freeze_rules, by_subscriber=terms.by_subscriber,
                         starts_on=day)


def _write_items(session: Session, operation: BulkOperation,
                 targets: list[tuple[int, dict | None]], terms: changes.Terms,
                 progress) -> None:
    total = refused = 0
    for start in range(0, len(targets), READ_CHUNK):
        chunk = targets[start:start + READ_CHUNK]
        accounts = _accounts(session, [a for a, _ in chunk])
        groups = _by_change(operation, chunk)
        rows = []
        for kind, parameters, members in groups:
            ready = changes.prepare(session, kind, parameters, members, terms)
            for account_id in members:
                row = {"bulk_id": operation.id, "account_id": account_id, "state": "ready",
                       "change": (None if operation.kind != "revert"
                                  else {"kind": kind, "parameters": parameters})}
                account = accounts.get(account_id)
                try:
                    if account is None:
                        raise NotFound(f"account {account_id} does not exist")
                    row["cost"] = changes.verdict(session, account, kind, parameters, ready,
                                                  terms)
                except DomainError as error:
                    row.update(state="refused", reason_code=getattr(error, "code", "refused"),
                               reason=str(error)[:300])
                    refused += 1
                rows.append(row)
        if rows:
            session.execute(insert(BulkItem), rows)
        total += len(chunk)
        if progress:
            progress(len(chunk))
    operation.total = total
    operation.refused = refused


def _by_change(operation: BulkOperation, chunk) -> list[tuple[str, dict, list[int]]]:
    """The chunk's accounts grouped by their change: (kind, parameters,
    account ids); one group for a plain operation, a revert's may differ."""
    groups: dict[tuple, list[int]] = {}
    for account_id, change in chunk:
        kind = change["kind"] if change else operation.kind
        parameters = change["parameters"] if change else operation.parameters
        groups.setdefault((kind, _frozen(parameters)), []).append(account_id)
    return [(kind, dict(frozen), members) for (kind, frozen), members in groups.items()]


def _frozen(parameters: dict | None) -> tuple:
    return tuple(sorted((parameters or {}).items()))


def _accounts(session: Session, account_ids: list[int]) -> dict[int, Account]:
    return {a.id: a for a in session.scalars(
        select(Account).where(Account.id.in_(account_ids))).unique()}


# -- apply ----------------------------------------------------------------------------

def apply(Session_: sessionmaker, operation_id: int, terms: changes.Terms, *,
          progress: Callable[[int], None] | None = None) -> BulkOperation:
    """Make the operation's ready changes, a chunk per transaction; safe to
    run again after a crash and on two nodes at once. Returns the
    operation as it ends (read in a session of its own, detached)."""
    with Session_() as session:
        operation = get(session, operation_id)
        if operation.state in ("applied", "partially", "reverted"):
            return operation
        reverted = operation.reverts_id
        kind, parameters, effective_on = (operation.kind, operation.parameters,
                                          operation.effective_on)
        # Conditional: the first apply moves it, a second one joins in.
        session.execute(update(BulkOperation)
                        .where(BulkOperation.id == operation_id,
                               BulkOperation.state == "previewed")
                        .values(state="applying", applied_by=terms.actor, applied_at=terms.now)
                        .execution_options(synchronize_session=False))
        session.commit()
    postgres = None
    while True:
        with Session_() as session:
            if postgres is None:
                postgres = session.get_bind().dialect.name == "postgresql"
            query = (select(BulkItem).where(BulkItem.bulk_id == operation_id,
                                            BulkItem.state == "ready")
                     .order_by(BulkItem.id).limit(APPLY_CHUNK))
            if postgres:
                query = query.with_for_update(skip_locked=True)
            items = list(session.scalars(query))
            if not items:
                break
            made = _apply_chunk(session, operation_id, kind, parameters, effective_on, items,
                                terms)
            session.commit()
        if progress:
            progress(made)
    with Session_() as session:
        operation = get(session, operation_id)
        left = session.scalar(select(func.count()).select_from(BulkItem).where(
            BulkItem.bulk_id == operation_id, BulkItem.state == "ready"))
        if left == 0:
            # Conditional: of two applies finishing at once, one closes it.
            closed = session.execute(
                update(BulkOperation)
                .where(BulkOperation.id == operation_id, BulkOperation.state == "applying")
                .values(state=case((BulkOperation.refused > 0, "partially"), else_="applied"),
                        finished_at=utcnow())
                .execution_options(synchronize_session=False)).rowcount
            if closed == 1:
                oplog.record(session, account_id=None, actor=terms.actor, action="bulk.apply",
                             bulk=operation.id, kind=operation.kind, done=operation.done,
                             refused=operation.refused)
                if reverted is not None:
                    session.execute(update(BulkOperation).where(BulkOperation.id == reverted)
                                    .values(state="reverted")
                                    .execution_options(synchronize_session=False))
        session.commit()
        session.refresh(operation)
        session.expunge(operation)
        return operation


def _apply_chunk(session: Session, operation_id: int, kind: str, parameters: dict,
                 effective_on: dt.date | None, items: list[BulkItem],
                 terms: changes.Terms) -> int:
    accounts = _accounts(session, [item.account_id for item in items])
    groups: dict[tuple, list[BulkItem]] = {}
    for item in items:
        change = item.change or {"kind": kind, "parameters": parameters}
        groups.setdefault((change["kind"], _frozen(change["parameters"])), []).append(item)
    done = refused = 0
    finished = []
    for (item_kind, frozen), members in groups.items():
        item_parameters = dict(frozen)
        if effective_on is not None:
            for item in members:
                try:
                    row = scheduled_changes.schedule(
                        session, accounts[item.account_id], item_kind, item_parameters,
                        effective_on, today=terms.today, actor=terms.actor,
                        bulk_id=operation_id)
                except DomainError as error:
                    finished.append((item, "refused", None, None, error))
                    refused += 1
                    continue
                finished.append((item, "scheduled", None, {}, {"scheduled": row}))
                done += 1
            continue
        ready = changes.prepare(session, item_kind, item_parameters,
                                [item.account_id for item in members], terms)
        for item in members:
            account = accounts[item.account_id]
            try:
                made = changes.perform(session, account, item_kind, item_parameters, ready,
                                       terms, request_id=f"bulk{operation_id}")
            except (DomainError, ledger.LedgerError) as error:
                # The rules refuse before they write (a debit refused by the
                # ledger is rolled back to its savepoint): nothing is kept.
                finished.append((item, "refused", None, None, error))
                refused += 1
                continue
            finished.append((item, "done", made.cost, made.before, made.result))
            done += 1
    # The log lines and scheduled rows get their ids; then each item says
    # what it made, in the same transaction as the change.
    session.flush()
    now = utcnow()
    for item, state, cost, before, result in finished:
        item.state = state
        item.changed_at = now
        if state == "refused":
            item.reason_code = getattr(result, "code", "refused")
            item.reason = str(result)[:300]
            continue
        if cost is not None:
            item.cost = cost
        item.before = before
        item.result = {name: getattr(value, "id", value) for name, value in result.items()}
    session.execute(update(BulkOperation).where(BulkOperation.id == operation_id)
                    .values(done=BulkOperation.done + done,
                            refused=BulkOperation.refused + refused)
                    .execution_options(synchronize_session=False))
    return done + refused


# -- revert ---------------------------------------------------------------------------

def revert(session: Session, operation_id: int, terms: changes.Terms, *,
           progress: Callable[[int], None] | None = None) -> BulkOperation:
    """Preview the operation that undoes ``operation_id`` for the accounts it
    changed (apply it with ``apply``); the caller commits."""
    original = get(session, operation_id)
    if original.kind == "revert":
        raise DomainError("a revert is undone by a new bulk change, not by another revert")
    if original.state not in ("applied", "partially"):
        raise DomainError(f"bulk change {original.id} is {original.state}; only an applied "
                          f"one can be reverted")
    if session.scalar(select(BulkOperation.id).where(
            BulkOperation.reverts_id == original.id,
            BulkOperation.state.in_(("previewed", "applying")))) is not None:
        raise DomainError(f"a revert of bulk change {original.id} is already under way")
    targets = []
    skipped = 0
    for item in session.scalars(select(BulkItem).where(
            BulkItem.bulk_id == original.id, BulkItem.state.in_(("done", "scheduled")))
            .order_by(BulkItem.id)):
        change = _undo(session, original, item)
        if change is None:
            skipped += 1
            continue
        targets.append((item.account_id, {"kind": change[0], "parameters": change[1]}))
    if not targets:
        raise DomainError(f"bulk change {original.id} changed nothing that can be undone"
                          + (" (an option bought is not taken back)"
                             if original.kind == "option" else ""))
    operation = BulkOperation(kind="revert", parameters={"of": original.id,
                                                         "kind": original.kind},
                              selection={"revert": original.id}, reverts_id=original.id,
                              created_by=terms.actor)
    session.add(operation)
    session.flush()
    _write_items(session, operation, targets, terms, progress)
    return operation


def _undo(session: Session, original: BulkOperation, item: BulkItem):
    scheduled_id = (item.result or {}).get("scheduled")
    if scheduled_id is None:
        return changes.reversal(original.kind, original.parameters, item.before)
    row = session.get(ScheduledChange, scheduled_id)
    if row is None:
        return None
    if row.state == "pending":
        return "cancel", {"scheduled": row.id}
    if row.state == "applied":
        return changes.reversal(row.kind, row.parameters, row.before)
    return None


# -- reading ----------------------------------------------------------------------------

def get(session: Session, operation_id, *, created_by: str | None = None) -> BulkOperation:
    try:
        number = int(operation_id)
    except (TypeError, ValueError):
        number = 0
    operation = session.get(BulkOperation, number) if 0 < number < 2 ** 31 else None
    if operation is None or (created_by is not None and operation.created_by != created_by):
        raise NotFound(f"bulk change {operation_id} does not exist")
    return operation


def totals(session: Session, operation_id: int) -> Totals:
    rows = session.execute(select(BulkItem.state, BulkItem.reason_code, func.count(),
                                  func.coalesce(func.sum(BulkItem.cost), 0))
                           .where(BulkItem.bulk_id == operation_id)
                           .group_by(BulkItem.state, BulkItem.reason_code)).all()
    count = {s: 0 for s in ("ready", "refused", "done", "scheduled")}
    by_reason: dict[str, int] = {}
    cost = Decimal("0.00")
    for state, code, n, amount in rows:
        count[state] += n
        if state == "refused":
            by_reason[code or "refused"] = by_reason.get(code or "refused", 0) + n
        else:
            cost += Decimal(amount)
    return Totals(sum(count.values()), count["ready"], count["refused"], count["done"],
                  count["scheduled"], cost.quantize(Decimal("0.01")), by_reason)


def items(session: Session, operation_id: int, *, state: str | None = None,
          limit: int = 1000, offset: int = 0) -> list[tuple[BulkItem, str]]:
    """(item, account number), by account number."""
    query = (select(BulkItem, Account.number).join(Account, Account.id == BulkItem.account_id)
             .where(BulkItem.bulk_id == operation_id)
             .order_by(Account.number).limit(limit).offset(offset))
    if state is not None:
        query = query.where(BulkItem.state == state)
    return [(item, number) for item, number in session.execute(query)]


def listing(session: Session, *, created_by: str | None = None, limit: int = 100,
            offset: int = 0) -> list[BulkOperation]:
    query = select(BulkOperation).order_by(BulkOperation.id.desc()).limit(limit).offset(offset)
    if created_by is not None:
        query = query.where(BulkOperation.created_by == created_by)
    return list(session.scalars(query))


def describe(operation: BulkOperation) -> str:
    if operation.kind == "revert":
        return f"revert of bulk change {operation.parameters.get('of')}"
    text = changes.describe(operation.kind, operation.parameters)
    if operation.effective_on:
        text += f" on {operation.effective_on.isoformat()}"
    return text
