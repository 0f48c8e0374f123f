"""Finding an account by whatever the caller on the phone gives: a number,
a name (any case, Cyrillic too), a service login, an IP (now, or at a given
time), a MAC (any notation), a phone (any notation).

Names and phones are matched on denormalized keys kept on ``accounts``
(``search_name``, ``phone_key``): SQLite's ``lower()`` folds ASCII only,
and "+7 (912) 345-67-89" must meet "89123456789". ``backfill`` fills them
for rows written with Core statements that bypassed the model (an import).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from rating.models import Account
from rating.validate import DomainError

__all__ = ["name_key", "phone_key", "backfill", "classify", "like_pattern", "Query"]


def name_key(value) -> str | None:
    """The name as search compares it: case-folded, spaces collapsed, ё as е."""
    if value is None:
        return None
    folded = " ".join(str(value).casefold().split()).replace("ё", "е")
    return folded[:200] or None


def phone_key(value) -> str | None:
    """A phone's comparable digits: the last 10 of a Russian number (+7 or 8
    trunk prefix dropped), else all its digits; None when it has too few."""
    if value is None:
        return None
    digits = re.sub(r"\D", "", str(value))
    if len(digits) < 5:
        return None
    if len(digits) == 11 and digits[0] in "78":
        digits = digits[1:]
    return digits[-15:]


def backfill(session: Session, chunk: int = 5000) -> int:
    """Fill the search keys of accounts where they are NULL (rows inserted
    by Core statements that gave neither); in the caller's transaction.
    Returns the number of accounts filled."""
    filled = 0
    last_id = 0
    while True:
        rows = session.execute(
            select(Account.id, Account.name, Account.phone, Account.search_name,
                   Account.phone_key)
            .where(Account.id > last_id,
                   or_(Account.search_name.is_(None),
                       and_(Account.phone_key.is_(None), Account.phone.is_not(None))))
            .order_by(Account.id).limit(chunk)).all()
        if not rows:
            return filled
        values = [{"b_id": r.id, "b_name": name_key(r.name), "b_phone": phone_key(r.phone)}
                  for r in rows]
        from sqlalchemy import bindparam
        table = Account.__table__
        session.execute(update(table).where(table.c.id == bindparam("b_id"))
                        .values(search_name=bindparam("b_name"),
                                phone_key=bindparam("b_phone"))
                        .execution_options(synchronize_session=False), values)
        filled += len(rows)
        last_id = rows[-1].id


# -- what a query is ---------------------------------------------------------

_MAC_HEX = re.compile(r"^[0-9a-f]{12}$")
_MAC_SHAPE = re.compile(r"^[0-9a-fA-F]{1,4}(?:[:.\-][0-9a-fA-F]{1,4}){1,5}$|^[0-9a-fA-F]{12}$")
_NUMBER = re.compile(r"^[0-9A-Za-z-]{1,32}$")
_PHONE = re.compile(r"^\+?[0-9 ()\-.]{5,30}$")


def normal_mac(text: str) -> str | None:
    """aa:bb:cc:dd:ee:ff from any common notation (colons, dashes, Cisco
    dots, bare hex), or None when it is not one."""
    if not _MAC_SHAPE.match(text.strip()):
        return None
    raw = text.strip().lower()
    parts = re.split(r"[:.\-]", raw)
    if len(parts) == 6 and all(1 <= len(p) <= 2 for p in parts):
        hexdigits = "".join(p.rjust(2, "0") for p in parts)
    elif len(parts) == 3 and all(len(p) == 4 for p in parts):
        hexdigits = "".join(parts)
    elif len(parts) == 1:
        hexdigits = parts[0]
    else:
        return None
    if not _MAC_HEX.match(hexdigits):
        return None
    return ":".join(hexdigits[i:i + 2] for i in range(0, 12, 2))


def normal_ip(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return None


@dataclass
class Query:
    text: str
    ip: str | None = None
    mac: str | None = None
    phone: str | None = None
    number: str | None = None
    name: str | None = None
    kinds: list[str] = field(default_factory=list)


def classify(text: str) -> Query:
    """Every reading the query allows (a number may also be a phone)."""
    if text is None or not str(text).strip():
        raise DomainError("the search query must not be empty")
    text = str(text).strip()
    if len(text) > 200:
        raise DomainError(f"the search query must be at most 200 characters, not {len(text)}")
    for char in text:
        if ord(char) < 32 or ord(char) == 127:
            raise DomainError(f"the search query must not contain control characters "
                              f"(found U+{ord(char):04X})")
    query = Query(text)
    query.ip = normal_ip(text)
    if query.ip is None:
        query.mac = normal_mac(text)
    if query.ip is None and _PHONE.match(text):
        digits = re.sub(r"\D", "", text)
        if 7 <= len(digits) <= 15:
            query.phone = phone_key(text)
    if _NUMBER.match(text):
        query.number = text
    if query.ip is None and query.mac is None:
        query.name = name_key(text)
    return query


def like_pattern(text: str) -> str:
    """``%text%`` with LIKE's wildcards escaped (escape character ``\\``)."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
