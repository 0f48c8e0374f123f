"""What keeps a cabinet page cheap must not cost a guarantee: the login's
cookie already carries the CSRF secret, GET and HEAD skip Flask-Limiter
because every limit is on a POST, the templates' csrf_token() is
Flask-WTF's token."""

from __future__ import annotations

from tests.integration.cabinet_helpers import (  # noqa: F401 (fixtures)
    app, cabinet_ctx, client, csrf_token, log_in, seed_subscriber)


def test_the_login_cookie_carries_the_csrf_secret(app, cabinet_ctx):
    subscriber = seed_subscriber(cabinet_ctx)
    browser = app.test_client()
    response = log_in(browser, subscriber.login, subscriber.password)
    assert response.status_code == 302
    cookie = response.headers["Set-Cookie"].split(";")[0]
    # A client that keeps the login's cookie: the pages neither re-sign the
    # session nor make a new secret, and their tokens are good.
    script = app.test_client(use_cookies=False)
    page = script.get("/", headers={"Cookie": cookie})
    assert page.status_code == 200
    assert "Set-Cookie" not in page.headers
    assert "Set-Cookie" not in script.get("/", headers={"Cookie": cookie}).headers
    answer = script.post("/lang", headers={"Cookie": cookie},
                         data={"lang": "en", "next": "/", "csrf_token": csrf_token(page.text)})
    assert answer.status_code == 302


def test_a_token_from_before_the_login_is_refused_after_it(app, cabinet_ctx):
    subscriber = seed_subscriber(cabinet_ctx)
    browser = app.test_client()
    before = csrf_token(browser.get("/login").text)
    assert log_in(browser, subscriber.login, subscriber.password).status_code == 302
    answer = browser.post("/lang", data={"lang": "en", "next": "/", "csrf_token": before})
    assert answer.status_code == 400


def test_every_rate_limit_is_on_a_post(app):
    """cabinet.app exempts GET and HEAD from Flask-Limiter (a request filter);
    a limit on a GET, or a default one, would need that changed."""
    manager = app.extensions["abonent_limiter"].limit_manager
    assert not list(manager._default_limits) and not list(manager._application_limits)
    decorated = [limit for limits in manager._decorated_limits.values() for limit in limits]
    assert len(decorated) >= 7  # login x2, voucher x2, forgot x2, reset
    for limit in decorated:
        assert limit.methods and set(limit.methods) <= {"post"}, limit


def test_the_templates_csrf_token_is_flask_wtfs(app):
    """cabinet.app's csrf_token() keeps its serializer; the token is still
    Flask-WTF's: it validates, and the forms of the page reuse it."""
    from flask import g
    from flask_wtf.csrf import generate_csrf, validate_csrf

    with app.test_request_context("/"):
        token = app.jinja_env.globals["csrf_token"]()
        validate_csrf(token)
        assert g.csrf_token == token and generate_csrf() == token


def test_get_and_head_skip_flask_limiters_hook_and_posts_do_not(app, client, monkeypatch):
    """Flask-Limiter's before_request hook (it ends in the limiter's
    private __evaluate_limits) runs for a POST, not for a GET or HEAD."""
    from flask import request

    limiter = app.extensions["abonent_limiter"]
    seen = []
    evaluate = limiter._Limiter__evaluate_limits
    monkeypatch.setattr(limiter, "_Limiter__evaluate_limits",
                        lambda *args: seen.append(request.method) or evaluate(*args))
    client.get("/")    # a page without limits of its own
    client.head("/")
    assert seen == []
    client.post("/login", data={"login": "nobody", "password": "x"})
    assert seen and set(seen) == {"POST"}
