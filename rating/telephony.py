"""Telephony: numbers as services, rate tables, call rating, calls in the ledger.

Rules:
- a call is stored once per (source, external_id): a CDR file imported
  twice or an Accounting-Request retransmitted adds nothing;
- numbers are rated as E.164 digits (``normalise``, settings ``[telephony]``);
  the zone and price come from the longest prefix of the called number in
  the plan's rate table (``RateTable.match``);
- billed seconds follow the first/next increment rule (``billed_seconds``):
  60/60 bills per started minute, 30/6 a first half minute then 6-second
  steps, 1/1 per second; unanswered calls, incoming calls, calls to the
  account's own numbers and (by the plan) on-net calls cost nothing; the
  plan's package minutes are used first, in the order the calls started;
- money moves through the ledger as ONE entry per account, local day and
  batch (kind ``call``, key ``call:ACCOUNT:DAY:BATCH``); each call names its
  entry in ``ledger_key``. A million calls become some tens of thousands of
  entries, written set-based with the balances in the same transaction
  (docs/telephony.md says why not one entry per call);
- re-rating reverses an entry and posts a new one for its calls; it never
  edits an entry.

``record_calls`` is what RADIUS accounting (Kamailio acc_radius) and the
CDR import both call; the caller owns the transaction.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import json
import logging
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Iterable, NamedTuple, Sequence
from zoneinfo import ZoneInfo

from sqlalchemy import Integer, String, and_, any_, bindparam, cast, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.types import NullType

from config.db import Money, utcnow
from rating.choices import CALL_DISPOSITIONS
from rating.models import (Account, Call, LedgerEntry, VoiceAllowance, VoicePlan, VoiceRate,
                           VoiceService)
from rating.validate import DomainError

log = logging.getLogger(__name__)

CENT = Decimal("0.01")
SIXTY = Decimal(60)
# Rows per statement; a CDR file is recorded in batches of this many.
BATCH_CALLS = 100_000
_SQLITE_IN = 900


# -- numbers ---------------------------------------------------------------------

@dataclass(frozen=True)
class NumberRules:
    """How a dialled number becomes E.164 digits (settings ``[telephony]``)."""

    country_code: str = "7"
    national_prefix: str = "8"
    national_length: int = 10
    international_prefix: str = "810"
    local_area: str = "495"
    local_length: int = 7

    @classmethod
    def from_settings(cls, settings) -> "NumberRules":
        section = settings.section("telephony")
        return cls(**{name: section[name] for name in (
            "country_code", "national_prefix", "national_length", "international_prefix",
            "local_area", "local_length")})


def normalise(raw: str | None, rules: NumberRules = NumberRules()) -> str:
    """E.164 digits without "+": "+7 (495) 123-45-67", "84951234567",
    "1234567" (local) all give "74951234567"; "8104420..." and "004420..."
    give "4420...". A SIP URI's user part is taken ("sip:8495...@host").
    What fits no rule (a short service number, "112") stays as its digits."""
    if not raw:
        return ""
    text_ = raw.strip()
    if text_.startswith(("sip:", "sips:", "tel:")):
        text_ = text_.split(":", 1)[1]
    text_ = text_.split("@", 1)[0].split(";", 1)[0]
    plus = text_.startswith("+")
    digits = text_ if text_.isdigit() else "".join(filter(str.isdigit, text_))
    if plus:
        return digits
    if rules.international_prefix and digits.startswith(rules.international_prefix) \
            and len(digits) > len(rules.international_prefix) + 6:
        return digits[len(rules.international_prefix):]
    if digits.startswith("00") and len(digits) > 8:
        return digits[2:]
    national = rules.national_length
    if len(digits) == len(rules.national_prefix) + national and rules.national_prefix \
            and digits.startswith(rules.national_prefix):
        return rules.country_code + digits[len(rules.national_prefix):]
    if len(digits) == len(rules.country_code) + national and digits.startswith(rules.country_code):
        return digits
    if len(digits) == national:
        return rules.country_code + digits
    if rules.local_length and len(digits) == rules.local_length:
        return rules.country_code + rules.local_area + digits
    return digits


# -- rates -------------------------------------------------------------------------

@dataclass(frozen=True)
class Rate:
    prefix: str
    zone: str
    price_per_minute: Decimal
    offpeak_price_per_minute: Decimal | None = None
    first_increment_s: int = 60
    next_increment_s: int = 60
    connection_fee: Decimal = Decimal("0.00")


class RateTable:
    """Longest prefix match: one dict per prefix length, tried longest
    first. Tens of thousands of prefixes use a handful of lengths, so a
    number costs a few dict lookups."""

    def __init__(self, rates: Iterable[Rate]):
        by_length: dict[int, dict[str, Rate]] = defaultdict(dict)
        for rate in rates:
            by_length[len(rate.prefix)][rate.prefix] = rate
        self._levels = [(length, by_length[length]) for length in sorted(by_length, reverse=True)]
        self.size = sum(len(level) for _, level in self._levels)

    def match(self, number: str) -> Rate | None:
        for length, level in self._levels:
            if length <= len(number):
                found = level.get(number[:length])
                if found is not None:
                    return found
        return None


def billed_seconds(billsec: int, first_s: int, next_s: int) -> int:
    """Seconds charged for ``billsec`` answered seconds: the first increment
    whole, then whole next increments (60/60: 59 -> 60, 60 -> 60, 61 -> 120;
    30/6: 29 -> 30, 31 -> 36; 1/1: as is). Nothing for an unanswered call."""
    if billsec <= 0:
        return 0
    if billsec <= first_s:
        return first_s
    rest = billsec - first_s
    return first_s + -(-rest // next_s) * next_s


@functools.lru_cache(maxsize=65536)
def charge_for(seconds: int, price_per_minute: Decimal, connection_fee: Decimal) -> Decimal:
    """The money for ``seconds`` billed beyond the package; rounded half up to kopecks."""
    if seconds <= 0:
        return Decimal("0.00")
    return (connection_fee + price_per_minute * seconds / SIXTY).quantize(CENT, ROUND_HALF_UP)


@dataclass(frozen=True)
class PlanRules:
    id: int
    name: str
    free_seconds: int
    free_zones: frozenset
    offpeak_from_hour: int
    offpeak_to_hour: int
    weekend_offpeak: bool
    onnet_free: bool
    rates_version: int

    def offpeak(self, local: dt.datetime) -> bool:
        if self.weekend_offpeak and local.weekday() >= 5:
            return True
        low, high = self.offpeak_from_hour, self.offpeak_to_hour
        if low == high:
            return False
        if low < high:
            return low <= local.hour < high
        return local.hour >= low or local.hour < high

    def in_package(self, zone: str) -> bool:
        return self.free_seconds > 0 and (not self.free_zones or zone in self.free_zones)


def _plan_rules(plan: VoicePlan) -> PlanRules:
    return PlanRules(plan.id, plan.name, plan.free_seconds, frozenset(plan.free_zones or ()),
                     plan.offpeak_from_hour, plan.offpeak_to_hour, plan.weekend_offpeak,
                     plan.onnet_free, plan.rates_version)


# -- the interface RADIUS accounting and the CDR import use ----------------------------

class CallInput(NamedTuple):
    """One call as a switch reported it. (A tuple: a CDR file makes a
    million; a frozen dataclass costs three times as much to make.)"""

    source: str            # 'radius:<nas name>', 'asterisk', 'freeswitch'
    external_id: str       # SIP Call-ID / Asterisk uniqueid / FreeSWITCH uuid
    calling: str           # raw A-number as received
    called: str            # raw B-number
    start: dt.datetime     # naive UTC
    answer: dt.datetime | None
    end: dt.datetime | None
    billsec: int           # answered seconds (0 = unanswered)
    disposition: str       # 'answered' | 'no_answer' | 'busy' | 'failed'
    sip_code: int | None = None
    login: str | None = None


@dataclass
class RecordResult:
    inserted: int = 0
    duplicates: int = 0
    charged: Decimal = Decimal("0.00")
    entries: int = 0
    unmatched: int = 0
    accounts: set = field(default_factory=set)


class Rated(NamedTuple):
    """A call's rating: who pays, what, and why. (A tuple: a million are
    made per import, and a frozen dataclass costs three times as much.)"""

    account_id: int | None
    service_id: int | None
    direction: str
    reason: str
    zone: str | None = None
    prefix: str | None = None
    billed_seconds: int = 0
    free_seconds: int = 0
    price_per_minute: Decimal | None = None
    charge: Decimal = Decimal("0.00")


def rate_call(*, caller: tuple[int, int, int] | None, callee: tuple[int, int, int] | None,
              called: str, billsec: int, answered: bool, local_start: dt.datetime,
              plan: PlanRules | None, table: RateTable | None, free_left: int | None,
              fixed_free: int | None = None) -> Rated:
    """Rate one call. ``caller``/``callee``: (account id, service id, plan
    id) of the numbers that are ours; ``free_left``: package seconds the
    caller's service has left this month (None: no package);
    ``fixed_free``: re-rating keeps the package seconds a call used."""
    if caller is None:
        if callee is None:
            return Rated(None, None, "unknown", "unknown_number")
        return Rated(callee[0], callee[1], "in", "incoming")
    account_id, service_id = caller[0], caller[1]
    direction = "onnet" if callee is not None else "out"
    if not answered or billsec <= 0:
        return Rated(account_id, service_id, direction, "unanswered")
    if callee is not None and callee[0] == account_id:
        return Rated(account_id, service_id, direction, "own")
    if callee is not None and plan is not None and plan.onnet_free:
        return Rated(account_id, service_id, direction, "onnet")
    rate = table.match(called) if table is not None else None
    if rate is None or plan is None:
        return Rated(account_id, service_id, direction, "no_rate")
    billed = billed_seconds(billsec, rate.first_increment_s, rate.next_increment_s)
    if fixed_free is not None:
        free = min(fixed_free, billed)
    elif free_left and plan.in_package(rate.zone):
        free = min(free_left, billed)
    else:
        free = 0
    price = rate.price_per_minute
    if rate.offpeak_price_per_minute is not None and plan.offpeak(local_start):
        price = rate.offpeak_price_per_minute
    charge = charge_for(billed - free, price, rate.connection_fee)
    return Rated(account_id, service_id, direction, "package" if free else "rated", rate.zone,
                 rate.prefix, billed, free, price, charge)


# -- settings, plans and services from the database ---------------------------------------

@dataclass(frozen=True)
class Config:
    rules: NumberRules
    timezone: str

    @classmethod
    def of(cls, settings=None) -> "Config":
        if settings is None:
            from config.settings import load_settings
            settings = load_settings()
        return cls(NumberRules.from_settings(settings), settings.get("", "timezone"))


# (engine id, plan id) -> (rates_version, RateTable)
_tables: dict[tuple[int, int], tuple[int, RateTable]] = {}


def rate_table(session: Session, plan: PlanRules) -> RateTable:
    """The plan's rate table, read once per rates_version."""
    key = (id(session.get_bind().engine if hasattr(session.get_bind(), "engine")
              else session.get_bind()), plan.id)
    cached = _tables.get(key)
    if cached is not None and cached[0] == plan.rates_version:
        return cached[1]
    rows = session.execute(select(
        VoiceRate.prefix, VoiceRate.zone, VoiceRate.price_per_minute,
        VoiceRate.offpeak_price_per_minute, VoiceRate.first_increment_s,
        VoiceRate.next_increment_s, VoiceRate.connection_fee).where(
        VoiceRate.plan_id == plan.id)).all()
    table = RateTable(Rate(*row) for row in rows)
    _tables[key] = (plan.rates_version, table)
    return table


def _postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _where_in(session: Session, column, values: list, integer: bool = False) -> list:
    """``column IN values`` as one array parameter on PostgreSQL, chunks on SQLite."""
    if not values:
        return []
    if _postgres(session):
        # The array as one literal (``_array``): psycopg's list dumper costs
        # more in Python than the query does in the database. Untyped, so
        # that the CAST makes a constant array (a "::VARCHAR" first would
        # leave an expression, and PostgreSQL then searches the array row
        # by row instead of hashing it: minutes at 100,000 ids).
        kind = Integer if integer else String
        literal = bindparam("values", _array(values, "integer" if integer else "text"),
                            type_=NullType())
        return [column == any_(cast(literal, postgresql.ARRAY(kind)))]
    return [column.in_(values[start:start + _SQLITE_IN])
            for start in range(0, len(values), _SQLITE_IN)]


def _services(session: Session, numbers: set[str], logins: set[str]):
    """Active services by number and by login: (account, service, plan)."""
    by_number: dict[str, tuple[int, int, int]] = {}
    by_login: dict[str, tuple[int, int, int]] = {}
    columns = (VoiceService.account_id, VoiceService.id, VoiceService.plan_id)
    for condition in _where_in(session, VoiceService.number, sorted(n for n in numbers if n)):
        for account_id, service_id, plan_id, number in session.execute(
                select(*columns, VoiceService.number).where(condition,
                                                            VoiceService.state == "active")):
            by_number[number] = (account_id, service_id, plan_id)
    for condition in _where_in(session, VoiceService.login, sorted(n for n in logins if n)):
        for account_id, service_id, plan_id, login in session.execute(
                select(*columns, VoiceService.login).where(condition,
                                                           VoiceService.state == "active")):
            by_login[login] = (account_id, service_id, plan_id)
    return by_number, by_login


def _plans(session: Session, plan_ids: set[int]) -> dict[int, PlanRules]:
    if not plan_ids:
        return {}
    return {plan.id: _plan_rules(plan) for plan in session.scalars(
        select(VoicePlan).where(VoicePlan.id.in_(sorted(plan_ids))))}


def find_voice_service(session: Session, number_or_login: str, settings=None, *,
                       config: Config | None = None):
    """(account id, service) for an active number or SIP login, or None."""
    value = (number_or_login or "").strip()
    if not value:
        return None
    service = session.scalars(select(VoiceService).where(
        VoiceService.login == value, VoiceService.state == "active")).first()
    if service is None:
        number = normalise(value, (config or Config.of(settings)).rules)
        if number:
            service = session.scalars(select(VoiceService).where(
                VoiceService.number == number, VoiceService.state == "active")).first()
    return None if service is None else (service.account_id, service)


def may_call(session: Session, number_or_login: str, settings=None, *,
             config: Config | None = None) -> tuple[bool, str]:
    """Whether this number or login may make a call now, and why not.

    Barred: unknown, or its account closed, blocked or frozen, or on a
    rung of the balance ladder that blocks service (the ladder in force,
    rating.policies)."""
    from rating import policies
    found = find_voice_service(session, number_or_login, settings, config=config)
    if found is None:
        return False, "unknown number or login"
    account = session.get(Account, found[0])
    if account is None or account.state != "active":
        state = account.state if account is not None else "missing"
        return False, f"account is {state}"
    rung = policies.rung_named(account.profile, policies.ladder_in_force(session))
    if rung is not None and rung.mode == policies.BLOCK:
        return False, f"outgoing calls barred: {rung.description or rung.profile}"
    return True, "allowed"


class LocalClock:
    """UTC start times to the operator's local hour, day and month. Cached
    per UTC hour: a million calls ask the zone database a few hundred times
    (an offset changes only on the hour)."""

    def __init__(self, timezone: str):
        self.zone = ZoneInfo(timezone)
        self._hours: dict[tuple, tuple[dt.datetime, str, str]] = {}

    def __call__(self, moment: dt.datetime) -> tuple[dt.datetime, str, str]:
        """(local start of that hour, "YYYY-MM-DD", "YYYY-MM")"""
        key = (moment.year, moment.month, moment.day, moment.hour)
        found = self._hours.get(key)
        if found is None:
            hour = dt.datetime(*key, tzinfo=dt.timezone.utc).astimezone(self.zone) \
                .replace(tzinfo=None)
            day = hour.date().isoformat()
            found = self._hours[key] = (hour, day, day[:7])
        return found


# -- recording calls ----------------------------------------------------------------------

_CALL_COLUMNS = ("source", "external_id", "account_id", "service_id", "calling", "called",
                 "login", "start_at", "answer_at", "end_at", "billsec", "disposition",
                 "sip_code", "direction", "zone", "prefix", "billed_seconds", "free_seconds",
                 "price_per_minute", "charge", "reason", "ledger_key", "rating_version",
                 "created_at")


_MAX_BILLSEC = 7 * 86400


def _check(call: CallInput) -> None:
    if call.source and call.external_id and len(call.external_id) <= 150 \
            and len(call.source) <= 80 and call.disposition in CALL_DISPOSITIONS \
            and 0 <= call.billsec <= _MAX_BILLSEC and call.start.tzinfo is None:
        return  # the common case in one expression; the rest says what is wrong
    if not call.source or not call.external_id:
        raise DomainError("a call needs a source and an external id")
    if len(call.external_id) > 150 or len(call.source) > 80:
        raise DomainError(f"call {call.external_id[:40]!r}: the id or source is too long")
    if call.disposition not in CALL_DISPOSITIONS:
        raise DomainError(f"call {call.external_id!r}: disposition must be one of "
                          f"{', '.join(CALL_DISPOSITIONS)}, not {call.disposition!r}")
    if call.billsec < 0 or call.billsec > 7 * 86400:
        raise DomainError(f"call {call.external_id!r}: billsec {call.billsec} is out of range")
    if call.start.tzinfo is not None:
        raise DomainError(f"call {call.external_id!r}: times must be naive UTC")


def _existing(session: Session, calls: list[CallInput]) -> set[tuple[str, str]]:
    by_source: dict[str, list[str]] = defaultdict(list)
    for call in calls:
        by_source[call.source].append(call.external_id)
    found = set()
    for source, ids in by_source.items():
        for condition in _where_in(session, Call.external_id, ids):
            found.update((source, external_id) for external_id in session.scalars(
                select(Call.external_id).where(Call.source == source, condition)))
    return found


def _allowances(session: Session, wanted: set[tuple[int, str]]) -> dict[tuple[int, str], int]:
    """Package seconds used per (service, month), the rows locked on
    PostgreSQL so that two importers cannot both spend the same minutes.
    Rows missing (a service's first call of a month) are made first."""
    if not wanted:
        return {}
    used = _read_allowances(session, wanted)
    missing = wanted - used.keys()
    if missing:
        if _postgres(session):
            session.execute(text(
                "INSERT INTO voice_allowances (service_id, month, used_seconds) SELECT s, m, 0 "
                "FROM unnest(CAST(:services AS integer[]), CAST(:months AS text[])) AS w(s, m) "
                "ON CONFLICT (service_id, month) DO NOTHING"),
                {"services": _array([s for s, _ in missing], "integer"),
                 "months": _array([m for _, m in missing], "text")})
        else:
            session.execute(sqlite.insert(VoiceAllowance).on_conflict_do_nothing(
                index_elements=["service_id", "month"]),
                [{"service_id": s, "month": m, "used_seconds": 0} for s, m in sorted(missing)])
        used.update(_read_allowances(session, missing))
    return used


def _read_allowances(session: Session, wanted: set[tuple[int, str]]) -> dict:
    used = {}
    months = sorted({m for _, m in wanted})
    for condition in _where_in(session, VoiceAllowance.service_id,
                               sorted({s for s, _ in wanted}), integer=True):
        query = (select(VoiceAllowance.service_id, VoiceAllowance.month,
                        VoiceAllowance.used_seconds)
                 .where(condition, VoiceAllowance.month.in_(months))
                 .order_by(VoiceAllowance.service_id, VoiceAllowance.month))
        if _postgres(session):
            query = query.with_for_update()
        for service_id, month, seconds in session.execute(query):
            if (service_id, month) in wanted:
                used[(service_id, month)] = seconds
    return used


def _array(values, kind: str) -> str:
    """A PostgreSQL array literal: psycopg's own array dumper spends ~50 us a
    row in Python at this size; json.dumps (C) ~0.2. JSON's quoting is an
    array literal's as long as it escapes nothing but quotes; a value with
    a backslash or a control character takes the slow, exact way."""
    if kind in ("text", "integer"):
        dumped = json.dumps(values if isinstance(values, list) else list(values),
                            ensure_ascii=False, separators=(",", ":"))
        if "\\" not in dumped:
            return "{" + dumped[1:-1] + "}"  # JSON's null is an array literal's NULL too
    if kind == "text":
        return "{" + ",".join("NULL" if v is None else
                              '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
                              for v in values) + "}"
    if kind == "timestamp":
        return "{" + ",".join("NULL" if v is None else '"' + v.isoformat(" ") + '"'
                              for v in values) + "}"
    return "{" + ",".join("NULL" if v is None else str(v) for v in values) + "}"


_COPY_NULL = "\\N"
_COPY_CHUNK = 10_000


def _copy_text(rows: list[tuple]) -> str:
    """The rows in COPY's text format, built a column at a time (C loops,
    not a Python call per value). Only strings from a switch can hold a
    tab, a newline or a backslash; the counts of those in the result say
    whether any did, and then the exact, slower way escapes every field."""
    columns = []
    nulls = 0
    for column in zip(*rows):
        none = column.count(None)
        nulls += none
        sample = next((v for v in column if v is not None), None)
        if isinstance(sample, str):
            values = column if not none else [_COPY_NULL if v is None else v for v in column]
        elif isinstance(sample, dt.datetime):
            values = [_COPY_NULL if v is None else v.isoformat(" ") for v in column] if none \
                else [v.isoformat(" ") for v in column]
        else:
            values = [_COPY_NULL if v is None else str(v) for v in column] if none \
                else list(map(str, column))
        columns.append(values)
    body = "\n".join(map("\t".join, zip(*columns))) + "\n"
    if body.count("\t") == len(rows) * (len(columns) - 1) and body.count("\n") == len(rows) \
            and body.count("\\") == nulls and "\r" not in body:
        return body
    return "".join("\t".join(_COPY_NULL if v is None else _copy_escape(v) for v in row) + "\n"
                   for row in rows)


def _copy_escape(value) -> str:
    if isinstance(value, dt.datetime):
        return value.isoformat(" ")
    text_ = str(value)
    return (text_.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
            .replace("\r", "\\r"))


def _copy_calls(session: Session, rows: Iterable[tuple]) -> tuple[int, int]:
    """PostgreSQL: the rated calls in by COPY, under the source lock
    record_calls holds (so none of them can be there already); returns
    (rows, of them with no account). ``rows`` is consumed a chunk at a
    time while the COPY is open, so the database stores one chunk while
    this process rates the next."""
    inserted = unmatched = 0
    driver = session.connection().connection.driver_connection
    with driver.cursor() as cursor:
        with cursor.copy(f"COPY calls ({', '.join(_CALL_COLUMNS)}) FROM STDIN") as copy:
            rows = iter(rows)
            while chunk := list(itertools.islice(rows, _COPY_CHUNK)):
                copy.write(_copy_text(chunk))
                inserted += len(chunk)
                unmatched += sum(1 for row in chunk if row[2] is None)
    return inserted, unmatched


def _insert_calls(session: Session, rows: list[tuple]) -> tuple[int, int, dict[str, list]]:
    """SQLite: insert; returns (rows inserted, of them with no account, the
    ledger totals {key: [account, amount, day, calls, seconds]}) counting
    only the rows that went in (not those another writer stored first).
    (PostgreSQL: ``_copy_calls`` under the source lock.)"""
    totals: dict[str, list] = {}
    if not rows:
        return 0, 0, totals
    statement = (sqlite.insert(Call).on_conflict_do_nothing(
        index_elements=["source", "external_id"])
        .returning(Call.account_id, Call.charge, Call.ledger_key, Call.billed_seconds))
    stored = session.execute(statement, [dict(zip(_CALL_COLUMNS, row)) for row in rows]).all()
    unmatched = 0
    for account_id, charge, key, billed in stored:
        if account_id is None:
            unmatched += 1
        if key is not None:
            add_to_entry(totals, key, account_id, charge, billed)
    return len(stored), unmatched, totals


def _save_allowances(session: Session, used: dict[tuple[int, str], int]) -> None:
    if _postgres(session):
        session.execute(text(
            "UPDATE voice_allowances SET used_seconds = u.used FROM unnest("
            "CAST(:services AS integer[]), CAST(:months AS text[]), "
            "CAST(:used AS integer[])) AS u(service_id, month, used) "
            "WHERE voice_allowances.service_id = u.service_id "
            "AND voice_allowances.month = u.month"),
            {"services": _array([s for s, _ in used], "integer"),
             "months": _array([m for _, m in used], "text"),
             "used": _array(list(used.values()), "integer")})
        return
    table = VoiceAllowance.__table__
    session.execute(update(table).where(and_(
        table.c.service_id == bindparam("s"), table.c.month == bindparam("m"))).values(
        used_seconds=bindparam("u")), [{"s": s, "m": m, "u": u} for (s, m), u in used.items()])


def calls_of_entries(session: Session, keys: Iterable[str]) -> list[Call]:
    """The calls charged under these entries' keys (``call:ACCOUNT:DAY:BATCH``).

    calls has no index on ledger_key (it cost the import 4-5 CPU s a million
    calls): the account and the local day in the key find the calls through
    ix_calls_account_start; the day is widened by a day on each side so that
    no time zone setting can miss one, and the key itself decides."""
    wanted: dict[tuple[int, str], list[str]] = defaultdict(list)
    for key in sorted(set(keys)):
        parts = key.split(":")
        if len(parts) != 4 or parts[0] != "call" or not parts[1].isdigit():
            continue
        try:
            dt.date.fromisoformat(parts[2])
        except ValueError:
            continue
        wanted[(int(parts[1]), parts[2])].append(key)
    found: list[Call] = []
    groups = sorted(wanted.items())
    for start in range(0, len(groups), 100):
        conditions = []
        for (account_id, day), day_keys in groups[start:start + 100]:
            midnight = dt.datetime.fromisoformat(day)
            conditions.append(and_(Call.account_id == account_id,
                                   Call.start_at >= midnight - dt.timedelta(days=1),
                                   Call.start_at < midnight + dt.timedelta(days=2),
                                   Call.ledger_key.in_(day_keys)))
        found.extend(session.scalars(select(Call).where(or_(*conditions)).order_by(Call.id)))
    return found


def add_to_entry(totals: dict[str, list], key: str, account_id: int, charge: Decimal,
                 billed_seconds: int) -> None:
    """Count a call under its entry's key (``call:ACCOUNT:DAY:BATCH``)."""
    total = totals.get(key)
    if total is None:
        total = totals[key] = [account_id, Decimal("0.00"), key.split(":")[2], 0, 0]
    total[1] += charge
    total[3] += 1
    total[4] += billed_seconds


def post_entries(session: Session, totals: dict[str, list], *, author: str) -> int:
    """One ledger entry per key {key: [account, amount, day, calls, seconds]}
    (a debit of the amount), the balances moved in the same transaction;
    returns the entries written."""
    charged = [(key, account_id, amount, day, count, seconds)
               for key, (account_id, amount, day, count, seconds) in totals.items()
               if amount > 0]
    if not charged:
        return 0
    now = utcnow()
    if _postgres(session):
        # As the fee run: the entries and the balances in one statement.
        keys, accounts_, amounts, days, counts, seconds_ = zip(*charged)
        moved = session.execute(text(
            "WITH posted AS (INSERT INTO ledger_entries (account_id, amount, kind, "
            "idempotency_key, author, memo, memo_code, memo_args, created_at) "
            "SELECT e.account_id, -e.amount, 'call', e.key, :author, "
            "'calls on ' || e.day || ': ' || e.calls || ', ' || e.seconds || ' s', 'calls', "
            "json_build_object('day', e.day, 'calls', e.calls, 'seconds', e.seconds), :now "
            "FROM unnest(CAST(:keys AS text[]), CAST(:accounts AS integer[]), "
            "CAST(:amounts AS numeric[]), CAST(:days AS text[]), CAST(:counts AS integer[]), "
            "CAST(:seconds AS integer[])) AS e(key, account_id, amount, day, calls, seconds) "
            "ON CONFLICT (idempotency_key) DO NOTHING RETURNING account_id, amount), "
            "sums AS (SELECT account_id, sum(amount) AS delta FROM posted GROUP BY account_id), "
            "moved AS (UPDATE accounts SET balance = accounts.balance + sums.delta FROM sums "
            "WHERE accounts.id = sums.account_id RETURNING accounts.id) "
            "SELECT (SELECT count(*) FROM posted), (SELECT array_agg(id) FROM moved)"),
            {"author": author, "now": now, "keys": _array(keys, "text"),
             "accounts": _array(accounts_, "integer"), "amounts": _array(amounts, "numeric"),
             "days": _array(days, "text"), "counts": _array(counts, "integer"),
             "seconds": _array(seconds_, "integer")}).one()
        _forget_balances(session, moved[1] or ())
        return moved[0]
    values = [dict(account_id=account_id, amount=-amount, kind="call", idempotency_key=key,
                   author=author, memo=f"calls on {day}: {count}, {seconds} s",
                   memo_code="calls",
                   memo_args={"day": day, "calls": count, "seconds": seconds},
                   created_at=now)
              for key, account_id, amount, day, count, seconds in charged]
    rows = session.execute(sqlite.insert(LedgerEntry).on_conflict_do_nothing(
        index_elements=["idempotency_key"]).returning(
        LedgerEntry.account_id, LedgerEntry.amount), values).all()
    deltas: dict[int, Decimal] = defaultdict(Decimal)
    for account_id, amount in rows:
        deltas[account_id] += amount
    _move_balances(session, deltas)
    return len(rows)


def _forget_balances(session: Session, account_ids) -> None:
    """A loaded Account in this session must not show the old balance."""
    for account_id in account_ids:
        loaded = session.identity_map.get(session.identity_key(Account, account_id))
        if loaded is not None:
            session.expire(loaded, ["balance"])


def _move_balances(session: Session, deltas: dict[int, Decimal]) -> None:
    """SQLite: the balances by the amounts the entries' insert returned."""
    if not deltas:
        return
    accounts = Account.__table__
    session.execute(update(accounts).where(accounts.c.id == bindparam("account"))
                    .values(balance=accounts.c.balance + bindparam("delta", type_=Money())),
                    [{"account": a, "delta": d} for a, d in deltas.items()])
    _forget_balances(session, deltas)


def record_calls(session: Session, calls: Sequence[CallInput], *, settings=None,
                 config: Config | None = None, author: str = "rating:calls") -> RecordResult:
    """Store, rate and charge calls; idempotent per (source, external_id).

    Set-based: a few statements per batch whatever its size (the calls in
    one, the ledger entries in one, the balances in one). The caller owns
    the transaction; nothing is committed here."""
    result = RecordResult()
    if not calls:
        return result
    config = config or Config.of(settings)
    for call in calls:
        _check(call)
    unique: dict[tuple[str, str], CallInput] = {}
    for call in calls:
        unique.setdefault((call.source, call.external_id), call)
    result.duplicates = len(calls) - len(unique)
    postgres = _postgres(session)
    if postgres:
        # One writer of a source's calls at a time, until its commit: what
        # is not stored now cannot be stored by another writer before this
        # one commits, so one look for duplicates suffices and the insert
        # needs no ON CONFLICT (which cost 3 CPU s a million calls). Two
        # imports of one file: the second waits, then finds every call.
        for source in sorted({key[0] for key in unique}):
            session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
                            {"k": f"abonent.calls:{source}"})
    existing = _existing(session, list(unique.values()))
    fresh = [call for key, call in unique.items() if key not in existing]
    result.duplicates += len(existing)
    if not fresh:
        return result
    rules, zone_info = config.rules, ZoneInfo(config.timezone)
    norm: dict[str, str] = {}

    def number(raw: str) -> str:
        value = norm.get(raw)
        if value is None:
            value = norm[raw] = normalise(raw, rules)[:32]
        return value

    pairs = [(number(c.calling), number(c.called)) for c in fresh]
    by_number, by_login = _services(session, {n for pair in pairs for n in pair},
                                    {c.login for c in fresh if c.login})
    plans = _plans(session, {s[2] for s in by_number.values()} | {s[2] for s in by_login.values()})
    tables = {plan_id: rate_table(session, plan) for plan_id, plan in plans.items()}
    # Local start times: the day of the ledger entry, the month of the package.
    clock = LocalClock(config.timezone)
    locals_ = [clock(c.start) for c in fresh]
    callers = [(by_login.get(c.login) if c.login else None) or by_number.get(pair[0])
               for c, pair in zip(fresh, pairs)]
    wanted = {(caller[1], local[2])
              for caller, local in zip(callers, locals_)
              if caller is not None and plans[caller[2]].free_seconds > 0}
    # Locked on PostgreSQL: another source's writer (RADIUS) spends the
    # same package. SQLite has one writer at a time.
    used = _allowances(session, wanted)
    used_before = dict(used)
    batch = uuid.uuid4().hex[:12]
    now = utcnow()
    created = now.isoformat(" ") if postgres else now  # COPY text: formatted once
    totals: dict[str, list] = {}
    # The package is spent in the order the calls started.
    order = sorted(range(len(fresh)), key=[call.start for call in fresh].__getitem__)

    def rated_rows():
        for i in order:
            call, (calling, called), caller = fresh[i], pairs[i], callers[i]
            local_hour, local_day, local_month = locals_[i]
            callee = by_number.get(called)
            plan = plans[caller[2]] if caller is not None else None
            free_left = None
            if plan is not None and plan.free_seconds > 0:
                month_key = (caller[1], local_month)
                free_left = max(plan.free_seconds - used[month_key], 0)
            rated = rate_call(caller=caller, callee=callee, called=called,
                              billsec=call.billsec, answered=call.disposition == "answered",
                              local_start=local_hour, plan=plan,
                              table=tables.get(caller[2]) if caller else None,
                              free_left=free_left)
            if rated.free_seconds:
                used[month_key] += rated.free_seconds
            key = None
            if rated.charge:
                key = f"call:{rated.account_id}:{local_day}:{batch}"
                if postgres:
                    add_to_entry(totals, key, rated.account_id, rated.charge,
                                 rated.billed_seconds)
            yield (call.source, call.external_id, rated.account_id, rated.service_id,
                   calling or call.calling[:32], called or call.called[:32],
                   call.login[:64] if call.login else None, call.start, call.answer,
                   call.end, call.billsec, call.disposition, call.sip_code,
                   rated.direction, rated.zone, rated.prefix, rated.billed_seconds,
                   rated.free_seconds, rated.price_per_minute, rated.charge, rated.reason,
                   key, plan.rates_version if plan else 1, created)

    if postgres:
        result.inserted, result.unmatched = _copy_calls(session, rated_rows())
    else:
        rows = list(rated_rows())
        result.inserted, result.unmatched, totals = _insert_calls(session, rows)
        result.duplicates += len(rows) - result.inserted
    result.entries = post_entries(session, totals, author=author)
    result.charged = sum((t[1] for t in totals.values()), Decimal("0.00"))
    result.accounts = {t[0] for t in totals.values()}
    spent = {key: seconds for key, seconds in used.items() if seconds != used_before[key]}
    if spent:
        _save_allowances(session, spent)
    if result.accounts:
        from rating.fees import apply_policies
        apply_policies(session, min(result.accounts), max(result.accounts) + 1, reason="calls")
    return result
