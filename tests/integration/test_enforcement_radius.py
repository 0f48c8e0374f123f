"""Through RADIUS: the Access-Accept carries rating.profile's answer and
names it in Class; the NAS's echo of it tells the enforcer what a new
session has; a Turbo bought before a suspension is there again after it."""

import datetime as dt
import itertools
import time

import pytest
from sqlalchemy import select

from aaa import enforcement
from aaa import packet as wire
from aaa.client import access_request, accounting_request, exchange, reply_valid
from aaa.models import Session as RadiusSession
from aaa.server import RadiusServer
from aaa.simulator import CoaResponder
from config.db import utcnow
from rating import cabinet_ops, fees, ledger, options, promised
from rating.models import Account
from tests import factories

SECRET = b"coa-secret"
MIKROTIK_RATE_LIMIT = (14988, 8)
_ids = itertools.count(1)


@pytest.fixture
def network(ctx):
    responder = CoaResponder(secret=SECRET).start()
    with ctx.Session() as session:
        tariff = factories.make_tariff(session, rate_down_kbps=20_000, rate_up_kbps=10_000,
                                       negative_rate_kbps=0)
        account = factories.make_account(session, tariff=tariff.name, balance="100")
        factories.make_service(session, account, login="anna", password="pw-anna")
        factories.make_nas(session, secret=SECRET.decode(), coa_port=responder.port)
        options.create_option_type(session, code="turbo", name="Turbo ×2", kind="turbo",
                                   price="30", duration_hours=24, rate_multiplier=2)
        session.commit()
        account_id = account.id
    server = RadiusServer(ctx, host="127.0.0.1", auth_port=0, acct_port=0)
    server.start()
    yield server, responder, account_id
    server.stop()
    responder.stop()


def login(server) -> wire.Packet:
    request = access_request(SECRET, next(_ids) % 256, "anna", "pw-anna")
    reply = exchange(request, ("127.0.0.1", server.auth_port))
    assert reply is not None and reply_valid(reply, request, SECRET)
    return wire.decode(reply)


def login_until(server, wanted, seconds=10.0) -> wire.Packet:
    """The directory re-reads a changed account within its refresh period."""
    deadline = time.monotonic() + seconds
    while True:
        answer = login(server)
        if wanted(answer) or time.monotonic() > deadline:
            return answer
        time.sleep(0.2)


def rate(answer) -> bytes | None:
    values = answer.vendor.get(MIKROTIK_RATE_LIMIT)
    return values[0] if values else None


def start(server, session_id, answer):
    pairs = [("Acct-Status-Type", "Start"), ("Acct-Session-Id", session_id),
             ("User-Name", "anna"), ("Framed-IP-Address", "10.9.0.7")]
    pairs += [("Class", value) for value in answer.attributes.get(25, ())]
    request = accounting_request(SECRET, next(_ids) % 256, pairs)
    assert exchange(request, ("127.0.0.1", server.acct_port)) is not None


def test_turbo_bought_before_a_suspension_is_given_again_after_it(ctx, network):
    server, responder, account_id = network
    with ctx.Session() as session:
        options.buy(session, session.get(Account, account_id), "turbo", utcnow(),
                    request_id="r-1")
        session.commit()
    accept = login_until(server, lambda a: rate(a) == b"20000k/40000k")
    assert (accept.code, rate(accept)) == (wire.ACCESS_ACCEPT, b"20000k/40000k")
    assert accept.attributes[25] == [b"abonent:full:40000/20000"]
    start(server, "s-1", accept)
    with ctx.Session() as session:
        deadline = time.monotonic() + 5
        while session.scalar(select(RadiusSession.profile)) is None \
                and time.monotonic() < deadline:
            time.sleep(0.05)
            session.expire_all()
        # The echoed Class is the session's applied profile: nothing to do.
        assert session.scalar(select(RadiusSession.profile)) == "full:40000/20000"
    assert enforcement.run_once(ctx.Session, sweep=True) == 0

    # Below the credit limit: suspended, the session disconnected, a login refused.
    with ctx.Session() as session:
        ledger.post(session, account_id=account_id, amount="-200", kind="traffic", key="use",
                    author="t")
        fees.apply_policies(session)
        session.commit()
    enforcement.run_once(ctx.Session)
    assert responder.disconnected == {"s-1"}
    assert login_until(server, lambda a: a.code == wire.ACCESS_REJECT).code == \
        wire.ACCESS_REJECT

    # A promised payment restores the account: the Turbo, still running, is back.
    with ctx.Session() as session:
        account = session.get(Account, account_id)
        promised.grant(session, account, "200", utcnow(), promised.PromisedRules())
        fees.apply_policies(session)
        session.commit()
        session.refresh(account)  # the ladder moved it by a set-based UPDATE
        speed = cabinet_ops.speed_now(session, account, utcnow())
        assert (speed.profile, speed.rate_down_kbps) == ("turbo", 40_000)
        assert speed.until - utcnow() > dt.timedelta(hours=23)
    again = login_until(server, lambda a: a.code == wire.ACCESS_ACCEPT)
    assert (again.code, rate(again)) == (wire.ACCESS_ACCEPT, b"20000k/40000k")


def test_a_foreign_or_broken_class_leaves_the_applied_profile_unknown(ctx, network):
    server, _responder, _ = network
    for session_id, classes in [("s-2", [b"other-server:42"]),
                                ("s-3", [b"abonent:full:x/1"]),
                                ("s-4", [b"other", b"abonent:full:20000/10000"])]:
        request = accounting_request(SECRET, next(_ids) % 256, [
            ("Acct-Status-Type", "Start"), ("Acct-Session-Id", session_id),
            ("User-Name", "anna")] + [("Class", value) for value in classes])
        assert exchange(request, ("127.0.0.1", server.acct_port)) is not None
    with ctx.Session() as session:
        stored = dict(session.execute(select(RadiusSession.acct_session_id,
                                             RadiusSession.profile)).all())
    assert stored == {"s-2": None, "s-3": None, "s-4": "full:20000/10000"}
