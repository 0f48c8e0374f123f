"""Subscriber commands: account, service."""

from __future__ import annotations

import click
import netaddr
from sqlalchemy import func, select

from aaa.models import IpPool, Service, Session as RadiusSession
from rating import accounts as acc
from rating import oplog
from rating.choices import ACCOUNT_KINDS, ACCOUNT_STATES
from rating.models import Account
from scripts.common import (CliError, actor, emit_json, emit_rows, fetch_page, get_context,
                            json_option, page_options, transaction)


# -- account -----------------------------------------------------------------

def account_view(a: Account) -> dict:
    return dict(id=a.id, number=a.number, kind=a.kind, name=a.name, email=a.email,
                phone=a.phone, state=a.state, tariff=a.tariff.name if a.tariff else None,
                credit_limit=a.credit_limit, balance=a.balance, profile=a.profile,
                created_at=a.created_at)


@click.group()
def account():
    """Accounts (лицевые счета)."""


@account.command("add")
@click.argument("number")
@click.option("--name", required=True)
@click.option("--tariff", "tariff_name", help="Tariff name.")
@click.option("--kind", type=click.Choice(ACCOUNT_KINDS), default="person", show_default=True)
@click.option("--email")
@click.option("--phone")
@click.option("--credit-limit", default="0", show_default=True)
@click.option("--cabinet-login", help="Also create a cabinet login (owner).")
@click.option("--cabinet-password", help="Password for --cabinet-login.")
@json_option
def account_add(number, name, tariff_name, kind, email, phone, credit_limit, cabinet_login,
                cabinet_password, as_json):
    """Add an account."""
    if bool(cabinet_login) != bool(cabinet_password):
        raise CliError("--cabinet-login and --cabinet-password go together")
    with transaction() as session:
        created = acc.create_account(session, number=number, name=name, tariff=tariff_name,
                                     kind=kind, email=email, phone=phone,
                                     credit_limit=credit_limit, actor=actor())
        if cabinet_login:
            acc.create_cabinet_user(session, created, login=cabinet_login,
                                    password=cabinet_password, email=email, actor=actor())
        view = account_view(created)
    emit_json(view) if as_json else click.echo(f"account {number} added")


@account.command("show")
@click.argument("number")
@json_option
def account_show(number, as_json):
    """Show an account with its services and open sessions.

    NUMBER is the account number, or a login, IP, MAC, phone or name that
    matches exactly one account."""
    from aaa.admin import resolve_account
    with transaction() as session:
        found = resolve_account(session, number)
        view = account_view(found)
        view["services"] = [service_view(s) for s in session.scalars(
            select(Service).where(Service.account_id == found.id).order_by(Service.id))]
        view["open_sessions"] = len(session.scalars(select(RadiusSession.id).where(
            RadiusSession.account_id == found.id, RadiusSession.stopped_at.is_(None))).all())
    if as_json:
        emit_json(view)
        return
    for key in ("number", "name", "kind", "state", "tariff", "balance", "credit_limit",
                "profile", "email", "phone", "open_sessions"):
        click.echo(f"{key:>14}: {view[key] if view[key] is not None else '-'}")
    for s in view["services"]:
        click.echo(f"{'service':>14}: {s['kind']} {s['login'] or s['mac'] or s['circuit_id']}"
                   f" ip={s['static_ipv4'] or 'pool'}")


@account.command("list")
@click.option("--tariff", "tariff_name")
@click.option("--negative", is_flag=True, help="Only accounts with a negative balance.")
@click.option("--state", type=click.Choice(ACCOUNT_STATES), help="Only accounts in this state.")
@page_options()
@json_option
def account_list(tariff_name, negative, state, limit, offset, as_json):
    """List accounts."""
    with transaction() as session:
        query = select(Account).order_by(Account.number)
        if tariff_name:
            query = query.where(Account.tariff_id == acc.find_tariff(session, tariff_name).id)
        if negative:
            query = query.where(Account.balance < 0)
        if state:
            query = query.where(Account.state == state)
        rows = [account_view(a) for a in fetch_page(session, query, limit, offset)]
    emit_rows(rows, as_json, ["number", "name", "tariff", "balance", "state", "profile"])


def _today_now():
    from config.db import utcnow
    from rating import jobs
    now = utcnow()
    return now, jobs.local_today(get_context().settings.get("", "timezone"), now)


def _changes_view(number: str, changed: dict) -> dict:
    return dict(number=number, changed={field: {"old": old, "new": new}
                                        for field, (old, new) in changed.items()})


def _echo_changes(number: str, changed: dict) -> None:
    for field, (old, new) in changed.items():
        click.echo(f"account {number}: {field} {old if old is not None else '-'} -> "
                   f"{new if new is not None else '-'}")


@account.command("edit")
@click.argument("number")
@click.option("--name", help="The subscriber's name.")
@click.option("--kind", type=click.Choice(ACCOUNT_KINDS))
@click.option("--email", help="E-mail; \"\" removes it.")
@click.option("--phone", help="Phone in any notation; \"\" removes it.")
@click.option("--credit-limit", help="How far below zero the balance may go.")
@click.option("--tariff", "tariff_name",
              help="Change the tariff (under the tariff-change rules; see --tariff-from).")
@click.option("--tariff-from", type=click.Choice(["now", "next-period"]), default="now",
              show_default=True, help="now: billed under the new tariff from tomorrow.")
@json_option
def account_edit(number, name, kind, email, phone, credit_limit, tariff_name, tariff_from,
                 as_json):
    """Change an account's name, kind, contacts, credit limit or tariff."""
    from rating import account_admin
    change = account_admin.Edit(tariff_when=tariff_from.replace("-", "_"))
    for field, value in (("name", name), ("kind", kind), ("email", email), ("phone", phone),
                         ("credit_limit", credit_limit), ("tariff", tariff_name)):
        if value is not None:
            setattr(change, field, value)
    if all(v is None for v in (name, kind, email, phone, credit_limit, tariff_name)):
        raise CliError("nothing to change: give --name, --kind, --email, --phone, "
                       "--credit-limit or --tariff")
    now, today = _today_now()
    with transaction() as session:
        found = acc.find_account(session, number)
        changed = account_admin.edit(session, found, change, actor=actor(), now=now,
                                     today=today)
        view = _changes_view(number, changed)
    emit_json(view) if as_json else _echo_changes(number, changed)


@account.command("block")
@click.argument("number")
@click.option("--reason", required=True, help="Why (kept in the audit log).")
@json_option
def account_block(number, reason, as_json):
    """Block an account: RADIUS refuses it, live sessions are disconnected."""
    from rating import account_admin
    with transaction() as session:
        found = acc.find_account(session, number)
        account_admin.block(session, found, reason=reason, actor=actor())
        view = dict(number=number, state=found.state, reason=reason.strip())
    emit_json(view) if as_json else click.echo(
        f"account {number} blocked; live sessions will be disconnected")


@account.command("unblock")
@click.argument("number")
@click.option("--reason", help="Why (kept in the audit log).")
@json_option
def account_unblock(number, reason, as_json):
    """Lift an admin block."""
    from rating import account_admin, policies
    ladder = policies.ladder_from_settings(get_context().settings.section("policy"))
    with transaction() as session:
        found = acc.find_account(session, number)
        account_admin.unblock(session, found, reason=reason, actor=actor(), ladder=ladder)
        view = dict(number=number, state=found.state, profile=found.profile)
    emit_json(view) if as_json else click.echo(f"account {number} unblocked")


@account.command("close")
@click.argument("number")
@click.option("--force", is_flag=True, help="Close even with a non-zero balance.")
@click.option("--reason", help="Why (kept in the audit log).")
@json_option
def account_close(number, force, reason, as_json):
    """Close an account and deactivate its services (refused while the
    balance is not zero, unless --force)."""
    from aaa.admin import deactivate_services
    from rating import account_admin
    with transaction() as session:
        found = acc.find_account(session, number)
        account_admin.close(session, found, force=force, reason=reason, actor=actor())
        services = deactivate_services(session, found)
        view = dict(number=number, state=found.state, balance=found.balance,
                    services_deactivated=services)
    emit_json(view) if as_json else click.echo(
        f"account {number} closed ({services} service(s) deactivated)")


def _moment(value: str | None):
    """--at: an ISO time in the operator's zone (or with an offset/Z), as naive UTC."""
    if value is None:
        return None
    import datetime as dt
    from zoneinfo import ZoneInfo
    text = value.strip()
    try:
        moment = dt.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError:
        raise CliError(f"--at must be a time like 2026-12-01T14:30, not {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(get_context().settings.get("", "timezone")))
    return moment.astimezone(dt.timezone.utc).replace(tzinfo=None)


@account.command("find")
@click.argument("query")
@click.option("--at", "at_text", metavar="TIME",
              help="For an IP: who held it at this time (lease and session history), "
                   "e.g. 2026-12-01T14:30 (operator's time zone) or ...Z for UTC.")
@page_options(default_limit=100)
@json_option
def account_find(query, at_text, limit, offset, as_json):
    """Find accounts by number, name (any case), service login, IP, MAC
    (any notation) or phone (any notation)."""
    from aaa.admin import search_statement
    at = _moment(at_text)
    with transaction() as session:
        statement, reasons = search_statement(session, query, at=at)
        page = fetch_page(session, statement, limit, offset) if statement is not None else []
        rows = [dict(account_view(a), matched=", ".join(reasons(a))) for a in page]
    emit_rows(rows, as_json, ["number", "name", "phone", "state", "balance", "matched"])


# -- service -----------------------------------------------------------------

def service_view(s: Service) -> dict:
    return dict(id=s.id, kind=s.kind, login=s.login, mac=s.mac, circuit_id=s.circuit_id,
                static_ipv4=s.static_ipv4, pool=s.pool, ipv6_prefix=s.ipv6_prefix,
                active=s.active)


@click.group()
def service():
    """Network services (PPPoE logins, IPoE bindings)."""


@service.command("add")
@click.argument("number")
@click.option("--kind", type=click.Choice(["pppoe", "ipoe"]), default="pppoe", show_default=True)
@click.option("--login", help="RADIUS User-Name (PPPoE).")
@click.option("--password", help="RADIUS password (PAP/CHAP/MS-CHAPv2).")
@click.option("--mac", help="IPoE: the subscriber's MAC (Calling-Station-Id).")
@click.option("--circuit-id", help="IPoE: DHCP Option-82 Agent-Circuit-Id.")
@click.option("--ip", "static_ipv4", help="Static IPv4 address.")
@click.option("--pool", help="Address pool, for a service with no static address.")
@click.option("--ipv6-prefix", help="Delegated IPv6 prefix (DHCPv6-PD), e.g. 2001:db8:1200::/56.")
@json_option
def service_add(number, kind, login, password, mac, circuit_id, static_ipv4, pool, ipv6_prefix,
                as_json):
    """Add a service to an account: a PPPoE login or an IPoE binding."""
    if kind == "pppoe" and not (login and password):
        raise CliError("a PPPoE service needs --login and --password")
    if kind == "ipoe" and not (mac or circuit_id):
        raise CliError("an IPoE service needs --mac or --circuit-id")
    if login is not None and (not login.strip() or len(login) > 64):
        raise CliError("login must be 1-64 characters")
    if static_ipv4:
        try:
            static_ipv4 = str(netaddr.IPAddress(static_ipv4, version=4))
        except (netaddr.AddrFormatError, ValueError):
            raise CliError(f"{static_ipv4!r} is not an IPv4 address") from None
    if mac:
        try:
            mac = str(netaddr.EUI(mac, dialect=netaddr.mac_unix_expanded)).lower()
        except (netaddr.AddrFormatError, ValueError, TypeError):
            raise CliError(f"{mac!r} is not a MAC address") from None
    if static_ipv4 and pool:
        raise CliError("give a static --ip or a --pool, not both")
    if ipv6_prefix:
        try:
            network = netaddr.IPNetwork(ipv6_prefix, version=6)
        except (netaddr.AddrFormatError, ValueError, TypeError):
            raise CliError(f"{ipv6_prefix!r} is not an IPv6 prefix") from None
        if network.prefixlen > 64 or network.network != network.ip:
            raise CliError(f"{ipv6_prefix!r} must be a network of /64 or wider, "
                           f"e.g. {network.cidr}")
        ipv6_prefix = str(network.cidr)
    unique = {"login": (Service.login, login), "MAC": (Service.mac, mac),
              "circuit id": (Service.circuit_id, circuit_id),
              "address": (Service.static_ipv4, static_ipv4),
              "IPv6 prefix": (Service.ipv6_prefix, ipv6_prefix)}
    with transaction() as session:
        owner = acc.find_account(session, number)
        for what, (column, value) in unique.items():
            if value and session.scalar(select(Service.id).where(column == value)) is not None:
                raise CliError(f"{what} {value} is already used by another service")
        if pool and session.scalar(select(IpPool.id).where(IpPool.name == pool)) is None:
            raise CliError(f"pool {pool!r} does not exist")
        created = Service(account_id=owner.id, kind=kind, login=login, password=password,
                          mac=mac, circuit_id=circuit_id, static_ipv4=static_ipv4, pool=pool,
                          ipv6_prefix=ipv6_prefix)
        session.add(created)
        session.flush()
        owner.version += 1
        oplog.record(session, account_id=owner.id, actor=actor(), action="service.add",
                     kind=kind, login=login, mac=mac, circuit_id=circuit_id,
                     static_ipv4=static_ipv4, pool=pool, ipv6_prefix=ipv6_prefix)
        view = service_view(created)
    name = login or mac or circuit_id
    emit_json(view) if as_json else click.echo(f"service {name} added to account {number}")


@service.command("list")
@click.argument("number")
@page_options(default_limit=200)
@json_option
def service_list(number, limit, offset, as_json):
    """List an account's services with their live session count."""
    with transaction() as session:
        owner = acc.find_account(session, number)
        services = fetch_page(session, select(Service).where(Service.account_id == owner.id)
                              .order_by(Service.id), limit, offset)
        live = dict(session.execute(
            select(RadiusSession.service_id, func.count()).where(
                RadiusSession.account_id == owner.id, RadiusSession.stopped_at.is_(None))
            .group_by(RadiusSession.service_id)).all())
        rows = [dict(service_view(s), live_sessions=live.get(s.id, 0)) for s in services]
    emit_rows(rows, as_json, ["kind", "login", "mac", "circuit_id", "static_ipv4", "pool",
                              "active", "live_sessions"])


def _flag(value: str | None) -> bool | None:
    if value is None:
        return None
    return value == "yes"


@service.command("edit")
@click.argument("login")
@click.option("--password", help="New RADIUS password.")
@click.option("--mac", help="MAC in any notation; \"\" removes it.")
@click.option("--ip", "static_ipv4", help="Static IPv4; \"\" removes it.")
@click.option("--pool", help="Address pool; \"\" removes it.")
@click.option("--active", type=click.Choice(["yes", "no"]), help="Switch the service on or off.")
@json_option
def service_edit(login, password, mac, static_ipv4, pool, active, as_json):
    """Change a service (LOGIN, or its MAC for an IPoE binding)."""
    from aaa import admin
    change = admin.ServiceEdit()
    for field, value in (("password", password), ("mac", mac), ("static_ipv4", static_ipv4),
                         ("pool", pool), ("active", _flag(active))):
        if value is not None:
            setattr(change, field, value)
    if all(v is None for v in (password, mac, static_ipv4, pool, active)):
        raise CliError("nothing to change: give --password, --mac, --ip, --pool or --active")
    with transaction() as session:
        found = admin.find_service(session, login)
        changed = admin.edit_service(session, found, change, actor=actor())
        view = dict(service_view(found), changed={
            field: ({"old": None, "new": None} if field == "password" else
                    {"old": old, "new": new}) for field, (old, new) in changed.items()})
    if as_json:
        emit_json(view)
        return
    for field, (old, new) in changed.items():
        if field == "password":
            click.echo(f"service {login}: password changed")
        else:
            click.echo(f"service {login}: {field} {old if old is not None else '-'} -> "
                       f"{new if new is not None else '-'}")


@service.command("remove")
@click.argument("login")
@click.option("--force", is_flag=True, help="Remove even with live sessions: disconnect them.")
@json_option
def service_remove(login, force, as_json):
    """Remove a service (refused while a session of it is live, unless --force)."""
    from aaa import admin
    with transaction() as session:
        found = admin.find_service(session, login)
        number = session.get(Account, found.account_id).number
        jobs = admin.remove_service(session, found, force=force, actor=actor())
        view = dict(login=login, account=number, disconnect_jobs=jobs)
    emit_json(view) if as_json else click.echo(
        f"service {login} removed from account {number}"
        + (f"; {len(jobs)} session(s) being disconnected" if jobs else ""))
