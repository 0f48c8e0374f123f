"""Scheduled jobs: each takes a database lock, so two schedulers run it once,
and each is idempotent, so a run after a crash or an outage catches up.

The lock is a PostgreSQL session-level advisory lock held on a connection
of its own for the whole run (the fee run commits chunk by chunk, which
would release a transaction-level lock). SQLite has one writer at a time
and is a single-node store; there the idempotency keys alone suffice.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

from config.db import utcnow
from rating import (fees, freeze, options, policies, promised, scheduled_changes,
                    tariff_change, traffic)
from rating.models import JobRun

log = logging.getLogger(__name__)

# Never catch up more than this many days in one run (a safety bound).
MAX_CATCH_UP_DAYS = 366


def _lock_id(name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"abonent:{name}".encode()).digest()[:8], "big",
                          signed=True)


@contextlib.contextmanager
def job_lock(engine: Engine, name: str):
    """Yield True if this process holds the job's lock, False if another does."""
    if engine.dialect.name != "postgresql":
        yield True
        return
    with engine.connect() as conn:
        held = conn.execute(text("SELECT pg_try_advisory_lock(:id)"),
                            {"id": _lock_id(name)}).scalar()
        conn.commit()
        try:
            yield bool(held)
        finally:
            if held:
                conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": _lock_id(name)})
                conn.commit()


def local_today(timezone: str, now: dt.datetime | None = None) -> dt.date:
    """Which day it is for fees: the operator's calendar, not UTC's."""
    now = now or utcnow()
    return now.replace(tzinfo=dt.timezone.utc).astimezone(ZoneInfo(timezone)).date()


def run_fees(engine: Engine, Session: sessionmaker, today: dt.date, *,
             freeze_fee: Decimal = Decimal(0),
             ladder=policies.DEFAULT_LADDER,
             freeze_rules: freeze.FreezeRules | None = None) -> list[fees.FeeRunResult]:
    """Charge every day from the last completed one up to ``today``."""
    with job_lock(engine, "fees") as held:
        if not held:
            log.info("job.skipped name=fees reason=locked-by-another-node")
            return []
        results = []
        with Session() as session:
            run = session.get(JobRun, "fees")
            if run is None:
                run = JobRun(name="fees", last_day=today - dt.timedelta(days=1))
                session.add(run)
                session.commit()
            day = max(run.last_day + dt.timedelta(days=1),
                      today - dt.timedelta(days=MAX_CATCH_UP_DAYS))
            while day <= today:
                # Changes scheduled for the day, ordered tariff changes and
                # ended freezes first, so the day is charged at the right
                # tariff and state.
                scheduled_changes.apply_due(session, day, freeze_rules=freeze_rules)
                tariff_change.apply_due(session, day)
                freeze.thaw_due(session, day)
                session.commit()
                if engine.dialect.name == "postgresql":
                    results.append(fees.charge_day_parallel(Session, day,
                                                            freeze_fee=freeze_fee,
                                                            ladder=ladder))
                else:
                    results.append(fees.charge_day(session, day, freeze_fee=freeze_fee,
                                                   ladder=ladder))
                run.last_day = day
                run.finished_at = utcnow()
                session.commit()
                day += dt.timedelta(days=1)
        return results


def run_scheduled_changes(engine: Engine, Session: sessionmaker, today: dt.date, *,
                          freeze_rules: freeze.FreezeRules | None = None) -> dict[str, int]:
    """Changes scheduled up to ``today`` that the fee run has not made yet
    (each row is claimed, so this is once-only even without the lock)."""
    with job_lock(engine, "scheduled_changes") as held:
        if not held:
            log.info("job.skipped name=scheduled_changes reason=locked-by-another-node")
            return {"applied": 0, "failed": 0}
        with Session() as session:
            return scheduled_changes.apply_due(session, today, freeze_rules=freeze_rules)


def run_traffic(engine: Engine, Session: sessionmaker, timezone: str,
                now: dt.datetime | None = None, hours_back: int = 48) -> int:
    """Charge the settled hours of traffic, then let the ladder react."""
    with job_lock(engine, "traffic") as held:
        if not held:
            return 0
        with Session() as session:
            charged = traffic.charge_due(session, now or utcnow(), timezone, hours_back)
            fees.apply_policies(session, reason="traffic")
            session.commit()
            return charged


def run_periodic(Session: sessionmaker, now: dt.datetime | None = None) -> int:
    """The frequent pass: ended options and promised payments, then the
    balance ladder over every account. Returns profiles changed."""
    now = now or utcnow()
    with Session() as session:
        options.expire(session, now)
        promised.expire(session, now)
        changed = fees.apply_policies(session, reason="policy:periodic")
        session.commit()
        return changed


def run_spending(engine: Engine, Session: sessionmaker, timezone: str,
                 now: dt.datetime | None = None):
    """Spending limits against this month's charges and traffic: each
    warning and action fires once (rating.spending); None when another
    node holds the lock."""
    from rating import spending
    with job_lock(engine, "spending") as held:
        if not held:
            log.info("job.skipped name=spending reason=locked-by-another-node")
            return None
        with Session() as session:
            outcome = spending.evaluate(session, now or utcnow(), timezone)
            session.commit()
        return outcome


def last_fee_day(Session: sessionmaker) -> dt.date | None:
    with Session() as session:
        return session.scalar(select(JobRun.last_day).where(JobRun.name == "fees"))


# -- payments -------------------------------------------------------------------

def run_payment_expiry(engine: Engine, Session: sessionmaker, minutes: int,
                       now: dt.datetime | None = None) -> int:
    """Mark payments pending for longer than ``minutes`` expired."""
    from rating import payments
    with job_lock(engine, "payment_expiry") as held:
        if not held:
            return 0
        with Session() as session:
            count = payments.expire_pending(session, now or utcnow(), minutes)
            session.commit()
        if count:
            log.info("payments.expired count=%d minutes=%d", count, minutes)
        return count


def run_payment_poll(engine: Engine, Session: sessionmaker, provider, lookback_days: int,
                     now: dt.datetime | None = None):
    """Ask the provider about payments still pending here (a lost webhook)."""
    from rating import payments
    with job_lock(engine, f"payment_poll:{provider.name}") as held:
        if not held:
            return None
        result = payments.poll(Session, provider, now or utcnow(), lookback_days=lookback_days,
                               source="scheduler")
        for error in result.errors:
            log.warning("payments.poll_failed provider=%s %s", provider.name, error)
        return result


def run_autopay(engine: Engine, Session: sessionmaker, settings, provider,
                today: dt.date | None = None) -> list:
    """Today's autopayments. The lock keeps two nodes from working at once;
    the per-day claim (rating.autopay) is what keeps a charge single even
    without it (SQLite, or a run after the lock was released)."""
    from rating import autopay, payments
    today = today or local_today(settings.get("", "timezone"))
    with job_lock(engine, "autopay") as held:
        if not held:
            log.info("job.skipped name=autopay reason=locked-by-another-node")
            return []
        return autopay.run(Session, provider, today,
                           limits=payments.Limits.from_settings(settings),
                           vat_code=settings.get("yookassa", "vat_code"),
                           ladder=policies.ladder_from_settings(settings.section("policy")))
