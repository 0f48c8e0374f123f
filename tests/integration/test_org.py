"""Customers with many accounts (issue 21): the tree of units, rights on a
branch, the rules rating.org keeps (same customer, no cycles, what a
deleted unit leaves behind), the operation log. Both databases; a company of
500 accounts in a 3-level tree, read with a fixed number of statements."""

from __future__ import annotations

import pytest
from sqlalchemy import event, func, select

from rating import org
from rating.accounts import create_cabinet_user
from rating.models import Account, CabinetUserAccount, OperationLog, OrgGrant, OrgUnit
from rating.validate import DomainError, NotFound
from tests.factories import make_account, make_company

ACTOR = "admin:test"


def user(session, account, login, role="owner"):
    return create_cabinet_user(session, account, login=login, password="long-password-1",
                               role=role)


def company_tree(session, accounts_per_leaf=1, *, departments=3, teams=3, employees=2):
    return make_company(session, departments=departments, teams=teams, employees=employees,
                        lines=accounts_per_leaf, actor=ACTOR)


def test_subtree_and_branch_accounts(session):
    customer, units, accounts = company_tree(session)
    dept = units["Dept 1"]
    subtree = org.subtree_unit_ids(session, dept.id)
    # The department, its 3 teams and their 6 employees.
    assert len(subtree) == 10 and dept.id in subtree
    assert units["Team 1.2"].id in subtree and units["Team 0.0"].id not in subtree
    branch = org.branch_accounts(session, customer.id, dept.id)
    assert len(branch) == 6
    assert len(org.branch_accounts(session, customer.id)) == len(accounts) == 18
    assert org.branch_accounts(session, customer.id, units["Employee 2.1.0"].id) == \
        [accounts[2 * 6 + 1 * 2 + 0]]
    assert org.subtree_unit_ids(session, 10 ** 6) == []


def test_rights_on_a_branch(session):
    customer, units, accounts = company_tree(session)
    head = make_account(session, kind="company", name="OOO Romashka")
    manager = user(session, head, "manager", role="viewer")
    org.grant(session, manager.id, customer.id, "view,pay", actor=ACTOR,
              unit_id=units["Dept 0"].id)
    org.grant(session, manager.id, customer.id, ["service"], actor=ACTOR,
              unit_id=units["Team 0.1"].id)
    inside = org.branch_accounts(session, customer.id, units["Team 0.1"].id)[0]
    other_team = org.branch_accounts(session, customer.id, units["Team 0.0"].id)[0]
    outside = org.branch_accounts(session, customer.id, units["Dept 2"].id)[0]
    assert org.rights_on(session, manager.id, inside) == {"view", "pay", "service", "contacts"}
    assert org.rights_on(session, manager.id, other_team) == {"view", "pay"}
    assert org.rights_on(session, manager.id, outside) == frozenset()
    # With grants, the login's own account is no longer implied.
    assert org.rights_on(session, manager.id, head.id) == frozenset()
    assert org.accounts_with_right(session, manager.id, "view") == \
        org.branch_accounts(session, customer.id, units["Dept 0"].id)
    assert org.accounts_with_right(session, manager.id, "service") == \
        org.branch_accounts(session, customer.id, units["Team 0.1"].id)
    assert org.accounts_with_right(session, manager.id, "users") == []
    # A whole-customer grant covers accounts at the root too.
    loose = make_account(session, kind="company", name="Unplaced")
    org.attach_account(session, loose.id, customer.id, actor=ACTOR)
    assert org.rights_on(session, manager.id, loose.id) == frozenset()
    org.grant(session, manager.id, customer.id, "view", actor=ACTOR)
    assert org.rights_on(session, manager.id, loose.id) == {"view"}
    assert org.rights_on(session, manager.id, outside) == {"view"}


def test_no_grants_keeps_the_role_on_own_and_linked_accounts(session):
    own = make_account(session, kind="company", name="OOO Own")
    linked = make_account(session, name="Linked")
    family = make_account(session, name="Grandmother")
    stranger = make_account(session, name="Stranger")
    accountant = user(session, own, "bookkeeper", role="accountant")
    session.add(CabinetUserAccount(cabinet_user_id=accountant.id, account_id=linked.id))
    session.add(CabinetUserAccount(cabinet_user_id=accountant.id, account_id=family.id,
                                   rights="view,pay"))
    session.flush()
    assert org.rights_on(session, accountant.id, own.id) == {"view", "pay", "contacts"}
    assert org.rights_on(session, accountant.id, linked.id) == {"view", "pay", "contacts"}
    assert org.rights_on(session, accountant.id, family.id) == {"view", "pay"}
    assert org.rights_on(session, accountant.id, stranger.id) == frozenset()
    owner = user(session, own, "director")
    assert org.rights_on(session, owner.id, own.id) == set(org.RIGHTS) | {"contacts"}
    viewer = user(session, own, "watcher", role="viewer")
    assert org.rights_on(session, viewer.id, own.id) == {"view"}
    assert org.accounts_with_right(session, accountant.id, "pay") == \
        sorted([own.id, linked.id, family.id])
    assert org.accounts_with_right(session, viewer.id, "pay") == []
    # A family link pays but does not change the relative's contacts.
    assert not org.may({"view", "pay"}, "contacts") and org.may({"view", "pay"}, "money")
    assert org.parse_rights("service") == {"view", "service", "contacts"}


def test_the_tree_refuses_cycles_and_other_customers(session):
    customer, units, accounts = company_tree(session, departments=2, teams=1, employees=1)
    other = org.create_customer(session, kind="company", name="OOO Vasilek", actor=ACTOR)
    foreign = org.create_unit(session, other.id, "Their dept", actor=ACTOR)
    dept = units["Dept 0"]
    before = session.scalar(select(func.count(OperationLog.id)))
    with pytest.raises(DomainError, match="below itself"):
        org.move_unit(session, dept.id, units["Employee 0.0.0"].id, actor=ACTOR)
    with pytest.raises(DomainError, match="below itself"):
        org.move_unit(session, dept.id, dept.id, actor=ACTOR)
    with pytest.raises(NotFound):
        org.move_unit(session, dept.id, foreign.id, actor=ACTOR)
    with pytest.raises(NotFound):
        org.create_unit(session, customer.id, "Bad", actor=ACTOR, parent_id=foreign.id)
    with pytest.raises(NotFound):
        org.attach_account(session, accounts[0], customer.id, actor=ACTOR, unit_id=foreign.id)
    with pytest.raises(NotFound):
        org.rename_unit(session, dept.id, "Sales", actor=ACTOR, customer_id=other.id)
    with pytest.raises(DomainError, match="empty"):
        org.create_unit(session, customer.id, "   ", actor=ACTOR)
    with pytest.raises(DomainError, match="unknown right"):
        org.grant(session, 1, customer.id, "view,fly", actor=ACTOR)
    assert session.scalar(select(func.count(OperationLog.id))) == before
    assert session.get(OrgUnit, dept.id).parent_id is None
    # A legal move: department 1 under department 0's team.
    org.move_unit(session, units["Dept 1"].id, units["Team 0.0"].id, actor=ACTOR)
    assert len(org.subtree_unit_ids(session, dept.id)) == 6
    assert len(org.branch_accounts(session, customer.id, dept.id)) == 2
    assert [unit.name for unit in org.units(session, customer.id)] == [
        "Dept 0", "Team 0.0", "Employee 0.0.0", "Dept 1", "Team 1.0", "Employee 1.0.0"]


def test_deleting_a_unit_moves_its_accounts_and_children_up(session):
    customer, units, accounts = company_tree(session, departments=1, teams=2, employees=2)
    team = units["Team 0.0"]
    head = make_account(session, kind="company", name="Head")
    someone = user(session, head, "teamlead", role="viewer")
    org.grant(session, someone.id, customer.id, "view", actor=ACTOR, unit_id=team.id)
    direct = make_account(session, kind="company", name="Team phone")
    org.attach_account(session, direct.id, customer.id, actor=ACTOR, unit_id=team.id)
    assert org.delete_unit(session, team.id, actor=ACTOR) == 1
    assert session.get(OrgUnit, team.id) is None
    assert session.get(Account, direct.id).org_unit_id == units["Dept 0"].id
    assert session.get(OrgUnit, units["Employee 0.0.1"].id).parent_id == units["Dept 0"].id
    assert session.scalar(select(func.count(OrgGrant.id))) == 0
    assert len(org.branch_accounts(session, customer.id)) == len(accounts) + 1
    # A root unit: what it held goes to the customer's root.
    org.delete_unit(session, units["Dept 0"].id, actor=ACTOR)
    assert session.get(Account, direct.id).org_unit_id is None
    assert session.get(Account, direct.id).customer_id == customer.id
    actions = session.scalars(select(OperationLog.action)
                              .where(OperationLog.action.like("org.%"))).all()
    assert actions.count("org.unit_remove") == 2 and "org.grant" in actions


def test_grant_replaces_and_revoke_removes(session):
    customer, units, _ = company_tree(session, departments=1, teams=1, employees=1)
    head = make_account(session, kind="company", name="Head")
    someone = user(session, head, "deputy", role="viewer")
    first = org.grant(session, someone.id, customer.id, "view", actor=ACTOR)
    again = org.grant(session, someone.id, customer.id, "pay", actor=ACTOR)
    assert first.id == again.id and again.rights == "view,pay"
    on_unit = org.grant(session, someone.id, customer.id, "users", actor=ACTOR,
                        unit_id=units["Dept 0"].id)
    assert len(org.grants_of(session, someone.id)) == 2
    org.revoke(session, on_unit.id, actor=ACTOR)
    with pytest.raises(NotFound):
        org.revoke(session, on_unit.id, actor=ACTOR)
    assert [grant.id for grant in org.grants_of(session, someone.id)] == [first.id]


def test_500_accounts_in_a_3_level_tree_cost_a_few_statements(session, ctx):
    """5 departments × 5 teams × 4 employees × 5 lines = 500 accounts."""
    customer, units, accounts = company_tree(session, accounts_per_leaf=5, departments=5,
                                             teams=5, employees=4)
    session.commit()
    assert len(accounts) == 500
    head = make_account(session, kind="company", name="Head")
    someone = user(session, head, "regional", role="viewer")
    org.grant(session, someone.id, customer.id, "view,pay", actor=ACTOR,
              unit_id=units["Dept 3"].id)
    session.commit()
    statements = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(ctx.engine, "before_cursor_execute", listener)
    try:
        session.expire_all()
        visible = org.accounts_with_right(session, someone.id, "view")
        assert len(visible) == 100
        assert org.rights_on(session, someone.id, visible[-1]) == {"view", "pay"}
        assert org.rights_on(session, someone.id, accounts[0]) == frozenset()
        assert len(org.branch_accounts(session, customer.id)) == 500
    finally:
        event.remove(ctx.engine, "before_cursor_execute", listener)
    # Not one per unit or account: a handful per question.
    assert len(statements) <= 20, statements
