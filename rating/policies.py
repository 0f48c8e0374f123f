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


@dataclass(frozen=True)
class Rung:
    profile: str
    # The rung applies when balance < offset, or, with ``past_credit``,
    # when balance < offset - the account's credit limit.
    offset: Decimal
    past_credit: bool = False
    description: str = ""

    def threshold(self, credit_limit: Decimal) -> Decimal:
        return self.offset - credit_limit if self.past_credit else self.offset


# From the worst state to the best; the first that holds wins.
DEFAULT_LADDER: tuple[Rung, ...] = (
    Rung("suspended", Decimal("0"), past_credit=True,
         description="balance below minus the credit limit: suspended with redirect"),
    Rung("throttled", Decimal("0"),
         description="balance below zero: the tariff's negative-balance speed"),
)


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
