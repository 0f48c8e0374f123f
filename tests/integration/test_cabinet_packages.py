"""The cabinet's packages page: a subscriber switches a package on and off
(CSRF-protected form, charged once a period), redeems a promo code and
sees the bonus points; refusals change nothing. Both databases."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
from sqlalchemy import select, text

from cabinet import periods
from config.db import utcnow
from rating import options, packages, promotions
from rating.accounts import create_cabinet_user
from rating.models import Account, AccountPackage, LedgerEntry, Package
from tests.integration.cabinet_helpers import (  # noqa: F401 (fixtures)
    app, cabinet_ctx, client, csrf_token, log_in, seed_subscriber)

TABLES = ("accounts", "ledger_entries", "operation_log", "account_packages",
          "promo_codes", "promo_redemptions", "discounts")


def snapshot(ctx):
    with ctx.engine.connect() as conn:
        return {t: [tuple(r) for r in conn.execute(text(f"SELECT * FROM {t} ORDER BY 1"))]
                for t in TABLES}


@pytest.fixture
def catalogue(cabinet_ctx):
    """A subscriber with 300 on the balance; TV (self-service, 199 a month),
    Kino (operator only), Premium (500, more than the balance), Old (archived)."""
    with cabinet_ctx.Session() as session:
        tv = packages.create(session, name="TV Basic", fee="199", description="50 channels")
        kino = packages.create(session, name="Kino", fee="10", fee_period="daily",
                               self_service=False)
        premium = packages.create(session, name="Premium", fee="500")
        old = packages.create(session, name="Old", fee="1")
        old.archived = True
        promotions.add_promo(session, "HELLO", amount="100", uses=5,
                             today=promotions.dt.date(2026, 1, 1))
        session.commit()
        ids = {"tv": tv.id, "kino": kino.id, "premium": premium.id, "old": old.id}
    subscriber = seed_subscriber(cabinet_ctx, balance="300")
    return subscriber, ids


@pytest.fixture
def owner(client, catalogue):
    subscriber, _ids = catalogue
    assert log_in(client, subscriber.login, subscriber.password, lang="en").status_code == 302
    return client


def switch(client, subscriber, package_id, action, **extra):
    page = client.get("/packages")
    data = {"account_id": subscriber.account_id, "package_id": package_id, "action": action,
            "csrf_token": csrf_token(page.text), **extra}
    return client.post("/packages/switch", data=data)


def today(ctx) -> dt.date:
    return periods.local_today(ctx.settings.get("", "timezone"))


def next_month(ctx) -> dt.date:
    day = today(ctx)
    return dt.date(day.year + day.month // 12, day.month % 12 + 1, 1)


def in_words(day: dt.date) -> str:
    return f"{day.day} {day:%B} {day.year}"


def package_fees(ctx, account_id):
    with ctx.Session() as session:
        return [(e.amount, e.memo) for e in session.scalars(
            select(LedgerEntry).where(LedgerEntry.account_id == account_id,
                                      LedgerEntry.idempotency_key.like("pkg:%")))]


def balance(ctx, account_id) -> Decimal:
    with ctx.Session() as session:
        return session.get(Account, account_id).balance


def test_a_subscriber_switches_a_package_on_and_off(owner, cabinet_ctx, catalogue):
    subscriber, ids = catalogue
    page = owner.get("/packages")
    assert page.status_code == 200
    assert 'href="/packages"' in page.text and 'aria-current="page"' in page.text
    for name in ("TV Basic", "Kino", "Premium", "50 channels"):
        assert name in page.text
    assert "Old" not in page.text  # archived: not offered
    assert f'data-test="switch-{ids["kino"]}"' not in page.text  # operator only

    response = switch(owner, subscriber, ids["tv"], "on")
    assert response.status_code == 302
    page = owner.get("/packages")
    assert "TV Basic is on from today." in page.text
    assert "₽199.00 charged for this period." in page.text
    assert 'data-test="package-on"' in page.text
    assert balance(cabinet_ctx, subscriber.account_id) == Decimal("101.00")
    [(amount, memo)] = package_fees(cabinet_ctx, subscriber.account_id)
    assert amount == Decimal("-199.00") and memo.startswith("package TV Basic for ")

    assert switch(owner, subscriber, ids["tv"], "off").status_code == 302
    page = owner.get("/packages").text
    assert f"TV Basic is off from {in_words(next_month(cabinet_ctx))}." in page
    # On again in the same period: it is paid, nothing more is charged.
    assert "this period is paid already" in page
    assert switch(owner, subscriber, ids["tv"], "on").status_code == 302
    assert "This period is paid already." in owner.get("/packages").text
    assert len(package_fees(cabinet_ctx, subscriber.account_id)) == 1
    assert balance(cabinet_ctx, subscriber.account_id) == Decimal("101.00")
    with cabinet_ctx.Session() as session:
        row = session.scalar(select(AccountPackage).where(
            AccountPackage.account_id == subscriber.account_id))
        assert row.active is True
    # The bill and the history say what it was.
    assert "package “TV Basic” for" in owner.get("/payments").text
    history = owner.get("/history").text
    assert "Package switched on" in history and "Package switched off" in history


@pytest.mark.parametrize("which, action, message", [
    ("kino", "on", "This package is switched on and off by the operator only."),
    ("premium", "on", "The balance is not enough for the package&#39;s fee of 500.00."),
    ("old", "on", "This package is not offered any more."),
])
def test_a_refused_switch_says_why_and_changes_nothing(owner, cabinet_ctx, catalogue, which,
                                                       action, message):
    subscriber, ids = catalogue
    before = snapshot(cabinet_ctx)
    response = switch(owner, subscriber, ids[which], action)
    assert response.status_code == 400
    assert message in response.text
    assert snapshot(cabinet_ctx) == before


def test_forged_or_foreign_forms_change_nothing(owner, client, cabinet_ctx, catalogue):
    subscriber, ids = catalogue
    other = seed_subscriber(cabinet_ctx, balance="900")
    before = snapshot(cabinet_ctx)
    form = {"account_id": subscriber.account_id, "package_id": ids["tv"], "action": "on"}
    assert owner.post("/packages/switch", data=form).status_code == 400  # no CSRF token
    assert owner.post("/packages/switch",
                      data={**form, "csrf_token": "forged"}).status_code == 400
    assert switch(owner, subscriber, ids["tv"], "on",
                  account_id=other.account_id).status_code == 404
    assert switch(owner, subscriber, 99999, "on").status_code == 404
    assert switch(owner, subscriber, ids["tv"], "explode").status_code == 400
    assert owner.get("/packages/switch").status_code == 405
    assert snapshot(cabinet_ctx) == before


def test_a_viewer_looks_but_does_not_switch(client, cabinet_ctx, catalogue):
    subscriber, ids = catalogue
    with cabinet_ctx.Session() as session:
        create_cabinet_user(session, session.get(Account, subscriber.account_id),
                            login="viewer8", password="viewer-pass-8", role="viewer")
        session.commit()
    log_in(client, "viewer8", "viewer-pass-8", lang="en")
    page = client.get("/packages")
    assert "Only the account's owner can switch packages and buy options." in page.text
    assert 'data-test="switch-' not in page.text
    before = snapshot(cabinet_ctx)
    assert switch(client, subscriber, ids["tv"], "on").status_code == 403
    assert snapshot(cabinet_ctx) == before


def test_a_promo_code_is_redeemed_once(owner, cabinet_ctx, catalogue):
    subscriber, _ids = catalogue

    def redeem(code):
        page = owner.get("/packages")
        return owner.post("/packages/promo", data={"account_id": subscriber.account_id,
                                                   "code": code,
                                                   "csrf_token": csrf_token(page.text)})

    assert redeem("hello").status_code == 302
    assert "Promo code accepted." in owner.get("/packages").text
    assert balance(cabinet_ctx, subscriber.account_id) == Decimal("400.00")
    before = snapshot(cabinet_ctx)
    again = redeem("HELLO")
    assert again.status_code == 400
    assert "Promo code HELLO has already been used on this account." in again.text
    unknown = redeem("NOSUCH")
    assert unknown.status_code == 400 and "There is no promo code NOSUCH." in unknown.text
    assert redeem("").status_code == 400
    assert snapshot(cabinet_ctx) == before


def test_the_page_in_russian_shows_points(client, cabinet_ctx, catalogue):
    subscriber, _ids = catalogue
    with cabinet_ctx.Session() as session:
        promotions.set_bonus_percent(session, "2")
        session.commit()
    log_in(client, subscriber.login, subscriber.password, lang="ru")
    page = client.get("/packages").text
    assert "Пакеты" in page and "Подключить" in page and "Промокод" in page
    assert re.search(r"У вас 0[,.]00 бонусных баллов", page)
    assert "баллами" in page


def test_the_page_shows_when_each_change_takes_effect(owner, cabinet_ctx, catalogue):
    """The dates the page shows are rating.packages' rules: on from today
    with the period charged now, off from the next period (a month's
    package on the 1st of next month, a day's tomorrow)."""
    subscriber, ids = catalogue
    first = in_words(next_month(cabinet_ctx))
    page = owner.get("/packages").text
    tv = page.split(f'data-test="package-{ids["tv"]}"')[1].split("</section>")[0]
    assert "₽199.00 for a month" in tv
    assert (f"works from today; ₽199.00 is charged now for this period, and the next fee "
            f"on {first}.") in tv
    kino = page.split(f'data-test="package-{ids["kino"]}"')[1].split("</section>")[0]
    assert "₽10.00 for a day" in kino and "operator" in kino
    assert switch(owner, subscriber, ids["tv"], "on").status_code == 302
    tv = owner.get("/packages").text.split(f'data-test="package-{ids["tv"]}"')[1]
    assert f"Switched off, it stops on {first}: this period is paid" in tv
    # The rule itself: the next period after a day of the month.
    assert packages.next_period_start("monthly", dt.date(2026, 12, 31)) == dt.date(2027, 1, 1)
    assert packages.next_period_start("monthly", dt.date(2028, 2, 29)) == dt.date(2028, 3, 1)
    assert packages.next_period_start("daily", dt.date(2026, 12, 31)) == dt.date(2027, 1, 1)


def test_a_frozen_account_is_refused_like_in_the_console(owner, cabinet_ctx, catalogue):
    subscriber, ids = catalogue
    with cabinet_ctx.Session() as session:
        session.get(Account, subscriber.account_id).state = "frozen"
        session.commit()
    page = owner.get("/packages").text
    assert 'data-test="inactive"' in page and f'data-test="switch-{ids["tv"]}"' not in page
    before = snapshot(cabinet_ctx)
    response = switch(owner, subscriber, ids["tv"], "on")
    assert response.status_code == 400
    assert "A package can be switched on only on an active account." in response.text
    assert snapshot(cabinet_ctx) == before
    # The console refuses it with the same rule.
    with cabinet_ctx.Session() as session:
        with pytest.raises(packages.DomainError, match="a package needs an active account"):
            packages.switch(session, session.get(Account, subscriber.account_id),
                            session.get(Package, ids["tv"]), True, today=today(cabinet_ctx),
                            actor="admin")


def test_an_accountant_redeems_a_promo_code_but_does_not_switch(client, cabinet_ctx,
                                                                 catalogue):
    subscriber, ids = catalogue
    with cabinet_ctx.Session() as session:
        create_cabinet_user(session, session.get(Account, subscriber.account_id),
                            login="buh9", password="buh-pass-99", role="accountant")
        session.commit()
    log_in(client, "buh9", "buh-pass-99", lang="en")
    page = client.get("/packages")
    assert 'data-test="switch-' not in page.text and 'data-test="redeem-promo"' in page.text
    before = snapshot(cabinet_ctx)
    assert switch(client, subscriber, ids["tv"], "on").status_code == 403
    assert snapshot(cabinet_ctx) == before
    response = client.post("/packages/promo", data={
        "account_id": subscriber.account_id, "code": "HELLO",
        "csrf_token": csrf_token(client.get("/packages").text)})
    assert response.status_code == 302
    assert balance(cabinet_ctx, subscriber.account_id) == Decimal("400.00")


def test_the_option_catalogue_shows_each_types_terms(owner, cabinet_ctx, catalogue):
    """Turbo and other option types, each with its own multiplier, hours,
    price and monthly limit; a type bought up to its limit is not offered."""
    subscriber, _ids = catalogue
    with cabinet_ctx.Session() as session:
        options.create_option_type(session, code="turbo", name="Turbo", kind="turbo",
                                   price="50", duration_hours=24, rate_multiplier=2,
                                   max_per_month=1)
        options.create_option_type(session, code="turbo5", name="Turbo Max", kind="turbo",
                                   price="120", duration_hours=6, rate_multiplier=5)
        options.create_option_type(session, code="gb10", name="Traffic 10 GB", kind="traffic",
                                   price="150", duration_hours=720, traffic_mb=10_000)
        session.commit()
    page = owner.get("/packages").text

    def card(code):
        return page.split(f'data-test="option-{code}"')[1].split("</section>")[0]

    assert "×2 the tariff" in card("turbo") and "24 h" in card("turbo")
    assert "₽50.00" in card("turbo") and "up to 1, bought 0 this month" in card("turbo")
    assert "×5 the tariff" in card("turbo5") and "6 h" in card("turbo5")
    assert "no limit" in card("turbo5") and "₽120.00" in card("turbo5")
    assert "×" not in card("gb10") and "30 days" in card("gb10") and "10 GB" in card("gb10")
    assert 'href="/options/buy?code=turbo"' in card("turbo")
    with cabinet_ctx.Session() as session:
        options.buy(session, session.get(Account, subscriber.account_id), "turbo",
                    utcnow(), actor="test")
        session.commit()
    page = owner.get("/packages").text
    assert "up to 1, bought 1 this month" in card("turbo")
    assert 'data-test="limit-reached"' in card("turbo")
    assert 'href="/options/buy?code=turbo"' not in page
