"""Fuzz target: datagrams through the RADIUS server's request handlers
(aaa.server.RadiusServer.handle_auth / handle_acct, as the socket loops call
them) against a scratch SQLite database with one PPPoE login ("fuzz" / "pw")
and one IPoE binding (a MAC and an Option-82 circuit id).

Input layout: one control octet, then a datagram. Control bit 0 picks the
accounting port (1) or the auth port (0); bit 1 asks the harness to sign
the datagram as a NAS with the right secret would (length field set to the
real length, Message-Authenticator and the accounting Request
Authenticator computed), so that the attribute decoding behind the checks
is reached; bit 2 keeps the datagram's code (else Access-Request or
Accounting-Request is forced when signing).

Contract:

- a handler never raises, and logs nothing at ERROR (the socket loop's
  "one bad packet must not stop the server" guard is for bugs, not input);
- every datagram has exactly one outcome: a reply (auth), a queued record
  (acct), or a drop counted in ``stats["dropped"]``;
- a reply decodes, answers the request's identifier with Access-Accept or
  Access-Reject, has a valid Response Authenticator and a valid
  Message-Authenticator, and copies the Proxy-States in order;
- an Access-Accept is given only for credentials an independent check here
  accepts: the right PAP password, CHAP response or MS-CHAPv2 response for
  "fuzz", or the IPoE binding's MAC or circuit id;
- a queued record comes from a correctly signed Accounting-Request and is
  one the database can store (tests.fuzz.radius_packet.check_record).
"""

from __future__ import annotations

import hashlib
import hmac
import logging

from tests.fuzz import ContractViolation, check

INSTRUMENT = ["aaa"]
SECRET = b"fuzz-secret"
SOURCE = ("127.0.0.1", 40000)
LOGIN, PASSWORD = "fuzz", "pw"
MAC, CIRCUIT = "aa:bb:cc:dd:ee:ff", "eth0/1/2:100"


def sign(control: int, data: bytes) -> bytes:
    """The datagram as a NAS that knows the secret would send it."""
    from aaa import packet as wire

    if not control & 0x02 or len(data) < 20 or len(data) > 4096:
        return data
    data = bytearray(data)
    if not control & 0x04:
        data[0] = wire.ACCOUNTING_REQUEST if control & 0x01 else wire.ACCESS_REQUEST
    data[2:4] = len(data).to_bytes(2, "big")
    try:
        packet = wire.decode(bytes(data))
    except wire.MalformedPacket:
        return bytes(data)
    signed_by_hash = data[0] != wire.ACCESS_REQUEST and data[0] != wire.STATUS_SERVER
    if signed_by_hash:
        data[4:20] = bytes(16)
    at = packet.message_authenticator_at
    if at is not None:
        data[at:at + 16] = bytes(16)
        data[at:at + 16] = hmac.digest(SECRET, bytes(data), "md5")
    if signed_by_hash:
        data[4:20] = hashlib.md5(bytes(data) + SECRET).digest()
    return bytes(data)


def credentials_valid(request) -> bool:
    """Independent of aaa.authorize: would a correct server accept this?"""
    from aaa import mschap
    from aaa import packet as wire
    from aaa.authorize import normalize_mac

    username = request.text(wire.USER_NAME)
    if username == LOGIN:
        hidden = request.first(wire.USER_PASSWORD)
        chap = request.first(wire.CHAP_PASSWORD)
        if hidden is not None:
            if not hidden or len(hidden) % 16 or len(hidden) > 128:
                return False
            plain, previous = b"", request.authenticator
            for start in range(0, len(hidden), 16):
                key = hashlib.md5(SECRET + previous).digest()
                block = hidden[start:start + 16]
                plain += bytes(a ^ b for a, b in zip(block, key))
                previous = block
            return plain.rstrip(b"\0") == PASSWORD.encode()
        if chap is not None:
            challenge = request.first(wire.CHAP_CHALLENGE) or request.authenticator
            return len(chap) == 17 and hashlib.md5(
                chap[:1] + PASSWORD.encode() + challenge).digest() == chap[1:]
        responses = request.vendor.get((311, 25))
        challenges = request.vendor.get((311, 11))
        return bool(responses and challenges) and mschap.verify(
            PASSWORD, username, challenges[0], responses[0])[0]
    if username is not None and username != LOGIN and "\x00" not in username:
        pass  # another login: no such subscriber, the binding may still match
    circuits = request.vendor.get((3561, 1))
    if circuits and circuits[0] == CIRCUIT.encode():
        return True
    return MAC in (normalize_mac(request.text(31)), normalize_mac(username))


class _Errors(logging.Handler):
    def __init__(self):
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


def setup():
    import atexit
    import datetime as dt
    import shutil
    import tempfile
    from pathlib import Path

    from aaa import packet as wire
    from aaa.directory import NasTable
    from aaa.server import DuplicateCache, RadiusServer
    from config.db import utcnow
    from config.migrate import upgrade
    from tests import factories
    from tests.conftest import make_context
    from tests.fuzz.radius_packet import check_record

    folder = Path(tempfile.mkdtemp(prefix="abonent-fuzz-radius-"))
    atexit.register(shutil.rmtree, folder, True)
    ctx = make_context(f"sqlite:///{folder / 'radius.sqlite3'}", data_dir=folder)
    upgrade(ctx.engine)
    with ctx.Session() as session:
        account = factories.make_account(session, balance="100")
        factories.make_service(session, account, login=LOGIN, password=PASSWORD)
        factories.make_service(session, account, kind="ipoe", login=None, password=None,
                               mac=MAC, circuit_id=CIRCUIT)
        nas = factories.make_nas(session, address=SOURCE[0], secret=SECRET.decode())
        session.commit()
        nas_id = nas.id
    server = RadiusServer(ctx, host="127.0.0.1", auth_port=0, acct_port=0)
    server.nas_table = NasTable(ctx.Session)
    server.directory.preload()
    # The cached-Accept path (aaa.fastpath) answers the login's right password
    # once it has accepted it on the Python path: learned here, once, so that
    # every input meets the same table and the fast path is fuzzed too.
    from aaa.client import access_request
    learned = server.handle_auth(access_request(SECRET, 0, LOGIN, PASSWORD), SOURCE, True)
    assert learned is not None and learned[0] == wire.ACCESS_ACCEPT
    errors = _Errors()
    logging.getLogger("aaa").addHandler(errors)
    window = ctx.settings.get("radius", "duplicate_window")

    def check_auth_reply(data: bytes, reply: bytes) -> None:
        request = wire.decode(data)
        check(request.code in (wire.ACCESS_REQUEST, wire.STATUS_SERVER),
              f"a reply to code {request.code}")
        answer = wire.decode(reply)
        check(answer.identifier == request.identifier, "reply identifier")
        check(answer.code in (wire.ACCESS_ACCEPT, wire.ACCESS_REJECT), f"reply code {answer.code}")
        expected = hashlib.md5(reply[:4] + request.authenticator + reply[20:] + SECRET).digest()
        check(answer.authenticator == expected, "bad Response Authenticator")
        check(answer.message_authenticator_at == 22
              and wire.message_authenticator_valid(answer, SECRET, request.authenticator),
              "Message-Authenticator missing, not first or invalid")
        check(answer.attributes.get(wire.PROXY_STATE, []) ==
              request.attributes.get(wire.PROXY_STATE, []), "Proxy-State not copied")
        if answer.code == wire.ACCESS_ACCEPT and request.code == wire.ACCESS_REQUEST:
            check(credentials_valid(request), "Access-Accept for credentials that are wrong")

    def one_input(data: bytes) -> None:
        if not data:
            return
        control, datagram = data[0], sign(data[0], data[1:])
        server.auth_duplicates = DuplicateCache(window)
        server.acct_duplicates = DuplicateCache(window)
        server._decisions.clear()
        server._shapes.clear()
        errors.records.clear()
        dropped = server.stats["dropped"]
        try:
            if control & 0x01:
                before = utcnow()
                result = server.handle_acct(datagram, SOURCE)
                check(result is None, "handle_acct returned a value")
                queued = []
                while not server._queue.empty():
                    queued.append(server._queue.get_nowait())
                check(len(queued) + server.stats["dropped"] - dropped == 1,
                      f"{len(queued)} queued and {server.stats['dropped'] - dropped} dropped")
                for record, reply, source, _entry in queued:
                    request = wire.decode(datagram)
                    check(request.code == wire.ACCOUNTING_REQUEST
                          and wire.accounting_authenticator_valid(request, SECRET),
                          "queued a request that is not correctly signed")
                    check(source == SOURCE, "reply address")
                    check_record(record, nas_id, before + dt.timedelta(seconds=5))
                    answer = wire.decode(reply)
                    check(answer.code == wire.ACCOUNTING_RESPONSE
                          and answer.identifier == request.identifier, "accounting reply")
            else:
                reply = server.handle_auth(datagram, SOURCE)
                if reply is None:
                    check(server.stats["dropped"] == dropped + 1, "no reply and no drop counted")
                else:
                    check(isinstance(reply, bytes), "reply is not bytes")
                    check(server.stats["dropped"] == dropped, "a reply and a drop")
                    check_auth_reply(datagram, reply)
        except ContractViolation:
            raise
        except Exception as error:
            raise ContractViolation(f"the handler raised {error!r}") from error
        if errors.records:
            record = errors.records[0]
            raise ContractViolation(f"logged at ERROR: {record.getMessage()}")

    return one_input


def seeds() -> dict[str, bytes]:
    """Requests from the project's client, signed by the harness (control 0x02/0x03)."""
    from aaa import mschap
    from aaa import packet as wire
    from aaa.client import access_request, accounting_request
    from aaa.dictionary import encode

    authenticator = bytes(range(16))
    peer, challenge = bytes(range(16, 32)), bytes(range(32, 48))
    nt = mschap.nt_response(challenge, peer, LOGIN, PASSWORD)
    chap_ident = b"\x07"
    chap = chap_ident + hashlib.md5(chap_ident + PASSWORD.encode() + authenticator).digest()
    out = {
        "pap": b"\x02" + access_request(SECRET, 1, LOGIN, PASSWORD, authenticator=authenticator),
        "pap_wrong": b"\x02" + access_request(SECRET, 2, LOGIN, "nope",
                                              authenticator=authenticator),
        "unknown_user": b"\x02" + access_request(SECRET, 3, "nobody", "pw",
                                                 authenticator=authenticator),
        "chap": b"\x02" + wire.encode_request(
            wire.ACCESS_REQUEST, 4, SECRET,
            encode("User-Name", LOGIN) + wire.attribute(wire.CHAP_PASSWORD, chap),
            authenticator=authenticator, message_authenticator=True),
        "mschap2": b"\x02" + wire.encode_request(
            wire.ACCESS_REQUEST, 5, SECRET,
            encode("User-Name", LOGIN) + wire.vendor_attribute(311, 11, challenge)
            + wire.vendor_attribute(311, 25, b"\x01\x00" + peer + bytes(8) + nt),
            authenticator=authenticator, message_authenticator=True),
        "ipoe_mac": b"\x02" + wire.encode_request(
            wire.ACCESS_REQUEST, 6, SECRET,
            encode("User-Name", MAC) + wire.attribute(31, MAC.upper().replace(":", "-").encode()),
            authenticator=authenticator, message_authenticator=True),
        "ipoe_circuit": b"\x02" + wire.encode_request(
            wire.ACCESS_REQUEST, 7, SECRET,
            wire.vendor_attribute(3561, 1, CIRCUIT.encode())
            + wire.attribute(wire.PROXY_STATE, b"proxy-1"),
            authenticator=authenticator, message_authenticator=True),
        "status_server": b"\x06" + wire.encode_request(
            wire.STATUS_SERVER, 8, SECRET, b"", authenticator=authenticator,
            message_authenticator=True),
        "acct_start": b"\x03" + accounting_request(SECRET, 9, [
            ("Acct-Status-Type", "Start"), ("Acct-Session-Id", "s1"), ("User-Name", LOGIN),
            ("Framed-IP-Address", "10.0.0.7")]),
        "acct_stop": b"\x03" + accounting_request(SECRET, 10, [
            ("Acct-Status-Type", "Stop"), ("Acct-Session-Id", "s1"), ("User-Name", LOGIN),
            ("Acct-Input-Octets", 1000), ("Acct-Output-Gigawords", 2),
            ("Acct-Session-Time", 60), ("Acct-Terminate-Cause", "Lost-Carrier")]),
        "acct_on": b"\x03" + accounting_request(SECRET, 11, [
            ("Acct-Status-Type", "Accounting-On")]),
        "acct_as_sent": b"\x01" + accounting_request(SECRET, 12, [
            ("Acct-Status-Type", "Interim-Update"), ("Acct-Session-Id", "s2")]),
    }
    return out
