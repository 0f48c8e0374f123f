"""The JSON API (/api/v1) and the API tokens page, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
from decimal import Decimal

import pytest
from openapi_schema_validator import OAS31Validator
from sqlalchemy import func, select, update

from cabinet.openapi import document
from rating import accounts, api_tokens, ledger, options
from rating.api_tokens import ApiToken
from rating.models import Account, LedgerEntry, OperationLog
from tests.integration.cabinet_helpers import (  # noqa: F401 (fixtures)
    app, cabinet_ctx, client, csrf_token, log_in, post_form, seed_network_session,
    seed_subscriber)

MONEY = re.compile(r"^-?[0-9]+\.[0-9]{2}$")
ISO_UTC = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$")
NEW_TOKEN = re.compile(r'data-test="new-token">(abt_[A-Za-z0-9_-]+)<')


@pytest.fixture
def subscriber(cabinet_ctx):
    return seed_subscriber(cabinet_ctx, balance="500")


def make_token(ctx, login, **params) -> str:
    with ctx.Session() as session:
        from rating.models import CabinetUser
        user_id = session.scalar(select(CabinetUser.id).where(CabinetUser.login == login))
        _token, secret = api_tokens.create(session, user_id, name=params.pop("name", "script"),
                                           actor="test", **params)
        session.commit()
    return secret


def add_user(ctx, account_id, login, role):
    with ctx.Session() as session:
        accounts.create_cabinet_user(session, session.get(Account, account_id), login=login,
                                     password="other-pass-1", role=role)
        session.commit()


def bearer(secret):
    return {"Authorization": f"Bearer {secret}"}


def matches(schema_name, body):
    """The answer agrees with the OpenAPI description's schema."""
    spec = document()
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": spec["components"]}
    OAS31Validator(schema).validate(body)


def _turbo_on_sale(ctx):
    with ctx.Session() as session:
        options.create_option_type(session, code="turbo", name="Turbo", kind="turbo",
                                   price="50", duration_hours=24, rate_multiplier=2)
        session.commit()


# -- the tokens page --------------------------------------------------------------

def test_a_token_is_shown_once_and_stored_only_as_a_hash(client, cabinet_ctx, subscriber):
    log_in(client, subscriber.login, subscriber.password, lang="en")
    page = client.get("/tokens")
    assert page.status_code == 200 and "No tokens yet." in page.text
    made = client.post("/tokens", data={"name": "Accounting", "scope": "owner",
                                        "expires": "30", "password": subscriber.password,
                                        "csrf_token": csrf_token(page.text)})
    assert made.status_code == 200
    secret = NEW_TOKEN.search(made.text).group(1)
    assert len(secret) >= 40 and "shown only this once" in made.text
    assert "Set-Cookie" not in made.headers or secret not in made.headers["Set-Cookie"]

    again = client.get("/tokens").text
    assert secret not in again and secret[:12] in again and "Accounting" in again
    with cabinet_ctx.Session() as session:
        row = session.scalars(select(ApiToken)).one()
        assert row.token_hash == hashlib.sha256(secret.encode()).hexdigest()
        assert row.prefix == secret[:12] and row.scope == "owner"
        assert row.expires_at - row.created_at == dt.timedelta(days=30)
        logged = session.scalars(select(OperationLog.details)
                                 .where(OperationLog.action == "api_token.create")).all()
    assert len(logged) == 1 and secret not in str(logged) and secret[:12] in str(logged)
    assert client.get("/api/v1/me", headers=bearer(secret)).status_code == 200
    assert "API token created" in client.get("/history").text


def test_a_token_cannot_have_more_rights_than_its_user(client, cabinet_ctx, subscriber):
    add_user(cabinet_ctx, subscriber.account_id, "viewer1", "viewer")
    log_in(client, "viewer1", "other-pass-1", lang="en")
    page = client.get("/tokens").text
    assert 'value="owner"' not in page and 'value="viewer"' in page
    refused = client.post("/tokens", data={"name": "x", "scope": "owner", "expires": "",
                                           "csrf_token": csrf_token(page)})
    assert refused.status_code == 400
    with cabinet_ctx.Session() as session:
        assert session.scalar(select(func.count()).select_from(ApiToken)) == 0
    with pytest.raises(accounts.DomainError):
        make_token(cabinet_ctx, "viewer1", scope="accountant")


def test_an_empty_name_is_refused(client, cabinet_ctx, subscriber):
    log_in(client, subscriber.login, subscriber.password, lang="en")
    page = client.get("/tokens").text
    response = client.post("/tokens", data={"name": "", "scope": "owner", "expires": "",
                                            "csrf_token": csrf_token(page)})
    assert response.status_code == 400 and "new-token" not in response.text


def test_revoked_token_is_refused_and_only_its_owner_may_revoke(app, client, cabinet_ctx,
                                                                subscriber):
    secret = make_token(cabinet_ctx, subscriber.login)
    other = seed_subscriber(cabinet_ctx)
    with cabinet_ctx.Session() as session:
        token_id = session.scalar(select(ApiToken.id))

    stranger = app.test_client()
    log_in(stranger, other.login, other.password)
    page = stranger.get("/tokens").text
    assert stranger.post(f"/tokens/{token_id}/revoke",
                         data={"csrf_token": csrf_token(page)}).status_code == 404
    assert client.get("/api/v1/me", headers=bearer(secret)).status_code == 200

    log_in(client, subscriber.login, subscriber.password, lang="en")
    page = client.get("/tokens").text
    assert client.post(f"/tokens/{token_id}/revoke").status_code == 400  # no CSRF token
    response = client.post(f"/tokens/{token_id}/revoke", data={"csrf_token": csrf_token(page)})
    assert response.status_code == 302
    assert "The token is revoked." in client.get("/tokens").text
    refused = app.test_client().get("/api/v1/me", headers=bearer(secret))
    assert refused.status_code == 401
    assert refused.json == {"error": "the token is unknown, revoked or expired"}
    assert "Bearer" in refused.headers["WWW-Authenticate"]


def test_expired_token_is_refused(app, cabinet_ctx, subscriber):
    secret = make_token(cabinet_ctx, subscriber.login, expires_in_days=1)
    client = app.test_client()
    assert client.get("/api/v1/me", headers=bearer(secret)).status_code == 200
    with cabinet_ctx.Session() as session:
        session.execute(update(ApiToken).values(
            expires_at=dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
            - dt.timedelta(seconds=1)))
        session.commit()
    assert client.get("/api/v1/me", headers=bearer(secret)).status_code == 401


@pytest.mark.parametrize("header", ["Bearer abt_not-a-real-token", "Bearer ", "Basic dXNlcjpw",
                                    "abt_no_scheme", "Bearer"])
def test_bad_authorization_headers_are_refused(app, cabinet_ctx, subscriber, header):
    make_token(cabinet_ctx, subscriber.login)
    response = app.test_client().get(f"/api/v1/accounts/{subscriber.account_id}",
                                     headers={"Authorization": header})
    assert response.status_code == 401
    assert set(response.json) == {"error"}


def test_a_bearer_header_wins_over_a_cookie(client, cabinet_ctx, subscriber):
    """A logged-in browser with a bad token is not let in by its cookie."""
    log_in(client, subscriber.login, subscriber.password)
    assert client.get("/api/v1/me").status_code == 200
    assert client.get("/api/v1/me", headers=bearer("abt_wrong")).status_code == 401


def test_the_token_never_reaches_a_log(app, client, cabinet_ctx, subscriber, caplog):
    caplog.set_level(logging.DEBUG)
    log_in(client, subscriber.login, subscriber.password, lang="en")
    page = client.get("/tokens").text
    made = client.post("/tokens", data={"name": "Logs", "scope": "viewer", "expires": "",
                                        "csrf_token": csrf_token(page)})
    secret = NEW_TOKEN.search(made.text).group(1)
    app.test_client().get("/api/v1/me", headers=bearer(secret))
    app.test_client().get("/api/v1/me", headers=bearer(secret[:-2] + "xx"))
    assert caplog.records
    assert not [r for r in caplog.records if secret[12:] in r.getMessage()]


# -- the actions ------------------------------------------------------------------

def test_me_and_the_account_overview(app, cabinet_ctx, subscriber):
    secret = make_token(cabinet_ctx, subscriber.login)
    client = app.test_client()
    me = client.get("/api/v1/me", headers=bearer(secret))
    assert me.json["account_id"] == subscriber.account_id and me.json["role"] == "owner"
    assert me.json["token"] == {"prefix": secret[:12]}
    assert "Set-Cookie" not in me.headers  # a bearer call makes no session
    matches("Me", me.json)

    overview = client.get(f"/api/v1/accounts/{subscriber.account_id}", headers=bearer(secret))
    assert overview.status_code == 200
    body = overview.json
    matches("Account", body)
    assert body["balance"] == "500.00" and body["number"] == subscriber.number
    assert body["tariff"]["fee"] == "600.00" and body["tariff"]["rate_down_kbps"] == 100_000
    assert body["speed"] == {"profile": "normal", "rate_down_kbps": 100_000,
                             "rate_up_kbps": 50_000, "until": None}
    # 600.00 a month, charged on the 1st: 500.00 runs out on the next 1st.
    runway = body["runway"]
    assert runway["needed"] == "0.00" and runway["monthly_cost"] == "600.00"
    assert runway["runs_out_on"].endswith("-01") and runway["days_left"] >= 1
    assert runway["next"][0] == {"day": runway["runs_out_on"], "profile": "suspended"}


def test_sessions_of_a_month(app, cabinet_ctx, subscriber):
    seed_network_session(cabinet_ctx, subscriber.account_id, framed_ip="100.64.10.1",
                         started_at=dt.datetime(2026, 10, 5, 8), octets_out=10_000_000,
                         octets_in=2_000, stopped_at=dt.datetime(2026, 10, 5, 9))
    seed_network_session(cabinet_ctx, subscriber.account_id, framed_ip="100.64.11.1",
                         started_at=dt.datetime(2026, 11, 5, 8))
    secret = make_token(cabinet_ctx, subscriber.login, scope="viewer")
    client = app.test_client()
    url = f"/api/v1/accounts/{subscriber.account_id}/sessions"
    october = client.get(url + "?month=2026-10", headers=bearer(secret)).json
    matches("Sessions", october)
    assert [s["framed_ip"] for s in october["sessions"]] == ["100.64.10.1"]
    assert october["sessions"][0] == {
        "started_at": "2026-10-05T08:00:00Z", "stopped_at": "2026-10-05T09:00:00Z",
        "framed_ip": "100.64.10.1", "octets_down": 10_000_000, "octets_up": 2_000,
        "terminate_cause": None}
    # October in Moscow starts at 21:00 UTC the day before.
    assert october["start"] == "2026-09-30T21:00:00Z" and october["total_down"] == 10_000_000
    november = client.get(url + "?month=2026-11", headers=bearer(secret)).json
    assert [s["stopped_at"] for s in november["sessions"]] == [None]
    bad = client.get(url + "?month=October", headers=bearer(secret))
    assert bad.status_code == 400 and bad.json == {"error": "a month must look like 2026-11"}


def test_money_flow_of_a_period_adds_up(app, cabinet_ctx, subscriber):
    with cabinet_ctx.Session() as session:
        account = session.get(Account, subscriber.account_id)
        accounts.add_payment(session, account, "300", external_id="bank-42")
        ledger.post(session, account_id=account.id, amount="-20.50", kind="fee",
                    key="fee:nov", author="test")
        for key, moment in ((f"payment:manual:seed-{account.number}", dt.datetime(2026, 10, 1)),
                            ("payment:manual:bank-42", dt.datetime(2026, 11, 10, 10)),
                            ("fee:nov", dt.datetime(2026, 11, 30, 10))):
            session.execute(update(LedgerEntry).where(LedgerEntry.idempotency_key == key)
                            .values(created_at=moment))
        session.commit()
    secret = make_token(cabinet_ctx, subscriber.login)
    url = f"/api/v1/accounts/{subscriber.account_id}/payments?from=2026-11-01&to=2026-11-30"
    body = app.test_client().get(url, headers=bearer(secret)).json
    matches("Statement", body)
    assert (body["opening"], body["closing"]) == ("500.00", "779.50")
    assert [(e["kind"], e["amount"], e["balance_after"]) for e in body["entries"]] == [
        ("payment", "300.00", "800.00"), ("fee", "-20.50", "779.50")]
    assert body["entries"][0]["created_at"] == "2026-11-10T10:00:00Z"
    assert Decimal(body["opening"]) + sum(Decimal(e["amount"]) for e in body["entries"]) \
        == Decimal(body["closing"])
    assert all(MONEY.match(body[k]) for k in ("opening", "closing", "credits", "debits"))
    backward = app.test_client().get(
        f"/api/v1/accounts/{subscriber.account_id}/payments?from=2026-11-30&to=2026-11-01",
        headers=bearer(secret))
    assert backward.status_code == 400 and "end after it starts" in backward.json["error"]


def test_promised_payment_is_credited_once(app, cabinet_ctx):
    broke = seed_subscriber(cabinet_ctx, balance=None)
    secret = make_token(cabinet_ctx, broke.login)
    client = app.test_client()
    url = f"/api/v1/accounts/{broke.account_id}/promised"
    status = client.get(url, headers=bearer(secret)).json
    matches("PromisedStatus", status)
    assert status["available"] is True and status["max_amount"] == "500.00"

    first = client.post(url, json={"amount": "300.00"}, headers=bearer(secret))
    assert first.status_code == 201, first.json
    matches("PromisedResult", first.json)
    assert first.json["amount"] == "300.00" and first.json["balance"] == "300.00"
    assert ISO_UTC.match(first.json["due_at"])
    again = client.post(url, json={"amount": "300.00"}, headers=bearer(secret))
    assert again.status_code == 200 and again.json["created"] is False
    with cabinet_ctx.Session() as session:
        assert session.get(Account, broke.account_id).balance == Decimal("300.00")
        actors = session.scalars(select(OperationLog.actor)
                                 .where(OperationLog.action == "promised.grant")).all()
    assert actors == [f"api:{broke.login}:{secret[:12]}"]
    status = client.get(url, headers=bearer(secret)).json
    assert status["available"] is False and status["recent"][0]["status"] == "open"


@pytest.mark.parametrize("body, message", [
    ({"amount": "600"}, "a promised payment must be between 0.01 and 500.00"),
    ({"amount": "12.345"}, 'amount must be a decimal string like "300.00"'),
    ({"amount": True}, 'amount must be a decimal string like "300.00"'),
    ({}, 'amount must be a decimal string like "300.00"'),
    ([1, 2], "the body must be a JSON object"),
])
def test_bad_promised_requests_change_nothing(app, cabinet_ctx, body, message):
    broke = seed_subscriber(cabinet_ctx, balance=None)
    secret = make_token(cabinet_ctx, broke.login)
    response = app.test_client().post(f"/api/v1/accounts/{broke.account_id}/promised",
                                      json=body, headers=bearer(secret))
    assert response.status_code == 400 and response.json["error"].startswith(message)
    with cabinet_ctx.Session() as session:
        assert session.get(Account, broke.account_id).balance == Decimal("0.00")


def test_a_json_number_is_read_as_a_decimal(app, cabinet_ctx):
    broke = seed_subscriber(cabinet_ctx, balance=None)
    secret = make_token(cabinet_ctx, broke.login)
    response = app.test_client().post(f"/api/v1/accounts/{broke.account_id}/promised",
                                      data='{"amount": 0.10}', headers=bearer(secret))
    assert response.status_code == 201 and response.json["amount"] == "0.10"


def test_broken_json_is_a_400(app, cabinet_ctx, subscriber):
    secret = make_token(cabinet_ctx, subscriber.login)
    response = app.test_client().put(f"/api/v1/accounts/{subscriber.account_id}/contacts",
                                     data="{not json", headers=bearer(secret))
    assert response.status_code == 400 and response.json == {"error": "the body must be JSON"}


def test_a_number_beyond_decimal_is_a_400_and_changes_nothing(app, cabinet_ctx):
    # Found by the cabinet_forms fuzzer: Decimal refuses an exponent this large.
    broke = seed_subscriber(cabinet_ctx, balance=None)
    secret = make_token(cabinet_ctx, broke.login)
    response = app.test_client().post(f"/api/v1/accounts/{broke.account_id}/promised",
                                      data='{"amount": 2.5e2222222222222222222222}',
                                      headers=bearer(secret))
    assert response.status_code == 400
    assert response.json == {"error": "a number in the body is out of range"}
    with cabinet_ctx.Session() as session:
        assert session.get(Account, broke.account_id).balance == Decimal("0.00")


def test_turbo_is_bought_once_per_request_id(app, cabinet_ctx):
    _turbo_on_sale(cabinet_ctx)
    buyer = seed_subscriber(cabinet_ctx, balance="120")
    secret = make_token(cabinet_ctx, buyer.login)
    client = app.test_client()
    url = f"/api/v1/accounts/{buyer.account_id}/turbo"
    assert client.post(url, json={}, headers=bearer(secret)).status_code == 400
    first = client.post(url, json={"request_id": "order-0001"}, headers=bearer(secret))
    assert first.status_code == 201, first.json
    matches("TurboResult", first.json)
    assert first.json["balance"] == "70.00" and first.json["speed"]["rate_down_kbps"] == 200_000
    retry = client.post(url, json={"request_id": "order-0001"}, headers=bearer(secret))
    assert retry.status_code == 200 and retry.json["created"] is False
    second = client.post(url, json={"request_id": "order-0002"}, headers=bearer(secret))
    assert second.status_code == 400 and second.json == {"error": "a turbo is already active"}
    with cabinet_ctx.Session() as session:
        assert session.get(Account, buyer.account_id).balance == Decimal("70.00")


def test_turbo_without_money_is_refused(app, cabinet_ctx):
    _turbo_on_sale(cabinet_ctx)
    poor = seed_subscriber(cabinet_ctx, balance="10")
    secret = make_token(cabinet_ctx, poor.login)
    response = app.test_client().post(f"/api/v1/accounts/{poor.account_id}/turbo",
                                      json={"request_id": "order-0001"}, headers=bearer(secret))
    assert response.status_code == 400
    assert response.json == {"error": "not enough money for this option"}


def test_contacts_read_and_change(app, cabinet_ctx, subscriber):
    secret = make_token(cabinet_ctx, subscriber.login)
    client = app.test_client()
    url = f"/api/v1/accounts/{subscriber.account_id}/contacts"
    assert client.get(url, headers=bearer(secret)).json == {
        "email": None, "phone": None, "phone_landline": None}
    saved = client.put(url, json={"email": "ivan@example.ru", "phone": "+7 (912) 345-67-89"},
                       headers=bearer(secret))
    assert saved.status_code == 200
    matches("ContactsResult", saved.json)
    assert saved.json == {"email": "ivan@example.ru", "phone": "+79123456789",
                          "phone_landline": None, "changed": ["email", "phone"]}
    # A field left out keeps its value; null clears one.
    cleared = client.put(url, json={"phone": None}, headers=bearer(secret)).json
    assert cleared["email"] == "ivan@example.ru" and cleared["phone"] is None

    for body, message in (({"email": "nope"}, "e-mail must look like name@example.ru"),
                          ({"fax": "1"}, "unknown field: fax"),
                          ({"phone": 79123456789}, "phone must be a string or null")):
        response = client.put(url, json=body, headers=bearer(secret))
        assert response.status_code == 400 and response.json == {"error": message}
    assert client.get(url, headers=bearer(secret)).json["email"] == "ivan@example.ru"


# -- who may do what --------------------------------------------------------------

CHANGES = [("post", "/promised", {"amount": "100"}), ("post", "/turbo", {"request_id": "r" * 8}),
           ("put", "/contacts", {"email": "x@example.ru"})]
READS = ["", "/sessions", "/payments", "/promised", "/contacts"]


@pytest.mark.parametrize("role, scope", [("viewer", None), ("owner", "viewer"),
                                         ("accountant", "viewer")])
def test_read_only_tokens_read_but_cannot_change(app, cabinet_ctx, subscriber, role, scope):
    _turbo_on_sale(cabinet_ctx)
    add_user(cabinet_ctx, subscriber.account_id, "user-" + role, role)
    secret = make_token(cabinet_ctx, "user-" + role, scope=scope)
    client = app.test_client()
    base = f"/api/v1/accounts/{subscriber.account_id}"
    for path in READS:
        assert client.get(base + path, headers=bearer(secret)).status_code == 200, path
    for method, path, body in CHANGES:
        response = getattr(client, method)(base + path, json=body, headers=bearer(secret))
        assert response.status_code == 403, path
        assert response.json == {"error": "the viewer role may only read"}
    with cabinet_ctx.Session() as session:
        account = session.get(Account, subscriber.account_id)
        assert (account.balance, account.email) == (Decimal("500.00"), None)


def test_a_lowered_role_lowers_its_tokens(app, cabinet_ctx, subscriber):
    from rating.models import CabinetUser
    add_user(cabinet_ctx, subscriber.account_id, "clerk", "accountant")
    secret = make_token(cabinet_ctx, "clerk")
    with cabinet_ctx.Session() as session:
        session.execute(update(CabinetUser).where(CabinetUser.login == "clerk")
                        .values(role="viewer"))
        session.commit()
    client = app.test_client()
    assert client.get("/api/v1/me", headers=bearer(secret)).json["role"] == "viewer"
    response = client.put(f"/api/v1/accounts/{subscriber.account_id}/contacts",
                          json={"email": "x@example.ru"}, headers=bearer(secret))
    assert response.status_code == 403


@pytest.mark.parametrize("role", ["owner", "accountant", "viewer"])
def test_a_foreign_account_is_not_found(app, cabinet_ctx, subscriber, role):
    other = seed_subscriber(cabinet_ctx, balance="999")
    add_user(cabinet_ctx, subscriber.account_id, "user-" + role, role)
    secret = make_token(cabinet_ctx, "user-" + role)
    client = app.test_client()
    for account_id in (other.account_id, 999_999):
        base = f"/api/v1/accounts/{account_id}"
        for path in READS:
            response = client.get(base + path, headers=bearer(secret))
            assert response.status_code == 404, path
            assert response.json == {"error": "not found"} and b"999" not in response.data
        for method, path, body in CHANGES:
            response = getattr(client, method)(base + path, json=body, headers=bearer(secret))
            assert response.status_code == 404, path
    with cabinet_ctx.Session() as session:
        assert session.get(Account, other.account_id).balance == Decimal("999.00")


def test_cookie_changes_need_the_csrf_header_and_bearer_ones_do_not(app, client, cabinet_ctx,
                                                                    subscriber):
    url = f"/api/v1/accounts/{subscriber.account_id}/contacts"
    log_in(client, subscriber.login, subscriber.password)
    refused = client.put(url, json={"email": "a@example.ru"})
    assert refused.status_code == 400 and "CSRF" in refused.json["error"]
    token = csrf_token(client.get("/contacts").text)
    accepted = client.put(url, json={"email": "a@example.ru"}, headers={"X-CSRFToken": token})
    assert accepted.status_code == 200
    secret = make_token(cabinet_ctx, subscriber.login)
    fresh = app.test_client()
    assert fresh.put(url, json={"email": "b@example.ru"},
                     headers=bearer(secret)).status_code == 200


def test_anonymous_calls_get_401_json(client, subscriber):
    for method, path in (("get", "/api/v1/me"), ("post", f"/api/v1/accounts/"
                                                         f"{subscriber.account_id}/promised")):
        response = getattr(client, method)(path)
        assert response.status_code == 401 and response.json == {"error": "login required"}


def test_unknown_paths_and_methods_answer_json(app, cabinet_ctx, subscriber):
    secret = make_token(cabinet_ctx, subscriber.login)
    client = app.test_client()
    missing = client.get("/api/v1/nothing-here", headers=bearer(secret))
    assert missing.status_code == 404 and missing.json == {"error": "not found"}
    wrong = client.delete(f"/api/v1/accounts/{subscriber.account_id}", headers=bearer(secret))
    assert wrong.status_code == 405 and wrong.json == {"error": "method not allowed"}


def test_each_token_is_rate_limited_on_its_own(app, cabinet_ctx, subscriber):
    app.config["ABONENT_API_RATE_LIMIT"] = "5 per minute"
    first = make_token(cabinet_ctx, subscriber.login, name="one")
    second = make_token(cabinet_ctx, subscriber.login, name="two")
    client = app.test_client()
    statuses = [client.get("/api/v1/me", headers=bearer(first)).status_code for _ in range(6)]
    assert statuses == [200] * 5 + [429]
    limited = client.get("/api/v1/me", headers=bearer(first))
    assert limited.json["error"].startswith("too many requests")
    assert 1 <= int(limited.headers["Retry-After"]) <= 61
    assert client.get("/api/v1/me", headers=bearer(second)).status_code == 200


def test_money_is_never_a_json_number(app, cabinet_ctx, subscriber):
    secret = make_token(cabinet_ctx, subscriber.login)
    raw = app.test_client().get(f"/api/v1/accounts/{subscriber.account_id}",
                                headers=bearer(secret)).get_data(as_text=True)
    assert '"balance":"500.00"' in raw.replace(" ", "")
    assert not re.search(r'"(balance|credit_limit|fee)":\s*[0-9-]', raw)
