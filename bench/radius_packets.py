"""Accounting-Request datagrams for the RADIUS benches, built once up front
so that abonent and FreeRADIUS get byte-for-byte the same packets.

Every packet carries the 18 attributes a MikroTik or accel-ppp BRAS sends
(radius_acct.builder's set) and is signed with bench.radius_common.SECRET;
request n carries RADIUS identifier n % 256 (bench.radius_common.load).
"""

from __future__ import annotations

import hashlib
import struct

from bench.radius_common import SECRET

START, STOP, INTERIM = 1, 2, 3
_ZERO16 = bytes(16)
GIGAWORD = 1 << 32


def _attr(kind: int, value: bytes) -> bytes:
    return bytes((kind, len(value) + 2)) + value


def _int(kind: int, value: int) -> bytes:
    return bytes((kind, 6)) + struct.pack("!I", value)


def address(number: int) -> bytes:
    """A distinct Framed-IP-Address per session number, in 10.0.0.0/8 and
    then 100.64.0.0/10 (16.7M + 4.2M addresses)."""
    if number < 1 << 24:
        return bytes((10, number >> 16 & 255, number >> 8 & 255, number & 255))
    number -= 1 << 24
    return bytes((100, 64 | number >> 16 & 63, number >> 8 & 255, number & 255))


def address_text(number: int) -> str:
    return "%d.%d.%d.%d" % tuple(address(number))


def session_id(number: int) -> str:
    return f"bench-{number:08d}"


def accounting(identifier: int, status: int, number: int, user: str, *,
               session_time: int = 0, octets_in: int = 0, octets_out: int = 0,
               cause: int | None = None) -> bytes:
    """An Accounting-Request of session ``number`` (its own Acct-Session-Id,
    Framed-IP-Address, NAS-Port and Calling-Station-Id). Octet counters
    above 32 bits go out with Acct-Input/Output-Gigawords (RFC 2869)."""
    body = (_attr(1, user.encode())                                   # User-Name
            + _attr(44, session_id(number).encode())                  # Acct-Session-Id
            + _attr(4, bytes((127, 0, 0, 1)))                         # NAS-IP-Address
            + _int(5, 15728640 + number % (1 << 24))                  # NAS-Port
            + _int(61, 15)                                            # NAS-Port-Type Ethernet
            + _int(6, 2) + _int(7, 1)                                 # Framed, PPP
            + _attr(8, address(number))                               # Framed-IP-Address
            + _attr(31, f"02:00:{number >> 24 & 255:02X}:{number >> 16 & 255:02X}:"
                        f"{number >> 8 & 255:02X}:{number & 255:02X}".encode())
            + _attr(30, b"bras-bench")                                # Called-Station-Id
            + _attr(32, b"bras-bench-1")                              # NAS-Identifier
            + _int(40, status) + _int(41, 0) + _int(46, session_time)
            + _int(42, octets_in % GIGAWORD) + _int(43, octets_out % GIGAWORD)
            + _int(47, octets_in // 1500 % GIGAWORD) + _int(48, octets_out // 1500 % GIGAWORD))
    if octets_in >= GIGAWORD or octets_out >= GIGAWORD:
        body += _int(52, octets_in // GIGAWORD) + _int(53, octets_out // GIGAWORD)
    if cause is not None:
        body += _int(49, cause)                                       # Acct-Terminate-Cause
    head = struct.pack("!BBH", 4, identifier & 0xFF, 20 + len(body))
    return head + hashlib.md5(head + _ZERO16 + body + SECRET).digest() + body


def accounting_on(identifier: int) -> bytes:
    """Accounting-On from the bench NAS (RFC 2866 §5.1: it rebooted)."""
    body = (_attr(4, bytes((127, 0, 0, 1))) + _attr(32, b"bras-bench-1")
            + _int(40, 7) + _int(41, 0))
    head = struct.pack("!BBH", 4, identifier & 0xFF, 20 + len(body))
    return head + hashlib.md5(head + _ZERO16 + body + SECRET).digest() + body


def new_sessions(count: int, subscribers: int, status: int = INTERIM,
                 first: int = 0) -> list[bytes]:
    """``count`` requests, each for a session not yet known (its own
    Acct-Session-Id and Framed-IP-Address): what a BRAS sends after a
    reboot or a failover, an Interim-Update or a Start each."""
    return [accounting(n, status, first + n, f"user{(first + n) % subscribers + 1}",
                       session_time=60 if status == INTERIM else 0,
                       octets_in=123_456 if status == INTERIM else 0,
                       octets_out=654_321 if status == INTERIM else 0)
            for n in range(count)]
