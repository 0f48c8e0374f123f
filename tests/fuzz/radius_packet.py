"""Fuzz target: a datagram through the RADIUS decoder (aaa.packet.decode) and
the attribute decoding the server does on a request.

Contract:

- ``decode`` returns a Packet or raises MalformedPacket, nothing else. A
  returned Packet agrees with an independent walk of RFC 2865 §3/§5 written
  here: header fields, ``raw`` cut at the length field, every attribute in
  packet order, Vendor-Specific split only when its RFC layout holds,
  Message-Authenticator found and 16 octets. A datagram the walk accepts
  must not be refused, and one it refuses must not be accepted.
- On a decoded packet: ``text`` never raises; ``integer`` gives 0..2^32-1 or
  MalformedPacket; ``accounting.parse`` gives a record the database can
  store (session id 1..128 characters without NUL, user name at most 128
  without NUL, 64-bit counters, a dotted quad) or MalformedPacket;
  ``decrypt_password`` gives at most 128 octets or MalformedPacket; the
  authenticator checks return booleans; MS-CHAPv2 verification returns
  (bool, bytes); ``encode_reply`` gives a reply that decodes, carries the
  request's Proxy-States in order and a valid Message-Authenticator, or
  ValueError when it would be longer than 4096 octets.
"""

from __future__ import annotations

import datetime as dt

from tests.fuzz import ContractViolation, check

INSTRUMENT = ["aaa"]
SECRET = b"fuzz-secret"
RECEIVED_AT = dt.datetime(2026, 1, 1, 12, 0, 0)


def reference_walk(data: bytes):
    """(code, identifier, authenticator, raw, [(type, value)...]) or None."""
    if len(data) < 20:
        return None
    length = int.from_bytes(data[2:4], "big")
    if not 20 <= length <= 4096 or length > len(data):
        return None
    raw = data[:length]
    pairs, position = [], 20
    while position < length:
        if position + 2 > length:
            return None
        size = raw[position + 1]
        if size < 2 or position + size > length:
            return None
        kind = raw[position]
        if kind == 80 and size != 18:
            return None
        pairs.append((kind, raw[position + 2:position + size]))
        position += size
    return data[0], data[1], data[4:20], raw, pairs


def reference_vendor(value: bytes):
    """Sub-attributes of a Vendor-Specific value in the RFC 2865 layout, or []."""
    if len(value) < 6:
        return []
    vendor_id, position, found = int.from_bytes(value[:4], "big"), 4, []
    while position < len(value):
        if position + 2 > len(value):
            return []
        size = value[position + 1]
        if size < 2 or position + size > len(value):
            return []
        found.append(((vendor_id, value[position]), value[position + 2:position + size]))
        position += size
    return found


def check_record(record, nas_id: int = 1, received_at: dt.datetime = RECEIVED_AT) -> None:
    """An AcctRecord the database can store (see the module docstring)."""
    from aaa import accounting

    check(record.nas_id == nas_id, "nas_id changed")
    if record.status in accounting.NAS_STATUSES:
        return
    check(record.status in accounting.SESSION_STATUSES, f"status {record.status}")
    session_id = record.acct_session_id
    check(isinstance(session_id, str) and 0 < len(session_id) <= 128
          and "\x00" not in session_id, f"session id {session_id!r}")
    check(isinstance(record.username, str) and len(record.username) <= 128
          and "\x00" not in record.username, f"username {record.username!r}")
    if record.calling_station_id is not None:
        check(len(record.calling_station_id) <= 64
              and "\x00" not in record.calling_station_id, "calling station id")
    if record.framed_ip is not None:
        parts = record.framed_ip.split(".")
        check(len(parts) == 4 and all(p.isdigit() and int(p) < 256 for p in parts),
              f"framed ip {record.framed_ip!r}")
    for name in ("octets_in", "octets_out", "packets_in", "packets_out", "session_time"):
        value = getattr(record, name)
        check(isinstance(value, int) and 0 <= value < 2**64, f"{name} = {value!r}")
    check(record.event_time <= received_at
          and received_at - record.event_time <= dt.timedelta(seconds=accounting.MAX_DELAY_S),
          f"event time {record.event_time}")


def setup():
    from aaa import accounting, mschap
    from aaa import packet as wire
    from aaa.authorize import normalize_mac

    def check_reply(packet) -> None:
        try:
            reply = wire.encode_reply(wire.ACCESS_ACCEPT, packet, SECRET,
                                      wire.attribute(wire.USER_NAME, b"fuzz"),
                                      message_authenticator=True)
        except ValueError:
            states = packet.attributes.get(wire.PROXY_STATE, ())
            check(20 + 18 + 6 + sum(len(s) + 2 for s in states) > 4096,
                  "encode_reply refused a reply that fits in 4096 octets")
            return
        decoded = wire.decode(reply)
        check(decoded.identifier == packet.identifier, "reply identifier")
        check(decoded.attributes.get(wire.PROXY_STATE, []) ==
              packet.attributes.get(wire.PROXY_STATE, []), "Proxy-State not copied in order")
        check(wire.message_authenticator_valid(decoded, SECRET, packet.authenticator),
              "reply Message-Authenticator invalid")

    def one_input(data: bytes) -> None:
        expected = reference_walk(data)
        try:
            packet = wire.decode(data)
        except wire.MalformedPacket as error:
            check(isinstance(error.reason, str) and error.reason, "MalformedPacket without reason")
            if expected is not None:
                raise ContractViolation(f"refused a well-formed packet: {error.reason}") from None
            return
        if expected is None:
            raise ContractViolation("accepted a malformed packet")
        code, identifier, authenticator, raw, pairs = expected
        check((packet.code, packet.identifier, packet.authenticator, packet.raw)
              == (code, identifier, authenticator, raw), "header or raw differ")
        grouped: dict = {}
        vendor: dict = {}
        for kind, value in pairs:
            grouped.setdefault(kind, []).append(value)
            if kind == wire.VENDOR_SPECIFIC:
                for key, sub in reference_vendor(value):
                    vendor.setdefault(key, []).append(sub)
        check(packet.attributes == grouped, "attributes differ from the reference walk")
        check(packet.vendor == vendor, "vendor attributes differ from the reference walk")
        at = packet.message_authenticator_at
        if wire.MESSAGE_AUTHENTICATOR in grouped:
            first = 20
            for kind, value in pairs:
                if kind == wire.MESSAGE_AUTHENTICATOR:
                    break
                first += len(value) + 2
            check(at == first + 2, f"Message-Authenticator at {at}, expected {first + 2}")
        else:
            check(at is None, "Message-Authenticator found where there is none")

        # What the server reads from a request.
        for kind in grouped:
            text = packet.text(kind)
            check(isinstance(text, str), "text() did not give a str")
            try:
                number = packet.integer(kind)
            except wire.MalformedPacket:
                check(len(grouped[kind][0]) != 4, "integer() refused 4 octets")
            else:
                check(0 <= number < 2**32, "integer() out of range")
        check(isinstance(wire.message_authenticator_valid(packet, SECRET), bool), "MA check")
        check(isinstance(wire.accounting_authenticator_valid(packet, SECRET), bool), "RA check")
        hidden = packet.first(wire.USER_PASSWORD)
        if hidden is not None:
            try:
                password = wire.decrypt_password(hidden, SECRET, packet.authenticator)
            except wire.MalformedPacket:
                check(not hidden or len(hidden) % 16 != 0 or len(hidden) > 128,
                      "decrypt_password refused a good length")
            else:
                check(isinstance(password, bytes) and len(password) <= len(hidden), "password")
        for key in ((311, 16), (311, 17)):
            for value in packet.vendor.get(key, ()):
                try:
                    plain = wire.salt_decrypt(value, SECRET, packet.authenticator)
                except wire.MalformedPacket:
                    pass
                else:
                    check(len(plain) < len(value), "salt_decrypt grew the value")
        challenges = packet.vendor.get((311, 11))
        for response in packet.vendor.get((311, 25), ())[:1]:
            if challenges:
                valid, success = mschap.verify("pw", packet.text(wire.USER_NAME) or "",
                                               challenges[0], response)
                check(isinstance(valid, bool) and isinstance(success, bytes), "mschap.verify")
        mac = normalize_mac(packet.text(31))
        check(mac is None or (len(mac) == 17 and mac.count(":") == 5), f"mac {mac!r}")
        try:
            record = accounting.parse(packet, 1, RECEIVED_AT, owner=lambda name: None)
        except wire.MalformedPacket:
            pass
        else:
            check_record(record)
        check_reply(packet)

    return one_input


def seeds() -> dict[str, bytes]:
    """Real requests built with the project's encoder and with pyrad."""
    from aaa import packet as wire
    from aaa.client import access_request, accounting_request

    out = {
        "pap": access_request(SECRET, 1, "fuzz", "pw", authenticator=bytes(range(16))),
        "pap_long_password": access_request(SECRET, 2, "fuzz", "p" * 40,
                                            authenticator=bytes(range(1, 17))),
        "acct_start": accounting_request(SECRET, 3, [
            ("Acct-Status-Type", "Start"), ("Acct-Session-Id", "s1"), ("User-Name", "fuzz"),
            ("Framed-IP-Address", "10.0.0.7"), ("Calling-Station-Id", "aa:bb:cc:dd:ee:ff")]),
        "acct_stop": accounting_request(SECRET, 4, [
            ("Acct-Status-Type", "Stop"), ("Acct-Session-Id", "s1"), ("User-Name", "fuzz"),
            ("Acct-Input-Octets", 1000), ("Acct-Output-Octets", 2000),
            ("Acct-Input-Gigawords", 1), ("Acct-Session-Time", 60),
            ("Acct-Terminate-Cause", "User-Request"), ("Acct-Delay-Time", 5)]),
        "acct_on": accounting_request(SECRET, 5, [("Acct-Status-Type", "Accounting-On")]),
        "status_server": wire.encode_request(wire.STATUS_SERVER, 6, SECRET, b"",
                                             authenticator=bytes(range(16)),
                                             message_authenticator=True),
        "vsa_and_proxy_state": wire.encode_request(
            wire.ACCESS_REQUEST, 7, SECRET,
            wire.attribute(wire.USER_NAME, b"fuzz")
            + wire.vendor_attribute(3561, 1, b"eth0/1/2:100")
            + wire.vendor_attribute(311, 11, bytes(16))
            + wire.vendor_attribute(311, 25, bytes(50))
            + wire.attribute(wire.PROXY_STATE, b"state-1")
            + wire.attribute(wire.CHAP_PASSWORD, bytes(17))
            + wire.attribute(wire.CHAP_CHALLENGE, bytes(16)),
            authenticator=bytes(16), message_authenticator=True),
    }
    try:
        from pyrad.packet import AcctPacket, AuthPacket

        from aaa.dictionary import dictionary
        radius_dictionary = dictionary()
        auth = AuthPacket(id=9, secret=SECRET, dict=radius_dictionary,
                          authenticator=bytes(range(2, 18)))
        auth["User-Name"] = "pyrad"
        auth["User-Password"] = auth.PwCrypt("secret")
        auth["NAS-IP-Address"] = "192.0.2.1"
        out["pyrad_access"] = auth.RequestPacket()
        acct = AcctPacket(id=10, secret=SECRET, dict=radius_dictionary)
        acct["Acct-Status-Type"] = "Interim-Update"
        acct["Acct-Session-Id"] = "pyrad-1"
        acct["User-Name"] = "pyrad"
        acct["Acct-Input-Octets"] = 12345
        out["pyrad_interim"] = acct.RequestPacket()
    except ImportError:   # pyrad is a dependency; the seeds above suffice without it
        pass
    return out
