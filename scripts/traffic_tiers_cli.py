"""``abonent traffic-tiers …``: the traffic rollups' tiers and partitions
(collector.tiers): look at them, or run the tiering the scheduler runs."""

from __future__ import annotations

import datetime as dt

import click

from scripts.common import CliError, Progress, emit_json, emit_table, get_context, json_option


def _retention(ctx):
    from collector.tiers import Retention, TierError
    try:
        return Retention.from_settings(ctx.settings)
    except TierError as error:
        raise CliError(str(error)) from None


def _now(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        return dt.datetime.fromisoformat(value.strip().replace(" ", "T")).replace(tzinfo=None)
    except ValueError:
        raise CliError(f"--now must be a UTC time like 2026-12-07T03:00, not {value!r}") from None


@click.group("traffic-tiers")
def traffic_tiers():
    """Traffic rollups by tier: 5-minute, hourly, daily (show, run)."""


@traffic_tiers.command("show")
@click.option("--partitions", is_flag=True, help="List every partition (PostgreSQL).")
@json_option
def show(partitions, as_json):
    """Each tier: where it is complete from, its retention cut-off now, rows
    and (PostgreSQL) bytes on disk and partitions."""
    from collector import tiers

    ctx = get_context()
    document = tiers.inspect(ctx.engine, _retention(ctx))
    if as_json:
        emit_json(document)
        return
    emit_table(document["tiers"], ["tier", "table", "complete_from", "cutoff",
                                   "rows_estimate" if document["dialect"] == "postgresql"
                                   else "rows", "bytes"])
    if partitions:
        for tier in document["tiers"]:
            click.echo("")
            emit_table(tier.get("partitions", []), ["name", "from", "to", "bytes",
                                                    "rows_estimate"])


@traffic_tiers.command("run")
@click.option("--now", "now_text", metavar="UTC-TIME",
              help="Run as if it were this UTC time (default: now).")
@json_option
def run(now_text, as_json):
    """Make the partitions ahead, move rows past their tier's retention into
    the tier above, drop what the daily retention ends. What the scheduler
    runs hourly; running it again changes nothing. Exit 0, or 1 when
    another node holds the job's lock."""
    from collector import tiers

    ctx = get_context()
    retention = _retention(ctx)
    now = _now(now_text)
    progress = Progress(tiers.backlog_days(ctx.engine, retention, now), "moving days",
                        as_json)
    try:
        report = tiers.run(ctx.engine, retention, now, on_day=progress.update)
    finally:
        progress.close()
    if as_json:
        emit_json(report.as_dict())
    else:
        click.echo(f"days moved: {report.days_moved}; late rows folded: {report.stragglers}; "
                   f"partitions created {len(report.partitions_created)}, dropped "
                   f"{report.partitions_dropped}; daily rows expired {report.rows_expired}")
        click.echo(f"complete from: {report.complete_from}")
    if report.skipped:
        click.echo("another node is running the tiering job; nothing done", err=True)
        raise SystemExit(1)
