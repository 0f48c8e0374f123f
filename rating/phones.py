"""Telephony use cases for the operator and the cabinet: voice plans and
their rate tables, numbers as services, "which price and why", re-rating,
and the calls of a month.

Re-rating (after a rate-table correction) never edits money: each ledger
entry whose calls now cost something else is reversed (``reversal:ID``,
once) and the calls are charged again under a new entry; calls whose price
did not change are left alone, so a second run changes nothing.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.orm import Session

from config.db import utcnow
from rating import ledger, oplog
from rating.models import Account, Call, LedgerEntry, VoicePlan, VoiceRate, VoiceService
from rating.telephony import (Config, PlanRules, Rate, _plan_rules, add_to_entry,
                              calls_of_entries, normalise, post_entries, rate_call, rate_table)
from rating.validate import DomainError, NotFound

MAX_RATES = 200_000


# -- plans and rate tables -------------------------------------------------------------

def find_plan(session: Session, name: str) -> VoicePlan:
    plan = session.scalars(select(VoicePlan).where(VoicePlan.name == name)).first()
    if plan is None:
        raise NotFound(f"voice plan {name!r} does not exist")
    return plan


def parse_hours(text: str | None) -> tuple[int, int]:
    """"22-8" -> (22, 8): off-peak from 22:00 to 08:00; "" or "none" -> none."""
    if not text or text.strip().lower() == "none":
        return 0, 0
    parts = text.strip().split("-")
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) <= 23 for p in parts):
        raise DomainError(f"off-peak hours must look like 22-8 (hours 0..23), not {text!r}")
    return int(parts[0]), int(parts[1])


def save_plan(session: Session, name: str, *, free_minutes: int | None = None,
              free_zones: list[str] | None = None, offpeak: str | None = None,
              weekend_offpeak: bool | None = None, onnet_free: bool | None = None,
              actor: str) -> tuple[VoicePlan, bool]:
    """Add the plan NAME or change what is given; (plan, created)."""
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise DomainError("a plan name is 1 to 100 characters")
    plan = session.scalars(select(VoicePlan).where(VoicePlan.name == name)).first()
    created = plan is None
    if created:
        plan = VoicePlan(name=name, free_seconds=0, free_zones=[], offpeak_from_hour=0,
                         offpeak_to_hour=0, weekend_offpeak=False, onnet_free=True,
                         rates_version=1)
        session.add(plan)
    if free_minutes is not None:
        if not 0 <= free_minutes <= 100_000:
            raise DomainError("free minutes must be 0 to 100000")
        plan.free_seconds = free_minutes * 60
    if free_zones is not None:
        plan.free_zones = sorted({z.strip() for z in free_zones if z.strip()})
    if offpeak is not None:
        plan.offpeak_from_hour, plan.offpeak_to_hour = parse_hours(offpeak)
    if weekend_offpeak is not None:
        plan.weekend_offpeak = weekend_offpeak
    if onnet_free is not None:
        plan.onnet_free = onnet_free
    session.flush()
    oplog.record(session, account_id=None, actor=actor,
                 action="voice_plan.add" if created else "voice_plan.edit",
                 details={"plan": name})
    return plan, created


def import_rates(session: Session, plan_name: str, rates: list[Rate], *, actor: str) -> dict:
    """Replace the plan's rate table with ``rates`` (one transaction); the
    plan's rates_version goes up, which calls rated from now record."""
    if len(rates) > MAX_RATES:
        raise DomainError(f"a rate table holds at most {MAX_RATES} prefixes, not {len(rates)}")
    plan = find_plan(session, plan_name)
    before = session.scalar(select(func.count()).select_from(VoiceRate)
                            .where(VoiceRate.plan_id == plan.id))
    session.execute(delete(VoiceRate).where(VoiceRate.plan_id == plan.id))
    session.execute(VoiceRate.__table__.insert(), [
        dict(plan_id=plan.id, prefix=r.prefix, zone=r.zone, price_per_minute=r.price_per_minute,
             offpeak_price_per_minute=r.offpeak_price_per_minute,
             first_increment_s=r.first_increment_s, next_increment_s=r.next_increment_s,
             connection_fee=r.connection_fee) for r in rates])
    plan.rates_version += 1
    session.flush()
    zones = sorted({r.zone for r in rates})
    oplog.record(session, account_id=None, actor=actor, action="voice_rates.import",
                 details={"plan": plan.name, "prefixes": len(rates), "replaced": before,
                          "version": plan.rates_version})
    return dict(plan=plan.name, prefixes=len(rates), replaced=before, zones=len(zones),
                version=plan.rates_version)


# -- numbers as services ------------------------------------------------------------------

_LOGIN_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-@+")


def add_phone(session: Session, account: Account, *, number: str | None, login: str | None,
              plan_name: str, config: Config, actor: str) -> VoiceService:
    if not number and not login:
        raise DomainError("give a phone number, a SIP login or both")
    normal = None
    if number:
        normal = normalise(number, config.rules)
        if not 3 <= len(normal) <= 15:
            raise DomainError(f"{number!r} is not a phone number (3 to 15 digits in E.164)")
    if login is not None:
        login = login.strip()
        if not login or len(login) > 64 or set(login) - _LOGIN_CHARS:
            raise DomainError("a SIP login is 1 to 64 letters, digits and . _ - @ +")
    if account.state == "closed":
        raise DomainError(f"account {account.number} is closed")
    plan = find_plan(session, plan_name)
    for column, value, what in ((VoiceService.number, normal, "number"),
                                (VoiceService.login, login, "SIP login")):
        if value and session.scalar(select(VoiceService.id).where(
                column == value, VoiceService.state == "active")):
            raise DomainError(f"{what} {value} already belongs to an account")
    service = VoiceService(account_id=account.id, number=normal, login=login, plan_id=plan.id,
                           state="active")
    session.add(service)
    session.flush()
    oplog.record(session, account_id=account.id, actor=actor, action="phone.add",
                 details={"number": normal, "login": login, "plan": plan.name})
    return service


def find_phone(session: Session, number_or_login: str, config: Config) -> VoiceService:
    from rating.telephony import find_voice_service
    found = find_voice_service(session, number_or_login, config=config)
    if found is None:
        raise NotFound(f"no active phone number or SIP login {number_or_login!r}")
    return found[1]


def remove_phone(session: Session, number_or_login: str, *, config: Config,
                 actor: str) -> VoiceService:
    service = find_phone(session, number_or_login, config)
    service.state = "removed"
    service.removed_at = utcnow()
    session.flush()
    oplog.record(session, account_id=service.account_id, actor=actor, action="phone.remove",
                 details={"number": service.number, "login": service.login})
    return service


def phones_of(session: Session, account_id: int | None = None, *, limit: int = 1000,
              offset: int = 0) -> list[VoiceService]:
    query = (select(VoiceService).where(VoiceService.state == "active")
             .order_by(VoiceService.account_id, VoiceService.id))
    if account_id is not None:
        query = query.where(VoiceService.account_id == account_id)
    return list(session.scalars(query.limit(limit).offset(offset)))


# -- which price and why ---------------------------------------------------------------------

def explain(session: Session, number: str, *, at: dt.datetime, config: Config,
            plan_name: str | None = None, caller: str | None = None,
            seconds: int = 60) -> dict:
    """What a call to ``number`` at ``at`` (naive UTC) costs and why: the
    prefix matched, the zone, the price in force (day or off-peak), the
    increments, and, with ``caller``, the package minutes left and the
    free rules (own number, on-net)."""
    from rating.telephony import find_voice_service
    called = normalise(number, config.rules)
    if not called:
        raise DomainError(f"{number!r} has no digits")
    owner = None
    if caller:
        found = find_voice_service(session, caller, config=config)
        if found is None:
            raise NotFound(f"no active phone number or SIP login {caller!r}")
        owner = found[1]
        plan = owner.plan
    elif plan_name:
        plan = find_plan(session, plan_name)
    else:
        plans = session.scalars(select(VoicePlan).order_by(VoicePlan.id).limit(2)).all()
        if len(plans) != 1:
            raise DomainError("say which plan (--plan) or which caller (--from)")
        plan = plans[0]
    rules = _plan_rules(plan)
    table = rate_table(session, rules)
    local = at.replace(tzinfo=dt.timezone.utc).astimezone(ZoneInfo(config.timezone)) \
        .replace(tzinfo=None)
    callee = session.scalars(select(VoiceService).where(
        VoiceService.number == called, VoiceService.state == "active")).first()
    free_left = None
    if owner is not None and rules.free_seconds:
        from rating.models import VoiceAllowance
        used = session.scalar(select(VoiceAllowance.used_seconds).where(
            VoiceAllowance.service_id == owner.id,
            VoiceAllowance.month == local.strftime("%Y-%m"))) or 0
        free_left = max(rules.free_seconds - used, 0)
    rated = rate_call(
        caller=(owner.account_id, owner.id, plan.id) if owner else (0, 0, plan.id),
        callee=(callee.account_id, callee.id, callee.plan_id) if callee else None,
        called=called, billsec=seconds, answered=True, local_start=local, plan=rules,
        table=table, free_left=free_left)
    rate = table.match(called)
    why = {
        "rated": "priced by the longest matching prefix",
        "package": "package minutes cover it (in part or whole)",
        "own": "a call to the account's own number is free",
        "onnet": "calls to our own subscribers are free on this plan",
        "no_rate": "no prefix of the plan matches: the call is not charged, "
                   "re-rate after the table is fixed",
    }.get(rated.reason, rated.reason)
    result = dict(number=called, plan=plan.name, rates_version=plan.rates_version,
                  prefix=rate.prefix if rate else None, zone=rate.zone if rate else None,
                  price_per_minute=rate.price_per_minute if rate else None,
                  offpeak_price_per_minute=rate.offpeak_price_per_minute if rate else None,
                  offpeak=rules.offpeak(local), price_now=rated.price_per_minute,
                  increments=f"{rate.first_increment_s}/{rate.next_increment_s}" if rate
                  else None, connection_fee=rate.connection_fee if rate else None,
                  seconds=seconds, billed_seconds=rated.billed_seconds,
                  free_seconds=rated.free_seconds, charge=rated.charge, reason=rated.reason,
                  why=why, on_net=callee is not None,
                  package_seconds_left=free_left,
                  in_package=rules.in_package(rate.zone) if rate else False)
    return result


# -- re-rating ---------------------------------------------------------------------------

@dataclass
class RerateResult:
    calls: int = 0
    changed: int = 0
    reversed: int = 0
    posted: int = 0
    before: Decimal = Decimal("0.00")
    after: Decimal = Decimal("0.00")

    def as_dict(self) -> dict:
        return dict(calls=self.calls, changed=self.changed, reversed_entries=self.reversed,
                    new_entries=self.posted, charged_before=self.before,
                    charged_after=self.after, difference=self.after - self.before)


def rerate(session: Session, start: dt.datetime, end: dt.datetime, *, config: Config,
           actor: str, account_id: int | None = None) -> RerateResult:
    """Rate the outgoing calls that started in [start, end) again with the
    rate tables as they are now. Every call of an entry that changes is
    charged again, so an entry is always reversed whole. Package seconds
    a call used stay as they were (the package is not re-spent)."""
    if end <= start:
        raise DomainError("the period ends before it starts")
    result = RerateResult()
    query = (select(Call).where(Call.start_at >= start, Call.start_at < end,
                                Call.direction.in_(("out", "onnet")),
                                Call.disposition == "answered")
             .order_by(Call.start_at))
    if account_id is not None:
        query = query.where(Call.account_id == account_id)
    calls = list(session.scalars(query))
    keys = {c.ledger_key for c in calls if c.ledger_key}
    seen = {c.id for c in calls}
    for extra in calls_of_entries(session, keys):
        if extra.id not in seen:
            calls.append(extra)
            seen.add(extra.id)
    result.calls = len(calls)
    if not calls:
        return result
    services = {s.id: s for s in session.scalars(select(VoiceService).where(
        VoiceService.id.in_({c.service_id for c in calls if c.service_id})))}
    plans: dict[int, PlanRules] = {}
    zone_info = ZoneInfo(config.timezone)
    numbers = {c.called for c in calls}
    callees = {}
    for chunk in _chunks(sorted(numbers)):
        for s in session.scalars(select(VoiceService).where(VoiceService.number.in_(chunk))):
            # A number is ours if it was when the call was made; the newest holder answers.
            callees[s.number] = (s.account_id, s.id, s.plan_id)
    changed: dict[str | None, list] = defaultdict(list)
    groups: dict[str | None, list] = defaultdict(list)
    new_ratings = {}
    for call in calls:
        service = services.get(call.service_id)
        if service is None:
            continue
        if service.plan_id not in plans:
            plans[service.plan_id] = _plan_rules(service.plan)
        plan = plans[service.plan_id]
        local = call.start_at.replace(tzinfo=dt.timezone.utc).astimezone(zone_info) \
            .replace(tzinfo=None)
        callee = callees.get(call.called) if call.direction == "onnet" else None
        rated = rate_call(caller=(call.account_id, call.service_id, plan.id), callee=callee,
                          called=call.called, billsec=call.billsec, answered=True,
                          local_start=local, plan=plan, table=rate_table(session, plan),
                          free_left=None, fixed_free=call.free_seconds)
        new_ratings[call.id] = (rated, local, plan.rates_version)
        groups[call.ledger_key].append(call)
        if (rated.charge, rated.zone, rated.price_per_minute, rated.reason) != \
                (call.charge, call.zone, call.price_per_minute, call.reason):
            changed[call.ledger_key].append(call)
    batch = uuid.uuid4().hex[:12]
    totals: dict[str, list] = {}
    updates = []
    for old_key, _ in changed.items():
        # The whole entry is charged again: its calls changed or not.
        members = groups[old_key] if old_key else changed[old_key]
        if old_key:
            entry = session.scalars(select(LedgerEntry).where(
                LedgerEntry.idempotency_key == old_key)).first()
            if entry is not None:
                ledger.reverse(session, entry.id, author=actor,
                               memo=f"re-rating of calls ({old_key})")
                result.reversed += 1
                result.before += -entry.amount
        for call in members:
            rated, local, version = new_ratings[call.id]
            key = (f"call:{call.account_id}:{local.date().isoformat()}:{batch}"
                   if rated.charge > 0 else None)
            if key:
                add_to_entry(totals, key, call.account_id, rated.charge, rated.billed_seconds)
            result.changed += 1
            updates.append(dict(call_id=call.id, zone=rated.zone, prefix=rated.prefix,
                                billed=rated.billed_seconds, price=rated.price_per_minute,
                                charge=rated.charge, reason=rated.reason, key=key,
                                version=version))
    if updates:
        table = Call.__table__
        session.execute(update(table).where(table.c.id == bindparam("call_id")).values(
            zone=bindparam("zone"), prefix=bindparam("prefix"),
            billed_seconds=bindparam("billed"), price_per_minute=bindparam("price"),
            charge=bindparam("charge"), reason=bindparam("reason"),
            ledger_key=bindparam("key"), rating_version=bindparam("version")),
            updates)
        session.expire_all()
    result.posted = post_entries(session, totals, author=actor)
    result.after = sum((t[1] for t in totals.values()), Decimal("0.00"))
    if totals:
        from rating.fees import apply_policies
        touched = {t[0] for t in totals.values()}
        apply_policies(session, min(touched), max(touched) + 1, reason="calls")
    if result.changed:
        oplog.record(session, account_id=account_id, actor=actor, action="calls.rerate",
                     details={"from": start.isoformat(), "to": end.isoformat(),
                              "changed": result.changed,
                              "difference": str(result.after - result.before)})
    return result


def _chunks(values: list, size: int = 900):
    for start in range(0, len(values), size):
        yield values[start:start + size]


# -- the calls of a period -------------------------------------------------------------------

def calls_query(start: dt.datetime, end: dt.datetime, *, account_id: int | None = None,
                direction: str | None = None, zone: str | None = None,
                reason: str | None = None):
    query = select(Call).where(Call.start_at >= start, Call.start_at < end)
    if account_id is not None:
        query = query.where(Call.account_id == account_id)
    if direction:
        query = query.where(Call.direction == direction)
    if zone:
        query = query.where(Call.zone == zone)
    if reason:
        query = query.where(Call.reason == reason)
    return query.order_by(Call.start_at, Call.id)


def zone_totals(session: Session, account_id: int, start: dt.datetime, end: dt.datetime, *,
                direction: str | None = None, zone: str | None = None) -> list[dict]:
    """Per zone: calls, answered seconds, billed seconds, package seconds, money."""
    query = (select(Call.zone, func.count(), func.coalesce(func.sum(Call.billsec), 0),
                    func.coalesce(func.sum(Call.billed_seconds), 0),
                    func.coalesce(func.sum(Call.free_seconds), 0),
                    func.coalesce(func.sum(Call.charge), 0))
             .where(Call.account_id == account_id, Call.start_at >= start, Call.start_at < end)
             .group_by(Call.zone).order_by(Call.zone))
    if direction:
        query = query.where(Call.direction == direction)
    if zone:
        query = query.where(Call.zone == zone)
    return [dict(zone=z, calls=n, seconds=int(s), billed_seconds=int(b), free_seconds=int(f),
                 charge=Decimal(c).quantize(Decimal("0.01")))
            for z, n, s, b, f, c in session.execute(query)]


def zones_of(session: Session, account_id: int) -> list[str]:
    return [z for z in session.scalars(select(Call.zone).where(
        Call.account_id == account_id, Call.zone.is_not(None)).distinct().order_by(Call.zone))]


def month_charge(session: Session, account_id: int, start: dt.datetime,
                 end: dt.datetime) -> tuple[int, int, Decimal]:
    """(calls, billed seconds, money) of an account's calls in [start, end)."""
    count, billed, charge = session.execute(
        select(func.count(), func.coalesce(func.sum(Call.billed_seconds), 0),
               func.coalesce(func.sum(Call.charge), 0))
        .where(Call.account_id == account_id, Call.start_at >= start, Call.start_at < end,
               Call.charge > 0)).one()
    return count, int(billed), Decimal(charge).quantize(Decimal("0.01"))
