"""The RADIUS server against pyrad's own client (a second client no one here
wrote), on both databases: PAP, CHAP and a session's accounting."""

import hashlib
import os

import pytest
from pyrad import packet
from pyrad.client import Client
from sqlalchemy import select

from aaa.dictionary import DICTIONARY_PATH
from aaa.models import Session as RadiusSession
from aaa.server import RadiusServer
from tests import factories

SECRET = b"pyrad-secret"


@pytest.fixture
def client(ctx):
    from pyrad.dictionary import Dictionary

    with ctx.Session() as session:
        account = factories.make_account(session, number="500777")
        factories.make_service(session, account, login="bob", password="s3cret pass",
                               static_ipv4="10.30.0.7")
        factories.make_nas(session, name="pyrad-nas", address="127.0.0.1",
                           secret=SECRET.decode(), vendor="mikrotik")
        session.commit()
    server = RadiusServer(ctx, host="127.0.0.1", auth_port=0, acct_port=0).start()
    client = Client(server="127.0.0.1", authport=server.auth_port, acctport=server.acct_port,
                    secret=SECRET, dict=Dictionary(str(DICTIONARY_PATH)), timeout=3, retries=2)
    try:
        yield client
    finally:
        client._CloseSocket()   # pyrad keeps its socket open between requests
        server.stop()


def test_pap_accept_and_reject(client):
    request = client.CreateAuthPacket(code=packet.AccessRequest, User_Name="bob")
    request["User-Password"] = request.PwCrypt("s3cret pass")
    reply = client.SendPacket(request)
    assert reply.code == packet.AccessAccept
    assert reply["Framed-IP-Address"] == ["10.30.0.7"]
    assert reply["Mikrotik-Rate-Limit"] == ["50000k/100000k"]

    wrong = client.CreateAuthPacket(code=packet.AccessRequest, User_Name="bob")
    wrong["User-Password"] = wrong.PwCrypt("not it")
    assert client.SendPacket(wrong).code == packet.AccessReject


def test_chap_accept_and_reject(client):
    for password, expected in ((b"s3cret pass", packet.AccessAccept),
                               (b"guess", packet.AccessReject)):
        request = client.CreateAuthPacket(code=packet.AccessRequest, User_Name="bob")
        challenge, chap_id = os.urandom(16), b"\x07"
        request["CHAP-Challenge"] = challenge
        request["CHAP-Password"] = chap_id + hashlib.md5(chap_id + password + challenge).digest()
        assert client.SendPacket(request).code == expected


def test_accounting_start_interim_stop_is_stored(client, ctx):
    def account(status, **extra):
        request = client.CreateAcctPacket(User_Name="bob")
        request["Acct-Status-Type"] = status
        request["Acct-Session-Id"] = "pyrad-1"
        request["Framed-IP-Address"] = "10.30.0.7"
        for name, value in extra.items():
            request[name.replace("_", "-")] = value
        return client.SendPacket(request)

    assert account("Start").code == packet.AccountingResponse
    assert account("Interim-Update", Acct_Input_Octets=1000, Acct_Output_Octets=50,
                   Acct_Session_Time=300).code == packet.AccountingResponse
    assert account("Stop", Acct_Input_Octets=5000, Acct_Input_Gigawords=1,
                   Acct_Output_Octets=70, Acct_Session_Time=600,
                   Acct_Terminate_Cause="User-Request").code == packet.AccountingResponse
    with ctx.Session() as session:
        stored = session.execute(select(RadiusSession.octets_in, RadiusSession.octets_out,
                                        RadiusSession.terminate_cause,
                                        RadiusSession.stopped_at.is_not(None))).one()
    assert tuple(stored) == (2**32 + 5000, 70, "User-Request", True)
