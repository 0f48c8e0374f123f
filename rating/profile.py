"""What a session should have on the network: one pure function.

``desired_profile`` turns an account's state (the balance ladder's rung,
freeze, tariff, the options bought, the time) into a ``Profile``: whether
the subscriber gets access at all, full or through a captive portal, and at
which speed. RADIUS Access-Accept, the enforcer and the cabinet's "speed
now" all ask it, so they cannot disagree; ``aaa.vendors`` alone turns a
profile into a vendor's attributes, so rating knows nothing of RADIUS.

Options stack on the ladder: a rung that restricts (throttle, redirect,
block) wins while it holds, and the options bought are still there when it
stops holding, so a restored account gets at once what it paid for.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Iterable

from rating import policies, timewindows

# Access: the NAS lets the subscriber out, sends them to the captive
# portal (to pay), or gives no session at all.
FULL, REDIRECT, NONE = "full", "redirect", "none"
# The speed of the captive-portal state when neither the rung nor the
# tariff names one: enough for the payment pages.
PORTAL_RATE_KBPS = 1024
# The speed of an account whose spending limit throttles it (rating.spending)
# when the tariff names no slow speed of its own (negative_rate_kbps).
LIMIT_RATE_KBPS = 1024
LIMIT_PROFILE = "limit-throttled"


@dataclass(frozen=True)
class TariffSpeeds:
    rate_down_kbps: int
    rate_up_kbps: int
    negative_rate_kbps: int = 0
    # Time-of-day windows with their own speed (rating.timewindows), in
    # the operator's local time ``zone``.
    windows: tuple[timewindows.TimeWindow, ...] = ()
    zone: str = "UTC"

    def at(self, now: dt.datetime) -> tuple[int, int, dt.datetime | None]:
        """(down, up) at ``now`` (naive UTC) and when they next change."""
        if not self.windows:    # the common case, on RADIUS's hot path
            return self.rate_down_kbps, self.rate_up_kbps, None
        speeds = tuple(w for w in self.windows if w.has_speed)
        window, changes_at = timewindows.current(speeds, now, self.zone)
        if window is None:
            return self.rate_down_kbps, self.rate_up_kbps, changes_at
        return window.down_kbps, window.up_kbps, changes_at


@dataclass(frozen=True)
class ActiveOption:
    """An option bought: what ``desired_profile`` needs of it."""

    code: str
    kind: str
    rate_multiplier: int
    starts_at: dt.datetime
    ends_at: dt.datetime

    def running(self, now: dt.datetime) -> bool:
        return self.starts_at <= now < self.ends_at


@dataclass(frozen=True)
class Profile:
    name: str            # normal / turbo / throttled / suspended / frozen / closed / no-tariff
    access: str          # full / redirect / none
    down_kbps: int = 0
    up_kbps: int = 0
    option: str | None = None          # the option code that shaped the speed
    until: dt.datetime | None = None   # when that option ends
    multiplier: int = 1
    # When the tariff's time-of-day speed next changes (None: it does not):
    # an answer given now holds until then at most.
    changes_at: dt.datetime | None = None

    @property
    def valid_until(self) -> dt.datetime | None:
        """Until when this profile holds, whatever else happens: the
        earlier of the option's end and the tariff's next speed change."""
        moments = [m for m in (self.until, self.changes_at) if m is not None]
        return min(moments) if moments else None

    @property
    def key(self) -> str:
        """What the NAS sees, as one comparable string: the enforcer's
        "applied" and "desired" are keys, and the Access-Accept's Class
        carries one, so a session starts with a known applied profile."""
        if self.access == NONE:
            return NONE
        return f"{self.access}:{self.down_kbps}/{self.up_kbps}"

    @property
    def gives_session(self) -> bool:
        return self.access != NONE


def parse_key(key: str | None) -> tuple[str, int, int] | None:
    """(access, down, up) of a key, or None for an unknown or foreign one."""
    if not key:
        return None
    if key == NONE:
        return NONE, 0, 0
    access, _, rates = key.partition(":")
    down, _, up = rates.partition("/")
    if access not in (FULL, REDIRECT) or not down.isdigit() or not up.isdigit():
        return None
    return access, int(down), int(up)


def speed_boost(options: Iterable[ActiveOption], now: dt.datetime) -> ActiveOption | None:
    """The running speed option with the largest multiplier (the one that
    ends last among equals)."""
    best = None
    for option in options:
        if option.rate_multiplier <= 1 or not option.running(now):
            continue
        if best is None or (option.rate_multiplier, option.ends_at) > (best.rate_multiplier,
                                                                       best.ends_at):
            best = option
    return best


def desired_profile(*, state: str, rung: str, tariff: TariffSpeeds | None,
                    options: Iterable[ActiveOption] = (), now: dt.datetime,
                    ladder: tuple[policies.Rung, ...] = policies.DEFAULT_LADDER,
                    limit_throttled_until: dt.datetime | None = None) -> Profile:
    """The profile a session of this account should have at ``now``.

    ``rung`` is the balance ladder's verdict kept on the account
    (``Account.profile``: normal, or a rung's profile name).
    ``limit_throttled_until``: a spending limit reached this month slows the
    account until then (``Account.limit_throttled_until``); the ladder's
    restrictions still win, and no option speeds it up meanwhile."""
    if state == "closed":
        return Profile("closed", NONE)
    if state == "frozen":
        return Profile("frozen", NONE)
    if state == "blocked":
        return Profile("blocked", NONE)
    if tariff is None:
        return Profile("no-tariff", NONE)
    found = policies.rung_named(rung, ladder)
    if found is None and limit_throttled_until is not None and now < limit_throttled_until:
        down, _, _ = tariff.at(now)
        rate = min(tariff.negative_rate_kbps or LIMIT_RATE_KBPS, down)
        return Profile(LIMIT_PROFILE, FULL, rate, rate, until=limit_throttled_until)
    if found is None:
        down, up, changes_at = tariff.at(now)
        boost = speed_boost(options, now)
        if boost is None:
            return Profile("normal", FULL, down, up, changes_at=changes_at)
        factor = boost.rate_multiplier
        return Profile(boost.kind, FULL, down * factor, up * factor, option=boost.code,
                       until=boost.ends_at, multiplier=factor, changes_at=changes_at)
    if found.mode == policies.THROTTLE:
        rate = found.rate_kbps or tariff.negative_rate_kbps
        if rate > 0:
            return Profile(found.profile, FULL, rate, rate)
        return Profile(found.profile, NONE)
    if found.mode == policies.REDIRECT:
        rate = found.rate_kbps or tariff.negative_rate_kbps or PORTAL_RATE_KBPS
        return Profile(found.profile, REDIRECT, rate, rate)
    return Profile(found.profile, NONE)
