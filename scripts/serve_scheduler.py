"""``abonent serve scheduler``: APScheduler in its own process.

Each job takes its database lock (rating.jobs.job_lock), so several
schedulers can run against one PostgreSQL and each job runs once; each job
is idempotent, so a run after an outage catches up the days it missed.
"""

from __future__ import annotations

import datetime as dt
import logging

import click
from apscheduler.schedulers.blocking import BlockingScheduler

from aaa import accounting, voice
from collector import radius_usage, tiers
from config.db import money, utcnow
from rating import freeze, jobs, notify, notify_channels, policies, telegram_link, yookassa
from scripts.common import get_context

log = logging.getLogger(__name__)


def build_scheduler(ctx, fee_minutes: int = 10, policy_seconds: int = 60) -> BlockingScheduler:
    timezone = ctx.settings.get("", "timezone")
    scheduler = BlockingScheduler(timezone=timezone)

    freeze_fee = money(ctx.settings.get("freeze", "fee_per_day"))
    freeze_rules = freeze.FreezeRules.from_settings(ctx.settings)
    ladder = policies.ladder_from_settings(ctx.settings.section("policy"))
    late_hours = ctx.settings.get("traffic", "late_hours")

    def fee_job():
        jobs.run_fees(ctx.engine, ctx.Session, jobs.local_today(timezone),
                      freeze_fee=freeze_fee, ladder=ladder, freeze_rules=freeze_rules)

    def policy_job():
        jobs.run_periodic(ctx.Session)

    def traffic_job():
        jobs.run_traffic(ctx.engine, ctx.Session, timezone, hours_back=late_hours)

    def radius_usage_job():
        # Idempotent by its high-water marks; the window only bounds the scan.
        with ctx.Session() as session:
            radius_usage.roll_up(session, utcnow() - dt.timedelta(hours=2))
            session.commit()

    interim = ctx.settings.get("radius", "interim_interval")
    stale_after = ctx.settings.get("radius", "stale_after_intervals")

    def stale_sessions_job():
        with ctx.engine.begin() as connection:
            closed = accounting.close_stale_sessions(
                connection, utcnow(), dt.timedelta(seconds=interim * stale_after))
        if closed:
            log.info("radius.stale_sessions_closed count=%d", closed)

    call_timeout = dt.timedelta(seconds=ctx.settings.get("radius", "voice_call_timeout_s"))

    def stale_calls_job():
        # Safe on several nodes: the held Starts are deleted as taken.
        with ctx.engine.begin() as connection:
            closed = voice.close_stale_starts(connection, utcnow(), call_timeout,
                                              ctx.settings)
        if closed:
            log.info("radius.stale_calls_closed count=%d", closed)

    notify_settings = ctx.settings.section("notify")
    notify.DEFAULT_LANGUAGE = notify_settings["default_language"]
    channels = notify_channels.from_settings(ctx.settings)
    quiet = notify.QuietHours.parse(notify_settings["quiet_hours"], timezone)

    def notify_job():
        with ctx.Session() as session:
            notify.queue(session, jobs.local_today(timezone),
                         warn_days=notify_settings["days_left"])
            session.commit()

    def deliver_job():
        # Safe on several nodes at once: rows are claimed (rating.notify).
        stats = notify.deliver(ctx.Session, channels, quiet_hours=quiet,
                               max_attempts=notify_settings["max_attempts"],
                               retry_seconds=notify_settings["retry_seconds"])
        if stats.sent or stats.failed or stats.unknown or stats.receipts:
            log.info("notify.delivered sent=%d failed=%d retry=%d unknown=%d receipts=%d",
                     stats.sent, stats.failed, stats.retry, stats.unknown, stats.receipts)

    def telegram_job():
        # getUpdates answers one reader at a time: one node polls.
        with jobs.job_lock(ctx.engine, "telegram-updates") as held:
            if held:
                telegram_link.poll(ctx.Session, channels["telegram"],
                                   default_language=notify_settings["default_language"])

    expiry_minutes = ctx.settings.get("payments", "pending_expiry_minutes")

    def payment_expiry_job():
        jobs.run_payment_expiry(ctx.engine, ctx.Session, expiry_minutes)

    card = yookassa.from_settings(ctx.settings)
    poll_days = ctx.settings.get("yookassa", "poll_days")

    def payment_poll_job():
        jobs.run_payment_poll(ctx.engine, ctx.Session, card, poll_days)

    def autopay_job():
        jobs.run_autopay(ctx.engine, ctx.Session, ctx.settings, card)

    def spending_job():
        jobs.run_spending(ctx.engine, ctx.Session, timezone)

    retention = tiers.Retention.from_settings(ctx.settings)

    def traffic_tiers_job():
        # Partitions ahead, old days moved up a tier (collector.tiers);
        # its own lock, idempotent.
        tiers.run(ctx.engine, retention)

    # coalesce + max_instances=1: a slow run is never stacked on itself.
    scheduler.add_job(fee_job, "interval", minutes=fee_minutes, id="fees", coalesce=True,
                      max_instances=1)
    scheduler.add_job(policy_job, "interval", seconds=policy_seconds, id="policies",
                      coalesce=True, max_instances=1)
    scheduler.add_job(traffic_job, "interval", minutes=15, id="traffic", coalesce=True,
                      max_instances=1)
    scheduler.add_job(radius_usage_job, "interval", minutes=1, id="radius_usage",
                      coalesce=True, max_instances=1)
    scheduler.add_job(notify_job, "interval", minutes=15, id="notifications", coalesce=True,
                      max_instances=1)
    scheduler.add_job(payment_expiry_job, "interval", minutes=5, id="payment_expiry",
                      coalesce=True, max_instances=1)
    if card is not None:
        scheduler.add_job(payment_poll_job, "interval", minutes=10, id="payment_poll",
                          coalesce=True, max_instances=1)
        scheduler.add_job(autopay_job, "interval", minutes=60, id="autopay", coalesce=True,
                          max_instances=1)
    scheduler.add_job(traffic_tiers_job, "interval", minutes=60, id="traffic_tiers",
                      coalesce=True, max_instances=1)
    # After the traffic and fee runs have charged: limits see their charges.
    scheduler.add_job(spending_job, "interval", minutes=5, id="spending", coalesce=True,
                      max_instances=1)
    scheduler.add_job(deliver_job, "interval", seconds=notify_settings["deliver_seconds"],
                      id="notify_deliver", coalesce=True, max_instances=1)
    if "telegram" in channels:
        scheduler.add_job(telegram_job, "interval", seconds=5, id="telegram_updates",
                          coalesce=True, max_instances=1)
    if interim > 0 and stale_after > 0:
        scheduler.add_job(stale_sessions_job, "interval", minutes=1, id="stale_sessions",
                          coalesce=True, max_instances=1)
    scheduler.add_job(stale_calls_job, "interval", minutes=1, id="stale_calls",
                      coalesce=True, max_instances=1)
    # Data lifecycle (aaa.archive): under its job lock, batch by batch.
    from aaa import archive
    retention = archive.Retention.from_settings(ctx.settings)

    def archive_job():
        archive.run_locked(ctx.engine, ctx.Session, retention)

    scheduler.add_job(archive_job, "interval",
                      minutes=ctx.settings.get("archive", "interval_minutes"), id="archive",
                      coalesce=True, max_instances=1)
    return scheduler


@click.command()
@click.option("--fee-minutes", type=click.IntRange(1), default=10, show_default=True,
              help="How often the fee job looks for days to charge.")
@click.option("--policy-seconds", type=click.IntRange(1), default=60, show_default=True)
def scheduler(fee_minutes, policy_seconds):
    """Run scheduled jobs: daily fees (with catch-up), expiries and balance policies."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    ctx = get_context()
    sched = build_scheduler(ctx, fee_minutes, policy_seconds)
    # Catch up at once on start, then on the interval. A database that is
    # not there yet (a standby being promoted) fails this run only: the
    # interval job tries again, as it does after any failed run.
    try:
        sched.get_job("fees").func()
    except Exception as error:
        log.error("job.failed name=fees at=start error=%s: %s (retried on the interval)",
                  type(error).__name__, str(error).strip().splitlines()[0][:200] if str(error)
                  else "")
    click.echo(f"scheduler running: fees every {fee_minutes} min, policies every "
               f"{policy_seconds} s; Ctrl-C to stop")
    try:
        sched.start()
    except (KeyboardInterrupt, SystemExit):
        pass
