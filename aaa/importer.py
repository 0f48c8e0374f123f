"""Import network services (PPPoE logins, IPoE bindings) from another
billing: the ``services`` kind of rating.importer, here because a service
is a RADIUS thing and rating may not know of it.

The same rules as ``abonent service add``: a PPPoE service has a login and
a password, an IPoE one a MAC or a circuit id; addresses are real IPv4
addresses, MACs real MACs, pools existing pools; a login, MAC, circuit id,
static address or IPv6 prefix belongs to one service only, in the file and
in the database.
"""

from __future__ import annotations

from typing import Callable

import netaddr
from sqlalchemy import select
from sqlalchemy.orm import Session

from aaa.models import IpPool, Service
from config.db import utcnow
from rating import importer, validate
from rating.importer import FieldError, Kind, Options, Plan, Problem, Row
from rating.validate import DomainError

SERVICE_KINDS = ("pppoe", "ipoe")
# Fields that name one service only; the first present is the service's
# identity (a second import finds it by that and leaves it alone).
UNIQUE = ("login", "mac", "circuit_id", "static_ip", "ipv6_prefix")
IDENTITY = ("login", "mac", "circuit_id")
COLUMN = {"login": Service.login, "mac": Service.mac, "circuit_id": Service.circuit_id,
          "static_ip": Service.static_ipv4, "ipv6_prefix": Service.ipv6_prefix}


def _text(values: dict, name: str, maximum: int) -> str | None:
    try:
        return validate.text(values.get(name), name, maximum=maximum, required=False)
    except DomainError as error:
        raise FieldError(name, str(error)) from None


def check_service_row(values: dict, options: Options) -> dict:
    number = values.get("account")
    if not number or not importer.ACCOUNT_NUMBER.match(number):
        raise FieldError("account", f"account must be an account number (1-32 letters, digits "
                                    f"or dashes), not {number!r}")
    result = {"account": number}
    login = _text(values, "login", 64)
    if login is not None and any(c.isspace() for c in login):
        raise FieldError("login", f"login must not contain spaces, not {login!r}")
    result["login"] = login
    result["password"] = _text(values, "password", 128)
    result["circuit_id"] = _text(values, "circuit_id", 128)
    result["pool"] = _text(values, "pool", 64)
    kind = values.get("kind") or ("pppoe" if login else "ipoe")
    if kind not in SERVICE_KINDS:
        raise FieldError("kind", f"kind must be one of {', '.join(SERVICE_KINDS)}, not {kind!r}")
    result["kind"] = kind
    mac = values.get("mac")
    if mac is not None:
        try:
            mac = str(netaddr.EUI(mac, dialect=netaddr.mac_unix_expanded)).lower()
        except (netaddr.AddrFormatError, ValueError, TypeError):
            raise FieldError("mac", f"{mac!r} is not a MAC address") from None
    result["mac"] = mac
    address = values.get("static_ip")
    if address is not None:
        try:
            address = str(netaddr.IPAddress(address, version=4, flags=netaddr.INET_PTON))
        except (netaddr.AddrFormatError, ValueError, TypeError):
            raise FieldError("static_ip", f"{address!r} is not an IPv4 address") from None
    result["static_ip"] = address
    prefix = values.get("ipv6_prefix")
    if prefix is not None:
        try:
            network = netaddr.IPNetwork(prefix, version=6)
        except (netaddr.AddrFormatError, ValueError, TypeError):
            raise FieldError("ipv6_prefix", f"{prefix!r} is not an IPv6 prefix") from None
        if network.prefixlen > 64 or network.network != network.ip:
            raise FieldError("ipv6_prefix", f"{prefix!r} must be a network of /64 or wider, "
                                            f"e.g. {network.cidr}")
        prefix = str(network.cidr)
    result["ipv6_prefix"] = prefix
    if kind == "pppoe" and not (login and result["password"]):
        missing = "password" if login else "login"
        raise FieldError(missing, f"a PPPoE service needs a login and a password")
    if kind == "ipoe" and not (mac or result["circuit_id"]):
        raise FieldError("mac", "an IPoE service needs a MAC or a circuit id")
    if address and result["pool"]:
        raise FieldError("pool", "give a static address or a pool, not both")
    return result


def plan_services(session: Session, checked: list[tuple[Row, dict]], plan: Plan) -> None:
    checked = importer.refuse_duplicates(checked, plan, UNIQUE)
    ids = importer.account_ids(session, [values["account"] for _, values in checked])
    pools = set(session.scalars(select(IpPool.name)))
    # Who holds each unique value already: field -> value -> (service, account).
    taken: dict[str, dict[str, tuple[int, int]]] = {}
    for name in UNIQUE:
        wanted = [values[name] for _, values in checked if values[name] is not None]
        taken[name] = {value: (service_id, account_id) for value, service_id, account_id in
                       importer.lookup(session, [COLUMN[name], Service.id, Service.account_id],
                                       COLUMN[name], wanted)}
    for row, values in checked:
        account_id = ids.get(values["account"])
        if account_id is None:
            plan.problems.append(Problem(row.line, "account",
                                         f"account {values['account']} does not exist"))
            continue
        if values["pool"] is not None and values["pool"] not in pools:
            plan.problems.append(Problem(row.line, "pool",
                                         f"pool {values['pool']!r} does not exist"))
            continue
        identity = next(name for name in IDENTITY if values[name] is not None)
        holder = taken[identity].get(values[identity])
        if holder is not None and holder[1] == account_id:
            plan.present += 1
            continue
        clash = next((name for name in UNIQUE if values[name] is not None
                      and values[name] in taken[name]), None)
        if clash is not None:
            plan.problems.append(Problem(row.line, clash,
                                         f"{clash} {values[clash]} is already used by another "
                                         f"service"))
            continue
        values["account_id"] = account_id
        values["line"] = row.line
        plan.new.append(values)


def write_services(session: Session, items: list[dict], *, actor: str,
                   progress: Callable[[int], None]) -> None:
    table = Service.__table__
    now = utcnow()
    for batch in importer.chunks(items, importer.BATCH):
        importer.bulk_insert(session, table, [
            {"account_id": v["account_id"], "kind": v["kind"], "login": v["login"],
             "password": v["password"], "mac": v["mac"], "circuit_id": v["circuit_id"],
             "static_ipv4": v["static_ip"], "ipv6_prefix": v["ipv6_prefix"], "pool": v["pool"],
             "active": True, "created_at": now} for v in batch])
        # A new service can change the RADIUS answer: caches must see it.
        importer.add_to_accounts(session, "version",
                                 {account_id: 1 for account_id in
                                  dict.fromkeys(v["account_id"] for v in batch)})
        importer.log(session, [{"account_id": v["account_id"], "actor": actor,
                                "action": "service.import", "created_at": now,
                                "details": {"kind": v["kind"], "login": v["login"],
                                            "mac": v["mac"], "static_ipv4": v["static_ip"]}}
                               for v in batch])
        progress(len(batch))


SERVICES = Kind(
    name="services",
    fields=("account", "kind", "login", "password", "mac", "circuit_id", "static_ip", "pool",
            "ipv6_prefix"),
    required=("account",),
    check_row=check_service_row, plan=plan_services, write=write_services)
