"""``abonent coa list`` and ``abonent session kick``; ``abonent serve enforcer``."""

from __future__ import annotations

import logging
import random
import signal

import click
from sqlalchemy import select

from aaa import enforcement
from aaa.models import EnforcementAttempt, EnforcementJob, Nas, Session as RadiusSession
from config.db import utcnow
from rating import oplog
from rating.models import Account
from scripts.common import (CliError, emit_json, emit_rows, fetch_page, get_context, json_option,
                            page_options)


@click.group()
def coa():
    """CoA / Disconnect jobs."""


@coa.command("list")
@click.option("--status", type=click.Choice(enforcement.STATUSES))
@click.option("--active", is_flag=True, help="Only jobs still at work (pending or in flight).")
@page_options(default_limit=100)
@json_option
def coa_list(status, active, limit, offset, as_json):
    """List enforcement jobs, newest first: what each session should have
    (target), what its NAS has (applied), tries and the last error."""
    ctx = get_context()
    with ctx.Session() as session:
        query = (select(EnforcementJob, RadiusSession.acct_session_id, RadiusSession.profile,
                        Account.number, Nas.name)
                 .join(RadiusSession, RadiusSession.id == EnforcementJob.session_id)
                 .join(Account, Account.id == EnforcementJob.account_id)
                 .outerjoin(Nas, Nas.id == RadiusSession.nas_id)
                 .order_by(EnforcementJob.id.desc()))
        if status:
            query = query.where(EnforcementJob.status == status)
        if active:
            query = query.where(EnforcementJob.status.in_(enforcement.ACTIVE))
        rows = [dict(id=j.id, account=number, acct_session_id=session_id, nas=nas_name,
                     action=j.action, profile=j.profile, target=j.target, applied=applied,
                     status=j.status, tries=j.tries, attempts=j.attempts,
                     last_error=j.last_error, created_at=j.created_at,
                     next_attempt_at=j.next_attempt_at if j.status in enforcement.ACTIVE
                     else None, finished_at=j.finished_at)
                for j, session_id, applied, number, nas_name
                in fetch_page(session, query, limit, offset, scalars=False)]
    emit_rows(rows, as_json, ["id", "account", "acct_session_id", "nas", "action", "target",
                              "applied", "status", "tries", "last_error"])


@click.command("kick")
@click.argument("acct_session_id")
@click.option("--nas", "nas_name", help="The NAS, when the session id is not unique.")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Send now and report the NAS's answer.")
@json_option
def session_kick(acct_session_id, nas_name, wait, as_json):
    """Disconnect a live session (Disconnect-Request to its NAS)."""
    ctx = get_context()
    with ctx.Session() as session:
        query = (select(RadiusSession).join(Nas, Nas.id == RadiusSession.nas_id)
                 .where(RadiusSession.acct_session_id == acct_session_id,
                        RadiusSession.stopped_at.is_(None)))
        if nas_name:
            query = query.where(Nas.name == nas_name)
        found = session.scalars(query).all()
        if not found:
            raise CliError(f"no open session {acct_session_id}")
        if len(found) > 1:
            raise CliError(f"session id {acct_session_id} is open on several NAS; give --nas")
        target = found[0]
        job = EnforcementJob(account_id=target.account_id, session_id=target.id,
                             nas_id=target.nas_id, action="disconnect", profile=None,
                             attributes={"pairs": enforcement.session_pairs(target)},
                             status="pending", next_attempt_at=utcnow())
        session.add(job)
        oplog.record(session, account_id=target.account_id, actor="admin:cli",
                     action="session.kick", acct_session_id=acct_session_id)
        session.commit()
        job_id = job.id
    if wait:
        settings = enforcement.Settings.from_settings(ctx.settings)
        # One exchange, and its answer: no retry behind the admin's back
        # (an unanswered kick stays queued for the enforcer).
        with ctx.Session() as session:
            claimed = enforcement.claim_one(session, job_id, settings)
            session.commit()
        rng = random.Random()
        done = enforcement.exchange(claimed, settings, rng)
        with ctx.Session() as session:
            enforcement.record(session, [done], settings, rng)
            session.commit()
    with ctx.Session() as session:
        job = session.get(EnforcementJob, job_id)
        view = dict(id=job.id, status=job.status, attempts=job.attempts,
                    last_error=job.last_error)
    if as_json:
        emit_json(view)
    else:
        click.echo(f"disconnect job {job_id}: {view['status']}"
                   + (f" ({view['last_error']})" if view["last_error"] else ""))
    if wait and view["status"] not in ("done",):
        # Not acknowledged: the job stays and the enforcer tries again.
        raise SystemExit(1)


@click.command("show")
@click.argument("acct_session_id")
@click.option("--nas", "nas_name", help="The NAS, when the session id is not unique.")
@json_option
def session_show(acct_session_id, nas_name, as_json):
    """One session: counters, and the profile it should have against the one
    its NAS has, with why they differ and the enforcer's attempts."""
    ctx = get_context()
    settings = enforcement.Settings.from_settings(ctx.settings)
    with ctx.Session() as session:
        query = (select(RadiusSession, Nas.name, Account.number)
                 .join(Nas, Nas.id == RadiusSession.nas_id)
                 .outerjoin(Account, Account.id == RadiusSession.account_id)
                 .where(RadiusSession.acct_session_id == acct_session_id)
                 .order_by(RadiusSession.stopped_at.is_(None).desc(),
                           RadiusSession.started_at.desc()))
        if nas_name:
            query = query.where(Nas.name == nas_name)
        found = session.execute(query).all()
        if not found:
            return _show_archived(session, acct_session_id, nas_name, as_json)
        if len({nas for _, nas, _ in found}) > 1:
            raise CliError(f"session id {acct_session_id} is known on several NAS; give --nas")
        target, nas, number = found[0]
        standing = enforcement.standing(session, [target.id], utcnow(), settings)[target.id]
        attempts = session.execute(
            select(EnforcementAttempt, EnforcementJob.action)
            .join(EnforcementJob, EnforcementJob.id == EnforcementAttempt.job_id)
            .where(EnforcementJob.session_id == target.id)
            .order_by(EnforcementAttempt.id.desc()).limit(10)).all()
        view = dict(id=target.id, acct_session_id=target.acct_session_id, nas=nas,
                    account=number, username=target.username, framed_ip=target.framed_ip,
                    started_at=target.started_at, updated_at=target.updated_at,
                    stopped_at=target.stopped_at, terminate_cause=target.terminate_cause,
                    octets_in=target.octets_in, octets_out=target.octets_out,
                    desired=standing.desired, applied=standing.applied,
                    in_line=standing.in_line, reason=standing.reason, job=standing.job_id,
                    attempts=[dict(action=action, started_at=a.started_at,
                                   outcome=a.outcome, error_cause=a.error_cause,
                                   transmissions=a.transmissions) for a, action in attempts])
    if as_json:
        emit_json(view)
        return
    for key in ("acct_session_id", "nas", "account", "username", "framed_ip", "started_at",
                "updated_at", "stopped_at", "terminate_cause", "octets_in", "octets_out",
                "desired", "applied"):
        click.echo(f"{key:16} {'' if view[key] is None else view[key]}")
    click.echo(f"{'enforcement':16} {standing.reason}")
    for attempt in view["attempts"]:
        cause = f" Error-Cause {attempt['error_cause']}" if attempt["error_cause"] else ""
        click.echo(f"  {attempt['started_at']:%Y-%m-%d %H:%M:%S} {attempt['action']:10} "
                   f"{attempt['outcome']}{cause} ({attempt['transmissions']} sent)")


def _show_archived(session, acct_session_id, nas_name, as_json):
    """A session moved to sessions_archive (aaa.archive): its counters; it is
    closed, so there is nothing to enforce, and its CoA audit has gone."""
    from aaa.models import SessionArchive
    query = (select(SessionArchive, Nas.name, Account.number)
             .join(Nas, Nas.id == SessionArchive.nas_id)
             .outerjoin(Account, Account.id == SessionArchive.account_id)
             .where(SessionArchive.acct_session_id == acct_session_id)
             .order_by(SessionArchive.started_at.desc()))
    if nas_name:
        query = query.where(Nas.name == nas_name)
    found = session.execute(query).all()
    if not found:
        raise CliError(f"no session {acct_session_id}")
    if len({nas for _, nas, _ in found}) > 1:
        raise CliError(f"session id {acct_session_id} is known on several NAS; give --nas")
    target, nas, number = found[0]
    view = dict(id=target.id, acct_session_id=target.acct_session_id, nas=nas, account=number,
                username=target.username, framed_ip=target.framed_ip,
                started_at=target.started_at, updated_at=target.updated_at,
                stopped_at=target.stopped_at, terminate_cause=target.terminate_cause,
                octets_in=target.octets_in, octets_out=target.octets_out,
                desired=None, applied=target.profile, in_line=True, reason="archived",
                job=None, attempts=[], archived=True)
    if as_json:
        emit_json(view)
        return
    for key in ("acct_session_id", "nas", "account", "username", "framed_ip", "started_at",
                "updated_at", "stopped_at", "terminate_cause", "octets_in", "octets_out"):
        click.echo(f"{key:16} {'' if view[key] is None else view[key]}")
    click.echo(f"{'archived':16} yes (closed; its CoA audit is past archive.coa_days)")


@click.command()
@click.option("--interval", type=click.FloatRange(0.01), default=0.1, show_default=True,
              help="Seconds between outbox polls when idle.")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=None,
              help="Serve Prometheus metrics on this TCP port (default: coa.metrics_port; "
                   "0: off).")
def enforcer(interval, metrics_port):
    """Keep every open session's NAS profile equal to its desired profile
    (CoA / Disconnect, retried with backoff, one lane per NAS)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    ctx = get_context()
    settings = enforcement.Settings.from_settings(ctx.settings)
    worker = enforcement.Enforcer(ctx.Session, settings, poll_s=interval, engine=ctx.engine)
    port = metrics_port if metrics_port is not None else ctx.settings.get("coa", "metrics_port")
    if port:
        from prometheus_client import REGISTRY, start_http_server
        REGISTRY.register(enforcement.EnforcerMetrics(worker))
        start_http_server(port, addr="127.0.0.1")
    signal.signal(signal.SIGTERM, lambda *_: worker.stop_event.set())
    click.echo("enforcement worker running; Ctrl-C to stop")
    try:
        worker.run()
    except KeyboardInterrupt:
        pass
    finally:
        worker.stop(wait=False)
