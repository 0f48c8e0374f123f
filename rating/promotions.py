"""Discounts, promo codes and bonus points.

Rules:
- a **discount** is for one account, percent or fixed, on its tariff fee or
  on package fees (one package or all), from ``valid_from`` to
  ``valid_until`` (exclusive; none: no end). The daily fee run posts it as
  its own ledger entry, kind ``discount`` (a credit), key
  ``discount:DISCOUNT:FEE_ENTRY``, beside the fee it reduces: a fee that
  pays for a period (a day, a month) whose run falls in the discount's
  dates gets it once. A fixed discount is per fee charged; no discount
  (nor the sum of several) exceeds the fee.
- a **promo code** gives a fixed credit (ledger kind ``bonus``, key
  ``promo:CODE:ACCOUNT``) or a percent discount for ``days`` from the day
  it is redeemed. Each account redeems a code once (a unique pair); the
  uses limit is enforced by the store (``UPDATE ... SET used = used + 1
  WHERE used < max_uses``, re-checked on the locked row by PostgreSQL); a
  code past its last day is refused with a sentence.
- **bonus points** live in ``bonus_points``, a ledger of their own (one
  immutable row per change, a unique key each). Payments earn
  ``earn_percent`` of their amount (``abonent bonus set --percent``),
  credited by the daily fee run for the payments since the rule was set
  (key ``earn:ENTRY``). The fee run then spends them: the available points
  pay the day's fees first (after discounts), one point for 1.00, as a
  ``bonus`` credit keyed ``bonus:FEE_ENTRY`` with the matching ``spend``
  row, so a subscriber need do nothing and a repeated run spends once.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import String, cast, func, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from config.db import utcnow
from rating import ledger, oplog, packages, validate
from rating.choices import PACKAGE_TARGETS
from rating.models import (Account, BonusPoint, BonusRule, Discount, LedgerEntry, Package,
                           PromoCode, PromoRedemption)
from rating.validate import DomainError, NotFound

CENT = Decimal("0.01")
MAX_USES = 1_000_000
MAX_DAYS = 3660
# Payments older than this before a run are not looked at again for points:
# the run is daily (and catches up missed days in order).
EARN_WINDOW = dt.timedelta(days=7)
_CODE = re.compile(r"^[A-Za-z0-9_-]{3,32}$")


def _percent(value) -> Decimal:
    return validate.amount(value, "percent", positive=True, maximum=Decimal(100))


def _rule(percent, amount) -> tuple[Decimal | None, Decimal | None]:
    if (percent is None) == (amount is None):
        raise DomainError("give either a percent or an amount")
    if percent is not None:
        return _percent(percent), None
    return None, validate.amount(amount, "amount", positive=True)


def _target(value: str) -> str:
    if value not in PACKAGE_TARGETS:
        raise DomainError(f"a discount is on one of {', '.join(PACKAGE_TARGETS)}")
    return value


def _share(fee: Decimal, percent: Decimal | None, amount: Decimal | None) -> Decimal:
    if percent is not None:
        return (fee * percent / 100).quantize(CENT, rounding=ROUND_HALF_UP)
    return min(amount, fee)


# -- discounts -----------------------------------------------------------------------

def add_discount(session: Session, account: Account, *, target: str, percent=None,
                 amount=None, package: Package | None = None, valid_from: dt.date,
                 valid_until: dt.date | None = None, reason: str | None = None,
                 actor: str = "admin", promo_id: int | None = None) -> Discount:
    percent, amount = _rule(percent, amount)
    target = _target(target)
    if package is not None and target != "package":
        raise DomainError("a package is named only for a discount on a package")
    if valid_until is not None and valid_until <= valid_from:
        raise DomainError("the discount must end after it starts")
    reason = validate.text(reason, "reason", maximum=200, required=False)
    discount = Discount(account_id=account.id, target=target,
                        package_id=package.id if package else None, percent=percent,
                        amount=amount, valid_from=valid_from, valid_until=valid_until,
                        reason=reason, promo_id=promo_id, created_by=actor)
    session.add(discount)
    session.flush()
    oplog.record(session, account_id=account.id, actor=actor, action="discount.add",
                 discount=discount.id, target=target, percent=percent, amount=amount,
                 package=package.name if package else None, valid_from=valid_from,
                 valid_until=valid_until)
    return discount


def remove_discount(session: Session, discount_id: int, *, actor: str = "admin") -> bool:
    """Stop a discount from the next fee on; what it gave stays. False if it
    was removed already."""
    discount = session.get(Discount, discount_id)
    if discount is None:
        raise NotFound(f"discount {discount_id} does not exist")
    if discount.revoked:
        return False
    discount.revoked = True
    oplog.record(session, account_id=discount.account_id, actor=actor,
                 action="discount.remove", discount=discount_id)
    return True


def discounts_for(session: Session, account_id: int | None = None, *, limit: int = 1000,
                  offset: int = 0) -> list[Discount]:
    query = select(Discount).order_by(Discount.id).limit(limit).offset(offset)
    if account_id is not None:
        query = query.where(Discount.account_id == account_id)
    return list(session.scalars(query))


def describe(discount: Discount) -> str:
    size = f"{discount.percent.normalize():f}%" if discount.percent is not None \
        else f"{discount.amount}"
    return f"discount {size} (No. {discount.id})"


def _fee_args(entry: LedgerEntry) -> dict:
    """What a discount or bonus says of the fee it pays: its period (the
    key's tail) and the package, if it is a package's fee."""
    package = (entry.memo_args or {}).get("name") if entry.memo_code == "package" else None
    return {"period": entry.idempotency_key.rsplit(":", 1)[1], "package": package}


def apply_discounts(session: Session, day: dt.date, *, author: str) -> dict[int, Decimal]:
    """Post the discounts due on the fees of ``day``'s periods; returns
    {fee entry id: discount on it}, for the bonus points after."""
    active = list(session.scalars(
        select(Discount).where(Discount.revoked.is_(False), Discount.valid_from <= day,
                               (Discount.valid_until.is_(None)) | (Discount.valid_until > day))
        .order_by(Discount.id)))
    if not active:
        return {}
    entries = packages.fee_entries(session, [d.account_id for d in active], day)
    by_account = defaultdict(list)
    for entry, target, package_id in entries:
        by_account[entry.account_id].append((entry, target, package_id))
    given: dict[int, Decimal] = defaultdict(Decimal)
    for discount in active:
        for entry, target, package_id in by_account.get(discount.account_id, []):
            if target != discount.target or (discount.package_id is not None
                                             and discount.package_id != package_id):
                continue
            left = -entry.amount - given[entry.id]
            value = min(_share(-entry.amount, discount.percent, discount.amount), left)
            key = f"discount:{discount.id}:{entry.id}"
            before = session.scalar(select(LedgerEntry.amount)
                                    .where(LedgerEntry.idempotency_key == key))
            if before is not None:  # a repeated run: given then, counted now
                given[entry.id] += before
                continue
            if value <= 0:
                continue
            fee_text = entry.memo or f"fee for {entry.idempotency_key.rsplit(':', 1)[1]}"
            ledger.post(session, account_id=entry.account_id, amount=value, kind="discount",
                        key=key, author=author, memo=f"{describe(discount)} on {fee_text}",
                        memo_code="discount",
                        memo_args={"percent": discount.percent, "amount": discount.amount,
                                   **_fee_args(entry)})
            given[entry.id] += value
    return dict(given)


# -- promo codes ---------------------------------------------------------------------

def _code(value: str) -> str:
    if not isinstance(value, str) or not _CODE.match(value.strip()):
        raise DomainError("a promo code is 3-32 letters, digits, dashes or underscores")
    return value.strip().upper()


def find_promo(session: Session, code: str) -> PromoCode:
    promo = session.scalar(select(PromoCode).where(PromoCode.code == _code(code)))
    if promo is None:
        raise NotFound(f"promo code {_code(code)} does not exist")
    return promo


def add_promo(session: Session, code: str, *, percent=None, amount=None, uses: int,
              expires_on: dt.date | None = None, target: str = "tariff", days: int = 30,
              today: dt.date, actor: str = "admin") -> PromoCode:
    code = _code(code)
    percent, amount = _rule(percent, amount)
    target = _target(target)
    if not 1 <= uses <= MAX_USES:
        raise DomainError(f"uses must be 1 to {MAX_USES}")
    if not 1 <= days <= MAX_DAYS:
        raise DomainError(f"days must be 1 to {MAX_DAYS}")
    if expires_on is not None and expires_on < today:
        raise DomainError(f"the expiry date {expires_on} is in the past")
    if session.scalar(select(PromoCode.id).where(PromoCode.code == code)) is not None:
        raise DomainError(f"promo code {code} already exists")
    promo = PromoCode(code=code, percent=percent, amount=amount, target=target, days=days,
                      max_uses=uses, used=0, expires_on=expires_on, created_by=actor)
    session.add(promo)
    session.flush()
    oplog.record(session, account_id=None, actor=actor, action="promo.add", code=code,
                 percent=percent, amount=amount, uses=uses, expires_on=expires_on)
    return promo


def promos(session: Session, *, limit: int = 1000, offset: int = 0) -> list[PromoCode]:
    return list(session.scalars(select(PromoCode).order_by(PromoCode.code)
                                .limit(limit).offset(offset)))


def redeem(session: Session, account: Account, code: str, *, today: dt.date,
           actor: str) -> str:
    """Redeem a promo code for an account; returns what it gave, in words.
    Refusals (one sentence): unknown, expired, used up, redeemed before."""
    promo = find_promo(session, code)
    if promo.expires_on is not None and today > promo.expires_on:
        raise DomainError(f"promo code {promo.code} expired on {promo.expires_on}")
    if account.state == "closed":
        raise DomainError(f"account {account.number} is closed")
    already = select(PromoRedemption.id).where(PromoRedemption.promo_id == promo.id,
                                               PromoRedemption.account_id == account.id)
    if session.scalar(already) is not None:
        raise DomainError(f"promo code {promo.code} was already redeemed for this account")
    try:
        with session.begin_nested():
            session.add(PromoRedemption(promo_id=promo.id, account_id=account.id,
                                        actor=actor))
            session.flush()
    except IntegrityError:
        raise DomainError(f"promo code {promo.code} was already redeemed "
                          f"for this account") from None
    # The bound is the store's: two redemptions of the last use cannot both pass.
    taken = session.execute(
        update(PromoCode).where(PromoCode.id == promo.id, PromoCode.used < PromoCode.max_uses)
        .values(used=PromoCode.used + 1).returning(PromoCode.id)
        .execution_options(synchronize_session=False)).scalar_one_or_none()
    if taken is None:
        raise DomainError(f"promo code {promo.code} has been used up")
    session.expire(promo, ["used"])
    if promo.amount is not None:
        ledger.post(session, account_id=account.id, amount=promo.amount, kind="bonus",
                    key=f"promo:{promo.id}:{account.id}", author=actor,
                    memo=f"promo code {promo.code}", memo_code="promo",
                    memo_args={"code": promo.code})
        from rating import fees
        fees.apply_policies(session, account.id, account.id + 1, reason="promo")
        given = f"{promo.amount} credited"
    else:
        until = today + dt.timedelta(days=promo.days)
        add_discount(session, account, target=promo.target, percent=promo.percent,
                     valid_from=today, valid_until=until, reason=f"promo code {promo.code}",
                     actor=actor, promo_id=promo.id)
        given = (f"a {promo.percent.normalize():f}% discount on the {promo.target} fee "
                 f"until {until}")
    oplog.record(session, account_id=account.id, actor=actor, action="promo.redeem",
                 code=promo.code, given=given)
    return given


# -- bonus points --------------------------------------------------------------------

def bonus_rule(session: Session) -> BonusRule | None:
    return session.get(BonusRule, 1)


def set_bonus_percent(session: Session, percent, *, actor: str = "admin",
                      now: dt.datetime | None = None) -> BonusRule:
    """Points per 100 of a payment from now on; 0 stops earning. Payments
    before now earn at the rule they were made under (credited first)."""
    value = validate.amount(percent, "percent", maximum=Decimal(100))
    now = now or utcnow()
    rule = bonus_rule(session)
    if rule is not None:
        earn(session, until=now, author=actor)
    if rule is None:
        rule = BonusRule(id=1, earn_percent=value, since=now, updated_by=actor)
        session.add(rule)
    else:
        rule.earn_percent, rule.since, rule.updated_by = value, now, actor
    session.flush()
    oplog.record(session, account_id=None, actor=actor, action="bonus.set", percent=value)
    return rule


def _insert_points(session: Session, rows: list[dict]) -> None:
    """Add point rows; a key already there is skipped (a repeated run)."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(insert(BonusPoint).on_conflict_do_nothing(
        index_elements=["idempotency_key"]), rows)


def earn(session: Session, *, until: dt.datetime, author: str) -> set[int]:
    """Points for the payments since the rule's start (within the window)
    that have none yet; returns the accounts that earned."""
    rule = bonus_rule(session)
    if rule is None or rule.earn_percent <= 0:
        return set()
    start = max(rule.since, until - EARN_WINDOW)
    earned = select(BonusPoint.id).where(
        BonusPoint.idempotency_key == literal("earn:") + cast(LedgerEntry.id, String)).exists()
    payments = session.execute(
        select(LedgerEntry.id, LedgerEntry.account_id, LedgerEntry.amount)
        .where(LedgerEntry.kind == "payment", LedgerEntry.amount > 0,
               LedgerEntry.created_at >= start, LedgerEntry.created_at < until, ~earned)
        .order_by(LedgerEntry.id)).all()
    rows = []
    for entry_id, account_id, amount in payments:
        points = (amount * rule.earn_percent / 100).quantize(CENT, rounding=ROUND_HALF_UP)
        if points > 0:
            rows.append(dict(account_id=account_id, points=points, kind="earn",
                             idempotency_key=f"earn:{entry_id}",
                             memo=f"{rule.earn_percent.normalize():f}% of payment {entry_id}",
                             created_at=utcnow()))
    _insert_points(session, rows)
    return {row["account_id"] for row in rows}


def points(session: Session, account_id: int) -> Decimal:
    return session.scalar(select(func.coalesce(func.sum(BonusPoint.points), 0))
                          .where(BonusPoint.account_id == account_id)) or Decimal("0.00")


def point_history(session: Session, account_id: int, *, limit: int = 1000,
                  offset: int = 0) -> list[BonusPoint]:
    return list(session.scalars(select(BonusPoint).where(BonusPoint.account_id == account_id)
                                .order_by(BonusPoint.id.desc()).limit(limit).offset(offset)))


def spend(session: Session, day: dt.date, discounted: dict[int, Decimal], *,
          author: str) -> set[int]:
    """The available points pay the fees of ``day``'s periods (what the
    discounts left of them); returns the accounts that spent."""
    holders = dict(session.execute(
        select(BonusPoint.account_id, func.sum(BonusPoint.points))
        .group_by(BonusPoint.account_id).having(func.sum(BonusPoint.points) > 0)).all())
    if not holders:
        return set()
    spent: set[int] = set()
    for entry, _target, _package in packages.fee_entries(session, holders, day):
        key = f"bonus:{entry.id}"
        if session.scalar(select(BonusPoint.id).where(BonusPoint.idempotency_key ==
                                                      f"spend:{entry.id}")) is not None:
            continue
        available = holders[entry.account_id]
        value = min(available, -entry.amount - discounted.get(entry.id, Decimal(0)))
        if value <= 0:
            continue
        ledger.post(session, account_id=entry.account_id, amount=value, kind="bonus", key=key,
                    author=author, memo=f"{value} bonus points on "
                    f"{entry.memo or 'fee for ' + entry.idempotency_key.rsplit(':', 1)[1]}",
                    memo_code="bonus_spent", memo_args={"points": value, **_fee_args(entry)})
        _insert_points(session, [dict(account_id=entry.account_id, points=-value, kind="spend",
                                      idempotency_key=f"spend:{entry.id}",
                                      memo=f"paid fee entry {entry.id}", created_at=utcnow())])
        holders[entry.account_id] = available - value
        spent.add(entry.account_id)
    return spent


def run_day(session: Session, day: dt.date, *, author: str) -> set[int]:
    """The fee run's part: discounts, then points earned, then points spent.
    Returns the accounts whose balance changed now."""
    touched: set[int] = set()
    discounted = apply_discounts(session, day, author=author)
    if discounted:
        touched |= {e.account_id for e in session.scalars(
            select(LedgerEntry).where(LedgerEntry.id.in_(list(discounted))))}
    earn(session, until=utcnow(), author=author)
    touched |= spend(session, day, discounted, author=author)
    return touched
