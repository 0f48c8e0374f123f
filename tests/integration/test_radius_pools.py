"""Framed-IP from a pool, with leases that follow sessions."""

import itertools

import pytest
from sqlalchemy import select

from aaa import packet as wire
from aaa import pools
from aaa.client import access_request, accounting_request, exchange
from aaa.models import IpLease
from aaa.server import RadiusServer
from tests import factories

SECRET = b"pool-secret"
_ids = itertools.count(1)


@pytest.fixture
def radius(ctx):
    with ctx.Session() as session:
        pools.create_pool(session, "cgnat", "100.64.0.0/30")  # two usable hosts
        for login in ("p1", "p2", "p3"):
            account = factories.make_account(session)
            factories.make_service(session, account, login=login, password="pw", pool="cgnat")
        account = factories.make_account(session)
        factories.make_service(session, account, login="fixed", password="pw",
                               static_ipv4="192.0.2.7")
        factories.make_nas(session, address="127.0.0.1", secret=SECRET.decode())
        session.commit()
    server = RadiusServer(ctx, host="127.0.0.1", auth_port=0, acct_port=0).start()
    yield server
    server.stop()


def login(server, name):
    reply = exchange(access_request(SECRET, next(_ids) % 256, name, "pw"),
                     ("127.0.0.1", server.auth_port))
    assert reply is not None
    decoded = wire.decode(reply)
    framed = decoded.first(8)
    return decoded.code, ".".join(map(str, framed)) if framed else None


def acct(server, pairs):
    reply = exchange(accounting_request(SECRET, next(_ids) % 256, pairs),
                     ("127.0.0.1", server.acct_port))
    assert reply is not None and reply[0] == wire.ACCOUNTING_RESPONSE


def open_leases(ctx):
    with ctx.Session() as session:
        return sorted(session.scalars(select(IpLease.open_address)
                                      .where(IpLease.open_address.is_not(None))).all())


def test_pool_hands_out_distinct_addresses_until_full(radius, ctx):
    code1, first = login(radius, "p1")
    code2, second = login(radius, "p2")
    assert (code1, code2) == (wire.ACCESS_ACCEPT, wire.ACCESS_ACCEPT)
    assert {first, second} == {"100.64.0.1", "100.64.0.2"}
    assert login(radius, "p1") == (wire.ACCESS_ACCEPT, first)  # re-login keeps it
    assert login(radius, "p3") == (wire.ACCESS_REJECT, None)  # full
    assert open_leases(ctx) == ["100.64.0.1", "100.64.0.2"]
    # p1's session stops: its lease closes and p3 gets the address.
    base = [("User-Name", "p1"), ("Acct-Session-Id", "p1-s"), ("Framed-IP-Address", first)]
    acct(radius, base + [("Acct-Status-Type", "Start")])
    acct(radius, base + [("Acct-Status-Type", "Stop"), ("Acct-Session-Time", 10)])
    assert open_leases(ctx) == [second]
    assert login(radius, "p3") == (wire.ACCESS_ACCEPT, first)


def test_static_address_lease_follows_the_session_and_accounting_on(radius, ctx):
    assert login(radius, "fixed") == (wire.ACCESS_ACCEPT, "192.0.2.7")
    assert open_leases(ctx) == []
    base = [("User-Name", "fixed"), ("Framed-IP-Address", "192.0.2.7")]
    acct(radius, base + [("Acct-Session-Id", "f-1"), ("Acct-Status-Type", "Start")])
    acct(radius, base + [("Acct-Session-Id", "f-1"), ("Acct-Status-Type", "Start")])
    assert open_leases(ctx) == ["192.0.2.7"]
    acct(radius, [("Acct-Status-Type", "Accounting-On")])
    assert open_leases(ctx) == []
    with ctx.Session() as session:
        lease = session.scalar(select(IpLease))
    assert lease.valid_to is not None and lease.valid_from <= lease.valid_to
    assert lease.session_id is not None
