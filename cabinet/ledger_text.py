"""What a ledger entry is for, worded in the reader's language.

rating/ writes each entry's purpose as data (``memo_code`` and
``memo_args``, rating.choices.MEMO_CODES) beside an English memo for the
operator. The pages, the PDF and the CSV word it here, at display time, so
the Russian cabinet shows no English. Rows without a code (a plain tariff
fee, whose key ``fee:ACCOUNT:PERIOD`` names the period; rows written before
the code existed) are worded from their kind and key; what cannot be read
gives no text, and the line shows its kind alone.

The operator's own words (the reason for a charge, a refund or a reversal)
are shown as they were written: they are meant for the subscriber.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation

from flask_babel import format_date
from flask_babel import ngettext

from cabinet import labels
from cabinet.formatting import gettext as _
from cabinet.formatting import money_with_currency, volume, when

GB = 10 ** 9


def N_(message: str) -> str:
    """Marks a msgid for extraction without translating it."""
    return message


# How a payment came, by the provider in its key ("payment:PROVIDER:ID").
PAYMENT_SOURCES = {
    "manual": N_("recorded by the operator"),
    "admin": N_("recorded by the operator"),
    "import": N_("carried over from the previous billing system"),
    "demo": N_("welcome payment"),
    "bank": N_("bank transfer"),
}
ONLINE_PAYMENT = N_("paid online by card")
# rating.agents: one provider per agent, "osmp:<agent name>".
AGENT_PAYMENT = N_("paid at a payment terminal or agent")


def period_text(value: str | None) -> str:
    """A period as a key or an argument names it: "2026-12-05" is a day,
    "2026-12" a month ("December 2026")."""
    if not value:
        return ""
    try:
        if len(value) == 7:
            return format_date(dt.date.fromisoformat(value + "-01"), "LLLL yyyy")
        return format_date(dt.date.fromisoformat(value[:10]), "medium")
    except ValueError:
        return value


def moment_text(value: str | None) -> str:
    """A stored UTC time (ISO text) in the operator's zone, to the minute."""
    if not value:
        return ""
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return value
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return when(moment)


def _amount(value) -> str:
    try:
        return money_with_currency(Decimal(str(value)))
    except (InvalidOperation, ValueError):
        return str(value)


def percent_text(value) -> str:
    """A percentage in the locale's digits: "10 %", "12,5 %"."""
    try:
        number = Decimal(str(value)).normalize()
    except (InvalidOperation, ValueError):
        return str(value)
    from babel import numbers

    from cabinet.formatting import locale
    return numbers.format_decimal(number, locale=locale()) + "\u00a0%"


def _key_tail(key: str | None) -> str | None:
    return key.rsplit(":", 1)[1] if key and ":" in key else None


def _payment(args: dict, key: str | None) -> str:
    provider = args.get("provider")
    if provider is None and key and key.count(":") >= 2:
        provider = key.split(":", 2)[1]
    if provider == "voucher":
        tail = args.get("tail")
        return _("voucher …%(tail)s", tail=tail) if tail else _("voucher")
    if provider is None:
        return ""
    if provider.startswith("osmp:"):
        return _(AGENT_PAYMENT)
    return _(PAYMENT_SOURCES.get(provider, ONLINE_PAYMENT))


def _with_reason(text: str, reason: str | None) -> str:
    return f"{text}: {reason}" if reason else text


def _discount(args: dict, key) -> str:
    size = percent_text(args["percent"]) if args.get("percent") else _amount(args.get("amount"))
    period = period_text(args.get("period"))
    if args.get("package"):
        return _("a discount of %(size)s on the package “%(package)s” for %(period)s",
                 size=size, package=args["package"], period=period)
    return _("a discount of %(size)s on the fee for %(period)s", size=size, period=period)


def _bonus(args: dict, key) -> str:
    period = period_text(args.get("period"))
    if args.get("package"):
        return _("bonus points paid the package “%(package)s” for %(period)s",
                 package=args["package"], period=period)
    return _("bonus points paid the fee for %(period)s", period=period)


def _traffic(args: dict, key) -> str:
    try:
        octets = int(Decimal(str(args.get("gb"))) * GB)
    except (InvalidOperation, ValueError):
        octets = 0
    hour = moment_text(args.get("hour"))
    if args.get("late"):
        return _("traffic counted late for the hour from %(time)s: %(volume)s in all",
                 time=hour, volume=volume(octets))
    return _("%(volume)s in the hour from %(time)s", volume=volume(octets), time=hour)


def _reversal(args: dict, key) -> str:
    what = labels.kind(args.get("kind", "")) if args.get("kind") else _("an operation")
    text = _("cancels “%(what)s” of %(day)s", what=what, day=period_text(args.get("day")))
    return _with_reason(text, args.get("reason"))


_WORDERS = {
    "payment": lambda args, key: _payment(args, key),
    "freeze_fee": lambda args, key: _("a frozen day, %(day)s",
                                      day=period_text(_key_tail(key))),
    "promised": lambda args, key: _("to be repaid by %(due)s", due=moment_text(args.get("due"))),
    "promised_fee": lambda args, key: _("the fee for a promised payment"),
    "promised_expired": lambda args, key: _(
        "the promised payment of %(day)s was not repaid in time",
        day=period_text(args.get("granted"))),
    "tariff_difference": lambda args, key: _(
        "tariff “%(tariff)s” from %(day)s: the difference for the rest of the month",
        tariff=args.get("tariff", ""), day=period_text(args.get("starts_on"))),
    "package": lambda args, key: _("package “%(name)s” for %(period)s",
                                   name=args.get("name", ""),
                                   period=period_text(args.get("period") or _key_tail(key))),
    "traffic": _traffic,
    "turbo": lambda args, key: _("Turbo ×%(factor)s for %(hours)s h",
                                 factor=args.get("multiplier", 2), hours=args.get("hours", "")),
    "option": lambda args, key: _("“%(name)s” for %(hours)s h", name=args.get("name", ""),
                                  hours=args.get("hours", "")),
    "reversal": _reversal,
    "charge": lambda args, key: args.get("reason") or "",
    "refund": lambda args, key: args.get("reason") or "",
    "transfer_out": lambda args, key: _with_reason(_("transfer to another account"),
                                                   args.get("reason")),
    "transfer_in": lambda args, key: _with_reason(_("transfer from another account"),
                                                  args.get("reason")),
    "discount": _discount,
    "promo": lambda args, key: _("promo code %(code)s", code=args.get("code", "")),
    "bonus_spent": _bonus,
    "import": lambda args, key: _("opening balance carried over from the previous billing "
                                  "system"),
    "calls": lambda args, key: ngettext(
        "%(num)s call on %(day)s", "%(num)s calls on %(day)s", int(args.get("calls", 0)),
        day=period_text(args.get("day"))),
}


def _from_key(kind: str, key: str | None) -> str:
    """Rows without a code: what their key says."""
    if not key:
        return ""
    parts = key.split(":")
    if kind == "fee" and parts[0] == "fee" and len(parts) == 3:
        return _("for %(period)s", period=period_text(parts[2]))
    if kind == "payment" and parts[0] == "payment" and len(parts) >= 3:
        return _payment({}, key)
    if parts[0] == "opening":
        return _WORDERS["import"]({}, key)
    if parts[0] == "promised-fee":
        return _WORDERS["promised_fee"]({}, key)
    if kind == "traffic" and parts[0] == "traffic" and len(parts) >= 3:
        return _("traffic for the hour from %(time)s", time=moment_text(parts[2] + ":00"))
    return ""


def describe(kind: str, key: str | None = None, code: str | None = None,
             args: dict | None = None) -> str:
    """What the entry is for, in the page's language ("" if nothing is known
    beyond its kind)."""
    worder = _WORDERS.get(code or "")
    if worder is None:
        return _from_key(kind, key)
    try:
        return worder(args or {}, key)
    except (KeyError, TypeError, ValueError):
        # A row written by an older or newer version with other arguments:
        # its kind still says what it is.
        return _from_key(kind, key)


def line_text(kind: str, key: str | None = None, code: str | None = None,
              args: dict | None = None) -> str:
    """The kind and what it is for: "Абонентская плата — за 5 дек. 2026 г."."""
    what = describe(kind, key, code, args)
    return f"{labels.kind(kind)} — {what}" if what else labels.kind(kind)
