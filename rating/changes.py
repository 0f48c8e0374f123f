"""One service change of one account, as bulk operations (rating.bulk) and
changes scheduled for a day (rating.scheduled_changes) make it.

A change is a kind and its parameters:

=============  ==========================  ======================================
kind           parameters                  made by (the single-change rule)
=============  ==========================  ======================================
tariff         tariff, when                rating.tariff_change (an order)
option         option (a code)             rating.options.buy
package_on     package                     rating.packages.switch
package_off    package                     rating.packages.switch
freeze         until (YYYY-MM-DD)          rating.freeze.freeze
unfreeze       —                           rating.freeze.unfreeze
tariff_undo    tariff, back_to             tariff_change.cancel, or a change back
cancel         scheduled (an id)           rating.scheduled_changes.cancel
=============  ==========================  ======================================

Every change goes through the same function a single change does, so the
ledger keys, the log lines and the profile-change outbox (CoA) are the
same. ``verdict`` says beforehand what a change will cost or why it cannot
be made (a ``Refusal`` with a code the cabinet words in the reader's
language); ``perform`` makes it, checking again. ``reversal`` names the
change that undoes one made (a revert goes through the same rules).

Nothing here commits; every function works in the caller's transaction.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from rating import freeze, options, packages, tariff_change
from rating.accounts import find_tariff
from rating.models import Account, AccountPackage, OptionType, Tariff
from rating.validate import DomainError

KINDS = ("tariff", "option", "package_on", "package_off", "freeze", "unfreeze")
# Kinds only a revert makes.
REVERSE_KINDS = ("tariff_undo", "cancel")
ZERO = Decimal("0.00")

# Why a change cannot be made, as codes (the cabinet words them) with the
# sentence the CLI shows.
REASONS = {
    "closed": "the account is closed",
    "not_active": "the account is not active",
    "not_frozen": "the account is not frozen",
    "same_tariff": "the account already has this tariff",
    "not_offered": "this is not offered any more",
    "too_frequent": "the tariff was changed too recently",
    "no_money": "the balance is not enough",
    "turbo_running": "a turbo is already active",
    "month_limit": "the monthly limit of this option is reached",
    "already_on": "the package is on already",
    "already_off": "the package is off already",
    "operator_only": "this package is switched by the operator only",
    "freeze_length": "the freeze is too short or too long",
    "changed_since": "the account has changed since",
    "not_pending": "the scheduled change is no longer pending",
    "refused": "the change is refused",
}


class Refusal(DomainError):
    """This change cannot be made on this account; ``code`` is a REASONS key,
    the message the rule's own sentence."""

    def __init__(self, code: str, sentence: str | None = None):
        super().__init__(sentence or REASONS[code])
        self.code = code


@dataclass(frozen=True)
class Terms:
    """When and by whom changes are made, and the operator's rules."""

    now: dt.datetime
    today: dt.date
    actor: str
    freeze_rules: freeze.FreezeRules = field(default_factory=freeze.FreezeRules)
    # A subscriber (the cabinet) makes guarded debits and may switch only
    # self-service packages; an admin (the CLI) is not held to either.
    by_subscriber: bool = False
    # A scheduled tariff change "now" starts on its day (not the day after).
    starts_on: dt.date | None = None


@dataclass
class Done:
    cost: Decimal
    before: dict
    result: dict


def check_parameters(session: Session, kind: str, parameters: dict, *,
                     today: dt.date | None = None) -> dict:
    """The parameters of a change, checked and normalised; bad input is a
    DomainError naming it (nothing is changed)."""
    parameters = dict(parameters or {})
    if kind == "tariff":
        tariff = find_tariff(session, str(parameters.get("tariff") or ""))
        when = parameters.get("when") or "now"
        if when not in ("now", "next_period"):
            raise DomainError("a tariff change starts now or from the next period")
        return {"tariff": tariff.name, "when": when}
    if kind == "option":
        return {"option": options.find_option_type(session, str(parameters.get("option")
                                                                or "")).code}
    if kind in ("package_on", "package_off"):
        return {"package": packages.find(session, str(parameters.get("package") or "")).name}
    if kind == "freeze":
        until = parameters.get("until")
        try:
            until = until if isinstance(until, dt.date) else dt.date.fromisoformat(str(until))
        except ValueError:
            raise DomainError("a freeze needs the day it ends (YYYY-MM-DD)") from None
        if today is not None and until <= today:
            raise DomainError("a freeze must end after today")
        return {"until": until.isoformat()}
    if kind == "unfreeze":
        return {}
    raise DomainError(f"a change is one of {', '.join(KINDS)}")


# -- what each change needs read for a chunk of accounts ---------------------------

@dataclass
class Prepared:
    """What the rules of one change need, read once for many accounts."""

    tariff: Tariff | None = None
    back_to: Tariff | None = None
    month_paid: set[int] = field(default_factory=set)
    option: OptionType | None = None
    package: object = None
    packages_on: set[int] = field(default_factory=set)


def prepare(session: Session, kind: str, parameters: dict, account_ids: list[int],
            terms: Terms) -> Prepared:
    ready = Prepared()
    if kind in ("tariff", "tariff_undo"):
        ready.tariff = find_tariff(session, parameters["tariff"])
        if parameters.get("back_to"):
            ready.back_to = find_tariff(session, parameters["back_to"])
        when = parameters.get("when", "now")
        start = _starts_on(when, terms) or tariff_change.starts_on_for(when, terms.today)
        ready.month_paid = tariff_change.month_fee_paid(session, account_ids, start)
    elif kind == "option":
        ready.option = options.find_option_type(session, parameters["option"])
    elif kind in ("package_on", "package_off"):
        ready.package = packages.find(session, parameters["package"])
        ready.packages_on = set(session.scalars(select(AccountPackage.account_id).where(
            AccountPackage.package_id == ready.package.id, AccountPackage.active.is_(True),
            AccountPackage.account_id.in_(account_ids))))
    return ready


# -- verdicts --------------------------------------------------------------------

def _starts_on(when: str, terms: Terms) -> dt.date | None:
    """A change "now" scheduled for a day starts on that day; one "from the
    next period" starts with the period after it."""
    return terms.starts_on if when == "now" else None


def _tariff_plan(account: Account, tariff: Tariff, when: str, ready: Prepared,
                 terms: Terms) -> tariff_change.Preview:
    if account.state == "closed":
        raise Refusal("closed")
    if tariff.archived:
        raise Refusal("not_offered")
    if account.tariff_id == tariff.id:
        raise Refusal("same_tariff")
    try:
        tariff_change.check_limit(account, tariff, terms.now)
    except DomainError as error:
        raise Refusal("too_frequent", str(error)) from None
    return tariff_change.plan(account, tariff, when, terms.today,
                              month_paid=account.id in ready.month_paid,
                              starts_on=_starts_on(when, terms))


def verdict(session: Session, account: Account, kind: str, parameters: dict,
            ready: Prepared, terms: Terms) -> Decimal:
    """What the change will cost this account now, or a Refusal."""
    if kind == "tariff":
        return _tariff_plan(account, ready.tariff, parameters["when"], ready,
                            terms).charged_on_start
    if kind == "option":
        if account.state != "active":
            raise Refusal("not_active")
        option = ready.option
        try:
            options.check(session, account, option.code, terms.now)
        except DomainError as error:
            text = str(error)
            code = ("turbo_running" if "turbo" in text else "no_money" if "money" in text
                    else "month_limit" if "a month" in text else "refused")
            raise Refusal(code, text) from None
        return option.price
    if kind == "package_on":
        package = ready.package
        if account.state != "active":
            raise Refusal("not_active")
        if account.id in ready.packages_on:
            raise Refusal("already_on")
        if package.archived:
            raise Refusal("not_offered")
        if terms.by_subscriber and not package.self_service:
            raise Refusal("operator_only")
        terms_now = packages.switch_terms(session, account.id, [package], terms.today)
        cost = terms_now[package.id].charge_now
        if terms.by_subscriber and cost and account.balance - cost < -account.credit_limit:
            raise Refusal("no_money")
        return cost
    if kind == "package_off":
        if account.id not in ready.packages_on:
            raise Refusal("already_off")
        if terms.by_subscriber and not ready.package.self_service:
            raise Refusal("operator_only")
        return ZERO
    if kind == "freeze":
        if account.state != "active":
            raise Refusal("not_active")
        days = (dt.date.fromisoformat(parameters["until"]) - terms.today).days
        rules = terms.freeze_rules
        if not rules.min_days <= days <= rules.max_days:
            raise Refusal("freeze_length", f"a freeze lasts from {rules.min_days} to "
                                           f"{rules.max_days} days")
        return ZERO
    if kind == "unfreeze":
        if account.state != "frozen":
            raise Refusal("not_frozen")
        return ZERO
    if kind == "tariff_undo":
        if _order_pending(account, ready, terms):
            return ZERO     # the order has not started: cancelled, nothing charged
        if account.tariff_id != ready.tariff.id or ready.back_to is None:
            raise Refusal("changed_since")
        return _tariff_plan(account, ready.back_to, "now", ready, terms).charged_on_start
    if kind == "cancel":
        from rating import scheduled_changes
        scheduled_changes.cancellable(session, parameters["scheduled"], terms.today)
        return ZERO
    raise DomainError(f"unknown change {kind!r}")


def _order_pending(account: Account, ready: Prepared, terms: Terms) -> bool:
    return (account.next_tariff_id == ready.tariff.id
            and account.next_tariff_from is not None
            and account.next_tariff_from > terms.today)


# -- making a change ----------------------------------------------------------------

def perform(session: Session, account: Account, kind: str, parameters: dict,
            ready: Prepared, terms: Terms, *, request_id: str) -> Done:
    """Make the change (checking it again); ``request_id`` keys what can be
    retried (an option's debit), so a repeat buys once."""
    cost = verdict(session, account, kind, parameters, ready, terms)
    if kind == "tariff":
        shown = _tariff_plan(account, ready.tariff, parameters["when"], ready, terms)
        before = {"tariff": account.tariff.name if account.tariff else None}
        line = tariff_change.order(session, account, ready.tariff, shown, terms.now,
                                   actor=terms.actor)
        return Done(cost, before, {"oplog": line, "starts_on": shown.starts_on.isoformat()})
    if kind == "option":
        bought = options.buy(session, account, ready.option.code, terms.now,
                             request_id=request_id, actor=terms.actor)
        return Done(cost, {}, {"ledger": bought.entry_id, "option": bought.option_id})
    if kind in ("package_on", "package_off"):
        switched = packages.switch(session, account, ready.package, kind == "package_on",
                                   today=terms.today, actor=terms.actor,
                                   by_subscriber=terms.by_subscriber)
        if not switched.changed:
            raise Refusal("already_on" if kind == "package_on" else "already_off")
        return Done(switched.charged, {}, {})
    if kind == "freeze":
        rules = terms.freeze_rules
        freeze.freeze(session, account, dt.date.fromisoformat(parameters["until"]), terms.today,
                      min_days=rules.min_days, max_days=rules.max_days, actor=terms.actor)
        return Done(cost, {}, {})
    if kind == "unfreeze":
        before = {"until": account.frozen_until.isoformat() if account.frozen_until else None}
        freeze.unfreeze(session, account, actor=terms.actor)
        return Done(cost, before, {})
    if kind == "tariff_undo":
        if _order_pending(account, ready, terms):
            tariff_change.cancel(session, account, terms.today, actor=terms.actor)
            return Done(cost, {}, {"cancelled": True})
        shown = _tariff_plan(account, ready.back_to, "now", ready, terms)
        line = tariff_change.order(session, account, ready.back_to, shown, terms.now,
                                   actor=terms.actor)
        return Done(cost, {}, {"oplog": line, "starts_on": shown.starts_on.isoformat()})
    if kind == "cancel":
        from rating import scheduled_changes
        scheduled_changes.cancel(session, parameters["scheduled"], today=terms.today,
                                 actor=terms.actor)
        return Done(cost, {}, {"cancelled": parameters["scheduled"]})
    raise DomainError(f"unknown change {kind!r}")


def reversal(kind: str, parameters: dict, before: dict | None) -> tuple[str, dict] | None:
    """The change that undoes one made (None: it cannot be undone; an
    option bought is spent money, a refund is the operator's call)."""
    before = before or {}
    if kind == "tariff":
        return "tariff_undo", {"tariff": parameters["tariff"], "back_to": before.get("tariff")}
    if kind == "package_on":
        return "package_off", dict(parameters)
    if kind == "package_off":
        return "package_on", dict(parameters)
    if kind == "freeze":
        return "unfreeze", {}
    if kind == "unfreeze" and before.get("until"):
        return "freeze", {"until": before["until"]}
    return None


def describe(kind: str, parameters: dict) -> str:
    """The change in a few words, for lists and logs."""
    if kind == "tariff":
        return f"tariff {parameters['tariff']} ({parameters.get('when', 'now')})"
    if kind == "tariff_undo":
        return f"undo tariff {parameters['tariff']}"
    if kind == "option":
        return f"option {parameters['option']}"
    if kind in ("package_on", "package_off"):
        return f"package {parameters['package']} {kind.rsplit('_', 1)[1]}"
    if kind == "freeze":
        return f"freeze until {parameters['until']}"
    if kind == "cancel":
        return f"cancel scheduled change {parameters['scheduled']}"
    return kind
