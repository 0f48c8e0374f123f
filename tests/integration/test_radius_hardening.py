"""Issue 13, RADIUS: counters beyond a signed bigint, a database outage,
bounded duplicate caches, Prometheus metrics. Real UDP sockets on
loopback, SQLite and PostgreSQL."""

import itertools
import logging
import socket
import time

import pytest
from sqlalchemy import select

from aaa import packet as wire
from aaa.client import access_request, accounting_request, blast, exchange
from aaa.models import Session as RadiusSession
from aaa.server import RadiusServer
from tests import factories
from tests.conftest import make_context

SECRET = b"hardening-secret"
_ids = itertools.count(1)


def _seed(ctx, logins=("bob",)):
    with ctx.Session() as session:
        account = factories.make_account(session)
        for login in logins:
            factories.make_service(session, account, login=login, password=f"pw-{login}")
        factories.make_nas(session, name="lo", address="127.0.0.0/8", secret=SECRET.decode())
        session.commit()


@pytest.fixture
def server_ctx(db_url):
    # A wide commit window: what the test sends at once lands in one batch.
    context = make_context(db_url, radius_batch_ms=150)
    yield context
    context.dispose()


@pytest.fixture
def radius(server_ctx):
    _seed(server_ctx)
    server = RadiusServer(server_ctx, host="127.0.0.1", auth_port=0, acct_port=0)
    server.start()
    yield server
    server.stop()


def _interim(session_id, **counters):
    pairs = [("Acct-Status-Type", "Interim-Update"), ("Acct-Session-Id", session_id),
             ("User-Name", "bob"), ("Acct-Session-Time", 60)]
    return pairs + [(name.replace("_", "-"), value) for name, value in counters.items()]


def _stored(ctx):
    with ctx.Session() as session:
        return {row.acct_session_id: (row.octets_in, row.octets_out)
                for row in session.scalars(select(RadiusSession))}


def _tracebacks(caplog):
    return [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


# -- counters at or above 2 ** 63 ----------------------------------------------


def test_a_counter_beyond_a_signed_bigint_is_a_counted_drop_and_spares_its_batch(
        radius, server_ctx, caplog):
    """Acct-Input-Gigawords = 0xFFFFFFFF is legal on the wire (RFC 2869) but
    folds to more than 2 ** 63 - 1 octets (9.2 EB in one session): the record
    is refused before it is queued, with a drop counted by reason, no
    traceback and no answer (RFC 2866: no answer unless recorded); the
    records sent with it are stored and answered; the largest counter that
    fits is stored exactly on both databases."""
    caplog.set_level(logging.INFO)
    bad = accounting_request(SECRET, 200, _interim(
        "huge", Acct_Input_Gigawords=0xFFFFFFFF, Acct_Input_Octets=0xFFFFFFFF))
    good = [accounting_request(SECRET, n, _interim(f"ok-{n}", Acct_Input_Octets=n))
            for n in range(10)]
    edge = accounting_request(SECRET, 10, _interim(
        "edge", Acct_Input_Gigawords=0x7FFFFFFF, Acct_Input_Octets=0xFFFFFFFF,
        Acct_Output_Gigawords=0x7FFFFFFF, Acct_Output_Octets=0xFFFFFFFF))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as nas:
        nas.bind(("127.0.0.1", 0))
        nas.settimeout(0.5)
        nas.sendto(bad, ("127.0.0.1", radius.acct_port))
        replies = blast(good + [edge], ("127.0.0.1", radius.acct_port), SECRET, deadline_s=10)
        assert len(replies) == 11
        for _ in range(3):      # the NAS retransmits: each copy is dropped the same way
            nas.sendto(bad, ("127.0.0.1", radius.acct_port))
        with pytest.raises(socket.timeout):
            nas.recvfrom(4096)
    stored = _stored(server_ctx)
    assert "huge" not in stored
    assert {f"ok-{n}" for n in range(10)} <= set(stored)
    assert stored["edge"] == (2 ** 63 - 1, 2 ** 63 - 1)
    assert radius.drops["counter-out-of-range"] == 4
    assert radius.stats["commit_failures"] == 0
    assert not _tracebacks(caplog)
    lines = [r.getMessage() for r in caplog.records if "counter-out-of-range" in r.getMessage()]
    assert lines and "nas=lo" in lines[0] and "Acct-Input-Gigawords" in lines[0]
