"""Service packages: TV channel packages and other extras on top of a tariff.

Rules:
- a package's ``fee`` is the price of its period: of a month
  (``fee_period = "monthly"``, charged whole once a month) or of a day
  (``"daily"``, charged every day);
- the fee of a period is posted to the ledger under the key
  ``pkg:ACCOUNT:PACKAGE:YYYY-MM`` (or ``:YYYY-MM-DD``), kind ``fee``, with
  the memo "package NAME for PERIOD": the daily fee run and a switch-on in
  the middle of a period use the same key, so a period is charged once
  however often the run is repeated or the package switched off and on;
- switching a package on charges the current period at once (the
  subscriber in the cabinet only if the balance allows it: a guarded
  debit); switching off refunds nothing and stops the next periods;
- the fee run charges packages of active accounts that have service (not
  frozen, closed or suspended for debt), like the tariff fee;
- an archived package is not offered any more; accounts that have it keep
  it until it is switched off.

Every function works in the caller's transaction and raises
``DomainError`` (one sentence) on bad input.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import (JSON, String, bindparam, case, cast, func, literal, null, select,
                        update)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from config.db import Money, utcnow
from rating import ledger, oplog, spending, validate
from rating.choices import FEE_PERIODS
from rating.models import Account, AccountPackage, LedgerEntry, Package
from rating.validate import DomainError, NotFound

# The profiles under which an account has no service and pays no package fee.
UNSERVED_PROFILES = ("suspended",)


@dataclass(frozen=True)
class PackageView:
    id: int
    name: str
    fee: Decimal
    fee_period: str
    self_service: bool
    description: str | None
    archived: bool
    active_accounts: int = 0


@dataclass(frozen=True)
class AccountPackageView:
    id: int
    name: str
    fee: Decimal
    fee_period: str
    self_service: bool
    description: str | None
    archived: bool
    active: bool


def period_label(fee_period: str, day: dt.date) -> str:
    return day.isoformat() if fee_period == "daily" else f"{day:%Y-%m}"


def package_key(account_id: int, package_id: int, fee_period: str, day: dt.date) -> str:
    """The idempotency key of one period's package fee."""
    return f"pkg:{account_id}:{package_id}:{period_label(fee_period, day)}"


def package_memo(name: str, fee_period: str, day: dt.date) -> str:
    return f"package {name} for {period_label(fee_period, day)}"


def _period(value: str) -> str:
    if value not in FEE_PERIODS:
        raise DomainError(f"fee period must be one of {', '.join(FEE_PERIODS)}")
    return value


def _fee(value) -> Decimal:
    return validate.amount(value, "package fee")


def find(session: Session, name: str) -> Package:
    package = session.scalar(select(Package).where(Package.name == name))
    if package is None:
        raise NotFound(f"package {name!r} does not exist")
    return package


def create(session: Session, *, name: str, fee, fee_period: str = "monthly",
           self_service: bool = True, description: str | None = None,
           actor: str = "admin") -> Package:
    name = validate.name(name, "package name", 100)
    fee = _fee(fee)
    fee_period = _period(fee_period)
    description = validate.text(description, "description", maximum=1000, required=False)
    if session.scalar(select(Package.id).where(Package.name == name)) is not None:
        raise DomainError(f"package {name!r} already exists")
    package = Package(name=name, fee=fee, fee_period=fee_period, self_service=self_service,
                      description=description)
    session.add(package)
    session.flush()
    oplog.record(session, account_id=None, actor=actor, action="package.add", name=name,
                 fee=fee, fee_period=fee_period, self_service=self_service)
    return package


def edit(session: Session, name: str, *, new_name: str | None = None, fee=None,
         fee_period: str | None = None, self_service: bool | None = None,
         description: str | None = None, actor: str = "admin") -> tuple[Package, dict]:
    """Change what is given; returns the package and the changes made. A new
    fee applies to the periods not yet charged."""
    package = find(session, name)
    changes: dict = {}
    if new_name is not None:
        new_name = validate.name(new_name, "package name", 100)
        if new_name != package.name:
            if session.scalar(select(Package.id).where(Package.name == new_name)) is not None:
                raise DomainError(f"package {new_name!r} already exists")
            changes["name"] = new_name
    if fee is not None:
        fee = _fee(fee)
        if fee != package.fee:
            changes["fee"] = fee
    if fee_period is not None and _period(fee_period) != package.fee_period:
        changes["fee_period"] = fee_period
    if self_service is not None and self_service != package.self_service:
        changes["self_service"] = self_service
    if description is not None:
        description = validate.text(description, "description", maximum=1000, required=False)
        if description != package.description:
            changes["description"] = description
    for field, value in changes.items():
        setattr(package, field, value)
    if changes:
        session.flush()
        oplog.record(session, account_id=None, actor=actor, action="package.edit",
                     package=name, **changes)
    return package, changes


def archive(session: Session, name: str, *, actor: str = "admin") -> bool:
    """No longer offered; False if it was archived already."""
    package = find(session, name)
    if package.archived:
        return False
    package.archived = True
    oplog.record(session, account_id=None, actor=actor, action="package.archive", package=name)
    return True


def listing(session: Session, *, include_archived: bool = False, limit: int = 1000,
            offset: int = 0) -> list[PackageView]:
    active = (select(AccountPackage.package_id, func.count().label("n"))
              .where(AccountPackage.active.is_(True))
              .group_by(AccountPackage.package_id).subquery())
    query = (select(Package, func.coalesce(active.c.n, 0))
             .outerjoin(active, active.c.package_id == Package.id)
             .order_by(Package.name).limit(limit).offset(offset))
    if not include_archived:
        query = query.where(Package.archived.is_(False))
    return [PackageView(p.id, p.name, p.fee, p.fee_period, p.self_service, p.description,
                        p.archived, n) for p, n in session.execute(query)]


def for_account(session: Session, account_id: int) -> list[AccountPackageView]:
    """What the account may have: the packages on sale and the ones it has
    (archived ones included while it has them), by name."""
    mine = {row.package_id: row.active for row in session.scalars(
        select(AccountPackage).where(AccountPackage.account_id == account_id))}
    packages = session.scalars(select(Package).order_by(Package.name)).unique()
    return [AccountPackageView(p.id, p.name, p.fee, p.fee_period, p.self_service,
                               p.description, p.archived, bool(mine.get(p.id)))
            for p in packages if not p.archived or mine.get(p.id)]


def next_period_start(fee_period: str, day: dt.date) -> dt.date:
    """The first day of the period after the one containing ``day``: when a
    package switched off on ``day`` stops (the current period is paid and
    nothing is refunded), and the day its next fee is due."""
    if fee_period == "daily":
        return day + dt.timedelta(days=1)
    return (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


@dataclass(frozen=True)
class SwitchTerms:
    """What switching a package on or off on ``today`` would do, as
    ``switch`` does it: on from today, charging the current period unless
    it is paid already; off from the next period."""

    package_id: int
    on_from: dt.date
    charge_now: Decimal  # on: what would be charged today (0.00: the period is paid)
    off_from: dt.date
    period_paid: bool


def switch_terms(session: Session, account_id: int, rows, today: dt.date) -> dict[int,
                                                                                 SwitchTerms]:
    """SwitchTerms of each package in ``rows`` (with ``id``, ``fee`` and
    ``fee_period``, e.g. ``for_account``'s), by package id; one query for
    the periods already paid."""
    rows = list(rows)
    keys = {package_key(account_id, r.id, r.fee_period, today): r.id for r in rows}
    paid = set()
    if keys:
        paid = {keys[k] for k in session.scalars(select(LedgerEntry.idempotency_key).where(
            LedgerEntry.idempotency_key.in_(list(keys))))}
    return {r.id: SwitchTerms(r.id, today,
                              Decimal("0.00") if r.id in paid or r.fee <= 0 else r.fee,
                              next_period_start(r.fee_period, today), r.id in paid)
            for r in rows}


@dataclass(frozen=True)
class Switch:
    changed: bool
    charged: Decimal  # what this switch-on posted now (0.00 when the period was paid)


def switch(session: Session, account: Account, package: Package, on: bool, *, today: dt.date,
           actor: str, by_subscriber: bool = False) -> Switch:
    """Switch a package on or off for an account; repeating it changes nothing.

    On: the current period is charged now (its key is the fee run's), a
    subscriber's only if the balance allows (guarded). ``by_subscriber``
    also refuses a package the subscriber may not switch."""
    if by_subscriber and not package.self_service:
        raise DomainError("this package is switched on and off by the operator only")
    row = session.scalar(select(AccountPackage).where(
        AccountPackage.account_id == account.id, AccountPackage.package_id == package.id)
        .with_for_update(of=AccountPackage))
    if not on:
        if row is None or not row.active:
            return Switch(False, Decimal("0.00"))
        row.active = False
        row.changed_at = utcnow()
        oplog.record(session, account_id=account.id, actor=actor, action="package.off",
                     package=package.name)
        return Switch(True, Decimal("0.00"))
    if row is not None and row.active:
        return Switch(False, Decimal("0.00"))
    if package.archived:
        raise DomainError(f"package {package.name!r} is archived and not offered any more")
    if account.state != "active":
        raise DomainError(f"account {account.number} is {account.state}; "
                          f"a package needs an active account")
    spending.check_extras(account, utcnow())
    charged = Decimal("0.00")
    if package.fee > 0:
        try:
            posting = ledger.post(
                session, account_id=account.id, amount=-package.fee, kind="fee",
                key=package_key(account.id, package.id, package.fee_period, today),
                author=actor, memo=package_memo(package.name, package.fee_period, today),
                memo_code="package",
                memo_args={"name": package.name,
                           "period": period_label(package.fee_period, today)},
                guarded=by_subscriber)
        except ledger.InsufficientFunds:
            raise DomainError(f"the balance is not enough for the package's fee of "
                              f"{package.fee}") from None
        except ledger.KeyConflict:
            # The period was charged at another fee (the fee changed since):
            # it is paid.
            posting = None
        if posting is not None and posting.created:
            charged = -posting.amount
    if row is None:
        try:
            # A savepoint: a switch-on of the same pair sent twice at once
            # meets the unique pair, and the second finds it on.
            with session.begin_nested():
                session.add(AccountPackage(account_id=account.id, package_id=package.id,
                                           active=True, changed_at=utcnow()))
        except IntegrityError:
            return Switch(False, charged)
    else:
        row.active = True
        row.changed_at = utcnow()
    session.flush()
    oplog.record(session, account_id=account.id, actor=actor, action="package.on",
                 package=package.name, charged=charged)
    if charged:
        from rating import fees
        fees.apply_policies(session, account.id, account.id + 1, reason="package")
    return Switch(True, charged)


def charge_day(session: Session, day: dt.date, *, author: str) -> dict[int, Decimal]:
    """Charge the day's package fees of every account, set-based: one
    ``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` writes the entries, the
    balances move by what it returned. Returns {account id: amount charged now}."""
    postgres = session.get_bind().dialect.name == "postgresql"
    insert = postgresql.insert if postgres else sqlite.insert
    daily = Package.fee_period == "daily"
    suffix = case((daily, literal(day.isoformat())), else_=literal(f"{day:%Y-%m}"))
    key = (literal("pkg:") + cast(AccountPackage.account_id, String) + literal(":")
           + cast(AccountPackage.package_id, String) + literal(":") + suffix)
    memo = literal("package ") + Package.name + literal(" for ") + suffix
    # The memo's arguments per package, as JSON values (a catalogue has a
    # handful of packages): the statement words them in the reader's language.
    catalogue = session.execute(select(Package.id, Package.name, Package.fee_period)
                                .where(Package.fee > 0)).all()
    if not catalogue:
        return {}
    memo_args = case(*[(Package.id == package_id,
                        literal({"name": name, "period": period_label(fee_period, day)}, JSON))
                       for package_id, name, fee_period in catalogue], else_=null())
    chosen = (select(AccountPackage.account_id, -Package.fee, literal("fee"), key,
                     literal(author), memo, literal("package"), memo_args, literal(utcnow()))
              .join(Package, Package.id == AccountPackage.package_id)
              .join(Account, Account.id == AccountPackage.account_id)
              .where(AccountPackage.active.is_(True), Package.fee > 0,
                     Account.state == "active", Account.profile.not_in(UNSERVED_PROFILES)))
    statement = (insert(LedgerEntry)
                 .from_select(["account_id", "amount", "kind", "idempotency_key", "author",
                               "memo", "memo_code", "memo_args", "created_at"], chosen)
                 .on_conflict_do_nothing(index_elements=["idempotency_key"])
                 .returning(LedgerEntry.account_id, LedgerEntry.amount))
    charged: dict[int, Decimal] = defaultdict(Decimal)
    for account_id, amount in session.execute(statement).all():
        charged[account_id] += amount
    if charged:
        accounts = Account.__table__
        session.execute(update(accounts).where(accounts.c.id == bindparam("account"))
                        .values(balance=accounts.c.balance + bindparam("delta", type_=Money())),
                        [{"account": a, "delta": d} for a, d in charged.items()])
    return dict(charged)


def fee_entries(session: Session, account_ids, day: dt.date) -> list[tuple[LedgerEntry, str,
                                                                           int | None]]:
    """The fee entries that pay for the period containing ``day`` of these
    accounts: (entry, "tariff" or "package", package id)."""
    account_ids = sorted(set(account_ids))
    if not account_ids:
        return []
    wanted: dict[str, tuple[str, int | None]] = {}
    for account_id in account_ids:
        for period in FEE_PERIODS:
            wanted[f"fee:{account_id}:{period_label(period, day)}"] = ("tariff", None)
    for start in range(0, len(account_ids), 1000):
        rows = session.execute(
            select(AccountPackage.account_id, AccountPackage.package_id)
            .where(AccountPackage.account_id.in_(account_ids[start:start + 1000]))).all()
        for account_id, package_id in rows:
            for period in FEE_PERIODS:
                wanted[f"pkg:{account_id}:{package_id}:{period_label(period, day)}"] = \
                    ("package", package_id)
    keys = list(wanted)
    found = []
    for start in range(0, len(keys), 1000):
        found += session.scalars(select(LedgerEntry).where(
            LedgerEntry.idempotency_key.in_(keys[start:start + 1000]),
            LedgerEntry.kind == "fee", LedgerEntry.amount < 0)).all()
    found.sort(key=lambda e: e.id)
    return [(entry, *wanted[entry.idempotency_key]) for entry in found]
