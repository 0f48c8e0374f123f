"""Factories with sensible defaults: tests say only what matters to them."""

from __future__ import annotations

import itertools
from decimal import Decimal

from aaa.models import Nas, Service
from rating import accounts
from rating.models import Account, Tariff

_counter = itertools.count(1)


def make_tariff(session, **params) -> Tariff:
    values = dict(name=f"Tariff {next(_counter)}", fee="600.00", rate_down_kbps=100_000,
                  rate_up_kbps=50_000, negative_rate_kbps=1_000)
    values.update(params)
    return accounts.create_tariff(session, **values)


def make_account(session, balance=None, **params) -> Account:
    if "tariff" not in params:
        params["tariff"] = make_tariff(session).name
    values = dict(number=f"{next(_counter):08d}", name="Ivan Petrov")
    values.update(params)
    account = accounts.create_account(session, **values)
    if balance is not None and Decimal(balance) > 0:
        accounts.add_payment(session, account, balance, external_id=f"seed-{account.number}")
    return account


def make_service(session, account: Account, **params) -> Service:
    values = dict(kind="pppoe", login=f"user{next(_counter)}", password="secret-pw")
    values.update(params)
    service = Service(account_id=account.id, **values)
    session.add(service)
    session.flush()
    return service


def make_nas(session, **params) -> Nas:
    values = dict(name=f"nas{next(_counter)}", address="127.0.0.1", secret="testing123",
                  vendor="mikrotik")
    values.update(params)
    nas = Nas(**values)
    session.add(nas)
    session.flush()
    return nas


def make_company(session, *, departments=3, teams=3, employees=2, lines=1,
                 name="OOO Romashka", actor="admin:test"):
    """A company customer: departments → teams → employees, ``lines`` accounts
    on each employee (issue 21). Returns (customer, {unit name: unit}, [account ids]).
    The accounts are made in one batch per employee, with one tariff."""
    from rating import org
    tariff = make_tariff(session)
    customer = org.create_customer(session, kind="company", name=name, actor=actor)
    units, accounts_made = {}, []
    for d in range(departments):
        dept = org.create_unit(session, customer.id, f"Dept {d}", actor=actor)
        units[dept.name] = dept
        for t in range(teams):
            team = org.create_unit(session, customer.id, f"Team {d}.{t}", actor=actor,
                                   parent_id=dept.id)
            units[team.name] = team
            for e in range(employees):
                person = org.create_unit(session, customer.id, f"Employee {d}.{t}.{e}",
                                         actor=actor, parent_id=team.id)
                units[person.name] = person
                ids = [make_account(session, kind="company", name=f"Line {d}.{t}.{e}.{n}",
                                    tariff=tariff.name).id for n in range(lines)]
                org.attach_accounts(session, ids, customer.id, actor=actor, unit_id=person.id)
                accounts_made.extend(ids)
    return customer, units, accounts_made
