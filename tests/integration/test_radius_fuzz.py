"""Hypothesis throws bytes at the decoder path: nothing may crash, and a
packet that fails a check changes nothing."""

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aaa import packet as wire
from aaa.client import access_request, accounting_request
from aaa.server import RadiusServer
from tests import factories

SECRET = b"fuzz-secret"
SOURCE = ("127.0.0.1", 40000)
FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


@pytest.fixture
def server(ctx):
    with ctx.Session() as session:
        account = factories.make_account(session)
        factories.make_service(session, account, login="fuzz", password="pw")
        factories.make_nas(session, address="127.0.0.1", secret=SECRET.decode())
        session.commit()
    # Not started: the handlers are called directly, as the socket loops do.
    server = RadiusServer(ctx, host="127.0.0.1", auth_port=0, acct_port=0)
    from aaa.directory import NasTable
    server.nas_table = NasTable(ctx.Session)
    yield server
    server.stop()


# Biased towards the attributes the server reads, with NULs and bad UTF-8.
kinds = st.one_of(st.sampled_from([1, 2, 3, 8, 26, 31, 33, 40, 41, 42, 44, 46, 49, 52, 60, 80]),
                  st.integers(0, 255))
values = st.one_of(st.binary(max_size=60), st.sampled_from([b"fuzz", b"fu\x00zz", b"\xff\xfe",
                                                            b"\x00\x00\x00\x01", bytes(16)]))
attributes = st.lists(st.tuples(kinds, values), max_size=12)


def _raw(pairs) -> bytes:
    return b"".join(bytes((kind, len(value) + 2)) + value for kind, value in pairs)


@FUZZ
@given(data=st.binary(max_size=200))
def test_random_bytes_are_dropped(server, data):
    assert server.handle_auth(data, SOURCE) is None or len(data) >= 20
    server.handle_acct(data, SOURCE)
    assert server._queue.qsize() == 0


@FUZZ
@given(template=st.sampled_from(["auth", "acct"]), cut=st.integers(0, 120),
       flip=st.integers(0, 2000), length=st.integers(0, 0xFFFF))
def test_mutated_valid_packets_do_not_crash_and_change_nothing(server, template, cut, flip,
                                                               length):
    if template == "auth":
        data = bytearray(access_request(SECRET, 1, "fuzz", "pw"))
    else:
        data = bytearray(accounting_request(SECRET, 1, [("Acct-Status-Type", "Start"),
                                                        ("Acct-Session-Id", "f1")]))
    original = bytes(data)
    data = data[:max(cut, 0)] if cut < len(data) else data
    if data and flip < len(data) * 8:
        data[flip // 8] ^= 1 << (flip % 8)
    if len(data) >= 4 and length % 3 == 0:
        data[2:4] = struct.pack("!H", length)
    data = bytes(data)
    if template == "auth":
        reply = server.handle_auth(data, SOURCE)
        if data != original:
            assert reply is None or reply[0] == wire.ACCESS_REJECT or data[:20] == original[:20]
    else:
        server.handle_acct(data, SOURCE)
        if data != original:
            assert server._queue.qsize() == 0
    while not server._queue.empty():
        server._queue.get_nowait()


@FUZZ
@given(pairs=attributes)
def test_signed_packets_with_random_attributes_do_not_crash(server, pairs):
    # Correctly signed, so every check passes and the attribute walker and
    # the record parser see arbitrary contents.
    body = _raw(pairs)
    if len(body) + 20 + 18 > 4096:
        return
    authenticator = bytes(range(16))
    auth = wire.encode_request(wire.ACCESS_REQUEST, 3, SECRET, body, authenticator=authenticator,
                               message_authenticator=True)
    reply = server.handle_auth(auth, SOURCE)
    assert reply is None or reply[0] in (wire.ACCESS_ACCEPT, wire.ACCESS_REJECT)
    acct = wire.encode_request(wire.ACCOUNTING_REQUEST, 3, SECRET, body)
    server.handle_acct(acct, SOURCE)
    while not server._queue.empty():
        server._queue.get_nowait()


def test_a_garbage_flood_is_counted_but_logged_sparingly(server, caplog):
    with caplog.at_level("WARNING", logger="aaa.server"):
        for _ in range(200):
            server.handle_acct(b"\x04\x00\x00", SOURCE)
    assert server.stats["dropped"] == 200
    lines = [r for r in caplog.records if r.getMessage().startswith("radius.drop")]
    assert 1 <= len(lines) <= 21
    assert "fuzz-secret" not in caplog.text
