"""An admin's changes on the network side: services (edit, remove), the
account search over logins, addresses and MACs, and disconnecting the live
sessions of a service or an account through the enforcer's outbox."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import netaddr
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from aaa import enforcement
from aaa.models import EnforcementJob, IpLease, IpPool, Service, Session as RadiusSession
from config.db import utcnow
from rating import oplog, search, validate
from rating.models import Account
from rating.options import touch
from rating.validate import DomainError, NotFound

_UNSET = object()


# -- values a person types -----------------------------------------------------

def mac(value: str) -> str:
    """aa:bb:cc:dd:ee:ff from any common notation, or DomainError."""
    normal = search.normal_mac(value or "")
    if normal is None:
        raise DomainError(f"{value!r} is not a MAC address (like aa:bb:cc:dd:ee:ff)")
    return normal


def ipv4(value: str) -> str:
    try:
        return str(netaddr.IPAddress((value or "").strip(), version=4,
                                     flags=netaddr.INET_PTON))
    except (netaddr.AddrFormatError, ValueError, TypeError):
        raise DomainError(f"{value!r} is not an IPv4 address") from None


def login(value: str) -> str:
    value = validate.text(value, "login", maximum=64)
    if any(char.isspace() for char in value):
        raise DomainError("login must not contain spaces")
    return value


def password(value: str) -> str:
    value = validate.text(value, "password", maximum=128)
    if len(value) < 4:
        raise DomainError("password must be at least 4 characters")
    return value


# -- search ------------------------------------------------------------------

def find_accounts(session: Session, text: str, *, at: dt.datetime | None = None,
                  names: bool = True) -> dict[int, list[str]]:
    """Accounts matching ``text`` (see rating.search): account id -> how it
    matched. ``at`` (UTC): an IP is looked up in the lease and session
    history at that moment instead of now."""
    query = search.classify(text)
    found: dict[int, list[str]] = {}

    def add(ids, why):
        for account_id in ids:
            reasons = found.setdefault(account_id, [])
            if why not in reasons:
                reasons.append(why)

    if query.number:
        add(session.scalars(select(Account.id).where(Account.number == query.number)), "number")
    add(session.scalars(select(Service.account_id).where(Service.login == query.text)), "login")
    if query.ip:
        ip = query.ip
        if at is None:
            add(session.scalars(select(Service.account_id).where(Service.static_ipv4 == ip)),
                "static ip")
            add(session.scalars(select(RadiusSession.account_id).where(
                RadiusSession.framed_ip == ip, RadiusSession.stopped_at.is_(None),
                RadiusSession.account_id.is_not(None))), "session ip")
            add(session.scalars(select(IpLease.account_id).where(IpLease.open_address == ip)),
                "lease")
        else:
            # "Who had this address then" reaches back past the hot tables
            # into the archive (aaa.archive).
            from aaa import archive
            leases, sessions = archive.all_leases(), archive.all_sessions()
            add(session.scalars(select(leases.c.account_id).where(
                leases.c.address == ip, leases.c.valid_from <= at,
                or_(leases.c.valid_to.is_(None), leases.c.valid_to > at))), "lease at time")
            add(session.scalars(select(sessions.c.account_id).where(
                sessions.c.framed_ip == ip, sessions.c.started_at <= at,
                or_(sessions.c.stopped_at.is_(None), sessions.c.stopped_at > at),
                sessions.c.account_id.is_not(None))), "session at time")
            add(session.scalars(select(Service.account_id).where(
                Service.static_ipv4 == ip, Service.created_at <= at)), "static ip")
    if query.mac:
        add(session.scalars(select(Service.account_id).where(Service.mac == query.mac)), "mac")
        add(session.scalars(select(RadiusSession.account_id).where(
            RadiusSession.stopped_at.is_(None), RadiusSession.account_id.is_not(None),
            RadiusSession.calling_station_id.in_(_mac_notations(query.mac)))), "session mac")
    if query.phone:
        add(session.scalars(select(Account.id).where(Account.phone_key == query.phone)), "phone")
    if query.name and names:
        add(session.scalars(select(Account.id).where(
            Account.search_name.like(search.like_pattern(query.name), escape="\\"))
            .order_by(Account.number).limit(100_000)), "name")
    return found


def search_statement(session: Session, text: str, *, at: dt.datetime | None = None):
    """The accounts matching ``text`` as one SELECT ordered by number, for
    paging in SQL (a part of a name can match a large share of the base),
    and ``reasons(account)``: how an account of it matched."""
    query = search.classify(text)
    keyed = find_accounts(session, text, at=at, names=False)
    conditions = []
    if keyed:
        conditions.append(Account.id.in_(list(keyed)))
    pattern = search.like_pattern(query.name) if query.name else None
    if pattern:
        conditions.append(Account.search_name.like(pattern, escape="\\"))
    statement = (select(Account).where(or_(*conditions)).order_by(Account.number, Account.id)
                 if conditions else None)

    def reasons(account: Account) -> list[str]:
        why = list(keyed.get(account.id, []))
        if query.name and query.name in (account.search_name or ""):
            why.append("name")
        return why
    return statement, reasons


def _mac_notations(value: str) -> list[str]:
    """How a NAS may write a MAC in Calling-Station-Id."""
    digits = value.replace(":", "")
    pairs = [digits[i:i + 2] for i in range(0, 12, 2)]
    quads = [digits[i:i + 4] for i in range(0, 12, 4)]
    forms = [":".join(pairs), "-".join(pairs), ".".join(quads), digits]
    return forms + [form.upper() for form in forms]


def resolve_account(session: Session, text: str) -> Account:
    """The one account ``text`` names: its number, or any search key that
    matches exactly one account."""
    text = (text or "").strip()
    exact = session.scalar(select(Account).where(Account.number == text)) if text else None
    if exact is not None:
        return exact
    found = find_accounts(session, text)
    if not found:
        raise NotFound(f"no account matches {text!r}")
    # A key (login, address, MAC, phone) names an account more surely than
    # a part of a name: "ivan" is the login ivan before it is Ivan Smith.
    keyed = [account_id for account_id, why in found.items() if why != ["name"]]
    if len(keyed) == 1:
        return session.get(Account, keyed[0])
    if len(found) > 1:
        raise DomainError(f"{len(found)} accounts match {text!r}; "
                          f"use `abonent account find` and give a number")
    return session.get(Account, next(iter(found)))


# -- disconnect ----------------------------------------------------------------

def disconnect(session: Session, sessions: list[RadiusSession], *, reason: str) -> list[int]:
    """Queue a Disconnect-Request for each open session (the enforcer
    sends them, retrying while the session stays open)."""
    jobs = []
    for target in sessions:
        job = EnforcementJob(account_id=target.account_id, session_id=target.id,
                             nas_id=target.nas_id, action="disconnect", profile=None,
                             attributes={"pairs": enforcement.session_pairs(target),
                                         "reason": reason},
                             status="pending", next_attempt_at=utcnow())
        session.add(job)
        jobs.append(job)
    session.flush()
    return [job.id for job in jobs]


def live_sessions(session: Session, service: Service) -> list[RadiusSession]:
    return list(session.scalars(select(RadiusSession).where(
        RadiusSession.service_id == service.id, RadiusSession.stopped_at.is_(None))))


# -- services ----------------------------------------------------------------

def find_service(session: Session, value: str) -> Service:
    """A service by its login, or by its MAC in any notation."""
    text = (value or "").strip()
    found = session.scalar(select(Service).where(Service.login == text)) if text else None
    if found is None:
        normal = search.normal_mac(text)
        if normal:
            found = session.scalar(select(Service).where(Service.mac == normal))
    if found is None:
        raise NotFound(f"no service with login or MAC {value!r}")
    return found


@dataclass
class ServiceEdit:
    password: object = _UNSET
    mac: object = _UNSET        # "" removes it
    static_ipv4: object = _UNSET  # "" removes it
    pool: object = _UNSET       # "" removes it
    active: object = _UNSET


def edit_service(session: Session, service: Service, change: ServiceEdit, *,
                 actor: str) -> dict[str, tuple]:
    new: dict[str, object] = {}
    if change.password is not _UNSET:
        new["password"] = password(change.password)
    if change.mac is not _UNSET:
        new["mac"] = mac(change.mac) if change.mac else None
    if change.static_ipv4 is not _UNSET:
        new["static_ipv4"] = ipv4(change.static_ipv4) if change.static_ipv4 else None
    if change.pool is not _UNSET:
        new["pool"] = validate.name(change.pool, "pool", 64) if change.pool else None
    if change.active is not _UNSET:
        new["active"] = bool(change.active)
    final = {field: new.get(field, getattr(service, field))
             for field in ("mac", "static_ipv4", "pool")}
    if final["static_ipv4"] and final["pool"]:
        raise DomainError("give a static IP or a pool, not both (remove one with \"\")")
    if service.kind == "ipoe" and not (final["mac"] or service.circuit_id):
        raise DomainError("an IPoE service needs a MAC or a circuit id")
    for field, what in (("mac", "MAC"), ("static_ipv4", "address")):
        value = new.get(field)
        if value and session.scalar(select(Service.id).where(
                getattr(Service, field) == value, Service.id != service.id)) is not None:
            raise DomainError(f"{what} {value} is already used by another service")
    if new.get("pool") and session.scalar(
            select(IpPool.id).where(IpPool.name == new["pool"])) is None:
        raise DomainError(f"pool {new['pool']!r} does not exist")
    changed = {}
    for field, value in new.items():
        old = getattr(service, field)
        if old != value:
            changed[field] = (old, value)
            setattr(service, field, value)
    if not changed:
        raise DomainError("nothing changes: the service already has these values")
    account = session.get(Account, service.account_id)
    # The RADIUS answer depends on the service: the cache sees a new version.
    touch(session, account, "service")
    oplog.record(session, account_id=account.id, actor=actor, action="service.edit",
                 login=service.login or service.mac or service.circuit_id,
                 **{field: ("(changed)" if field == "password"
                            else f"{_shown(old)} -> {_shown(value)}")
                    for field, (old, value) in changed.items()})
    return changed


def _shown(value):
    return None if value is None else str(value)


def remove_service(session: Session, service: Service, *, force: bool,
                   actor: str) -> list[int]:
    """Delete a service; refused while a session of it is live unless
    ``force``, which queues a Disconnect for each. Sessions keep their
    history (their service_id is cleared)."""
    live = live_sessions(session, service)
    if live and not force:
        raise DomainError(f"service {service.login or service.mac or service.circuit_id} has "
                          f"{len(live)} live session(s); give --force to disconnect them")
    jobs = disconnect(session, live, reason="service removed") if live else []
    name = service.login or service.mac or service.circuit_id
    account = session.get(Account, service.account_id)
    for old in session.scalars(select(RadiusSession).where(
            RadiusSession.service_id == service.id)):
        old.service_id = None
    session.flush()
    session.delete(service)
    touch(session, account, "service")
    oplog.record(session, account_id=account.id, actor=actor, action="service.remove",
                 login=name, disconnected=len(jobs), forced=force)
    return jobs


def deactivate_services(session: Session, account: Account) -> int:
    """Every service of the account set inactive (an account closed)."""
    count = 0
    for service in session.scalars(select(Service).where(Service.account_id == account.id,
                                                         Service.active.is_(True))):
        service.active = False
        count += 1
    return count
