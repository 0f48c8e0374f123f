"""``abonent notify list|show|send|broadcast|retry|deliver``: the outbox."""

from __future__ import annotations

import click
from sqlalchemy import select

from aaa.models import Nas, Session as RadiusSession
from rating import notify, notify_texts, oplog
from rating.models import Account, Notification, NotificationAttempt, Tariff
from scripts.common import (CliError, actor, emit_json, emit_rows, fetch_page, get_context,
                            json_option, page_options, transaction)

STATUSES = ("pending", "sending", "sent", "delivered", "failed", "unknown")


@click.group("notify")
def notify_group():
    """Notifications to subscribers: the outbox, one message, broadcasts."""


@notify_group.command("list")
@click.option("--status", type=click.Choice(STATUSES))
@click.option("--channel", type=click.Choice(notify.CHANNELS))
@click.option("--kind", type=click.Choice(notify.KINDS))
@click.option("--account", "number", help="Only this account's.")
@click.option("--broadcast", "broadcast_id", type=int, help="Only this broadcast's.")
@page_options(default_limit=100)
@json_option
def notify_list(status, channel, kind, number, broadcast_id, limit, offset, as_json):
    """List notifications, newest first."""
    ctx = get_context()
    with ctx.Session() as session:
        query = (select(Notification, Account.number)
                 .join(Account, Account.id == Notification.account_id)
                 .order_by(Notification.id.desc()))
        for column, value in ((Notification.status, status), (Notification.channel, channel),
                              (Notification.kind, kind), (Account.number, number),
                              (Notification.broadcast_id, broadcast_id)):
            if value is not None:
                query = query.where(column == value)
        rows = [dict(id=n.id, account=account_number, kind=n.kind, channel=n.channel,
                     recipient=n.recipient, language=n.language, status=n.status,
                     attempts=n.attempts, parts=n.parts, parts_delivered=n.parts_delivered,
                     urgent=n.urgent, subject=n.subject, created_at=n.created_at,
                     sent_at=n.sent_at, delivered_at=n.delivered_at,
                     next_attempt_at=n.next_attempt_at if n.status == "pending" else None,
                     last_error=n.last_error, broadcast_id=n.broadcast_id)
                for n, account_number in fetch_page(session, query, limit, offset,
                                                    scalars=False)]
    emit_rows(rows, as_json, ["id", "account", "kind", "channel", "recipient", "status",
                              "attempts", "created_at", "last_error"])


@notify_group.command("show")
@click.argument("notification_id", type=int)
@json_option
def notify_show(notification_id, as_json):
    """One notification with its text and every attempt and receipt."""
    ctx = get_context()
    with ctx.Session() as session:
        note = session.get(Notification, notification_id)
        if note is None:
            raise CliError(f"notification {notification_id} does not exist")
        attempts = [dict(id=a.id, event=a.event, outcome=a.outcome, started_at=a.started_at,
                         finished_at=a.finished_at, node=a.node, provider_ids=a.provider_ids,
                         detail=a.detail)
                    for a in session.scalars(select(NotificationAttempt).where(
                        NotificationAttempt.notification_id == note.id)
                        .order_by(NotificationAttempt.id))]
        row = dict(id=note.id, kind=note.kind, channel=note.channel, recipient=note.recipient,
                   language=note.language, status=note.status, subject=note.subject,
                   body=note.body, provider_ids=note.provider_ids, attempts=attempts)
    if as_json:
        emit_json(row)
        return
    for name in ("id", "kind", "channel", "recipient", "language", "status", "subject",
                 "body", "provider_ids"):
        click.echo(f"{name}: {row[name] if row[name] is not None else '-'}")
    emit_rows(attempts, False, ["id", "event", "outcome", "started_at", "provider_ids",
                                "detail"])


def _broadcast_text(template, text, text_en):
    if (template is None) == (text is None):
        raise CliError("give a --template or a --text (not both)")
    if text_en is not None and text is None:
        raise CliError("--text-en goes with --text")


@notify_group.command("send")
@click.argument("number")
@click.option("--template", type=click.Choice(sorted(notify_texts.BROADCASTS)),
              help="A ready text in both languages.")
@click.option("--text", help="The message (in the account's language).")
@click.option("--channel", "only_channel", type=click.Choice(notify.CHANNELS),
              help="Only this channel (default: every channel the account chose).")
@click.option("--urgent", is_flag=True, help="Deliver in the quiet hours too.")
@json_option
def notify_send(number, template, text, only_channel, urgent, as_json):
    """Send one message to account NUMBER (queued; the delivery job sends it)."""
    _broadcast_text(template, text, None)
    who = actor()
    with transaction() as session:
        account = session.scalars(select(Account).where(Account.number == number)).first()
        if account is None:
            raise CliError(f"account {number} does not exist")
        if only_channel is not None:
            if only_channel not in notify.channels_for(account, "broadcast"):
                raise CliError(f"account {number} gets no {only_channel} messages "
                               f"(not chosen, or no address)")
        row = notify.broadcast(
            session, select(Account.id).where(Account.id == account.id), actor=who,
            target="account", target_ref=number, template=template, text=text, urgent=urgent,
            channels=[only_channel] if only_channel else None)
        if row.queued == 0:
            raise CliError(f"account {number} has no channel to send to")
        oplog.record(session, account_id=account.id, actor=who, action="notify.send",
                     broadcast=row.id, channels=row.queued)
        result = dict(broadcast_id=row.id, queued=row.queued)
    if as_json:
        emit_json(result)
    else:
        click.echo(f"queued {result['queued']} message(s) to {number} "
                   f"(broadcast {result['broadcast_id']})")


@notify_group.command("broadcast")
@click.option("--all", "to_all", is_flag=True, help="Every open account.")
@click.option("--nas", "nas_name", help="Accounts with a session open on this NAS now.")
@click.option("--tariff", "tariff_name", help="Accounts on this tariff.")
@click.option("--template", type=click.Choice(sorted(notify_texts.BROADCASTS)),
              help="A ready text in both languages.")
@click.option("--text", help="The message in Russian (and English when no --text-en).")
@click.option("--text-en", help="The message in English.")
@click.option("--urgent", is_flag=True, help="Deliver in the quiet hours too (an outage).")
@json_option
def notify_broadcast(to_all, nas_name, tariff_name, template, text, text_en, urgent, as_json):
    """A mass mailing: queue one message to every chosen account, in one
    statement a channel; the delivery job sends them at the SMSC's rate."""
    if sum(bool(x) for x in (to_all, nas_name, tariff_name)) != 1:
        raise CliError("choose whom: --all, --nas NAME or --tariff NAME")
    _broadcast_text(template, text, text_en)
    who = actor()
    with transaction() as session:
        if to_all:
            ids, target, ref = select(Account.id), "all", None
        elif nas_name:
            nas = session.scalars(select(Nas).where(Nas.name == nas_name)).first()
            if nas is None:
                raise CliError(f"NAS {nas_name} does not exist")
            ids = select(RadiusSession.account_id).where(
                RadiusSession.nas_id == nas.id, RadiusSession.stopped_at.is_(None),
                RadiusSession.account_id.is_not(None))
            target, ref = "nas", nas_name
        else:
            tariff = session.scalars(select(Tariff).where(Tariff.name == tariff_name)).first()
            if tariff is None:
                raise CliError(f"tariff {tariff_name} does not exist")
            ids, target, ref = select(Account.id).where(Account.tariff_id == tariff.id), \
                "tariff", tariff_name
        row = notify.broadcast(session, ids, actor=who, target=target, target_ref=ref,
                               template=template, text=text, text_en=text_en, urgent=urgent)
        oplog.record(session, account_id=None, actor=who, action="notify.broadcast",
                     broadcast=row.id, target=target, target_ref=ref, queued=row.queued)
        result = dict(broadcast_id=row.id, target=target, target_ref=ref, queued=row.queued)
    if as_json:
        emit_json(result)
    else:
        click.echo(f"broadcast {result['broadcast_id']}: queued {result['queued']} message(s)")


@notify_group.command("retry")
@click.argument("notification_id", type=int)
def notify_retry(notification_id):
    """Send an unknown or failed message again (check with the gateway first
    that an unknown one did not go: it is never resent by itself)."""
    with transaction() as session:
        note = notify.retry(session, notification_id)
        oplog.record(session, account_id=note.account_id, actor=actor(),
                     action="notify.retry", notification=note.id)
    click.echo(f"notification {notification_id} queued again")


@notify_group.command("deliver")
@click.option("--limit", type=click.IntRange(1), default=500, show_default=True)
@json_option
def notify_deliver(limit, as_json):
    """Run the delivery job once, now (the scheduler runs it on its own)."""
    from rating import notify_channels
    ctx = get_context()
    settings = ctx.settings.section("notify")
    channels = notify_channels.from_settings(ctx.settings)
    try:
        stats = notify.deliver(ctx.Session, channels, limit=limit,
                               quiet_hours=notify.QuietHours.parse(
                                   settings["quiet_hours"], ctx.settings.get("", "timezone")),
                               max_attempts=settings["max_attempts"],
                               retry_seconds=settings["retry_seconds"])
    finally:
        for channel in channels.values():
            close = getattr(channel, "close", None)
            if close:
                close()
    result = dict(sent=stats.sent, failed=stats.failed, retry=stats.retry,
                  unknown=stats.unknown, receipts=stats.receipts)
    if as_json:
        emit_json(result)
    else:
        click.echo(" ".join(f"{k}={v}" for k, v in result.items()))
