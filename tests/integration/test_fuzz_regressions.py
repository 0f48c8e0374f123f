"""Inputs the fuzz targets (tests/fuzz/, bench/fuzz.py) found breaking a
contract, kept as plain tests: each one must now get the documented answer.
Their raw inputs are also in tests/fuzz/corpus/, replayed by
tests/integration/test_fuzz_corpus.py."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import func, select

from rating.models import Account, LedgerEntry, OperationLog, PromisedPayment
from tests.integration.cabinet_helpers import (  # noqa: F401 (fixtures)
    app, cabinet_ctx, client, log_in, post_form, seed_subscriber,
)


def _state(ctx, account_id):
    with ctx.Session() as session:
        return (session.get(Account, account_id).balance,
                session.scalar(select(func.count()).select_from(LedgerEntry)),
                session.scalar(select(func.count()).select_from(OperationLog)),
                session.scalar(select(func.count()).select_from(PromisedPayment)))


# Found by the cabinet_forms target: DecimalField accepts these, rating's
# money() refuses them with ValueError / InvalidOperation (not a DomainError),
# and POST /promised answered 500.
@pytest.mark.parametrize("amount", ["0.001", "NaN", "sNaN", "Infinity", "-Infinity",
                                    "1e999999", "100.005"])
def test_promised_payment_form_refuses_amounts_the_ledger_cannot_hold(client, cabinet_ctx,
                                                                      amount):
    broke = seed_subscriber(cabinet_ctx, balance=None)
    log_in(client, broke.login, broke.password, lang="en")
    before = _state(cabinet_ctx, broke.account_id)
    response = post_form(client, "/promised", {"amount": amount})
    assert response.status_code == 400
    assert "Enter an amount like 100 or 99.50." in response.text
    assert _state(cabinet_ctx, broke.account_id) == before
    # A good amount is still taken afterwards.
    assert post_form(client, "/promised", {"amount": "300.00"}).status_code == 302
    assert _state(cabinet_ctx, broke.account_id)[0] == Decimal("300.00")


def test_a_promised_amount_refused_is_explained_in_russian(client, cabinet_ctx):
    broke = seed_subscriber(cabinet_ctx, balance=None)
    log_in(client, broke.login, broke.password)
    response = post_form(client, "/promised", {"amount": "NaN"})
    assert response.status_code == 400
    assert "Введите сумму вида 100 или 99.50." in response.text


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
