"""The tariff catalogue as data: every rule rating reads, written and checked here.

A tariff is its columns (``rating.models.Tariff``) plus ``Tariff.rules``,
a JSON object whose keys are exactly those rating reads:

- ``class_prices``  {class: "price per GB"}  rating.traffic.TrafficRules
- ``windows``       time-of-day windows with a price and/or a speed
                    rating.timewindows (traffic, profile); ``free_hours``
                    [start, end) of older tariffs is read as one free window
- ``directions``    ["in"], ["out"] or both     rating.traffic.TrafficRules
- ``fee_while_suspended``  true/false            rating.fees.unserved_profiles

Whatever a person types (the CLI today, an import tomorrow) goes through
``check_tariff``, so a rule that rating would misread (a window at 25:00, a
price of 1e21, a class the collector does not know) is refused with one
sentence before anything is written. Keys of ``rules`` this module does not
know are kept as they are on an edit.

Time-of-day windows: traffic is rated by the hour, so a window is whole
local hours; windows of a tariff never overlap. A window's price replaces
the per-GB price of billable traffic in it (``price=0``: night unlimited);
a window's speed is what RADIUS, the enforcer and the cabinet give while it
holds (rating.timewindows).
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, Iterable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from rating import oplog, timewindows, validate
from rating.accounts import MAX_KBPS, MAX_PREPAID_MB, find_tariff
from rating.choices import FEE_PERIODS, TRAFFIC_DIRECTIONS, USAGE_SOURCES
from rating.models import Account, Tariff
from rating.validate import DomainError

# A tariff may limit switching to it to once in this many days at most.
MAX_SWITCH_DAYS = 3650
# The collector's default class (collector.attribute.TrafficClasses).
DEFAULT_CLASS = "internet"
_CLASS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
_WINDOW = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")

COLUMNS = ("fee", "fee_period", "rate_down_kbps", "rate_up_kbps", "negative_rate_kbps",
           "prepaid_mb", "price_per_gb", "usage_source", "switch_min_days")
RULES = ("class_prices", "windows", "directions", "fee_while_suspended")
FIELDS = COLUMNS + RULES

DEFAULTS: dict[str, Any] = dict(fee_period="monthly", negative_rate_kbps=0, prepaid_mb=0,
                                price_per_gb="0", usage_source="radius", switch_min_days=0,
                                class_prices={}, windows=(), directions=("in",),
                                fee_while_suspended=False)


# -- parsing what a person types ----------------------------------------------

def parse_window(value: str) -> timewindows.TimeWindow:
    """``"HH:MM-HH:MM price=X speed=DOWN/UP"`` → a window (local time, end
    exclusive; it may pass midnight: "23:00-07:00")."""
    text = validate.text(value, "window", maximum=100)
    try:
        return timewindows.parse(text, lambda amount: validate.amount(amount, "window price"),
                                 MAX_KBPS)
    except timewindows.WindowError as error:
        raise DomainError(str(error)) from None


def format_windows(windows) -> list[str]:
    return [w.text() for w in windows]


def parse_class_price(value: str) -> tuple[str, Decimal]:
    """``"local=0"`` → ("local", Decimal("0.00"))."""
    text = validate.text(value, "class price", maximum=100)
    name, sign, amount = text.partition("=")
    if not sign:
        raise DomainError(f"class price must look like internet=1.50, not {value!r}")
    return _class_name(name.strip()), validate.amount(amount.strip(), f"price of class "
                                                      f"{name.strip()!r}")


def _class_name(name: str) -> str:
    if not _CLASS.match(name):
        raise DomainError(f"traffic class must be 1-32 letters, digits, '.', '_' or '-', "
                          f"not {name!r}")
    return name


# -- the rules of one tariff as plain values -------------------------------------

def tariff_spec(tariff: Tariff) -> dict[str, Any]:
    """Every rule of a tariff, as ``check_tariff`` returns them."""
    rules = tariff.rules or {}
    return dict(
        fee=tariff.fee, fee_period=tariff.fee_period, rate_down_kbps=tariff.rate_down_kbps,
        rate_up_kbps=tariff.rate_up_kbps, negative_rate_kbps=tariff.negative_rate_kbps,
        prepaid_mb=tariff.prepaid_mb, price_per_gb=tariff.price_per_gb,
        usage_source=tariff.usage_source, switch_min_days=tariff.switch_min_days,
        class_prices={k: validate.amount(str(v)) for k, v in
                      sorted(rules.get("class_prices", {}).items())},
        windows=timewindows.from_rules(rules),
        directions=tuple(rules.get("directions", ["in"])),
        fee_while_suspended=bool(rules.get("fee_while_suspended", False)))


def tariff_view(tariff: Tariff, subscribers: int | None = None) -> dict[str, Any]:
    """What ``tariff show`` prints: the spec with names a person reads."""
    spec = tariff_spec(tariff)
    view = dict(id=tariff.id, name=tariff.name, archived=tariff.archived, **spec)
    view["class_prices"] = {k: str(v) for k, v in spec["class_prices"].items()}
    view["directions"] = list(spec["directions"])
    view["windows"] = format_windows(spec["windows"])
    if subscribers is not None:
        view["subscribers"] = subscribers
    return view




def check_tariff(values: dict[str, Any], known_classes: Iterable[str] | None = None
                 ) -> dict[str, Any]:
    """Every field checked and normalised; a DomainError names the first bad one.

    ``known_classes``: the traffic classes the collector assigns (None:
    any well-formed name)."""
    unknown = set(values) - set(FIELDS)
    if unknown:
        raise DomainError(f"unknown tariff field {sorted(unknown)[0]!r}")
    spec = {**DEFAULTS, **values}
    for required in ("fee", "rate_down_kbps", "rate_up_kbps"):
        if spec.get(required) is None:
            raise DomainError(f"a tariff needs {required.replace('_', ' ')}")
    out: dict[str, Any] = {}
    out["fee"] = validate.amount(spec["fee"], "fee")
    out["price_per_gb"] = validate.amount(spec["price_per_gb"], "price per GB")
    if spec["fee_period"] not in FEE_PERIODS:
        raise DomainError(f"fee period must be one of {', '.join(FEE_PERIODS)}")
    out["fee_period"] = spec["fee_period"]
    out["rate_down_kbps"] = validate.whole(spec["rate_down_kbps"], "download speed (kbit/s)", 1,
                                   MAX_KBPS)
    out["rate_up_kbps"] = validate.whole(spec["rate_up_kbps"], "upload speed (kbit/s)", 1, MAX_KBPS)
    out["negative_rate_kbps"] = validate.whole(spec["negative_rate_kbps"],
                                       "negative-balance speed (kbit/s)", 0, MAX_KBPS)
    out["prepaid_mb"] = validate.whole(spec["prepaid_mb"], "prepaid traffic (MB)", 0, MAX_PREPAID_MB)
    out["switch_min_days"] = validate.whole(spec["switch_min_days"], "switch interval (days)", 0,
                                    MAX_SWITCH_DAYS)
    if spec["usage_source"] not in USAGE_SOURCES:
        raise DomainError(f"usage source must be one of {', '.join(USAGE_SOURCES)}, "
                          f"not {spec['usage_source']!r}")
    out["usage_source"] = spec["usage_source"]
    known = set(known_classes) if known_classes is not None else None
    prices = {}
    for name, price in dict(spec["class_prices"]).items():
        name = _class_name(name)
        if known is not None and name not in known:
            raise DomainError(f"traffic class {name!r} is unknown; the collector knows "
                              f"{', '.join(sorted(known))}")
        prices[name] = validate.amount(price if isinstance(price, (str, Decimal))
                                       else str(price), f"price of class {name!r}")
    out["class_prices"] = dict(sorted(prices.items()))
    try:
        out["windows"] = timewindows.check_all(spec["windows"] or (), MAX_KBPS)
    except timewindows.WindowError as error:
        raise DomainError(str(error)) from None
    priced = out["price_per_gb"] > 0 or any(p > 0 for p in prices.values())
    for window in out["windows"]:
        if window.price and not priced:
            raise DomainError(f"window {window.text()} prices traffic, but the tariff bills "
                              f"none: give --price-per-gb or a --class-price above 0")
    directions = tuple(dict.fromkeys(spec["directions"]))
    if not directions or any(d not in TRAFFIC_DIRECTIONS for d in directions):
        raise DomainError(f"billed directions must be some of {', '.join(TRAFFIC_DIRECTIONS)}")
    out["directions"] = tuple(d for d in TRAFFIC_DIRECTIONS if d in directions)
    out["fee_while_suspended"] = bool(spec["fee_while_suspended"])
    return out


def _apply(tariff: Tariff, spec: dict[str, Any]) -> None:
    for column in COLUMNS:
        setattr(tariff, column, spec[column])
    rules = dict(tariff.rules or {})
    rules["class_prices"] = {k: str(v) for k, v in spec["class_prices"].items()}
    rules.pop("free_hours", None)  # an older tariff's free window, now in "windows"
    if spec["windows"]:
        rules["windows"] = [w.to_rule() for w in spec["windows"]]
    else:
        rules.pop("windows", None)
    rules["directions"] = list(spec["directions"])
    rules["fee_while_suspended"] = spec["fee_while_suspended"]
    tariff.rules = rules  # a new object: the JSON column sees the change


def _display(field: str, value) -> str:
    if field == "windows":
        return ", ".join(format_windows(value)) or "none"
    if field == "class_prices":
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "none"
    if field == "directions":
        return "+".join(value)
    return str(value)


# -- use cases -----------------------------------------------------------------

def add_tariff(session: Session, *, name: str, actor: str,
               known_classes: Iterable[str] | None = None, **values) -> Tariff:
    name = validate.name(name, "tariff name", 100)
    spec = check_tariff(values, known_classes)
    if session.scalar(select(Tariff.id).where(Tariff.name == name)) is not None:
        raise DomainError(f"tariff {name!r} already exists")
    tariff = Tariff(name=name, rules={})
    _apply(tariff, spec)
    session.add(tariff)
    session.flush()
    oplog.record(session, account_id=None, actor=actor, action="tariff.add", name=name,
                 **{f: _display(f, spec[f]) for f in FIELDS})
    return tariff


def edit_tariff(session: Session, name: str, *, actor: str, rename: str | None = None,
                known_classes: Iterable[str] | None = None,
                drop_classes: Iterable[str] = (), **changes) -> dict[str, tuple[str, str]]:
    """Change only the fields given; returns {field: (old, new)} of what
    changed, also written to the audit log. Class prices are merged:
    ``class_prices`` sets the classes given, ``drop_classes`` removes some."""
    tariff = find_tariff(session, validate.name(name, "tariff name", 100))
    old = tariff_spec(tariff)
    merged = {**old, **{k: v for k, v in changes.items() if k != "class_prices"}}
    prices = dict(old["class_prices"])
    for dropped in drop_classes:
        if dropped not in prices:
            raise DomainError(f"tariff {tariff.name!r} has no price for class {dropped!r}")
        del prices[dropped]
    prices.update(changes.get("class_prices") or {})
    merged["class_prices"] = prices
    # Classes already priced stay acceptable even if the collector's list
    # changed since; new ones must be known.
    known = None if known_classes is None else set(known_classes) | set(old["class_prices"])
    new = check_tariff(merged, known)
    diff = {f: (_display(f, old[f]), _display(f, new[f])) for f in FIELDS if old[f] != new[f]}
    if rename is not None:
        rename = validate.name(rename, "tariff name", 100)
        if rename != tariff.name:
            if session.scalar(select(Tariff.id).where(Tariff.name == rename)) is not None:
                raise DomainError(f"tariff {rename!r} already exists")
            diff["name"] = (tariff.name, rename)
            tariff.name = rename
    if not diff:
        raise DomainError("nothing to change: give at least one new value")
    _apply(tariff, new)
    session.flush()
    oplog.record(session, account_id=None, actor=actor, action="tariff.edit", name=tariff.name,
                 **{f: f"{a} -> {b}" for f, (a, b) in diff.items()})
    return diff


def archive_tariff(session: Session, name: str, *, actor: str, archived: bool = True) -> bool:
    """Archive (or bring back) a tariff: an archived one cannot be chosen by
    a new account or switched to; subscribers on it keep it. Returns
    whether anything changed (archiving twice is not an error)."""
    tariff = find_tariff(session, validate.name(name, "tariff name", 100))
    if tariff.archived == archived:
        return False
    tariff.archived = archived
    session.flush()
    oplog.record(session, account_id=None, actor=actor,
                 action="tariff.archive" if archived else "tariff.restore", name=tariff.name)
    return True


def subscribers(session: Session, tariff: Tariff) -> int:
    """Accounts on this tariff that are not closed."""
    return session.scalar(select(func.count()).select_from(Account).where(
        Account.tariff_id == tariff.id, Account.state != "closed")) or 0


def speed_windows(session: Session) -> dict[int, tuple[timewindows.TimeWindow, ...]]:
    """{tariff id: its windows with their own speed} for the tariffs that
    have any: what RADIUS answers, the enforcer and the cabinet give a
    session at each hour (rating.profile.TariffSpeeds)."""
    found = {}
    for tariff_id, rules in session.execute(select(Tariff.id, Tariff.rules)):
        windows = tuple(w for w in timewindows.from_rules(rules) if w.has_speed)
        if windows:
            found[tariff_id] = windows
    return found
