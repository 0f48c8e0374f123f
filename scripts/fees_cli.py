"""``abonent fees run``: charge fees now (with catch-up), as the scheduler does."""

from __future__ import annotations

import click

from rating import fees as fee_module
from config.db import money
from rating import jobs, policies
from scripts.common import CliError, emit_json, get_context, json_option


@click.group()
def fees():
    """Fees: run the daily charge by hand."""


@fees.command("run")
@click.option("--day", type=click.DateTime(["%Y-%m-%d"]),
              help="Charge this one day (default: every day up to today, catching up).")
@json_option
def fees_run(day, as_json):
    """Charge fees; repeating a day changes nothing."""
    ctx = get_context()
    rules = dict(freeze_fee=money(ctx.settings.get("freeze", "fee_per_day")),
                 ladder=policies.ladder_from_settings(ctx.settings.section("policy")))
    if day is not None:
        if day.date() > jobs.local_today(ctx.settings.get("", "timezone")):
            raise CliError("cannot charge a day in the future")
        with ctx.Session() as session:
            results = [fee_module.charge_day(session, day.date(), **rules)]
    else:
        results = jobs.run_fees(ctx.engine, ctx.Session,
                                jobs.local_today(ctx.settings.get("", "timezone")), **rules)
    rows = [dict(day=r.day, charged=r.charged, profiles_changed=r.profiles_changed)
            for r in results]
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo("nothing to charge (another node holds the lock, or today is done)")
    for row in rows:
        click.echo(f"{row['day']}: {row['charged']} accounts charged, "
                   f"{row['profiles_changed']} profiles changed")
