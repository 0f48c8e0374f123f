"""The cached-Accept path (aaa.fastpath, aaa._fastauth) gives exactly the
Python path's answers: the same datagrams through a server with it and one
without, byte for byte; it forgets what the directory forgets; and the
batched receive loop (recvmmsg / sendmmsg) answers over real sockets."""

import datetime as dt
import os
import socket
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aaa import fastpath
from aaa import packet as wire
from aaa.client import access_request
from aaa.directory import NasTable
from aaa.server import RadiusServer
from config.db import utcnow
from tests import factories

pytestmark = pytest.mark.skipif(not fastpath.available,
                                reason="aaa._fastauth is not built (no C compiler?)")

SECRET = b"fast-secret"
SOURCE = ("127.0.0.1", 41000)


def _server(ctx, fast: bool) -> RadiusServer:
    """A server without sockets, its handlers called as the loops call them."""
    server = RadiusServer(ctx, host="127.0.0.1", auth_port=0, acct_port=0)
    server.nas_table = NasTable(server._reader)
    server.directory.preload()
    if not fast:
        server._fast = None
    return server


@pytest.fixture
def pair(ctx):
    with ctx.Session() as session:
        account = factories.make_account(session, balance="100")
        factories.make_service(session, account, login="bob", password="pw-bob")
        factories.make_service(session, account, login="amy", password="p" * 40)
        broke = factories.make_account(session, balance="-500")
        factories.make_service(session, broke, login="dan", password="pw-dan")
        factories.make_nas(session, address=SOURCE[0], secret=SECRET.decode())
        session.commit()
    fast, reference = _server(ctx, True), _server(ctx, False)
    assert fast._fast is not None and reference._fast is None
    return fast, reference


def _request(name: bytes | None, password: bytes | None, *, identifier: int = 1,
             authenticator: bytes | None = None, mac: str = "valid", extra: bytes = b"",
             code: int = wire.ACCESS_REQUEST, padding: bytes = b"",
             hidden: bytes | None = None) -> bytes:
    authenticator = authenticator or os.urandom(16)
    body = b""
    if name is not None:
        body += wire.attribute(wire.USER_NAME, name)
    if hidden is not None:
        body += bytes((wire.USER_PASSWORD, len(hidden) + 2)) + hidden
    elif password is not None:
        body += wire.attribute(wire.USER_PASSWORD,
                               wire.encrypt_password(password, SECRET, authenticator))
    body += extra
    if mac == "absent":
        head = bytes((code, identifier)) + (20 + len(body)).to_bytes(2, "big")
        return head + authenticator + body + padding
    data = wire.encode_request(code if code != 12 else wire.ACCESS_REQUEST, identifier,
                               SECRET, body, authenticator=authenticator,
                               message_authenticator=True)
    data = bytes((code,)) + data[1:]
    if mac == "wrong":
        data = data[:22] + bytes(16) + data[38:]
    return data + padding


def _same(fast, reference, data: bytes) -> bytes | None:
    got = fast.handle_auth(data, SOURCE, True)
    expected = reference.handle_auth(data, SOURCE, True)
    assert got == expected, data.hex()
    return got


def test_a_known_login_is_answered_by_the_fast_path_with_the_python_paths_bytes(pair):
    fast, reference = pair
    first = _request(b"bob", b"pw-bob")
    assert _same(fast, reference, first)[0] == wire.ACCESS_ACCEPT
    assert fast.stats["auth_fast"] == 0 and len(fast._fast) == 1     # learned
    for _ in range(20):
        reply = _same(fast, reference, _request(b"bob", b"pw-bob", identifier=9))
        assert reply[0] == wire.ACCESS_ACCEPT
    assert fast.stats["auth_fast"] == 20
    assert fast.stats["auth_accept"] == reference.stats["auth_accept"] == 21
    # A retransmit gets its original's reply from the duplicate cache.
    again = _request(b"bob", b"pw-bob", identifier=3)
    reply = _same(fast, reference, again)
    assert _same(fast, reference, again) == reply
    assert fast.stats["auth_duplicates"] == reference.stats["auth_duplicates"] == 1


@pytest.mark.parametrize("case", [
    dict(password=b"wrong"),                            # a wrong password: Reject, logged
    dict(password=b"pw-bob\x00x"),                      # not the password, then padding
    dict(mac="wrong"), dict(mac="absent"),
    dict(extra=wire.attribute(wire.PROXY_STATE, b"st")),    # copied by the Python path
    dict(extra=bytes((80, 17)) + bytes(15)),            # a short Message-Authenticator
    dict(extra=bytes((wire.NAS_PORT_TYPE_ATTRIBUTE, 1))),   # an attribute's length under 2
    dict(padding=b"\x00" * 7),                          # octets past the length field
    dict(hidden=bytes(15)), dict(hidden=b""), dict(hidden=bytes(144)),
    dict(name=b"b\x00b"), dict(name=b""), dict(name=b"eve"), dict(name=None),
    dict(code=wire.STATUS_SERVER), dict(code=wire.ACCOUNTING_REQUEST),
])
def test_what_the_fast_path_does_not_know_gets_the_python_paths_answer(pair, case):
    fast, reference = pair
    _same(fast, reference, _request(b"bob", b"pw-bob"))       # learned
    params = dict(name=b"bob", password=b"pw-bob")
    params.update(case)
    name, password = params.pop("name"), params.pop("password")
    before = fast.stats["auth_fast"]
    _same(fast, reference, _request(name, password, identifier=77, **params))
    assert fast.stats["auth_fast"] == before
    assert fast.stats["dropped"] == reference.stats["dropped"]
    assert fast.drops == reference.drops


def test_a_changed_password_and_a_changed_account_are_followed(pair, ctx):
    from aaa.models import Service
    from rating.models import Account
    fast, reference = pair
    for login, password in ((b"bob", b"pw-bob"), (b"dan", b"pw-dan")):
        _same(fast, reference, _request(login, password))
        _same(fast, reference, _request(login, password))
    assert fast.stats["auth_fast"] == 2
    with ctx.Session() as session:
        service = session.query(Service).filter_by(login="bob").one()
        service.password = "new-pw"
        dan = session.query(Service).filter_by(login="dan").one()
        session.get(Account, dan.account_id).balance = 1000
        session.commit()
    # What the refresh thread does every ttl/2 (a full re-read).
    fast.directory.preload()
    reference.directory.preload()
    assert _same(fast, reference, _request(b"bob", b"pw-bob"))[0] == wire.ACCESS_REJECT
    answer = _same(fast, reference, _request(b"bob", b"new-pw"))
    assert answer[0] == wire.ACCESS_ACCEPT
    assert _same(fast, reference, _request(b"bob", b"new-pw")) is not None
    _same(fast, reference, _request(b"dan", b"pw-dan"))
    _same(fast, reference, _request(b"dan", b"pw-dan"))
    assert fast.stats["auth_fast"] == 4


def test_an_entry_ends_with_the_directorys_view_of_its_login(pair):
    fast, reference = pair
    _same(fast, reference, _request(b"bob", b"pw-bob"))
    client = fast.nas_table.lookup(SOURCE[0])
    data = _request(b"bob", b"pw-bob")
    assert fast._fast.answer(data, client, time.monotonic()) is not None
    # Past the view's TTL the Python path (which reads again) answers.
    later = time.monotonic() + fast.directory.ttl_s + 1
    assert fast._fast.answer(data, client, later) is None

def test_an_entry_ends_with_its_nas_client(pair, ctx):
    from aaa.models import Nas
    fast, reference = pair
    _same(fast, reference, _request(b"bob", b"pw-bob"))
    client = fast.nas_table.lookup(SOURCE[0])
    data = _request(b"bob", b"pw-bob")
    # The NAS table is read again every 10 s: an unchanged NAS keeps its
    # client object, and what the fast path learned for it.
    fast.nas_table.reload()
    assert fast.nas_table.lookup(SOURCE[0]) is client
    assert fast._fast.answer(data, client, time.monotonic()) is not None
    with ctx.Session() as session:
        session.query(Nas).one().vendor = "cisco"       # other reply attributes
        session.commit()
    for server in (fast, reference):
        server.nas_table.reload()
    renewed = fast.nas_table.lookup(SOURCE[0])
    assert renewed is not client and renewed.vendor == "cisco"
    assert fast._fast.answer(data, renewed, time.monotonic()) is None
    before = fast.stats["auth_fast"]
    _same(fast, reference, _request(b"bob", b"pw-bob"))
    _same(fast, reference, _request(b"bob", b"pw-bob"))
    assert fast.stats["auth_fast"] == before + 1


def test_a_nas_rotating_its_secret_is_answered_by_the_python_path(pair, ctx):
    from aaa.models import Nas
    fast, reference = pair
    _same(fast, reference, _request(b"bob", b"pw-bob"))
    with ctx.Session() as session:
        nas = session.query(Nas).one()
        nas.previous_secret = "old-secret"
        nas.previous_secret_until = utcnow() + dt.timedelta(hours=1)
        session.commit()
    for server in (fast, reference):
        server.nas_table.reload()
    before = fast.stats["auth_fast"]
    assert _same(fast, reference, _request(b"bob", b"pw-bob"))[0] == wire.ACCESS_ACCEPT
    assert fast.stats["auth_fast"] == before


_names = st.sampled_from([b"bob", b"amy", b"dan", b"eve", b"", b"bo\xffb", b"b\x00b"])
_passwords = st.sampled_from([b"pw-bob", b"p" * 40, b"pw-dan", b"", b"wrong", b"pw-bob\x00"])
# Half the requests carry a known login's right password (what the fast
# path answers once it has learned it), half any pairing.
_credentials = st.one_of(
    st.sampled_from([(b"bob", b"pw-bob"), (b"amy", b"p" * 40), (b"dan", b"pw-dan")]),
    st.tuples(_names, _passwords))
_extras = st.lists(st.sampled_from([
    b"", wire.attribute(wire.PROXY_STATE, b"\x01\x02"), bytes((61, 6, 0, 0, 0, 15)),
    bytes((26, 12, 0, 0, 0x0e, 0x8f, 1, 6, 1, 2, 3, 4)), bytes((80, 18)) + bytes(16),
    wire.attribute(wire.USER_NAME, b"amy"), bytes((3, 19)) + bytes(17), bytes((9, 1)),
]), max_size=3).map(b"".join)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(requests=st.lists(st.tuples(
    _credentials, _extras, st.sampled_from(["valid", "valid", "valid", "wrong", "absent"]),
    st.sampled_from([b"", b"", b"\x00\x01"]), st.booleans(), st.integers(0, 255)),
    min_size=1, max_size=6))
def test_any_sequence_gets_the_same_bytes_with_and_without_the_fast_path(pair, requests):
    fast, reference = pair
    for (name, password), extra, mac, padding, repeat, identifier in requests:
        data = _request(name, password, identifier=identifier, mac=mac, extra=extra,
                        padding=padding)
        _same(fast, reference, data)
        if repeat:
            _same(fast, reference, data)
    for key in ("auth_accept", "auth_reject", "auth_duplicates", "dropped"):
        assert fast.stats[key] == reference.stats[key], key


@pytest.fixture
def live(ctx):
    with ctx.Session() as session:
        for number in range(40):
            account = factories.make_account(session, balance="100")
            factories.make_service(session, account, login=f"u{number}", password=f"p{number}")
        factories.make_nas(session, address="127.0.0.1", secret=SECRET.decode())
        session.commit()
    server = RadiusServer(ctx, host="127.0.0.1", auth_port=0, acct_port=0).start()
    yield server
    server.stop()


def test_a_burst_is_received_and_answered_in_batches_over_real_sockets(live):
    requests = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        for rounds in range(3):         # the first round learns, the next are fast
            for number in range(40):
                identifier = (rounds * 40 + number) % 256
                request = access_request(SECRET, identifier, f"u{number}", f"p{number}")
                requests[identifier] = request
                sock.sendto(request, ("127.0.0.1", live.auth_port))
            for _ in range(40):
                reply, _source = sock.recvfrom(4096)
                request = requests.pop(reply[1])
                assert reply[0] == wire.ACCESS_ACCEPT
                expected = wire.encode_reply(wire.ACCESS_ACCEPT, wire.decode(request), SECRET,
                                             reply[38:], message_authenticator=True)
                assert reply == expected
    assert requests == {}
    assert live.stats["auth_received"] == 120 and live.stats["auth_accept"] == 120
    assert live.stats["auth_fast"] == 80


def test_an_ipv6_server_answers_on_the_plain_loop(ctx):
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    with ctx.Session() as session:
        account = factories.make_account(session, balance="100")
        factories.make_service(session, account, login="six", password="pw6")
        factories.make_nas(session, address="::1", secret=SECRET.decode())
        session.commit()
    with RadiusServer(ctx, host="::1", auth_port=0, acct_port=0) as server:
        for identifier in (1, 2):
            request = access_request(SECRET, identifier, "six", "pw6")
            with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
                sock.settimeout(3)
                sock.sendto(request, ("::1", server.auth_port))
                reply = sock.recvfrom(4096)[0]
            assert reply[0] == wire.ACCESS_ACCEPT
        assert server.stats["auth_fast"] == 1


def test_logins_alike_share_one_decision_and_differ_where_their_views_do(ctx, monkeypatch):
    import aaa.server
    from rating import policies
    with ctx.Session() as session:
        for login, static in (("a1", None), ("b1", None), ("c1", "10.9.9.9")):
            account = factories.make_account(session, balance="100")
            factories.make_service(session, account, login=login, password="pw",
                                   static_ipv4=static)
        factories.make_nas(session, address=SOURCE[0], secret=SECRET.decode())
        session.commit()
    server = _server(ctx, False)
    decided = []
    real = aaa.server.decide
    monkeypatch.setattr(aaa.server, "decide",
                        lambda *args, **kwargs: decided.append(1) or real(*args, **kwargs))

    def attributes(login: bytes) -> dict:
        reply = server.handle_auth(_request(login, b"pw"), SOURCE, True)
        assert reply[0] == wire.ACCESS_ACCEPT
        found = dict(wire.decode(reply).attributes)
        found.pop(wire.MESSAGE_AUTHENTICATOR)
        return found

    first = attributes(b"a1")
    assert attributes(b"b1") == first and len(decided) == 1       # one decide() for both
    own = attributes(b"c1")                                         # its own Framed-IP
    assert own[8] == [bytes((10, 9, 9, 9))] and 8 not in first and len(decided) == 2
    # Another ladder in force (re-read after its TTL): decided afresh.
    ladder = tuple(list(policies.ladder_in_force(ctx.engine, server.ladder)))
    monkeypatch.setattr(policies, "ladder_in_force", lambda *args: ladder)
    server._decisions.clear()
    assert attributes(b"b1") == first and len(decided) == 3
