"""The enforcer: the network follows the money, as a control loop.

Each open session carries the profile its NAS has (``Session.profile``, a
``rating.profile`` key: from the Class the Access-Accept gave, echoed in
accounting, then from each acknowledged CoA). The profile it should have is
``rating.profile.desired_profile`` of its account — the same function
RADIUS answers with. While the two differ there is work: one open
``EnforcementJob`` per session with the target it works towards, a CoA (or
a Disconnect where the vendor, the target or a NAK says so), tried again
with capped exponential backoff for as long as the session is open and the
difference stands. Nothing is lost on a crash: the difference itself is
the work, and a sweep finds it again.

- ``reconcile`` compares sessions with their desired profile and makes,
  keeps or supersedes jobs. The profile-change outbox (``ProfileChange``,
  written by rating in the transaction that changed an account) names the
  accounts to look at within a poll; a periodic sweep looks at all.
- ``Enforcer.run`` sends due jobs through per-NAS lanes: at most
  ``lane_size`` exchanges in flight per NAS, and never a wait for a whole
  batch, so one silent BRAS delays only its own sessions.
- Each exchange is an ``EnforcementAttempt`` row, kept for audit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import queue
import random
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterable

import netaddr
from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.orm import Session, aliased, sessionmaker

from aaa import coa
from aaa import packet as wire
from aaa.accounting import STALE_CAUSE, close_session_as_stale
from aaa.models import EnforcementAttempt, EnforcementJob, Nas, Session as RadiusSession
from aaa.vendors import access_possible, coa_plan, nas_spec
from config.db import utcnow
from rating import policies
from rating.catalogue import speed_windows
from rating.models import Account, ProfileChange, Tariff
from rating.options import running_speed_options
from rating.profile import NONE, Profile, TariffSpeeds, desired_profile

log = logging.getLogger(__name__)

ACTIVE = ("pending", "sending")
FINAL = ("done", "superseded", "closed", "nak", "failed")
STATUSES = ACTIVE + FINAL
# RFC 5176 §3.5 Error-Causes that say this NAS will not change the session
# by CoA, whatever we try: a Disconnect (and the next Access-Accept) can.
CANNOT_COA = frozenset({401, 402, 404, 405, 406, 407, 501})


@dataclass(frozen=True)
class Settings:
    """The enforcer's knobs (settings ``[coa]`` and ``[policy]``)."""

    irt: float = coa.IRT_S
    mrt: float = coa.MRT_S
    mrd: float = coa.MRD_S
    backoff_initial: float = 5.0
    backoff_max: float = 300.0
    lane_size: int = 16
    disconnect_fallback: bool = True
    sweep_interval: float = 60.0
    ladder: tuple[policies.Rung, ...] = policies.DEFAULT_LADDER
    redirect_url: str = ""
    timezone: str = "UTC"       # the operator's: tariffs' time-of-day windows are in it

    @classmethod
    def from_settings(cls, settings) -> "Settings":
        section = settings.section("coa")
        return cls(irt=section["timeout"], mrt=section["max_timeout"],
                   mrd=section["max_duration"], backoff_initial=section["backoff_initial"],
                   backoff_max=section["backoff_max"], lane_size=section["lane_size"],
                   disconnect_fallback=section["disconnect_fallback"],
                   sweep_interval=section["sweep_interval"],
                   ladder=policies.ladder_from_settings(settings.section("policy")),
                   redirect_url=settings.get("policy", "redirect_url"),
                   timezone=settings.get("", "timezone"))

    @property
    def timers(self) -> dict:
        return dict(irt=self.irt, mrt=self.mrt, mrd=self.mrd)

    @property
    def lease_s(self) -> float:
        return self.mrd + 5


def backoff(tries: int, initial: float, cap: float, rng: random.Random) -> float:
    """Seconds before try ``tries + 1``: doubling from ``initial``, ±10 %,
    never more than ``cap``."""
    return min(cap, initial * 2 ** max(0, tries - 1) * rng.uniform(0.9, 1.1))


def session_pairs(radius_session) -> list[list]:
    """RFC 5176 §3: attributes that identify the session on the NAS."""
    pairs = [["User-Name", radius_session.username],
             ["Acct-Session-Id", radius_session.acct_session_id]]
    if radius_session.framed_ip:
        pairs.append(["Framed-IP-Address", radius_session.framed_ip])
    return pairs


def _nas_host(nas: Nas) -> str | None:
    network = netaddr.IPNetwork(nas.address)
    return str(network.ip) if network.size == 1 else None


def _target(spec, desired: Profile | None) -> str:
    """The key a session on a NAS of ``spec`` should end with: the desired
    profile's, or none where the NAS cannot give it (a portal without one)."""
    if desired is None or not access_possible(spec, desired):
        return NONE
    return desired.key


# -- what each session should have ------------------------------------------

def desired_profiles(session: Session, now: dt.datetime, ladder=policies.DEFAULT_LADDER,
                     account_ids: Iterable[int] | None = None,
                     timezone: str = "UTC") -> dict[int, Profile]:
    """desired_profile of each account named (or of each with an open session);
    a tariff's time-of-day speed is the one of ``now`` in ``timezone``."""
    ladder = policies.ladder_in_force(session, ladder)  # the stored ladder, if any
    if account_ids is None:
        accounts = (select(RadiusSession.account_id)
                    .where(RadiusSession.stopped_at.is_(None)).distinct())
    else:
        accounts = list(account_ids)
        if not accounts:
            return {}
    running = running_speed_options(session, now, accounts)
    windows = speed_windows(session)
    profiles = {}
    for account_id, state, rung, tariff_id, down, up, negative, slowed in session.execute(
            select(Account.id, Account.state, Account.profile, Account.tariff_id,
                   Tariff.rate_down_kbps, Tariff.rate_up_kbps, Tariff.negative_rate_kbps,
                   Account.limit_throttled_until)
            .outerjoin(Tariff, Tariff.id == Account.tariff_id).where(Account.id.in_(accounts))):
        tariff = TariffSpeeds(down, up, negative or 0, windows.get(tariff_id, ()),
                              timezone) if down is not None else None
        profiles[account_id] = desired_profile(state=state, rung=rung, tariff=tariff,
                                               options=running.get(account_id, ()), now=now,
                                               ladder=ladder, limit_throttled_until=slowed)
    return profiles


@dataclass
class Reconciled:
    sessions: int = 0
    made: int = 0
    superseded: int = 0
    adopted: int = 0

    def __iadd__(self, other: "Reconciled") -> "Reconciled":
        for name in ("sessions", "made", "superseded", "adopted"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        return self


def reconcile(session: Session, now: dt.datetime, settings: Settings,
              account_ids: Iterable[int]) -> Reconciled:
    """Compare the open sessions of these accounts with their desired
    profile; make a job where they differ and none works on it, supersede
    jobs whose target is no longer wanted. In the caller's transaction
    (``sweep_all`` covers every account, a chunk at a time)."""
    ids = sorted(set(account_ids))
    outcome = Reconciled()
    if not ids:
        return outcome
    wanted = desired_profiles(session, now, settings.ladder, ids, settings.timezone)
    # Jobs before sessions: a sender commits "done" and the session's new
    # applied profile together, so reading in this order never sees a job
    # finished while its session still looks untouched (which would make a
    # second job for a difference already gone).
    jobs: dict[int, list[EnforcementJob]] = defaultdict(list)
    for job in session.scalars(select(EnforcementJob).where(
            EnforcementJob.status.in_(ACTIVE), EnforcementJob.account_id.in_(ids))):
        jobs[job.session_id].append(job)
    rows = session.execute(
        select(RadiusSession, Nas).join(Nas, Nas.id == RadiusSession.nas_id)
        .where(RadiusSession.stopped_at.is_(None), RadiusSession.account_id.in_(ids))).all()
    if not rows:
        return outcome
    specs: dict[int, object] = {}
    for radius_session, nas in rows:
        outcome.sessions += 1
        desired = wanted.get(radius_session.account_id)
        if desired is None:
            continue
        if nas.id not in specs:
            specs[nas.id] = nas_spec(nas)
        spec = specs[nas.id]
        target = _target(spec, desired)
        applied = radius_session.profile
        if applied == NONE:
            continue  # disconnected: its Stop is on the way, the next login asks afresh
        working = [j for j in jobs.get(radius_session.id, ()) if j.target is not None]
        if applied is None and not spec.coa and target != NONE:
            # A NAS that echoes no Class and cannot be changed live: what it
            # has is what the Access-Accept gave; take that as applied.
            radius_session.profile = applied = target
            outcome.adopted += 1
        for job in working:
            if job.target != target and job.status == "pending":
                job.status, job.finished_at = "superseded", now
                outcome.superseded += 1
        if target == applied or any(j.target == target for j in working):
            continue
        if target == NONE:
            action, attributes = "disconnect", []
        else:
            action, attributes = coa_plan(spec, desired, applied, settings.redirect_url)
        session.add(EnforcementJob(
            account_id=radius_session.account_id, session_id=radius_session.id, nas_id=nas.id,
            target=target, action=action, profile=desired.name,
            attributes={"pairs": session_pairs(radius_session) + [list(p) for p in attributes]},
            status="pending", created_at=now, next_attempt_at=now))
        outcome.made += 1
    session.flush()
    return outcome


def sweep_all(Session: sessionmaker, now: dt.datetime, settings: Settings = Settings(),
          chunk: int = 5000) -> Reconciled:
    """Reconcile every open session, a chunk of accounts per transaction,
    so a million sessions never sit in memory at once."""
    total = Reconciled()
    with Session() as session:
        owners = session.scalars(select(RadiusSession.account_id).where(
            RadiusSession.stopped_at.is_(None), RadiusSession.account_id.is_not(None))
            .distinct().order_by(RadiusSession.account_id)).all()
    for start in range(0, len(owners), chunk):
        with Session() as session:
            total += reconcile(session, now, settings, owners[start:start + chunk])
            session.commit()
    return total


def expand(session: Session, now: dt.datetime | None = None, limit: int = 5000,
           settings: Settings = Settings()) -> int:
    """The outbox's accounts reconciled at once; returns jobs made."""
    now = now or utcnow()
    query = (select(ProfileChange).where(ProfileChange.processed_at.is_(None))
             .order_by(ProfileChange.id).limit(limit))
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    changes = session.scalars(query).all()
    if not changes:
        return 0
    made = reconcile(session, now, settings, {c.account_id for c in changes}).made
    session.execute(update(ProfileChange).where(ProfileChange.id.in_([c.id for c in changes]))
                    .values(processed_at=now))
    return made


# -- sending -----------------------------------------------------------------

@dataclass(frozen=True)
class Claimed:
    """A job taken for one exchange, with all the exchange needs, so the
    sender touches the database once, to record the outcome."""

    job_id: int
    nas_id: int | None
    nas_name: str
    code: int
    pairs: tuple
    host: str | None
    port: int
    secret: bytes
    # The lease this claim set (the job's next_attempt_at while sending):
    # the claim's identity. A job whose lease ran out is claimed again with
    # a new one, and only that newest claim's exchange may finish it.
    lease_until: dt.datetime


def _claim(session: Session, now: dt.datetime, limit: int, settings: Settings,
           busy: dict[int, int] | None = None) -> list[Claimed]:
    """Take due jobs: the oldest per session, none for a session with an
    exchange in flight, at most the free places of each NAS's lane."""
    busy = busy or {}
    older = aliased(EnforcementJob)
    in_flight = aliased(EnforcementJob)
    # Pending and due, or sending with its lease run out (a worker died).
    due = and_(EnforcementJob.status.in_(ACTIVE), EnforcementJob.next_attempt_at <= now)
    query = (select(EnforcementJob.id, EnforcementJob.nas_id, RadiusSession.stopped_at)
             .join(RadiusSession, RadiusSession.id == EnforcementJob.session_id)
             .where(due,
                    ~exists().where(older.session_id == EnforcementJob.session_id,
                                    older.status.in_(ACTIVE), older.id < EnforcementJob.id),
                    ~exists().where(in_flight.session_id == EnforcementJob.session_id,
                                    in_flight.status == "sending",
                                    in_flight.next_attempt_at > now,
                                    in_flight.id != EnforcementJob.id))
             .order_by(EnforcementJob.next_attempt_at, EnforcementJob.id).limit(limit * 4))
    full = [nas_id for nas_id, count in busy.items() if count >= settings.lane_size]
    if full:
        query = query.where(or_(EnforcementJob.nas_id.is_(None),
                                EnforcementJob.nas_id.not_in(full)))
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(of=EnforcementJob, skip_locked=True)
    taken, closed, room = [], [], {}
    for job_id, nas_id, stopped_at in session.execute(query):
        if stopped_at is not None:
            closed.append(job_id)
            continue
        free = room.setdefault(nas_id, settings.lane_size - busy.get(nas_id, 0))
        if free <= 0 or len(taken) >= limit:
            continue
        room[nas_id] = free - 1
        taken.append((job_id, nas_id))
    if closed:
        session.execute(update(EnforcementJob).where(EnforcementJob.id.in_(closed))
                        .values(status="closed", finished_at=now,
                                last_error="the session ended"))
    if not taken:
        return []
    ids = [job_id for job_id, _ in taken]
    lease_until = now + dt.timedelta(seconds=settings.lease_s)
    session.execute(update(EnforcementJob).where(EnforcementJob.id.in_(ids))
                    .values(status="sending", next_attempt_at=lease_until))
    claimed = {}
    for job_id, action, attributes, nas in session.execute(
            select(EnforcementJob.id, EnforcementJob.action, EnforcementJob.attributes, Nas)
            .join(RadiusSession, RadiusSession.id == EnforcementJob.session_id)
            .join(Nas, Nas.id == RadiusSession.nas_id).where(EnforcementJob.id.in_(ids))):
        claimed[job_id] = Claimed(
            job_id, nas.id, nas.name,
            wire.COA_REQUEST if action == "coa" else wire.DISCONNECT_REQUEST,
            tuple(tuple(pair) for pair in attributes["pairs"]), _nas_host(nas), nas.coa_port,
            nas.secret.encode(), lease_until)
    return [claimed[job_id] for job_id in ids if job_id in claimed]


def claim_one(session: Session, job_id: int, settings: Settings) -> Claimed:
    """Take one job now, due or not (an admin's kick waits for no one)."""
    session.execute(update(EnforcementJob).where(EnforcementJob.id == job_id)
                    .values(next_attempt_at=utcnow()))
    found = [job for job in _claim(session, utcnow(), 1_000_000, settings)
             if job.job_id == job_id]
    if not found:
        raise LookupError(f"job {job_id} cannot be sent now")
    return found[0]


@dataclass
class Outcomes:
    """Counts of exchange outcomes, for metrics and logs."""

    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, name: str) -> None:
        with self.lock:
            self.counts[name] += 1


@dataclass(frozen=True)
class Exchanged:
    job: Claimed
    result: coa.Result | None
    error: str | None
    started_at: dt.datetime
    finished_at: dt.datetime


def exchange(job: Claimed, settings: Settings, rng: random.Random) -> Exchanged:
    """One exchange with the NAS for a claimed job (no database)."""
    started_at = utcnow()
    if job.host is None:
        result, error = None, "NAS is a prefix: no address to send to"
    else:
        request = coa.build(job.code, rng.randrange(256), job.secret, job.pairs)
        try:
            result = coa.exchange(request, (job.host, job.port), job.secret, **settings.timers)
            error = None
        except OSError as failure:
            result, error = None, f"socket error: {failure.strerror or failure}"
    return Exchanged(job, result, error, started_at, utcnow())


def record(session: Session, done: list[Exchanged], settings: Settings,
           rng: random.Random, now: dt.datetime | None = None) -> list[str]:
    """What the exchanges mean, written in the caller's transaction — one
    for a whole batch of them (a group commit, as accounting does) — and the
    accounts they touched reconciled at once, as of ``now`` (the clock's)."""
    outcomes, touched = [], set()
    jobs = {job.id: job for job in session.scalars(select(EnforcementJob).where(
        EnforcementJob.id.in_([item.job.job_id for item in done])))}
    sessions = {row.id: row for row in session.scalars(select(RadiusSession).where(
        RadiusSession.id.in_({job.session_id for job in jobs.values()})))}
    for item in done:
        job = jobs.get(item.job.job_id)
        with session.no_autoflush:
            outcome, account_id = _record(session, item, job,
                                          sessions.get(job.session_id) if job else None,
                                          settings, rng)
        outcomes.append(outcome)
        log.info("enforcement.exchange job=%s nas=%s outcome=%s", item.job.job_id,
                 item.job.nas_name, outcome)
        if account_id is not None:
            touched.add(account_id)
    if touched:
        # Did the wish move while we worked? The loop closes here: a newer
        # target supersedes a job waiting for its next try.
        session.flush()
        reconcile(session, now or utcnow(), settings, touched)
    return outcomes


def _record(session: Session, item: Exchanged, job: EnforcementJob | None,
            radius_session: RadiusSession | None, settings: Settings,
            rng: random.Random) -> tuple[str, int | None]:
    claimed, result, error = item.job, item.result, item.error
    if job is None or job.status != "sending" or job.next_attempt_at != claimed.lease_until:
        # Our lease ran out before this was recorded (a stalled or dead
        # worker): the job was finished by another claim, or is claimed
        # again and that exchange may still be on the wire. Only the
        # newest claim finishes it; were this older one to, the session
        # would be free for a newer job while the older CoA could still
        # reach the NAS after it, leaving the NAS on the older profile.
        return "lost-lease", None
    now = item.finished_at
    outcome = result.outcome.value if result else "error"
    session.add(EnforcementAttempt(
        job_id=job.id, nas_address=claimed.host, started_at=item.started_at, finished_at=now,
        transmissions=result.attempts if result else 0, outcome=outcome,
        error_cause=result.error_cause if result else None))
    job.tries += 1
    if result is not None:
        job.attempts += result.attempts
    cause = result.error_cause if result else None
    nak = result is not None and result.outcome is coa.Outcome.NAK and job.action == "coa"
    if result is not None and result.done:
        job.status, job.last_error, job.finished_at = "done", None, now
        if radius_session.stopped_at is None:
            radius_session.profile = job.target if job.action == "coa" else NONE
        outcome = "ack"
    elif nak and cause == coa.SESSION_CONTEXT_NOT_FOUND:
        # The NAS has no such session: it ended and its Stop was lost.
        close_session_as_stale(session.connection(), radius_session.id)
        job.status, job.finished_at = "closed", now
        job.last_error = "Error-Cause 503: the NAS has no such session; closed as stale"
        outcome = "nak-503"
    elif nak and cause in CANNOT_COA and settings.disconnect_fallback:
        job.action = "disconnect"
        job.attributes = {"pairs": session_pairs(radius_session)}
        job.status, job.next_attempt_at = "pending", now
        job.last_error = f"Error-Cause {cause}: the NAS cannot change it; Disconnect instead"
        outcome = "nak-fallback"
    else:
        if result is None:
            job.last_error = error
        elif result.outcome is coa.Outcome.NAK:
            job.last_error = f"Error-Cause {cause}"
        else:
            job.last_error = f"no answer within {settings.mrd:g} s"
        job.status = "pending"
        job.next_attempt_at = now + dt.timedelta(seconds=backoff(
            job.tries, settings.backoff_initial, settings.backoff_max, rng))
    return outcome, job.account_id


def run_once(Session: sessionmaker, *, limit: int = 256, workers: int = 32,
             timers: dict | None = None, now: dt.datetime | None = None,
             settings: Settings | None = None, sweep: bool = False) -> int:
    """Reconcile (the outbox's accounts; all with ``sweep``), then send the
    due jobs and wait for them; returns exchanges made. For tests and the
    CLI; the service runs ``Enforcer``."""
    settings = settings or Settings()
    if timers:
        settings = dataclasses.replace(settings, **timers)
    if sweep:
        sweep_all(Session, now or utcnow(), settings)
    with Session() as session:
        expand(session, now, settings=settings)
        taken = _claim(session, now or utcnow(), limit, settings)
        session.commit()
    if taken:
        rng = random.Random()
        with ThreadPoolExecutor(max_workers=min(workers, len(taken))) as pool:
            done = list(pool.map(lambda job: exchange(job, settings, rng), taken))
        with Session() as session:
            # Reconciled as of the same moment as the rest of this run: a
            # run "at 23:30" must not judge the touched accounts by the
            # wall clock's hour (a time-of-day window would flip).
            record(session, done, settings, rng, now=now)
            session.commit()
    return len(taken)


class Enforcer:
    """The service: reconcile, claim per lane, exchange in a pool of
    threads without waiting for a batch; this loop alone writes, recording
    finished exchanges a batch per transaction; a sweep of every session
    each ``sweep_interval``."""

    def __init__(self, Session: sessionmaker, settings: Settings = Settings(), *,
                 threads: int = 128, poll_s: float = 0.1, engine=None):
        self.Session = Session
        self.settings = settings
        self.poll_s = poll_s
        self.engine = engine
        self.outcomes = Outcomes()
        self.busy: dict[int | None, int] = defaultdict(int)
        self._busy_lock = threading.Lock()
        self._finished: queue.SimpleQueue = queue.SimpleQueue()
        self._wake = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="coa-lane")
        self._threads = threads
        self._rng = random.Random()
        self._last_sweep = 0.0
        self.stop_event = threading.Event()

    def _exchanged(self, job: Claimed, future) -> None:
        error = future.exception()
        if error is not None:  # a bug, not a NAS: the lease brings the job back
            log.error("enforcement.exchange_error job=%s error=%r", job.job_id, error)
            with self._busy_lock:
                self.busy[job.nas_id] -= 1
        else:
            self._finished.put(future.result())
        self._wake.set()

    def sweep(self) -> Reconciled:
        from rating.jobs import job_lock  # the scheduler's node lock
        with job_lock(self.engine, "enforcer-sweep") if self.engine is not None \
                else contextlib.nullcontext(True) as held:
            if not held:
                return Reconciled()
            return sweep_all(self.Session, utcnow(), self.settings)

    def _record_finished(self) -> int:
        done = []
        while True:
            try:
                done.append(self._finished.get_nowait())
            except queue.Empty:
                break
        if not done:
            return 0
        with self.Session() as session:
            outcomes = record(session, done, self.settings, self._rng)
            session.commit()
        with self._busy_lock:
            for item in done:
                self.busy[item.job.nas_id] -= 1
        for outcome in outcomes:
            self.outcomes.add(outcome)
        return len(done)

    def step(self, monotonic: float) -> int:
        """One pass: record what finished, the outbox, the sweep when due,
        then claim and hand out. Returns exchanges started."""
        self._record_finished()
        if monotonic - self._last_sweep >= self.settings.sweep_interval:
            self._last_sweep = monotonic
            self.sweep()
        with self._busy_lock:
            busy = dict(self.busy)
        free = self._threads - sum(busy.values())
        with self.Session() as session:
            expand(session, settings=self.settings)
            taken = _claim(session, utcnow(), max(0, free), self.settings, busy) if free > 0 \
                else []
            session.commit()
        for job in taken:
            with self._busy_lock:
                self.busy[job.nas_id] += 1
            future = self._pool.submit(exchange, job, self.settings, self._rng)
            future.add_done_callback(lambda f, job=job: self._exchanged(job, f))
        return len(taken)

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                started = self.step(time.monotonic())
            except Exception:  # the database may be away: keep the loop alive
                log.exception("enforcement.step_failed")
                started = 0
                self.stop_event.wait(1.0)
            if not started:
                self._wake.wait(self.poll_s)
                self._wake.clear()

    def stop(self, wait: bool = True) -> None:
        """Stop claiming; with ``wait``, let the exchanges in flight end and
        record them (a job not recorded comes back when its lease ends)."""
        self.stop_event.set()
        self._wake.set()
        self._pool.shutdown(wait=wait, cancel_futures=True)
        if wait:
            try:
                self._record_finished()
            except Exception:
                log.exception("enforcement.final_record_failed")


# -- what an operator asks ---------------------------------------------------

@dataclass(frozen=True)
class Standing:
    """One session's desired vs applied profile and why they differ."""

    session_id: int
    desired: str
    applied: str | None
    in_line: bool
    reason: str
    job_id: int | None = None
    tries: int = 0
    next_attempt_at: dt.datetime | None = None
    out_since: dt.datetime | None = None


def standing(session: Session, session_ids: list[int], now: dt.datetime,
             settings: Settings = Settings()) -> dict[int, Standing]:
    rows = session.execute(select(RadiusSession, Nas).join(Nas, Nas.id == RadiusSession.nas_id)
                           .where(RadiusSession.id.in_(session_ids))).all()
    wanted = desired_profiles(session, now, settings.ladder,
                              {s.account_id for s, _ in rows if s.account_id}, settings.timezone)
    jobs: dict[int, EnforcementJob] = {}
    for job in session.scalars(select(EnforcementJob).where(
            EnforcementJob.session_id.in_(session_ids), EnforcementJob.status.in_(ACTIVE))
            .order_by(EnforcementJob.id)):
        jobs.setdefault(job.session_id, job)
    found = {}
    for radius_session, nas in rows:
        desired = wanted.get(radius_session.account_id)
        spec = nas_spec(nas)
        target = _target(spec, desired)
        job = jobs.get(radius_session.id)
        applied = radius_session.profile
        if radius_session.stopped_at is not None:
            reason, in_line = "the session has ended", True
        elif applied == NONE:
            reason, in_line = "disconnected; waiting for the NAS's Accounting-Stop", True
        elif target == applied:
            reason, in_line = "in line", True
        elif job is None:
            reason, in_line = "a difference no job works on yet (the next sweep makes one)", False
        elif job.status == "sending":
            reason, in_line = f"{job.action} in flight (try {job.tries + 1})", False
        elif job.tries == 0:
            reason, in_line = f"{job.action} queued", False
        else:
            reason, in_line = (f"{job.action} tried {job.tries} time(s), last: "
                               f"{job.last_error or 'unknown'}; next try at "
                               f"{job.next_attempt_at:%Y-%m-%d %H:%M:%S} UTC"), False
        found[radius_session.id] = Standing(
            radius_session.id, target, applied, in_line, reason,
            job.id if job else None, job.tries if job else 0,
            job.next_attempt_at if job else None, job.created_at if job else None)
    return found


def out_of_line(session: Session, now: dt.datetime) -> tuple[int, float]:
    """(sessions with a difference being worked on, age in s of the oldest)."""
    count, oldest = session.execute(
        select(func.count(func.distinct(EnforcementJob.session_id)),
               func.min(EnforcementJob.created_at))
        .where(EnforcementJob.status.in_(ACTIVE), EnforcementJob.target.is_not(None))).one()
    return count, (now - oldest).total_seconds() if oldest else 0.0


class EnforcerMetrics:
    """A prometheus_client collector: sessions out of line and the age of
    the oldest (read from the database at scrape time, so any node's
    work counts), exchanges by outcome and lanes in use (this process)."""

    def __init__(self, enforcer: Enforcer):
        self.enforcer = enforcer

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        with self.enforcer.Session() as session:
            count, age = out_of_line(session, utcnow())
            pending = session.scalar(select(func.count()).select_from(EnforcementJob)
                                     .where(EnforcementJob.status.in_(ACTIVE)))
        yield GaugeMetricFamily("abonent_enforcement_sessions_out_of_line",
                                "Open sessions whose NAS profile differs from the desired one "
                                "and that a job works on", value=count)
        yield GaugeMetricFamily("abonent_enforcement_oldest_out_of_line_seconds",
                                "Age of the oldest difference still being worked on",
                                value=age)
        yield GaugeMetricFamily("abonent_enforcement_jobs_active",
                                "CoA/Disconnect jobs pending or in flight", value=pending)
        with self.enforcer._busy_lock:
            in_flight = sum(self.enforcer.busy.values())
        yield GaugeMetricFamily("abonent_enforcement_exchanges_in_flight",
                                "Exchanges with NASes in flight in this process",
                                value=in_flight)
        outcomes = CounterMetricFamily("abonent_enforcement_exchanges",
                                       "CoA/Disconnect exchanges by outcome", labels=["outcome"])
        with self.enforcer.outcomes.lock:
            for name, value in sorted(self.enforcer.outcomes.counts.items()):
                outcomes.add_metric([name], value)
        yield outcomes


__all__ = ["EnforcerMetrics", "Enforcer", "Settings", "reconcile", "sweep_all", "expand", "run_once", "standing",
           "out_of_line", "desired_profiles", "backoff", "session_pairs", "FINAL", "ACTIVE",
           "STATUSES", "CANNOT_COA", "STALE_CAUSE"]
