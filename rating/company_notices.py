"""A company administrator's notices to the company's own users (issue 21).

A login with the "users" right on a branch (rating.org grants) writes one
text; every open account of the branch (the unit and the units under it,
or the whole customer) gets it on the channels it chose, through the
notification outbox (rating.notify.broadcast: one INSERT … SELECT a
channel). The accounts' "company-notice:channel" opt-outs are honoured.

Limits: at most MAX_TEXT characters of plain text (no control characters;
every channel sends it as text and the cabinet escapes it when it shows
it); at most PER_HOUR notices a login per customer in an hour.
"""

from __future__ import annotations

import datetime as dt
import unicodedata

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from rating import notify, oplog, org, spending
from rating.models import Account, NotificationBroadcast
from rating.validate import DomainError

MAX_TEXT = 500
PER_HOUR = 5
TARGET = "customer"
KIND = "company-notice"


def clean_text(value) -> str:
    """The notice's text, stripped; refused when empty, too long or holding
    control characters (line breaks excepted)."""
    text = (value or "").replace("\r\n", "\n").strip() if isinstance(value, str) else ""
    if not text:
        raise DomainError("write the text of the notice")
    if len(text) > MAX_TEXT:
        raise DomainError(f"a notice may be at most {MAX_TEXT} characters long")
    if any(unicodedata.category(ch) == "Cc" and ch != "\n" for ch in text):
        raise DomainError("the text holds control characters")
    return text


def _ref(customer_id: int) -> str:
    return f"{customer_id}:"


def send(session: Session, *, cabinet_user_id: int, branch_key: str, text: str, actor: str,
         now: dt.datetime) -> NotificationBroadcast:
    """Queue the notice to every open account of the branch; in the
    caller's transaction."""
    branch = spending.find_branch(session, cabinet_user_id, "users", branch_key)
    text = clean_text(text)
    recent = session.scalar(select(func.count()).select_from(NotificationBroadcast).where(
        NotificationBroadcast.target == TARGET, NotificationBroadcast.actor == actor[:80],
        NotificationBroadcast.target_ref.like(_ref(branch.customer_id) + "%"),
        NotificationBroadcast.created_at > now - dt.timedelta(hours=1)))
    if recent >= PER_HOUR:
        raise DomainError(f"at most {PER_HOUR} notices an hour; try again later")
    ids = org.branch_accounts(session, branch.customer_id, branch.unit_id)
    row = notify.broadcast(session, select(Account.id).where(Account.id.in_(ids)),
                           actor=actor[:80], target=TARGET, target_ref=branch.key,
                           text=text, text_en=text, kind=KIND,
                           subject_fields={"company": branch.customer_name})
    row.created_at = now    # the hour the limit counts in is the caller's clock
    oplog.record(session, account_id=None, actor=actor, action="company.notice",
                 customer=branch.customer_id, unit=branch.unit_id, broadcast=row.id,
                 queued=row.queued)
    return row


def sent(session: Session, cabinet_user_id: int, limit: int = 50) -> list[NotificationBroadcast]:
    """The notices sent to the customers where the login holds "users", newest first."""
    customers = sorted({branch.customer_id
                        for branch in spending.branches(session, cabinet_user_id, "users")})
    if not customers:
        return []
    return list(session.scalars(select(NotificationBroadcast).where(
        NotificationBroadcast.target == TARGET,
        or_(*[NotificationBroadcast.target_ref.like(_ref(c) + "%") for c in customers]))
        .order_by(NotificationBroadcast.id.desc()).limit(limit)))
