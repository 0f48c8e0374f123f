"""Spending limits: a monthly ceiling on an account or a branch, a warning
near it and an action when it is reached (issue 21).

Rules:
- A limit counts one calendar month in the operator's time zone. Money is
  what the ledger charged (tariff fees, options, packages, traffic, manual
  charges and discounts; reversals count against what they reverse);
  payments, refunds and transfers do not count. Traffic is the bytes of
  the traffic rollups, both directions, every class and source.
- The warning (at ``warn_percent``) and the action each fire once per
  (limit, month, revision): a conditional UPDATE of the month's state row
  claims it, so two schedulers, a re-run or a retry change nothing. A
  change of the limit's figure or action bumps its revision: what it did is
  lifted and it is evaluated afresh against the new figure.
- Actions: ``notify`` queues a notice; ``throttle`` sets
  ``Account.limit_throttled_until`` (rating.profile slows the account, the
  profile-change outbox carries it to the network); ``block_extras`` sets
  ``Account.extras_blocked_until`` (options and packages refuse,
  ``extras_refusal``). Both hold until the next month starts or the limit
  is raised or removed.
- Evaluation is set-based: one grouped query sums the month's charges (or
  bytes) per account for every account any limit covers; limits add up
  their accounts' figures in Python.

Exceptions: rating.validate.DomainError for bad input (the caller's
transaction is left unchanged).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import (ARRAY, BigInteger, String, and_, any_, case, cast, delete, func,
                        literal, or_, select, update)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, aliased

from config.db import money, utcnow
from rating import notify, notify_texts, oplog, org, validate
from rating.choices import SPENDING_ACTIONS, SPENDING_METRICS, SPENDING_SERVICES
from rating.models import (Account, LedgerEntry, OrgUnit, ProfileChange, SpendingLimit,
                           SpendingLimitState)
from rating.traffic import rollups
from rating.validate import DomainError

log = logging.getLogger(__name__)

# Ledger kinds that are spending; a correction counts when it is a manual
# charge or reverses one of these.
SPEND_KINDS = ("fee", "traffic", "option", "discount", "call")
CHARGE_MEMO = "charge"
BYTES_PER_GB = 10 ** 9
MAX_TRAFFIC_BYTES = 10 ** 18


# -- the month -----------------------------------------------------------------

@dataclass(frozen=True)
class Month:
    label: str            # "2026-12"
    start: dt.datetime    # naive UTC
    end: dt.datetime      # naive UTC, exclusive: the next month's start


def _utc(local: dt.datetime) -> dt.datetime:
    return local.astimezone(dt.timezone.utc).replace(tzinfo=None)


def month_of(now: dt.datetime, timezone: str) -> Month:
    """The operator's calendar month that ``now`` (naive UTC) falls in."""
    zone = ZoneInfo(timezone)
    local = now.replace(tzinfo=dt.timezone.utc).astimezone(zone)
    first = dt.datetime(local.year, local.month, 1, tzinfo=zone)
    following = dt.datetime(local.year + local.month // 12, local.month % 12 + 1, 1, tzinfo=zone)
    return Month(f"{local.year:04d}-{local.month:02d}", _utc(first), _utc(following))


def day_bounds(first: dt.date, last: dt.date, timezone: str) -> tuple[dt.datetime, dt.datetime]:
    """[start of ``first``, end of ``last``) in the operator's zone, as naive UTC."""
    if last < first:
        raise DomainError(f"the period ends ({last}) before it starts ({first})")
    zone = ZoneInfo(timezone)
    start = dt.datetime.combine(first, dt.time(), zone)
    end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), zone)
    return _utc(start), _utc(end)


# -- what was spent (set-based) ------------------------------------------------

def among(session: Session, column, ids):
    """``column IN ids`` for a list of any length: on PostgreSQL one text
    parameter split into an array (= ANY), not one bind parameter an id
    (20,000 of them cost psycopg seconds to convert); elsewhere IN."""
    ids = list(ids)
    if session.get_bind().dialect.name == "postgresql" and len(ids) > 100:
        return column == any_(cast(func.string_to_array(
            literal(",".join(map(str, ids)), String), ","), ARRAY(BigInteger)))
    return column.in_(ids)


def _service():
    """A ledger row's service (SPENDING_SERVICES) and the filter of rows that
    are spending; a reversal takes the kind of the entry it reverses."""
    original = aliased(LedgerEntry)
    kind = case((LedgerEntry.reverses_id.is_not(None), original.kind), else_=LedgerEntry.kind)
    memo = case((LedgerEntry.reverses_id.is_not(None), original.memo_code),
                else_=LedgerEntry.memo_code)
    service = case((kind == "option", "options"), (kind == "traffic", "traffic"),
                   (kind == "call", "calls"),
                   (and_(kind == "fee", memo == "package"), "packages"),
                   (kind == "fee", "tariff"), else_="other")
    spending = or_(LedgerEntry.kind.in_(SPEND_KINDS),
                   and_(LedgerEntry.kind == "correction",
                        or_(LedgerEntry.memo_code == CHARGE_MEMO, original.kind.in_(SPEND_KINDS))))
    return original, service, spending


def charges(session: Session, start: dt.datetime, end: dt.datetime,
            account_ids: list[int] | None = None) -> dict[int, dict[str, Decimal]]:
    """{account: {service: money spent}} over [start, end): one grouped query."""
    original, service, spending = _service()
    statement = (select(LedgerEntry.account_id, service, func.sum(LedgerEntry.amount))
                 .outerjoin(original, original.id == LedgerEntry.reverses_id)
                 .where(LedgerEntry.created_at >= start, LedgerEntry.created_at < end, spending)
                 .group_by(LedgerEntry.account_id, service))
    if account_ids is not None:
        statement = statement.where(among(session, LedgerEntry.account_id, account_ids))
    found: dict[int, dict[str, Decimal]] = defaultdict(dict)
    for account_id, name, amount in session.execute(statement):
        # Charges are negative in the ledger; spending is shown positive.
        found[account_id][name] = -money(amount)
    return dict(found)


def traffic_bytes(session: Session, start: dt.datetime, end: dt.datetime,
                  account_ids: list[int] | None = None) -> dict[int, int]:
    """{account: bytes} over [start, end) from the traffic rollups."""
    statement = (select(rollups.c.account_id, func.sum(rollups.c.bytes))
                 .where(rollups.c.interval_start >= start, rollups.c.interval_start < end)
                 .group_by(rollups.c.account_id))
    if account_ids is not None:
        statement = statement.where(among(session, rollups.c.account_id, account_ids))
    return {account_id: int(total or 0) for account_id, total in session.execute(statement)}


# -- scopes --------------------------------------------------------------------

def unit_accounts(session: Session, unit_ids) -> dict[int, list[int]]:
    """{org unit: the accounts of it and of every unit under it}: one
    recursive query for all the units, none per unit or account."""
    unit_ids = sorted(set(unit_ids))
    if not unit_ids:
        return {}
    known = set(session.scalars(select(OrgUnit.id).where(OrgUnit.id.in_(unit_ids))))
    missing = [unit_id for unit_id in unit_ids if unit_id not in known]
    if missing:
        raise validate.NotFound(f"org unit {missing[0]} does not exist")
    # (branch, unit below it): the branches themselves, then their children.
    tree = select(OrgUnit.id.label("branch"), OrgUnit.id.label("unit")).where(
        OrgUnit.id.in_(unit_ids)).cte("branch_units", recursive=True)
    tree = tree.union_all(select(tree.c.branch, OrgUnit.id)
                          .join(tree, OrgUnit.parent_id == tree.c.unit))
    found: dict[int, list[int]] = {unit_id: [] for unit_id in unit_ids}
    for branch, account_id in session.execute(
            select(tree.c.branch, Account.id).join(Account, Account.org_unit_id == tree.c.unit)
            .order_by(tree.c.branch, Account.id)):
        found[branch].append(account_id)
    return found


def customer_scope(session: Session, customer_id: int, unit_id: int | None = None
                   ) -> tuple[list[int], dict[int, tuple[int | None, str]]]:
    """A customer's accounts (or one branch's, with the units under it) and
    {account: (its unit, the unit's name)} for the report's branch totals."""
    org.customer(session, customer_id)
    if unit_id is not None:
        org.unit(session, unit_id, customer_id)
    ids = org.branch_accounts(session, customer_id, unit_id)
    rows = session.execute(select(Account.id, Account.org_unit_id, OrgUnit.name)
                           .outerjoin(OrgUnit, OrgUnit.id == Account.org_unit_id)
                           .where(among(session, Account.id, ids))).all() if ids else []
    return ids, {account_id: (unit, name or "") for account_id, unit, name in rows}


@dataclass(frozen=True)
class Branch:
    """A place of a customer's tree a login may act on: the whole customer
    (``unit_id`` None) or a unit with the units under it."""

    customer_id: int
    customer_name: str
    unit_id: int | None
    unit_name: str
    depth: int          # for indenting a list: 0 the customer, 1 its roots ...

    @property
    def key(self) -> str:
        """"customer:unit" ("7:" for the whole customer): a form's value."""
        return f"{self.customer_id}:{self.unit_id or ''}"


def branches(session: Session, cabinet_user_id: int, right: str) -> list[Branch]:
    """Every branch the login holds ``right`` on through its grants
    (rating.org): a grant on the whole customer reaches each of its units,
    a grant on a unit that unit and the units under it. Tree order."""
    grants = [grant for grant in org.grants_of(session, cabinet_user_id)
              if right in org.parse_rights(grant.rights)]
    found: list[Branch] = []
    for customer_id in dict.fromkeys(grant.customer_id for grant in grants):
        owner = org.customer(session, customer_id)
        mine = [grant for grant in grants if grant.customer_id == customer_id]
        rows = org.units(session, customer_id)
        depth = org.depths(rows)
        whole = any(grant.org_unit_id is None for grant in mine)
        if whole:
            reach = {row.id for row in rows}
            found.append(Branch(customer_id, owner.name, None, "", 0))
        else:
            reach = set()
            for grant in mine:
                reach.update(org.subtree_unit_ids(session, grant.org_unit_id))
        found += [Branch(customer_id, owner.name, row.id, row.name, depth[row.id] + 1)
                  for row in rows if row.id in reach]
    return found


def find_branch(session: Session, cabinet_user_id: int, right: str, key: str) -> Branch:
    """The branch a form named by ``Branch.key``, if the login holds
    ``right`` on it; else NotFound (the same for a foreign one as for none)."""
    for branch in branches(session, cabinet_user_id, right):
        if branch.key == (key or "").strip():
            return branch
    raise validate.NotFound("there is no such branch of yours")


def members(session: Session, limits) -> dict[int, list[int]]:
    """{limit: the accounts it covers}."""
    units = unit_accounts(session, [limit.org_unit_id for limit in limits
                                    if limit.org_unit_id is not None])
    return {limit.id: [limit.account_id] if limit.account_id is not None
            else units.get(limit.org_unit_id, []) for limit in limits}


# -- limits --------------------------------------------------------------------

def parse_figure(metric: str, value) -> tuple[Decimal | None, int | None]:
    """(amount, traffic bytes) from the CLI's or a form's text: roubles for
    money, gigabytes (10^9 bytes, decimals allowed) for traffic."""
    if metric not in SPENDING_METRICS:
        raise DomainError(f"the metric must be one of {', '.join(SPENDING_METRICS)}")
    if metric == "money":
        return validate.amount(value, "limit", positive=True), None
    try:
        gigabytes = Decimal(str(value).strip().replace(",", "."))
    except ArithmeticError:
        raise DomainError(f"the traffic limit must be a number of GB, not {value!r}") from None
    if not gigabytes.is_finite() or gigabytes <= 0:
        raise DomainError("the traffic limit must be a positive number of GB")
    count = int(gigabytes * BYTES_PER_GB)
    if count <= 0 or count > MAX_TRAFFIC_BYTES:
        raise DomainError("the traffic limit is out of range")
    return None, count


def figure(limit: SpendingLimit) -> Decimal | int:
    return limit.amount if limit.metric == "money" else limit.traffic_bytes


def _quantity(metric: str, value) -> notify_texts.Quantity:
    if metric == "money":
        return notify_texts.Quantity(money(value), "rub")
    return notify_texts.Quantity((Decimal(int(value)) / BYTES_PER_GB).quantize(Decimal("0.01")),
                                 "gb")


def set_limit(session: Session, *, metric: str, value, action: str = "notify",
              warn_percent: int = 80, account_id: int | None = None,
              org_unit_id: int | None = None, actor: str, now: dt.datetime | None = None,
              timezone: str = "UTC") -> tuple[SpendingLimit, bool]:
    """Create or change the limit of this scope and metric; returns (limit,
    changed). A changed figure or action lifts what it did this month and
    evaluates it again at once (a raised limit frees the accounts)."""
    if (account_id is None) == (org_unit_id is None):
        raise DomainError("a limit is set on one account or on one branch")
    amount, count = parse_figure(metric, value)
    if action not in SPENDING_ACTIONS:
        raise DomainError(f"the action must be one of {', '.join(SPENDING_ACTIONS)}")
    warn_percent = validate.whole(warn_percent, "warn percent", 1, 99)
    if account_id is not None and session.get(Account, account_id) is None:
        raise DomainError(f"account {account_id} does not exist")
    if org_unit_id is not None:
        unit_accounts(session, [org_unit_id])   # the unit exists, the tree is there
    scope = (SpendingLimit.account_id == account_id if account_id is not None
             else SpendingLimit.org_unit_id == org_unit_id)
    limit = session.scalar(select(SpendingLimit).where(scope, SpendingLimit.metric == metric)
                           .with_for_update())
    now = now or utcnow()
    if limit is None:
        limit = SpendingLimit(account_id=account_id, org_unit_id=org_unit_id, metric=metric,
                              amount=amount, traffic_bytes=count, action=action,
                              warn_percent=warn_percent, revision=1, author=actor[:100],
                              created_at=now, updated_at=now)
        session.add(limit)
        session.flush()
        changed = True
    else:
        same = (limit.amount, limit.traffic_bytes, limit.action, limit.warn_percent) == \
            (amount, count, action, warn_percent)
        if same:
            return limit, False
        _lift(session, limit, now, timezone)
        limit.amount, limit.traffic_bytes, limit.action = amount, count, action
        limit.warn_percent, limit.author, limit.updated_at = warn_percent, actor[:100], now
        limit.revision += 1
        session.flush()
        changed = True
    oplog.record(session, account_id=account_id, actor=actor, action="limit.set",
                 limit_id=limit.id, org_unit_id=org_unit_id, metric=metric,
                 figure=figure(limit), warn_percent=warn_percent, limit_action=action)
    evaluate(session, now, timezone, limit_ids=[limit.id])
    return limit, changed


def remove_limit(session: Session, limit_id: int, *, actor: str,
                 now: dt.datetime | None = None, timezone: str = "UTC") -> SpendingLimit:
    """Remove a limit; what it did this month is lifted."""
    limit = session.get(SpendingLimit, limit_id)
    if limit is None:
        raise validate.NotFound(f"limit {limit_id} does not exist")
    _lift(session, limit, now or utcnow(), timezone)
    session.execute(delete(SpendingLimitState).where(SpendingLimitState.limit_id == limit.id))
    oplog.record(session, account_id=limit.account_id, actor=actor, action="limit.remove",
                 limit_id=limit.id, org_unit_id=limit.org_unit_id, metric=limit.metric)
    session.delete(limit)
    session.flush()
    return limit


@dataclass
class LimitView:
    id: int
    account_id: int | None
    account_number: str | None
    org_unit_id: int | None
    metric: str
    figure: Decimal | int
    warn_percent: int
    action: str
    month: str
    used: Decimal | int
    warned: bool
    acted: bool
    unit_name: str = ""

    @property
    def share(self) -> int:
        return int(self.used * 100 // self.figure) if self.figure else 0

    def as_dict(self) -> dict:
        return {"id": self.id, "account": self.account_number, "org_unit_id": self.org_unit_id,
                "metric": self.metric, "limit": str(self.figure),
                "warn_percent": self.warn_percent, "action": self.action, "month": self.month,
                "used": str(self.used), "share_percent": self.share, "warned": self.warned,
                "acted": self.acted, "unit": self.unit_name or None}


def listing(session: Session, now: dt.datetime, timezone: str, *,
            account_ids: list[int] | None = None,
            org_unit_ids: list[int] | None = None) -> list[LimitView]:
    """The limits (all, or those on these accounts / units) with this
    month's figures, read fresh from the ledger and rollups."""
    statement = select(SpendingLimit).order_by(SpendingLimit.id)
    if account_ids is not None or org_unit_ids is not None:
        statement = statement.where(or_(SpendingLimit.account_id.in_(account_ids or []),
                                        SpendingLimit.org_unit_id.in_(org_unit_ids or [])))
    limits = list(session.scalars(statement))
    month = month_of(now, timezone)
    used = _usage(session, limits, month)
    states = {state.limit_id: state for state in session.scalars(
        select(SpendingLimitState).where(SpendingLimitState.month == month.label,
                                         SpendingLimitState.limit_id.in_([l.id for l in limits])))}
    numbers = dict(session.execute(select(Account.id, Account.number).where(
        Account.id.in_([l.account_id for l in limits if l.account_id is not None]))).all())
    unit_names = dict(session.execute(select(OrgUnit.id, OrgUnit.name).where(
        OrgUnit.id.in_([l.org_unit_id for l in limits if l.org_unit_id is not None]))).all())
    views = []
    for limit in limits:
        state = states.get(limit.id)
        views.append(LimitView(
            limit.id, limit.account_id, numbers.get(limit.account_id), limit.org_unit_id,
            limit.metric, figure(limit), limit.warn_percent, limit.action, month.label,
            used[limit.id],
            state is not None and state.warned_revision == limit.revision,
            state is not None and state.acted_revision == limit.revision,
            unit_names.get(limit.org_unit_id, "")))
    return views


# -- evaluation ----------------------------------------------------------------

@dataclass
class Evaluation:
    month: str
    limits: int = 0
    warned: list[int] = field(default_factory=list)   # limit ids
    acted: list[int] = field(default_factory=list)
    expired: int = 0          # accounts whose last month's action ended
    notices: int = 0


def _usage(session: Session, limits, month: Month,
           covered: dict[int, list[int]] | None = None) -> dict[int, Decimal | int]:
    """{limit: this month's money or bytes}: one query a metric."""
    covered = members(session, limits) if covered is None else covered
    wanted = {metric: sorted({a for l in limits if l.metric == metric for a in covered[l.id]})
              for metric in SPENDING_METRICS}
    spent = {account_id: sum(by_service.values(), Decimal("0.00"))
             for account_id, by_service in charges(session, month.start, month.end,
                                                   wanted["money"]).items()} \
        if wanted["money"] else {}
    used_bytes = traffic_bytes(session, month.start, month.end, wanted["traffic"]) \
        if wanted["traffic"] else {}
    return {limit.id: (sum((spent.get(a, Decimal("0.00")) for a in covered[limit.id]),
                           Decimal("0.00")) if limit.metric == "money"
                       else sum(used_bytes.get(a, 0) for a in covered[limit.id]))
            for limit in limits}


def _insert(session: Session):
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def _claim(session: Session, state_ids: list[int], column: str, stamp: str,
           now: dt.datetime) -> set[int]:
    """Mark the warning (or the action) fired at each limit's current
    revision in these state rows, in one UPDATE; returns the limits whose
    row this call changed. A concurrent run waits on the rows and finds
    them set: each fires once."""
    if not state_ids:
        return set()
    table = SpendingLimitState.__table__
    revision = (select(SpendingLimit.revision)
                .where(SpendingLimit.id == table.c.limit_id).scalar_subquery())
    claimed = session.execute(
        update(table).where(among(session, table.c.id, state_ids),
                            or_(table.c[column].is_(None), table.c[column] != revision))
        .values({column: revision, stamp: now}).returning(table.c.limit_id))
    return set(claimed.scalars())


def expire(session: Session, now: dt.datetime) -> int:
    """A new month: the actions of the last one end (the profile-change
    outbox tells the network about each throttled account)."""
    slowed = session.scalars(
        update(Account).where(Account.limit_throttled_until <= now)
        .values(limit_throttled_until=None, version=Account.version + 1)
        .returning(Account.id)).all()
    _profile_changed(session, slowed, "limit:month-ended", now)
    blocked = session.execute(update(Account).where(Account.extras_blocked_until <= now)
                              .values(extras_blocked_until=None))
    return len(slowed) + (blocked.rowcount or 0)


def _profile_changed(session: Session, account_ids, reason: str, now: dt.datetime) -> None:
    if not account_ids:
        return
    rows = session.execute(select(Account.id, Account.profile).where(
        among(session, Account.id, account_ids))).all()
    session.execute(ProfileChange.__table__.insert(),
                    [{"account_id": account_id, "profile": profile, "reason": reason,
                      "created_at": now} for account_id, profile in rows])


def _states(session: Session, limits, month: Month, now: dt.datetime) -> dict[int, tuple]:
    """{limit: (state row id, warned revision, acted revision)} of the month,
    the missing rows made (a concurrent run making the same row meets the
    unique key and skips)."""
    def read():
        return {limit_id: (state_id, warned, acted)
                for limit_id, state_id, warned, acted in session.execute(
                    select(SpendingLimitState.limit_id, SpendingLimitState.id,
                           SpendingLimitState.warned_revision,
                           SpendingLimitState.acted_revision).where(
                        SpendingLimitState.month == month.label,
                        among(session, SpendingLimitState.limit_id,
                              [limit.id for limit in limits])))}
    states = read()
    missing = [limit.id for limit in limits if limit.id not in states]
    if missing:
        session.execute(_insert(session)(SpendingLimitState).on_conflict_do_nothing(
            index_elements=["limit_id", "month"]),
            [{"limit_id": limit_id, "month": month.label, "evaluated_at": now}
             for limit_id in missing])
        states = read()
    return states


def evaluate(session: Session, now: dt.datetime, timezone: str, *,
             limit_ids: list[int] | None = None,
             default_language: str | None = None) -> Evaluation:
    """Compare every limit (or these) with this month's spending; fire each
    warning and action at most once. In the caller's transaction."""
    month = month_of(now, timezone)
    outcome = Evaluation(month.label)
    if limit_ids is None:
        outcome.expired = expire(session, now)
    statement = select(SpendingLimit).order_by(SpendingLimit.id)
    if limit_ids is not None:
        statement = statement.where(SpendingLimit.id.in_(limit_ids))
    limits = list(session.scalars(statement))
    outcome.limits = len(limits)
    if not limits:
        return outcome
    covered = members(session, limits)
    used = _usage(session, limits, month, covered)
    states = _states(session, limits, month, now)
    # value * 100 >= figure * percent: exact for Decimal and int alike. Only
    # what has not fired at this revision is a candidate (the claim below
    # decides, whatever another run did since this one read the states).
    reached = [limit for limit in limits if used[limit.id] >= figure(limit)
               and states[limit.id][2] != limit.revision]
    near = [limit for limit in limits if used[limit.id] < figure(limit)
            and used[limit.id] * 100 >= figure(limit) * limit.warn_percent
            and states[limit.id][1] != limit.revision]
    # What the candidates have used, as they fire; the pages read it fresh.
    for metric, column in (("money", "used_money"), ("traffic", "used_bytes")):
        rows = [{"id": states[limit.id][0], column: used[limit.id], "evaluated_at": now}
                for limit in reached + near if limit.metric == metric]
        if rows:
            session.execute(update(SpendingLimitState), rows)
    acted = _claim(session, [states[limit.id][0] for limit in reached], "acted_revision",
                   "acted_at", now)
    # Reaching the limit says more than the warning: it is not sent after.
    _claim(session, [states[limit.id][0] for limit in reached], "warned_revision",
           "warned_at", now)
    warned = _claim(session, [states[limit.id][0] for limit in near], "warned_revision",
                    "warned_at", now)
    outcome.acted = [limit.id for limit in reached if limit.id in acted]
    outcome.warned = [limit.id for limit in near if limit.id in warned]
    notices = []
    for limit in limits:
        if limit.id not in acted and limit.id not in warned:
            continue
        fields = {"used": _quantity(limit.metric, used[limit.id]),
                  "limit": _quantity(limit.metric, figure(limit)), "month": month.label}
        if limit.id in acted:
            notices.append((limit, ACTION_NOTICES[limit.action], fields))
        else:
            notices.append((limit, "spend-warning", dict(fields, percent=limit.warn_percent)))
    _act(session, [limit for limit in reached if limit.id in acted], covered, month, now)
    outcome.notices = _notify(session, notices, covered, month, default_language)
    if outcome.warned or outcome.acted:
        log.info("spending.evaluated month=%s limits=%d warned=%d acted=%d", month.label,
                 outcome.limits, len(outcome.warned), len(outcome.acted))
    return outcome


ACTION_NOTICES = {"notify": "spend-reached", "throttle": "spend-throttled",
                  "block_extras": "spend-blocked"}


def _notify(session: Session, notices, covered: dict[int, list[int]], month: Month,
            default_language: str | None) -> int:
    """Queue (limit, kind, fields) notices to the limits' accounts in one
    INSERT; keyed by limit, month, revision and account."""
    wanted = {a for limit, _kind, _fields in notices for a in covered[limit.id]}
    if not wanted:
        return 0
    accounts = {account.id: account for account in session.scalars(
        select(Account).where(among(session, Account.id, wanted), Account.state != "closed"))}
    items = [(accounts[a], kind, f"{kind}:{limit.id}:{month.label}:r{limit.revision}:{a}",
              fields)
             for limit, kind, fields in notices for a in covered[limit.id] if a in accounts]
    return notify.notify_many(session, items, default_language=default_language)


def _act(session: Session, limits, covered: dict[int, list[int]], month: Month,
         now: dt.datetime) -> None:
    """Throttle or block the extras of every account of these limits: one
    UPDATE an action."""
    slow = sorted({a for l in limits if l.action == "throttle" for a in covered[l.id]})
    if slow:
        slowed = session.scalars(
            update(Account).where(among(session, Account.id, slow),
                                  or_(Account.limit_throttled_until.is_(None),
                                      Account.limit_throttled_until < month.end))
            .values(limit_throttled_until=month.end, version=Account.version + 1)
            .returning(Account.id)).all()
        _profile_changed(session, slowed, "limit:reached", now)
    block = sorted({a for l in limits if l.action == "block_extras" for a in covered[l.id]})
    if block:
        session.execute(update(Account).where(among(session, Account.id, block))
                        .values(extras_blocked_until=month.end))


def _lift(session: Session, limit: SpendingLimit, now: dt.datetime, timezone: str) -> None:
    """Undo what ``limit`` did this month, except on accounts another limit
    with the same action holds this month."""
    month = month_of(now, timezone)
    state = session.scalar(select(SpendingLimitState).where(
        SpendingLimitState.limit_id == limit.id, SpendingLimitState.month == month.label))
    if state is None or state.acted_revision is None:
        return
    state.lifted_at = now
    if limit.action not in ("throttle", "block_extras"):
        return
    others = list(session.scalars(
        select(SpendingLimit).join(SpendingLimitState, and_(
            SpendingLimitState.limit_id == SpendingLimit.id,
            SpendingLimitState.month == month.label,
            SpendingLimitState.acted_revision == SpendingLimit.revision))
        .where(SpendingLimit.id != limit.id, SpendingLimit.action == limit.action)))
    covered = members(session, [limit, *others])
    held = {a for other in others for a in covered[other.id]}
    freed = [a for a in covered[limit.id] if a not in held]
    if not freed:
        return
    if limit.action == "throttle":
        lifted = session.scalars(
            update(Account).where(among(session, Account.id, freed),
                                  Account.limit_throttled_until.is_not(None))
            .values(limit_throttled_until=None, version=Account.version + 1)
            .returning(Account.id)).all()
        _profile_changed(session, lifted, f"limit:{limit.id}:lifted", now)
    else:
        session.execute(update(Account).where(among(session, Account.id, freed))
                        .values(extras_blocked_until=None))


# -- extras --------------------------------------------------------------------

def extras_refusal(account: Account, now: dt.datetime) -> str | None:
    """Why this account may not buy an option or a package now (None: it may)."""
    until = account.extras_blocked_until
    if until is not None and now < until:
        return ("the monthly spending limit is reached: turbo, options and packages cannot "
                "be bought until the next month or until the limit is raised")
    return None


def check_extras(account: Account, now: dt.datetime) -> None:
    reason = extras_refusal(account, now)
    if reason is not None:
        raise DomainError(reason)


# -- reports -------------------------------------------------------------------

@dataclass
class SpendRow:
    account_id: int
    number: str
    name: str
    unit_id: int | None
    unit_name: str
    services: dict[str, Decimal]
    traffic_bytes: int

    @property
    def total(self) -> Decimal:
        return sum(self.services.values(), Decimal("0.00"))


@dataclass
class SpendReport:
    start: dt.date
    end: dt.date          # inclusive
    rows: list[SpendRow]

    def units(self) -> list[tuple[int | None, str, dict[str, Decimal], Decimal]]:
        """Branch totals: (unit, name, by service, total), in the rows' order."""
        totals: dict[int | None, dict[str, Decimal]] = {}
        names: dict[int | None, str] = {}
        for row in self.rows:
            bucket = totals.setdefault(row.unit_id, {s: Decimal("0.00")
                                                     for s in SPENDING_SERVICES})
            names[row.unit_id] = row.unit_name
            for service, amount in row.services.items():
                bucket[service] += amount
        return [(unit, names[unit], by_service, sum(by_service.values(), Decimal("0.00")))
                for unit, by_service in totals.items()]

    def totals(self) -> dict[str, Decimal]:
        return {service: sum((row.services[service] for row in self.rows), Decimal("0.00"))
                for service in SPENDING_SERVICES}

    @property
    def total(self) -> Decimal:
        return sum(self.totals().values(), Decimal("0.00"))

    def as_dict(self) -> dict:
        return {"from": self.start.isoformat(), "to": self.end.isoformat(),
                "accounts": [{"account": row.number, "name": row.name, "unit": row.unit_name,
                              "unit_id": row.unit_id,
                              **{s: str(row.services[s]) for s in SPENDING_SERVICES},
                              "total": str(row.total), "traffic_bytes": row.traffic_bytes}
                             for row in self.rows],
                "units": [{"unit_id": unit, "unit": name,
                           **{s: str(by_service[s]) for s in SPENDING_SERVICES},
                           "total": str(total)}
                          for unit, name, by_service, total in self.units()],
                "totals": {**{s: str(v) for s, v in self.totals().items()},
                           "total": str(self.total)}}


def report(session: Session, account_ids: list[int], first: dt.date, last: dt.date,
           timezone: str, units: dict[int, tuple[int | None, str]] | None = None
           ) -> SpendReport:
    """Spending of these accounts over the operator's days [first, last], by
    service, one row an account; ``units``: {account: (unit id, unit name)}
    for branch totals. Two grouped queries, whatever the number of accounts."""
    start, end = day_bounds(first, last, timezone)
    if (last - first).days > 3660:
        raise DomainError("a report covers at most ten years")
    ids = sorted(set(account_ids))
    spent = charges(session, start, end, ids) if ids else {}
    used = traffic_bytes(session, start, end, ids) if ids else {}
    units = units or {}
    rows = []
    for account_id, number, name in session.execute(
            select(Account.id, Account.number, Account.name).where(among(session, Account.id, ids))
            .order_by(Account.number)):
        unit_id, unit_name = units.get(account_id, (None, ""))
        by_service = {s: spent.get(account_id, {}).get(s, Decimal("0.00"))
                      for s in SPENDING_SERVICES}
        rows.append(SpendRow(account_id, number, name, unit_id, unit_name, by_service,
                             used.get(account_id, 0)))
    rows.sort(key=lambda row: (row.unit_name, row.number))
    return SpendReport(first, last, rows)
