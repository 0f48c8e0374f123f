"""Customers with many accounts: the tree of units and rights on a branch.

A customer (a company or a family) holds accounts; a company arranges them
in a tree of units (departments, employees) it edits itself. A cabinet login
is given rights on a branch (``OrgGrant``): on every account attached to the
unit or to any unit below it, or (no unit) on every account of the customer.

Rules:
- a unit's parent, an account's unit and a grant's unit belong to the same
  customer; a unit never moves below itself (no cycles);
- deleting a unit moves what it held one level up: its child units and its
  accounts go to its parent (to the customer's root for a root unit), so no
  account is lost from the customer; grants on the unit itself are removed
  (widening them to the parent would give rights no one gave);
- a login with no grants at all keeps the behaviour from before issue 21: its
  own account and the accounts linked to it (``CabinetUserAccount``), with
  the rights of its role (rating.roles); a family link made by an accepted
  invitation carries its own rights ("view,pay");
- the tree is read with one recursive query per question, never a query per
  unit, so a customer of 10,000 accounts costs the same few statements;
- every change goes to the operation log with the actor; each function
  works in the caller's transaction and raises ``DomainError`` with a
  sentence for the user.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Iterable

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from rating import oplog, roles
from rating.choices import CUSTOMER_DOCUMENTS, CUSTOMER_KINDS, ORG_RIGHTS
from rating.models import (Account, CabinetUser, CabinetUserAccount, Customer, LedgerEntry,
                           OrgGrant, OrgUnit)
from rating.validate import DomainError, NotFound

RIGHTS = ORG_RIGHTS
# Which right a change group of rating.roles needs. "contacts" is never given
# by itself: it comes with a role that may change contacts (owner,
# accountant) and with a grant of "service" or "users" (who runs the
# account); a family link's "view,pay" tops up a relative's account but
# does not change where its notices go.
CHANGE_RIGHT = {"money": "pay", "contacts": "contacts", "service": "service", "users": "users"}
CONTACTS_WITH = frozenset({"service", "users"})
assert set(CHANGE_RIGHT) == set(roles.CHANGES)
MAX_NAME = 200


class Forbidden(DomainError):
    """The acting login has no right for this change."""


# -- rights as values -----------------------------------------------------------

def parse_rights(value: str | Iterable[str] | None) -> frozenset[str]:
    """"view,pay" or ["view", "pay"] → a set; an unknown right is refused.
    "view" is implied by every other right (paying for what one cannot see
    makes no sense)."""
    if value is None:
        return frozenset()
    items = value.split(",") if isinstance(value, str) else list(value)
    found = {item.strip() for item in items if item and item.strip()}
    unknown = found - set(RIGHTS)
    if unknown:
        raise DomainError(f"unknown right {sorted(unknown)[0]!r}: choose from "
                          + ", ".join(RIGHTS))
    if found:
        found.add("view")
    if found & CONTACTS_WITH:
        found.add("contacts")
    return frozenset(found)


def format_rights(rights: Iterable[str]) -> str:
    """The stored form, in RIGHTS order (a derived "contacts" is not stored)."""
    have = set(rights)
    return ",".join(right for right in RIGHTS if right in have)


def role_rights(role: str | None) -> frozenset[str]:
    """A role's rights on its own account: view always, the rest as rating.roles
    says (money → pay, service → service, users → users)."""
    found = {"view"}
    for change, right in (("money", "pay"), ("contacts", "contacts"), ("service", "service"),
                          ("users", "users")):
        if roles.may(role, change):
            found.add(right)
    return frozenset(found)


def may(rights: Iterable[str], change: str) -> bool:
    """Whether these rights allow a change of rating.roles' group ``change``."""
    if change not in CHANGE_RIGHT:
        raise ValueError(f"unknown change group {change!r}")
    return CHANGE_RIGHT[change] in rights


# -- reading the tree -----------------------------------------------------------

def _subtree_cte(unit_ids):
    """The units given and every unit below them: one recursive CTE."""
    base = select(OrgUnit.id.label("id")).where(OrgUnit.id.in_(list(unit_ids)))
    tree = base.cte("subtree", recursive=True)
    child = select(OrgUnit.id).join(tree, OrgUnit.parent_id == tree.c.id)
    return tree.union(child)


def _ancestors_cte(unit_id: int):
    """The unit and every unit above it."""
    base = select(OrgUnit.id.label("id"), OrgUnit.parent_id.label("parent_id")) \
        .where(OrgUnit.id == unit_id)
    chain = base.cte("ancestors", recursive=True)
    parent = select(OrgUnit.id, OrgUnit.parent_id).join(chain, OrgUnit.id == chain.c.parent_id)
    return chain.union(parent)


def subtree_unit_ids(session: Session, unit_id: int) -> list[int]:
    """The unit and every unit below it (empty when there is no such unit)."""
    tree = _subtree_cte([unit_id])
    return sorted(session.scalars(select(tree.c.id)))


def ancestor_unit_ids(session: Session, unit_id: int) -> list[int]:
    chain = _ancestors_cte(unit_id)
    return list(session.scalars(select(chain.c.id)))


def branch_accounts(session: Session, customer_id: int, unit_id: int | None = None) -> list[int]:
    """Ids of the accounts of the unit's subtree (None: every account of the
    customer), in id order."""
    query = select(Account.id).where(Account.customer_id == customer_id)
    if unit_id is not None:
        tree = _subtree_cte([unit_id])
        query = query.where(Account.org_unit_id.in_(select(tree.c.id)))
    return list(session.scalars(query.order_by(Account.id)))


def branch_query(customer_id: int, roots: Iterable[int] | None = None):
    """A SELECT of the ids of the customer's accounts in the subtrees of
    ``roots`` (None: all of them), for ``IN (...)`` in SQL: a page about
    10,000 accounts sends no 10,000 bound parameters."""
    query = select(Account.id).where(Account.customer_id == customer_id)
    if roots is not None:
        tree = _subtree_cte(list(roots))
        query = query.where(Account.org_unit_id.in_(select(tree.c.id)))
    return query


def units(session: Session, customer_id: int) -> list[OrgUnit]:
    """Every unit of the customer, parents before children, siblings by
    position then name (the order a tree is drawn in)."""
    rows = list(session.scalars(select(OrgUnit).where(OrgUnit.customer_id == customer_id)
                                .order_by(OrgUnit.position, OrgUnit.name, OrgUnit.id)))
    children: dict[int | None, list[OrgUnit]] = {}
    for row in rows:
        children.setdefault(row.parent_id, []).append(row)
    ordered: list[OrgUnit] = []
    stack = list(reversed(children.get(None, [])))
    while stack:
        unit = stack.pop()
        ordered.append(unit)
        stack.extend(reversed(children.get(unit.id, [])))
    return ordered


def depths(unit_rows: list[OrgUnit]) -> dict[int, int]:
    """Each unit's depth (roots 0), from a ``units()`` list."""
    depth: dict[int, int] = {}
    for unit in unit_rows:
        depth[unit.id] = 0 if unit.parent_id is None else depth.get(unit.parent_id, -1) + 1
    return depth


# -- rights of a login ----------------------------------------------------------

# The readers below take a Session or a Connection (the cabinet reads the
# rights of every request over a plain connection), so they select columns,
# never ORM objects.

def _grants(session, cabinet_user_id: int) -> list:
    """(id, customer_id, org_unit_id, rights) of the login's grants."""
    return list(session.execute(
        select(OrgGrant.id, OrgGrant.customer_id, OrgGrant.org_unit_id, OrgGrant.rights)
        .where(OrgGrant.cabinet_user_id == cabinet_user_id)))


def _user(session, cabinet_user_id: int):
    return session.execute(select(CabinetUser.id, CabinetUser.account_id, CabinetUser.role)
                           .where(CabinetUser.id == cabinet_user_id)).first()


def has_grants(session: Session, cabinet_user_id: int) -> bool:
    return session.scalar(select(OrgGrant.id).where(
        OrgGrant.cabinet_user_id == cabinet_user_id).limit(1)) is not None


def _link_rights(session, user, account_id: int) -> frozenset[str]:
    link = session.execute(select(CabinetUserAccount.rights).where(
        CabinetUserAccount.cabinet_user_id == user.id,
        CabinetUserAccount.account_id == account_id)).first()
    if link is None:
        return frozenset()
    return parse_rights(link.rights) if link.rights else role_rights(user.role)


def rights_on(session: Session, cabinet_user_id: int, account_id: int) -> frozenset[str]:
    """What the login may do on the account: the union of its grants that
    cover it and of a family link to it; with no grants at all, also its own
    account with its role's rights. Empty: the account is not the login's
    to see."""
    user = _user(session, cabinet_user_id)
    account = session.execute(select(Account.customer_id, Account.org_unit_id)
                              .where(Account.id == account_id)).first()
    if user is None or account is None:
        return frozenset()
    found = set(_link_rights(session, user, account_id))
    grants = _grants(session, cabinet_user_id)
    if not grants:
        if user.account_id == account_id:
            found |= role_rights(user.role)
        return frozenset(found)
    covering = [grant for grant in grants if grant.customer_id == account.customer_id]
    if covering:
        above = set(ancestor_unit_ids(session, account.org_unit_id)) \
            if account.org_unit_id is not None else set()
        for grant in covering:
            if grant.org_unit_id is None or grant.org_unit_id in above:
                found |= parse_rights(grant.rights)
    return frozenset(found)


def accounts_with_right(session: Session, cabinet_user_id: int, right: str) -> list[int]:
    """Ids of every account on which the login has ``right``, in id order."""
    if right not in RIGHTS:
        raise DomainError(f"unknown right {right!r}")
    user = _user(session, cabinet_user_id)
    if user is None:
        return []
    found: set[int] = set()
    every_grant = _grants(session, cabinet_user_id)
    grants = [grant for grant in every_grant if right in parse_rights(grant.rights)]
    whole = [grant.customer_id for grant in grants if grant.org_unit_id is None]
    if whole:
        found.update(session.scalars(select(Account.id).where(Account.customer_id.in_(whole))))
    branches = [grant.org_unit_id for grant in grants if grant.org_unit_id is not None]
    if branches:
        tree = _subtree_cte(branches)
        found.update(session.scalars(select(Account.id).where(
            Account.org_unit_id.in_(select(tree.c.id)))))
    for link in session.execute(select(CabinetUserAccount.account_id, CabinetUserAccount.rights)
                                .where(CabinetUserAccount.cabinet_user_id == user.id)):
        rights = parse_rights(link.rights) if link.rights else role_rights(user.role)
        if right in rights:
            found.add(link.account_id)
    if not every_grant and right in role_rights(user.role):
        found.add(user.account_id)
    return sorted(found)


def grants_of(session: Session, cabinet_user_id: int) -> list[OrgGrant]:
    return list(session.scalars(select(OrgGrant).where(
        OrgGrant.cabinet_user_id == cabinet_user_id).order_by(OrgGrant.id)))


# -- what a login reaches inside one customer -----------------------------------

@dataclass(frozen=True)
class Scope:
    """The part of a customer where a login holds a right: the whole of it,
    or the subtrees of its granted branches (``roots`` and every unit below)."""

    customer_id: int
    whole: bool
    roots: frozenset[int]
    units: frozenset[int]

    def covers(self, unit_id: int | None) -> bool:
        return self.whole or (unit_id is not None and unit_id in self.units)

    def editable(self, unit_id: int) -> bool:
        """A unit the login may rename, move or delete: inside its reach and
        not the root of a branch it was given (that would leave its reach)."""
        return self.whole or (unit_id in self.units and unit_id not in self.roots)


def scope(session, cabinet_user_id: int, customer_id: int, right: str) -> Scope | None:
    """The login's reach in the customer for ``right``; None: none at all."""
    grants = [grant for grant in _grants(session, cabinet_user_id)
              if grant.customer_id == customer_id and right in parse_rights(grant.rights)]
    if not grants:
        return None
    if any(grant.org_unit_id is None for grant in grants):
        return Scope(customer_id, True, frozenset(), frozenset())
    roots = frozenset(grant.org_unit_id for grant in grants)
    tree = _subtree_cte(roots)
    return Scope(customer_id, False, roots, frozenset(session.scalars(select(tree.c.id))))


def customers_of(session: Session, cabinet_user_id: int) -> list[Customer]:
    """The customers on which the login holds any grant, by name."""
    return list(session.scalars(
        select(Customer).where(Customer.id.in_(
            select(OrgGrant.customer_id).where(OrgGrant.cabinet_user_id == cabinet_user_id)))
        .order_by(Customer.name, Customer.id)))


def check_editable(reach: Scope, unit_id: int | None, *, parent: bool = False) -> None:
    """Refuse a change outside the login's reach: a unit it may not edit, or
    a new parent (None: the customer's root) it does not cover. A unit out of
    reach is "not found", as if it did not exist."""
    if parent:
        if unit_id is not None and not reach.covers(unit_id):
            raise NotFound("the unit does not exist")
        allowed = reach.whole if unit_id is None else True
    else:
        allowed = unit_id is not None and reach.editable(unit_id)
    if not allowed:
        raise Forbidden("this part of the company is not yours to change")


# -- the consolidated view ------------------------------------------------------

SERVICE_KINDS = ("fee", "traffic", "option")


@dataclass(frozen=True)
class AccountLine:
    account_id: int
    number: str
    name: str
    unit_id: int | None
    balance: Decimal
    fees: Decimal   # the services charged in the period (a positive amount)
    debt: Decimal   # what the account owes: the negative balance, as a positive amount


def account_lines(session, account_ids, start: dt.datetime,
                  end: dt.datetime) -> list[AccountLine]:
    """Balance, the period's charges and debt of each account, in number
    order: one statement whatever the number of accounts. ``account_ids``:
    a list, or a SELECT of ids (``branch_query``)."""
    if isinstance(account_ids, (list, tuple, set)) and not account_ids:
        return []
    charged = (select(LedgerEntry.account_id, func.sum(LedgerEntry.amount).label("total"))
               .where(LedgerEntry.account_id.in_(account_ids),
                      LedgerEntry.created_at >= start, LedgerEntry.created_at < end,
                      LedgerEntry.kind.in_(SERVICE_KINDS))
               .group_by(LedgerEntry.account_id).subquery())
    rows = session.execute(
        select(Account.id, Account.number, Account.name, Account.org_unit_id, Account.balance,
               charged.c.total)
        .outerjoin(charged, charged.c.account_id == Account.id)
        .where(Account.id.in_(account_ids)).order_by(Account.number))
    zero = Decimal("0.00")
    return [AccountLine(row.id, row.number, row.name, row.org_unit_id, row.balance,
                        -Decimal(row.total or 0) + zero, max(zero, -row.balance))
            for row in rows]


@dataclass(frozen=True)
class Totals:
    accounts: int
    balance: Decimal
    fees: Decimal
    debt: Decimal


def totals(lines: Iterable[AccountLine]) -> Totals:
    lines = list(lines)
    zero = Decimal("0.00")
    return Totals(len(lines), sum((line.balance for line in lines), zero),
                  sum((line.fees for line in lines), zero),
                  sum((line.debt for line in lines), zero))


def top_branch(unit_rows: list[OrgUnit], tops: Iterable[int]):
    """A function: unit id → the unit among ``tops`` it lies under (itself
    included), or None. From one ``units()`` list, no query per unit."""
    parent = {unit.id: unit.parent_id for unit in unit_rows}
    wanted = set(tops)
    cache: dict[int | None, int | None] = {None: None}

    def find(unit_id):
        if unit_id in cache:
            return cache[unit_id]
        seen, current = [], unit_id
        while current is not None and current not in wanted and current not in cache:
            seen.append(current)
            current = parent.get(current)
        found = current if current in wanted else cache.get(current)
        for item in seen + [unit_id]:
            cache[item] = found
        return found
    return find


# -- changes --------------------------------------------------------------------

def _name(value) -> str:
    value = " ".join(value.split()) if isinstance(value, str) else ""
    if not value:
        raise DomainError("the name is empty")
    if len(value) > MAX_NAME:
        raise DomainError(f"the name is longer than {MAX_NAME} characters")
    return value


def customer(session: Session, customer_id: int) -> Customer:
    found = session.get(Customer, customer_id) if isinstance(customer_id, int) else None
    if found is None:
        raise NotFound("the customer does not exist")
    return found


def unit(session: Session, unit_id: int, customer_id: int | None = None) -> OrgUnit:
    """The unit; with ``customer_id``, only if it is that customer's (the same
    answer for a foreign unit as for a missing one)."""
    found = session.get(OrgUnit, unit_id) if isinstance(unit_id, int) else None
    if found is None or (customer_id is not None and found.customer_id != customer_id):
        raise NotFound("the unit does not exist")
    return found


def create_customer(session: Session, *, kind: str, name: str, actor: str,
                    documents: str = "per_account") -> Customer:
    if kind not in CUSTOMER_KINDS:
        raise DomainError("a customer is a company or a family")
    if documents not in CUSTOMER_DOCUMENTS:
        raise DomainError("documents are per account or consolidated")
    row = Customer(kind=kind, name=_name(name), documents=documents)
    session.add(row)
    session.flush()
    oplog.record(session, account_id=None, actor=actor, action="customer.add",
                 customer=row.id, kind=kind, name=row.name)
    return row


def set_documents(session: Session, customer_id: int, documents: str, *, actor: str) -> None:
    """Consolidated month documents for the whole customer, or one per account."""
    row = customer(session, customer_id)
    if documents not in CUSTOMER_DOCUMENTS:
        raise DomainError("documents are per account or consolidated")
    if row.documents != documents:
        oplog.record(session, account_id=None, actor=actor, action="customer.documents",
                     customer=row.id, old=row.documents, new=documents)
        row.documents = documents


def create_unit(session: Session, customer_id: int, name: str, *, actor: str,
                parent_id: int | None = None, position: int | None = None) -> OrgUnit:
    owner = customer(session, customer_id)
    if parent_id is not None:
        unit(session, parent_id, owner.id)
    if position is None:
        position = (session.scalar(select(func.max(OrgUnit.position)).where(
            OrgUnit.customer_id == owner.id,
            OrgUnit.parent_id.is_(None) if parent_id is None
            else OrgUnit.parent_id == parent_id)) or 0) + 1
    row = OrgUnit(customer_id=owner.id, parent_id=parent_id, name=_name(name), position=position)
    session.add(row)
    session.flush()
    oplog.record(session, account_id=None, actor=actor, action="org.unit_add",
                 customer=owner.id, unit=row.id, parent=parent_id, name=row.name)
    return row


def rename_unit(session: Session, unit_id: int, name: str, *, actor: str,
                customer_id: int | None = None) -> OrgUnit:
    row = unit(session, unit_id, customer_id)
    new = _name(name)
    if new != row.name:
        oplog.record(session, account_id=None, actor=actor, action="org.unit_rename",
                     customer=row.customer_id, unit=row.id, old=row.name, new=new)
        row.name = new
    return row


def move_unit(session: Session, unit_id: int, parent_id: int | None, *, actor: str,
              customer_id: int | None = None) -> OrgUnit:
    """Put the unit (with everything below it) under ``parent_id`` (None: make
    it a root). Refused below itself or under another customer's unit."""
    row = unit(session, unit_id, customer_id)
    if parent_id is not None:
        unit(session, parent_id, row.customer_id)
        if parent_id in subtree_unit_ids(session, row.id):
            raise DomainError("a unit cannot move below itself")
    if row.parent_id != parent_id:
        oplog.record(session, account_id=None, actor=actor, action="org.unit_move",
                     customer=row.customer_id, unit=row.id, old=row.parent_id, new=parent_id)
        row.parent_id = parent_id
        session.flush()
    return row


def delete_unit(session: Session, unit_id: int, *, actor: str,
                customer_id: int | None = None) -> int:
    """Remove the unit; its child units and accounts move up to its parent.
    Returns how many accounts moved."""
    row = unit(session, unit_id, customer_id)
    moved = session.execute(update(Account).where(Account.org_unit_id == row.id)
                            .values(org_unit_id=row.parent_id)).rowcount
    session.execute(update(OrgUnit).where(OrgUnit.parent_id == row.id)
                    .values(parent_id=row.parent_id))
    revoked = session.execute(delete(OrgGrant).where(OrgGrant.org_unit_id == row.id)).rowcount
    oplog.record(session, account_id=None, actor=actor, action="org.unit_remove",
                 customer=row.customer_id, unit=row.id, name=row.name, parent=row.parent_id,
                 accounts_moved=moved, grants_removed=revoked)
    session.delete(row)
    session.flush()
    return moved


def attach_account(session: Session, account_id: int, customer_id: int | None, *,
                   actor: str, unit_id: int | None = None) -> Account:
    """Make the account one of the customer's, at ``unit_id`` (None: at the
    customer's root); ``customer_id`` None takes it out of its customer."""
    account = session.get(Account, account_id) if isinstance(account_id, int) else None
    if account is None:
        raise NotFound("the account does not exist")
    if customer_id is None:
        if unit_id is not None:
            raise DomainError("a unit needs a customer")
    else:
        customer(session, customer_id)
        if unit_id is not None:
            unit(session, unit_id, customer_id)
    if (account.customer_id, account.org_unit_id) != (customer_id, unit_id):
        oplog.record(session, account_id=account.id, actor=actor, action="org.attach",
                     old_customer=account.customer_id, old_unit=account.org_unit_id,
                     customer=customer_id, unit=unit_id)
        account.customer_id, account.org_unit_id = customer_id, unit_id
        account.version = (account.version or 0) + 1
        session.flush()
    return account


def attach_accounts(session: Session, account_ids: Iterable[int], customer_id: int, *,
                    actor: str, unit_id: int | None = None) -> int:
    """Attach many accounts in one statement (an import of a company's 500
    lines); one log line per account. Returns how many changed."""
    customer(session, customer_id)
    if unit_id is not None:
        unit(session, unit_id, customer_id)
    ids = sorted(set(account_ids))
    if not ids:
        return 0
    found = list(session.execute(select(Account.id, Account.customer_id, Account.org_unit_id)
                                 .where(Account.id.in_(ids))))
    if len(found) != len(ids):
        raise NotFound("an account does not exist")
    changed = [row for row in found if (row.customer_id, row.org_unit_id) != (customer_id, unit_id)]
    if changed:
        session.execute(update(Account).where(Account.id.in_([row.id for row in changed]))
                        .values(customer_id=customer_id, org_unit_id=unit_id,
                                version=Account.version + 1))
        for row in changed:
            oplog.record(session, account_id=row.id, actor=actor, action="org.attach",
                         old_customer=row.customer_id, old_unit=row.org_unit_id,
                         customer=customer_id, unit=unit_id)
        session.flush()
    return len(changed)


def grant(session: Session, cabinet_user_id: int, customer_id: int, rights, *,
          actor: str, unit_id: int | None = None) -> OrgGrant:
    """Give the login these rights on the branch (None: the whole customer);
    a grant on the same branch is replaced."""
    wanted = parse_rights(rights)
    if not wanted:
        raise DomainError("choose at least one right")
    if session.get(CabinetUser, cabinet_user_id) is None:
        raise NotFound("the cabinet user does not exist")
    customer(session, customer_id)
    if unit_id is not None:
        unit(session, unit_id, customer_id)
    row = session.scalar(select(OrgGrant).where(
        OrgGrant.cabinet_user_id == cabinet_user_id, OrgGrant.customer_id == customer_id,
        OrgGrant.org_unit_id.is_(None) if unit_id is None else OrgGrant.org_unit_id == unit_id))
    text = format_rights(wanted)
    if row is None:
        row = OrgGrant(cabinet_user_id=cabinet_user_id, customer_id=customer_id,
                       org_unit_id=unit_id, rights=text)
        session.add(row)
        session.flush()
    elif row.rights == text:
        return row
    else:
        row.rights = text
    oplog.record(session, account_id=None, actor=actor, action="org.grant",
                 customer=customer_id, unit=unit_id, user=cabinet_user_id, rights=text)
    return row


def revoke(session: Session, grant_id: int, *, actor: str,
           customer_id: int | None = None) -> None:
    row = session.get(OrgGrant, grant_id) if isinstance(grant_id, int) else None
    if row is None or (customer_id is not None and row.customer_id != customer_id):
        raise NotFound("the grant does not exist")
    oplog.record(session, account_id=None, actor=actor, action="org.revoke",
                 customer=row.customer_id, unit=row.org_unit_id, user=row.cabinet_user_id,
                 rights=row.rights)
    session.delete(row)
    session.flush()


def customer_grants(session: Session, customer_id: int) -> list[OrgGrant]:
    return list(session.scalars(select(OrgGrant).where(OrgGrant.customer_id == customer_id)
                                .order_by(OrgGrant.cabinet_user_id, OrgGrant.id)))


__all__ = ["RIGHTS", "CHANGE_RIGHT", "Forbidden", "parse_rights", "format_rights",
           "role_rights", "may", "subtree_unit_ids", "ancestor_unit_ids", "branch_accounts",
           "units", "depths", "rights_on", "accounts_with_right", "grants_of", "has_grants",
           "customer", "unit", "create_customer", "set_documents", "create_unit",
           "rename_unit", "move_unit", "delete_unit", "attach_account", "attach_accounts",
           "grant", "revoke", "customer_grants"]
