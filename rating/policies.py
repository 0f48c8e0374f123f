"""Balance policy as data: a ladder of states, each with its condition.

As in Kill Bill's overdue configuration, the policy is a table, not an
``if`` chain: the first rung whose condition holds decides the profile.
The same ladder is evaluated in Python (``decide``) for one account and
rendered to a SQL ``CASE`` (``profile_case``) for the set-based job, so
both paths agree by construction.
"""

from __future__ import annotations

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
