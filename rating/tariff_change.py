"""Tariff change: a preview of what it costs and when it starts, then the
change now or from the next period, under the tariff's frequency limit."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from rating import ledger, notify, oplog
from rating.accounts import DomainError, find_tariff
from rating.models import Account, LedgerEntry, OperationLog, ProfileChange, Tariff
from rating.tariffs import daily_fee, days_in_month, fee_key, upgrade_difference, upgrade_key


@dataclass(frozen=True)
class Preview:
    tariff: str
    starts_on: dt.date
    when: str  # now / next_period
    fee_per_day: Decimal | None
    fee_per_month: Decimal
    charged_on_start: Decimal
    rate_down_kbps: int
    rate_up_kbps: int


def _first_of_next_month(day: dt.date) -> dt.date:
    return day.replace(day=1) + dt.timedelta(days=days_in_month(day))


def allowed_from(account: Account, tariff: Tariff) -> dt.datetime | None:
    """When the frequency limit lets this account switch again (None: now)."""
    if not tariff.switch_min_days or account.tariff_changed_at is None:
        return None
    return account.tariff_changed_at + dt.timedelta(days=tariff.switch_min_days)


def check_limit(account: Account, tariff: Tariff, now: dt.datetime) -> None:
    """Raise DomainError while the frequency limit forbids switching to ``tariff``."""
    limit = allowed_from(account, tariff)
    if limit is not None and now < limit:
        raise DomainError(f"the tariff can be changed again from {limit:%Y-%m-%d}")


def offers(session: Session, account: Account) -> list[Tariff]:
    """The tariffs this account may switch to: offered ones other than its own."""
    query = select(Tariff).where(Tariff.archived.is_(False))
    if account.tariff_id is not None:
        query = query.where(Tariff.id != account.tariff_id)
    return list(session.scalars(query.order_by(Tariff.fee, Tariff.name)))


def offer(session: Session, account: Account, tariff_id) -> Tariff:
    """The offered tariff with this id (as a form sends it); anything else,
    an unknown, archived or the current tariff, is a DomainError."""
    try:
        number = int(tariff_id)
    except (TypeError, ValueError):
        number = 0
    tariff = session.get(Tariff, number) if 0 < number < 2 ** 31 else None
    if tariff is None or tariff.archived or tariff.id == account.tariff_id:
        raise DomainError("this tariff is not offered to the account")
    return tariff


def switch_again_from(session: Session, now: dt.datetime) -> dt.datetime | None:
    """After a change made at ``now``: from when the frequency limit lets the
    account switch to any offered tariff again (None: no limit)."""
    longest = session.scalar(select(func.max(Tariff.switch_min_days))
                             .where(Tariff.archived.is_(False)))
    return now + dt.timedelta(days=longest) if longest else None


def _check_offer(account: Account, tariff: Tariff, when: str) -> None:
    if tariff.archived:
        raise DomainError(f"tariff {tariff.name!r} is not offered any more")
    if account.tariff_id == tariff.id:
        raise DomainError("this is the current tariff")
    if when not in ("now", "next_period"):
        raise DomainError("a change starts now or from the next period")


def starts_on_for(when: str, today: dt.date) -> dt.date:
    # Today's fee is charged under the current tariff: a change "now" is
    # billed from tomorrow, so no day is charged twice.
    return today + dt.timedelta(days=1) if when == "now" else _first_of_next_month(today)


def plan(account: Account, tariff: Tariff, when: str, today: dt.date, *,
         month_paid: bool, starts_on: dt.date | None = None) -> Preview:
    """The preview of one change over values already read: ``month_paid``
    says whether the month of the start day is charged already (bulk
    changes read it for a whole chunk in one query, ``month_fee_paid``).
    ``starts_on`` overrides the start day (a change scheduled for a date
    starts on that date)."""
    _check_offer(account, tariff, when)
    starts_on = starts_on or starts_on_for(when, today)
    per_day = daily_fee(tariff.fee, starts_on) if tariff.fee_period == "daily" else None
    if per_day is not None:
        on_start = per_day
    elif month_paid:
        # A monthly fee is keyed per account and month: a month already
        # paid is not charged again. A dearer tariff from today charges the
        # difference for the days left; a cheaper one waits for next month.
        on_start = _upgrade_charge(account, tariff, starts_on)
    else:
        on_start = tariff.fee
    return Preview(tariff=tariff.name, starts_on=starts_on, when=when, fee_per_day=per_day,
                   fee_per_month=tariff.fee, charged_on_start=on_start,
                   rate_down_kbps=tariff.rate_down_kbps, rate_up_kbps=tariff.rate_up_kbps)


def preview(session: Session, account: Account, tariff_name: str, when: str,
            today: dt.date, *, starts_on: dt.date | None = None) -> Preview:
    tariff = find_tariff(session, tariff_name)
    _check_offer(account, tariff, when)
    start = starts_on or starts_on_for(when, today)
    paid = tariff.fee_period != "daily" and _month_fee_charged(session, account, start)
    return plan(account, tariff, when, today, month_paid=paid, starts_on=start)


def month_fee_paid(session: Session, account_ids, day: dt.date) -> set[int]:
    """Of these accounts, those whose monthly fee for ``day``'s month is
    charged: one query per thousand accounts."""
    keys = {fee_key(account_id, "monthly", day): account_id for account_id in account_ids}
    names = list(keys)
    paid: set[int] = set()
    for start in range(0, len(names), 1000):
        paid.update(keys[k] for k in session.scalars(select(LedgerEntry.idempotency_key).where(
            LedgerEntry.idempotency_key.in_(names[start:start + 1000]))))
    return paid


def _upgrade_charge(account: Account, tariff: Tariff, starts_on: dt.date) -> Decimal:
    current = account.tariff
    if current is None or current.fee_period != "monthly" or tariff.fee_period != "monthly":
        return Decimal("0.00")
    return upgrade_difference(current.fee, tariff.fee, starts_on)


def _month_fee_charged(session: Session, account: Account, day: dt.date) -> bool:
    key = fee_key(account.id, "monthly", day)
    return session.scalar(select(LedgerEntry.id).where(LedgerEntry.idempotency_key == key)) \
        is not None


def change(session: Session, account: Account, tariff_name: str, when: str,
           now: dt.datetime, today: dt.date, *, actor: str = "subscriber") -> Preview:
    shown = preview(session, account, tariff_name, when, today)
    tariff = find_tariff(session, tariff_name)
    check_limit(account, tariff, now)
    order(session, account, tariff, shown, now, actor=actor)
    return shown


def order(session: Session, account: Account, tariff: Tariff, shown: Preview,
          now: dt.datetime, *, actor: str) -> OperationLog:
    """Place the order ``shown`` previews (the checks are the caller's:
    ``plan`` and ``check_limit``); returns its log line."""
    previous = account.tariff_changed_at
    account.next_tariff_id = tariff.id
    account.next_tariff_from = shown.starts_on
    account.tariff_changed_at = now
    # The moment the limit counted from before, so a cancel can give it back.
    return oplog.record(session, account_id=account.id, actor=actor, action="tariff.change",
                        tariff=tariff.name, starts_on=shown.starts_on,
                        previous_changed_at=previous.isoformat() if previous else None)


@dataclass(frozen=True)
class Pending:
    tariff: str
    starts_on: dt.date


def pending(session: Session, account: Account) -> Pending | None:
    """The ordered change that has not started yet, if any."""
    if account.next_tariff_id is None:
        return None
    tariff = session.get(Tariff, account.next_tariff_id)
    return Pending(tariff=tariff.name, starts_on=account.next_tariff_from)


def cancel(session: Session, account: Account, today: dt.date, *,
           actor: str = "subscriber") -> Pending:
    """Withdraw an ordered change before its start day.

    The change never happened, so the frequency limit counts again from the
    change before it (kept in the order's log line).
    """
    plan = pending(session, account)
    if plan is None:
        raise DomainError("there is no tariff change to cancel")
    if plan.starts_on <= today:
        raise DomainError("the tariff change has already started")
    order = session.scalar(select(OperationLog).where(
        OperationLog.account_id == account.id, OperationLog.action == "tariff.change")
        .order_by(OperationLog.id.desc()).limit(1))
    details = order.details if order is not None else {}
    if "previous_changed_at" in details:
        previous = details["previous_changed_at"]
        account.tariff_changed_at = dt.datetime.fromisoformat(previous) if previous else None
    account.next_tariff_id = None
    account.next_tariff_from = None
    oplog.record(session, account_id=account.id, actor=actor, action="tariff.cancel",
                 tariff=plan.tariff, starts_on=plan.starts_on)
    return plan


def apply_due(session: Session, today: dt.date) -> int:
    """Switch accounts whose ordered change starts today or earlier (run
    before the fee run, so the day is charged at the new tariff)."""
    due = session.scalars(select(Account).where(Account.next_tariff_id.is_not(None),
                                                Account.next_tariff_from <= today)).all()
    # Read once for all: the tariffs ordered, the months already paid.
    tariffs = {t.id: t for t in session.scalars(select(Tariff).where(
        Tariff.id.in_({a.next_tariff_id for a in due})))}
    paid: set[int] = set()
    for starts_on in {a.next_tariff_from for a in due}:
        paid |= month_fee_paid(session, [a.id for a in due if a.next_tariff_from == starts_on],
                               starts_on)
    for account in due:
        new = tariffs[account.next_tariff_id]
        starts_on = account.next_tariff_from
        if account.id in paid:
            difference = _upgrade_charge(account, new, starts_on)
            if difference > 0:
                ledger.post(session, account_id=account.id, amount=-difference, kind="fee",
                            key=upgrade_key(account.id, starts_on, new.id), author="scheduler",
                            memo=f"tariff {new.name} from {starts_on.isoformat()}: the "
                                 f"difference for the rest of {starts_on:%Y-%m}",
                            memo_code="tariff_difference",
                            memo_args={"tariff": new.name, "starts_on": starts_on})
        account.tariff_id = account.next_tariff_id
        account.next_tariff_id = None
        account.next_tariff_from = None
        account.version += 1
        # Same profile, new speeds: the live sessions must hear of it.
        session.add(ProfileChange(account_id=account.id, profile=account.profile,
                                  reason="tariff"))
        oplog.record(session, account_id=account.id, actor="scheduler",
                     action="tariff.applied", tariff_id=account.tariff_id)
        notify.tariff_changed(session, account, new.name, starts_on)
    return len(due)
