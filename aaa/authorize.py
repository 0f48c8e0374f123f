"""Accept or reject, and with which attributes: pure functions over values.

``decide`` takes the cached view of a subscriber (``Subscriber``), the result
of the credential check and the NAS vendor, and returns a ``Decision``; the
server turns it into a packet. No database, no socket.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from aaa.vendors import Rate, rate_attributes
from rating.speeds import profile_speed

# Profiles (rating.choices.PROFILES) that get a session at all.
TURBO_MULTIPLIER = 2


@dataclass(frozen=True)
class Subscriber:
    """What authorization needs to know about one service, cached."""

    service_id: int
    kind: str
    account_id: int
    account_number: str
    login: str | None
    password: str | None
    mac: str | None
    circuit_id: str | None
    static_ipv4: str | None
    pool: str | None
    account_state: str
    profile: str
    rate_down_kbps: int
    rate_up_kbps: int
    negative_rate_kbps: int
    version: int
    ipv6_prefix: str | None = None      # delegated (DHCPv6-PD), RFC 4818


@dataclass(frozen=True)
class Decision:
    accept: bool
    reason: str
    attributes: tuple[tuple[str, object], ...] = ()
    profile: str | None = None


def normalize_mac(text: str | None) -> str | None:
    """"AA-BB-CC-DD-EE-FF", "aabb.ccdd.eeff", "aabbccddeeff" → "aa:bb:cc:dd:ee:ff"."""
    if not text:
        return None
    digits = "".join(ch for ch in text.lower() if ch not in ":-. ")
    if len(digits) != 12 or any(ch not in "0123456789abcdef" for ch in digits):
        return None
    return ":".join(digits[i:i + 2] for i in range(0, 12, 2))


def binding_valid(subscriber: Subscriber) -> bool:
    """IPoE: the MAC or Option-82 binding is the credential; a service with
    a PPPoE login must still give its password."""
    return subscriber.kind == "ipoe" or subscriber.login is None


def pap_valid(subscriber: Subscriber, password: bytes) -> bool:
    if subscriber.password is None:
        return False
    return hmac.compare_digest(subscriber.password.encode(), password)


def chap_valid(subscriber: Subscriber, chap_password: bytes, challenge: bytes) -> bool:
    """RFC 1994 / RFC 2865 §5.3: MD5(CHAP-Ident + password + challenge)."""
    if subscriber.password is None or len(chap_password) != 17:
        return False
    expected = hashlib.md5(chap_password[:1] + subscriber.password.encode() + challenge).digest()
    return hmac.compare_digest(expected, chap_password[1:])


def profile_rate(subscriber: Subscriber) -> Rate | None:
    """The speed a profile gives; None means no session (suspended)."""
    speed = profile_speed(subscriber.profile, subscriber.rate_down_kbps,
                          subscriber.rate_up_kbps, subscriber.negative_rate_kbps)
    return Rate(*speed) if speed else None


def decide(subscriber: Subscriber | None, credentials_valid: bool, *, vendor: str,
           interim_interval: int, session_timeout: int = 0,
           framed_ip: str | None = None) -> Decision:
    if subscriber is None:
        return Decision(False, "unknown-user")
    if not credentials_valid:
        return Decision(False, "bad-password")
    if subscriber.account_state != "active":
        return Decision(False, f"account-{subscriber.account_state}")
    rate = profile_rate(subscriber)
    if rate is None:
        return Decision(False, f"profile-{subscriber.profile}", profile=subscriber.profile)
    pairs: list[tuple[str, object]] = [("Service-Type", "Framed-User")]
    address = subscriber.static_ipv4 or framed_ip
    if address:
        pairs.append(("Framed-IP-Address", address))
    if subscriber.ipv6_prefix:
        pairs.append(("Delegated-IPv6-Prefix", subscriber.ipv6_prefix))
    if interim_interval > 0:
        pairs.append(("Acct-Interim-Interval", interim_interval))
    if session_timeout > 0:
        pairs.append(("Session-Timeout", session_timeout))
    pairs.extend(rate_attributes(vendor, rate))
    return Decision(True, "ok", tuple(pairs), subscriber.profile)
