"""What each cabinet role may do: one table the pages and the JSON API ask.

Everyone who may log in may read every page of the account. Changes are
grouped by what they touch:

- ``money``: promised payments, top-ups, vouchers, promo codes;
- ``contacts``: contacts, notification settings, service requests;
- ``service``: what the account gets and pays for every month: the tariff,
  a freeze, options (turbo, traffic packs), packages;
- ``users``: the company's cabinet logins and their roles.

An owner may do everything; an accountant handles money and contacts but
does not change the service (the classic split: the bookkeeper pays, the
director decides what is bought); a viewer only reads.
"""

from __future__ import annotations

from rating.choices import USER_ROLES

CHANGES = ("money", "contacts", "service", "users")

ALLOWED: dict[str, frozenset[str]] = {
    "owner": frozenset(CHANGES),
    "accountant": frozenset({"money", "contacts"}),
    "viewer": frozenset(),
}
assert set(ALLOWED) == set(USER_ROLES)


def may(role: str | None, change: str) -> bool:
    """Whether ``role`` may make a change of this group (an unknown role or
    group: no)."""
    if change not in CHANGES:
        raise ValueError(f"unknown change group {change!r}")
    return change in ALLOWED.get(role or "", frozenset())


def roles_that_may(change: str) -> tuple[str, ...]:
    return tuple(role for role in USER_ROLES if may(role, change))
