"""Linking a subscriber's Telegram chat to their account.

The cabinet shows a one-time code and the deep link
``https://t.me/<bot>?start=<code>``; opening it makes Telegram send the bot
``/start <code>`` from the subscriber's chat. The polling job (getUpdates,
rating.telegram_link.poll) finds the code, and if it is unused and not
expired, sets the account's chat and adds Telegram to its channels. A code
works once (a conditional UPDATE claims it) and for ``link_minutes``.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import secrets

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from config.db import utcnow
from rating import notify_texts, oplog
from rating.models import Account, NotifyCursor, TelegramLink

log = logging.getLogger(__name__)

_START = re.compile(r"^/start(?:@\w+)?\s+([A-Za-z0-9_-]{8,64})\s*$")
CURSOR = "telegram.updates"

REPLIES = {
    "linked": {"ru": "Готово: уведомления по лицевому счёту {number} будут приходить сюда.",
               "en": "Done: notices for account {number} will come to this chat."},
    "bad": {"ru": "Код не подошёл или устарел. Получите новый в личном кабинете.",
            "en": "This code is wrong or has expired. Get a new one in your cabinet."},
}


def current_code(session: Session, account_id: int, now: dt.datetime | None = None
                 ) -> TelegramLink | None:
    now = now or utcnow()
    return session.scalars(select(TelegramLink).where(
        TelegramLink.account_id == account_id, TelegramLink.used_at.is_(None),
        TelegramLink.expires_at > now).order_by(TelegramLink.id.desc()).limit(1)).first()


def new_code(session: Session, account_id: int, minutes: int = 30,
             now: dt.datetime | None = None) -> TelegramLink:
    """A fresh code (Telegram's start parameter allows A-Z a-z 0-9 _ -)."""
    now = now or utcnow()
    link = TelegramLink(account_id=account_id, code=secrets.token_urlsafe(12).replace("-", "_"),
                        created_at=now, expires_at=now + dt.timedelta(minutes=minutes))
    session.add(link)
    session.flush()
    return link


def deep_link(bot_username: str, code: str) -> str:
    return f"https://t.me/{bot_username}?start={code}"


def link(session: Session, code: str, chat_id: str, now: dt.datetime | None = None
         ) -> Account | None:
    """Use ``code`` for ``chat_id``; the account, or None (wrong, used, expired)."""
    now = now or utcnow()
    claimed = session.execute(update(TelegramLink).where(
        TelegramLink.code == code, TelegramLink.used_at.is_(None),
        TelegramLink.expires_at > now).values(used_at=now, chat_id=chat_id)
        .returning(TelegramLink.account_id)).first()
    if claimed is None:
        return None
    account = session.get(Account, claimed[0])
    old = account.telegram_chat_id
    account.telegram_chat_id = chat_id
    if "telegram" not in (account.notify_channels or []):
        account.notify_channels = [*(account.notify_channels or []), "telegram"]
    oplog.record(session, account_id=account.id, actor="telegram", action="notify.update",
                 telegram_chat_id=f"{old or '—'} → {chat_id}")
    return account


def poll(Session: sessionmaker, channel, *, default_language: str = "ru") -> int:
    """Read the bot's new updates once; link the chats that sent a good
    code and answer every ``/start`` with a code. Returns chats linked."""
    with Session() as session:
        cursor = session.get(NotifyCursor, CURSOR)
        offset = cursor.value if cursor else 0
    updates = channel.updates(offset)
    linked = 0
    for update_id, chat_id, text in updates:
        found = _START.match(text or "")
        if chat_id and found:
            with Session() as session:
                account = link(session, found.group(1), chat_id)
                session.commit()
                lang = notify_texts.language(account.language if account else None,
                                             default_language)
                number = account.number if account else ""
            if account is not None:
                linked += 1
                log.info("notify.telegram_linked account_id=%s", account.id)
            reply = REPLIES["linked" if account else "bad"][lang].format(number=number)
            try:
                channel.send(chat_id, "", reply)
            except Exception as error:  # noqa: BLE001 - the link stands without the reply
                log.warning("notify.telegram_reply_failed error=%s", type(error).__name__)
        with Session() as session:
            cursor = session.get(NotifyCursor, CURSOR)
            if cursor is None:
                session.add(NotifyCursor(name=CURSOR, value=update_id + 1))
            else:
                cursor.value = max(cursor.value, update_id + 1)
            session.commit()
    return linked
