"""Walks every route of the cabinet's url_map, whoever added it, and holds
each to the rules every page and API call must keep:

- a change (POST, PUT, PATCH, DELETE) made with the session cookie needs
  the CSRF token: without it, 400;
- no GET changes the database, for any role, with a cookie or a token;
- an account id in the URL that is not the caller's answers 404, for
  every role, whatever the method;
- a viewer (or a read-only token) is refused every change with 403;
- a route without GET answers a GET with 405.

Routes that are public by design, and the few changes a viewer may make
to their own login, are named in the allow-lists below, each with why.
A new route is covered the moment it is registered.
"""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy import func, select
from werkzeug.routing import IntegerConverter

from collector.models import TrafficRollup
from config.db import Base
from rating import accounts, api_tokens, ledger
from rating.models import Account, CabinetUser
from tests.integration.cabinet_helpers import (  # noqa: F401 (fixtures)
    app, cabinet_ctx, client, csrf_token, log_in, seed_network_session, seed_subscriber)

UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
ROLES = ("owner", "accountant", "viewer")

# Public by design: reached without a login, so a cookie, a role or an
# account id means nothing to them.
PUBLIC = {
    "static",                      # the stylesheet and fonts
    "favicon",                     # /favicon.ico, which browsers ask for by themselves
    "auth.login",                  # checks its CSRF token itself (rate limit first)
    "auth.set_language",           # the language switch, before and after login
    "selfservice.forgot",          # password reset: asked for without a login...
    "selfservice.forgot_sent",
    "selfservice.reset",           # ...and done with the mailed one-time token
    "users.accept",                # an invitee sets a password with the invitation's token
    "money.testpay_callback",      # the payment provider's server: checks a signature
    "money.yookassa_callback",     # YooKassa's server: its sender address, then the API
    "money.testpay_page",          # the test provider's "bank" page: a stand-in for a
                                   # foreign site, its POST is a signed notice
    "api.openapi",                 # the API description is no secret
    "osmp.gateway",                # payment agents' OSMP endpoint: HTTP Basic per agent
                                   # and its allowed networks, no cookie (rating.agents)
}

# Changes a viewer may make, because they concern the viewer's own login
# and not the account: log out, the password, their own API tokens.
VIEWER_MAY = {
    "auth.logout",
    "main.password",
    "main.end_other_sessions",
    "tokens.tokens",
    "tokens.revoke",
    "auth.switch_account",         # which linked account the login looks at (no write)
    "family.end",                  # a login leaves a family link it holds (its own reach);
                                   # another's link id is 404
}

# Plausible input, so that a refusal is for the role, not for a missing field.
FORM = {"amount": "100", "email": "walker@example.ru", "phone": "+79120000000",
        "request_id": "walk-0000001", "name": "walk", "scope": "viewer", "expires": "",
        "code": "internet", "voucher": "0000-0000-0000", "tariff_id": "1", "days": "10",
        "topic": "other", "text": "hello", "body": "hello", "channels": "email"}
JSON = {"/promised": {"amount": "100"}, "/turbo": {"request_id": "walk-0000001"},
        "/contacts": {"email": "walker@example.ru"}}
QUERIES = ("", "?month=2026-11&from=2026-10-01&to=2026-11-30")


def _rules(app, *, methods=None, skip=frozenset()):
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: (r.rule, r.endpoint)):
        if rule.endpoint in skip:
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            if methods is None or method in methods:
                yield rule, method


def _path(rule, account_id: int, token_id: int) -> str:
    """The rule's URL with a sample value for each argument."""
    values = {}
    for name in rule.arguments:
        converter = rule._converters.get(name)
        if name == "account_id":
            values[name] = account_id
        elif name == "token_id":
            values[name] = token_id
        elif name == "filename":
            values[name] = "cabinet.css"
        elif name == "month":
            values[name] = "2026-11"
        elif name == "kind":
            values[name] = "invoice"
        elif isinstance(converter, IntegerConverter):
            values[name] = 1
        else:
            values[name] = "walk"
    return rule.build(values, append_unknown=False)[1]


def _closed(response):
    """Read and close (a static file's answer holds the file open)."""
    response.get_data()
    response.close()
    return response


def _send(client, method, path, *, csrf=None, token=None):
    headers = {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if csrf:
        headers["X-CSRFToken"] = csrf
    call = getattr(client, method.lower())
    if path.startswith("/api/"):
        body = next((v for suffix, v in JSON.items() if path.endswith(suffix)), {})
        return _closed(call(path, json=body if method in UNSAFE else None, headers=headers))
    data = dict(FORM, csrf_token=csrf) if csrf else dict(FORM)
    return _closed(call(path, data=data if method in UNSAFE else None, headers=headers))


def _snapshot(ctx):
    """Row counts of every table, and every column of the rows a change
    would most likely touch (balances, contacts, profiles, logins, tokens)."""
    with ctx.Session() as session:
        counts = {table.name: session.scalar(select(func.count()).select_from(table))
                  for table in Base.metadata.sorted_tables}
        return (counts,
                session.execute(select(Account.__table__).order_by(Account.id)).all(),
                session.execute(select(CabinetUser.__table__).order_by(CabinetUser.id)).all(),
                session.execute(select(api_tokens.ApiToken.__table__)
                                .order_by(api_tokens.ApiToken.id)).all())


class Walker:
    """One account with a login of each role (and a token each), and a
    foreign account with its own owner."""

    def __init__(self, app, ctx):
        self.app, self.ctx = app, ctx
        owner = seed_subscriber(ctx, balance="500")
        self.account_id = owner.account_id
        self.foreign = seed_subscriber(ctx, balance="999", name="Foreign Person")
        self.logins = {"owner": (owner.login, owner.password)}
        self.tokens, self.token_ids = {}, {}
        with ctx.Session() as session:
            account = session.get(Account, owner.account_id)
            for role in ("accountant", "viewer"):
                login = f"{role}-{uuid.uuid4().hex[:6]}"
                accounts.create_cabinet_user(session, account, login=login,
                                             password="walker-pass-1", role=role)
                self.logins[role] = (login, "walker-pass-1")
            for role, (login, _password) in self.logins.items():
                user_id = session.scalar(select(CabinetUser.id)
                                         .where(CabinetUser.login == login))
                token, secret = api_tokens.create(session, user_id, name="walk", actor="test")
                self.tokens[role], self.token_ids[role] = secret, token.id
            # Something on every page: a fee, a session, a day of traffic.
            ledger.post(session, account_id=account.id, amount="-20", kind="fee",
                        key="fee:walk", author="test")
            session.add(TrafficRollup(account_id=account.id,
                                      interval_start=dt.datetime(2026, 11, 3, 12),
                                      direction="in", bytes=10**9, packets=1,
                                      source="netflow"))
            session.commit()
        seed_network_session(ctx, owner.account_id, framed_ip="100.64.0.9",
                             started_at=dt.datetime(2026, 11, 2, 8),
                             stopped_at=dt.datetime(2026, 11, 2, 9), octets_out=10**8)

    def client(self, role):
        """A logged-in browser of this role and its CSRF token."""
        browser = self.app.test_client()
        login, password = self.logins[role]
        assert log_in(browser, login, password).status_code == 302
        return browser, csrf_token(browser.get("/password").text)

    def path(self, rule, role, account_id=None):
        return _path(rule, account_id or self.account_id, self.token_ids[role])


@pytest.fixture
def walker(app, cabinet_ctx):
    # The walk sends a few hundred API calls; the per-token limit is not
    # what is tested here.
    app.config["ABONENT_API_RATE_LIMIT"] = "10000 per minute"
    return Walker(app, cabinet_ctx)


def test_every_change_with_a_cookie_needs_a_csrf_token(walker):
    browser, _csrf = walker.client("owner")
    checked = []
    for rule, method in _rules(walker.app, methods=UNSAFE, skip=PUBLIC):
        path = walker.path(rule, "owner")
        response = _send(browser, method, path)
        assert response.status_code == 400, (method, path, response.status_code)
        checked.append(rule.endpoint)
    assert browser.get("/").status_code == 200  # still logged in: nothing was done
    assert {"auth.logout", "main.contacts", "api.take_promised", "api.put_contacts",
            "tokens.revoke"} <= set(checked)


@pytest.mark.parametrize("role", ROLES)
def test_no_get_changes_anything(walker, role):
    before = _snapshot(walker.ctx)
    browser, _csrf = walker.client(role)
    visited = 0
    for rule, _method in _rules(walker.app, methods={"GET"}):
        path = walker.path(rule, role)
        for query in QUERIES:
            response = _closed(browser.get(path + query))
            assert response.status_code < 500, path
            visited += 1
            if path.startswith("/api/"):
                response = _send(walker.app.test_client(), "GET", path + query,
                                 token=walker.tokens[role])
                assert response.status_code < 500, path
    assert visited >= 40
    assert _snapshot(walker.ctx) == before


def test_routes_without_get_refuse_it(walker):
    browser, _csrf = walker.client("owner")
    refused = 0
    readable = {rule.rule for rule in walker.app.url_map.iter_rules() if "GET" in rule.methods}
    for rule in walker.app.url_map.iter_rules():
        if rule.rule in readable:
            continue
        path = walker.path(rule, "owner")
        assert _closed(browser.get(path)).status_code == 405, path
        refused += 1
    assert refused >= 5
    assert browser.get("/").status_code == 200


@pytest.mark.parametrize("role", ROLES)
def test_a_foreign_account_id_is_not_found(walker, role):
    before = _snapshot(walker.ctx)
    browser, csrf = walker.client(role)
    checked = 0
    for rule, method in _rules(walker.app, skip=PUBLIC):
        if "account_id" not in rule.arguments:
            continue
        for account_id in (walker.foreign.account_id, 987_654):
            path = walker.path(rule, role, account_id)
            response = _send(browser, method, path, csrf=csrf)
            assert response.status_code == 404, (role, method, path, response.status_code)
            assert b"Foreign Person" not in response.data and b"999.00" not in response.data
            if path.startswith("/api/"):
                response = _send(walker.app.test_client(), method, path,
                                 token=walker.tokens[role])
                assert response.status_code == 404, (role, "bearer", method, path)
            checked += 1
    assert checked >= 16
    assert _snapshot(walker.ctx) == before


def test_a_viewer_is_refused_every_change(walker):
    before = _snapshot(walker.ctx)
    browser, csrf = walker.client("viewer")
    refused = []
    for rule, method in _rules(walker.app, methods=UNSAFE, skip=PUBLIC | VIEWER_MAY):
        path = walker.path(rule, "viewer")
        response = _send(browser, method, path, csrf=csrf)
        assert response.status_code == 403, (method, path, response.status_code)
        if path.startswith("/api/"):
            response = _send(walker.app.test_client(), method, path,
                             token=walker.tokens["viewer"])
            assert response.status_code == 403, ("bearer", method, path)
        refused.append(rule.endpoint)
    assert {"main.contacts", "main.buy_turbo", "main.promised_payment", "api.take_promised",
            "api.buy_turbo", "api.put_contacts"} <= set(refused)
    assert _snapshot(walker.ctx) == before
    assert browser.get("/").status_code == 200


def test_the_walk_can_fail(walker):
    """The snapshot sees a change a GET would make, and the CSRF check
    would see a route that skipped it."""
    before = _snapshot(walker.ctx)
    with walker.ctx.Session() as session:
        session.get(Account, walker.account_id).email = "changed@example.ru"
        session.commit()
    assert _snapshot(walker.ctx) != before
    browser, csrf = walker.client("owner")
    path = f"/api/v1/accounts/{walker.account_id}/contacts"
    assert _send(browser, "PUT", path, csrf=csrf).status_code == 200


# -- issue 21: rights on one branch of a company ----------------------------------

class BranchWalker:
    """A company of 500 accounts in a 3-level tree (5 departments × 5 teams
    × 4 employees × 5 lines) and a login with every right on department 1
    only; a grant of another login on department 0 to aim at."""

    def __init__(self, app, ctx):
        from rating import org
        from tests.factories import make_company
        self.app, self.ctx = app, ctx
        with ctx.Session() as session:
            customer, units, account_ids = make_company(
                session, departments=5, teams=5, employees=4, lines=5)
            assert len(account_ids) == 500
            head = accounts.create_account(session, number="HEAD-1", name="Head office",
                                           kind="company")
            org.attach_account(session, head.id, customer.id, actor="test")
            user = accounts.create_cabinet_user(session, head, login="branch-walker",
                                                password="walker-pass-1", role="owner")
            other = accounts.create_cabinet_user(session, head, login="other-walker",
                                                 password="walker-pass-1", role="viewer")
            org.grant(session, user.id, customer.id, org.RIGHTS, actor="test",
                      unit_id=units["Dept 1"].id)
            self.foreign_grant = org.grant(session, other.id, customer.id, "view", actor="test",
                                           unit_id=units["Dept 0"].id).id
            token, self.token = api_tokens.create(session, user.id, name="walk", actor="test")
            self.token_id = token.id
            self.mine = org.branch_accounts(session, customer.id, units["Dept 1"].id)
            self.foreign = org.branch_accounts(session, customer.id, units["Dept 0"].id)
            self.foreign_units = [units[name].id for name in ("Dept 0", "Team 0.3",
                                                              "Employee 0.4.3")]
            self.foreign_numbers = [session.get(Account, account_id).number
                                    for account_id in self.foreign[::20]]
            for account_id in self.mine[:3] + self.foreign[:3]:
                ledger.post(session, account_id=account_id, amount="-20", kind="fee",
                            key=f"fee:branch-walk:{account_id}", author="test")
            session.commit()

    def client(self):
        browser = self.app.test_client()
        assert log_in(browser, "branch-walker", "walker-pass-1").status_code == 302
        return browser, csrf_token(browser.get("/password").text)

    def path(self, rule, account_id: int, unit_id: int) -> str:
        values = {}
        for name in rule.arguments:
            if name == "account_id":
                values[name] = account_id
            elif name == "unit_id":
                values[name] = unit_id
            elif name == "grant_id":
                values[name] = self.foreign_grant
            elif name == "token_id":
                values[name] = self.token_id
            elif name == "kind":
                values[name] = "invoice"
            elif name == "filename":
                values[name] = "cabinet.css"
            elif isinstance(rule._converters.get(name), IntegerConverter):
                values[name] = 1
            else:
                values[name] = "walk"
        return rule.build(values, append_unknown=False)[1]


def _readable(response) -> str:
    """The answer's text as a reader sees it (a PDF's words, not its bytes)."""
    if response.mimetype == "application/pdf":
        import io

        from pypdf import PdfReader
        return "".join(page.extract_text() for page in PdfReader(io.BytesIO(response.data)).pages)
    return response.get_data(as_text=True)


@pytest.fixture
def branch_walker(app, cabinet_ctx):
    app.config["ABONENT_API_RATE_LIMIT"] = "10000 per minute"
    return BranchWalker(app, cabinet_ctx)


def test_a_login_with_rights_on_one_branch_never_reaches_another(branch_walker):
    walker = branch_walker
    before = _snapshot(walker.ctx)
    browser, csrf = walker.client()
    # Its own branch is in reach: the walk below is refused for the branch,
    # not because the login can do nothing.
    assert browser.get("/company/").text.count('data-test="account-row"') == 50
    assert browser.post("/account/switch", data={"account_id": str(walker.mine[7]),
                                                 "csrf_token": csrf, "next": "/"}).status_code == 302
    checked = set()
    for rule, method in _rules(walker.app, skip=PUBLIC):
        aimed = {"account_id", "unit_id", "grant_id"} & set(rule.arguments)
        if not aimed:
            continue
        for account_id, unit_id in zip(walker.foreign[:2], walker.foreign_units[:2]):
            path = walker.path(rule, account_id, unit_id)
            response = _send(browser, method, path, csrf=csrf)
            assert response.status_code in (403, 404), (method, path, response.status_code)
            if path.startswith("/api/"):
                response = _send(walker.app.test_client(), method, path, token=walker.token)
                assert response.status_code in (403, 404), ("bearer", method, path)
        checked.add(rule.endpoint)
    assert {"company.unit_rename", "company.unit_move", "company.unit_delete",
            "company.grant_revoke", "api.account", "api.put_contacts"} <= checked
    # Every page and GET call, aimed at a foreign unit by its query: refused,
    # or drawn without a trace of the other branch.
    for rule, _method in _rules(walker.app, methods={"GET"}, skip=PUBLIC):
        if set(rule.arguments) - {"kind", "month"}:
            continue
        path = walker.path(rule, walker.mine[0], walker.foreign_units[0])
        for query in ("", f"?unit={walker.foreign_units[1]}&account_id={walker.foreign[0]}"):
            response = _closed(browser.get(path + query))
            assert response.status_code < 500, path
            if response.status_code == 200:
                shown = _readable(response)
                assert not any(number in shown for number in walker.foreign_numbers), \
                    path + query
    # The switcher and the family link refuse every foreign account.
    for account_id in walker.foreign[::25]:
        response = browser.post("/account/switch", data={"account_id": str(account_id),
                                                         "csrf_token": csrf})
        assert response.status_code == 404
    # Foreign units as the parent of a new unit or a move, as an account's place.
    for unit_id in walker.foreign_units:
        for path in ("/company/tree/add", f"/company/tree/{walker.foreign_units[2]}/move"):
            response = browser.post(path, data={"csrf_token": csrf, "name": "x",
                                                "parent_id": str(unit_id)})
            assert response.status_code in (403, 404), path
    response = browser.post("/company/tree/attach", data={
        "csrf_token": csrf, "number": walker.foreign_numbers[0],
        "unit_id": str(walker.foreign_units[0])})
    assert response.status_code in (302, 403, 404)
    assert _snapshot(walker.ctx) == before
