"""Service changes ordered for a day: listed, cancellable before the day,
made once on it by the scheduler.

Rules:
- a change is ordered for a day after today; until that day it is
  ``pending`` and may be cancelled (``cancelled``, nothing else happens);
- on its day the scheduler makes it through the same rule a change made
  by hand goes through (rating.changes), in the fee run before the day is
  charged, so a tariff scheduled for a day is the day's tariff;
- exactly once, even with two schedulers: a due row is claimed by the
  transaction that makes the change (``FOR UPDATE SKIP LOCKED`` on
  PostgreSQL, so a second node takes other rows instead of waiting; SQLite
  runs one writer at a time) and leaves ``pending`` in that same
  transaction, so a row is made once or not at all; what the change posts
  carries its own key as well (an option's debit: ``sched<id>``);
- a change its day finds impossible (the account closed meanwhile, no
  money for an option) becomes ``failed`` with the reason; nothing of it
  is kept.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from config.db import utcnow
from rating import changes, oplog
from rating.models import Account, OperationLog, ScheduledChange
from rating.validate import DomainError, NotFound

log = logging.getLogger(__name__)

STATES = ("pending", "applied", "cancelled", "failed")
CHUNK = 200


def schedule(session: Session, account: Account, kind: str, parameters: dict,
             effective_on: dt.date, *, today: dt.date, actor: str,
             bulk_id: int | None = None) -> ScheduledChange:
    """Order a change for ``effective_on`` (a day after today)."""
    if kind not in changes.KINDS:
        raise DomainError(f"a change is one of {', '.join(changes.KINDS)}")
    if effective_on <= today:
        raise DomainError("a change is scheduled for a day after today "
                          "(a change for today is made at once)")
    if account.state == "closed":
        raise DomainError(f"account {account.number} is closed")
    parameters = changes.check_parameters(session, kind, parameters, today=effective_on)
    row = ScheduledChange(account_id=account.id, kind=kind, parameters=parameters,
                          effective_on=effective_on, created_by=actor, bulk_id=bulk_id)
    session.add(row)
    session.flush()
    oplog.record(session, account_id=account.id, actor=actor, action="change.schedule",
                 change=row.id, kind=kind, effective_on=effective_on,
                 **{k: v for k, v in parameters.items() if k != "kind"})
    return row


def get(session: Session, change_id, account_ids=None) -> ScheduledChange:
    """The scheduled change with this id (as a form or a command gives it),
    among ``account_ids`` if given; NotFound otherwise."""
    try:
        number = int(change_id)
    except (TypeError, ValueError):
        number = 0
    row = session.get(ScheduledChange, number) if 0 < number < 2 ** 31 else None
    if row is None or (account_ids is not None and row.account_id not in set(account_ids)):
        raise NotFound(f"scheduled change {change_id} does not exist")
    return row


def cancellable(session: Session, change_id, today: dt.date) -> ScheduledChange:
    row = get(session, change_id)
    if row.state != "pending":
        raise changes.Refusal("not_pending", f"scheduled change {row.id} is {row.state}")
    if row.effective_on <= today:
        raise changes.Refusal("not_pending", f"scheduled change {row.id} takes effect today "
                                             f"and can no longer be cancelled")
    return row


def cancel(session: Session, change_id, *, today: dt.date, actor: str,
           account_ids=None) -> ScheduledChange:
    """Withdraw a pending change before its day; nothing else happens."""
    row = get(session, change_id, account_ids)
    cancellable(session, row.id, today)
    # Conditional, so a scheduler claiming it at this moment wins or loses
    # as a whole: the row leaves "pending" once.
    moved = session.execute(update(ScheduledChange)
                            .where(ScheduledChange.id == row.id,
                                   ScheduledChange.state == "pending")
                            .values(state="cancelled", finished_by=actor,
                                    finished_at=utcnow())
                            .execution_options(synchronize_session=False)).rowcount
    if moved != 1:
        raise changes.Refusal("not_pending", f"scheduled change {row.id} is no longer pending")
    session.expire(row)
    oplog.record(session, account_id=row.account_id, actor=actor, action="change.cancel",
                 change=row.id, kind=row.kind)
    return row


def listing(session: Session, *, account_ids=None, state: str | None = None,
            bulk_id: int | None = None, limit: int = 1000,
            offset: int = 0) -> list[tuple[ScheduledChange, str]]:
    """(change, account number), by day then id."""
    query = (select(ScheduledChange, Account.number)
             .join(Account, Account.id == ScheduledChange.account_id)
             .order_by(ScheduledChange.effective_on, ScheduledChange.id)
             .limit(limit).offset(offset))
    if account_ids is not None:
        query = query.where(ScheduledChange.account_id.in_(list(account_ids)))
    if state is not None:
        query = query.where(ScheduledChange.state == state)
    if bulk_id is not None:
        query = query.where(ScheduledChange.bulk_id == bulk_id)
    return [(row, number) for row, number in session.execute(query)]


def apply_due(session: Session, today: dt.date, *, now: dt.datetime | None = None,
              freeze_rules=None, actor: str = "scheduler") -> dict[str, int]:
    """Make the changes due on or before ``today``; one transaction (and a
    commit) per chunk. Returns {"applied": n, "failed": n}."""
    counts = {"applied": 0, "failed": 0}
    postgres = session.get_bind().dialect.name == "postgresql"
    while True:
        query = (select(ScheduledChange)
                 .where(ScheduledChange.state == "pending",
                        ScheduledChange.effective_on <= today)
                 .order_by(ScheduledChange.id).limit(CHUNK))
        if postgres:
            query = query.with_for_update(skip_locked=True)
        due = list(session.scalars(query))
        if not due:
            session.commit()
            return counts
        for row in due:
            _make(session, row, now or utcnow(), freeze_rules, actor, counts)
        session.commit()


def _make(session: Session, row: ScheduledChange, now: dt.datetime, freeze_rules,
          actor: str, counts: dict) -> None:
    # The claim: the row leaves "pending" in the transaction that makes it.
    claimed = session.execute(update(ScheduledChange)
                              .where(ScheduledChange.id == row.id,
                                     ScheduledChange.state == "pending")
                              .values(state="applied", finished_by=actor, finished_at=now)
                              .execution_options(synchronize_session=False)).rowcount
    if claimed != 1:
        return
    account = session.get(Account, row.account_id)
    terms = changes.Terms(now=now, today=row.effective_on, actor=actor,
                          starts_on=row.effective_on,
                          **({"freeze_rules": freeze_rules} if freeze_rules else {}))
    try:
        with session.begin_nested():
            ready = changes.prepare(session, row.kind, row.parameters, [account.id], terms)
            done = changes.perform(session, account, row.kind, row.parameters, ready, terms,
                                   request_id=f"sched{row.id}")
            session.flush()
    except DomainError as error:
        code = getattr(error, "code", "refused")
        session.execute(update(ScheduledChange).where(ScheduledChange.id == row.id)
                        .values(state="failed", reason_code=code, reason=str(error)[:300])
                        .execution_options(synchronize_session=False))
        session.expire(row)
        oplog.record(session, account_id=row.account_id, actor=actor, action="change.failed",
                     change=row.id, kind=row.kind, reason=str(error))
        log.info("scheduled_change.failed id=%d account=%d kind=%s reason=%s", row.id,
                 row.account_id, row.kind, code)
        counts["failed"] += 1
        return
    session.execute(update(ScheduledChange).where(ScheduledChange.id == row.id)
                    .values(before=done.before, result=plain_result(done.result))
                    .execution_options(synchronize_session=False))
    session.expire(row)
    counts["applied"] += 1


def plain_result(result: dict) -> dict:
    """A change's result as JSON values: a log line becomes its id (flushed)."""
    return {name: (value.id if isinstance(value, OperationLog) else value)
            for name, value in result.items()}
