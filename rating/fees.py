"""The daily fee run: set-based, idempotent, resumable.

One ``INSERT ... SELECT ... ON CONFLICT (idempotency_key) DO NOTHING`` per
chunk of accounts writes the fee entries; the balances change in the same
transaction by the amounts the insert returned (a data-modifying CTE on
PostgreSQL: one statement; an executemany on SQLite). A run repeated — on a
second scheduler node, after a crash, or to catch up missed days — charges
each account once per day, because the key ``fee:ACCOUNT:DAY`` (or
``fee:ACCOUNT:YYYY-MM`` for monthly tariffs) is unique in the ledger.
"""

from __future__ import annotations

import datetime as dt
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import (String, and_, bindparam, case, cast, func, literal, null, or_,
                        select, update)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from config.db import Money, utcnow
from rating import policies
from rating.models import Account, LedgerEntry, ProfileChange, Tariff
from rating.profile import FULL, TariffSpeeds, desired_profile
from rating.tariffs import fee_for

log = logging.getLogger(__name__)

CHUNK_ACCOUNTS = 100_000
accounts = Account.__table__


@dataclass
class FeeRunResult:
    day: dt.date
    charged: int = 0
    profiles_changed: int = 0
    # Accounts charged a package fee, given a discount or paid by points now.
    extras: int = 0


@dataclass(frozen=True)
class _FeeSql:
    amount: object  # SQL expression over an accounts row
    key: object
    memo: object
    memo_code: object
    chargeable: object  # WHERE: which accounts pay today


def unserved_profiles(tariff: Tariff, ladder=policies.DEFAULT_LADDER) -> list[str]:
    """The ladder verdicts under which this tariff gives no service (no
    session, or only the captive portal) and so charges no fee — unless
    its rules say ``"fee_while_suspended": true``."""
    if (tariff.rules or {}).get("fee_while_suspended"):
        return []
    speeds = TariffSpeeds(tariff.rate_down_kbps, tariff.rate_up_kbps,
                          tariff.negative_rate_kbps)
    return [rung.profile for rung in ladder
            if desired_profile(state="active", rung=rung.profile, tariff=speeds,
                               now=utcnow(), ladder=ladder).access != FULL]


def _fee_expressions(session: Session, day: dt.date, freeze_fee: Decimal,
                     ladder=policies.DEFAULT_LADDER) -> _FeeSql | None:
    """The day's fee as SQL over an accounts row: the tariff's fee for an
    active account that has service, the freeze fee (if any) for a frozen
    one. An account suspended for debt pays no fee while it lasts: the debt
    does not grow while there is no service, and the fee resumes the day
    the service returns (a monthly fee not yet charged is charged then)."""
    ladder = policies.ladder_in_force(session, ladder)  # the stored ladder, if any
    charging = session.scalars(select(Tariff).where(Tariff.fee > 0)).all()
    tariffs = [(t.id, t.fee, t.fee_period) for t in charging]
    unserved = [(t.id, names) for t in charging if (names := unserved_profiles(t, ladder))]
    if not tariffs and freeze_fee <= 0:
        return None
    frozen = Account.state == "frozen"
    daily_suffix = literal(f":{day.isoformat()}")
    monthly_suffix = literal(f":{day:%Y-%m}")
    amount = case((frozen, literal(-freeze_fee, Money())),
                  *[(Account.tariff_id == tariff_id, literal(-fee_for(fee, period, day), Money()))
                    for tariff_id, fee, period in tariffs])
    # A frozen day is still a day: it takes the daily key, so a day is
    # charged once whatever the state was.
    suffix = case((frozen, daily_suffix),
                  *[(Account.tariff_id == tariff_id,
                     daily_suffix if period == "daily" else monthly_suffix)
                    for tariff_id, _, period in tariffs])
    # A tariff fee carries no memo (a million rows a day, ~20 bytes each):
    # its key says the period, and rating.cabinet_ops.describe reads it.
    memo = case((frozen, literal(f"freeze fee for {day.isoformat()}")), else_=null())
    memo_code = case((frozen, literal("freeze_fee")), else_=null())
    active = and_(Account.state == "active",
                  Account.tariff_id.in_([tariff_id for tariff_id, _, _ in tariffs]),
                  *[~and_(Account.tariff_id == tariff_id, Account.profile.in_(names))
                    for tariff_id, names in unserved])
    chargeable = or_(active, frozen) if freeze_fee > 0 else active
    return _FeeSql(amount, literal("fee:") + cast(Account.id, String) + suffix, memo, memo_code,
                   chargeable)


def _chunks(session: Session, chunk: int) -> list[tuple[int, int]]:
    low, high = session.execute(select(func.min(Account.id), func.max(Account.id))).one()
    if low is None:
        return []
    return [(start, start + chunk) for start in range(low, high + 1, chunk)]


def _charge_chunk(session: Session, day: dt.date, low: int, high: int, expressions,
                  author: str) -> tuple[int, int]:
    """Charge accounts with low <= id < high; returns (charged, profiles changed)."""
    postgres = session.get_bind().dialect.name == "postgresql"
    insert = postgresql.insert if postgres else sqlite.insert
    chosen = (select(Account.id, expressions.amount, literal("fee"), expressions.key,
                     literal(author), expressions.memo, expressions.memo_code,
                     literal(utcnow()))
              .where(and_(Account.id >= low, Account.id < high, expressions.chargeable)))
    statement = (insert(LedgerEntry)
                 .from_select(["account_id", "amount", "kind", "idempotency_key", "author",
                               "memo", "memo_code", "created_at"], chosen)
                 .on_conflict_do_nothing(index_elements=["idempotency_key"])
                 .returning(LedgerEntry.account_id, LedgerEntry.amount))
    if postgres:
        # One statement: the entries and the balances move together.
        fees = statement.cte("fees")
        # The id range lets the join read only this chunk's accounts.
        charged = session.execute(update(accounts).where(
            accounts.c.id == fees.c.account_id, accounts.c.id >= low, accounts.c.id < high)
            .values(balance=accounts.c.balance + fees.c.amount)).rowcount
    else:
        rows = session.execute(statement).all()
        if rows:
            session.execute(update(accounts).where(accounts.c.id == bindparam("account"))
                            .values(balance=accounts.c.balance + bindparam("delta", type_=Money())),
                            [{"account": r[0], "delta": r[1]} for r in rows])
        charged = len(rows)
    changed = apply_policies(session, low, high, reason=f"fee:{day.isoformat()}")
    return charged, changed


def charge_day(session: Session, day: dt.date, *, author: str = "scheduler:fees",
               chunk: int = CHUNK_ACCOUNTS, freeze_fee: Decimal = Decimal(0),
               ladder=policies.DEFAULT_LADDER) -> FeeRunResult:
    """Charge every active account its fee for ``day``; safe to repeat.

    Each chunk of accounts is its own transaction: a crash loses at most the
    chunk under way, and the rerun charges only what is missing.
    """
    result = FeeRunResult(day)
    expressions = _fee_expressions(session, day, freeze_fee, ladder)
    session.commit()
    if expressions is None:
        _charge_extras(session, result, author)
        return result
    for low, high in _chunks(session, chunk):
        charged, changed = _charge_chunk(session, day, low, high, expressions, author)
        session.commit()
        result.charged += charged
        result.profiles_changed += changed
    _charge_extras(session, result, author)
    log.info("fees.charged day=%s accounts=%d profiles_changed=%d", day, result.charged,
             result.profiles_changed)
    return result


def charge_day_parallel(Session: sessionmaker, day: dt.date, *, workers: int = 2,
                        author: str = "scheduler:fees", chunk: int = CHUNK_ACCOUNTS,
                        freeze_fee: Decimal = Decimal(0),
                        ladder=policies.DEFAULT_LADDER) -> FeeRunResult:
    """``charge_day`` with chunks spread over several connections (PostgreSQL)."""
    with Session() as session:
        expressions = _fee_expressions(session, day, freeze_fee, ladder)
        ranges = _chunks(session, chunk) if expressions is not None else []
    result = FeeRunResult(day)
    if not ranges:
        with Session() as session:
            _charge_extras(session, result, author)
        return result

    def work(bounds: tuple[int, int]) -> tuple[int, int]:
        with Session() as session:
            outcome = _charge_chunk(session, day, *bounds, expressions, author)
            session.commit()
            return outcome

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for charged, changed in pool.map(work, ranges):
            result.charged += charged
            result.profiles_changed += changed
    with Session() as session:
        _charge_extras(session, result, author)
    log.info("fees.charged day=%s accounts=%d profiles_changed=%d workers=%d", day,
             result.charged, result.profiles_changed, workers)
    return result


def _charge_extras(session: Session, result: FeeRunResult, author: str) -> None:
    """After the tariff fees: service packages (rating.packages), then
    discounts and bonus points (rating.promotions), each with its own keys,
    so a repeated run adds nothing; one transaction."""
    from rating import packages, promotions
    touched = set(packages.charge_day(session, result.day, author=author))
    touched |= promotions.run_day(session, result.day, author=author)
    if touched:
        result.extras = len(touched)
        result.profiles_changed += apply_policies(session, min(touched), max(touched) + 1,
                                                  reason=f"fee:{result.day.isoformat()}")
    session.commit()


def apply_policies(session: Session, low: int | None = None, high: int | None = None, *,
                   reason: str = "policy") -> int:
    """Move accounts to the profile the balance ladder gives; write the outbox.

    The profile is the ladder's verdict only; options bought stack on it
    (rating.profile), so none is lost to a suspension.
    """
    decided = policies.profile_case(accounts.c.balance, accounts.c.credit_limit,
                                    policies.ladder_in_force(session))
    condition = and_(accounts.c.state == "active", accounts.c.profile != decided)
    if low is not None:
        condition = and_(condition, accounts.c.id >= low, accounts.c.id < high)
    changed = session.execute(update(accounts).where(condition)
                              .values(profile=decided, version=accounts.c.version + 1)
                              .returning(accounts.c.id, accounts.c.profile,
                                     accounts.c.version)).all()
    if changed:
        session.execute(ProfileChange.__table__.insert(),
                        [{"account_id": account_id, "profile": profile, "reason": reason,
                          "created_at": utcnow()} for account_id, profile, _ in changed])
        # "Service suspended" / "restored", in the same transaction.
        from rating import notify
        blocking = {rung.profile for rung in policies.ladder_in_force(session)
                    if rung.mode == policies.BLOCK}
        notify.profiles_changed(session, changed, blocking)
    return len(changed)
