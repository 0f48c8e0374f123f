"""The overview answers "how long, what for, what now" on SQLite and
PostgreSQL: days left at the account's fees (tariff, packages, discounts),
the amount that restores a suspended account with the promised-payment
offer, the subscriber's services, and the operator's banners by audience,
period and turn."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
from sqlalchemy import select

from cabinet import periods
from config.db import utcnow
from rating import banners, fees, ledger, packages, promotions, runout
from rating.models import Account, PromisedPayment
from tests.factories import make_service, make_tariff
from tests.integration.cabinet_helpers import (  # noqa: F401 (fixtures)
    app, cabinet_ctx, client, csrf_token, log_in, logged_in, seed_subscriber)


@pytest.fixture
def subscriber(cabinet_ctx):
    with cabinet_ctx.Session() as session:
        make_tariff(session, name="Daily 310", fee="310.00", fee_period="daily")
        session.commit()
    return seed_subscriber(cabinet_ctx, balance="200", tariff="Daily 310")


def _today(ctx):
    return periods.local_today(ctx.settings.get("", "timezone"))


def _runway(page: str) -> tuple[str, str]:
    match = re.search(r'data-test="runway" data-days="(\d*)"(?: data-date="([\d-]+)")?', page)
    assert match, page
    return match.group(1), match.group(2)


def _debit(ctx, account_id, amount, key):
    with ctx.Session() as session:
        ledger.post(session, account_id=account_id, amount=Decimal(amount), kind="correction",
                    key=key, author="admin:test", memo="test debit")
        fees.apply_policies(session, account_id, account_id + 1)
        session.commit()


def test_days_left_follow_the_fees_packages_and_discounts(logged_in, cabinet_ctx, subscriber):
    today = _today(cabinet_ctx)
    tariff = runout.RecurringFee(Decimal("310.00"), "daily", stops_in=frozenset({"suspended"}))
    expected = runout.forecast(balance=Decimal("200.00"), credit_limit=Decimal(0),
                               fees=[tariff], today=today)
    page = logged_in.get("/").text
    assert _runway(page) == (str((expected.runs_out_on - today).days),
                             expected.runs_out_on.isoformat())
    assert "₽310.00 a month, charged daily" in page
    # The page names the last day of full service: the day before the cut.
    last = expected.runs_out_on - dt.timedelta(days=1)
    assert f"the money lasts through {last:%B} {last.day}, {last.year}." in page \
        or f"the money lasts through {last.day} {last:%B} {last.year}." in page
    assert re.search(r'data-test="next-step" data-profile="suspended"', page)

    # A daily package makes it sooner; a 100% discount on the tariff later.
    with cabinet_ctx.Session() as session:
        account = session.get(Account, subscriber.account_id)
        tv = packages.create(session, name="TV", fee="20.00", fee_period="daily")
        packages.switch(session, account, tv, True, today=today, actor="admin:test")
        promotions.add_discount(session, account, target="tariff", percent="100",
                                valid_from=today - dt.timedelta(days=1))
        balance = session.get(Account, subscriber.account_id).balance
        session.commit()
    expected = runout.forecast(
        balance=balance, credit_limit=Decimal(0),
        fees=[tariff, runout.RecurringFee(Decimal("20.00"), "daily", "package", tv.id,
                                          frozenset({"suspended"}))],
        discounts=[runout.DiscountTerms("tariff", Decimal(100), None,
                                        today - dt.timedelta(days=1), None)], today=today)
    page = logged_in.get("/").text
    assert _runway(page) == (str((expected.runs_out_on - today).days),
                             expected.runs_out_on.isoformat())
    assert 'data-test="packages">TV<' in page
    assert f"Fees this month: ₽{expected.monthly_cost:,.2f}" in page


def test_no_fees_no_run_out_date(client, cabinet_ctx):
    with cabinet_ctx.Session() as session:
        make_tariff(session, name="Free", fee="0")
        session.commit()
    user = seed_subscriber(cabinet_ctx, balance="5", tariff="Free")
    assert log_in(client, user.login, user.password, lang="en").status_code == 302
    page = client.get("/").text
    assert "No fees are charged, so the money does not run out." in page
    assert 'data-test="restore"' not in page


def test_a_suspended_subscriber_sees_the_amount_and_takes_a_promised_payment(
        app, logged_in, cabinet_ctx, subscriber):
    app.config["TESTPAY_ENABLED"] = True
    _debit(cabinet_ctx, subscriber.account_id, "-287.45", "debt-1")  # 200 - 287.45
    page = logged_in.get("/").text
    needed = re.search(r'data-test="needed" data-amount="([\d.]+)"', page)
    assert needed and Decimal(needed.group(1)) == Decimal("87.45")
    assert "₽87.45" in page and "Restore the service" in page
    assert 'data-test="topup-needed"' in page
    # The top-up page starts with the suggested amount (the debt and a month).
    link = re.search(r'href="(/topup\?amount=[\d.]+)" data-test="topup-needed"', page).group(1)
    assert re.search(r'data-test="topup-amount"[^>]*value="\d+\.00"|value="\d+\.00"[^>]*'
                     r'data-test="topup-amount"', logged_in.get(link).text)
    offer = re.search(r'id="promised-amount"[^>]*value="([\d.]+)"', page)
    assert offer and Decimal(offer.group(1)) == Decimal("88.00")  # whole roubles
    assert "Full service returns when the debt is paid; no fee is charged" in page

    response = logged_in.post("/promised", data={"amount": "88.00", "back": "overview",
                                                  "csrf_token": csrf_token(page)})
    assert response.status_code == 302 and response.headers["Location"].endswith("/")
    with cabinet_ctx.Session() as session:
        account = session.get(Account, subscriber.account_id)
        assert (account.balance, account.profile) == (Decimal("0.55"), "normal")
        assert session.scalar(select(PromisedPayment.amount)) == Decimal("88.00")
    page = logged_in.get("/").text
    assert 'data-test="restore"' not in page
    days, day = _runway(page)
    assert days == "1" and day == (_today(cabinet_ctx) + dt.timedelta(days=1)).isoformat()

    # A second one is refused by rating.promised's rule, and the page says why.
    _debit(cabinet_ctx, subscriber.account_id, "-50", "debt-2")
    page = logged_in.get("/").text
    assert 'data-test="promised-offer"' not in page
    assert re.search(r'data-test="promised-unavailable">[^<]*once in 30 days', page)


def test_a_debt_beyond_the_promised_limit_is_not_offered(logged_in, cabinet_ctx, subscriber):
    _debit(cabinet_ctx, subscriber.account_id, "-900", "debt-1")
    page = logged_in.get("/").text
    assert "would not cover the debt" in page and 'data-test="promised-offer"' not in page


def test_the_overview_lists_the_subscribers_services(logged_in, cabinet_ctx, subscriber):
    with cabinet_ctx.Session() as session:
        account = session.get(Account, subscriber.account_id)
        make_service(session, account, login="ivan-pppoe", pool="main")
        make_service(session, account, kind="ipoe", login=None, mac="00:11:22:33:44:55",
                     static_ipv4="192.0.2.10", ipv6_prefix="2001:db8:1::/56")
        session.commit()
    page = logged_in.get("/").text
    assert 'data-test="service-login">ivan-pppoe<' in page
    assert "dynamic (pool main)" in page and "192.0.2.10" in page
    assert "00:11:22:33:44:55" in page and "2001:db8:1::/56" in page


def test_banners_by_audience_period_and_turn(client, cabinet_ctx, app):
    now = utcnow()
    with cabinet_ctx.Session() as session:
        make_tariff(session, name="Home")
        make_tariff(session, name="Office")
        session.commit()
    home = seed_subscriber(cabinet_ctx, balance="500", tariff="Home")
    with cabinet_ctx.Session() as session:
        hour = dt.timedelta(hours=1)
        banners.add(session, title="For everyone", starts_at=now - hour, ends_at=now + hour)
        banners.add(session, title="Home news", body="New channels", audience="tariff",
                    tariff="Home", starts_at=now - hour)
        banners.add(session, title="Office news", audience="tariff", tariff="Office",
                    starts_at=now - hour)
        banners.add(session, title="Pay your debt", audience="debtors", starts_at=now - hour)
        banners.add(session, title="Ended", starts_at=now - 2 * hour, ends_at=now - hour)
        banners.add(session, title="Tomorrow", starts_at=now + 24 * hour)
        session.commit()
    assert log_in(client, home.login, home.password, lang="en").status_code == 302
    seen = set()
    for _ in range(6):
        seen |= set(re.findall(r'<h2 id="banner-title">([^<]+)</h2>', client.get("/").text))
    # Both of the Home subscriber's banners take turns; no other is shown.
    assert seen == {"For everyone", "Home news"}

    _debit(cabinet_ctx, home.account_id, "-600", "debt-1")
    seen = set()
    for _ in range(6):
        seen |= set(re.findall(r'<h2 id="banner-title">([^<]+)</h2>', client.get("/").text))
    assert seen == {"For everyone", "Home news", "Pay your debt"}


def test_banner_rules_refuse_bad_input(cabinet_ctx):
    from rating.validate import DomainError
    now = utcnow()
    with cabinet_ctx.Session() as session:
        with pytest.raises(DomainError, match="does not exist"):
            banners.add(session, title="x", audience="tariff", tariff="Nope", starts_at=now)
        with pytest.raises(DomainError, match="end after it starts"):
            banners.add(session, title="x", starts_at=now, ends_at=now)
        with pytest.raises(DomainError, match="must not be empty"):
            banners.add(session, title=" ", starts_at=now)
        with pytest.raises(DomainError, match="audience must be"):
            banners.parse_audience("tariff:")
        assert banners.listing(session) == []


LOGO = ('<svg xmlns="http://www.w3.org/2000/svg" width="28" height="28">'
        '<rect width="28" height="28" fill="#0b5394"/></svg>')


def test_branding_in_the_layout_served_locally(db_url, tmp_path):
    from cabinet.app import create_app
    from tests.conftest import make_context
    (tmp_path / "logo.svg").write_text(LOGO)
    ctx = make_context(db_url, data_dir=tmp_path, branding_name="Sibirnet",
                       branding_logo="logo.svg", branding_accent_color="#0b5394",
                       branding_header_color="#f1c232",
                       branding_contact="Support: 8 800 000-00-00, 24/7")
    try:
        client = create_app(ctx, testing=True).test_client()
        page = client.get("/login").text
        assert re.search(r'data-test="brand"><img[^>]*>Sibirnet</a>', page)
        assert 'data-test="brand-contact">Support: 8 800 000-00-00, 24/7<' in page
        logo = re.search(r'<img class="logo" src="(/brand/logo\?v=\w+)"', page).group(1)
        css = re.search(r'href="(/brand\.css\?v=\w+)"', page).group(1)
        # Every address the page loads is the cabinet's own.
        assert not re.search(r'(?:src|href)="(?:https?:)?//', page)
        served = client.get(logo)
        assert served.status_code == 200 and served.mimetype == "image/svg+xml"
        assert served.data.decode() == LOGO and "max-age" in served.headers["Cache-Control"]
        style = client.get(css)
        assert style.mimetype == "text/css" and "--accent: #0b5394" in style.text
        # A yellow bar gets dark text, not white.
        assert ".topbar { background: #f1c232; }" in style.text and "#1d2327" in style.text
    finally:
        ctx.dispose()


def test_no_branding_means_our_name_and_no_extra_requests(client):
    page = client.get("/login").text
    assert "/brand" not in page and 'data-test="brand-contact"' not in page
    assert client.get("/brand/logo").status_code == 404
    assert client.get("/brand.css").status_code == 404


def test_banner_audience_and_text_limits(cabinet_ctx):
    from rating.validate import DomainError
    with cabinet_ctx.Session() as session:
        assert banners.parse_audience("tariff: Home ") == ("tariff", "Home")
        assert banners.parse_audience("debtors") == ("debtors", None)
        with pytest.raises(DomainError, match="audience must be"):
            banners.parse_audience("all:x")
        with pytest.raises(DomainError, match="text must be at most 1000"):
            banners.add(session, title="x", body="y" * 1001, starts_at=utcnow())


def test_the_overview_stays_a_few_statements(logged_in, cabinet_ctx, subscriber):
    """Packages, discounts and services are one statement; banners and the
    tariff's no-fee profiles come from the process's memory after the first
    page, so the overview's steady state adds one statement, not one per row."""
    from sqlalchemy import event
    with cabinet_ctx.Session() as session:
        account = session.get(Account, subscriber.account_id)
        for n in range(3):
            make_service(session, account, login=f"many{n}")
            tv = packages.create(session, name=f"TV {n}", fee="1.00", fee_period="daily")
            packages.switch(session, account, tv, True, today=_today(cabinet_ctx),
                            actor="admin:test")
        banners.add(session, title="News", starts_at=utcnow())
        session.commit()
    assert logged_in.get("/").status_code == 200
    seen = []

    def record(connection, cursor, statement, *args):
        seen.append(statement)

    event.listen(cabinet_ctx.engine, "before_cursor_execute", record)
    try:
        page = logged_in.get("/").text
    finally:
        event.remove(cabinet_ctx.engine, "before_cursor_execute", record)
    assert page.count('data-test="service-login"') == 3 and "TV 0, TV 1, TV 2" in page
    assert 'data-test="banner"' in page
    assert not any("banners" in s or "FROM tariffs" in s.split("JOIN")[0] for s in seen), seen
    # The login, the options, the sessions, the accounts' switcher, the
    # turbo offer (none on sale here, so looked up each time), the
    # overview's one and today's traffic (one read, traffic_reads).
    queries = [s for s in seen if s.lstrip().upper().startswith("SELECT")]
    assert sum("account_packages" in q for q in queries) == 1
    assert sum("traffic_rollups" in q for q in queries) <= 1
    assert len(queries) <= 7, [q[:60] for q in queries]
