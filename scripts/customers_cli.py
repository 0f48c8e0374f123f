"""Customers with many accounts from the console (issue 21): ``abonent
customer`` (add, list, show, attach), ``abonent org`` (the tree of units:
tree, add, rename, move, remove) and ``abonent grant`` (a login's rights on a
branch: add, list, remove). The rules are rating.org's; a refusal is one
sentence and exit 2, and changes nothing."""

from __future__ import annotations

import click
from sqlalchemy import func, select

from rating import accounts as acc
from rating import org
from rating.choices import CUSTOMER_DOCUMENTS, CUSTOMER_KINDS
from rating.models import Account, CabinetUser, Customer, OrgGrant
from scripts.common import (CliError, actor, emit_json, emit_rows, fetch_page, json_option,
                            page_options, transaction)


def _customer_view(session, customer: Customer) -> dict:
    count = session.scalar(select(func.count(Account.id)).where(
        Account.customer_id == customer.id))
    return dict(id=customer.id, kind=customer.kind, name=customer.name,
                documents=customer.documents, accounts=count, created_at=customer.created_at)


def _unit_option(value: int | None) -> int | None:
    return value if value is None or value > 0 else None


def _login(session, login: str) -> CabinetUser:
    user = session.scalar(select(CabinetUser).where(CabinetUser.login == login))
    if user is None:
        raise CliError(f"no cabinet login {login!r}")
    return user


# -- customer ---------------------------------------------------------------------

@click.group("customer")
def customer():
    """Customers (a company or a family) holding many accounts."""


@customer.command("add")
@click.argument("name")
@click.option("--kind", type=click.Choice(CUSTOMER_KINDS), default="company", show_default=True)
@click.option("--documents", type=click.Choice(CUSTOMER_DOCUMENTS), default="per_account",
              show_default=True, help="The monthly invoice and act: one per account, or "
                                      "one for the customer with a line per account.")
@json_option
def customer_add(name, kind, documents, as_json):
    """Add a customer called NAME."""
    with transaction() as session:
        row = org.create_customer(session, kind=kind, name=name, actor=actor(),
                                  documents=documents)
        view = _customer_view(session, row)
    emit_json(view) if as_json else click.echo(f"customer {view['id']} added: {view['name']}")


@customer.command("list")
@page_options()
@json_option
def customer_list(limit, offset, as_json):
    """List customers with their number of accounts."""
    with transaction() as session:
        rows = [_customer_view(session, row) for row in fetch_page(
            session, select(Customer).order_by(Customer.name, Customer.id), limit, offset)]
    emit_rows(rows, as_json, ["id", "kind", "name", "documents", "accounts"])


@customer.command("show")
@click.argument("customer_id", type=int)
@json_option
def customer_show(customer_id, as_json):
    """A customer, its totals and its units."""
    with transaction() as session:
        row = org.customer(session, customer_id)
        view = _customer_view(session, row)
        ids = org.branch_accounts(session, row.id)
        balance = session.scalar(select(func.coalesce(func.sum(Account.balance), 0)).where(
            Account.customer_id == row.id))
        view.update(balance=balance, units=len(org.units(session, row.id)),
                    grants=len(org.customer_grants(session, row.id)))
        view["accounts"] = len(ids)
    if as_json:
        emit_json(view)
        return
    for key, value in view.items():
        click.echo(f"{key}: {value}")


@customer.command("attach")
@click.argument("customer_id", type=int)
@click.argument("numbers", nargs=-1, required=True)
@click.option("--unit", "unit_id", type=int, help="Place the accounts at this unit.")
@json_option
def customer_attach(customer_id, numbers, unit_id, as_json):
    """Make accounts NUMBERS the customer's (at --unit, or at its root)."""
    with transaction() as session:
        ids = [acc.find_account(session, number).id for number in numbers]
        changed = org.attach_accounts(session, ids, customer_id, actor=actor(),
                                      unit_id=unit_id)
    view = dict(customer=customer_id, unit=unit_id, accounts=len(ids), changed=changed)
    emit_json(view) if as_json else click.echo(
        f"{changed} of {len(ids)} account(s) attached to customer {customer_id}")


@customer.command("detach")
@click.argument("numbers", nargs=-1, required=True)
@json_option
def customer_detach(numbers, as_json):
    """Take accounts NUMBERS out of their customer."""
    with transaction() as session:
        for number in numbers:
            org.attach_account(session, acc.find_account(session, number).id, None,
                               actor=actor())
    emit_json(dict(detached=list(numbers))) if as_json else click.echo(
        f"{len(numbers)} account(s) detached")


# -- org: the tree of units -----------------------------------------------------------

@click.group("org")
def org_group():
    """A customer's tree of departments and employees."""


@org_group.command("tree")
@click.argument("customer_id", type=int)
@json_option
def org_tree(customer_id, as_json):
    """The customer's units as a tree, with the number of accounts at each."""
    with transaction() as session:
        org.customer(session, customer_id)
        rows = org.units(session, customer_id)
        depth = org.depths(rows)
        counts = dict(session.execute(
            select(Account.org_unit_id, func.count(Account.id))
            .where(Account.customer_id == customer_id).group_by(Account.org_unit_id)).all())
        view = [dict(id=row.id, parent=row.parent_id, name=row.name, depth=depth[row.id],
                     position=row.position, accounts=counts.get(row.id, 0)) for row in rows]
        loose = counts.get(None, 0)
    if as_json:
        emit_json(dict(customer=customer_id, units=view, accounts_without_unit=loose))
        return
    for row in view:
        click.echo(f"{'  ' * row['depth']}{row['name']} [{row['id']}] ({row['accounts']})")
    click.echo(f"accounts without a unit: {loose}")


@org_group.command("add")
@click.argument("customer_id", type=int)
@click.argument("name")
@click.option("--parent", "parent_id", type=int, help="Inside this unit (default: at the top).")
@json_option
def org_add(customer_id, name, parent_id, as_json):
    """Add a unit NAME to the customer's tree."""
    with transaction() as session:
        row = org.create_unit(session, customer_id, name, actor=actor(), parent_id=parent_id)
        view = dict(id=row.id, customer=customer_id, parent=row.parent_id, name=row.name)
    emit_json(view) if as_json else click.echo(f"unit {view['id']} added: {view['name']}")


@org_group.command("rename")
@click.argument("unit_id", type=int)
@click.argument("name")
@json_option
def org_rename(unit_id, name, as_json):
    """Rename a unit."""
    with transaction() as session:
        row = org.rename_unit(session, unit_id, name, actor=actor())
        view = dict(id=row.id, name=row.name)
    emit_json(view) if as_json else click.echo(f"unit {unit_id} renamed: {view['name']}")


@org_group.command("move")
@click.argument("unit_id", type=int)
@click.option("--parent", "parent_id", type=int, help="Under this unit; without it, to the top.")
@json_option
def org_move(unit_id, parent_id, as_json):
    """Move a unit (with everything below it) under another."""
    with transaction() as session:
        row = org.move_unit(session, unit_id, parent_id, actor=actor())
        view = dict(id=row.id, parent=row.parent_id)
    emit_json(view) if as_json else click.echo(
        f"unit {unit_id} moved under {parent_id if parent_id else 'the top'}")


@org_group.command("remove")
@click.argument("unit_id", type=int)
@json_option
def org_remove(unit_id, as_json):
    """Remove a unit; its accounts and units move one level up, grants on it go."""
    with transaction() as session:
        moved = org.delete_unit(session, unit_id, actor=actor())
    emit_json(dict(id=unit_id, removed=True, accounts_moved=moved)) if as_json else click.echo(
        f"unit {unit_id} removed; {moved} account(s) moved up")


# -- grant: rights on a branch ------------------------------------------------------

@click.group("grant")
def grant_group():
    """A cabinet login's rights on a customer's branch."""


def _grant_view(session, row: OrgGrant) -> dict:
    login = session.scalar(select(CabinetUser.login).where(CabinetUser.id == row.cabinet_user_id))
    return dict(id=row.id, login=login, customer=row.customer_id, unit=row.org_unit_id,
                rights=row.rights, created_at=row.created_at)


@grant_group.command("add")
@click.argument("login")
@click.argument("customer_id", type=int)
@click.option("--unit", "unit_id", type=int, help="On this unit's branch; without it, on the "
                                                  "whole customer.")
@click.option("--rights", default="view", show_default=True,
              help="Comma-separated: " + ", ".join(org.RIGHTS) + ".")
@json_option
def grant_add(login, customer_id, unit_id, rights, as_json):
    """Give LOGIN rights on the customer (or one branch of it); replaces a
    grant on the same branch."""
    with transaction() as session:
        user = _login(session, login)
        row = org.grant(session, user.id, customer_id, rights, actor=actor(), unit_id=unit_id)
        view = _grant_view(session, row)
    emit_json(view) if as_json else click.echo(
        f"grant {view['id']}: {login} may {view['rights']} on customer {customer_id}"
        + (f" unit {unit_id}" if unit_id else ""))


@grant_group.command("list")
@click.option("--customer", "customer_id", type=int)
@click.option("--login")
@page_options()
@json_option
def grant_list(customer_id, login, limit, offset, as_json):
    """List grants, of one customer or one login."""
    with transaction() as session:
        query = select(OrgGrant).order_by(OrgGrant.customer_id, OrgGrant.id)
        if customer_id is not None:
            query = query.where(OrgGrant.customer_id == customer_id)
        if login:
            query = query.where(OrgGrant.cabinet_user_id == _login(session, login).id)
        rows = [_grant_view(session, row) for row in fetch_page(session, query, limit, offset)]
    emit_rows(rows, as_json, ["id", "login", "customer", "unit", "rights"])


@grant_group.command("remove")
@click.argument("grant_id", type=int)
@json_option
def grant_remove(grant_id, as_json):
    """Take a grant back."""
    with transaction() as session:
        org.revoke(session, grant_id, actor=actor())
    emit_json(dict(id=grant_id, removed=True)) if as_json else click.echo(
        f"grant {grant_id} removed")
