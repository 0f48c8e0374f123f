"""Inputs the fuzz targets (tests/fuzz/, bench/fuzz.py) found breaking a
contract, kept as plain tests: each one must now get the documented answer.
Their raw inputs are also in tests/fuzz/corpus/, replayed by
tests/integration/test_fuzz_corpus.py."""

from __future__ import annotations

import pytest


# The cabinet_forms target found POST /promised answering 500 for 0.001,
# NaN, sNaN, Infinity and 1e999999: those inputs are in
# tests/integration/test_cabinet_hardening.py's NOT_MONEY, which the
# promised form's test runs on both databases.


# -- RADIUS ------------------------------------------------------------------------

RADIUS_SECRET = b"fuzz-secret"
RADIUS_SOURCE = ("127.0.0.1", 40000)


@pytest.fixture
def radius_server(ctx):
    from aaa.directory import NasTable
    from aaa.server import RadiusServer
    from tests import factories

    with ctx.Session() as session:
        account = factories.make_account(session, balance="100")
        factories.make_service(session, account, login="fuzz", password="pw")
        factories.make_nas(session, address=RADIUS_SOURCE[0], secret=RADIUS_SECRET.decode())
        session.commit()
    # Not started: the handlers are called directly, as the socket loops do.
    server = RadiusServer(ctx, host="127.0.0.1", auth_port=0, acct_port=0)
    server.nas_table = NasTable(ctx.Session)
    yield server
    server.stop()


def _access_request_with_proxy_states(total: int) -> bytes:
    """User "fuzz" with the right password, Proxy-States filling the packet
    up to ``total`` octets (RFC 2865 §5.33: the reply copies them all)."""
    from aaa import packet as wire

    authenticator = bytes(range(16))
    body = (wire.attribute(wire.USER_NAME, b"fuzz")
            + wire.attribute(wire.USER_PASSWORD,
                             wire.encrypt_password(b"pw", RADIUS_SECRET, authenticator)))
    room = total - 20 - 18 - len(body)
    states = b""
    while room - len(states) >= 255 + 2 or room - len(states) == 255:
        states += wire.attribute(wire.PROXY_STATE, bytes(253))
    if room - len(states) >= 2:
        states += wire.attribute(wire.PROXY_STATE, bytes(room - len(states) - 2))
    data = wire.encode_request(wire.ACCESS_REQUEST, 1, RADIUS_SECRET, body + states,
                               authenticator=authenticator, message_authenticator=True)
    assert len(data) == total
    return data


# Found by the radius_server target: an Access-Request near 4096 octets whose
# Proxy-States leave no room for the Access-Accept made encode_reply raise
# ValueError out of handle_auth (a traceback per packet in the log, no drop
# counted). Now it is a counted, logged drop: the NAS gets no answer, as for
# any request the server cannot answer.
def test_an_access_request_whose_reply_cannot_fit_is_dropped(radius_server, caplog):
    from aaa import packet as wire

    with caplog.at_level("WARNING", logger="aaa.server"):
        assert radius_server.handle_auth(_access_request_with_proxy_states(4096),
                                         RADIUS_SOURCE) is None
    assert radius_server.stats["dropped"] == 1
    assert "reason=reply-too-long" in caplog.text
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
    # A smaller one is answered, every Proxy-State copied in order.
    request = _access_request_with_proxy_states(3000)
    reply = radius_server.handle_auth(request, RADIUS_SOURCE)
    assert reply is not None and reply[0] == wire.ACCESS_ACCEPT
    assert (wire.decode(reply).attributes[wire.PROXY_STATE]
            == wire.decode(request).attributes[wire.PROXY_STATE])
