"""NAS from the console (issue 14): edit with secret rotation, remove, list.

The rotation is shown with real packets: FreeRADIUS's `radclient` signs
requests with the old secret and with the new one against our server on
loopback; the old secret is answered within the grace period only.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess

import pytest
from sqlalchemy import select, text, update

from aaa.models import Nas
from aaa.server import RadiusServer
from rating.models import OperationLog
from tests import factories
from tests.conftest import make_context, need_program

pytestmark = pytest.mark.peer


def radclient(server, kind: str, body: str, secret: str, *, wait: int = 5) -> str:
    """One request; `wait` seconds for the answer (short where none is expected).

    A busy CI box can take over a second on the first request (the server's
    first database connection, the password check), so an expected answer
    gets several seconds and a retransmission.
    """
    program = need_program("radclient")
    port = server.acct_port if kind == "acct" else server.auth_port
    result = subprocess.run([program, "-x", "-r", "2", "-t", str(wait), f"127.0.0.1:{port}",
                             kind, secret], input=body + "\n", capture_output=True, text=True,
                            timeout=60)
    return result.stdout + result.stderr


# Message-Authenticator = 0x00: radclient computes it (an Access-Request
# without one cannot tell which secret signed it).
AUTH = 'User-Name = "alice", User-Password = "correct horse", Message-Authenticator = 0x00'


def acct(n: int) -> str:
    return (f'User-Name = "alice", Acct-Status-Type = Start, Acct-Session-Id = "r{n}", '
            f'Framed-IP-Address = 10.20.0.5')


def test_secret_rotation_with_grace(abonent_exe, db_url):
    context = make_context(db_url)
    with context.Session() as session:
        account = factories.make_account(session, number="500001")
        factories.make_service(session, account, login="alice", password="correct horse",
                               static_ipv4="10.20.0.5")
        factories.make_nas(session, name="bras-1", address="127.0.0.1", secret="old-secret",
                           vendor="mikrotik")
        session.commit()
    out = abonent_exe("nas", "edit", "bras-1", "--secret", "new-secret", "--grace", "1h")
    assert "previous secret is accepted until" in out.stdout
    # A session closed at once: left open on SQLite, its read transaction
    # would hold the file against the server's writes below.
    with context.Session() as session:
        log = session.scalar(select(OperationLog.details).where(
            OperationLog.action == "nas.edit"))
    assert "old-secret" not in json.dumps(log) and "new-secret" not in json.dumps(log)
    server = RadiusServer(context, host="127.0.0.1", auth_port=0, acct_port=0)
    server.start()
    try:
        # Within the grace: both secrets are answered, each with its own.
        assert "Received Access-Accept" in radclient(server, "auth", AUTH, "new-secret")
        assert "Received Access-Accept" in radclient(server, "auth", AUTH, "old-secret")
        assert "Received Accounting-Response" in radclient(server, "acct", acct(1),
                                                           "old-secret")
        assert "Received Accounting-Response" in radclient(server, "acct", acct(2),
                                                           "new-secret")
        assert "No reply" in radclient(server, "acct", acct(3), "some-other", wait=1)
        # The grace ends: the old secret is refused, the new one still works.
        with context.Session() as session:
            session.execute(update(Nas).values(
                previous_secret_until=dt.datetime.utcnow() - dt.timedelta(seconds=1)))
            session.commit()
        server.nas_table.reload()
        assert "No reply" in radclient(server, "acct", acct(4), "old-secret", wait=1)
        assert "Received Access-Accept" not in radclient(server, "auth", AUTH, "old-secret",
                                                         wait=1)
        assert "Received Accounting-Response" in radclient(server, "acct", acct(5),
                                                           "new-secret")
        # A rotation with no grace: the previous secret stops at once.
        abonent_exe("nas", "edit", "bras-1", "--secret", "third-secret")
        server.nas_table.reload()
        assert "No reply" in radclient(server, "acct", acct(6), "new-secret", wait=1)
        assert "Received Accounting-Response" in radclient(server, "acct", acct(7),
                                                           "third-secret")
    finally:
        server.stop()
        context.dispose()


def test_edit_remove_list_and_bad_input(abonent_exe, db_url):
    context = make_context(db_url)
    with context.Session() as session:
        factories.make_nas(session, name="bras-1", address="10.0.0.1", secret="s1")
        factories.make_nas(session, name="bras-2", address="10.0.0.2", secret="s2")
        session.commit()

    def rows():
        with context.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text("SELECT * FROM nas ORDER BY id"))]
    before = rows()
    for args, message in [
            (["nas", "edit", "nope", "--vendor", "cisco"], "no NAS 'nope'"),
            (["nas", "edit", "bras-1", "--address", "10.0.0.256"], "not an IP address"),
            (["nas", "edit", "bras-1", "--address", "10.0.0.2"], "already exists"),
            (["nas", "edit", "bras-1", "--secret", "x", "--grace", "forever"], "--grace"),
            (["nas", "edit", "bras-1", "--secret", ""], "secret must be"),
            (["nas", "edit", "bras-1", "--grace", "1h"], "--grace goes with --secret"),
            (["nas", "remove", "nope"], "no NAS")]:
        assert message in abonent_exe(*args, code=2).stderr, args
    assert rows() == before
    edited = json.loads(abonent_exe("nas", "edit", "bras-1", "--address", "10.0.1.0/24",
                                    "--coa-port", "1700", "--json").stdout)
    assert edited["address"] == "10.0.1.0/24" and edited["coa_port"] == 1700
    abonent_exe("nas", "remove", "bras-2")
    listed = abonent_exe("nas", "list", "--limit", "1", "--json")
    assert [n["name"] for n in json.loads(listed.stdout)] == ["bras-1"]
    assert listed.stderr == ""
    assert "secret" not in listed.stdout.replace("previous_secret_until", "")
    context.dispose()
