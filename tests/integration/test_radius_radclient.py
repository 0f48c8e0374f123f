"""The RADIUS server against FreeRADIUS's own client, `radclient`, over loopback."""

import json
import subprocess

import pytest
from click.testing import CliRunner

from aaa.server import RadiusServer
from scripts.cli import cli
from tests import factories
from tests.conftest import need_program

pytestmark = pytest.mark.peer


@pytest.fixture
def radius(ctx):
    with ctx.Session() as session:
        account = factories.make_account(session, number="500001")
        factories.make_service(session, account, login="alice", password="correct horse",
                               static_ipv4="10.20.0.5", ipv6_prefix="2001:db8:4400::/56")
        factories.make_nas(session, name="bras-1", address="127.0.0.1", secret="testing123",
                           vendor="mikrotik")
        session.commit()
    server = RadiusServer(ctx, host="127.0.0.1", auth_port=0, acct_port=0)
    server.start()
    yield server
    server.stop()


def radclient(server, kind: str, body: str, secret: str = "testing123", wait_s: int = 3):
    program = need_program("radclient")
    port = server.acct_port if kind == "acct" else server.auth_port
    result = subprocess.run([program, "-x", "-r", "1", "-t", str(wait_s), f"127.0.0.1:{port}", kind,
                             secret], input=body + "\n", capture_output=True, text=True,
                            timeout=20)
    return result.stdout + result.stderr


def test_pap_accept_carries_ip_interim_and_rate(radius, ctx):
    output = radclient(radius, "auth", 'User-Name = "alice", User-Password = "correct horse"')
    assert "Received Access-Accept" in output, output
    assert "Framed-IP-Address = 10.20.0.5" in output
    assert "Delegated-IPv6-Prefix = 2001:db8:4400::/56" in output
    interval = ctx.settings.get("radius", "interim_interval")
    assert f"Acct-Interim-Interval = {interval}" in output
    # The factory tariff is 100000 down / 50000 up; MikroTik wants "up/down".
    assert 'Mikrotik-Rate-Limit = "50000k/100000k"' in output


@pytest.mark.parametrize("body", [
    'User-Name = "alice", User-Password = "wrong"',
    'User-Name = "nobody", User-Password = "correct horse"',
])
def test_reject_wrong_password_and_unknown_user(radius, body):
    output = radclient(radius, "auth", body)
    assert "Received Access-Reject" in output, output
    assert "Access-Accept" not in output.replace("Expected Access-Accept", "")


def test_chap_accept(radius):
    # radclient computes CHAP-Password from the cleartext it is given.
    output = radclient(radius, "auth", 'User-Name = "alice", CHAP-Password = "correct horse"')
    assert "Received Access-Accept" in output, output


def test_mschapv2_accept_carries_mppe_keys_radclient_decrypts(radius):
    """radclient decrypts MS-MPPE-Send-Key and -Recv-Key itself (RFC 2548
    salt encryption, with the secret and its request's authenticator): they
    must be the RFC 3079 keys of the login."""
    import os

    from aaa import mschap
    challenge, peer = os.urandom(16), os.urandom(16)
    response = b"\x01\x00" + peer + bytes(8) + mschap.nt_response(challenge, peer, "alice",
                                                                  "correct horse")
    output = radclient(radius, "auth", f'User-Name = "alice", MS-CHAP-Challenge = '
                       f'0x{challenge.hex()}, MS-CHAP2-Response = 0x{response.hex()}')
    assert "Received Access-Accept" in output, output
    send, receive = mschap.mppe_keys("correct horse", response[26:])
    assert f"MS-MPPE-Send-Key = 0x{send.hex()}" in output, output
    assert f"MS-MPPE-Recv-Key = 0x{receive.hex()}" in output, output
    assert "MS-MPPE-Encryption-Policy = Encryption-Allowed" in output, output


def test_wrong_secret_gets_no_answer(radius):
    output = radclient(radius, "acct", 'User-Name = "alice", Acct-Status-Type = Start, '
                       'Acct-Session-Id = "x1"', secret="not-the-secret", wait_s=1)
    assert "No reply from server" in output, output
    assert radius.stats["dropped"] >= 1


def test_start_stop_visible_in_session_list(radius, db_url):
    start = radclient(radius, "acct", 'User-Name = "alice", Acct-Status-Type = Start, '
                      'Acct-Session-Id = "80000001", Framed-IP-Address = 10.20.0.5')
    assert "Received Accounting-Response" in start, start
    stop = radclient(radius, "acct", 'User-Name = "alice", Acct-Status-Type = Stop, '
                     'Acct-Session-Id = "80000001", Framed-IP-Address = 10.20.0.5, '
                     'Acct-Input-Octets = 1000, Acct-Input-Gigawords = 2, '
                     'Acct-Output-Octets = 7000, Acct-Session-Time = 120, '
                     'Acct-Terminate-Cause = User-Request')
    assert "Received Accounting-Response" in stop, stop
    result = CliRunner().invoke(cli, ["session", "list", "--json"],
                                env={"ABONENT_DATABASE_URL": db_url}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    sessions = json.loads(result.stdout)
    assert len(sessions) == 1
    listed = sessions[0]
    assert listed["acct_session_id"] == "80000001"
    assert listed["username"] == "alice"
    assert listed["nas"] == "bras-1"
    assert listed["framed_ip"] == "10.20.0.5"
    assert listed["octets_in"] == 2 * 2**32 + 1000
    assert listed["octets_out"] == 7000
    assert listed["terminate_cause"] == "User-Request"
    assert listed["stopped_at"] is not None and listed["started_at"] <= listed["stopped_at"]


def test_abonent_serve_radius_process(ctx, db_url):
    """The real command line: start, answer radclient, stop on SIGTERM."""
    import os
    import signal
    import sys
    import time

    from tests.conftest import free_udp_port
    with ctx.Session() as session:
        account = factories.make_account(session)
        factories.make_service(session, account, login="proc", password="pw-proc")
        factories.make_nas(session, address="127.0.0.1", secret="testing123")
        session.commit()
    auth_port, acct_port = free_udp_port(), free_udp_port()
    env = dict(os.environ, ABONENT_DATABASE_URL=db_url)
    process = subprocess.Popen([sys.executable, "-m", "scripts.cli", "serve", "radius",
                                "--auth-port", str(auth_port), "--acct-port", str(acct_port)],
                               env=env, stderr=subprocess.PIPE, text=True)
    try:
        started = time.monotonic()
        line = ""
        # "radius: auth on ..." or, with workers (PostgreSQL: one per CPU),
        # "radius: 2 workers, auth on ...".
        while "auth on" not in line and time.monotonic() - started < 30:
            line = process.stderr.readline()
        assert line.startswith("radius: ") and "auth on" in line, line

        class Bound:
            pass
        bound = Bound()
        bound.auth_port, bound.acct_port = auth_port, acct_port
        output = radclient(bound, "auth", 'User-Name = "proc", User-Password = "pw-proc"')
        assert "Received Access-Accept" in output, output
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=15)
        process.stderr.close()
    assert code == 0


def test_status_server_from_radclient(radius):
    output = radclient(radius, "status", 'Message-Authenticator = 0x00')
    assert "Received Access-Accept" in output, output
