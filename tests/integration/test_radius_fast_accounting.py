"""The compiled accounting path (aaa._fastauth.accounting, used by
aaa.server.handle_acct) gives exactly the Python path's outcome: the same
datagrams through a server with it and one without queue equal records
with equal replies, drop the same ones for the same reasons and answer the
same retransmits; what it does not take (Accounting-On, Proxy-State,
Message-Authenticator, another secret, anything malformed) it leaves to
the Python path."""

import datetime as dt
import hashlib
import socket
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aaa import accounting, fastpath
from aaa import packet as wire
from aaa.directory import NasTable
from aaa.server import DuplicateCache, RadiusServer
from tests import factories

pytestmark = pytest.mark.skipif(not fastpath.available,
                                reason="aaa._fastauth is not built (no C compiler?)")

SECRET = b"acct-fast-secret"
SOURCE = ("127.0.0.1", 41001)
NOW = dt.datetime(2026, 12, 7, 12, 0)


def _server(ctx, fast: bool) -> RadiusServer:
    server = RadiusServer(ctx, host="127.0.0.1", auth_port=0, acct_port=0)
    server.nas_table = NasTable(server._reader)
    server.directory.preload()
    # Retransmits are answered from the duplicate cache on this socket.
    server._acct_socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server._acct_socket.bind(("127.0.0.1", 0))
    if not fast:
        server._fast = None
    return server


@pytest.fixture
def pair(ctx, monkeypatch):
    with ctx.Session() as session:
        account = factories.make_account(session, balance="100")
        factories.make_service(session, account, login="bob", password="pw-bob")
        factories.make_nas(session, address=SOURCE[0], secret=SECRET.decode())
        session.commit()
    # One clock for both servers: records carry the time they were received.
    monkeypatch.setattr("aaa.server.utcnow", lambda: NOW)
    fast, reference = _server(ctx, True), _server(ctx, False)
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(SOURCE)
    yield fast, reference
    sink.close()
    for server in (fast, reference):
        server._acct_socket.close()


def _attribute(kind: int, value: bytes) -> bytes:
    return bytes((kind, len(value) + 2)) + value


def _number(kind: int, value: int) -> bytes:
    return _attribute(kind, struct.pack("!I", value))


def _packet(body: bytes, *, identifier: int = 1, code: int = wire.ACCOUNTING_REQUEST,
            secret: bytes = SECRET, signed: bool = True, padding: bytes = b"") -> bytes:
    head = struct.pack("!BBH", code, identifier, 20 + len(body))
    authenticator = (hashlib.md5(head + bytes(16) + body + secret).digest() if signed
                     else bytes(range(16)))
    return head + authenticator + body + padding


def _interim(session: str = "s-1", *, status: int = accounting.INTERIM,
             extra: bytes = b"") -> bytes:
    return (_attribute(wire.USER_NAME, b"bob") + _attribute(44, session.encode())
            + _attribute(8, bytes((10, 0, 0, 7))) + _attribute(31, b"02:00:00:00:00:07")
            + _number(40, status) + _number(41, 0) + _number(42, 1000) + _number(43, 2000)
            + _number(47, 10) + _number(48, 20) + _number(46, 60) + extra)


def _queued(server) -> list:
    """What handle_acct gave the writer: (record, reply, source, entry)."""
    items = []
    while not server._queue.empty():
        items.append(server._queue.get_nowait())
    return items


def _same(fast, reference, data: bytes) -> tuple[list, list]:
    fast.handle_acct(data, SOURCE)
    reference.handle_acct(data, SOURCE)
    got, expected = _queued(fast), _queued(reference)
    assert [item[:3] for item in got] == [item[:3] for item in expected], data.hex()
    assert fast.drops == reference.drops, data.hex()
    assert fast.stats["dropped"] == reference.stats["dropped"]
    assert fast.stats["acct_duplicates"] == reference.stats["acct_duplicates"]
    return got, expected


def test_a_plain_interim_takes_the_compiled_path_with_the_python_paths_record(pair):
    fast, reference = pair
    data = _packet(_interim())
    got, expected = _same(fast, reference, data)
    [(record, reply, source, entry)] = got
    assert fast.stats["acct_fast"] == 1 and reference.stats["acct_fast"] == 0
    assert record.acct_session_id == "s-1" and record.framed_ip == "10.0.0.7"
    assert record.account_id is not None and record.octets_out == 2000
    assert reply == wire.encode_reply(wire.ACCOUNTING_RESPONSE, wire.decode(data), SECRET)
    # A retransmit in flight is not queued again; once the writer has
    # answered, it gets the stored reply from the duplicate cache.
    assert _same(fast, reference, data) == ([], [])
    for item in (got[0], expected[0]):
        item[3][DuplicateCache.REPLY] = item[1]
    assert _same(fast, reference, data) == ([], [])
    assert fast.stats["acct_duplicates"] == 1


@pytest.mark.parametrize("case", [
    dict(code=wire.ACCESS_REQUEST),
    dict(signed=False),                                      # a bad Request Authenticator
    dict(secret=b"another-secret"),
    dict(padding=b"\x00" * 5),                               # octets past the length field
    dict(extra=_attribute(wire.PROXY_STATE, b"ps")),         # copied into the reply
    dict(extra=_attribute(80, bytes(16))),                   # Message-Authenticator (wrong)
    dict(extra=bytes((wire.NAS_PORT_TYPE_ATTRIBUTE, 1))),    # an attribute's length under 2
    dict(status=accounting.ACCOUNTING_ON),
    dict(status=9),                                          # not supported
    dict(extra=_attribute(41, b"\x00\x01")),                 # a second, short delay: ignored
    dict(session="x" * 129), dict(session=""), dict(session="a\x00b"),
    dict(extra=_attribute(8, b"\x0a\x00")),                  # a second Framed-IP: ignored
    dict(extra=_number(52, 0xFFFFFFFF)),                     # folds past a signed 64-bit
    dict(extra=_attribute(25, b"abonent:full:1000/500")),    # our Class echoed
    dict(extra=_attribute(25, b"other") + _attribute(25, b"abonent:redirect:1/1")),
])
def test_what_the_compiled_path_does_not_take_gets_the_python_paths_outcome(pair, case):
    fast, reference = pair
    case = dict(case)
    body = _interim(case.pop("session", "s-2"), status=case.pop("status", accounting.INTERIM),
                    extra=case.pop("extra", b""))
    _same(fast, reference, _packet(body, identifier=7, **case))


_TEXT = st.one_of(st.binary(max_size=140), st.text(max_size=70).map(str.encode),
                  st.sampled_from([b"", b"a\x00", "Иван".encode(), b"\xff\xfe", b"\xed\xa0\x80"]))
_INTEGER = st.one_of(st.integers(0, 0xFFFFFFFF).map(lambda n: struct.pack("!I", n)),
                     st.sampled_from([struct.pack("!I", 0), struct.pack("!I", 7 * 24 * 3600 + 1)]),
                     st.binary(max_size=6))
_ATTRIBUTE = st.one_of(
    st.tuples(st.sampled_from([1, 31, 44]), _TEXT),
    st.tuples(st.just(40), st.one_of(st.sampled_from([1, 2, 3, 7, 8, 15]).map(
        lambda n: struct.pack("!I", n)), st.binary(max_size=5))),
    st.tuples(st.sampled_from([41, 42, 43, 46, 47, 48, 49, 52, 53]), _INTEGER),
    st.tuples(st.just(8), st.one_of(st.binary(min_size=4, max_size=4), st.binary(max_size=6))),
    st.tuples(st.just(25), st.one_of(st.binary(max_size=30), st.sampled_from(
        [b"abonent:full:1000/500", b"abonent:none", b"abonent:bad"]))),
    st.tuples(st.sampled_from([4, 5, 26, 30, 32, 33, 61, 80]), st.binary(max_size=20)),
).map(lambda pair: _attribute(pair[0], pair[1][:253]))


@settings(max_examples=500, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(attributes=st.lists(_ATTRIBUTE, max_size=12), identifier=st.integers(0, 255),
       signed=st.sampled_from([True, True, True, False]),
       corrupt=st.one_of(st.none(), st.none(), st.integers(0, 300)),
       status=st.sampled_from([1, 2, 3]), session=st.integers(0, 10 ** 6), data=st.data())
def test_any_request_gets_the_same_outcome_on_both_paths(pair, attributes, identifier, signed,
                                                         corrupt, status, session, data):
    fast, reference = pair
    # A valid status and session id somewhere among them, so that most
    # requests get past those checks to the ones after.
    base = [_number(40, status), _attribute(44, b"h-%d" % session)]
    for one in base:
        attributes.insert(data.draw(st.integers(0, len(attributes)), label="at"), one)
    datagram = _packet(b"".join(attributes)[:4000], identifier=identifier, signed=signed)
    if corrupt is not None and corrupt < len(datagram):
        datagram = (datagram[:corrupt] + bytes((datagram[corrupt] ^ 0x5A,))
                    + datagram[corrupt + 1:])
    _same(fast, reference, datagram)
    # Every request is new to both: the duplicate cache must not decide.
    for server in (fast, reference):
        server.acct_duplicates = type(server.acct_duplicates)(server.acct_duplicates.window_s)


def test_plain_requests_are_all_taken_by_the_compiled_path(pair):
    fast, reference = pair
    for number in range(50):
        body = _interim(f"plain-{number}", status=(accounting.START, accounting.INTERIM,
                                                   accounting.STOP)[number % 3],
                        extra=_number(49, 1) if number % 3 == 2 else b"")
        _same(fast, reference, _packet(body, identifier=number))
    assert fast.stats["acct_fast"] == 50
