"""aaa._fastauth's hashing against hashlib's, and the fast path's table."""

import hashlib
import hmac
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aaa import fastpath

needs_module = pytest.mark.skipif(not fastpath.available,
                                  reason="aaa._fastauth is not built (no C compiler?)")


def test_the_compiled_path_is_built():
    # Where the tests run, pip had a compiler (.ci/run): the module must be
    # there, or the server silently runs on the slower Python path.
    if not fastpath.available:
        pytest.skip("aaa._fastauth is not built: `pip install -e .` found no C compiler")
    from aaa import _fastauth
    assert _fastauth.md5(b"abc") == bytes.fromhex("900150983cd24fb0d6963f7d28e17f72")


@needs_module
@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_md5_is_rfc_1321s(data):
    from aaa import _fastauth
    assert _fastauth.md5(data) == hashlib.md5(data).digest()


@needs_module
@settings(max_examples=400, deadline=None)
@given(key=st.binary(max_size=300), data=st.binary(max_size=300))
def test_hmac_md5_is_rfc_2104s(key, data):
    from aaa import _fastauth
    # Twice: the second call uses the keyed states kept for the last key.
    assert _fastauth.hmac_md5(key, data) == hmac.digest(key, data, "md5")
    assert _fastauth.hmac_md5(key, data) == hmac.digest(key, data, "md5")


@needs_module
def test_md5_of_the_rfc_1321_test_suite():
    from aaa import _fastauth
    suite = {b"": "d41d8cd98f00b204e9800998ecf8427e",
             b"a": "0cc175b9c0f1b6a831c399e269772661",
             b"message digest": "f96b697d7cb7938d525a2f31aaf161d0",
             b"abcdefghijklmnopqrstuvwxyz": "c3fcd3d76192e4007dfb496cca67e13b",
             b"1234567890" * 8: "57edf4a22be3c955ac49da2e2107b67a"}
    for message, digest in suite.items():
        assert _fastauth.md5(message).hex() == digest


@needs_module
def test_accept_answers_only_from_a_well_formed_entry_in_its_time():
    from aaa import _fastauth
    from aaa import packet as wire
    with pytest.raises(TypeError):
        _fastauth.accept(b"x" * 20, b"s", [], 0.0, 0.0)
    authenticator = os.urandom(16)
    request = wire.encode_request(
        wire.ACCESS_REQUEST, 7, b"s",
        wire.attribute(wire.USER_NAME, b"bob")
        + wire.attribute(wire.USER_PASSWORD, wire.encrypt_password(b"pw", b"s", authenticator)),
        authenticator=authenticator, message_authenticator=True)
    # now (monotonic) 5, wall_now 1000: before expires and until.
    reply = _fastauth.accept(request, b"s", {b"bob": (b"pw", b"", 10.0, 2000.0)}, 5.0, 1000.0)
    assert reply == wire.encode_reply(wire.ACCESS_ACCEPT, wire.decode(request), b"s",
                                      message_authenticator=True)
    # An entry of another shape, past its view (expires) or its decision
    # (until, as time.time() says: a clock step counts), is not trusted.
    for entry in (("pw", b"", 10.0, 2000.0), (b"pw", "", 10.0, 2000.0),
                  (b"pw", b"", 10, 2000.0), (b"pw", b"", 10.0), [b"pw", b"", 10.0, 2000.0],
                  (b"pw", b"", 5.0, 2000.0), (b"pw", b"", float("nan"), 2000.0),
                  (b"pw", b"", 10.0, 1000.0), (b"pw", b"", 10.0, float("nan"))):
        assert _fastauth.accept(request, b"s", {b"bob": entry}, 5.0, 1000.0) is None, entry


class _Directory:
    generation = 0


@needs_module
def test_a_table_learned_before_a_directory_change_is_dropped():
    directory = _Directory()
    fast = fastpath.FastAccepts(directory)
    client = object()
    fast.learn(client, 0, b"bob", b"pw", b"", 10.0, None)
    assert len(fast) == 1
    state = fast._state
    # A view read before the change must not be remembered after it, and
    # a thread that took the state before the change writes where no one reads.
    directory.generation = 1
    fast.learn(client, 0, b"eve", b"pw", b"", 10.0, None)
    assert fast.answer(bytes(20), client, 0.0) is None
    assert len(fast) == 0 and fast._state is not state and fast._state[1] == {}
    fast.learn(client, 1, b"eve", b"pw", b"", 10.0, None)
    assert len(fast) == 1


def _outcome(decode, data):
    from aaa import packet as wire
    try:
        return decode(data)
    except wire.MalformedPacket as error:
        return ("malformed", error.reason)


_attribute = st.one_of(
    st.tuples(st.integers(0, 255), st.binary(max_size=40)).map(
        lambda a: bytes((a[0], len(a[1]) + 2)) + a[1]),
    # Vendor-Specific, well formed or not inside
    st.tuples(st.binary(min_size=4, max_size=4),
              st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=10),
                                 st.sampled_from([None, None, None, 0, 1, 13])),
                       max_size=3)).map(
        lambda v: (lambda body: bytes((26, len(body) + 2)) + body)(
            v[0] + b"".join(bytes((k, len(d) + 2 if n is None else n)) + d
                            for k, d, n in v[1]))),
    st.binary(min_size=16, max_size=17).map(lambda m: bytes((80, len(m) + 2)) + m),
    st.binary(max_size=3),                      # a truncated or odd tail
)


@needs_module
@settings(max_examples=1500, deadline=None)
@given(code=st.integers(0, 255), identifier=st.integers(0, 255),
       authenticator=st.binary(min_size=16, max_size=16),
       attributes=st.lists(_attribute, max_size=8), length_delta=st.integers(-30, 30),
       padding=st.binary(max_size=6))
def test_the_compiled_decode_is_decode_python(code, identifier, authenticator, attributes,
                                              length_delta, padding):
    from aaa import packet as wire
    body = b"".join(attributes)
    length = max(0, min(0xFFFF, 20 + len(body) + (length_delta if length_delta % 3 == 0 else 0)))
    data = bytes((code, identifier)) + length.to_bytes(2, "big") + authenticator + body + padding
    assert _outcome(wire.decode, data) == _outcome(wire.decode_python, data)


@needs_module
@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=80))
def test_the_compiled_decode_is_decode_python_on_any_bytes(data):
    from aaa import packet as wire
    assert _outcome(wire.decode, data) == _outcome(wire.decode_python, data)


@needs_module
def test_send_and_receive_move_batches_and_report_what_they_could_not_send():
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        server.bind(("127.0.0.1", 0))
        client.bind(("127.0.0.1", 0))
        server.settimeout(2)
        to = server.getsockname()
        good = [(f"d{n}".encode() * (n + 1), to) for n in range(20)]
        bad = [(b"x", ("::1", to[1])), ("text", to), (b"x", ("127.0.0.1", -1)),
               (b"x", ("127.0.0.1",)), (b"x", ("127.0.0.1", to[1], 0, 0)), b"x",
               (b"x", ("not an address", to[1]))]
        mixed = good[:10] + bad + good[10:]
        failures = fastpath.send(client.fileno(), mixed)
        assert sorted(index for index, _ in failures) == list(range(10, 10 + len(bad)))
        assert {number for _, number in failures} == {22}      # EINVAL
        got = []
        while len(got) < len(good):
            got.extend(fastpath.receive(server.fileno()))
        assert [data for data, _ in got] == [data for data, _ in good]
        assert {source for _, source in got} == {client.getsockname()}
        # What arrives is what recvfrom would have said, and answers go back.
        assert fastpath.send(server.fileno(), [(b"back", got[0][1])]) == []
        client.settimeout(2)
        assert client.recvfrom(100) == (b"back", to)
