"""Reports for the operator: an account's traffic, RADIUS against NetFlow,
debtors, revenue.

Read-only. Months and days are the operator's (settings ``timezone``), as
for fees; stored times are UTC, so a month is turned into its UTC bounds
once and every query compares plain timestamps (an index range on both
databases, no per-row time-zone arithmetic in SQL).

The traffic rollups belong to the collector and the sessions to aaa;
rating reads them as plain tables (as rating.traffic does) so that it
imports neither.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import (BigInteger, DateTime, Integer, and_, case, column, func, literal,
                        literal_column, not_, or_, select, table, type_coerce)
from sqlalchemy.orm import Session, aliased

from config.db import Money, money
from rating.models import Account, LedgerEntry, Tariff
from rating.traffic import rollups
from rating.validate import DomainError

sessions = table("sessions", column("account_id", Integer), column("started_at", DateTime),
                 column("octets_in", BigInteger), column("octets_out", BigInteger))

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MOMENT = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2})?$")


# -- time ----------------------------------------------------------------------

def _utc(local: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    return local.replace(tzinfo=zone).astimezone(dt.timezone.utc).replace(tzinfo=None)


def moment(value: str, what: str, timezone: str, *, end: bool = False) -> dt.datetime:
    """A bound a person types, as naive UTC: a day (YYYY-MM-DD) is the
    operator's day, its start (or with ``end`` the next day's start); a
    moment (YYYY-MM-DDTHH:MM[:SS]) is UTC as written."""
    text = (value or "").strip()
    try:
        if _DAY.match(text):
            day = dt.date.fromisoformat(text)
            if end:
                day += dt.timedelta(days=1)
            return _utc(dt.datetime.combine(day, dt.time()), ZoneInfo(timezone))
        if _MOMENT.match(text):
            return dt.datetime.fromisoformat(text.replace(" ", "T"))
    except (ValueError, OverflowError):
        pass
    raise DomainError(f"{what} must be a day like 2026-12-01 or a UTC time like "
                      f"2026-12-01T10:00, not {value!r}")


@dataclass(frozen=True)
class Month:
    label: str
    start: dt.datetime  # naive UTC
    end: dt.datetime
    days: tuple[dt.date, ...]  # the operator's days of the month
    zone: ZoneInfo

    def day_starts(self) -> list[dt.datetime]:
        """Each day's start, naive UTC (days shorter or longer with DST)."""
        return [_utc(dt.datetime.combine(day, dt.time()), self.zone) for day in self.days]

    def local_day(self, moment_utc: dt.datetime) -> dt.date:
        return moment_utc.replace(tzinfo=dt.timezone.utc).astimezone(self.zone).date()


def month(value: str | None, timezone: str, *, today: dt.date | None = None) -> Month:
    """YYYY-MM (default: the operator's current month)."""
    zone = ZoneInfo(timezone)
    if value is None:
        today = today or dt.datetime.now(zone).date()
        year, number = today.year, today.month
    else:
        found = _MONTH.match(value.strip())
        year, number = (int(found.group(1)), int(found.group(2))) if found else (0, 0)
        if not 1 <= number <= 12 or not 1970 <= year <= 9998:
            raise DomainError(f"month must look like 2026-12, not {value!r}")
    first = dt.date(year, number, 1)
    after = dt.date(year + (number == 12), number % 12 + 1, 1)
    days = tuple(first + dt.timedelta(days=n) for n in range((after - first).days))
    return Month(f"{year:04d}-{number:02d}",
                 _utc(dt.datetime.combine(first, dt.time()), zone),
                 _utc(dt.datetime.combine(after, dt.time()), zone), days, zone)


# -- traffic -------------------------------------------------------------------

def traffic(session: Session, account_id: int, period: Month, by: str) -> list[dict]:
    """Bytes in (to the subscriber) and out per traffic class or per day,
    for each source (netflow, radius) the rollups hold."""
    if by not in ("class", "day"):
        raise DomainError(f"--by must be class or day, not {by!r}")
    window = and_(rollups.c.account_id == account_id, rollups.c.interval_start >= period.start,
                  rollups.c.interval_start < period.end)
    totals: dict[tuple, dict] = {}
    if by == "class":
        rows = session.execute(
            select(rollups.c.source, rollups.c.traffic_class, rollups.c.direction,
                   func.sum(rollups.c.bytes))
            .where(window)
            .group_by(rollups.c.source, rollups.c.traffic_class, rollups.c.direction)).all()
        keyed = (((source, traffic_class), direction, volume)
                 for source, traffic_class, direction, volume in rows)
    else:
        # One row per 5-minute interval at most (8,928 a month): the
        # operator's day is worked out here, the same on both databases.
        rows = session.execute(
            select(rollups.c.source, rollups.c.interval_start, rollups.c.direction,
                   func.sum(rollups.c.bytes))
            .where(window)
            .group_by(rollups.c.source, rollups.c.interval_start, rollups.c.direction)).all()
        keyed = (((source, period.local_day(start)), direction, volume)
                 for source, start, direction, volume in rows)
    for (source, key), direction, volume in keyed:
        row = totals.setdefault((key, source), {by: key, "source": source, "bytes_in": 0,
                                                "bytes_out": 0})
        row["bytes_in" if direction == "in" else "bytes_out"] += int(volume or 0)
    result = [totals[k] for k in sorted(totals, key=lambda k: (str(k[0]), k[1]))]
    for row in result:
        row["bytes_total"] = row["bytes_in"] + row["bytes_out"]
    return result


# -- RADIUS against NetFlow ----------------------------------------------------

APART, NO_NETFLOW, NO_RADIUS = "apart", "no_netflow", "no_radius"


def reconcile(session: Session, period: Month, tolerance_percent: Decimal,
              include_all: bool = False) -> list[dict]:
    """Per account, RADIUS accounting octets (sessions started in the month,
    Acct-Input as out and Acct-Output as in) against NetFlow bytes (the
    collector's rollups for the month). Flagged:

    - ``apart``: NetFlow differs from RADIUS by more than the tolerance,
      in percent of the RADIUS count (a BRAS that under-reports, an
      exporter that samples or drops);
    - ``no_netflow``: RADIUS counted traffic, NetFlow none (an exporter
      missing);
    - ``no_radius``: NetFlow saw traffic, no RADIUS session counted any (a
      NAS that sends no interim updates, or a subscriber without a session).

    A session is counted whole in the month it started: its counters are
    running totals, not a series. Sorted with the largest gap first."""
    radius = (select(sessions.c.account_id, func.sum(sessions.c.octets_in).label("octets_in"),
                     func.sum(sessions.c.octets_out).label("octets_out"))
              .where(sessions.c.account_id.is_not(None), sessions.c.started_at >= period.start,
                     sessions.c.started_at < period.end)
              .group_by(sessions.c.account_id)).subquery()
    netflow = (select(rollups.c.account_id,
                      func.sum(case((rollups.c.direction == "in", rollups.c.bytes), else_=0))
                      .label("bytes_in"),
                      func.sum(case((rollups.c.direction == "in", 0), else_=rollups.c.bytes))
                      .label("bytes_out"))
               .where(rollups.c.source == "netflow", rollups.c.interval_start >= period.start,
                      rollups.c.interval_start < period.end)
               .group_by(rollups.c.account_id)).subquery()
    rows = session.execute(
        select(Account.number, radius.c.octets_in, radius.c.octets_out, netflow.c.bytes_in,
               netflow.c.bytes_out)
        .outerjoin(radius, radius.c.account_id == Account.id)
        .outerjoin(netflow, netflow.c.account_id == Account.id)
        .where(or_(radius.c.account_id.is_not(None), netflow.c.account_id.is_not(None)))).all()
    result = []
    for number, octets_in, octets_out, netflow_in, netflow_out in rows:
        # Acct-Input is what the NAS received from the subscriber: "out".
        radius_in, radius_out = int(octets_out or 0), int(octets_in or 0)
        netflow_in, netflow_out = int(netflow_in or 0), int(netflow_out or 0)
        radius_total, netflow_total = radius_in + radius_out, netflow_in + netflow_out
        if radius_total == 0 and netflow_total == 0:
            continue
        difference = None
        if radius_total and netflow_total:
            difference = (Decimal(netflow_total - radius_total) * 100 / radius_total).quantize(
                Decimal("0.1"), rounding=ROUND_HALF_UP)
        if not netflow_total:
            flag = NO_NETFLOW
        elif not radius_total:
            flag = NO_RADIUS
        elif abs(difference) > tolerance_percent:
            flag = APART
        else:
            flag = None
        if flag is None and not include_all:
            continue
        result.append(dict(account=number, flag=flag,
                           radius_bytes=radius_total, netflow_bytes=netflow_total,
                           difference_percent=difference, radius_in=radius_in,
                           radius_out=radius_out, netflow_in=netflow_in,
                           netflow_out=netflow_out))
    result.sort(key=lambda r: (r["flag"] is None,
                               -abs(r["netflow_bytes"] - r["radius_bytes"]), r["account"]))
    return result


# -- debtors -------------------------------------------------------------------

def _in_debt_since(accounts_in_debt, below: Decimal):
    """(account_id, since): when each account's balance last went below
    ``below``, from the running sum of its entries in time order."""
    running = (select(LedgerEntry.account_id, LedgerEntry.id, LedgerEntry.created_at,
                      func.sum(LedgerEntry.amount).over(
                          partition_by=LedgerEntry.account_id,
                          order_by=(LedgerEntry.created_at, LedgerEntry.id)).label("running"))
               .where(LedgerEntry.account_id.in_(accounts_in_debt))).subquery()
    last_fine = (select(running.c.account_id, func.max(running.c.created_at).label("fine_at"))
                 .where(running.c.running >= below)
                 .group_by(running.c.account_id)).subquery()
    return (select(running.c.account_id, func.min(running.c.created_at).label("since"))
            .outerjoin(last_fine, last_fine.c.account_id == running.c.account_id)
            .where(or_(last_fine.c.fine_at.is_(None), running.c.created_at > last_fine.c.fine_at))
            .group_by(running.c.account_id)).subquery()


def debtors(session: Session, below: Decimal, since_before: dt.datetime | None, limit: int,
            offset: int) -> list[dict]:
    """Accounts whose balance is below ``below``, most debt first, with the
    time their balance last went below it; with ``since_before``, only those
    in debt since before that moment. Rows ``offset .. offset+limit`` (one
    more if there are more, for the caller's note).

    Without ``since_before`` the page is chosen first and only its accounts'
    entries are summed: the first screen of a million-account base does not
    wait for every debtor's history."""
    columns = (Account.id, Account.number, Account.name, Account.balance, Account.credit_limit,
               Account.state, Account.profile, Tariff.name.label("tariff"))
    base = (select(*columns).outerjoin(Tariff, Tariff.id == Account.tariff_id)
            .where(Account.balance < below).order_by(Account.balance, Account.id))
    if since_before is None:
        page = [row._asdict() for row in session.execute(base.limit(limit + 1).offset(offset))]
        ids = [row["id"] for row in page]
        since = dict(session.execute(select(_in_debt_since(ids, below))).all()) if ids else {}
        for row in page:
            row["since"] = since.get(row["id"])
    else:
        in_debt = select(Account.id).where(Account.balance < below).scalar_subquery()
        since = _in_debt_since(in_debt, below)
        query = (base.add_columns(since.c.since)
                 .join(since, since.c.account_id == Account.id)
                 .where(since.c.since <= since_before))
        page = [row._asdict() for row in session.execute(query.limit(limit + 1).offset(offset))]
    for row in page:
        del row["id"]
    return page


# -- revenue -------------------------------------------------------------------

DEBIT_KINDS = ("fee", "traffic", "option", "correction")


def revenue(session: Session, period: Month, by: str) -> list[dict]:
    """Charges, payments and refunds of the month from the ledger, per
    tariff (the account's current one), kind or day. A reversal counts
    under the kind of the entry it reverses (a reversed fee lowers the
    charges, a reversed payment the payments); transfers between accounts
    are neither and are left out."""
    original = aliased(LedgerEntry)
    kind = func.coalesce(original.kind, LedgerEntry.kind)
    if by == "kind":
        group = kind
    elif by == "tariff":
        group = func.coalesce(Tariff.name, literal("-"))
    elif by == "day":
        starts = period.day_starts()
        group = case(*[(LedgerEntry.created_at < start, index)
                       for index, start in enumerate(starts[1:])], else_=len(starts) - 1)
    else:
        raise DomainError(f"--by must be tariff, kind or day, not {by!r}")

    def total(kinds, debit: bool):
        # Negation, not "* -1": a bound -1 would take the Money type (minor
        # units on SQLite) and scale the sum.
        value = -LedgerEntry.amount if debit else LedgerEntry.amount
        return type_coerce(func.sum(case((kind.in_(kinds), value), else_=literal_column("0"))),
                           Money)

    query = (select(group.label("key"), func.count(LedgerEntry.id),
                    total(DEBIT_KINDS, True), total(("payment",), False),
                    total(("refund",), True), total(("promised",), False))
             .select_from(LedgerEntry)
             .outerjoin(original, original.id == LedgerEntry.reverses_id)
             .where(LedgerEntry.created_at >= period.start, LedgerEntry.created_at < period.end,
                    not_(LedgerEntry.idempotency_key.startswith("transfer:")),
                    or_(original.id.is_(None),
                        not_(original.idempotency_key.startswith("transfer:"))))
             .group_by(group).order_by(group))
    if by == "tariff":
        query = (query.join(Account, Account.id == LedgerEntry.account_id)
                 .outerjoin(Tariff, Tariff.id == Account.tariff_id))
    rows = []
    for key, entries, charges, payments, refunds, promised in session.execute(query):
        if by == "day":
            key = period.days[int(key)]
        rows.append({by: key, "entries": int(entries), "charges": money(charges or 0),
                     "payments": money(payments or 0), "refunds": money(refunds or 0),
                     "promised": money(promised or 0)})
    return rows
