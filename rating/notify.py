"""Notifications: an outbox filled by the domain, drained by channels.

Queueing. Every notice is a row of ``notifications`` with a unique key, so
whatever queues it (a job run twice, on two nodes, a payment posted again)
queues it once. The text is rendered when queued, in the account's language
(``Account.language``, else ``notify.default_language``), from
rating.notify_texts. It goes to each channel the account chose
(``notify_channels``) unless the account turned that kind off there
(``notify_off``, "kind:channel"). A broadcast is one INSERT … SELECT a channel.

Delivery. A run claims due rows by moving them from ``pending`` to
``sending`` in one UPDATE whose subquery locks with ``FOR UPDATE SKIP
LOCKED`` on PostgreSQL (SQLite has one writer at a time, so the UPDATE …
WHERE status = 'pending' is already atomic): two runs at once never claim one
row. Before the gateway hears of a message its try is written to
``notification_attempts`` (outcome "started") and committed. Then:
- accepted: ``sent`` (SMS: one ``sms_parts`` row a part, matched to the
  SMSC's delivery receipts, ``delivered`` when every part is);
- refused or unreachable: ``pending`` again after a backoff, ``failed`` after
  ``max_attempts`` or at once when the gateway says it never will;
- no answer in time (an SMSC that says nothing to submit_sm): ``unknown``.
  Such a message may have been sent, so it is NOT resent: a late
  submit_sm_resp on the same bind moves it to ``sent``, its receipt to
  ``delivered``; otherwise an operator decides (``abonent notify retry``).
  A run that died between "started" and the outcome leaves ``sending``;
  after CLAIM_LEASE it becomes ``unknown`` the same way, never resent.

Quiet hours (``notify.quiet_hours``, the operator's time zone): SMS and
Telegram wait for the morning; e-mail does not wake anyone and goes at once;
urgent notices (a suspension, a broadcast marked urgent) go at any hour.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import smtplib
import socket
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from email.message import EmailMessage
from typing import Iterable, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import String, Text, and_, case, cast, func, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from config.db import utcnow
from rating import notify_texts
from rating.models import (Account, Notification, NotificationAttempt, NotificationBroadcast,
                           SmsPart, Tariff)
from rating.tariffs import daily_fee
from rating.validate import DomainError

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
CHANNELS = ("email", "sms", "telegram")
KINDS = notify_texts.KINDS
# Delivered in the quiet hours too: the subscriber is offline right now and
# needs to know why. "restored" is good news that can wait for the morning.
URGENT_KINDS = frozenset({"suspended"})
# A claim older than this whose run never finished is given up as "unknown".
CLAIM_LEASE = dt.timedelta(minutes=10)
MAX_BACKOFF = dt.timedelta(hours=1)
# Rows whose tries are recorded in one commit before they are sent.
SEND_CHUNK = 20
DEFAULT_LANGUAGE = "ru"


# -- channels ---------------------------------------------------------------------

class ChannelError(Exception):
    """The gateway refused or could not be reached. ``permanent``: it never
    will take this message (a wrong number, a bot the subscriber blocked)."""

    def __init__(self, message: str, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


class SubmitTimeout(Exception):
    """The gateway was sent the message and did not answer in time: it may
    have taken it. ``ref`` names the submit so a late answer can match."""

    def __init__(self, message: str, ref: str | None = None):
        super().__init__(message)
        self.ref = ref


@dataclass
class SendResult:
    # The gateway's ids, one a part (SMPP message ids); empty when it gives none.
    provider_ids: list[str] = field(default_factory=list)
    ref: str | None = None


@dataclass
class GatewayEvent:
    """Something a gateway said after the send: a delivery receipt for a
    part (``message_id``, ``delivered``, ``detail``) or a late answer to a
    submit that timed out (``tag`` = the attempt id, ``message_id``, ``part``)."""

    kind: str  # receipt | late-answer
    message_id: str
    delivered: bool = False
    detail: str = ""
    tag: int | None = None
    part: int = 0


class Channel(Protocol):
    name: str

    def send(self, recipient: str, subject: str, body: str, tag: int | None = None
             ) -> SendResult | None:
        """Deliver or raise ChannelError / SubmitTimeout (OSError counts as
        a ChannelError that may pass)."""


class EmailChannel:
    name = "email"

    def __init__(self, host: str, port: int, sender: str, timeout: float = 10.0):
        self.host, self.port, self.sender, self.timeout = host, port, sender, timeout

    def send(self, recipient: str, subject: str, body: str, tag: int | None = None) -> None:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = recipient
        message["Subject"] = subject
        message.set_content(body)
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as error:
            raise ChannelError(f"recipient refused: {error}", permanent=True) from None
        except (OSError, smtplib.SMTPException) as error:
            raise ChannelError(f"{type(error).__name__}: {error}") from None


class LoggingChannel:
    """Records what it would send (a channel that is switched off, tests)."""

    def __init__(self, name: str):
        self.name = name
        self.sent: list[tuple[str, str]] = []

    def send(self, recipient: str, subject: str, body: str, tag: int | None = None) -> None:
        self.sent.append((recipient, subject))
        log.info("notify.%s recipient=%s subject=%r", self.name, recipient, subject)


# -- choosing channels and texts --------------------------------------------------

def _recipient(account: Account, channel: str) -> str | None:
    return {"email": account.email, "sms": account.phone,
            "telegram": account.telegram_chat_id}.get(channel)


def channels_for(account: Account, kind: str) -> list[str]:
    """The channels ``kind`` goes to for this account, each with an address."""
    off = set(account.notify_off or ())
    return [channel for channel in CHANNELS
            if channel in (account.notify_channels or ())
            and f"{kind}:{channel}" not in off and _recipient(account, channel)]


def _insert(session: Session):
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def _rows(account: Account, kind: str, key: str, fields: dict, *, urgent: bool | None,
          default_language: str | None, now: dt.datetime) -> list[dict]:
    lang = notify_texts.language(account.language, default_language or DEFAULT_LANGUAGE)
    subject, body = notify_texts.render(kind, lang, {"number": account.number, **fields})
    return [dict(account_id=account.id, channel=channel, kind=kind, key=f"{key}:{channel}",
                 recipient=_recipient(account, channel), subject=subject[:200], body=body,
                 status="pending", attempts=0, created_at=now, language=lang,
                 urgent=kind in URGENT_KINDS if urgent is None else urgent,
                 parts=0, parts_delivered=0)
            for channel in channels_for(account, kind)]


def _insert_rows(session: Session, rows: list[dict]) -> int:
    if not rows:
        return 0
    result = session.execute(_insert(session)(Notification).on_conflict_do_nothing(
        index_elements=["key"]).returning(Notification.id), rows)
    return len(result.all())


def notify_account(session: Session, account: Account, kind: str, key: str, fields: dict,
                   *, urgent: bool | None = None, default_language: str | None = None) -> int:
    """Queue ``kind`` for one account on its channels, once per ``key``
    (the channel is added to it); returns how many rows were new. Runs in
    the caller's transaction: the notice exists if and only if the event
    that caused it does."""
    return _insert_rows(session, _rows(account, kind, key, fields, urgent=urgent,
                                       default_language=default_language, now=utcnow()))


def notify_many(session: Session, items, *, default_language: str | None = None) -> int:
    """Queue many notices at once: (account, kind, key, fields) each, one
    INSERT for the lot (a limit reached by a branch of 500 lines)."""
    now = utcnow()
    rows = [row for account, kind, key, fields in items
            for row in _rows(account, kind, key, fields, urgent=None,
                             default_language=default_language, now=now)]
    return _insert_rows(session, rows)


def days_left(balance: Decimal, credit_limit: Decimal, fee_per_day: Decimal) -> int | None:
    """Whole days the money lasts at the tariff's daily fee (None: no fee)."""
    if fee_per_day <= 0:
        return None
    available = balance + credit_limit
    return max(0, int(available // fee_per_day))


def queue(session: Session, today: dt.date, *, warn_days: int = 3,
          default_language: str | None = None) -> int:
    """Queue today's low-balance and runs-out notices; returns how many."""
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
    queued = 0
    day = today.isoformat()
    for account, tariff in accounts:
        if account.low_balance_threshold is not None and \
                account.balance < account.low_balance_threshold:
            queued += notify_account(
                session, account, "low-balance", f"low-balance:{account.id}:{day}",
                {"balance": account.balance, "threshold": account.low_balance_threshold},
                default_language=default_language)
        if tariff is not None:
            per_day = daily_fee(tariff.fee, today) if tariff.fee_period == "daily" else \
                Decimal(0)
            left = days_left(account.balance, account.credit_limit, per_day)
            if left is not None and left < warn_days:
                queued += notify_account(
                    session, account, "runs-out", f"runs-out:{account.id}:{day}",
                    {"days": left, "per_day": per_day}, default_language=default_language)
    return queued


# -- events from the rest of rating -----------------------------------------------

def payment_received(session: Session, account: Account, amount: Decimal, key: str) -> int:
    """A payment was posted (``key``: its ledger key, so the same payment
    posted again notifies once)."""
    return notify_account(session, account, "payment", f"payment:{key}",
                          {"amount": amount, "balance": account.balance})


def profiles_changed(session: Session, changed: Iterable[tuple[int, str, int]],
                     blocking: set[str]) -> int:
    """After the balance ladder moved accounts ((id, new profile, version)):
    "suspended" for a blocking rung, "restored" for a move back to normal.
    Keyed by the account's version, which each move bumps."""
    changed = [(account_id, profile, version) for account_id, profile, version in changed
               if profile in blocking or profile == "normal"]
    if not changed:
        return 0
    accounts = {a.id: a for a in session.scalars(select(Account).where(
        Account.id.in_([c[0] for c in changed])).execution_options(populate_existing=True))}
    rows = []
    now = utcnow()
    for account_id, profile, version in changed:
        account = accounts[account_id]
        kind = "suspended" if profile in blocking else "restored"
        rows += _rows(account, kind, f"{kind}:{account_id}:v{version}",
                      {"balance": account.balance}, urgent=None, default_language=None,
                      now=now)
    # One INSERT for the lot: a fee run may suspend thousands at once.
    return _insert_rows(session, rows)


def tariff_changed(session: Session, account: Account, tariff_name: str,
                   starts_on: dt.date) -> int:
    return notify_account(session, account, "tariff-change",
                          f"tariff-change:{account.id}:{starts_on.isoformat()}:{tariff_name}",
                          {"tariff": tariff_name, "starts_on": starts_on})


def request_answered(session: Session, account: Account, request_no: int, entry_id: int,
                     answer: str) -> int:
    short = answer if len(answer) <= 300 else answer[:297] + "…"
    return notify_account(session, account, "request-answered",
                          f"request-answered:{request_no}:{entry_id}",
                          {"request_no": request_no, "answer": short})


# -- broadcasts -------------------------------------------------------------------

def broadcast(session: Session, account_ids, *, actor: str, target: str,
              target_ref: str | None = None, template: str | None = None,
              text: str | None = None, text_en: str | None = None, urgent: bool = False,
              default_language: str | None = None,
              channels: Iterable[str] | None = None, kind: str = "broadcast",
              subject_fields: dict | None = None) -> NotificationBroadcast:
    """Queue one message to every open account ``account_ids`` (a SELECT of
    account ids) names, on each channel it chose for broadcasts: one
    INSERT … SELECT a channel, no Python loop over the accounts.
    ``kind``: the template whose subject it has (``subject_fields`` fill
    it) and the opt-out it honours ("kind:channel"): a company's notice to
    its users is "company-notice"."""
    if template is not None:
        if template not in notify_texts.BROADCASTS:
            raise DomainError(f"no broadcast template {template!r}; there are "
                              f"{', '.join(sorted(notify_texts.BROADCASTS))}")
        texts = notify_texts.BROADCASTS[template]
        text_ru, text_en = texts["ru"], texts["en"]
    else:
        text_ru = (text or "").strip()
        text_en = (text_en or "").strip() or text_ru
        if not text_ru:
            raise DomainError("a broadcast needs a --template or a --text")
        if len(text_ru) > 1000 or len(text_en) > 1000:
            raise DomainError("a broadcast text may be at most 1000 characters long")
    row = NotificationBroadcast(actor=actor, target=target, target_ref=target_ref,
                                template=template, text_ru=text_ru, text_en=text_en,
                                urgent=urgent, queued=0, created_at=utcnow())
    session.add(row)
    session.flush()
    default = notify_texts.language(None, default_language or DEFAULT_LANGUAGE)
    lang = case((Account.language.in_(notify_texts.LANGUAGES), Account.language),
                else_=literal(default))
    subjects = {code: notify_texts.render(kind, code, {**(subject_fields or {}),
                                                       "text": ""})[0][:200]
                for code in notify_texts.LANGUAGES}
    recipients = {"email": Account.email, "sms": Account.phone,
                  "telegram": Account.telegram_chat_id}
    now = utcnow()
    columns = ["account_id", "channel", "kind", "key", "recipient", "subject", "body",
               "status", "attempts", "created_at", "language", "urgent", "parts",
               "parts_delivered", "broadcast_id"]
    for channel, recipient in recipients.items():
        if channels is not None and channel not in channels:
            continue
        chosen = and_(
            Account.id.in_(account_ids), Account.state != "closed",
            recipient.is_not(None), recipient != "",
            # Both databases keep JSON as its text: '["email", "sms"]'.
            cast(Account.notify_channels, Text).like(f'%"{channel}"%'),
            func.coalesce(cast(Account.notify_off, Text), "[]").not_like(
                f'%"{kind}:{channel}"%'))
        rows = select(
            Account.id, literal(channel), literal(kind),
            literal(f"broadcast:{row.id}:") + cast(Account.id, String) + literal(f":{channel}"),
            recipient, case((lang == "en", subjects["en"]), else_=subjects["ru"]),
            case((lang == "en", text_en), else_=text_ru), literal("pending"), literal(0),
            literal(now), lang, literal(urgent), literal(0), literal(0), literal(row.id),
        ).where(chosen)
        session.execute(Notification.__table__.insert().from_select(columns, rows))
    row.queued = session.scalar(select(func.count()).select_from(Notification).where(
        Notification.broadcast_id == row.id))
    return row


# -- quiet hours ------------------------------------------------------------------

@dataclass(frozen=True)
class QuietHours:
    start: dt.time
    end: dt.time
    timezone: str

    @classmethod
    def parse(cls, value: str, timezone: str) -> "QuietHours | None":
        value = (value or "").strip()
        if not value:
            return None
        try:
            start, end = (dt.time.fromisoformat(part.strip()) for part in value.split("-"))
        except ValueError:
            raise DomainError(f"quiet hours must look like 22:00-09:00, not {value!r}") \
                from None
        return cls(start, end, timezone)

    def covers(self, now: dt.datetime) -> bool:
        """Is ``now`` (naive UTC) inside the quiet hours?"""
        local = now.replace(tzinfo=dt.timezone.utc).astimezone(ZoneInfo(self.timezone)).time()
        if self.start <= self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end


# -- delivery ---------------------------------------------------------------------

def node_name() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def backoff(attempts: int, base_seconds: int = 60) -> dt.timedelta:
    return min(dt.timedelta(seconds=base_seconds * 2 ** max(0, attempts - 1)), MAX_BACKOFF)


def claim(session: Session, node: str, *, limit: int, now: dt.datetime,
          quiet: bool = False, channels: Iterable[str] | None = None) -> list[int]:
    """Move up to ``limit`` due rows to ``sending`` for this node; no other
    run can claim them (FOR UPDATE SKIP LOCKED on PostgreSQL, SQLite's one
    writer elsewhere). Commits."""
    due = select(Notification.id).where(
        Notification.status == "pending",
        or_(Notification.next_attempt_at.is_(None), Notification.next_attempt_at <= now))
    if channels is not None:
        due = due.where(Notification.channel.in_(list(channels)))
    if quiet:
        due = due.where(or_(Notification.channel == "email", Notification.urgent))
    due = due.order_by(Notification.id).limit(limit).with_for_update(skip_locked=True)
    ids = session.scalars(update(Notification).where(
        Notification.id.in_(due.scalar_subquery()), Notification.status == "pending")
        .values(status="sending", claimed_by=node, claimed_at=now)
        .returning(Notification.id)).all()
    session.commit()
    return sorted(ids)


def expire_claims(session: Session, now: dt.datetime) -> int:
    """A run that died mid-send left rows in ``sending``: they may have gone
    out, so they become ``unknown`` (never resent by themselves)."""
    result = session.execute(update(Notification).where(
        Notification.status == "sending", Notification.claimed_at < now - CLAIM_LEASE)
        .values(status="unknown", last_error="the delivery run stopped mid-send"))
    session.commit()
    return result.rowcount


@dataclass
class DeliveryStats:
    sent: int = 0
    failed: int = 0
    retry: int = 0
    unknown: int = 0
    receipts: int = 0


def _send_chunk(Session: sessionmaker, note_ids: list[int], channels: dict, node: str, *,
                max_attempts: int, retry_seconds: int, stats: DeliveryStats,
                now: dt.datetime | None = None) -> None:
    """Send a few claimed rows: their tries are written and committed in one
    transaction before the first goes to its gateway, the outcomes in one
    after the last (a crash in between leaves them "sending" with a started
    try: "unknown" after CLAIM_LEASE, never resent)."""
    with Session() as session:
        notes = session.scalars(select(Notification).where(
            Notification.id.in_(note_ids)).order_by(Notification.id)).all()
        attempts = {}
        for note in notes:
            if channels.get(note.channel) is None:
                note.status, note.last_error = "failed", f"no channel {note.channel} is set up"
                stats.failed += 1
                continue
            note.attempts += 1
            attempts[note.id] = NotificationAttempt(
                notification_id=note.id, event="submit", outcome="started", node=node,
                started_at=utcnow())
            session.add(attempts[note.id])
        # Recorded before any gateway hears of them.
        session.commit()
        for note in notes:
            attempt = attempts.get(note.id)
            if attempt is not None:
                _send_one(session, note, attempt, channels[note.channel],
                          max_attempts=max_attempts, retry_seconds=retry_seconds,
                          stats=stats, now=now)
        session.commit()


def _send_one(session: Session, note: Notification, attempt: NotificationAttempt, channel,
              *, max_attempts: int, retry_seconds: int, stats: DeliveryStats,
              now: dt.datetime | None = None) -> None:
    try:
        result = channel.send(note.recipient, note.subject, note.body, tag=attempt.id)
    except SubmitTimeout as error:
        attempt.outcome, attempt.provider_ref = "timeout", error.ref
        attempt.detail = str(error)[:500]
        note.status, note.last_error = "unknown", "no answer from the gateway in time"
        stats.unknown += 1
        log.warning("notify.unknown id=%s channel=%s", note.id, note.channel)
    except (ChannelError, OSError) as error:
        permanent = getattr(error, "permanent", False)
        detail = str(error) if isinstance(error, ChannelError) else \
            f"{type(error).__name__}: {error}"
        attempt.outcome, attempt.detail = "error", detail[:500]
        note.last_error = detail[:500]
        if permanent or note.attempts >= max_attempts:
            note.status = "failed"
            stats.failed += 1
        else:
            note.status = "pending"
            note.next_attempt_at = (now or utcnow()) + backoff(note.attempts, retry_seconds)
            stats.retry += 1
        log.warning("notify.failed id=%s channel=%s error=%s", note.id, note.channel,
                    detail[:200])
    else:
        sent_at = utcnow()
        ids = list(result.provider_ids) if result else []
        attempt.outcome, attempt.provider_ids = "sent", " ".join(ids) or None
        attempt.provider_ref = result.ref if result else None
        note.status, note.sent_at, note.last_error = "sent", sent_at, None
        note.provider_ids, note.parts = " ".join(ids) or None, len(ids)
        if note.channel == "sms":
            session.add_all(SmsPart(message_id=message_id, notification_id=note.id,
                                    part=number, state="accepted")
                            for number, message_id in enumerate(ids, start=1))
        stats.sent += 1
    attempt.finished_at = utcnow()


def record_events(Session: sessionmaker, events: Iterable[GatewayEvent]) -> int:
    """Delivery receipts and late answers, matched to our messages."""
    recorded = 0
    events = list(events)
    with Session() as session:
        # A drain's receipts: their parts and messages read in two queries.
        wanted = [e.message_id for e in events if e.kind == "receipt"]
        parts = {p.message_id: p for p in session.scalars(
            select(SmsPart).where(SmsPart.message_id.in_(wanted)))} if wanted else {}
        notes = {n.id: n for n in session.scalars(select(Notification).where(
            Notification.id.in_({p.notification_id for p in parts.values()})))} \
            if parts else {}
        for event in events:
            if event.kind == "late-answer":
                attempt = session.get(NotificationAttempt, event.tag) if event.tag else None
                if attempt is None:
                    log.warning("notify.late_answer_unmatched message_id=%s", event.message_id)
                    continue
                note = session.get(Notification, attempt.notification_id)
                session.add(NotificationAttempt(
                    notification_id=note.id, event="late-answer", outcome="sent",
                    provider_ids=event.message_id, started_at=utcnow(), finished_at=utcnow(),
                    detail=f"part {event.part}"))
                if session.get(SmsPart, event.message_id) is None:
                    part = SmsPart(message_id=event.message_id, notification_id=note.id,
                                   part=event.part, state="accepted")
                    session.add(part)
                    # Its receipt may come in this same drain.
                    parts[event.message_id], notes[note.id] = part, note
                    note.parts += 1
                    note.provider_ids = " ".join(filter(None, [note.provider_ids,
                                                               event.message_id]))
                if note.status == "unknown":
                    note.status, note.sent_at, note.last_error = "sent", utcnow(), None
                recorded += 1
                continue
            part = parts.get(event.message_id)
            if part is None:
                log.warning("notify.receipt_unmatched message_id=%s", event.message_id)
                continue
            note = notes[part.notification_id]
            session.add(NotificationAttempt(
                notification_id=note.id, event="receipt",
                outcome="delivered" if event.delivered else "undelivered",
                provider_ids=event.message_id, detail=event.detail[:500] or None,
                started_at=utcnow(), finished_at=utcnow()))
            recorded += 1
            if part.state != "accepted":
                continue  # a repeated receipt: recorded, counted once
            part.state, part.receipt_at = ("delivered" if event.delivered else
                                           "undelivered"), utcnow()
            if event.delivered:
                note.parts_delivered += 1
                if note.parts_delivered >= note.parts and note.status in ("sent", "unknown"):
                    note.status, note.delivered_at = "delivered", utcnow()
            else:
                note.status = "failed"
                note.last_error = f"the SMSC reports part {part.part} undelivered: " \
                                  f"{event.detail[:200]}"
        session.commit()
    return recorded


def _drain(Session: sessionmaker, channels: dict, stats: DeliveryStats, wait: float = 0) -> None:
    for channel in channels.values():
        poll = getattr(channel, "poll", None)
        if poll is not None:
            events = poll(wait)
            if events:
                stats.receipts += record_events(Session, events)


def deliver(Session: sessionmaker, channels: dict[str, Channel], *, limit: int = 500,
            node: str | None = None, quiet_hours: QuietHours | None = None,
            max_attempts: int = MAX_ATTEMPTS, retry_seconds: int = 60,
            now: dt.datetime | None = None, only: Iterable[str] | None = None,
            max_rows: int | None = None) -> DeliveryStats:
    """Claim and send due notifications, batch after batch, until none is
    due (or ``max_rows`` were claimed); then read what the gateways said."""
    node = node or node_name()
    stats = DeliveryStats()
    # A channel that is not set up (SMS switched off) leaves its rows waiting.
    only = list(channels) if only is None else list(only)
    claimed_total = 0
    with Session() as session:
        expire_claims(session, now or utcnow())
    while max_rows is None or claimed_total < max_rows:
        moment = now or utcnow()
        quiet = quiet_hours is not None and quiet_hours.covers(moment)
        # Small claims: a row is "sending" for seconds, not for as long as
        # a slow gateway takes to get through ``limit`` of them (CLAIM_LEASE).
        batch = min(limit, SEND_CHUNK)
        if max_rows is not None:
            batch = min(batch, max_rows - claimed_total)
        with Session() as session:
            ids = claim(session, node, limit=batch, now=moment, quiet=quiet, channels=only)
        if not ids:
            break
        claimed_total += len(ids)
        _send_chunk(Session, ids, channels, node, max_attempts=max_attempts,
                    retry_seconds=retry_seconds, stats=stats, now=now)
        _drain(Session, channels, stats)
    _drain(Session, channels, stats)
    return stats


def collect_receipts(Session: sessionmaker, channels: dict, wait: float = 1.0) -> int:
    """Read receipts (and late answers) for up to ``wait`` seconds."""
    stats = DeliveryStats()
    _drain(Session, channels, stats, wait)
    return stats.receipts


def retry(session: Session, note_id: int) -> Notification:
    """An operator's decision to send an ``unknown`` or ``failed`` message
    again (after checking with the gateway that it did not go)."""
    note = session.get(Notification, note_id)
    if note is None:
        raise DomainError(f"notification {note_id} does not exist")
    if note.status not in ("unknown", "failed"):
        raise DomainError(f"notification {note_id} is {note.status}: only an unknown or "
                          f"failed one can be sent again")
    note.status, note.next_attempt_at, note.claimed_by = "pending", None, None
    return note
