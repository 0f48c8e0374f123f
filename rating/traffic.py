"""Traffic charges: usage over the tariff's prepaid volume, priced per GB by
traffic class, with time-of-day windows priced their own way (e.g. night
unlimited, or half price in the evening: rating.timewindows).

Usage comes from the traffic rollups — NetFlow's, or RADIUS octets rolled
up the same way — chosen per tariff (``Tariff.usage_source``). The rollups
belong to the collector; rating reads them as plain tables so that it
imports nothing of the collector, through ``usage()``: the 5-minute,
hourly and daily tiers as one relation (collector.tiers).

One charge per account and hour, keyed ``traffic:ACCOUNT:HOUR``: a job run
twice, on two nodes or after a crash charges once. An hour is charged once
it is ``SETTLE`` old, and looked at again on every run for ``late_hours``
(settings ``[traffic]``): flows exported late (a router's buffered export,
a collector catching up) raise the hour's amount, and the difference is
billed as an adjustment keyed ``traffic:ACCOUNT:HOUR:rN`` — the revision
N is the number of entries the hour has, so each difference is billed once
and a rerun that sees nothing new writes nothing.

Tariff.rules (JSON), all optional::

    {"class_prices": {"local": "0", "internet": "1.50"},   # per GB, else price_per_gb
     "windows": [{"start": 1, "end": 7, "price": "0"}],     # local [start, end)
     "directions": ["in"]}                                   # billed directions

Traffic in a window with a price costs that per GB (classes free outside
stay free) and neither uses nor counts towards the prepaid volume; a window
with only a speed prices its traffic as any other hour.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import (BigInteger, DateTime, Integer, String, and_, column, func, or_, select,
                        table, union_all)
from sqlalchemy.orm import Session

from config.db import money
from rating import ledger, timewindows
from rating.models import Account, AccountOption, LedgerEntry, OptionType, Tariff

SETTLE = dt.timedelta(minutes=15)
GB = 10 ** 9
MB = 10 ** 6
_CENT = Decimal("0.01")

def _tier_table(name: str):
    return table(name, column("account_id", Integer), column("interval_start", DateTime),
                 column("traffic_class", String), column("direction", String),
                 column("bytes", BigInteger), column("packets", BigInteger),
                 column("source", String))


FINE_ROLLUPS = _tier_table("traffic_rollups")
DETAIL_ROLLUPS = _tier_table("traffic_rollups_detail")
HOURLY_ROLLUPS = _tier_table("traffic_rollups_hourly")
DAILY_ROLLUPS = _tier_table("traffic_rollups_daily")
TIERS = table("traffic_tiers", column("tier", String), column("complete_from", DateTime))


def _complete_from(tier: str):
    return select(TIERS.c.complete_from).where(TIERS.c.tier == tier).scalar_subquery()


def _branch(tier_table):
    return select(*(tier_table.c[c] for c in ("account_id", "interval_start", "traffic_class",
                                              "direction", "bytes", "packets", "source")))


def usage(name: str = "traffic_usage"):
    """The traffic rollups of every tier as one relation with the 5-minute
    tier's columns (collector.tiers): every 5-minute row, hourly rows before
    the 5-minute tier's start, daily rows before the hourly tier's start.
    The tiers' starts are read in the same statement, so a tiering run
    committing meanwhile is seen whole or not at all, and no time is
    counted in two tiers. Readers filter it as they filtered the table
    (account, range of ``interval_start``): PostgreSQL pushes the filters
    into each branch's index."""
    return union_all(
        _branch(FINE_ROLLUPS),
        _branch(HOURLY_ROLLUPS).where(HOURLY_ROLLUPS.c.interval_start < _complete_from("5min")),
        _branch(DAILY_ROLLUPS).where(DAILY_ROLLUPS.c.interval_start < _complete_from("hourly")),
    ).subquery(name)


def detail_usage(name: str = "traffic_detail"):
    """``usage()`` at the finest resolution kept, for the cabinet's day
    graph: every 5-minute row, the detail tier's 5-minute rows of the days
    already summed into hours (collector.tiers), hourly rows before the
    detail tier's start and daily rows before the hourly tier's. The same
    sums as ``usage()`` over any range, drawn finer."""
    fine_from = _complete_from("5min")
    detail_from = func.coalesce(_complete_from("detail"), fine_from)
    return union_all(
        _branch(FINE_ROLLUPS),
        _branch(DETAIL_ROLLUPS).where(DETAIL_ROLLUPS.c.interval_start < fine_from),
        _branch(HOURLY_ROLLUPS).where(HOURLY_ROLLUPS.c.interval_start < detail_from),
        _branch(DAILY_ROLLUPS).where(DAILY_ROLLUPS.c.interval_start < _complete_from("hourly")),
    ).subquery(name)


# Rating's and the reports' reads of traffic go through every tier.
rollups = usage()


@dataclass(frozen=True)
class TrafficRules:
    price_per_gb: Decimal
    prepaid_bytes: int
    class_prices: dict[str, Decimal] = field(default_factory=dict)
    windows: tuple[timewindows.TimeWindow, ...] = ()
    directions: tuple[str, ...] = ("in",)

    @classmethod
    def of(cls, tariff: Tariff) -> "TrafficRules":
        rules = tariff.rules or {}
        return cls(price_per_gb=tariff.price_per_gb, prepaid_bytes=tariff.prepaid_mb * MB,
                   class_prices={k: money(v) for k, v in rules.get("class_prices", {}).items()},
                   windows=tuple(w for w in timewindows.from_rules(rules)
                                 if w.price is not None),
                   directions=tuple(rules.get("directions", ["in"])))

    def price(self, traffic_class: str) -> Decimal:
        return self.class_prices.get(traffic_class, self.price_per_gb)

    def window_price(self, local_hour: int) -> Decimal | None:
        """The per-GB price of the window holding at this local hour, if any."""
        window = timewindows.at(self.windows, local_hour)
        return None if window is None else window.price

    def free_at(self, local_hour: int) -> bool:
        return self.window_price(local_hour) == 0

    @property
    def charges_anything(self) -> bool:
        return self.price_per_gb > 0 or any(p > 0 for p in self.class_prices.values())


def hour_charge(rules: TrafficRules, used_before: int, by_class: dict[str, int],
                window_price: Decimal | None = None) -> tuple[Decimal, int]:
    """(amount, billable bytes this hour) given the month's billable use
    before the hour. The prepaid volume is used up by classes that cost
    money, in order of price, cheapest first; in a priced window every
    billable class costs the window's price and the prepaid volume is left
    alone. The amount is rounded half up to kopecks per hour."""
    billable = {c: b for c, b in by_class.items() if rules.price(c) > 0 and b > 0}
    if window_price is not None:
        amount = Decimal(sum(billable.values())) * window_price / GB
        return amount.quantize(_CENT, rounding=ROUND_HALF_UP), sum(billable.values())
    remaining_prepaid = max(0, rules.prepaid_bytes - used_before)
    amount = Decimal(0)
    for traffic_class in sorted(billable, key=rules.price):
        volume = billable[traffic_class]
        covered = min(volume, remaining_prepaid)
        remaining_prepaid -= covered
        amount += Decimal(volume - covered) * rules.price(traffic_class) / GB
    return amount.quantize(_CENT, rounding=ROUND_HALF_UP), sum(billable.values())


def _local_hour(hour_utc: dt.datetime, zone: ZoneInfo) -> int:
    return hour_utc.replace(tzinfo=dt.timezone.utc).astimezone(zone).hour


def _usage(session: Session, account_ids, start: dt.datetime, end: dt.datetime,
           directions, source: str):
    return session.execute(
        select(rollups.c.account_id, rollups.c.interval_start, rollups.c.traffic_class,
               func.sum(rollups.c.bytes))
        .where(rollups.c.account_id.in_(account_ids), rollups.c.interval_start >= start,
               rollups.c.interval_start < end, rollups.c.direction.in_(directions),
               rollups.c.source == source)
        .group_by(rollups.c.account_id, rollups.c.interval_start, rollups.c.traffic_class)).all()


def _traffic_packs(session: Session, account_ids, month_start: dt.datetime,
                   hour: dt.datetime) -> dict[int, int]:
    """Extra prepaid bytes from traffic packs bought this month before ``hour``."""
    rows = session.execute(
        select(AccountOption.account_id, func.sum(OptionType.traffic_mb))
        .join(OptionType, OptionType.id == AccountOption.option_type_id)
        .where(AccountOption.account_id.in_(account_ids), OptionType.kind == "traffic",
               AccountOption.starts_at >= month_start, AccountOption.starts_at < hour)
        .group_by(AccountOption.account_id)).all()
    return {account_id: int(total) * MB for account_id, total in rows}


def charge_hour(session: Session, hour: dt.datetime, timezone: str, *,
                author: str = "scheduler:traffic") -> int:
    """Charge every account's traffic for the UTC hour starting at ``hour``."""
    zone = ZoneInfo(timezone)
    hour = hour.replace(minute=0, second=0, microsecond=0)
    local = hour.replace(tzinfo=dt.timezone.utc).astimezone(zone)
    month_start = local.replace(day=1, hour=0).astimezone(dt.timezone.utc).replace(tzinfo=None)
    charged = 0
    all_tariffs = session.scalars(select(Tariff)).all()
    tariffs = {t.id: TrafficRules.of(t) for t in all_tariffs}
    by_source: dict[tuple[str, tuple[str, ...]], list[int]] = {}
    for tariff in all_tariffs:
        rules = tariffs[tariff.id]
        if rules.charges_anything and not rules.free_at(_local_hour(hour, zone)):
            by_source.setdefault((tariff.usage_source, rules.directions), []).append(tariff.id)
    for (source, directions), tariff_ids in by_source.items():
        accounts = dict(session.execute(select(Account.id, Account.tariff_id).where(
            Account.tariff_id.in_(tariff_ids), Account.state == "active")).all())
        if not accounts:
            continue
        ids = list(accounts)
        this_hour: dict[int, dict[str, int]] = {}
        for account_id, _, traffic_class, volume in _usage(
                session, ids, hour, hour + dt.timedelta(hours=1), directions, source):
            this_hour.setdefault(account_id, {}).setdefault(traffic_class, 0)
            this_hour[account_id][traffic_class] += int(volume)
        if not this_hour:
            continue
        # The month's billable use before this hour, priced windows left out.
        before: dict[int, int] = {}
        for account_id, interval_start, traffic_class, volume in _usage(
                session, list(this_hour), month_start, hour, directions, source):
            rules = tariffs[accounts[account_id]]
            if rules.price(traffic_class) > 0 and rules.window_price(
                    _local_hour(interval_start, zone)) is None:
                before[account_id] = before.get(account_id, 0) + int(volume)
        packs = _traffic_packs(session, list(this_hour), month_start, hour)
        billed = _billed(session, list(this_hour), hour)
        for account_id, by_class in this_hour.items():
            rules = tariffs[accounts[account_id]]
            if packs.get(account_id):
                rules = replace(rules, prepaid_bytes=rules.prepaid_bytes + packs[account_id])
            window_price = rules.window_price(_local_hour(hour, zone))
            amount, volume = hour_charge(rules, before.get(account_id, 0), by_class,
                                         window_price)
            so_far, revision = billed.get(account_id, (Decimal(0), 0))
            difference = amount - so_far
            if difference <= 0:
                continue
            key = hour_key(account_id, hour, revision)
            memo = (f"traffic {hour:%Y-%m-%d %H}:00 UTC: {volume / GB:.3f} GB, " + (
                "prepaid volume deducted" if window_price is None
                else f"{window_price} per GB in the time window"))
            if revision:
                memo = (f"late traffic for {hour:%Y-%m-%d %H}:00 UTC: now {volume / GB:.3f} GB, "
                        f"{amount} in all, {so_far} billed before")
            posting = ledger.post(session, account_id=account_id, amount=-difference,
                                  kind="traffic", key=key, author=author, memo=memo,
                                  memo_code="traffic",
                                  memo_args={"hour": hour.isoformat(),
                                             "gb": f"{volume / GB:.3f}",
                                             "late": bool(revision)})
            charged += posting.created
    return charged


def hour_key(account_id: int, hour: dt.datetime, revision: int = 0) -> str:
    """The ledger key of an hour's traffic charge (revision 0) and of each
    late adjustment after it."""
    base = f"traffic:{account_id}:{hour:%Y-%m-%dT%H}"
    return base if revision == 0 else f"{base}:r{revision}"


def _billed(session: Session, account_ids, hour: dt.datetime) -> dict[int, tuple[Decimal, int]]:
    """What each account's traffic for ``hour`` has cost so far, and how
    many entries that took: a key range per account (the hour's key and its
    ``:rN`` revisions sort together, bytewise), read through the unique
    index on the key."""
    found: dict[int, tuple[Decimal, int]] = {}
    key = LedgerEntry.idempotency_key
    for start in range(0, len(account_ids), 500):
        ranges = [and_(key >= hour_key(a, hour), key < hour_key(a, hour) + ";")
                  for a in account_ids[start:start + 500]]
        for account_id, amount in session.execute(
                select(LedgerEntry.account_id, LedgerEntry.amount).where(or_(*ranges))):
            total, count = found.get(account_id, (Decimal(0), 0))
            found[account_id] = (total - amount, count + 1)
    return found


def charge_due(session: Session, now: dt.datetime, timezone: str, hours_back: int = 48) -> int:
    """Charge the settled hours of the last ``hours_back`` hours, billing
    what arrived late as adjustments (idempotent)."""
    last = (now - SETTLE).replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=1)
    total = 0
    for back in range(hours_back - 1, -1, -1):
        total += charge_hour(session, last - dt.timedelta(hours=back), timezone)
    return total


# -- what a session cost ---------------------------------------------------------
#
# The ledger's hourly traffic charges are what the subscriber paid: they
# already deduct the prepaid volume, free hours and traffic packs, and
# include late adjustments. Pricing a session's octets again at the
# tariff's per-GB price would disagree with the statement whenever any of
# those applied, so a session's cost is its share of the hourly charges:
# an hour's charge goes to the sessions open in that hour, split by how
# long each was open in it (one session at a time, the usual case, gets
# the whole hour). The shares are kopecks that add up to the hour's charge.

HOUR = dt.timedelta(hours=1)


def hourly_charges(session: Session, account_id: int, first_hour: dt.datetime,
                   last_hour: dt.datetime) -> dict[dt.datetime, Decimal]:
    """{UTC hour: what its traffic cost, adjustments included} for the
    hours [first_hour, last_hour], read as one range of the ledger's
    unique key (``traffic:ACCOUNT:HOUR[:rN]`` sorts by hour)."""
    key = LedgerEntry.idempotency_key
    low = hour_key(account_id, first_hour.replace(minute=0, second=0, microsecond=0))
    high = hour_key(account_id, last_hour.replace(minute=0, second=0, microsecond=0)) + ";"
    charges: dict[dt.datetime, Decimal] = {}
    for entry_key, amount in session.execute(
            select(LedgerEntry.idempotency_key, LedgerEntry.amount)
            .where(key >= low, key < high, LedgerEntry.kind == "traffic")):
        hour = dt.datetime.strptime(entry_key.split(":")[2], "%Y-%m-%dT%H")
        charges[hour] = charges.get(hour, Decimal(0)) - amount
    return charges


def _shares(amount: Decimal, weights: list[float]) -> list[Decimal]:
    """``amount`` in kopecks split by weight, the rounding remainder to the
    largest remainders, so the shares add up to the amount exactly."""
    sign = -1 if amount < 0 else 1
    cents = int((abs(amount) / _CENT).to_integral_value())
    total = sum(weights)
    exact = [cents * w / total for w in weights]
    whole = [int(x) for x in exact]
    order = sorted(range(len(weights)), key=lambda i: exact[i] - whole[i], reverse=True)
    for i in order[:cents - sum(whole)]:
        whole[i] += 1
    return [Decimal(sign * c) * _CENT for c in whole]


def session_costs(charges: dict[dt.datetime, Decimal],
                  sessions: list[tuple[dt.datetime, dt.datetime | None]],
                  now: dt.datetime) -> list[Decimal]:
    """Each session's share of the hourly charges (see above), in the order
    given; a session still open counts as open until ``now``."""
    costs = [Decimal("0.00") for _ in sessions]
    for hour, amount in charges.items():
        if amount == 0:
            continue
        end = hour + HOUR
        overlaps = [max(dt.timedelta(0), min(stop or now, end) - max(start, hour))
                    for start, stop in sessions]
        weights = [o.total_seconds() for o in overlaps]
        if not any(weights):
            continue  # traffic outside any session (e.g. a static address)
        for index, share in enumerate(_shares(amount, weights)):
            costs[index] += share
    return costs
