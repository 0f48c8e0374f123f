"""``abonent coa list`` and ``abonent session kick``; ``abonent serve enforcer``."""

from __future__ import annotations

import logging
import threading

import click
from sqlalchemy import select

from aaa import enforcement
from aaa.models import EnforcementJob, Nas, Session as RadiusSession
from config.db import utcnow
from rating import oplog
from rating.models import Account
from scripts.common import CliError, emit_json, emit_rows, get_context, json_option


@click.group()
def coa():
    """CoA / Disconnect jobs."""


@coa.command("list")
@click.option("--status", type=click.Choice(["pending", "sending", *enforcement.FINAL]))
@click.option("--limit", type=click.IntRange(1), default=100, show_default=True)
@json_option
def coa_list(status, limit, as_json):
    """List enforcement jobs, newest first."""
    ctx = get_context()
    with ctx.Session() as session:
        query = (select(EnforcementJob, RadiusSession.acct_session_id, Account.number)
                 .join(RadiusSession, RadiusSession.id == EnforcementJob.session_id)
                 .join(Account, Account.id == EnforcementJob.account_id)
                 .order_by(EnforcementJob.id.desc()).limit(limit))
        if status:
            query = query.where(EnforcementJob.status == status)
        rows = [dict(id=j.id, account=number, acct_session_id=session_id, action=j.action,
                     profile=j.profile, status=j.status, attempts=j.attempts,
                     last_error=j.last_error, created_at=j.created_at,
                     finished_at=j.finished_at)
                for j, session_id, number in session.execute(query)]
    emit_rows(rows, as_json, ["id", "account", "acct_session_id", "action", "profile", "status",
                              "attempts", "last_error"])


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
                             action="disconnect", profile=None,
                             attributes={"pairs": enforcement._session_pairs(target)},
                             status="pending", next_attempt_at=utcnow())
        session.add(job)
        oplog.record(session, account_id=target.account_id, actor="admin:cli",
                     action="session.kick", acct_session_id=acct_session_id)
        session.commit()
        job_id = job.id
    if wait:
        enforcement.run_once(ctx.Session)
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
        raise SystemExit(1)


@click.command()
@click.option("--interval", type=click.FloatRange(0.05), default=0.5, show_default=True,
              help="Seconds between outbox polls.")
def enforcer(interval):
    """Send CoA/Disconnect for profile changes (the enforcement worker)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    ctx = get_context()
    stop = threading.Event()
    click.echo("enforcement worker running; Ctrl-C to stop")
    try:
        while not stop.is_set():
            if enforcement.run_once(ctx.Session) == 0:
                stop.wait(interval)
    except KeyboardInterrupt:
        pass
