"""Balance policy as data: a ladder of states, each with its condition.

As in Kill Bill's overdue configuration, the policy is a table, not an
``if`` chain: the first rung whose condition holds decides the profile.
The same ladder is evaluated in Python (``decide``) for one account and
rendered to a SQL ``CASE`` (``profile_case``) for the set-based job, so
both paths agree by construction.
"""

from __future__ import annotations

import re
import time
import weakref
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import case, literal

from config.db import Money

# What a rung does to the network (rating.profile.desired_profile):
# the tariff's negative-balance speed, the captive portal, or no session.
THROTTLE, REDIRECT, BLOCK = "throttle", "redirect", "block"
MODES = (THROTTLE, REDIRECT, BLOCK)


@dataclass(frozen=True)
class Rung:
    profile: str
    # The rung applies when balance < offset, or, with ``past_credit``,
    # when balance < offset - the account's credit limit.
    offset: Decimal
    past_credit: bool = False
    description: str = ""
    mode: str = BLOCK
    # The speed of a throttle or redirect rung; 0: the tariff's
    # negative-balance speed.
    rate_kbps: int = 0

    def threshold(self, credit_limit: Decimal) -> Decimal:
        return self.offset - credit_limit if self.past_credit else self.offset


# From the worst state to the best; the first that holds wins.
DEFAULT_LADDER: tuple[Rung, ...] = (
    Rung("suspended", Decimal("0"), past_credit=True,
         description="balance below minus the credit limit: suspended", mode=BLOCK),
    Rung("throttled", Decimal("0"),
         description="balance below zero: the tariff's negative-balance speed", mode=THROTTLE),
)


def rung_named(profile: str, ladder: tuple[Rung, ...] = DEFAULT_LADDER) -> Rung | None:
    """The rung whose verdict ``profile`` is; None for "normal" (or a name
    the ladder no longer has: it restricts nothing)."""
    for rung in ladder:
        if rung.profile == profile:
            return rung
    return None


def ladder_from_settings(section) -> tuple[Rung, ...]:
    """The default ladder with the operator's choices (settings ``[policy]``):
    what suspension does (block, or the captive portal) and its speed."""
    mode = section["suspend_mode"]
    if mode not in (BLOCK, REDIRECT):
        raise ValueError(f"policy.suspend_mode must be block or redirect, not {mode!r}")
    suspended, *rest = DEFAULT_LADDER
    suspended = Rung(suspended.profile, suspended.offset, suspended.past_credit,
                     "balance below minus the credit limit: "
                     + ("the captive portal" if mode == REDIRECT else "suspended"),
                     mode, section["redirect_rate_kbps"] if mode == REDIRECT else 0)
    return (suspended, *rest)


def decide(balance: Decimal, credit_limit: Decimal,
           ladder: tuple[Rung, ...] = DEFAULT_LADDER) -> str:
    for rung in ladder:
        if balance < rung.threshold(credit_limit):
            return rung.profile
    return "normal"


def profile_case(balance_column, credit_limit_column, ladder: tuple[Rung, ...] = DEFAULT_LADDER):
    """The ladder as a SQL expression over an accounts row."""
    whens = []
    for rung in ladder:
        threshold = literal(rung.offset, Money())
        if rung.past_credit:
            threshold = threshold - credit_limit_column
        whens.append((balance_column < threshold, literal(rung.profile)))
    return case(*whens, else_=literal("normal"))


# -- the ladder as data (issue 14) ----------------------------------------------
#
# ``abonent policy set`` stores a ladder in the table policy_rungs; with no
# rows, the ladder of the settings ``[policy]`` (or DEFAULT_LADDER) holds.
# Every reader (RADIUS, the enforcer, the cabinet, the fee run, a payment)
# asks ``ladder_in_force``, which reads the table at most once per
# LADDER_TTL_S per database, so a changed ladder reaches running servers
# within that time and the hot paths do not query for it.

LADDER_TTL_S = 30.0
MAX_RUNGS = 10
MAX_RATE_KBPS = 1_000_000_000
# Verdicts rating.profile gives for other reasons; a rung may not take them.
RESERVED_PROFILES = ("normal", "turbo", "frozen", "closed", "no-tariff")
_PROFILE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_cache: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _engine_of(source):
    """An Engine from an Engine, a Session or a sessionmaker."""
    if hasattr(source, "get_bind"):
        bind = source.get_bind()
        return getattr(bind, "engine", bind)  # a Connection's Engine
    if hasattr(source, "kw"):
        return source.kw["bind"]
    return source


def stored_ladder(session) -> tuple[Rung, ...] | None:
    """The ladder ``abonent policy set`` stored, worst rung first; None if none."""
    from sqlalchemy import select

    from rating.models import PolicyRung
    rows = session.scalars(select(PolicyRung).order_by(PolicyRung.position)).all()
    if not rows:
        return None
    return tuple(Rung(r.profile, r.offset, r.past_credit, r.description, r.mode, r.rate_kbps)
                 for r in rows)


def ladder_in_force(source, fallback: tuple[Rung, ...] = DEFAULT_LADDER) -> tuple[Rung, ...]:
    """The ladder that decides profiles: the stored one, else ``fallback``
    (the settings' ladder). ``source``: a Session, a sessionmaker or an
    Engine; the stored ladder is cached per database for LADDER_TTL_S."""
    engine = _engine_of(source)
    now = time.monotonic()
    cached = _cache.get(engine)
    if cached is None or now - cached[0] > LADDER_TTL_S:
        if hasattr(source, "scalars"):
            found = stored_ladder(source)
        else:
            from sqlalchemy.orm import Session
            with Session(engine) as session:
                found = stored_ladder(session)
        cached = (now, found)
        _cache[engine] = cached
    return cached[1] or fallback


def forget_cached(source) -> None:
    _cache.pop(_engine_of(source), None)


def parse_rung(value: str) -> Rung:
    """``"PROFILE below=AMOUNT [past-credit] mode=MODE [rate=KBPS]"`` → Rung."""
    from rating import validate
    text = validate.text(value, "rung", maximum=200)
    profile, *settings = text.split()
    offset, past_credit, mode, rate = None, False, None, 0
    for setting in settings:
        key, sign, item = setting.partition("=")
        if key == "past-credit" and not sign:
            past_credit = True
        elif key == "below" and sign:
            offset = validate.amount(item, f"threshold of rung {profile!r}", negative_ok=True)
        elif key == "mode" and sign:
            mode = item
        elif key == "rate" and sign:
            if not item.isdigit() or int(item) > MAX_RATE_KBPS:
                raise validate.DomainError(f"rate of rung {profile!r} must be 0 to "
                                           f"{MAX_RATE_KBPS} kbit/s, not {item!r}")
            rate = int(item)
        else:
            raise validate.DomainError(
                f"rung setting {setting!r} is unknown; a rung reads like "
                f"\"suspended below=0 past-credit mode=block\"")
    if offset is None:
        raise validate.DomainError(f"rung {profile!r} needs its threshold, e.g. below=0")
    if mode is None:
        raise validate.DomainError(f"rung {profile!r} needs its mode: "
                                   f"mode={'|'.join(MODES)}")
    return Rung(profile, offset, past_credit, "", mode, rate)


def format_rung(rung: Rung) -> str:
    return " ".join([rung.profile, f"below={rung.offset}"]
                    + (["past-credit"] if rung.past_credit else [])
                    + [f"mode={rung.mode}"] + ([f"rate={rung.rate_kbps}"] if rung.rate_kbps
                                               else []))


def describe(rung: Rung) -> str:
    where = f"balance below {rung.offset}" + (" minus the credit limit" if rung.past_credit
                                              else "")
    effect = {THROTTLE: "speed cut to " + (f"{rung.rate_kbps} kbit/s" if rung.rate_kbps
                                           else "the tariff's negative-balance speed"),
              REDIRECT: "the captive portal", BLOCK: "no session"}[rung.mode]
    return f"{where}: {effect}"


def check_ladder(rungs) -> tuple[Rung, ...]:
    """A ladder as ``decide`` needs it, or a DomainError saying why not:
    known modes, distinct names, and every rung reachable — ordered from
    the worst (lowest threshold) to the best, for any credit limit."""
    from rating import validate
    rungs = tuple(rungs)
    if not 1 <= len(rungs) <= MAX_RUNGS:
        raise validate.DomainError(f"a ladder has 1 to {MAX_RUNGS} rungs, not {len(rungs)}")
    seen = set()
    for rung in rungs:
        if not _PROFILE.match(rung.profile) or rung.profile in RESERVED_PROFILES:
            raise validate.DomainError(
                f"rung name must be 1-32 lower-case letters, digits, '_' or '-' and none of "
                f"{', '.join(RESERVED_PROFILES)}, not {rung.profile!r}")
        if rung.profile in seen:
            raise validate.DomainError(f"rung {rung.profile!r} appears twice")
        seen.add(rung.profile)
        if rung.mode not in MODES:
            raise validate.DomainError(f"mode of rung {rung.profile!r} must be one of "
                                       f"{', '.join(MODES)}, not {rung.mode!r}")
        if rung.mode == BLOCK and rung.rate_kbps:
            raise validate.DomainError(f"rung {rung.profile!r} blocks: it has no rate")
    for worse, better in zip(rungs, rungs[1:]):
        # A rung whose threshold is not above the one before it never
        # decides anything: the worse rung catches every balance first.
        if better.past_credit and not worse.past_credit:
            raise validate.DomainError(
                f"rung {better.profile!r} (past the credit limit) must come before "
                f"{worse.profile!r}: the ladder runs from the worst state to the best")
        ordered = (worse.offset <= better.offset if worse.past_credit and not better.past_credit
                   else worse.offset < better.offset)
        if not ordered:
            raise validate.DomainError(
                f"thresholds must rise from the worst rung to the best: "
                f"{worse.profile!r} below {worse.offset} comes before {better.profile!r} "
                f"below {better.offset}")
    return tuple(Rung(r.profile, r.offset, r.past_credit, r.description or describe(r),
                      r.mode, r.rate_kbps) for r in rungs)


def store_ladder(session, rungs, *, actor: str) -> tuple[Rung, ...]:
    """Replace the stored ladder (None or empty: back to the settings'),
    in the caller's transaction; old → new goes to the audit log."""
    from sqlalchemy import delete

    from rating import oplog
    from rating.models import PolicyRung
    ladder = check_ladder(rungs) if rungs else ()
    old = stored_ladder(session)
    session.execute(delete(PolicyRung))
    session.flush()
    for position, rung in enumerate(ladder, 1):
        session.add(PolicyRung(position=position, profile=rung.profile, offset=rung.offset,
                               past_credit=rung.past_credit, mode=rung.mode,
                               rate_kbps=rung.rate_kbps, description=rung.description))
    session.flush()
    oplog.record(session, account_id=None, actor=actor,
                 action="policy.set" if ladder else "policy.reset",
                 old="; ".join(map(format_rung, old)) if old else "settings",
                 new="; ".join(map(format_rung, ladder)) if ladder else "settings")
    forget_cached(session)
    return ladder
