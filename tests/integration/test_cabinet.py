"""The subscriber cabinet through Flask's test client, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import stat
import urllib.request

import pytest

from cabinet.app import CabinetServer, create_app
from tests.conftest import make_context
from tests.integration.cabinet_helpers import (  # noqa: F401 (fixtures)
    app, cabinet_ctx, client, csrf_token, log_in, seed_network_session, seed_subscriber)


def test_anonymous_visitor_is_sent_to_the_login_form(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


def test_login_shows_balance_number_tariff_and_sessions(client, cabinet_ctx):
    subscriber = seed_subscriber(cabinet_ctx, balance="1234.5")
    seed_network_session(cabinet_ctx, subscriber.account_id, framed_ip="100.64.1.7",
                         started_at=dt.datetime(2026, 11, 20, 9, 0),
                         stopped_at=dt.datetime(2026, 11, 20, 10, 0),
                         octets_in=2_000_000, octets_out=1_500_000_000)

    response = log_in(client, subscriber.login, subscriber.password, lang="en")
    assert response.status_code == 302
    page = client.get("/")

    assert page.status_code == 200
    assert "1,234.50" in page.text
    assert subscriber.number in page.text
    assert "100 Mbit/s" in page.text and "50 Mbit/s" in page.text
    assert "100.64.1.7" in page.text
    assert "1.5 GB" in page.text and "2.0 MB" in page.text
    # 09:00 UTC is 12:00 in Moscow, the default operator time zone.
    assert "12:00" in page.text


def test_russian_is_the_default_and_english_is_one_click_away(client, cabinet_ctx):
    subscriber = seed_subscriber(cabinet_ctx, balance="500")
    log_in(client, subscriber.login, subscriber.password)
    page = client.get("/")
    assert "Баланс" in page.text and "500,00" in page.text

    client.post("/lang", data={"lang": "en", "next": "/", "csrf_token": csrf_token(page.text)})
    page = client.get("/")
    assert "Balance" in page.text and "500.00" in page.text and "Баланс" not in page.text


@pytest.mark.parametrize("login, password", [("known", "wrong-password"),
                                             ("nobody", "correct-horse-1")])
def test_wrong_login_or_password_is_refused(client, cabinet_ctx, login, password):
    seed_subscriber(cabinet_ctx, login="known")
    response = log_in(client, login, password, lang="en")
    assert response.status_code == 401
    assert "Wrong login or password." in response.text
    assert client.get("/").status_code == 302


def test_post_without_csrf_token_is_rejected(client, cabinet_ctx):
    subscriber = seed_subscriber(cabinet_ctx)
    refused = client.post("/login", data={"login": subscriber.login,
                                          "password": subscriber.password})
    assert refused.status_code == 400
    assert client.get("/").status_code == 302

    log_in(client, subscriber.login, subscriber.password)
    assert client.post("/logout").status_code == 400
    assert client.post("/logout", data={"csrf_token": "forged"}).status_code == 400
    assert client.get("/").status_code == 200  # still logged in


def test_a_subscriber_sees_only_their_own_account(client, cabinet_ctx):
    mine = seed_subscriber(cabinet_ctx, balance="111")
    other = seed_subscriber(cabinet_ctx, balance="999", name="Other Person")
    seed_network_session(cabinet_ctx, mine.account_id, framed_ip="100.64.0.1",
                         started_at=dt.datetime(2026, 11, 1))
    seed_network_session(cabinet_ctx, other.account_id, framed_ip="100.64.0.2",
                         started_at=dt.datetime(2026, 11, 1))

    log_in(client, mine.login, mine.password, lang="en")
    page = client.get("/").text

    assert "111.00" in page and "100.64.0.1" in page
    assert "999.00" not in page and "100.64.0.2" not in page
    assert other.number not in page and "Other Person" not in page


def test_logout_ends_the_session(client, cabinet_ctx):
    subscriber = seed_subscriber(cabinet_ctx)
    log_in(client, subscriber.login, subscriber.password)
    page = client.get("/")
    response = client.post("/logout", data={"csrf_token": csrf_token(page.text)})
    assert response.status_code == 302
    assert client.get("/").status_code == 302


def test_a_session_cookie_replayed_after_logout_is_refused(app, cabinet_ctx):
    subscriber = seed_subscriber(cabinet_ctx)
    browser, thief = app.test_client(), app.test_client()
    log_in(browser, subscriber.login, subscriber.password)
    name = app.config["SESSION_COOKIE_NAME"]
    thief.set_cookie(name, browser.get_cookie(name).value)
    assert thief.get("/").status_code == 200  # the copy works while logged in
    page = browser.get("/")
    browser.post("/logout", data={"csrf_token": csrf_token(page.text)})
    assert thief.get("/").status_code == 302  # and not after the logout
    assert browser.get("/").status_code == 302


def test_logout_is_not_possible_with_get(client, cabinet_ctx):
    subscriber = seed_subscriber(cabinet_ctx)
    log_in(client, subscriber.login, subscriber.password)
    assert client.get("/logout").status_code == 405
    assert client.get("/").status_code == 200


def test_language_switch_never_redirects_off_site(client):
    page = client.get("/login")
    response = client.post("/lang", data={"lang": "en", "next": "//evil.example/",
                                          "csrf_token": csrf_token(page.text)})
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


def test_pages_carry_security_headers_and_strict_cookies(client, cabinet_ctx):
    subscriber = seed_subscriber(cabinet_ctx)
    response = log_in(client, subscriber.login, subscriber.password)
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    page = client.get("/")
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["Cache-Control"] == "no-store"
    assert "<script" not in page.text and "style=" not in page.text


def test_secure_cookies_setting_marks_the_cookie_secure(db_url, tmp_path):
    context = make_context(db_url, data_dir=tmp_path, cabinet_secure_cookies="true")
    try:
        client = create_app(context, testing=True).test_client()
        response = client.get("/login")
        assert "Secure" in response.headers["Set-Cookie"]
        assert "Strict-Transport-Security" in response.headers
    finally:
        context.dispose()


def test_generated_secret_key_survives_a_restart(cabinet_ctx, tmp_path):
    subscriber = seed_subscriber(cabinet_ctx)
    first = create_app(cabinet_ctx).test_client()
    log_in(first, subscriber.login, subscriber.password)

    key_file = tmp_path / "cabinet_secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    restarted = create_app(cabinet_ctx)
    assert restarted.secret_key == first.application.secret_key
    # The session cookie from before the restart still works.
    second = restarted.test_client()
    second.set_cookie("abonent_session", first.get_cookie("abonent_session").value)
    assert second.get("/").status_code == 200


def test_configured_secret_key_wins(db_url, tmp_path):
    context = make_context(db_url, data_dir=tmp_path, cabinet_secret_key="k" * 40)
    try:
        assert create_app(context).secret_key == "k" * 40
        assert not (tmp_path / "cabinet_secret_key").exists()
    finally:
        context.dispose()


def test_cabinet_server_serves_over_http_and_stops(cabinet_ctx):
    server = CabinetServer(cabinet_ctx, host="127.0.0.1", port=0).start()
    try:
        with urllib.request.urlopen(f"{server.url}/login", timeout=5) as response:
            assert response.status == 200
            assert b"csrf_token" in response.read()
    finally:
        server.stop()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{server.url}/login", timeout=2)
