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
