"""Accept or reject, and with which attributes: pure functions over values.

``decide`` takes the cached view of a subscriber (``Subscriber``), the result
of the credential check and the NAS vendor, and returns a ``Decision``; the
server turns it into a packet. No database, no socket.
"""

from __future__ import annotations

import hashlib
import hmac
import datetime as dt
from dataclasses import dataclass

from aaa.vendors import VendorSpec, accept_attributes, access_possible, spec_for
from config.db import utcnow
from rating import policies
from rating.profile import ActiveOption, Profile, TariffSpeeds, desired_profile

# The Access-Accept's Class (RFC 2865 §5.25) carries the profile given, and
# the NAS echoes it in accounting: the enforcer then knows what a new
# session has without guessing.
CLASS_PREFIX = b"abonent:"


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
    # Options bought that may change the speed (rating.profile).
    options: tuple[ActiveOption, ...] = ()
    # The tariff's time-of-day windows with their own speed (rating.timewindows).
    windows: tuple = ()
    # A spending limit slows the account until then (rating.spending).
    limit_throttled_until: dt.datetime | None = None


@dataclass(frozen=True)
class Decision:
    accept: bool
    reason: str
    attributes: tuple[tuple[str, object], ...] = ()
    profile: str | None = None
    # The answer holds until then (an option ends, the tariff's window speed
    # changes), None: until the view changes.
    valid_until: dt.datetime | None = None


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


def subscriber_profile(subscriber: Subscriber, now: dt.datetime,
                       ladder: tuple[policies.Rung, ...] = policies.DEFAULT_LADDER,
                       timezone: str = "UTC") -> Profile:
    """rating.profile.desired_profile over the cached view; ``timezone``
    is the operator's, in which the tariff's windows are written."""
    tariff = TariffSpeeds(subscriber.rate_down_kbps, subscriber.rate_up_kbps,
                          subscriber.negative_rate_kbps, subscriber.windows,
                          timezone) if subscriber.rate_down_kbps else None
    return desired_profile(state=subscriber.account_state, rung=subscriber.profile,
                           tariff=tariff, options=subscriber.options, now=now, ladder=ladder,
                           limit_throttled_until=subscriber.limit_throttled_until)


def decide(subscriber: Subscriber | None, credentials_valid: bool, *,
           vendor: str | VendorSpec, interim_interval: int, session_timeout: int = 0,
           framed_ip: str | None = None, now: dt.datetime | None = None,
           ladder: tuple[policies.Rung, ...] = policies.DEFAULT_LADDER,
           redirect_url: str = "", timezone: str = "UTC") -> Decision:
    if subscriber is None:
        return Decision(False, "unknown-user")
    if not credentials_valid:
        return Decision(False, "bad-password")
    if subscriber.account_state != "active":
        return Decision(False, f"account-{subscriber.account_state}")
    spec = spec_for(vendor) if isinstance(vendor, str) else vendor
    profile = subscriber_profile(subscriber, now or utcnow(), ladder, timezone)
    if not profile.gives_session or not access_possible(spec, profile):
        return Decision(False, f"profile-{profile.name}", profile=profile.name)
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
    pairs.extend(accept_attributes(spec, profile, redirect_url))
    pairs.append(("Class", CLASS_PREFIX + profile.key.encode()))
    return Decision(True, "ok", tuple(pairs), profile.name, profile.valid_until)
