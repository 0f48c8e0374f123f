"""A company's cabinet users, managed by its owner in the cabinet (issue 15):
invite (a one-time link, by mail through a real SMTP server on loopback or
shown once to the owner) → accept → log in; role changes; removal; the
last owner kept; role limits enforced on the server (a forbidden POST is
403 and changes nothing); CSRF on every form; Russian and English. Both
databases; the race between two owners on PostgreSQL."""

from __future__ import annotations

import html
import re
import threading

import pytest
from sqlalchemy import func, select, text

from config.db import utcnow
from rating import company_users
from rating.accounts import create_cabinet_user
from rating.models import Account, CabinetUser, CabinetUserAccount, OperationLog
from rating.selfservice import PasswordReset
from tests.conftest import Inbox, make_context
from tests.integration.cabinet_helpers import (  # noqa: F401 (fixtures)
    app, client, csrf_token, log_in, seed_subscriber, set_language)

PUBLIC_URL = "https://my.isp.example"
TABLES = ("cabinet_users", "password_resets", "operation_log", "api_tokens",
          "cabinet_user_accounts", "accounts", "ledger_entries", "account_packages")


@pytest.fixture
def cabinet_ctx(db_url, tmp_path):
    # No public URL: the owner is shown the link.
    context = make_context(db_url, data_dir=tmp_path)
    yield context
    context.dispose()


@pytest.fixture
def company(cabinet_ctx):
    return seed_subscriber(cabinet_ctx, balance="500", login="director",
                           kind="company", name="OOO Romashka")


@pytest.fixture
def owner(client, company):
    assert log_in(client, company.login, company.password, lang="en").status_code == 302
    return client


def snapshot(ctx):
    with ctx.engine.connect() as conn:
        return {t: [tuple(r) for r in conn.execute(text(f"SELECT * FROM {t} ORDER BY 1"))]
                for t in TABLES}


def user_id(ctx, login):
    with ctx.Session() as session:
        return session.scalar(select(CabinetUser.id).where(CabinetUser.login == login))


def add_user(ctx, account_id, login, role, password="member-pass-1"):
    with ctx.Session() as session:
        create_cabinet_user(session, session.get(Account, account_id), login=login,
                            password=password, role=role)
        session.commit()


def english(app):
    """A new browser that reads English."""
    browser = app.test_client()
    set_language(browser, "en")
    return browser


def post(client, account_id, path, **data):
    """A form of the users page, sent as the browser would."""
    page = client.get("/users")
    return client.post(path, data={"account_id": str(account_id),
                                   "csrf_token": csrf_token(page.text), **data})


def invite(client, account_id, **data):
    return post(client, account_id, "/users/invite", **data)


def shown_link(response) -> str:
    match = re.search(r'value="(https?://[^"]+/invite\?token=[^"]+)"', response.text)
    assert match, "no invitation link on the page"
    return html.unescape(match.group(1))


def accept(client, link, password):
    path = link.split("://", 1)[1].split("/", 1)[1]
    form = client.get("/" + path)
    assert form.status_code == 200, form.text
    token = path.split("token=", 1)[1]
    return client.post("/invite", data={"token": token, "new": password, "confirm": password,
                                        "csrf_token": csrf_token(form.text)})


def log_lines(ctx, action):
    with ctx.Session() as session:
        return [(row.actor, row.details) for row in session.scalars(
            select(OperationLog).where(OperationLog.action == action).order_by(OperationLog.id))]


def test_invite_accept_and_log_in_as_the_new_user(owner, app, cabinet_ctx, company):
    page = owner.get("/users")
    assert page.status_code == 200
    assert "Company users" in page.text and "OOO Romashka" in page.text
    assert 'data-test="user-director"' in page.text
    # The contacts page leads here, for the company's owner.
    assert 'href="/users"' in owner.get("/contacts").text

    response = invite(owner, company.account_id, login="buh", email="", role="accountant")
    assert response.status_code == 200
    link = shown_link(response)
    assert "it is shown only now" in response.text
    # Shown once: not on the page drawn again, and only its hash is stored.
    again = owner.get("/users").text
    assert "/invite?token=" not in again
    assert "invited, has not set a password yet" in again
    token = link.split("token=", 1)[1]
    with cabinet_ctx.Session() as session:
        stored = session.scalars(select(PasswordReset)).one()
        assert stored.purpose == "invite" and token not in stored.token_hash
    assert log_lines(cabinet_ctx, "cabinet_user.invite") == [
        ("cabinet:director", {"login": "buh", "role": "accountant"})]

    newcomer = english(app)
    # A reset page does not take an invitation's token.
    assert newcomer.get(f"/reset?token={token}").status_code == 400

    response = accept(newcomer, link, "buh-password-1")
    assert response.status_code == 302 and response.headers["Location"].endswith("/login")
    assert "Your password is set" in newcomer.get("/login").text
    assert log_in(newcomer, "buh", "buh-password-1").status_code == 302
    page = newcomer.get("/")
    assert page.status_code == 200 and company.number in page.text
    # The link works once.
    used = newcomer.get(f"/invite?token={token}")
    assert used.status_code == 400 and "already been used" in used.text
    assert 'data-test="state"' not in owner.get("/users").text.split('user-buh"')[1]
    assert log_lines(cabinet_ctx, "cabinet_user.accept") == [
        ("cabinet:invitation", {"login": "buh"})]


def test_an_invitation_goes_by_mail_when_it_can(db_url, tmp_path, inbox):
    context = make_context(db_url, data_dir=tmp_path, smtp_host="127.0.0.1",
                           smtp_port=inbox.port, smtp_sender="billing@isp.test",
                           cabinet_public_url=PUBLIC_URL)
    try:
        from cabinet.app import create_app
        app = create_app(context, testing=True)
        company = seed_subscriber(context, kind="company", login="boss", name="OOO Mail")
        browser = app.test_client()
        log_in(browser, company.login, company.password, lang="ru")
        response = invite(browser, company.account_id, login="", email="anna@example.ru",
                          role="viewer")
        assert response.status_code == 302
        page = browser.get("/users").text
        assert "/invite?token=" not in page
        assert "Приглашение для anna@example.ru отправлено на anna@example.ru." in page
        message = inbox.wait_for("anna@example.ru")
        body = Inbox.text(message)
        assert "boss" in body and "OOO Mail" in body and company.number in body
        assert "наблюдатель" in body.lower()
        link = re.search(r"(https://my\.isp\.example/invite\?token=\S+)", body).group(1)
        newcomer = app.test_client()
        assert accept(newcomer, link, "anna-password-1").status_code == 302
        assert log_in(newcomer, "anna@example.ru", "anna-password-1").status_code == 302
    finally:
        context.dispose()


def test_the_owner_changes_a_role_and_removes_a_user(owner, app, cabinet_ctx, company):
    add_user(cabinet_ctx, company.account_id, "clerk", "viewer")
    clerk = app.test_client()
    assert log_in(clerk, "clerk", "member-pass-1").status_code == 302
    clerk_id = user_id(cabinet_ctx, "clerk")

    response = post(owner, company.account_id, f"/users/{clerk_id}/role", role="accountant")
    assert response.status_code == 302
    assert "The role is changed." in owner.get("/users").text
    # The clerk's next request already has the new role's rights.
    assert 'data-test="redeem-promo"' in clerk.get("/packages").text
    assert log_lines(cabinet_ctx, "cabinet_user.role") == [
        ("cabinet:director", {"login": "clerk", "role": "viewer → accountant"})]
    before = snapshot(cabinet_ctx)
    bad = post(owner, company.account_id, f"/users/{clerk_id}/role", role="admin")
    assert bad.status_code == 400 and "Choose the role from the list" in bad.text
    assert snapshot(cabinet_ctx) == before

    response = post(owner, company.account_id, f"/users/{clerk_id}/remove")
    assert response.status_code == 302
    assert "clerk can no longer log in to the cabinet." in owner.get("/users").text
    assert user_id(cabinet_ctx, "clerk") is None
    # The removed login's session ends at its next request.
    assert clerk.get("/").status_code == 302
    assert log_lines(cabinet_ctx, "cabinet_user.remove") == [
        ("cabinet:director", {"login": "clerk"})]
    # Gone: another removal finds nothing.
    assert post(owner, company.account_id, f"/users/{clerk_id}/remove").status_code == 404


def test_owners_cannot_remove_or_demote_themselves_nor_the_last_owner(owner, cabinet_ctx,
                                                                       company):
    me = user_id(cabinet_ctx, "director")
    before = snapshot(cabinet_ctx)
    response = post(owner, company.account_id, f"/users/{me}/remove")
    assert response.status_code == 400
    assert "You cannot remove your own login; ask another owner" in response.text
    response = post(owner, company.account_id, f"/users/{me}/role", role="viewer")
    assert response.status_code == 400
    assert "You cannot change the role of your own login" in response.text
    assert snapshot(cabinet_ctx) == before
    # The page offers no such buttons for the owner's own row.
    own_row = owner.get("/users").text.split('data-test="user-director"')[1].split("</li>")[0]
    assert "remove-user" not in own_row and "change-role" not in own_row

    # The rule under it: without the director, an invited owner who has
    # not accepted yet does not keep the company owned.
    with cabinet_ctx.Session() as session:
        company_users.invite(session, company.account_id, by_user_id=me,
                             login="pending-owner", email=None, role="owner", now=utcnow(),
                             actor="test")
        session.commit()
        with pytest.raises(company_users.DomainError, match="at least one owner"):
            company_users._keeps_an_owner(session, session.get(Account, company.account_id),
                                          me, utcnow())
    # Another owner may be demoted or removed while one stays.
    add_user(cabinet_ctx, company.account_id, "second", "owner")
    second = user_id(cabinet_ctx, "second")
    assert post(owner, company.account_id, f"/users/{second}/role",
                role="viewer").status_code == 302
    assert post(owner, company.account_id, f"/users/{second}/remove").status_code == 302
    assert user_id(cabinet_ctx, "second") is None


def test_role_limits_are_enforced_on_the_server(app, cabinet_ctx, company):
    """A forbidden POST is 403 and changes nothing: an accountant pays but
    does not change the service or the users; a viewer only reads."""
    from rating import options, packages
    with cabinet_ctx.Session() as session:
        tv = packages.create(session, name="TV", fee="100")
        options.create_option_type(session, code="turbo", name="Turbo", kind="turbo",
                                   price="50", rate_multiplier=2)
        session.commit()
        tv_id = tv.id
    add_user(cabinet_ctx, company.account_id, "buh", "accountant")
    add_user(cabinet_ctx, company.account_id, "look", "viewer")
    target = user_id(cabinet_ctx, "look")
    forbidden = {
        "accountant": [("/users", "/users/invite", {"login": "x1", "role": "owner"}),
                       ("/users", f"/users/{target}/role", {"role": "owner"}),
                       ("/users", f"/users/{target}/remove", {}),
                       ("/packages", "/packages/switch", {"package_id": tv_id,
                                                         "action": "on"}),
                       ("/options", "/options/buy", {"code": "turbo",
                                                     "request_id": "r" * 10}),
                       ("/tariff", "/freeze", {"until": "2099-01-01"}),
                       ("/", "/turbo", {"request_id": "r" * 10})],
    }
    forbidden["viewer"] = forbidden["accountant"] + [
        ("/packages", "/packages/promo", {"code": "HELLO"}),
        ("/contacts", "/contacts", {"email": "x@example.ru"}),
        ("/promised", "/promised", {"amount": "100"})]
    for login, role in (("buh", "accountant"), ("look", "viewer")):
        browser = app.test_client()
        assert log_in(browser, login, "member-pass-1", lang="en").status_code == 302
        assert browser.get("/users").status_code == 403
        assert 'href="/users"' not in browser.get("/contacts").text
        before = snapshot(cabinet_ctx)
        for page, path, data in forbidden[role]:
            token = csrf_token(browser.get("/password").text)
            response = browser.post(path, data={"account_id": str(company.account_id),
                                                "csrf_token": token, **data})
            assert response.status_code == 403, (role, path, response.status_code)
        assert snapshot(cabinet_ctx) == before
    # What an accountant may do, it does: contacts (money is in test_cabinet_packages).
    browser = app.test_client()
    log_in(browser, "buh", "member-pass-1")
    token = csrf_token(browser.get("/contacts").text)
    assert browser.post("/contacts", data={"email": "buh@example.ru", "phone": "",
                                           "phone_landline": "",
                                           "csrf_token": token}).status_code == 302


def test_only_a_companys_own_owner_manages_its_users(app, client, cabinet_ctx, company):
    person = seed_subscriber(cabinet_ctx, login="ivan")
    log_in(client, person.login, person.password, lang="en")
    assert client.get("/users").status_code == 404  # a person's account has no users page
    assert 'href="/users"' not in client.get("/contacts").text
    # The person's login linked to the company (family linking) looks at it
    # with the switcher, but manages nothing there.
    with cabinet_ctx.Session() as session:
        session.add(CabinetUserAccount(cabinet_user_id=user_id(cabinet_ctx, "ivan"),
                                       account_id=company.account_id))
        session.commit()
    page = client.get("/")
    client.post("/account/switch", data={"account_id": str(company.account_id), "next": "/",
                                         "csrf_token": csrf_token(page.text)})
    assert company.number in client.get("/").text
    before = snapshot(cabinet_ctx)
    assert client.get("/users").status_code == 403
    token = csrf_token(client.get("/password").text)
    response = client.post("/users/invite", data={"account_id": str(company.account_id),
                                                  "login": "intruder", "role": "owner",
                                                  "csrf_token": token})
    assert response.status_code == 403
    assert snapshot(cabinet_ctx) == before


def test_every_form_needs_its_csrf_token_and_its_account(owner, app, cabinet_ctx, company):
    add_user(cabinet_ctx, company.account_id, "clerk", "viewer")
    clerk = user_id(cabinet_ctx, "clerk")
    other = seed_subscriber(cabinet_ctx, kind="company", login="rival")
    forms = [("/users/invite", {"login": "x2", "role": "viewer"}),
             (f"/users/{clerk}/role", {"role": "owner"}),
             (f"/users/{clerk}/remove", {}),
             (f"/users/{clerk}/link", {})]
    before = snapshot(cabinet_ctx)
    for path, fields in forms:
        data = {"account_id": str(company.account_id), **fields}
        assert owner.post(path, data=data).status_code == 400, path
        assert owner.post(path, data={**data, "csrf_token": "forged"}).status_code == 400
        # A form drawn for another account (a stale tab): 404.
        assert post(owner, other.account_id, path, **fields).status_code == 404, path
        assert owner.get(path).status_code == 405
    # Another company's login is not found from this company's page.
    rival = user_id(cabinet_ctx, "rival")
    assert post(owner, company.account_id, f"/users/{rival}/remove").status_code == 404
    # The invitee's page too.
    invitee = app.test_client()
    assert invitee.post("/invite", data={"token": "x" * 40, "new": "whatever-123",
                                         "confirm": "whatever-123"}).status_code == 400
    assert snapshot(cabinet_ctx) == before


def test_bad_invitations_say_why_and_change_nothing(owner, cabinet_ctx, company):
    before = snapshot(cabinet_ctx)
    for data, message in [
            ({"login": "", "email": "", "role": "viewer"}, "A login is 1 to 64 letters"),
            ({"login": "bad login!", "role": "viewer"}, "A login is 1 to 64 letters"),
            ({"login": "director", "role": "viewer"}, "This login is taken; choose another"),
            ({"login": "ok", "email": "not-a-mail", "role": "viewer"}, "E-mail must look"),
            ({"login": "ok", "role": "root"}, "Choose the role from the list")]:
        response = invite(owner, company.account_id, **data)
        assert response.status_code == 400, data
        assert message in html.unescape(response.text), (data, response.text[-2000:])
    assert snapshot(cabinet_ctx) == before


def test_a_new_link_replaces_the_old_one(owner, app, cabinet_ctx, company):
    first = shown_link(invite(owner, company.account_id, login="late", role="viewer"))
    late = user_id(cabinet_ctx, "late")
    second = shown_link(post(owner, company.account_id, f"/users/{late}/link"))
    assert second != first
    newcomer = english(app)
    old = newcomer.get("/invite?token=" + first.split("token=", 1)[1])
    assert old.status_code == 400 and "has expired" in old.text
    assert accept(newcomer, second, "late-password-1").status_code == 302
    # Accepted: no new link is made for it.
    response = post(owner, company.account_id, f"/users/{late}/link")
    assert response.status_code == 400 and "already set a password" in response.text


def test_the_page_in_russian(client, cabinet_ctx, company):
    add_user(cabinet_ctx, company.account_id, "clerk", "accountant")
    log_in(client, company.login, company.password, lang="ru")
    page = client.get("/users").text
    assert "Пользователи компании" in page and "Пригласить" in page
    assert "Бухгалтер" in page and "Владелец" in page and "Наблюдатель" in page
    response = invite(client, company.account_id, login="director", role="viewer")
    assert "Этот логин занят" in html.unescape(response.text)
    response = invite(client, company.account_id, login="newbie", role="viewer")
    assert "Ссылка-приглашение" in response.text and "показана только сейчас" in response.text
    assert "Приглашён пользователь кабинета" in client.get("/history").text


def test_two_owners_removing_each_other_leave_one(pg_url, tmp_path):
    """The account row is locked first: the second removal waits, then finds
    its own login gone and is refused, so the company keeps an owner."""
    context = make_context(pg_url, data_dir=tmp_path)
    try:
        company = seed_subscriber(context, kind="company", login="first")
        add_user(context, company.account_id, "second", "owner")
        first, second = user_id(context, "first"), user_id(context, "second")
        one, two = context.Session(), context.Session()
        company_users.remove(one, company.account_id, second, by_user_id=first,
                             now=utcnow(), actor="cabinet:first")
        outcome = {}

        def other_side():
            try:
                company_users.remove(two, company.account_id, first, by_user_id=second,
                                     now=utcnow(), actor="cabinet:second")
                two.commit()
                outcome["result"] = "removed"
            except company_users.DomainError as error:
                two.rollback()
                outcome["result"] = type(error).__name__

        thread = threading.Thread(target=other_side)
        thread.start()
        thread.join(0.5)
        assert thread.is_alive()  # waiting for the account's lock
        one.commit()
        thread.join(10)
        assert outcome["result"] == "Forbidden"
        one.close(), two.close()
        with context.Session() as session:
            owners = session.scalars(select(CabinetUser.login).where(
                CabinetUser.account_id == company.account_id,
                CabinetUser.role == "owner")).all()
            assert owners == ["first"]
            assert session.scalar(select(func.count()).select_from(OperationLog).where(
                OperationLog.action == "cabinet_user.remove")) == 1
    finally:
        context.dispose()


def test_the_json_api_keeps_the_same_roles(app, cabinet_ctx, company):
    """An accountant's token pays (a promised payment) but buys no turbo."""
    from rating import api_tokens, options
    with cabinet_ctx.Session() as session:
        options.create_option_type(session, code="turbo", name="Turbo", kind="turbo",
                                   price="50", rate_multiplier=2)
        session.commit()
    add_user(cabinet_ctx, company.account_id, "buh", "accountant")
    with cabinet_ctx.Session() as session:
        _token, secret = api_tokens.create(session, user_id(cabinet_ctx, "buh"), name="1c",
                                           actor="test")
        session.commit()
    client = app.test_client()
    before = snapshot(cabinet_ctx)
    response = client.post(f"/api/v1/accounts/{company.account_id}/turbo",
                           json={"request_id": "r" * 10},
                           headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 403
    assert response.json == {"error": "the accountant role may not change the service"}
    assert snapshot(cabinet_ctx) == before
