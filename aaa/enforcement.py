"""The enforcement worker: the network follows the money.

rating writes a ``ProfileChange`` row in the transaction that changed an
account's profile (it knows nothing of RADIUS). Here:

1. ``expand`` turns each change into one ``EnforcementJob`` per open session
   of the account — a CoA-Request with the vendor's rate attributes, or a
   Disconnect-Request when the profile gives no session (suspended) or the
   vendor cannot change a rate live. A newer job supersedes the session's
   older pending ones, so an old profile is never applied after a new one.
2. ``run_once`` claims due jobs, at most one per session in flight (accel-ppp
   drops a second request for a session while one is pending), sends them
   with RFC 5080 retransmission and records the outcome. A claim is a lease:
   if the worker dies (kill -9) the lease runs out and another run takes the
   job again, so none is lost.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
from concurrent.futures import ThreadPoolExecutor

import netaddr
from sqlalchemy import and_, exists, select, update
from sqlalchemy.orm import Session, aliased, sessionmaker

from aaa import coa
from aaa import packet as wire
from aaa.models import EnforcementAttempt, EnforcementJob, Nas, Session as RadiusSession
from aaa.vendors import Rate, rate_attributes
from config.db import utcnow
from rating.models import Account, ProfileChange, Tariff
from rating.speeds import profile_speed

log = logging.getLogger(__name__)

FINAL = ("done", "nak", "failed", "superseded")
# Vendors whose rate cannot be changed by CoA here: a change means reconnect.
DISCONNECT_ONLY_VENDORS = {"generic"}
LEASE_S = coa.MRD_S + 5


def _session_pairs(radius_session: RadiusSession) -> list[list]:
    """RFC 5176 §3: attributes that identify the session on the NAS."""
    pairs = [["User-Name", radius_session.username],
             ["Acct-Session-Id", radius_session.acct_session_id]]
    if radius_session.framed_ip:
        pairs.append(["Framed-IP-Address", radius_session.framed_ip])
    return pairs


def _nas_host(nas: Nas) -> str | None:
    network = netaddr.IPNetwork(nas.address)
    return str(network.ip) if network.size == 1 else None


def plan(radius_session: RadiusSession, nas: Nas, account: Account,
         tariff: Tariff | None, profile: str) -> tuple[str, list[list]]:
    """(action, attributes) that put ``profile`` on this session."""
    pairs = _session_pairs(radius_session)
    if tariff is None:
        return "disconnect", pairs
    speed = profile_speed(profile, tariff.rate_down_kbps, tariff.rate_up_kbps,
                          tariff.negative_rate_kbps)
    if speed is None or nas.vendor in DISCONNECT_ONLY_VENDORS:
        return "disconnect", pairs
    return "coa", pairs + [[name, value]
                           for name, value in rate_attributes(nas.vendor, Rate(*speed))]


def expand(session: Session, now: dt.datetime | None = None, limit: int = 1000) -> int:
    """Turn pending profile changes into per-session jobs; returns jobs made."""
    now = now or utcnow()
    query = (select(ProfileChange).where(ProfileChange.processed_at.is_(None))
             .order_by(ProfileChange.id).limit(limit))
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    made = 0
    for change in session.scalars(query).all():
        account = session.get(Account, change.account_id)
        tariff = session.get(Tariff, account.tariff_id) if account.tariff_id else None
        open_sessions = session.execute(
            select(RadiusSession, Nas).join(Nas, Nas.id == RadiusSession.nas_id)
            .where(RadiusSession.account_id == account.id,
                   RadiusSession.stopped_at.is_(None))).all()
        for radius_session, nas in open_sessions:
            session.execute(update(EnforcementJob)
                            .where(EnforcementJob.session_id == radius_session.id,
                                   EnforcementJob.status == "pending")
                            .values(status="superseded", finished_at=now))
            action, pairs = plan(radius_session, nas, account, tariff, change.profile)
            session.add(EnforcementJob(account_id=account.id, session_id=radius_session.id,
                                       action=action, profile=change.profile,
                                       attributes={"pairs": pairs}, status="pending",
                                       created_at=now, next_attempt_at=now))
            made += 1
        change.processed_at = now
    session.flush()
    return made


def _claim(session: Session, now: dt.datetime, limit: int) -> list[int]:
    """Take due jobs, the oldest per session, none for a session in flight."""
    in_flight = aliased(EnforcementJob)
    older = aliased(EnforcementJob)
    due = and_(EnforcementJob.next_attempt_at <= now,
               EnforcementJob.status.in_(("pending", "sending")))
    query = (select(EnforcementJob.id).where(
        due,
        ~exists().where(in_flight.session_id == EnforcementJob.session_id,
                        in_flight.status == "sending", in_flight.next_attempt_at > now,
                        in_flight.id != EnforcementJob.id),
        ~exists().where(older.session_id == EnforcementJob.session_id,
                        older.status.in_(("pending", "sending")), older.id < EnforcementJob.id))
        .order_by(EnforcementJob.id).limit(limit))
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    ids = session.scalars(query).all()
    if ids:
        session.execute(update(EnforcementJob).where(EnforcementJob.id.in_(ids))
                        .values(status="sending",
                                next_attempt_at=now + dt.timedelta(seconds=LEASE_S)))
    return list(ids)


def _send(Session: sessionmaker, job_id: int, timers: dict) -> None:
    with Session() as session:
        job = session.get(EnforcementJob, job_id)
        nas = session.execute(select(Nas).join(RadiusSession, RadiusSession.nas_id == Nas.id)
                              .where(RadiusSession.id == job.session_id)).scalar_one()
        host = _nas_host(nas)
        secret = nas.secret.encode()
        code = wire.COA_REQUEST if job.action == "coa" else wire.DISCONNECT_REQUEST
        pairs = [tuple(pair) for pair in job.attributes["pairs"]]
        session.commit()
    started_at = utcnow()
    if host is None:
        result, error = None, "NAS is a prefix: no address to send to"
    else:
        request = coa.build(code, random.randrange(256), secret, pairs)
        try:
            result = coa.exchange(request, (host, nas.coa_port), secret, **timers)
            error = None
        except OSError as failure:
            result, error = None, f"socket error: {failure.strerror or failure}"
    with Session() as session:
        job = session.get(EnforcementJob, job_id)
        if job.status != "sending":
            return  # finished by another worker after our lease ran out
        now = utcnow()
        job.finished_at = now
        session.add(EnforcementAttempt(
            job_id=job.id, nas_address=host, started_at=started_at, finished_at=now,
            transmissions=result.attempts if result else 0,
            outcome=result.outcome.value if result else "error",
            error_cause=result.error_cause if result else None))
        if result is None:
            job.status, job.last_error = "failed", error
        else:
            job.attempts += result.attempts
            if result.done:
                job.status, job.last_error = "done", None
            elif result.outcome is coa.Outcome.NAK:
                job.status = "nak"
                job.last_error = f"Error-Cause {result.error_cause}"
            else:
                job.status, job.last_error = "failed", "no answer within 30 s"
        session.commit()
        log.info("enforcement.job id=%s action=%s nas=%s status=%s attempts=%s", job.id,
                 job.action, nas.name, job.status, job.attempts)


def run_once(Session: sessionmaker, *, limit: int = 256, workers: int = 32,
             timers: dict | None = None, now: dt.datetime | None = None) -> int:
    """Expand the outbox, then send the due jobs; returns jobs sent."""
    with Session() as session:
        expand(session, now)
        ids = _claim(session, now or utcnow(), limit)
        session.commit()
    if ids:
        with ThreadPoolExecutor(max_workers=min(workers, len(ids))) as pool:
            list(pool.map(lambda job_id: _send(Session, job_id, timers or {}), ids))
    return len(ids)
