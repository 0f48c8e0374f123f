"""A voice NAS at the RADIUS server: its accounting becomes calls (not data
sessions) and is answered once stored; its Access-Request is the caller
check; a bad secret or an unknown source is dropped as on the data path."""

import itertools
import os
import socket
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from aaa import packet as wire
from aaa.client import exchange, reply_valid
from aaa.dictionary import encode_all
from aaa.models import Session as RadiusSession
from aaa.models import VoiceStart
from aaa.server import RadiusServer
from rating.models import Account, Call, VoicePlan, VoiceRate, VoiceService
from tests.factories import make_account, make_nas

SECRET = b"voice-secret"
CALLER, OTHER = "74951230001", "74957650002"
_ids = itertools.count(1)


@pytest.fixture
def server(ctx):
    with ctx.Session() as session:
        plan = VoicePlan(name="Voice")
        session.add(plan)
        session.flush()
        session.add(VoiceRate(plan_id=plan.id, prefix="7495", zone="Moscow",
                              price_per_minute=Decimal("2.00"), first_increment_s=1,
                              next_increment_s=1))
        account = make_account(session, balance="100.00")
        session.add(VoiceService(account_id=account.id, number=CALLER, plan_id=plan.id))
        make_nas(session, name="kam", vendor="sip", secret=SECRET.decode())
        session.commit()
    server = RadiusServer(ctx, host="127.0.0.1", auth_port=0, acct_port=0).start()
    yield server
    server.stop()


def call_event(status, call_id, stamp, secret=SECRET):
    pairs = [("Acct-Status-Type", status), ("Service-Type", 15), ("Acct-Session-Id", call_id),
             ("Calling-Station-Id", CALLER), ("Called-Station-Id", "84957650099")]
    body = encode_all(pairs) + wire.attribute(55, f"{stamp:.6f}".encode())
    return wire.encode_request(wire.ACCOUNTING_REQUEST, next(_ids) % 256, secret, body)


def caller_check(caller, service_type=30, secret=SECRET):
    body = encode_all([("User-Name", caller), ("Service-Type", service_type),
                       ("Calling-Station-Id", caller)])
    return wire.encode_request(wire.ACCESS_REQUEST, next(_ids) % 256, secret, body,
                               authenticator=os.urandom(16))


def test_a_call_is_answered_once_stored_and_is_no_data_session(ctx, server):
    address = ("127.0.0.1", server.acct_port)
    start = call_event(1, "abc@proxy", 1796558400.0)
    reply = exchange(start, address)
    assert reply is not None and reply_valid(reply, start, SECRET)
    stop = call_event(2, "abc@proxy", 1796558430.4)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as nas:
        nas.settimeout(2)
        for _ in range(2):      # the second copy is answered from the cache
            nas.sendto(stop, address)
            assert nas.recvfrom(4096)[0][0] == wire.ACCOUNTING_RESPONSE
    assert exchange(stop, address) is not None      # from another port: processed again
    with ctx.Session() as session:
        [call] = session.scalars(select(Call)).all()
        assert (call.source, call.external_id, call.billsec) == ("radius:kam", "abc@proxy", 30)
        assert call.charge == Decimal("1.00")
        assert session.scalar(select(func.count()).select_from(RadiusSession)) == 0
        assert session.scalar(select(func.count()).select_from(VoiceStart)) == 0
        assert session.get(Account, call.account_id).balance == Decimal("99.00")
    assert server.stats["acct_duplicates"] == 1


def test_bad_secret_and_garbage_are_dropped_and_change_nothing(ctx, server):
    address = ("127.0.0.1", server.acct_port)
    assert exchange(call_event(2, "forged", 1796558430.0, secret=b"wrong"), address,
                    timeout=0.5) is None
    no_numbers = wire.encode_request(wire.ACCOUNTING_REQUEST, 9, SECRET, encode_all(
        [("Acct-Status-Type", 2), ("Acct-Session-Id", "x")]))
    assert exchange(no_numbers, address, timeout=0.5) is None
    assert server.drops["bad-authenticator"] == 1 and server.drops["malformed"] == 1
    with ctx.Session() as session:
        assert session.scalars(select(Call)).all() == []


def test_the_caller_check_follows_the_balance(ctx, server):
    address = ("127.0.0.1", server.auth_port)
    request = caller_check(CALLER)
    reply = exchange(request, address)
    assert reply is not None and reply_valid(reply, request, SECRET)
    assert reply[0] == wire.ACCESS_ACCEPT
    for refused in (caller_check(OTHER),                        # not our number
                    caller_check(CALLER, service_type=2)):      # not a caller check
        reply = exchange(refused, address)
        assert reply is not None and reply[0] == wire.ACCESS_REJECT
    # A wrong secret shows only in the reply (RFC 2865): the NAS refuses it.
    forged = caller_check(CALLER, secret=b"wrong")
    reply = exchange(forged, address)
    assert reply is not None and not reply_valid(reply, forged, b"wrong")
    # A source that is no NAS gets nothing.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
        stranger.bind(("127.0.0.2", 0))
        stranger.settimeout(0.5)
        stranger.sendto(caller_check(CALLER), address)
        with pytest.raises(socket.timeout):
            stranger.recvfrom(4096)
    assert server.drops["unknown-client"] == 1
    # Debt past the credit limit: the ladder suspends the account, and the
    # next check (after the answer's time to live) refuses the call.
    from rating import jobs
    with ctx.Session() as session:
        account = session.scalars(select(Account)).one()
        account.balance = Decimal("-10.00")
        session.commit()
    jobs.run_periodic(ctx.Session)
    server._call_checks.clear()     # the 5 s time to live, without waiting for it
    reply = exchange(caller_check(CALLER), address)
    assert reply is not None and reply[0] == wire.ACCESS_REJECT
