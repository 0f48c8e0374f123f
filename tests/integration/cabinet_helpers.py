"""Helpers shared by the cabinet's integration and browser tests."""

from __future__ import annotations

import datetime as dt
import itertools
import re
from dataclasses import dataclass

import pytest

from aaa.models import Session as NetworkSession
from rating.accounts import create_cabinet_user
from tests.conftest import make_context
from tests.factories import make_account, make_nas

_counter = itertools.count(1)
CSRF_INPUT = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


@dataclass(frozen=True)
class Subscriber:
    account_id: int
    number: str
    login: str
    password: str


def seed_subscriber(ctx, *, balance="500", login=None, password="correct-horse-1",
                    **account) -> Subscriber:
    login = login or f"user{next(_counter)}"
    with ctx.Session() as session:
        acct = make_account(session, balance=balance, **account)
        create_cabinet_user(session, acct, login=login, password=password)
        session.commit()
        return Subscriber(acct.id, acct.number, login, password)


def seed_network_session(ctx, account_id: int, *, framed_ip: str, started_at: dt.datetime,
                         stopped_at: dt.datetime | None = None, octets_in: int = 0,
                         octets_out: int = 0) -> int:
    with ctx.Session() as session:
        n = next(_counter)
        nas = make_nas(session, address=f"10.{n // 62500 % 250}.{n // 250 % 250}.{n % 250 + 1}")
        row = NetworkSession(nas_id=nas.id, acct_session_id=f"s{next(_counter)}",
                             username=f"u{account_id}", account_id=account_id,
                             framed_ip=framed_ip, started_at=started_at,
                             updated_at=stopped_at or started_at, stopped_at=stopped_at,
                             octets_in=octets_in, octets_out=octets_out)
        session.add(row)
        session.commit()
        return row.id


def csrf_token(html: str) -> str:
    match = CSRF_INPUT.search(html)
    assert match, "the page has no CSRF token"
    return match.group(1)


@pytest.fixture
def cabinet_ctx(db_url, tmp_path):
    # Own data_dir: the generated secret key must not land in ./data.
    context = make_context(db_url, data_dir=tmp_path)
    yield context
    context.dispose()


@pytest.fixture
def app(cabinet_ctx):
    from cabinet.app import create_app
    return create_app(cabinet_ctx, testing=True)


@pytest.fixture
def client(app):
    return app.test_client()


def set_language(client, lang):
    page = client.get("/login")
    return client.post("/lang", data={"lang": lang, "next": "/login",
                                      "csrf_token": csrf_token(page.text)})


def log_in(client, login, password, lang=None):
    if lang:
        set_language(client, lang)
    page = client.get("/login")
    return client.post("/login", data={"login": login, "password": password,
                                       "csrf_token": csrf_token(page.text)})


@pytest.fixture
def logged_in(client, subscriber):
    """The client logged in, in English, as the test module's ``subscriber``."""
    assert log_in(client, subscriber.login, subscriber.password, lang="en").status_code == 302
    return client


def post_form(client, path, data):
    """POST like a browser: the CSRF token from the page at the same path."""
    page = client.get(path)
    return client.post(path, data={**data, "csrf_token": csrf_token(page.text)})
