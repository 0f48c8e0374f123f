"""The operation log's details as a person reads them.

rating.oplog keeps each change's details as {field: text} (amounts and
times as Python wrote them, codes as stored, "old → new" for an edit).
Here each known field gets its name and its value in the page's language:
money with its currency, times in the operator's zone to the minute, codes
as words. A field the cabinet has no words for (an operator's internal id,
a key) is left out rather than shown raw.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal, InvalidOperation

from flask_babel import format_date
from flask_babel import lazy_gettext as _l

from cabinet import labels
from cabinet.formatting import money_with_currency
from cabinet.ledger_text import moment_text, percent_text

ROLES = {"owner": _l("owner"), "accountant": _l("accountant"), "viewer": _l("viewer")}
TARGETS = {"tariff": _l("the tariff's fee"), "package": _l("a package's fee")}
SERVICE_KINDS = {"pppoe": _l("PPPoE login"), "ipoe": _l("IPoE")}
ACCOUNT_STATES = {"active": _l("active"), "frozen": _l("frozen"), "closed": _l("closed"),
                  "blocked": _l("blocked")}

_ARROW = " → "
_CREDITED = re.compile(r"^(?P<amount>-?[0-9]+(?:\.[0-9]+)?) credited$")


def _money(value: str) -> str:
    try:
        return money_with_currency(Decimal(value))
    except (InvalidOperation, ValueError):
        return value


def _day(value: str) -> str:
    try:
        if len(value) > 10:
            return moment_text(value)
        return format_date(dt.date.fromisoformat(value), "medium")
    except ValueError:
        return value


def _code_of(table):
    return lambda value: str(table[value]) if value in table else value


def _channels(value: str) -> str:
    from cabinet.selfservice import CHANNELS
    return ", ".join(str(CHANNELS.get(part.strip(), part.strip()))
                     for part in value.split(",") if part.strip())


def _topic(value: str) -> str:
    from cabinet.selfservice import TOPICS
    return str(TOPICS.get(value, value))


def _status(value: str) -> str:
    from cabinet.selfservice import STATUSES
    return str(STATUSES.get(value, value))


# Where a payment came from, as a noun ("Payment system: the operator").
PROVIDERS = {"manual": _l("the operator"), "admin": _l("the operator"),
             "voucher": _l("voucher"), "import": _l("the previous billing system"),
             "demo": _l("demo")}
CARD = _l("bank card online")


def _provider(value: str) -> str:
    return str(PROVIDERS.get(value, CARD))


def _given(value: str) -> str | None:
    match = _CREDITED.match(value)
    return _money(match["amount"]) if match else None


def _number(value: str) -> str:
    # The field's name says "No." already.
    return value


def _as_is(value: str) -> str:
    return value


def _option(value: str) -> str:
    return str(_l("Turbo")) if value == "turbo" else value


# field -> how its value reads; a field not here is not shown.
VALUES = {
    "amount": _money, "charged": _money, "price": _money, "balance": _money,
    "low_balance_threshold": _money, "fee": _money, "given": _given,
    "due_at": moment_text, "ends_at": moment_text, "expires_at": moment_text,
    "starts_on": _day, "until": _day, "valid_from": _day, "valid_until": _day,
    "expires_on": _day, "previous_changed_at": _day,
    "role": _code_of(ROLES), "scope": _code_of(ROLES), "target": _code_of(TARGETS),
    "kind": _code_of(SERVICE_KINDS), "state": _code_of(ACCOUNT_STATES),
    "channels": _channels, "topic": _topic, "status": _status, "provider": _provider,
    # A ledger entry's id is left out: the statement shows no ids.
    "percent": percent_text, "request": _number, "discount": _number, "code": _option,
    "email": _as_is, "phone": _as_is, "phone_landline": _as_is, "login": _as_is,
    "external_id": _as_is, "txn_id": _as_is, "voucher": _as_is, "token_name": _as_is,
    "prefix": _as_is, "tariff": _as_is, "package": _as_is, "reason": _as_is,
    "answer": _as_is, "number": _as_is, "counterpart": _as_is, "tokens": _as_is,
    "telegram_chat_id": _as_is, "name": _as_is, "mac": _as_is, "pool": _as_is,
    "static_ipv4": _as_is, "ipv6_prefix": _as_is, "circuit_id": _as_is,
}


def _value(field: str, text: str) -> str | None:
    shape = VALUES[field]
    if _ARROW in text:
        # An edit: "old → new", each side in the field's words ("—" for none).
        old, _sep, new = text.partition(_ARROW)
        return _ARROW.join(side if side == "—" else (shape(side) or side)
                           for side in (old, new))
    return shape(text)


# A field whose name depends on the action: (action's prefix, field) -> name.
NAMES = {("promo.", "code"): _l("Promo code")}


NUMBERED = ("request", "discount")


def details(values: dict | None, action: str = "") -> list[tuple[str, str]]:
    """[(field's name, value's text)] of the details a person can read; a
    numbered thing is one text with no value ("Заявка № 5", "")."""
    shown = []
    for field, raw in (values or {}).items():
        if raw is None or raw == "" or field not in VALUES:
            continue
        text = _value(field, str(raw))
        if not text:
            continue
        name = next((str(name) for (prefix, key), name in NAMES.items()
                     if key == field and action.startswith(prefix)), None)
        name = name or labels.field(field)
        shown.append((f"{name}\u00a0{text}", "") if field in NUMBERED else (name, text))
    return shown
