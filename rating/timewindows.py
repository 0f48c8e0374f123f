"""Time-of-day windows of a tariff: hours with their own traffic price or speed.

A window is whole local hours ``[start, end)`` (it may pass midnight:
23→7), with a price per GB for the traffic in it, a speed, or both:

- ``price``: billable traffic in the window costs this per GB instead of
  its class price (a class that is free outside stays free), and neither
  uses nor counts towards the prepaid volume. ``price=0`` is the classic
  free night.
- ``down_kbps``/``up_kbps``: the tariff's speed while the window holds (an
  option bought multiplies it as it does the day speed; the balance ladder
  still wins over it).

Windows of one tariff never overlap, so an hour has at most one. They are
kept in ``Tariff.rules["windows"]`` as ``{"start": 0, "end": 7, "price":
"0.00", "down_kbps": 200000, "up_kbps": 100000}`` (settings absent when not
set); a tariff written before windows existed has ``"free_hours": [s, e]``,
read as one window with ``price=0``.

Pure: no database, no settings; the callers pass the operator's time zone.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from zoneinfo import ZoneInfo

_SPAN = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")
_SPEED = re.compile(r"^(\d{1,12})(?:/(\d{1,12}))?$")
MAX_WINDOWS = 24


class WindowError(ValueError):
    """A window as typed or stored cannot be understood (one sentence)."""


@dataclass(frozen=True)
class TimeWindow:
    start: int                       # local hour, 0-23
    end: int                         # local hour, 1-24, exclusive
    price: Decimal | None = None     # per GB in the window
    down_kbps: int | None = None
    up_kbps: int | None = None

    def covers(self, hour: int) -> bool:
        if self.start < self.end:
            return self.start <= hour < self.end
        return hour >= self.start or hour < self.end % 24

    @property
    def hours(self) -> frozenset[int]:
        return frozenset(h for h in range(24) if self.covers(h))

    @property
    def has_speed(self) -> bool:
        return self.down_kbps is not None

    def to_rule(self) -> dict:
        rule: dict = {"start": self.start, "end": self.end}
        if self.price is not None:
            rule["price"] = str(self.price)
        if self.has_speed:
            rule["down_kbps"], rule["up_kbps"] = self.down_kbps, self.up_kbps
        return rule

    def text(self) -> str:
        """As ``tariff --window`` takes it: "23:00-07:00 price=0.00 speed=200000/100000"."""
        parts = [f"{self.start:02d}:00-{self.end:02d}:00"]
        if self.price is not None:
            parts.append(f"price={self.price}")
        if self.has_speed:
            parts.append(f"speed={self.down_kbps}/{self.up_kbps}")
        return " ".join(parts)


def from_rules(rules: dict | None) -> tuple[TimeWindow, ...]:
    """The windows a tariff's rules hold (``windows``, or the older ``free_hours``)."""
    rules = rules or {}
    stored = rules.get("windows")
    if stored:
        return tuple(TimeWindow(
            int(w["start"]), int(w["end"]),
            Decimal(str(w["price"])) if w.get("price") is not None else None,
            int(w["down_kbps"]) if w.get("down_kbps") is not None else None,
            int(w["up_kbps"]) if w.get("up_kbps") is not None else None) for w in stored)
    free = rules.get("free_hours")
    if free:
        return (TimeWindow(int(free[0]), int(free[1]), Decimal("0.00")),)
    return ()


def parse(value: str, parse_price, max_kbps: int) -> TimeWindow:
    """``"HH:MM-HH:MM price=X speed=DOWN[/UP]"`` → a TimeWindow.

    ``parse_price`` turns the price text into a Decimal (raising on a bad
    one); ``speed=N`` alone is N both ways."""
    span, *settings = value.split()
    match = _SPAN.match(span)
    if match is None:
        raise WindowError(f"window must look like 00:00-07:00 price=0 or "
                          f"00:00-07:00 speed=200000/100000, not {value!r}")
    start_hour, start_minute, end_hour, end_minute = (int(g) for g in match.groups())
    if start_hour > 23 or end_hour > 24 or start_minute > 59 or end_minute > 59 or (
            end_hour == 24 and end_minute):
        raise WindowError(f"window {span} is not a time of day (00:00 to 24:00)")
    if start_minute or end_minute:
        raise WindowError(f"window {span} must start and end on the hour: "
                          f"traffic is rated by the hour")
    price = down = up = None
    for setting in settings:
        key, sign, text = setting.partition("=")
        if not sign or key not in ("price", "speed"):
            raise WindowError(f"window setting {setting!r} is unknown; use price=X or "
                              f"speed=DOWN/UP (kbit/s)")
        if key == "price":
            price = parse_price(text)
        else:
            speed = _SPEED.match(text)
            if speed is None:
                raise WindowError(f"window speed must be DOWN/UP in kbit/s, like "
                                  f"speed=200000/100000, not {text!r}")
            down = int(speed.group(1))
            up = int(speed.group(2)) if speed.group(2) else down
    if price is None and down is None:
        raise WindowError(f"window {span} needs a price or a speed, e.g. {span} price=0")
    return check(TimeWindow(start_hour, end_hour, price, down, up), max_kbps)


def check(window: TimeWindow, max_kbps: int) -> TimeWindow:
    start, end = window.start, window.end
    if not (0 <= start <= 23 and 1 <= end <= 24):
        raise WindowError(f"window {start}-{end} is not whole hours of a day")
    if start == end % 24 and (start, end) != (0, 24):
        raise WindowError(f"window {start:02d}:00-{end:02d}:00 is empty")
    if window.price is None and not window.has_speed:
        raise WindowError(f"window {window.text()} needs a price or a speed")
    if window.has_speed:
        for speed in (window.down_kbps, window.up_kbps):
            if speed is None or not 1 <= speed <= max_kbps:
                raise WindowError(f"window speed must be 1 to {max_kbps} kbit/s, "
                                  f"not {speed}")
    return window


def check_all(windows, max_kbps: int) -> tuple[TimeWindow, ...]:
    """Each window checked, none overlapping, ordered by start."""
    windows = tuple(sorted((check(w, max_kbps) for w in windows), key=lambda w: w.start))
    if len(windows) > MAX_WINDOWS:
        raise WindowError(f"a tariff has at most {MAX_WINDOWS} windows")
    taken: dict[int, TimeWindow] = {}
    for window in windows:
        for hour in sorted(window.hours):
            if hour in taken:
                raise WindowError(f"windows {taken[hour].text()} and {window.text()} overlap "
                                  f"at {hour:02d}:00")
            taken[hour] = window
    return windows


def at(windows: tuple[TimeWindow, ...], local_hour: int) -> TimeWindow | None:
    for window in windows:
        if window.covers(local_hour):
            return window
    return None


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def local_time(utc: dt.datetime, zone: str) -> dt.datetime:
    """A naive UTC time as the operator's local time (aware)."""
    return utc.replace(tzinfo=dt.timezone.utc).astimezone(_zone(zone))


def local_hour(utc: dt.datetime, zone: str) -> int:
    return local_time(utc, zone).hour


def current(windows: tuple[TimeWindow, ...], now: dt.datetime, zone: str
            ) -> tuple[TimeWindow | None, dt.datetime | None]:
    """The window holding at ``now`` (naive UTC) and when that answer next
    changes (naive UTC; None when the tariff has no windows)."""
    if not windows:
        return None, None
    local = local_time(now, zone)
    holding = at(windows, local.hour)
    # Local hour boundaries, stepped in UTC so a DST change is no trouble.
    boundary = local.replace(minute=0, second=0, microsecond=0).astimezone(dt.timezone.utc)
    for step in range(1, 49):
        moment = boundary + dt.timedelta(hours=step)
        if at(windows, moment.astimezone(_zone(zone)).hour) is not holding:
            return holding, moment.replace(tzinfo=None)
    return holding, None
