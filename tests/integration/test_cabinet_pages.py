"""The cabinet's pages beyond login: speed, contacts, password, sessions by
month, money flow with CSV, traffic graph, API scoping, rate limit, GET safety."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from decimal import Decimal

import pytest
from sqlalchemy import func, select, update

from collector.models import TrafficRollup
from config.db import utcnow
from rating import accounts, cabinet_ops, ledger
from rating.models import (Account, AccountOption, CabinetUser, LedgerEntry, OperationLog,
                           OptionType)
from tests.integration.cabinet_helpers import (  # noqa: F401 (fixtures)
    app, cabinet_ctx, client, csrf_token, log_in, logged_in, post_form, seed_network_session,
    seed_subscriber)


@pytest.fixture
def subscriber(cabinet_ctx):
    return seed_subscriber(cabinet_ctx, balance="500")


def _set(ctx, model, row_id, **values):
    with ctx.Session() as session:
        session.execute(update(model).where(model.id == row_id).values(**values))
        session.commit()


# -- why the speed ------------------------------------------------------------

@pytest.mark.parametrize("profile, title, speed_text", [
    ("normal", "Normal speed", "↓ 100 Mbit/s / ↑ 50 Mbit/s"),
    ("throttled", "Limited speed", "↓ 1 Mbit/s / ↑ 1 Mbit/s"),
    ("suspended", "Suspended", "no access"),
])
def test_dashboard_explains_the_speed(logged_in, cabinet_ctx, subscriber, profile, title,
                                      speed_text):
    _set(cabinet_ctx, Account, subscriber.account_id, profile=profile)
    page = logged_in.get("/").text
    assert f"Speed now: {title}" in page
    assert re.search(r'data-test="speed-now">\s*' + re.escape(speed_text), page)


def test_a_suspended_subscriber_behind_the_captive_portal_is_told_so(db_url, tmp_path):
    """policy.suspend_mode = redirect: the session goes on to the payment
    pages only, and "speed now" says that rather than "no access"."""
    from cabinet.app import create_app
    from tests.conftest import make_context
    context = make_context(db_url, data_dir=tmp_path, policy_suspend_mode="redirect")
    try:
        subscriber = seed_subscriber(context)
        _set(context, Account, subscriber.account_id, profile="suspended")
        client = create_app(context, testing=True).test_client()
        assert log_in(client, subscriber.login, subscriber.password, lang="en").status_code == 302
        page = client.get("/").text
        assert re.search(r'data-test="speed-now">\s*payment pages only', page), page
    finally:
        context.dispose()


def test_turbo_doubles_the_speed_until_it_ends(logged_in, cabinet_ctx, subscriber):
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    with cabinet_ctx.Session() as session:
        turbo = OptionType(code="turbo", name="Turbo", kind="turbo", price=Decimal("50"),
                           rate_multiplier=2)
        session.add(turbo)
        session.flush()
        session.add(AccountOption(account_id=subscriber.account_id, option_type_id=turbo.id,
                                  starts_at=now - dt.timedelta(hours=1),
                                  ends_at=now + dt.timedelta(hours=23)))
        session.commit()
    # The turbo stacks on the ladder's "normal": no profile of its own.
    page = logged_in.get("/").text
    assert "Speed now: Turbo" in page and "↓ 200 Mbit/s / ↑ 100 Mbit/s" in page


# -- contacts and history ----------------------------------------------------

def test_contacts_are_validated_saved_and_logged(logged_in, cabinet_ctx, subscriber):
    response = post_form(logged_in, "/contacts", {"email": "ivan@example.ru",
                                                  "phone": "+7 (912) 345-67-89",
                                                  "phone_landline": ""})
    assert response.status_code == 302
    with cabinet_ctx.Session() as session:
        account = session.get(Account, subscriber.account_id)
        assert (account.email, account.phone) == ("ivan@example.ru", "+79123456789")

    history = logged_in.get("/history").text
    assert "Contacts changed" in history and "+79123456789" in history


def test_pages_read_outside_a_transaction_and_forms_write_in_one(logged_in, cabinet_ctx,
                                                                  subscriber):
    """On PostgreSQL a GET's statements run on an autocommit connection (no
    BEGIN/ROLLBACK round trips); a POST's run in a transaction. SQLite
    begins its own transactions (config.db) and is left as it was."""
    from flask import request
    from sqlalchemy import event

    seen = []

    def record(connection, cursor, statement, *args):
        seen.append((request.method, connection.connection.dbapi_connection.autocommit
                     if connection.dialect.name == "postgresql" else None))

    event.listen(cabinet_ctx.engine, "before_cursor_execute", record)
    try:
        assert logged_in.get("/").status_code == 200
        response = post_form(logged_in, "/contacts", {"email": "ivan@example.ru",
                                                      "phone": "", "phone_landline": ""})
    finally:
        event.remove(cabinet_ctx.engine, "before_cursor_execute", record)
    # The dashboard's login, options and sessions SELECTs at least
    # (config.db.CompiledSelect fires the cursor events too).
    assert sum(1 for method, _ in seen if method == "GET") >= 3
    reads = {autocommit for method, autocommit in seen if method == "GET"}
    writes = {autocommit for method, autocommit in seen if method == "POST"}
    postgres = cabinet_ctx.engine.dialect.name == "postgresql"
    assert response.status_code == 302
    assert reads == ({True} if postgres else {None})
    assert writes == ({False} if postgres else {None})
    with cabinet_ctx.Session() as session:
        assert session.get(Account, subscriber.account_id).email == "ivan@example.ru"


@pytest.mark.parametrize("field, value, message", [
    ("email", "not-an-address", "E-mail must look like name@example.ru"),
    ("phone", "call me", "A phone number may hold only digits"),
    ("phone", "+7 12", "A phone number must have 5 to 15 digits"),
])
def test_bad_contacts_are_refused_and_change_nothing(logged_in, cabinet_ctx, subscriber,
                                                     field, value, message):
    data = {"email": "", "phone": "", "phone_landline": "", field: value}
    response = post_form(logged_in, "/contacts", data)
    assert response.status_code == 400
    assert message in response.text
    with cabinet_ctx.Session() as session:
        assert session.get(Account, subscriber.account_id).email is None
        assert session.scalar(select(func.count()).select_from(OperationLog)
                              .where(OperationLog.action == "contacts.update")) == 0


def test_a_viewer_cannot_change_contacts(client, cabinet_ctx, subscriber):
    with cabinet_ctx.Session() as session:
        account = session.get(Account, subscriber.account_id)
        accounts.create_cabinet_user(session, account, login="viewer1",
                                     password="viewer-pass-1", role="viewer")
        session.commit()
    log_in(client, "viewer1", "viewer-pass-1", lang="en")
    assert "Only the account's owner" in client.get("/contacts").text
    response = post_form(client, "/contacts", {"email": "x@example.ru"})
    assert response.status_code == 403


# -- password and sessions -----------------------------------------------------

def test_password_change_ends_other_sessions_but_not_this_one(app, logged_in, subscriber,
                                                              cabinet_ctx):
    other_device = app.test_client()
    log_in(other_device, subscriber.login, subscriber.password)
    assert other_device.get("/").status_code == 200

    response = post_form(logged_in, "/password", {"current": subscriber.password,
                                                  "new": "brand-new-pass", "confirm":
                                                  "brand-new-pass"})
    assert response.status_code == 302
    assert logged_in.get("/").status_code == 200
    assert other_device.get("/").status_code == 302

    fresh = app.test_client()
    assert log_in(fresh, subscriber.login, subscriber.password).status_code == 401
    assert log_in(fresh, subscriber.login, "brand-new-pass").status_code == 302
    with cabinet_ctx.Session() as session:
        assert session.scalar(select(CabinetUser.session_epoch)
                              .where(CabinetUser.login == subscriber.login)) == 2
        details = session.scalars(select(OperationLog.details)
                                  .where(OperationLog.action == "password.change")).all()
    assert len(details) == 1 and "brand-new-pass" not in str(details)
    assert "Password changed" in logged_in.get("/history").text


@pytest.mark.parametrize("current, new, confirm, message", [
    ("wrong-password", "brand-new-pass", "brand-new-pass", "The current password is wrong"),
    (None, "short", "short", "The new password must be 8 to 256 characters long"),
    (None, "brand-new-pass", "other-new-pass", "The two new passwords differ."),
])
def test_bad_password_change_is_refused(logged_in, subscriber, cabinet_ctx, current, new,
                                        confirm, message):
    response = post_form(logged_in, "/password", {"current": current or subscriber.password,
                                                  "new": new, "confirm": confirm})
    assert response.status_code == 400
    assert message in response.text
    with cabinet_ctx.Session() as session:
        assert session.scalar(select(CabinetUser.session_epoch)
                              .where(CabinetUser.login == subscriber.login)) == 1


def test_log_out_on_every_other_device(app, logged_in, subscriber):
    other_device = app.test_client()
    log_in(other_device, subscriber.login, subscriber.password)
    page = logged_in.get("/password")
    response = logged_in.post("/sessions/end-all", data={"csrf_token": csrf_token(page.text)})
    assert response.status_code == 302
    assert logged_in.get("/").status_code == 200
    assert other_device.get("/").status_code == 302


# -- sessions by month -------------------------------------------------------

def test_sessions_page_shows_one_month(logged_in, cabinet_ctx, subscriber):
    seed_network_session(cabinet_ctx, subscriber.account_id, framed_ip="100.64.10.1",
                         started_at=dt.datetime(2026, 10, 5, 8), octets_out=10_000_000,
                         stopped_at=dt.datetime(2026, 10, 5, 9))
    seed_network_session(cabinet_ctx, subscriber.account_id, framed_ip="100.64.11.1",
                         started_at=dt.datetime(2026, 11, 5, 8),
                         stopped_at=dt.datetime(2026, 11, 5, 9))
    october = logged_in.get("/sessions?month=2026-10").text
    assert "100.64.10.1" in october and "100.64.11.1" not in october
    assert "10.0 MB" in october
    november = logged_in.get("/sessions?month=2026-11").text
    assert "100.64.11.1" in november and "100.64.10.1" not in november

    bad = logged_in.get("/sessions?month=October")
    assert bad.status_code == 400 and "A month must look like 2026-11" in bad.text


# -- money flow ----------------------------------------------------------------

def _seed_ledger(ctx, account_id):
    """500 seed payment (Oct 1), fee -20 (Oct 31), payment 300 (Nov 10), fee -20 (Nov 30)."""
    with ctx.Session() as session:
        account = session.get(Account, account_id)
        accounts.add_payment(session, account, "300", external_id="bank-42")
        # An operator's reason reaches the statement as written.
        ledger.post(session, account_id=account_id, amount="-20", kind="correction",
                    key="fee:oct", author="test", memo="=HYPERLINK(\"x\")", memo_code="charge",
                    memo_args={"reason": "=HYPERLINK(\"x\")"})
        ledger.post(session, account_id=account_id, amount="-20", kind="fee", key="fee:nov",
                    author="test")
        times = {f"payment:manual:seed-{account.number}": dt.datetime(2026, 10, 1, 10),
                 "fee:oct": dt.datetime(2026, 10, 31, 10),
                 "payment:manual:bank-42": dt.datetime(2026, 11, 10, 10),
                 "fee:nov": dt.datetime(2026, 11, 30, 10)}
        for key, moment in times.items():
            session.execute(update(LedgerEntry).where(LedgerEntry.idempotency_key == key)
                            .values(created_at=moment))
        session.commit()


def test_money_flow_for_a_period(logged_in, cabinet_ctx, subscriber):
    _seed_ledger(cabinet_ctx, subscriber.account_id)
    page = logged_in.get("/payments?from=2026-11-01&to=2026-11-30").text
    assert re.search(r'data-test="opening">₽480.00<', page)
    assert re.search(r'data-test="closing">₽760.00<', page)
    assert "₽300.00" in page and "-₽20.00" in page
    assert "Subscription fee" in page and "Payment" in page


def test_money_flow_csv_adds_up(logged_in, cabinet_ctx, subscriber):
    _seed_ledger(cabinet_ctx, subscriber.account_id)
    response = logged_in.get("/payments.csv?from=2026-10-01&to=2026-11-30")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert f"statement-{subscriber.number}-2026-10-01-2026-11-30.csv" in \
        response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))
    opening, lines, closing = rows[1], rows[2:-1], rows[-1]
    assert opening[1] == "Opening balance" and opening[3] == "0.00"
    assert [line[2] for line in lines] == ["500.00", "-20.00", "300.00", "-20.00"]
    assert closing[3] == "760.00"
    assert Decimal(opening[3]) + sum(Decimal(line[2]) for line in lines) == Decimal(closing[3])
    # A memo that a spreadsheet would run as a formula is defused.
    assert lines[1][4].startswith("'=")


def test_money_flow_refuses_a_backward_period(logged_in):
    response = logged_in.get("/payments?from=2026-11-30&to=2026-11-01")
    assert response.status_code == 400
    assert "The period must end after it starts" in response.text
    assert logged_in.get("/payments.csv?from=garbage").status_code == 400


# -- traffic graph -------------------------------------------------------------

def test_traffic_graph_draws_daily_volume(logged_in, cabinet_ctx, subscriber):
    with cabinet_ctx.Session() as session:
        for day, octets in ((3, 4_000_000_000), (4, 1_000_000_000)):
            for minute in (0, 5):
                start = dt.datetime(2026, 11, day, 12, minute)
                session.add(TrafficRollup(account_id=subscriber.account_id,
                                          interval_start=start, direction="in",
                                          bytes=octets // 2, packets=1, source="netflow"))
                # The same traffic as RADIUS counted it: must not be added.
                session.add(TrafficRollup(account_id=subscriber.account_id,
                                          interval_start=start, direction="in",
                                          bytes=octets // 2, packets=1, source="radius"))
        session.commit()
    page = logged_in.get("/traffic?month=2026-11").text
    assert "<svg" in page and "Traffic by day" in page
    assert "5.0 GB" in page  # the month's total, NetFlow only
    heights = {day: float(re.search(rf'data-day="2026-11-{day:02d}">.*?class="down" x="[^"]+" '
                                    rf'y="[^"]+" width="[^"]+" height="([^"]+)"', page).group(1))
               for day in (3, 4, 5)}
    assert heights[5] == 0
    assert heights[3] == pytest.approx(4 * heights[4], rel=0.01)
    assert page.count('class="down"') == 30


# -- scoping, limits and safety --------------------------------------------------

def test_api_answers_404_for_a_foreign_account(logged_in, cabinet_ctx, subscriber):
    other = seed_subscriber(cabinet_ctx, balance="999")
    own = logged_in.get(f"/api/v1/accounts/{subscriber.account_id}")
    assert own.status_code == 200 and own.json["balance"] == "500.00"
    foreign = logged_in.get(f"/api/v1/accounts/{other.account_id}")
    assert foreign.status_code == 404 and b"999" not in foreign.data
    assert logged_in.get("/api/v1/accounts/999999").status_code == 404


def test_api_needs_a_login(client, subscriber):
    response = client.get(f"/api/v1/accounts/{subscriber.account_id}")
    assert response.status_code == 401 and response.json == {"error": "login required"}


def test_login_attempts_are_rate_limited(client, cabinet_ctx):
    statuses = [client.post("/login", data={"login": "x", "password": "y"}).status_code
                for _ in range(11)]
    assert statuses[:10] == [400] * 10
    assert statuses[10] == 429
    # Showing the form is not limited; another login from the same address
    # (subscribers behind one CGNAT address) is not either.
    assert client.get("/login").status_code == 200
    assert client.post("/login", data={"login": "z", "password": "y"}).status_code == 400


def test_login_limit_counts_only_failures(client, cabinet_ctx, subscriber):
    for _ in range(11):
        assert log_in(client, subscriber.login, subscriber.password).status_code == 302
        page = client.get("/")
        client.post("/logout", data={"csrf_token": csrf_token(page.text)})


# "No GET changes anything" walks every route of the app, for every role,
# in tests/integration/test_cabinet_routes.py.


def test_one_address_has_a_ceiling_across_logins(client):
    statuses = [client.post("/login", data={"login": f"guess{n}", "password": "y"}).status_code
                for n in range(101)]
    assert set(statuses[:100]) == {400}
    assert statuses[100] == 429


# -- promised payment ------------------------------------------------------------

def _balance(ctx, account_id):
    with ctx.Session() as session:
        return session.get(Account, account_id).balance


def test_promised_payment_is_credited_once(client, cabinet_ctx):
    broke = seed_subscriber(cabinet_ctx, balance=None)
    log_in(client, broke.login, broke.password, lang="en")
    response = post_form(client, "/promised", {"amount": "300"})
    assert response.status_code == 302
    assert "A promised payment of 300.00 is credited" in client.get("/promised").text
    # The same form sent again (a double tap) credits nothing more.
    assert post_form(client, "/promised", {"amount": "300"}).status_code in (302, 400)
    assert _balance(cabinet_ctx, broke.account_id) == Decimal("300.00")
    with cabinet_ctx.Session() as session:
        kinds = session.scalars(select(LedgerEntry.kind)
                                .where(LedgerEntry.account_id == broke.account_id)).all()
    assert kinds == ["promised"]
    assert "Promised payment taken" in client.get("/history").text


@pytest.mark.parametrize("amount, message", [
    ("600", "A promised payment must be between 0.01 and 500.00"),
    ("-5", "A promised payment must be between 0.01 and 500.00"),
])
def test_promised_payment_limits_come_from_rating(client, cabinet_ctx, amount, message):
    broke = seed_subscriber(cabinet_ctx, balance=None)
    log_in(client, broke.login, broke.password, lang="en")
    response = post_form(client, "/promised", {"amount": amount})
    assert response.status_code == 400 and message in response.text
    assert _balance(cabinet_ctx, broke.account_id) == Decimal("0.00")


def test_promised_payment_says_why_not_before_asking(logged_in, cabinet_ctx, subscriber):
    page = logged_in.get("/promised").text
    assert "A promised payment is available when the balance is below 100.00" in page
    assert 'data-test="take-promised"' not in page
    assert post_form(logged_in, "/promised", {"amount": "100"}).status_code == 400
    assert _balance(cabinet_ctx, subscriber.account_id) == Decimal("500.00")


def test_promised_payment_in_russian(client, cabinet_ctx):
    broke = seed_subscriber(cabinet_ctx, balance=None)
    log_in(client, broke.login, broke.password)
    response = post_form(client, "/promised", {"amount": "900"})
    assert "Обещанный платёж может быть от 0,01 до 500,00" in response.text


def test_turbo_is_bought_once_from_the_dashboard(client, cabinet_ctx):
    from rating import options
    with cabinet_ctx.Session() as session:
        options.create_option_type(session, code="turbo", name="Turbo", kind="turbo",
                                   price="50", duration_hours=24, rate_multiplier=2)
        session.commit()
    buyer = seed_subscriber(cabinet_ctx, balance="120")
    log_in(client, buyer.login, buyer.password, lang="en")
    page = client.get("/").text
    assert "Turbo ×2 for 24 h — ₽50.00" in page
    request_id = re.search(r'name="request_id" type="hidden" value="([^"]+)"', page).group(1)
    form = {"csrf_token": csrf_token(page), "request_id": request_id}
    assert client.post("/turbo", data=form).status_code == 302
    assert client.post("/turbo", data=form).status_code == 302  # a double tap
    assert _balance(cabinet_ctx, buyer.account_id) == Decimal("70.00")
    page = client.get("/").text
    assert 'data-test="buy-turbo"' not in page and "Turbo is on until" in page
    assert client.post("/turbo", data={"csrf_token": csrf_token(page)}).status_code == 400
    with cabinet_ctx.Session() as session:
        account = session.get(Account, buyer.account_id)
        assert account.profile == "normal"  # the ladder's verdict; the turbo stacks on it
        assert cabinet_ops.speed_now(session, account, utcnow()).profile == "turbo"


def test_turbo_without_money_is_refused_in_russian(client, cabinet_ctx):
    from rating import options
    with cabinet_ctx.Session() as session:
        options.create_option_type(session, code="turbo", name="Turbo", kind="turbo",
                                   price="50", duration_hours=24, rate_multiplier=2)
        session.commit()
    poor = seed_subscriber(cabinet_ctx, balance="10")
    log_in(client, poor.login, poor.password)
    page = client.get("/").text
    request_id = re.search(r'name="request_id" type="hidden" value="([^"]+)"', page).group(1)
    client.post("/turbo", data={"csrf_token": csrf_token(page), "request_id": request_id})
    assert "Недостаточно денег для этой услуги" in client.get("/").text
    assert _balance(cabinet_ctx, poor.account_id) == Decimal("10.00")
