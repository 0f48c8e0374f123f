"""``abonent archive run|status``: the data lifecycle of aaa.archive by hand
(the scheduler runs the same job every ``archive.interval_minutes``)."""

from __future__ import annotations

import sys

import click

from scripts.common import CliError, Progress, emit_json, emit_table, get_context, json_option


@click.group("archive")
def archive_group():
    """Archive closed sessions and leases, delete old CoA audit and notices."""


@archive_group.command("run")
@click.option("--only", "only", multiple=True, metavar="STEP",
              help="Only this step (repeatable): coa, notifications, sessions, "
                   "sessions_archive, leases, leases_archive.")
@json_option
def archive_run(only, as_json):
    """Move or delete every row past its retention, in batches; repeating it
    changes nothing, and a run cut short goes on where it stopped."""
    from aaa import archive
    unknown = sorted(set(only) - set(archive.STEP_NAMES))
    if unknown:
        raise CliError(f"unknown step {unknown[0]}; steps are {', '.join(archive.STEP_NAMES)}")
    ctx = get_context()
    retention = archive.Retention.from_settings(ctx.settings)
    steps = tuple(only) or archive.STEP_NAMES
    # The bar's total costs a count of each table: only for a person watching.
    total = (sum(row.due for row in archive.status(ctx.engine, retention) if row.step in steps)
             if sys.stderr.isatty() and not as_json else 0)
    bar = Progress(total, "archiving", as_json)
    try:
        result = archive.run_locked(ctx.engine, ctx.Session, retention, steps=steps,
                                    progress=lambda _step, count: bar.update(count))
    finally:
        bar.close()
    if as_json:
        emit_json(dict(skipped=result.skipped, rows=result.rows, batches=result.batches,
                       seconds=round(result.seconds, 3), stopped_early=result.stopped_early))
        return
    if result.skipped:
        click.echo("nothing done: another node is running the archive job")
        return
    for step, count in result.rows.items():
        if step in steps:
            verb = "moved" if step in ("sessions", "leases") else "deleted"
            click.echo(f"{step}: {count} rows {verb}")
    if result.stopped_early:
        click.echo(f"stopped at archive.run_seconds ({retention.run_seconds} s); "
                   f"the next run goes on")


@archive_group.command("status")
@json_option
def archive_status(as_json):
    """Rows per table, how many are past retention, the oldest, the last run."""
    from aaa import archive
    ctx = get_context()
    retention = archive.Retention.from_settings(ctx.settings)
    rows = [dict(step=row.step, table=row.table, retention_days=row.days or None,
                 rows=row.rows, due=row.due, oldest=row.oldest)
            for row in archive.status(ctx.engine, retention)]
    last = archive.last_run(ctx.Session)
    if as_json:
        emit_json(dict(tables=rows, last_run=last))
        return
    emit_table(rows, ["step", "table", "retention_days", "rows", "due", "oldest"])
    click.echo(f"last run: {last.replace(microsecond=0).isoformat() + 'Z' if last else 'never'}")
