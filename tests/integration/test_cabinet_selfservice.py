"""Self-service in the cabinet: password reset by e-mail (a real SMTP server
on loopback), notification settings, service requests and their CLI."""

from __future__ import annotations

import datetime as dt
import email.header
import hashlib
import html
import json
import logging
import re
import time
from decimal import Decimal

import pytest
from sqlalchemy import func, select, update

from rating import ledger
from rating import requests as service_requests
from rating.accounts import DomainError, create_cabinet_user
from rating.models import Account, CabinetUser, OperationLog
from rating.selfservice import PasswordReset
from tests.conftest import Inbox, free_tcp_port, make_context
from tests.integration.cabinet_helpers import (  # noqa: F401 (fixtures)
    app, client, csrf_token, log_in, logged_in, post_form, seed_subscriber, set_language)

CSRF_VALUE = re.compile(r'name="csrf_token" value="[^"]+"')
PUBLIC_URL = "https://my.isp.example"
LINK = re.compile(r"(https?://\S+)(/reset\?token=([A-Za-z0-9_\-]+))")


@pytest.fixture
def cabinet_ctx(db_url, tmp_path, inbox):
    # The cabinet's mail goes to the loopback SMTP server above.
    context = make_context(db_url, data_dir=tmp_path, smtp_host="127.0.0.1",
                           smtp_port=inbox.port, smtp_sender="billing@isp.test",
                           cabinet_public_url=PUBLIC_URL)
    yield context
    context.dispose()


_text = Inbox.text


def _subject(message) -> str:
    return str(email.header.make_header(email.header.decode_header(message["Subject"])))


def _ask_for_link(client, identifier):
    return post_form(client, "/forgot", {"identifier": identifier})


def _link_from(message):
    match = LINK.search(_text(message))
    assert match, _text(message)
    return match.group(2), match.group(3)


def _with_mail(ctx, balance="500", **account):
    subscriber = seed_subscriber(ctx, balance=balance, email="ivan@example.ru", **account)
    return subscriber


def _count(ctx, model, *where):
    with ctx.Session() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where))


# -- password reset ----------------------------------------------------------------

def test_reset_link_by_mail_works_once_with_a_negative_balance(app, client, cabinet_ctx, inbox,
                                                               caplog):
    caplog.set_level(logging.DEBUG)
    subscriber = _with_mail(cabinet_ctx, balance=None)
    with cabinet_ctx.Session() as session:
        ledger.post(session, account_id=subscriber.account_id, amount="-250", kind="fee",
                    key="fee:test", author="test")
        session.commit()
        assert session.get(Account, subscriber.account_id).balance == Decimal("-250.00")
    other_device = app.test_client()
    assert log_in(other_device, subscriber.login, subscriber.password).status_code == 302

    set_language(client, "en")
    login_page = client.get("/login").text
    assert 'href="/forgot"' in login_page and "Forgot password?" in login_page
    response = _ask_for_link(client, subscriber.login)
    assert response.status_code == 302 and response.headers["Location"].endswith("/forgot/sent")
    assert "a link to set a new password is on its way" in client.get("/forgot/sent").text

    (message,) = inbox.wait(1)
    assert message["To"] == "ivan@example.ru" and message["From"] == "billing@isp.test"
    assert _subject(message) == "Password reset for the subscriber cabinet"
    assert subscriber.login in _text(message) and "30 minutes" in _text(message)
    path, token = _link_from(message)
    with cabinet_ctx.Session() as session:
        row = session.scalars(select(PasswordReset)).one()
        # Only the hash is stored.
        assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
        assert token not in str([row.token_hash, row.user_id, row.created_at])
        assert row.expires_at - row.created_at == dt.timedelta(minutes=30)

    form = client.get(path)
    assert form.status_code == 200 and f">{subscriber.login}<" in form.text
    response = client.post("/reset", data={"token": token, "new": "fresh-password-9",
                                           "confirm": "fresh-password-9",
                                           "csrf_token": csrf_token(form.text)})
    assert response.status_code == 302 and response.headers["Location"].endswith("/login")
    assert "Your password has been changed" in client.get("/login").text

    assert other_device.get("/").status_code == 302  # old sessions died
    fresh = app.test_client()
    assert log_in(fresh, subscriber.login, subscriber.password).status_code == 401
    assert log_in(fresh, subscriber.login, "fresh-password-9").status_code == 302
    with cabinet_ctx.Session() as session:
        assert session.scalar(select(CabinetUser.session_epoch)
                              .where(CabinetUser.login == subscriber.login)) == 2
        assert session.scalars(select(PasswordReset.used_at)).one() is not None
        logged = session.scalars(select(OperationLog.action)
                                 .where(OperationLog.account_id == subscriber.account_id)).all()
        details = session.scalars(select(OperationLog.details)).all()
    assert "password.reset" in logged and "password_reset.request" in logged
    assert token not in str(details) and "fresh-password-9" not in str(details)
    assert "Пароль сброшен по ссылке из письма" in fresh.get("/history").text

    # The same link again: refused, with a sentence, and nothing changes.
    again = client.get(path)
    assert again.status_code == 400
    assert "This password reset link has already been used" in again.text
    replay = client.post("/reset", data={"token": token, "new": "another-pass-7",
                                         "confirm": "another-pass-7",
                                         "csrf_token": csrf_token(client.get("/forgot").text)})
    assert replay.status_code == 400 and "already been used" in replay.text
    assert log_in(app.test_client(), subscriber.login, "fresh-password-9").status_code == 302
    # Neither the token nor the password reached a log of ours (the test's
    # SMTP server logs what it receives: that is the mailbox, not us).
    ours = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("mail"))
    assert "cabinet.reset_mail_sent" in ours and "cabinet.password_reset" in ours
    assert token not in ours and "fresh-password-9" not in ours


def test_an_expired_link_is_refused(client, cabinet_ctx, inbox):
    subscriber = _with_mail(cabinet_ctx)
    set_language(client, "en")
    _ask_for_link(client, subscriber.login)
    path, token = _link_from(inbox.wait(1)[0])
    with cabinet_ctx.Session() as session:
        session.execute(update(PasswordReset).values(
            expires_at=dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
            - dt.timedelta(seconds=1)))
        session.commit()
    page = client.get(path)
    assert page.status_code == 400 and "This password reset link has expired" in page.text
    assert 'data-test="forgot-again"' in page.text
    response = client.post("/reset", data={"token": token, "new": "fresh-password-9",
                                           "confirm": "fresh-password-9",
                                           "csrf_token": csrf_token(page.text)})
    assert response.status_code == 400 and "has expired" in response.text
    assert log_in(client, subscriber.login, subscriber.password).status_code == 302


def test_links_name_the_public_url_not_the_host_header(db_url, tmp_path, inbox):
    from cabinet.app import create_app
    context = make_context(db_url, data_dir=tmp_path, smtp_port=inbox.port,
                           cabinet_public_url="https://my.isp.example/")
    try:
        subscriber = _with_mail(context)
        browser = create_app(context, testing=True).test_client()
        page = browser.get("/forgot", headers={"Host": "evil.example"})
        browser.post("/forgot", headers={"Host": "evil.example"},
                     data={"identifier": subscriber.login, "csrf_token": csrf_token(page.text)})
        (message,) = inbox.wait(1)
        assert LINK.search(_text(message)).group(1) == "https://my.isp.example"
        assert "evil.example" not in _text(message)
    finally:
        context.dispose()


@pytest.mark.parametrize("host", [None, "evil.example"])
def test_without_a_public_url_no_reset_mail_goes_out(db_url, tmp_path, inbox, host):
    """Without cabinet.public_url the link could only come from the Host
    header, which the sender chooses: the form says the reset is not
    available, nothing is stored and no mail is sent, whatever the Host."""
    from cabinet.app import create_app, startup_warnings
    context = make_context(db_url, data_dir=tmp_path, smtp_port=inbox.port)
    try:
        assert any("cabinet.public_url" in w for w in startup_warnings(context.settings))
        subscriber = _with_mail(context)
        app = create_app(context, testing=True)
        browser = app.test_client()
        headers = {"Accept-Language": "en", **({"Host": host} if host else {})}
        page = browser.get("/forgot", headers=headers)
        assert page.status_code == 200
        assert 'data-test="forgot-unavailable"' in page.text
        assert "Password reset by e-mail is not available" in page.text
        response = browser.post("/forgot", headers=headers,
                                data={"identifier": subscriber.login,
                                      "csrf_token": csrf_token(browser.get(
                                          "/login", headers=headers).text)})
        assert response.status_code == 503
        assert 'data-test="forgot-unavailable"' in response.text
        time.sleep(0.3)
        assert inbox.messages == []
        assert _count(context, PasswordReset) == 0
        # In Russian too.
        assert "Сброс пароля по электронной почте" in app.test_client().get("/forgot").text
    finally:
        context.dispose()


def test_a_public_url_that_is_no_url_stops_the_start(db_url, tmp_path):
    from cabinet.app import create_app
    from config.settings import SettingsError
    context = make_context(db_url, data_dir=tmp_path, cabinet_public_url="my.isp.example")
    try:
        with pytest.raises(SettingsError, match="cabinet.public_url"):
            create_app(context, testing=True)
    finally:
        context.dispose()


def test_switching_the_language_keeps_the_reset_form(client, cabinet_ctx, inbox):
    subscriber = _with_mail(cabinet_ctx)
    _ask_for_link(client, subscriber.login)
    path, token = _link_from(inbox.wait(1)[0])
    page = client.get(path).text
    next_path = html.unescape(re.search(r'name="next" value="([^"]+)"', page).group(1))
    assert next_path == path
    switched = client.post("/lang", data={"lang": "en", "next": next_path,
                                          "csrf_token": csrf_token(page)})
    assert switched.headers["Location"] == path
    assert "Set the new password" in client.get(path).text


def test_a_made_up_token_is_refused_in_russian(client, cabinet_ctx):
    page = client.get("/reset?token=" + "A" * 43)
    assert page.status_code == 400
    assert "Эта ссылка для сброса пароля недействительна" in page.text
    assert client.get("/reset").status_code == 400


def test_the_account_number_finds_the_owner_and_the_mail_is_in_russian(client, cabinet_ctx,
                                                                       inbox):
    subscriber = _with_mail(cabinet_ctx)
    with cabinet_ctx.Session() as session:
        account = session.get(Account, subscriber.account_id)
        create_cabinet_user(session, account, login="a-viewer", password="viewer-pass-1",
                            role="viewer", email="viewer@example.ru")
        session.commit()
    response = _ask_for_link(client, subscriber.number)
    assert response.status_code == 302
    (message,) = inbox.wait(1)
    assert message["To"] == "ivan@example.ru"
    assert _subject(message) == "Сброс пароля личного кабинета"
    assert subscriber.login in _text(message) and "один раз" in _text(message)


def test_the_answer_does_not_tell_which_logins_exist(app, cabinet_ctx, inbox):
    with_mail = _with_mail(cabinet_ctx)
    without_mail = seed_subscriber(cabinet_ctx)
    answers = []
    for identifier in (with_mail.login, without_mail.login, "nobody-here", "99999999"):
        browser = app.test_client()
        set_language(browser, "en")
        response = _ask_for_link(browser, identifier)
        page = CSRF_VALUE.sub("", browser.get("/forgot/sent").text)
        answers.append((response.status_code, response.headers.get("Location"), page))
    assert len(set(answers)) == 1
    time.sleep(0.3)
    assert len(inbox.wait(1)) == 1
    assert _count(cabinet_ctx, PasswordReset) == 1


def test_asking_again_within_a_minute_mails_once(client, cabinet_ctx, inbox):
    subscriber = _with_mail(cabinet_ctx)
    for _ in range(3):
        assert _ask_for_link(client, subscriber.login).status_code == 302
    time.sleep(0.3)
    assert len(inbox.wait(1)) == 1


def test_the_forgot_form_is_rate_limited(client, cabinet_ctx):
    statuses = [_ask_for_link(client, "someone").status_code for _ in range(6)]
    assert statuses == [302] * 5 + [429]
    # Another login from the same address may still ask.
    assert _ask_for_link(client, "someone-else").status_code == 302
    # Even without a CSRF token the attempts count.
    statuses = [client.post("/forgot", data={"identifier": "x"}).status_code for _ in range(6)]
    assert statuses == [400] * 5 + [429]


@pytest.mark.parametrize("new, confirm, message", [
    ("short", "short", "The new password must be 8 to 256 characters long"),
    ("fresh-password-9", "other-password-9", "The two new passwords differ."),
    (None, None, "The new password must differ from the current one"),
])
def test_password_rules_apply_and_keep_the_link(client, cabinet_ctx, inbox, new, confirm,
                                                message):
    subscriber = _with_mail(cabinet_ctx)
    set_language(client, "en")
    _ask_for_link(client, subscriber.login)
    path, token = _link_from(inbox.wait(1)[0])
    form = client.get(path)
    response = client.post("/reset", data={"token": token, "new": new or subscriber.password,
                                           "confirm": confirm or subscriber.password,
                                           "csrf_token": csrf_token(form.text)})
    assert response.status_code == 400 and message in response.text
    assert client.get(path).status_code == 200  # the link still works
    with cabinet_ctx.Session() as session:
        assert session.scalar(select(CabinetUser.session_epoch)
                              .where(CabinetUser.login == subscriber.login)) == 1


def test_the_access_log_masks_the_token(app, cabinet_ctx, caplog):
    import urllib.error
    import urllib.request

    from cabinet.app import CabinetServer
    caplog.set_level(logging.INFO, logger="werkzeug")
    with CabinetServer(cabinet_ctx, host="127.0.0.1", port=free_tcp_port(), app=app) as server:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{server.url}/reset?token=s3cr3t-T0ken&x=1", timeout=10)
        refused.value.close()
        assert refused.value.code == 400
    lines = [r.getMessage() for r in caplog.records if r.name == "werkzeug"]
    assert any("/reset?token=***&x=1" in line for line in lines), lines
    assert "s3cr3t" not in caplog.text
    # gunicorn's access log (off in contrib/gunicorn.conf.py) is masked too.
    caplog.set_level(logging.INFO, logger="gunicorn.access")
    logging.getLogger("gunicorn.access").info('%(h)s "%(r)s" %(s)s', {
        "h": "127.0.0.1", "r": "GET /reset?token=s3cr3t-T0ken HTTP/1.1", "s": "200"})
    assert "s3cr3t" not in caplog.text and "/reset?token=*** HTTP/1.1" in caplog.text


# -- notification settings --------------------------------------------------------

@pytest.fixture
def subscriber(cabinet_ctx):
    return seed_subscriber(cabinet_ctx, balance="500")


def _notify_state(ctx, account_id):
    with ctx.Session() as session:
        account = session.get(Account, account_id)
        return (account.notify_channels, account.low_balance_threshold,
                account.telegram_chat_id)


def test_notification_settings_are_saved_and_logged(logged_in, cabinet_ctx, subscriber):
    page = logged_in.get("/notifications")
    assert page.status_code == 200 and "Notifications" in page.text
    assert re.search(r'<input[^>]*checked[^>]*value="email"|<input[^>]*value="email"[^>]*checked',
                     page.text)
    post_form(logged_in, "/contacts", {"email": "ivan@example.ru", "phone": "+79123456789"})
    response = logged_in.post("/notifications", data={
        "channels": ["sms", "telegram", "email"], "low_balance_threshold": "150.50",
        "telegram_chat_id": " 123456789 ", "csrf_token": csrf_token(page.text)})
    assert response.status_code == 302
    assert "Notification settings saved." in logged_in.get("/notifications").text
    assert _notify_state(cabinet_ctx, subscriber.account_id) == (
        ["email", "sms", "telegram"], Decimal("150.50"), "123456789")
    history = logged_in.get("/history").text
    assert "Notification settings changed" in history and "150.50" in history

    # Everything off, no threshold: allowed.
    response = post_form(logged_in, "/notifications", {"low_balance_threshold": "",
                                                       "telegram_chat_id": ""})
    assert response.status_code == 302
    assert _notify_state(cabinet_ctx, subscriber.account_id) == ([], None, None)
    assert post_form(logged_in, "/notifications", {}).status_code == 302
    assert "Nothing changed." in logged_in.get("/notifications").text


@pytest.mark.parametrize("data, message", [
    ({"channels": ["sms"]}, "Notices by SMS need a mobile phone number in the contacts"),
    ({"channels": ["telegram"]}, "Notices in Telegram need a Telegram chat id"),
    ({"channels": ["pigeon"]}, "A notification channel must be e-mail, SMS or Telegram"),
    ({"telegram_chat_id": "@ivan"}, "A Telegram chat id is a number like 123456789"),
    ({"low_balance_threshold": "-5"}, "The low-balance threshold must be between 0 and 100000"),
    ({"low_balance_threshold": "200000"}, "must be between 0 and 100000"),
    ({"low_balance_threshold": "1.005"}, "must be an amount like 100 or 99.50"),
    ({"channels": ["email"]}, "Notices by e-mail need an e-mail address in the contacts"),
])
def test_bad_notification_settings_are_refused(logged_in, cabinet_ctx, subscriber, data,
                                               message):
    before = _notify_state(cabinet_ctx, subscriber.account_id)
    response = post_form(logged_in, "/notifications", data)
    assert response.status_code == 400 and message in response.text
    assert _notify_state(cabinet_ctx, subscriber.account_id) == before
    assert _count(cabinet_ctx, OperationLog, OperationLog.action == "notify.update") == 0


def test_notification_errors_in_russian(client, cabinet_ctx, subscriber):
    log_in(client, subscriber.login, subscriber.password)
    response = post_form(client, "/notifications", {"channels": ["sms"]})
    assert "Для SMS-уведомлений укажите мобильный телефон в контактах" in response.text


# -- a viewer and CSRF -------------------------------------------------------------

def test_a_viewer_may_look_but_not_change(client, cabinet_ctx, subscriber):
    with cabinet_ctx.Session() as session:
        account = session.get(Account, subscriber.account_id)
        create_cabinet_user(session, account, login="viewer1", password="viewer-pass-1",
                            role="viewer")
        session.commit()
    log_in(client, "viewer1", "viewer-pass-1", lang="en")
    page = client.get("/notifications").text
    assert 'data-test="read-only"' in page and 'data-test="save-notifications"' not in page
    assert post_form(client, "/notifications", {"low_balance_threshold": "10"}).status_code == 403
    page = client.get("/requests").text
    assert 'data-test="read-only"' in page and 'data-test="send-request"' not in page
    response = client.post("/requests", data={"topic": "other", "text": "hello",
                                              "request_id": "x" * 16,
                                              "csrf_token": csrf_token(page)})
    assert response.status_code == 403
    assert _notify_state(cabinet_ctx, subscriber.account_id)[1] is None
    assert _count(cabinet_ctx, service_requests.ServiceRequest) == 0


def test_every_new_post_refuses_a_missing_csrf_token(logged_in, cabinet_ctx, subscriber):
    before = _notify_state(cabinet_ctx, subscriber.account_id)
    for path, data in (("/notifications", {"low_balance_threshold": "10"}),
                       ("/requests", {"topic": "other", "text": "hi", "request_id": "x" * 16}),
                       ("/forgot", {"identifier": subscriber.login}),
                       ("/reset", {"token": "x" * 43, "new": "fresh-password-9",
                                   "confirm": "fresh-password-9"})):
        assert logged_in.post(path, data=data).status_code == 400, path
        assert logged_in.post(path, data={**data, "csrf_token": "forged"}).status_code == 400
    assert _notify_state(cabinet_ctx, subscriber.account_id) == before
    assert _count(cabinet_ctx, service_requests.ServiceRequest) == 0
    assert _count(cabinet_ctx, PasswordReset) == 0
    # And GET changes nothing on any of them.
    for path in ("/notifications", "/requests", "/forgot", "/forgot/sent", "/reset"):
        assert logged_in.get(path).status_code in (200, 400)
    assert logged_in.get("/forgot").status_code == 200


# -- service requests --------------------------------------------------------------

def test_a_request_goes_from_the_cabinet_to_the_operator_and_back(logged_in, cabinet_ctx,
                                                                  subscriber, abonent):
    page = logged_in.get("/requests")
    assert "No requests yet." in page.text
    form_id = re.search(r'name="request_id"[^>]*value="([^"]+)"', page.text).group(1)
    data = {"topic": "no_connection", "text": "  The light on the ONT is red.\nSince 9:00. ",
            "request_id": form_id, "csrf_token": csrf_token(page.text)}
    assert logged_in.post("/requests", data=data).status_code == 302
    # The same form sent twice (a double tap) adds one request.
    assert logged_in.post("/requests", data=data).status_code == 302
    listing = logged_in.get("/requests").text
    assert "Request No. 1 is registered" in listing
    assert "No connection" in listing and "The light on the ONT is red." in listing
    assert re.search(r'data-test="request-status">new<', listing)

    queue = json.loads(abonent("request", "list", "--status", "new", "--json").stdout)
    assert len(queue) == 1
    assert queue[0]["account"] == subscriber.number and queue[0]["topic"] == "no_connection"
    assert queue[0]["text"] == "The light on the ONT is red.\nSince 9:00."
    request_id = str(queue[0]["id"])
    table = abonent("request", "list").stdout
    assert "no_connection" in table and subscriber.number in table

    done = abonent("request", "set", request_id, "in_progress", "--answer",
                   "A technician comes today after 14:00.")
    assert f"request {request_id} of account {subscriber.number} is in_progress" in done.stdout
    listing = logged_in.get("/requests").text
    assert re.search(r'data-test="request-status">in progress<', listing)
    assert "A technician comes today after 14:00." in listing
    abonent("request", "set", request_id, "done", "--json")
    assert json.loads(abonent("request", "list", "--status", "new", "--json").stdout) == []
    (row,) = json.loads(abonent("request", "list", "--status", "done", "--json").stdout)
    assert row["answer"] == "A technician comes today after 14:00."  # kept
    history = logged_in.get("/history").text
    assert "Service request added" in history and "Service request updated" in history

    api = logged_in.get(f"/api/v1/accounts/{subscriber.account_id}/requests")
    assert api.status_code == 200 and api.json[0]["status"] == "done"
    logged_in.post("/lang", data={"lang": "ru", "next": "/requests",
                                  "csrf_token": csrf_token(logged_in.get("/requests").text)})
    assert re.search(r'data-test="request-status">выполнена<', logged_in.get("/requests").text)


@pytest.mark.parametrize("args, message", [
    (["request", "set", "999", "done"], "request 999 does not exist"),
    (["request", "set", "1", "closed"], "status must be one of new, in_progress, done, rejected"),
    (["request", "set", "one", "done"], "a request id is a number, not 'one'"),
    (["request", "list", "--status", "finished"], "status must be one of"),
    (["request", "list", "--account", "nope"], "account nope does not exist"),
    (["request", "set", "1", "done", "--answer", "x" * 2001], "at most 2000 characters"),
])
def test_request_cli_refuses_bad_input_with_one_sentence(abonent, cabinet_ctx, subscriber,
                                                         args, message):
    with cabinet_ctx.Session() as session:
        service_requests.create(session, subscriber.account_id, topic="other", text="hello",
                                request_id="form-000001", actor="cabinet:test")
        session.commit()
    result = abonent(*args, code=2)
    assert result.stderr.strip() == f"abonent: {message}" or message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    with cabinet_ctx.Session() as session:
        assert session.scalars(select(service_requests.ServiceRequest.status)).one() == "new"


@pytest.mark.parametrize("data, message", [
    ({"topic": "other", "text": "   "}, "Describe the request in 1 to 2000 characters"),
    ({"topic": "other", "text": "x" * 2001}, "Describe the request in 1 to 2000 characters"),
    ({"topic": "dragons", "text": "hello"}, "Choose the request&#39;s topic from the list"),
])
def test_bad_requests_are_refused(logged_in, cabinet_ctx, data, message):
    page = logged_in.get("/requests")
    form_id = re.search(r'name="request_id"[^>]*value="([^"]+)"', page.text).group(1)
    response = logged_in.post("/requests", data={**data, "request_id": form_id,
                                                 "csrf_token": csrf_token(page.text)})
    assert response.status_code == 400 and message in response.text
    assert _count(cabinet_ctx, service_requests.ServiceRequest) == 0


def test_requests_of_another_account_are_not_found(logged_in, cabinet_ctx, subscriber):
    other = seed_subscriber(cabinet_ctx)
    with cabinet_ctx.Session() as session:
        service_requests.create(session, other.account_id, topic="move", text="secret address",
                                request_id="form-000002", actor="cabinet:other")
        session.commit()
    assert logged_in.get(f"/api/v1/accounts/{other.account_id}/requests").status_code == 404
    assert logged_in.get(f"/api/v1/accounts/{subscriber.account_id}/requests").json == []
    assert "secret address" not in logged_in.get("/requests").text


def test_open_requests_are_capped(cabinet_ctx, subscriber):
    with cabinet_ctx.Session() as session:
        for n in range(service_requests.MAX_OPEN):
            service_requests.create(session, subscriber.account_id, topic="other",
                                    text=f"request {n}", request_id=f"form-{n:06d}",
                                    actor="cabinet:test")
        with pytest.raises(DomainError, match="10 open requests"):
            service_requests.create(session, subscriber.account_id, topic="other",
                                    text="one more", request_id="form-extra1", actor="t")
        first = service_requests.for_account(session, subscriber.account_id)[-1]
        service_requests.set_status(session, first.id, "done", actor="admin:test")
        row, created = service_requests.create(session, subscriber.account_id, topic="other",
                                               text="one more", request_id="form-extra1",
                                               actor="t")
        assert created and row.status == "new"


# -- the settings take effect; a link is spent once under concurrency ----------

def test_saved_settings_drive_the_low_balance_notices(logged_in, cabinet_ctx, subscriber):
    from rating import notify
    from rating.models import Notification
    post_form(logged_in, "/contacts", {"email": "ivan@example.ru"})
    response = post_form(logged_in, "/notifications", {
        "channels": ["email", "telegram"], "telegram_chat_id": "-100200300",
        "low_balance_threshold": "600"})
    assert response.status_code == 302
    with cabinet_ctx.Session() as session:
        assert notify.queue(session, dt.date(2026, 11, 23)) == 2
        session.commit()
        sent = {(n.channel, n.recipient, n.kind) for n in session.scalars(select(Notification))}
    assert sent == {("email", "ivan@example.ru", "low-balance"),
                    ("telegram", "-100200300", "low-balance")}


def test_two_tabs_spend_one_link_once(pg_url, tmp_path, monkeypatch):
    """PostgreSQL: the second tab's claim finds the link taken, even though
    it had checked the link before the first tab committed."""
    from rating import selfservice
    context = make_context(pg_url, data_dir=tmp_path)
    try:
        subscriber = seed_subscriber(context, email="ivan@example.ru")
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        with context.Session() as session:
            mail = selfservice.request_reset(session, subscriber.login, now, minutes=30,
                                             actor="test")
            session.commit()
        rules = selfservice.check_new_password
        interleaved = []

        def first_tab_wins_meanwhile(user, new):
            rules(user, new)
            if not interleaved:
                interleaved.append(True)
                with context.Session() as other:
                    selfservice.complete_reset(other, mail.token, "first-tab-pass", now,
                                               actor="test")
                    other.commit()

        monkeypatch.setattr(selfservice, "check_new_password", first_tab_wins_meanwhile)
        with context.Session() as session:
            with pytest.raises(selfservice.ResetLinkError, match="already been used"):
                selfservice.complete_reset(session, mail.token, "second-tab-pass", now,
                                           actor="test")
            session.rollback()
        with context.Session() as session:
            user = session.scalar(select(CabinetUser).where(
                CabinetUser.login == subscriber.login))
            assert user.session_epoch == 2
            from rating.passwords import verify_password
            assert verify_password("first-tab-pass", user.password_hash)
    finally:
        context.dispose()
