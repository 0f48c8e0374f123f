"""IP pools and leases: which address a service gets and who held it when.

A lease is open (``valid_to`` NULL, ``open_address`` = address) from the
moment an address is handed out or first seen in accounting until the
session stops. ``ip_leases.open_address`` is UNIQUE, so an address cannot be
open twice even with several RADIUS nodes allocating at once: the loser of a
race gets an IntegrityError and tries the next address.
"""

from __future__ import annotations

import datetime as dt
import logging

import netaddr
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from aaa.models import IpLease, IpPool

log = logging.getLogger(__name__)


class PoolError(ValueError):
    """A pool definition is wrong; the message names the part."""


def parse_ranges(text: str) -> list[netaddr.IPRange | netaddr.IPNetwork]:
    """ "100.64.0.0/30, 10.0.0.5-10.0.0.9" → networks and ranges, in order."""
    parts = []
    for item in (piece.strip() for piece in (text or "").split(",")):
        if not item:
            continue
        try:
            if "-" in item:
                first, last = (value.strip() for value in item.split("-", 1))
                parts.append(netaddr.IPRange(first, last))
            else:
                parts.append(netaddr.IPNetwork(item))
        except (netaddr.AddrFormatError, ValueError):
            raise PoolError(f"{item!r} is not an IP prefix or a first-last range") from None
    if not parts:
        raise PoolError("a pool needs at least one prefix or range")
    return parts


def addresses(parts) -> "iter[str]":
    """Usable addresses in order: a prefix longer than /31 loses its network
    and broadcast addresses."""
    for part in parts:
        if isinstance(part, netaddr.IPNetwork) and part.size > 2:
            hosts = part.iter_hosts()
        else:
            hosts = iter(part)
        for address in hosts:
            yield str(address)


def contains(parts, address: str) -> bool:
    try:
        ip = netaddr.IPAddress(address)
    except (netaddr.AddrFormatError, ValueError):
        return False
    return any(ip in part for part in parts)


def create_pool(session: Session, name: str, ranges: str) -> IpPool:
    parse_ranges(ranges)
    if session.scalar(select(IpPool.id).where(IpPool.name == name)) is not None:
        raise PoolError(f"pool {name!r} already exists")
    pool = IpPool(name=name, ranges=ranges)
    session.add(pool)
    session.flush()
    return pool


def allocate(session: Session, pool_name: str, account_id: int, now: dt.datetime) -> str | None:
    """An address from the pool for the account, or None if it is full.

    The account's open lease in this pool is reused (a re-login keeps its
    address); otherwise the address it held last is preferred; otherwise
    the first free one."""
    pool = session.scalar(select(IpPool).where(IpPool.name == pool_name))
    if pool is None:
        log.error("radius.pool_missing pool=%s", pool_name)
        return None
    parts = parse_ranges(pool.ranges)
    held = session.scalars(select(IpLease.address).where(
        IpLease.account_id == account_id, IpLease.valid_to.is_(None))).all()
    for address in held:
        if contains(parts, address):
            return address
    taken = set(session.scalars(select(IpLease.open_address).where(
        IpLease.open_address.is_not(None))).all())
    previous = session.scalars(select(IpLease.address).where(IpLease.account_id == account_id)
                               .order_by(IpLease.valid_from.desc()).limit(3)).all()
    candidates = [a for a in previous if contains(parts, a)]
    for address in _chain(candidates, addresses(parts)):
        if address in taken:
            continue
        try:
            with session.begin_nested():
                session.add(IpLease(account_id=account_id, address=address, valid_from=now,
                                    open_address=address))
            return address
        except IntegrityError:
            taken.add(address)  # another node won this one
    log.warning("radius.pool_full pool=%s", pool_name)
    return None


def _chain(first, rest):
    yield from first
    yield from rest


def close_lease(session_or_connection, address: str, at: dt.datetime,
                account_id: int | None = None) -> int:
    statement = (update(IpLease).where(IpLease.open_address == address)
                 .values(valid_to=at, open_address=None))
    if account_id is not None:
        statement = statement.where(IpLease.account_id == account_id)
    return session_or_connection.execute(statement).rowcount
