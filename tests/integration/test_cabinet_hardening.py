"""Issue 13 (hardening), the cabinet's part: the client address behind a
proxy and the attempt limits, the Server header, the favicon."""

from __future__ import annotations

import logging
import urllib.error
import urllib.request

import pytest

from cabinet.app import CabinetServer, create_app
from config.settings import SettingsError
from tests.conftest import make_context
from tests.integration.cabinet_helpers import csrf_token, seed_subscriber

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
    context = make_context(db_url, data_dir=tmp_path, cabinet_trusted_proxies=value)
    try:
        with pytest.raises(SettingsError, match="cabinet.trusted_proxies"):
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
