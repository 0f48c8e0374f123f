"""Notifications: an outbox filled by the domain, drained by channels.

Low balance (below the account's own threshold) and "money runs out in N
days" are queued at most once per account, channel and day (the key is
unique), so a job run twice or on two nodes sends once. Channels sit behind
one small interface: email over SMTP is real; SMS and Telegram have a
logging implementation until a gateway is chosen.
"""

from __future__ import annotations

import datetime as dt
import logging
import smtplib
from decimal import Decimal
from email.message import EmailMessage
from typing import Protocol

from sqlalchemy import and_, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from config.db import utcnow
from rating.models import Account, Notification, Tariff
from rating.tariffs import daily_fee

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5


class Channel(Protocol):
    name: str

    def send(self, recipient: str, subject: str, body: str) -> None:
        """Deliver or raise; never log the body's secrets (there are none)."""


class EmailChannel:
    name = "email"

    def __init__(self, host: str, port: int, sender: str, timeout: float = 10.0):
        self.host, self.port, self.sender, self.timeout = host, port, sender, timeout

    def send(self, recipient: str, subject: str, body: str) -> None:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = recipient
        message["Subject"] = subject
        message.set_content(body)
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
            smtp.send_message(message)


class LoggingChannel:
    """Stands in for an SMS or Telegram gateway: records what it would send."""

    def __init__(self, name: str):
        self.name = name
        self.sent: list[tuple[str, str]] = []

    def send(self, recipient: str, subject: str, body: str) -> None:
        self.sent.append((recipient, subject))
        log.info("notify.%s recipient=%s subject=%r", self.name, recipient, subject)


def _recipient(account: Account, channel: str) -> str | None:
    return {"email": account.email, "sms": account.phone,
            "telegram": account.telegram_chat_id}.get(channel)


def days_left(balance: Decimal, credit_limit: Decimal, fee_per_day: Decimal) -> int | None:
    """Whole days the money lasts at the tariff's daily fee (None: no fee)."""
    if fee_per_day <= 0:
        return None
    available = balance + credit_limit
    return max(0, int(available // fee_per_day))


def queue(session: Session, today: dt.date, *, warn_days: int = 3) -> int:
    """Queue today's low-balance and runs-out notices; returns how many."""
    rows = []
    # Only accounts with something to say are read: below their own
    # threshold, or with less than ``warn_days`` of their tariff's daily fee
    # left (balance + credit < warn_days x fee, the fee worked out here: no
    # money is multiplied in SQL).
    running_out = [
        and_(Account.tariff_id == tariff_id,
             Account.balance + Account.credit_limit < warn_days * daily_fee(fee, today))
        for tariff_id, fee in session.execute(
            select(Tariff.id, Tariff.fee).where(Tariff.fee_period == "daily", Tariff.fee > 0))]
    worth_a_notice = or_(and_(Account.low_balance_threshold.is_not(None),
                              Account.balance < Account.low_balance_threshold), *running_out)
    accounts = session.execute(select(Account, Tariff).outerjoin(
        Tariff, Tariff.id == Account.tariff_id).where(Account.state == "active",
                                                      worth_a_notice)).all()
    for account, tariff in accounts:
        notices = []
        if account.low_balance_threshold is not None and \
                account.balance < account.low_balance_threshold:
            notices.append(("low-balance", "Low balance",
                            f"Account {account.number}: the balance is {account.balance:.2f}, "
                            f"below your threshold of {account.low_balance_threshold:.2f}."))
        if tariff is not None:
            per_day = daily_fee(tariff.fee, today) if tariff.fee_period == "daily" else \
                Decimal(0)
            left = days_left(account.balance, account.credit_limit, per_day)
            if left is not None and left < warn_days:
                notices.append(("runs-out", "Your money runs out soon",
                                f"Account {account.number}: the balance lasts about {left} "
                                f"more day(s) at {per_day:.2f} a day. Top up to stay online."))
        for kind, subject, body in notices:
            for channel in account.notify_channels or []:
                recipient = _recipient(account, channel)
                if recipient:
                    rows.append(dict(account_id=account.id, channel=channel, kind=kind,
                                     key=f"{kind}:{account.id}:{channel}:{today.isoformat()}",
                                     recipient=recipient, subject=subject, body=body,
                                     status="pending", attempts=0, created_at=utcnow()))
    if not rows:
        return 0
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    result = session.execute(insert(Notification).on_conflict_do_nothing(
        index_elements=["key"]).returning(Notification.id), rows)
    return len(result.all())


def deliver(Session: sessionmaker, channels: dict[str, Channel], limit: int = 500) -> int:
    """Send pending notifications; a failure is retried up to MAX_ATTEMPTS."""
    sent = 0
    with Session() as session:
        pending = session.scalars(select(Notification).where(
            Notification.status == "pending").order_by(Notification.id).limit(limit)).all()
        for note in pending:
            channel = channels.get(note.channel)
            if channel is None:
                note.status, note.last_error = "failed", f"no channel {note.channel}"
                continue
            note.attempts += 1
            try:
                channel.send(note.recipient, note.subject, note.body)
            except (OSError, smtplib.SMTPException) as error:
                note.last_error = type(error).__name__ + ": " + str(error)[:200]
                if note.attempts >= MAX_ATTEMPTS:
                    note.status = "failed"
                log.warning("notify.failed id=%s channel=%s error=%s", note.id, note.channel,
                            note.last_error)
            else:
                note.status, note.sent_at, note.last_error = "sent", utcnow(), None
                sent += 1
            session.commit()
    return sent
