"""Service requests (заявки): a subscriber writes, the operator answers.

A request has a topic from a fixed list, a text, a status (new, in
progress, done, rejected) and a thread: the messages of the subscriber and
the operator and every status change, in the order they happened
(``ServiceRequestMessage``; a status set with an answer is one entry). The
request's own text opens the thread. ``answer`` keeps the operator's latest
message for the listings and the API. The cabinet adds requests and the
subscriber's messages to an open request; ``abonent request`` lists, shows,
answers and moves them on. Functions work in the caller's transaction and
raise ``DomainError`` with a sentence.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Optional

from sqlalchemy import (CheckConstraint, DateTime, ForeignKey, Index, Integer, String, Text,
                        func, select, update)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from config.db import Base, utcnow
from rating import notify, oplog
from rating.accounts import DomainError, NotFound
from rating.models import Account, _in

TOPICS = ("no_connection", "slow_speed", "billing", "move", "other")
STATUSES = ("new", "in_progress", "done", "rejected")
OPEN_STATUSES = ("new", "in_progress")
TEXT_MAX_LENGTH = 2000
ANSWER_MAX_LENGTH = 2000
MESSAGE_MAX_LENGTH = 2000
AUTHOR_KINDS = ("subscriber", "operator")
# More open requests than this look like a stuck form or a flood.
MAX_OPEN = 10


class ServiceRequest(Base):
    __tablename__ = "service_requests"
    __table_args__ = (
        CheckConstraint(_in("topic", TOPICS), name="topic"),
        CheckConstraint(_in("status", STATUSES), name="status"),
        # The cabinet lists an account's requests newest first.
        Index("ix_service_requests_account_created", "account_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    topic: Mapped[str] = mapped_column(String(32))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="new", index=True)
    answer: Mapped[Optional[str]] = mapped_column(Text)
    author: Mapped[str] = mapped_column(String(100))
    # "<account id>:<form id>": a form sent twice adds one request.
    idempotency_key: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class ServiceRequestMessage(Base):
    """One entry of a request's thread: a message, a status change, or both."""

    __tablename__ = "service_request_messages"
    __table_args__ = (
        CheckConstraint(_in("author_kind", AUTHOR_KINDS), name="author_kind"),
        CheckConstraint("status IS NULL OR " + _in("status", STATUSES), name="status"),
        CheckConstraint("body IS NOT NULL OR status IS NOT NULL", name="says_something"),
        # A thread is read in order: its request's entries by id.
        Index("ix_service_request_messages_request", "request_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("service_requests.id"))
    author_kind: Mapped[str] = mapped_column(String(16))
    author: Mapped[str] = mapped_column(String(100))
    body: Mapped[Optional[str]] = mapped_column(Text)
    # The status the request moved to with this entry, if it moved.
    status: Mapped[Optional[str]] = mapped_column(String(16))
    # "<request id>:<form id>": a subscriber's form sent twice adds one message.
    idempotency_key: Mapped[Optional[str]] = mapped_column(String(100), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


@dataclass(frozen=True)
class MessageView:
    id: int
    author_kind: str
    author: str
    body: str | None
    status: str | None
    created_at: dt.datetime

    def as_dict(self) -> dict:
        return dict(id=self.id, by=self.author_kind, author=self.author, text=self.body,
                    status=self.status, created_at=self.created_at)


@dataclass(frozen=True)
class RequestView:
    id: int
    account_id: int
    account_number: str
    topic: str
    body: str
    status: str
    answer: str | None
    author: str
    created_at: dt.datetime
    updated_at: dt.datetime

    def as_dict(self) -> dict:
        return dict(id=self.id, account=self.account_number, topic=self.topic,
                    status=self.status, text=self.body, answer=self.answer,
                    author=self.author, created_at=self.created_at,
                    updated_at=self.updated_at)


def _check_status(status: str) -> str:
    status = (status or "").strip().lower().replace("-", "_").replace(" ", "_")
    if status not in STATUSES:
        raise DomainError(f"status must be one of {', '.join(STATUSES)}")
    return status


def create(session: Session, account_id: int, *, topic: str, text: str, request_id: str,
           actor: str, now: dt.datetime | None = None) -> tuple[ServiceRequest, bool]:
    """Add a request; returns (request, created). The same ``request_id``
    again returns the first request and adds nothing."""
    now = now or utcnow()
    if topic not in TOPICS:
        raise DomainError("choose the request's topic from the list")
    body = (text or "").strip()
    if not 1 <= len(body) <= TEXT_MAX_LENGTH:
        raise DomainError("describe the request in 1 to 2000 characters")
    if not request_id or len(request_id) > 64:
        raise DomainError("the form is incomplete; reload the page and try again")
    key = f"{account_id}:{request_id}"
    existing = session.scalar(select(ServiceRequest).where(ServiceRequest.idempotency_key == key))
    if existing is not None:
        return existing, False
    if session.get(Account, account_id) is None:
        raise NotFound(f"account {account_id} does not exist")
    open_count = session.scalar(select(func.count()).select_from(ServiceRequest).where(
        ServiceRequest.account_id == account_id, ServiceRequest.status.in_(OPEN_STATUSES)))
    if open_count >= MAX_OPEN:
        raise DomainError("there are 10 open requests already; please wait for an answer")
    row = ServiceRequest(account_id=account_id, topic=topic, body=body, status="new",
                         author=actor, idempotency_key=key, created_at=now, updated_at=now)
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        # The same form, sent at the same moment by a second tab or a retry.
        existing = session.scalar(select(ServiceRequest)
                                  .where(ServiceRequest.idempotency_key == key))
        if existing is None:
            raise
        return existing, False
    oplog.record(session, account_id=account_id, actor=actor, action="request.add",
                 request=row.id, topic=topic)
    return row, True


def _views(session: Session, query) -> list[RequestView]:
    rows = session.execute(query.add_columns(Account.number)
                           .join(Account, Account.id == ServiceRequest.account_id)).all()
    return [RequestView(r.id, r.account_id, number, r.topic, r.body, r.status, r.answer,
                        r.author, r.created_at, r.updated_at) for r, number in rows]


def for_account(session: Session, account_id: int, limit: int = 100) -> list[RequestView]:
    """An account's requests, newest first."""
    return _views(session, select(ServiceRequest)
                  .where(ServiceRequest.account_id == account_id)
                  .order_by(ServiceRequest.created_at.desc(), ServiceRequest.id.desc())
                  .limit(limit))


def listing(session: Session, *, status: str | None = None, account_number: str | None = None,
            limit: int = 1000, offset: int = 0) -> list[RequestView]:
    """Requests for the operator: oldest first, so the queue reads top down."""
    query = (select(ServiceRequest)
             .order_by(ServiceRequest.created_at, ServiceRequest.id).limit(limit).offset(offset))
    if status is not None:
        query = query.where(ServiceRequest.status == _check_status(status))
    if account_number is not None:
        account_id = session.scalar(select(Account.id).where(Account.number == account_number))
        if account_id is None:
            raise NotFound(f"account {account_number} does not exist")
        query = query.where(ServiceRequest.account_id == account_id)
    return _views(session, query)


def _text(text: str | None, what: str) -> str:
    body = (text or "").strip()
    if not 1 <= len(body) <= MESSAGE_MAX_LENGTH:
        raise DomainError(f"{what} must be 1 to 2000 characters long")
    return body


def _request(session: Session, request_id: int) -> ServiceRequest:
    row = session.get(ServiceRequest, request_id)
    if row is None:
        raise NotFound(f"request {request_id} does not exist")
    return row


def _add_entry(session: Session, row: ServiceRequest, *, author_kind: str, author: str,
               body: str | None, status: str | None, now: dt.datetime,
               key: str | None = None, answer: str | None = None) -> ServiceRequestMessage:
    entry = ServiceRequestMessage(request_id=row.id, author_kind=author_kind, author=author,
                                  body=body, status=status, idempotency_key=key,
                                  created_at=now)
    session.add(entry)
    session.flush()
    values = {"updated_at": now}
    if status is not None:
        values["status"] = status
    if answer is not None:
        values["answer"] = answer
    session.execute(update(ServiceRequest).where(ServiceRequest.id == row.id)
                    .values(**values).execution_options(synchronize_session=False))
    session.expire(row)
    if author_kind == "operator" and body:
        # "Request answered", in the answer's transaction, once an entry.
        account = session.get(Account, row.account_id)
        if account is not None:
            notify.request_answered(session, account, row.id, entry.id, body)
    return entry


def set_status(session: Session, request_id: int, status: str, *, answer: str | None = None,
               actor: str, now: dt.datetime | None = None) -> RequestView:
    """The operator moves a request on and may answer it in the same step:
    one entry in the thread. The same status again without an answer
    changes nothing."""
    now = now or utcnow()
    status = _check_status(status)
    if answer is not None:
        answer = answer.strip() or None
        if answer is not None and len(answer) > ANSWER_MAX_LENGTH:
            raise DomainError("an answer may be at most 2000 characters long")
    row = _request(session, request_id)
    moved = row.status != status
    if not moved and answer is None:
        return get(session, request_id)
    _add_entry(session, row, author_kind="operator", author=actor, body=answer,
               status=status if moved else None, now=now, answer=answer)
    oplog.record(session, account_id=row.account_id, actor=actor, action="request.status",
                 request=request_id, status=status,
                 answer=None if answer is None else (answer[:200]))
    return get(session, request_id)


def reply(session: Session, request_id: int, text: str, *, actor: str,
          now: dt.datetime | None = None) -> MessageView:
    """The operator's message in a request's thread; the status stays."""
    now = now or utcnow()
    body = _text(text, "an answer")
    row = _request(session, request_id)
    entry = _add_entry(session, row, author_kind="operator", author=actor, body=body,
                       status=None, now=now, answer=body)
    oplog.record(session, account_id=row.account_id, actor=actor, action="request.message",
                 request=request_id, text=body[:200])
    return _message_view(entry)


def add_message(session: Session, account_id: int, request_id: int, text: str, *,
                message_id: str, actor: str,
                now: dt.datetime | None = None) -> tuple[MessageView, bool]:
    """The subscriber's message in their own open request; returns
    (message, created). The same ``message_id`` again adds nothing. Another
    account's request does not exist, as far as the subscriber can tell."""
    now = now or utcnow()
    body = _text(text, "a message")
    if not message_id or len(message_id) > 64:
        raise DomainError("the form is incomplete; reload the page and try again")
    row = session.get(ServiceRequest, request_id)
    if row is None or row.account_id != account_id:
        raise NotFound(f"request {request_id} does not exist")
    key = f"{request_id}:{message_id}"
    existing = session.scalar(select(ServiceRequestMessage)
                              .where(ServiceRequestMessage.idempotency_key == key))
    if existing is not None:
        return _message_view(existing), False
    if row.status not in OPEN_STATUSES:
        raise DomainError("this request is closed; please add a new one")
    try:
        with session.begin_nested():
            entry = _add_entry(session, row, author_kind="subscriber", author=actor,
                               body=body, status=None, now=now, key=key)
    except IntegrityError:
        # The same form, sent at the same moment by a second tab or a retry.
        existing = session.scalar(select(ServiceRequestMessage)
                                  .where(ServiceRequestMessage.idempotency_key == key))
        if existing is None:
            raise
        return _message_view(existing), False
    oplog.record(session, account_id=account_id, actor=actor, action="request.message",
                 request=request_id, text=body[:200])
    return _message_view(entry), True


def _message_view(entry: ServiceRequestMessage) -> MessageView:
    return MessageView(entry.id, entry.author_kind, entry.author, entry.body, entry.status,
                       entry.created_at)


def threads(session: Session, request_ids) -> dict[int, list[MessageView]]:
    """{request id: its thread, in order} for several requests, one query."""
    found: dict[int, list[MessageView]] = {request_id: [] for request_id in request_ids}
    if not found:
        return found
    rows = session.execute(
        select(ServiceRequestMessage.request_id, ServiceRequestMessage.id,
               ServiceRequestMessage.author_kind, ServiceRequestMessage.author,
               ServiceRequestMessage.body, ServiceRequestMessage.status,
               ServiceRequestMessage.created_at)
        .where(ServiceRequestMessage.request_id.in_(list(found)))
        .order_by(ServiceRequestMessage.request_id, ServiceRequestMessage.created_at,
                  ServiceRequestMessage.id)).all()
    for request_id, *values in rows:
        found[request_id].append(MessageView(*values))
    return found


def get(session: Session, request_id: int) -> RequestView:
    views = _views(session, select(ServiceRequest).where(ServiceRequest.id == request_id))
    if not views:
        raise NotFound(f"request {request_id} does not exist")
    return views[0]
