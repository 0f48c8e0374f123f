"""Data lifecycle: closed sessions and leases move to archive tables, old CoA
audit and delivered notifications are deleted, each after its retention in
the settings ``[archive]`` (docs/archiving.md).

What each table gets, and why:

- ``sessions`` → ``sessions_archive`` after ``sessions_hot_days``, deleted
  from there after ``sessions_keep_days``. The accounting writer upserts on
  (nas_id, acct_session_id) and the enforcer scans open sessions; both want
  a small table. Subscribers and admins look at last year's sessions, so
  the rows are kept, not deleted. Not PostgreSQL partitions: open sessions
  live for months in whatever partition their start fell in, a UNIQUE on a
  partitioned table must contain the partition key (which would break the
  accounting upsert), and SQLite must run the same code.
- ``ip_leases`` → ``ip_leases_archive`` after ``leases_hot_days`` (never
  inside the collector's late-data window: the settings refuse that), kept
  ``leases_keep_days`` for "who had this address then".
- ``enforcement_jobs`` + ``enforcement_attempts`` (the CoA audit): finished
  jobs and their attempts are deleted after ``coa_days``; only
  `abonent session show` and `abonent coa list` read them, for recent
  trouble.
- ``notifications`` + ``notification_attempts`` + ``sms_parts``: sent,
  delivered and failed notices are deleted after ``notifications_days``
  (pending, sending and unknown ones are work or need a person; never
  touched). No page shows old notices; their keys are made of the event
  (a payment's ledger key, a day), which does not come again.

How a run keeps its promises:

- One batch is one transaction: the rows are picked (``FOR UPDATE SKIP
  LOCKED`` on PostgreSQL, so a concurrent writer's row is left for the next
  run), copied into the archive and deleted from the hot table, or deleted
  with their dependants. A kill between batches loses nothing and copies
  nothing twice; a re-run simply goes on. Batches are ``batch_rows`` long, so
  no lock is held for long, and a run stops after ``run_seconds``.
- The scheduler runs it under the job lock (rating.jobs.job_lock): on two
  nodes one runs; even without the lock the row locks and the delete in the
  same transaction keep every row moved once.
- Sessions still named by a CoA job stay hot until the job goes (a foreign
  key); ``coa_days`` may therefore not exceed ``sessions_hot_days``.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from sqlalchemy import (BigInteger, and_, any_, bindparam, column, delete, exists, func, insert,
                        literal, select, table, union_all)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection, Engine

from aaa.models import (EnforcementAttempt, EnforcementJob, IpLease, IpLeaseArchive,
                        Session as RadiusSession, SessionArchive)
from config.db import utcnow
from rating.models import Notification, NotificationAttempt, SmsPart

log = logging.getLogger(__name__)

JOB_NAME = "archive"

SESSIONS = RadiusSession.__table__
SESSIONS_ARCHIVE = SessionArchive.__table__
LEASES = IpLease.__table__
LEASES_ARCHIVE = IpLeaseArchive.__table__
JOBS = EnforcementJob.__table__
ATTEMPTS = EnforcementAttempt.__table__
NOTIFICATIONS = Notification.__table__
NOTIFICATION_ATTEMPTS = NotificationAttempt.__table__
SMS_PARTS = SmsPart.__table__
# The collector's high-water marks (collector.radius_usage); named here, not
# imported, because aaa must not import collector. A mark of a session closed
# months ago has nothing left to roll up.
USAGE_MARKS = table("radius_usage_marks", column("session_id"))

FINAL_JOB_STATUSES = ("done", "superseded", "closed", "nak", "failed")  # aaa.enforcement.FINAL
FINAL_NOTICE_STATUSES = ("sent", "delivered", "failed")


@dataclass(frozen=True)
class Retention:
    """The settings ``[archive]``; a day count of 0 keeps for ever."""

    sessions_hot_days: int = 90
    sessions_keep_days: int = 1095
    leases_hot_days: int = 30
    leases_keep_days: int = 1095
    coa_days: int = 90
    notifications_days: int = 180
    batch_rows: int = 5000
    run_seconds: int = 1800

    @classmethod
    def from_settings(cls, settings) -> "Retention":
        section = settings.section("archive")
        return cls(**{name: section[name] for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Step:
    """One table's work: rows past ``cutoff`` that ``where`` picks are moved
    to ``archive`` (or deleted when it is None), with ``dependants`` (table,
    column naming the row's id) deleted first."""

    name: str
    table: object
    where: Callable[[dt.datetime], object]
    days: Callable[[Retention], int]
    archive: object = None
    dependants: tuple = ()


def _closed_session(cutoff):
    # A session a CoA job still names stays (enforcement_jobs.session_id is
    # a foreign key); it goes once the job is deleted.
    return and_(SESSIONS.c.stopped_at.is_not(None), SESSIONS.c.stopped_at < cutoff,
                ~exists().where(JOBS.c.session_id == SESSIONS.c.id))


STEPS = (
    # CoA audit first: it frees the sessions its jobs name.
    Step("coa", JOBS,
         lambda cutoff: and_(JOBS.c.status.in_(FINAL_JOB_STATUSES),
                             JOBS.c.finished_at.is_not(None), JOBS.c.finished_at < cutoff),
         lambda r: r.coa_days, dependants=((ATTEMPTS, ATTEMPTS.c.job_id),)),
    Step("notifications", NOTIFICATIONS,
         lambda cutoff: and_(NOTIFICATIONS.c.status.in_(FINAL_NOTICE_STATUSES),
                             NOTIFICATIONS.c.created_at < cutoff),
         lambda r: r.notifications_days,
         dependants=((NOTIFICATION_ATTEMPTS, NOTIFICATION_ATTEMPTS.c.notification_id),
                     (SMS_PARTS, SMS_PARTS.c.notification_id))),
    Step("sessions", SESSIONS, _closed_session, lambda r: r.sessions_hot_days,
         archive=SESSIONS_ARCHIVE, dependants=((USAGE_MARKS, USAGE_MARKS.c.session_id),)),
    Step("sessions_archive", SESSIONS_ARCHIVE,
         lambda cutoff: SESSIONS_ARCHIVE.c.stopped_at < cutoff,
         lambda r: r.sessions_keep_days),
    Step("leases", LEASES,
         lambda cutoff: and_(LEASES.c.valid_to.is_not(None), LEASES.c.valid_to < cutoff),
         lambda r: r.leases_hot_days, archive=LEASES_ARCHIVE),
    Step("leases_archive", LEASES_ARCHIVE,
         lambda cutoff: LEASES_ARCHIVE.c.valid_to < cutoff,
         lambda r: r.leases_keep_days),
)
STEP_NAMES = tuple(step.name for step in STEPS)


@dataclass
class RunResult:
    """Rows moved or deleted per step (dependants not counted), batches
    committed, and whether the run stopped at its time limit."""

    rows: dict[str, int] = field(default_factory=lambda: {name: 0 for name in STEP_NAMES})
    batches: int = 0
    seconds: float = 0.0
    stopped_early: bool = False
    skipped: bool = False   # another node holds the job lock


def cutoff_of(step: Step, retention: Retention, now: dt.datetime) -> dt.datetime | None:
    days = step.days(retention)
    return None if not days else now - dt.timedelta(days=days)


def _move_batch(conn: Connection, step: Step, cutoff: dt.datetime, after: int,
                limit: int) -> tuple[int | None, int]:
    """One batch in the caller's transaction: (the last id picked, rows
    moved or deleted); (None, 0) when nothing is left."""
    hot = step.table
    ids = list(conn.scalars(
        select(hot.c.id).where(hot.c.id > after, step.where(cutoff)).order_by(hot.c.id)
        .limit(limit).with_for_update(skip_locked=True)))
    if not ids:
        return None, 0
    if conn.dialect.name == "postgresql":
        return ids[-1], _move_locked(conn, step, ids)
    # SQLite: the transaction began IMMEDIATE, so no one has written since
    # the pick; the rows matching in (after, last] are exactly the picked
    # ones. A range, not an IN list: no limit on bound parameters.
    picked = and_(hot.c.id > after, hot.c.id <= ids[-1], step.where(cutoff))
    if step.archive is not None:
        names = [c.name for c in step.archive.columns]
        conn.execute(insert(step.archive).from_select(
            names, select(*[hot.c[name] for name in names]).where(picked)))
    for dependant, key in step.dependants:
        conn.execute(delete(dependant).where(key.in_(select(hot.c.id).where(picked))))
    deleted = conn.execute(delete(hot).where(picked)).rowcount
    if deleted != len(ids):
        # Only if a row stopped matching between the pick and the writes;
        # the archive copy was made by the same condition.
        log.info("archive.batch_shrank step=%s picked=%d moved=%d", step.name, len(ids), deleted)
    return ids[-1], deleted


def _move_locked(conn: Connection, step: Step, ids: list[int]) -> int:
    """PostgreSQL: the picked rows are locked (FOR UPDATE), so no one
    changes them before the commit; the ids go as one array parameter and
    the move is one statement (DELETE ... RETURNING into the archive)."""
    hot = step.table
    ids_param = bindparam("ids", ids, type_=ARRAY(BigInteger))
    for dependant, key in step.dependants:
        conn.execute(delete(dependant).where(key == any_(ids_param)))
    gone = delete(hot).where(hot.c.id == any_(ids_param))
    if step.archive is None:
        return conn.execute(gone).rowcount
    names = [c.name for c in step.archive.columns]
    moved = gone.returning(*[hot.c[name] for name in names]).cte("moved")
    # (rowcount of an INSERT fed by a data-modifying CTE is not reported:
    # the ids come back instead.)
    return len(conn.execute(insert(step.archive).from_select(
        names, select(*[moved.c[name] for name in names]))
        .returning(step.archive.c.id)).all())


def run(engine: Engine, retention: Retention, now: dt.datetime | None = None, *,
        steps: tuple[str, ...] = STEP_NAMES,
        progress: Callable[[str, int], None] | None = None,
        on_batch: Callable[[str, int], None] | None = None) -> RunResult:
    """Every step in turn, batch by batch, each batch its own transaction.
    ``progress(step, rows)`` after each committed batch; ``on_batch`` too
    (tests raise from it to play a crash between batches)."""
    now = now or utcnow()
    result = RunResult()
    started = time.monotonic()
    deadline = started + retention.run_seconds
    for step in STEPS:
        if step.name not in steps:
            continue
        cutoff = cutoff_of(step, retention, now)
        if cutoff is None:
            continue
        after = 0
        while True:
            if time.monotonic() >= deadline:
                result.stopped_early = True
                log.info("archive.time_limit step=%s seconds=%d", step.name,
                         retention.run_seconds)
                break
            with engine.begin() as conn:
                last_id, moved = _move_batch(conn, step, cutoff, after, retention.batch_rows)
            if last_id is None:
                break
            after = last_id
            result.rows[step.name] += moved
            result.batches += 1
            if progress:
                progress(step.name, moved)
            if on_batch:
                on_batch(step.name, moved)
        if result.stopped_early:
            break
    result.seconds = time.monotonic() - started
    log.info("archive.run %s batches=%d seconds=%.1f",
             " ".join(f"{name}={count}" for name, count in result.rows.items()),
             result.batches, result.seconds)
    return result


def run_locked(engine: Engine, Session, retention: Retention, now: dt.datetime | None = None,
               **kwargs) -> RunResult:
    """``run`` under the job lock (one node runs it), then the run recorded
    in ``job_runs`` for `abonent archive status`."""
    from rating.jobs import job_lock
    from rating.models import JobRun
    with job_lock(engine, JOB_NAME) as held:
        if not held:
            log.info("job.skipped name=%s reason=locked-by-another-node", JOB_NAME)
            return RunResult(skipped=True)
        result = run(engine, retention, now, **kwargs)
        with Session() as session:
            record = session.get(JobRun, JOB_NAME) or JobRun(name=JOB_NAME)
            record.finished_at = utcnow()
            session.add(record)
            session.commit()
        return result


@dataclass(frozen=True)
class TableStatus:
    step: str
    table: str
    days: int          # 0: kept for ever
    rows: int          # in the table now
    due: int           # past retention now (what a run would take)
    oldest: dt.datetime | None


_AGE_COLUMN = {"coa": JOBS.c.finished_at, "notifications": NOTIFICATIONS.c.created_at,
               "sessions": SESSIONS.c.stopped_at,
               "sessions_archive": SESSIONS_ARCHIVE.c.stopped_at,
               "leases": LEASES.c.valid_to, "leases_archive": LEASES_ARCHIVE.c.valid_to}


def status(engine: Engine, retention: Retention,
           now: dt.datetime | None = None) -> list[TableStatus]:
    """Per step: rows, rows due, the oldest end time (a full count: for an
    admin's look, not for a hot path)."""
    now = now or utcnow()
    out = []
    with engine.connect() as conn:
        for step in STEPS:
            cutoff = cutoff_of(step, retention, now)
            rows = conn.scalar(select(func.count()).select_from(step.table))
            due = 0 if cutoff is None else conn.scalar(
                select(func.count()).select_from(step.table).where(step.where(cutoff)))
            oldest = conn.scalar(select(func.min(_AGE_COLUMN[step.name])))
            out.append(TableStatus(step.name, step.table.name, step.days(retention), rows, due,
                                   oldest))
    return out


def last_run(Session) -> dt.datetime | None:
    from rating.models import JobRun
    with Session() as session:
        return session.scalar(select(JobRun.finished_at).where(JobRun.name == JOB_NAME))


# -- readers: hot and archive as one ------------------------------------------

def _both(hot, archive, name: str):
    names = [c.name for c in archive.columns]
    return union_all(select(*[hot.c[n] for n in names], literal(False).label("archived")),
                     select(*[archive.c[n] for n in names], literal(True).label("archived"))
                     ).subquery(name)


def all_sessions():
    """``sessions`` and ``sessions_archive`` as one selectable with the same
    columns plus ``archived``; filters on it reach both tables' indexes."""
    return _both(SESSIONS, SESSIONS_ARCHIVE, "all_sessions")


def all_leases():
    """``ip_leases`` and ``ip_leases_archive`` as one, like ``all_sessions``."""
    return _both(LEASES, LEASES_ARCHIVE, "all_leases")


