"""Family linking in the cabinet (issue 14): one login, several accounts,
a switcher between them; a login never reaches an account not linked to it."""

from __future__ import annotations

import json

from sqlalchemy import delete, select

from rating.models import Account, CabinetUser, CabinetUserAccount
from tests.integration.cabinet_helpers import (  # noqa: F401 (fixtures)
    app, cabinet_ctx, client, csrf_token, log_in, seed_subscriber)


def _link(ctx, login: str, account_id: int) -> None:
    with ctx.Session() as session:
        user = session.scalar(select(CabinetUser).where(CabinetUser.login == login))
        session.add(CabinetUserAccount(cabinet_user_id=user.id, account_id=account_id))
        session.commit()


def _switch(client, page_html: str, account_id) -> object:
    return client.post("/account/switch", data={"account_id": str(account_id), "next": "/",
                                                "csrf_token": csrf_token(page_html)})


def test_a_linked_login_switches_and_never_sees_another_account(client, cabinet_ctx):
    parent = seed_subscriber(cabinet_ctx, balance="111", login="parent")
    child = seed_subscriber(cabinet_ctx, balance="222", login="child")
    stranger = seed_subscriber(cabinet_ctx, balance="333", login="stranger")
    _link(cabinet_ctx, "parent", child.account_id)

    log_in(client, parent.login, parent.password, lang="en")
    page = client.get("/")
    assert f'data-test="account-number">{parent.number}<' in page.text
    assert 'data-test="account-switcher"' in page.text
    assert child.number in page.text and stranger.number not in page.text

    # Switch to the linked account: every page is now about it.
    assert _switch(client, page.text, child.account_id).status_code == 302
    page = client.get("/")
    assert f'data-test="account-number">{child.number}<' in page.text
    assert "222.00" in page.text
    history = client.get("/payments")
    assert history.status_code == 200 and "222.00" in history.text

    # An account not linked: refused, and the selection stays where it was.
    refused = _switch(client, page.text, stranger.account_id)
    assert refused.status_code == 404
    assert _switch(client, page.text, "not-a-number").status_code == 404
    page = client.get("/")
    assert f'data-test="account-number">{child.number}<' in page.text
    assert stranger.number not in page.text

    # The admin unlinks: the next request is back on the login's own account.
    with cabinet_ctx.Session() as session:
        session.execute(delete(CabinetUserAccount))
        session.commit()
    page = client.get("/")
    assert f'data-test="account-number">{parent.number}<' in page.text
    assert 'data-test="account-switcher"' not in page.text


def test_a_login_without_links_has_no_switcher(client, cabinet_ctx):
    alone = seed_subscriber(cabinet_ctx, login="alone")
    other = seed_subscriber(cabinet_ctx, login="other")
    log_in(client, alone.login, alone.password, lang="en")
    page = client.get("/")
    assert 'data-test="account-switcher"' not in page.text
    assert _switch(client, page.text, other.account_id).status_code == 404
    assert f'data-test="account-number">{alone.number}<' in client.get("/").text


# Every page a logged-in subscriber reaches from the tabs, and the plan's.
PAGES = ("/", "/payments", "/topup", "/promised", "/tariff", "/options", "/freeze",
         "/packages", "/sessions", "/traffic", "/contacts", "/notifications", "/requests",
         "/history", "/password", "/tokens")


def test_the_switcher_works_from_every_page_and_keeps_the_choice(client, cabinet_ctx):
    """From each page the switcher goes back to the same page, now about the
    chosen account; the choice holds on every page after it until switched
    again (issue 15)."""
    parent = seed_subscriber(cabinet_ctx, balance="111", login="mother")
    child = seed_subscriber(cabinet_ctx, balance="222", login="son")
    _link(cabinet_ctx, "mother", child.account_id)
    log_in(client, parent.login, parent.password, lang="en")

    def selected(html: str) -> int:
        import re
        found = re.findall(r'<option value="(\d+)" selected>', html)
        assert len(found) == 1, found
        return int(found[0])

    current = parent
    for path in PAGES:
        page = client.get(path)
        assert page.status_code == 200, path
        assert selected(page.text) == current.account_id, path
        wanted = child if current is parent else parent
        response = client.post("/account/switch", data={
            "account_id": str(wanted.account_id), "next": path,
            "csrf_token": csrf_token(page.text)})
        assert response.status_code == 302 and response.headers["Location"] == path, path
        page = client.get(path)
        assert page.status_code == 200 and selected(page.text) == wanted.account_id, path
        current = wanted
    # The choice is kept on every page until switched again.
    for path in PAGES:
        assert selected(client.get(path).text) == current.account_id, path
    balance = "222.00" if current is child else "111.00"
    assert balance in client.get("/").text and balance in client.get("/packages").text
    # A foreign "next" is not followed.
    page = client.get("/")
    response = client.post("/account/switch", data={
        "account_id": str(parent.account_id), "next": "//evil.example/",
        "csrf_token": csrf_token(page.text)})
    assert response.headers["Location"] == "/"
