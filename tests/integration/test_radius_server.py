"""The RADIUS server over loopback with our own client: accounting rules,
NAS matching, drops."""

import datetime as dt
import itertools
import socket

import pytest
from sqlalchemy import select

from aaa import packet as wire
from aaa.client import access_request, accounting_request, exchange, reply_valid
from aaa.models import Session as RadiusSession
from aaa.server import RadiusServer
from config.db import utcnow
from tests import factories

SECRET = b"testing123"
_ids = itertools.count(1)


@pytest.fixture
def radius(ctx):
    with ctx.Session() as session:
        account = factories.make_account(session)
        factories.make_service(session, account, login="bob", password="pw-bob")
        factories.make_nas(session, name="wide", address="127.0.0.0/8", secret="wide-secret")
        factories.make_nas(session, name="narrow", address="127.0.0.0/24",
                           secret=SECRET.decode())
        session.commit()
    server = RadiusServer(ctx, host="127.0.0.1", auth_port=0, acct_port=0)
    server.start()
    yield server
    server.stop()


def acct(server, pairs, secret=SECRET, timeout=2.0):
    request = accounting_request(secret, next(_ids) % 256, pairs)
    reply = exchange(request, ("127.0.0.1", server.acct_port), timeout=timeout)
    if reply is not None:
        assert reply[0] == wire.ACCOUNTING_RESPONSE and reply_valid(reply, request, secret)
    return reply


def stored(ctx, session_id="s-1"):
    with ctx.Session() as session:
        return session.scalar(select(RadiusSession).where(
            RadiusSession.acct_session_id == session_id))


def test_smallest_prefix_wins_and_its_secret_is_used(radius, ctx):
    # 127.0.0.1 is inside both /8 and /24: the /24 ("narrow") must answer.
    assert acct(radius, [("Acct-Status-Type", "Start"), ("Acct-Session-Id", "s-1"),
                         ("User-Name", "bob")]) is not None
    assert acct(radius, [("Acct-Status-Type", "Start"), ("Acct-Session-Id", "s-2"),
                         ("User-Name", "bob")], secret=b"wide-secret", timeout=0.3) is None
    row = stored(ctx)
    assert row.username == "bob" and row.account_id is not None and row.stopped_at is None
    assert stored(ctx, "s-2") is None


def test_retransmits_and_reordering_never_count_twice_or_go_back(radius, ctx):
    base = [("Acct-Session-Id", "s-1"), ("User-Name", "bob")]
    interim_1 = base + [("Acct-Status-Type", "Interim-Update"), ("Acct-Input-Octets", 500),
                        ("Acct-Output-Octets", 900), ("Acct-Session-Time", 300)]
    interim_2 = base + [("Acct-Status-Type", "Interim-Update"), ("Acct-Input-Octets", 100),
                        ("Acct-Input-Gigawords", 1), ("Acct-Output-Octets", 2000),
                        ("Acct-Session-Time", 600)]
    assert acct(radius, base + [("Acct-Status-Type", "Start")])
    assert acct(radius, interim_2)
    # An older interim arriving late, then retransmitted with a new delay.
    assert acct(radius, interim_1)
    assert acct(radius, interim_1 + [("Acct-Delay-Time", 4)])
    assert acct(radius, interim_2 + [("Acct-Delay-Time", 9)])
    row = stored(ctx)
    assert row.octets_in == 2**32 + 100 and row.octets_out == 2000
    assert row.session_time == 600 and row.stopped_at is None
    stop = base + [("Acct-Status-Type", "Stop"), ("Acct-Input-Octets", 200),
                   ("Acct-Input-Gigawords", 1), ("Acct-Output-Octets", 2500),
                   ("Acct-Session-Time", 700), ("Acct-Terminate-Cause", "Lost-Carrier")]
    assert acct(radius, stop)
    first_stop = stored(ctx).stopped_at
    assert acct(radius, stop + [("Acct-Delay-Time", 30)])
    assert acct(radius, interim_2)  # late interim does not reopen
    row = stored(ctx)
    assert row.octets_in == 2**32 + 200 and row.octets_out == 2500
    assert row.terminate_cause == "Lost-Carrier" and row.stopped_at == first_stop


def test_event_time_subtracts_acct_delay_time(radius, ctx):
    before = utcnow()
    assert acct(radius, [("Acct-Status-Type", "Start"), ("Acct-Session-Id", "s-1"),
                         ("User-Name", "bob"), ("Acct-Delay-Time", 3600)])
    row = stored(ctx)
    assert abs(row.started_at - (before - dt.timedelta(hours=1))) < dt.timedelta(seconds=5)


def test_accounting_on_closes_the_nas_open_sessions(radius, ctx):
    for number in range(5):
        assert acct(radius, [("Acct-Status-Type", "Start"), ("Acct-Session-Id", f"s-{number}"),
                             ("User-Name", "bob")])
    assert acct(radius, [("Acct-Status-Type", "Accounting-On")])
    with ctx.Session() as session:
        rows = session.scalars(select(RadiusSession)).all()
    assert len(rows) == 5
    assert all(r.stopped_at is not None and r.terminate_cause == "NAS-Reboot" for r in rows)


def test_unknown_source_and_garbage_are_dropped(radius, ctx):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.3)
        for junk in (b"", b"\x04\x01\x00", b"\x04\x01\x00\x30" + bytes(16),
                     b"\x04\x01\x00\x17" + bytes(16) + b"\x2c\x01\x00"):
            sock.sendto(junk, ("127.0.0.1", radius.acct_port))
            sock.sendto(junk, ("127.0.0.1", radius.auth_port))
            with pytest.raises(socket.timeout):
                sock.recvfrom(4096)
    assert radius.stats["dropped"] >= 8
    with ctx.Session() as session:
        assert session.scalars(select(RadiusSession)).all() == []


def test_access_request_reply_has_message_authenticator_first(radius):
    request = access_request(SECRET, 7, "bob", "pw-bob")
    reply = exchange(request, ("127.0.0.1", radius.auth_port))
    assert reply is not None and reply[0] == wire.ACCESS_ACCEPT
    assert reply_valid(reply, request, SECRET)
    decoded = wire.decode(reply)
    assert reply[20] == wire.MESSAGE_AUTHENTICATOR
    assert wire.message_authenticator_valid(decoded, SECRET, authenticator=request[4:20])
    # The same request again is answered from the duplicate cache, identically.
    assert exchange(request, ("127.0.0.1", radius.auth_port)) == reply
    # Bad Message-Authenticator: dropped.
    forged = bytearray(access_request(SECRET, 8, "bob", "pw-bob"))
    forged[22] ^= 0xFF
    assert exchange(bytes(forged), ("127.0.0.1", radius.auth_port), timeout=0.3) is None


@pytest.fixture
def ipoe(radius, ctx):
    with ctx.Session() as session:
        account = factories.make_account(session)
        factories.make_service(session, account, kind="ipoe", login=None, password=None,
                               mac="aa:bb:cc:00:00:01", static_ipv4="10.9.0.1")
        factories.make_service(session, account, kind="ipoe", login=None, password=None,
                               circuit_id="olt1 eth 0/1/2:100", static_ipv4="10.9.0.2")
        session.commit()
    return radius


@pytest.mark.parametrize("username, pairs, address", [
    ("AA-BB-CC-00-00-01", [], "10.9.0.1"),
    ("dhcp-client", [("Calling-Station-Id", "aabb.cc00.0001")], "10.9.0.1"),
    ("aa:bb:cc:00:00:99", [("ADSL-Agent-Circuit-Id", b"olt1 eth 0/1/2:100")], "10.9.0.2"),
])
def test_ipoe_by_mac_and_option82(ipoe, username, pairs, address):
    request = access_request(SECRET, 11, username, None, pairs=pairs)
    reply = exchange(request, ("127.0.0.1", ipoe.auth_port))
    assert reply is not None and reply[0] == wire.ACCESS_ACCEPT
    framed = wire.decode(reply).first(8)
    assert ".".join(str(b) for b in framed) == address


def test_ipoe_unknown_binding_and_pppoe_service_by_mac_are_rejected(ipoe, ctx):
    with ctx.Session() as session:
        account = factories.make_account(session)
        factories.make_service(session, account, login="carol", password="pw",
                               mac="aa:bb:cc:00:00:02")
        session.commit()
    for username in ("aa:bb:cc:00:00:77", "aa:bb:cc:00:00:02"):
        request = access_request(SECRET, 12, username, None)
        reply = exchange(request, ("127.0.0.1", ipoe.auth_port))
        assert reply is not None and reply[0] == wire.ACCESS_REJECT


def _nas_policy(ctx, **values):
    from aaa.models import Nas
    with ctx.Session() as session:
        nas = session.scalar(select(Nas).where(Nas.name == "narrow"))
        for key, value in values.items():
            setattr(nas, key, value)
        session.commit()


def _auth(server, message_authenticator=True, pairs=(), timeout=1.0):
    request = access_request(SECRET, next(_ids) % 256, "bob", "pw-bob", pairs=pairs,
                             message_authenticator=message_authenticator)
    reply = exchange(request, ("127.0.0.1", server.auth_port), timeout=timeout)
    return reply[0] if reply else None


def test_message_authenticator_policies(ctx):
    with ctx.Session() as session:
        account = factories.make_account(session)
        factories.make_service(session, account, login="bob", password="pw-bob")
        factories.make_nas(session, name="narrow", address="127.0.0.1", secret=SECRET.decode(),
                           require_message_authenticator="no", limit_proxy_state="no")
        session.commit()
    proxied = [("Proxy-State", b"\x01\x02")]
    for policy, without, with_proxy_state in [
        (dict(require_message_authenticator="no", limit_proxy_state="no"), True, True),
        (dict(require_message_authenticator="no", limit_proxy_state="yes"), True, False),
        (dict(require_message_authenticator="yes"), False, False),
    ]:
        _nas_policy(ctx, **policy)
        server = RadiusServer(ctx, host="127.0.0.1", auth_port=0, acct_port=0).start()
        try:
            assert _auth(server) == wire.ACCESS_ACCEPT
            assert (_auth(server, False, timeout=0.3) == wire.ACCESS_ACCEPT) is without
            assert (_auth(server, False, proxied, timeout=0.3) == wire.ACCESS_ACCEPT) \
                is with_proxy_state
        finally:
            server.stop()
    # auto: accepted without it until the NAS is seen sending it, then required.
    _nas_policy(ctx, require_message_authenticator="auto", limit_proxy_state="no")
    server = RadiusServer(ctx, host="127.0.0.1", auth_port=0, acct_port=0).start()
    try:
        assert _auth(server, False) == wire.ACCESS_ACCEPT
        assert _auth(server, True) == wire.ACCESS_ACCEPT
        assert _auth(server, False, timeout=0.3) is None
    finally:
        server.stop()


def test_proxy_state_is_echoed(radius):
    request = access_request(SECRET, 21, "bob", "pw-bob",
                             pairs=[("Proxy-State", b"abc"), ("Proxy-State", b"def")])
    reply = wire.decode(exchange(request, ("127.0.0.1", radius.auth_port)))
    assert reply.attributes[wire.PROXY_STATE] == [b"abc", b"def"]


def test_status_server_is_answered_only_when_signed(radius):
    signed = wire.encode_request(wire.STATUS_SERVER, 5, SECRET, b"", authenticator=bytes(16),
                                 message_authenticator=True)
    reply = exchange(signed, ("127.0.0.1", radius.auth_port))
    assert reply is not None and reply[0] == wire.ACCESS_ACCEPT
    assert reply_valid(reply, signed, SECRET)
    unsigned = wire.encode_request(wire.STATUS_SERVER, 6, SECRET, b"", authenticator=bytes(16))
    assert exchange(unsigned, ("127.0.0.1", radius.auth_port), timeout=0.3) is None


def test_accounting_retransmit_gets_the_cached_reply(radius, ctx):
    request = accounting_request(SECRET, 77, [("Acct-Status-Type", "Start"),
                                              ("Acct-Session-Id", "dup-1"), ("User-Name", "bob")])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        sock.bind(("127.0.0.1", 0))
        sock.sendto(request, ("127.0.0.1", radius.acct_port))
        first = sock.recvfrom(4096)[0]
        committed = radius.stats["acct_committed"]
        # RFC 5080 §2.2.2: same source, identifier and authenticator → the
        # cached reply, nothing written again.
        sock.sendto(request, ("127.0.0.1", radius.acct_port))
        assert sock.recvfrom(4096)[0] == first
    assert radius.stats["acct_committed"] == committed
    assert stored(ctx, "dup-1") is not None


def test_profile_change_reaches_the_cache_within_seconds(radius, ctx):
    import time

    from rating.models import Account
    assert _auth(radius) == wire.ACCESS_ACCEPT
    with ctx.Session() as session:
        account = session.scalar(select(Account).join(
            factories.Service, factories.Service.account_id == Account.id)
            .where(factories.Service.login == "bob"))
        account.profile = "suspended"
        account.version += 1
        session.commit()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _auth(radius) == wire.ACCESS_ACCEPT:
        time.sleep(0.2)
    assert _auth(radius) == wire.ACCESS_REJECT


def _preloaded_directory(ctx, login: str):
    """A directory preloaded with one new service ``login``; (it, account id)."""
    from aaa import directory
    with ctx.Session() as session:
        account = factories.make_account(session)
        factories.make_service(session, account, login=login, password="pw")
        session.commit()
        account_id = account.id
    cache = directory.SubscriberDirectory(ctx.Session)
    cache.preload()
    assert cache.by_login(login).profile == "normal"
    return cache, account_id


def test_directory_follows_the_profile_outbox_without_version_checks(ctx, monkeypatch):
    from aaa import directory
    from rating.models import Account, ProfileChange
    monkeypatch.setattr(directory, "VERSION_CHECK_LIMIT", 0)
    cache, account_id = _preloaded_directory(ctx, "dora")
    assert cache.refresh_changed() == 0
    with ctx.Session() as session:
        session.get(Account, account_id).profile = "throttled"
        session.add(ProfileChange(account_id=account_id, profile="throttled", reason="test"))
        session.commit()
    assert cache.by_login("dora").profile == "normal"  # cached until refreshed
    assert cache.refresh_changed() == 1
    assert cache.by_login("dora").profile == "throttled"


def test_unknown_names_do_not_stop_the_version_check(ctx, monkeypatch):
    """The per-second check of accounts.version is for caches of up to
    VERSION_CHECK_LIMIT views; a burst of unknown names (kept as None
    entries) must not push a small cache past it."""
    from aaa import directory
    from rating.models import Account
    monkeypatch.setattr(directory, "VERSION_CHECK_LIMIT", 3)
    cache, account_id = _preloaded_directory(ctx, "erin")
    for n in range(10):
        assert cache.by_login(f"nobody-{n}") is None
    assert cache.by_login("nobody-0") is None      # asked again: still one entry
    assert len(cache) == 11
    with ctx.Session() as session:
        changed = session.get(Account, account_id)
        changed.profile = "throttled"   # no outbox row: the version alone tells
        changed.version += 1
        session.commit()
    assert cache.refresh_changed() == 1
    assert cache.by_login("erin").profile == "throttled"
    # Past the limit in views, the check stops (the outbox and the full
    # re-read carry changes then).
    monkeypatch.setattr(directory, "VERSION_CHECK_LIMIT", 0)
    with ctx.Session() as session:
        session.get(Account, account_id).version += 1
        session.commit()
    assert cache.refresh_changed() == 0


@pytest.mark.parametrize("password, accepted", [("pw-bob", True), ("not-it", False)])
def test_mschapv2(radius, password, accepted):
    import os

    from aaa import mschap
    challenge, peer = os.urandom(16), os.urandom(16)
    response = b"\x05\x00" + peer + bytes(8) + mschap.nt_response(challenge, peer, "bob",
                                                                  password)
    request = access_request(SECRET, 31, "bob", None, pairs=[
        ("MS-CHAP-Challenge", challenge), ("MS-CHAP2-Response", response)])
    reply = exchange(request, ("127.0.0.1", radius.auth_port))
    assert reply is not None
    decoded = wire.decode(reply)
    if accepted:
        assert decoded.code == wire.ACCESS_ACCEPT
        expected = mschap.authenticator_response("pw-bob", response[26:], peer, challenge, "bob")
        assert decoded.vendor[(311, 26)] == [b"\x05" + expected.encode()]
        # MPPE keys (RFC 2548 §2.4, RFC 3079), salt-encrypted with the request's authenticator.
        keys = [wire.salt_decrypt(decoded.vendor[(311, kind)][0], SECRET, request[4:20])
                for kind in (16, 17)]
        assert tuple(keys) == mschap.mppe_keys("pw-bob", response[26:])
        assert decoded.vendor[(311, 16)][0][:2] != decoded.vendor[(311, 17)][0][:2]
        assert decoded.vendor[(311, 7)] == [wire.integer(1)]
        assert decoded.vendor[(311, 8)] == [wire.integer(6)]
    else:
        assert decoded.code == wire.ACCESS_REJECT and (311, 26) not in decoded.vendor
        assert (311, 16) not in decoded.vendor


def test_a_remembered_prefix_match_gives_way_to_a_narrower_nas_after_reload(ctx):
    from aaa.directory import NasTable

    with ctx.Session() as session:
        factories.make_nas(session, name="wide", address="127.0.0.0/8", secret="w")
        session.commit()
    table = NasTable(ctx.Session)
    assert table.lookup("127.0.0.7").name == "wide"
    assert table.lookup("127.0.0.7").name == "wide"   # now from the remembered match
    assert table.lookup("10.9.9.9") is None
    with ctx.Session() as session:
        factories.make_nas(session, name="narrow", address="127.0.0.0/24", secret="n")
        session.commit()
    table.reload()
    assert table.lookup("127.0.0.7").name == "narrow"
    assert table.lookup("127.1.0.7").name == "wide"


def test_a_server_only_process_keeps_its_caches_out_of_the_collector(ctx):
    """freeze_heap (abonent serve radius): what exists at start is frozen, so
    a full collection does not walk the caches while requests wait."""
    import gc

    assert gc.get_freeze_count() == 0
    server = RadiusServer(ctx, host="127.0.0.1", auth_port=0, acct_port=0, freeze_heap=True)
    try:
        server.start()
        assert gc.get_freeze_count() > 10_000
    finally:
        server.stop()
        gc.unfreeze()
