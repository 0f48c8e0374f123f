"""The cabinet's plan pages: tariff change in three steps, voluntary freeze,
options with time left; CSRF, roles and foreign accounts; both databases."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from babel.dates import format_date
from sqlalchemy import func, select, update

from cabinet import periods
from config.db import utcnow
from rating import options, tariff_change
from rating.accounts import create_cabinet_user
from rating.models import (Account, AccountOption, CabinetUser, LedgerEntry, OperationLog,
                           Tariff)
from tests.conftest import make_context
from tests.factories import make_tariff
from tests.integration.cabinet_helpers import (  # noqa: F401 (fixtures)
    app, client, csrf_token, log_in, seed_subscriber)

TIMEZONE = "Europe/Moscow"  # the settings' default, which the cabinet uses


@pytest.fixture
def cabinet_ctx(db_url, tmp_path):
    # A freeze fee, so the page has a figure to show.
    context = make_context(db_url, data_dir=tmp_path, freeze_fee_per_day="1.50")
    yield context
    context.dispose()


@pytest.fixture
def plan(cabinet_ctx):
    """Two tariffs besides the subscriber's own, one archived; two options."""
    with cabinet_ctx.Session() as session:
        home = make_tariff(session, name="Home 100", fee="600.00", fee_period="daily")
        fast = make_tariff(session, name="Fast 500", fee="930.00", fee_period="daily",
                           rate_down_kbps=500_000, rate_up_kbps=250_000, prepaid_mb=50_000,
                           price_per_gb="2.00", switch_min_days=30)
        fast.rules = {"windows": [{"start": 1, "end": 7, "price": "0.00", "down_kbps": 1_000_000,
                                   "up_kbps": 500_000},
                                  {"start": 19, "end": 23, "price": "0.50"}]}
        old = make_tariff(session, name="Old 10", fee="100.00")
        old.archived = True
        options.create_option_type(session, code="turbo", name="Turbo ×2", kind="turbo",
                                   price="50", duration_hours=24, rate_multiplier=2)
        options.create_option_type(session, code="gb10", name="Traffic 10 GB",
                                   kind="traffic", price="150", duration_hours=720,
                                   traffic_mb=10_000)
        session.commit()
        ids = {"home": home.id, "fast": fast.id, "old": old.id}
    subscriber = seed_subscriber(cabinet_ctx, balance="500", tariff="Home 100")
    return subscriber, ids


@pytest.fixture
def owner(client, plan):
    subscriber, _ids = plan
    assert log_in(client, subscriber.login, subscriber.password, lang="en").status_code == 302
    return client


def _today() -> dt.date:
    return periods.local_today(TIMEZONE)


def _first_of_next_month(day: dt.date) -> dt.date:
    return (day.replace(day=1) + dt.timedelta(days=32)).replace(day=1)


def _long(day: dt.date, locale: str = "en") -> str:
    return format_date(day, "d MMMM y", locale=locale)


def form_fields(html: str, action: str) -> dict[str, str]:
    """The inputs of the form posting to ``action``, as a browser would send them."""
    match = re.search(r'<form[^>]*action="' + re.escape(action) + r'"[^>]*>(.*?)</form>', html,
                      re.S)
    assert match, f"no form posts to {action}"
    fields = {}
    for tag in re.findall(r"<input[^>]*>", match.group(1)):
        name = re.search(r'name="([^"]+)"', tag)
        value = re.search(r'value="([^"]*)"', tag)
        if name:
            fields[name.group(1)] = value.group(1) if value else ""
    return fields


def post(client, path, data, page="/tariff"):
    """POST with the session's CSRF token (taken from any page of ours)."""
    token = csrf_token(client.get(page).text)
    return client.post(path, data={"csrf_token": token, **data})


def _account(ctx, account_id) -> Account:
    with ctx.Session() as session:
        account = session.get(Account, account_id)
        session.expunge(account)
        return account


def _count(ctx, model, *where) -> int:
    with ctx.Session() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where))


def snapshot(ctx):
    """Everything a plan page could change."""
    with ctx.Session() as session:
        return (
            session.execute(select(Account.id, Account.balance, Account.state,
                                   Account.frozen_until, Account.profile, Account.tariff_id,
                                   Account.next_tariff_id, Account.next_tariff_from,
                                   Account.tariff_changed_at, Account.version)
                            .order_by(Account.id)).all(),
            session.scalar(select(func.count()).select_from(LedgerEntry)),
            session.scalar(select(func.count()).select_from(AccountOption)),
            session.scalar(select(func.count()).select_from(OperationLog)),
        )


# -- tariff change in three steps ----------------------------------------------------

@pytest.mark.parametrize("when", ["now", "next_period"])
def test_tariff_change_in_three_steps(owner, cabinet_ctx, plan, when):
    subscriber, ids = plan
    today = _today()
    starts_on = today + dt.timedelta(days=1) if when == "now" else _first_of_next_month(today)

    # 1. choose: the offered tariffs with fee, speeds and prepaid traffic.
    choose = owner.get("/tariff").text
    assert 'data-test="current-tariff">Home 100<' in choose
    offer = re.search(rf'data-test="offer-{ids["fast"]}">(.*?)</section>', choose, re.S).group(1)
    assert "₽930.00 a month, charged daily" in offer
    assert "↓ 500 Mbit/s / ↑ 250 Mbit/s" in offer
    assert "50.0 GB included, then ₽2.00 per GB" in offer
    assert "Old 10" not in choose  # archived: not offered
    assert f'href="/tariff/terms?tariff={ids["fast"]}"' in choose

    # 2. what it costs and when it starts, for both starts.
    terms = owner.get(f"/tariff/terms?tariff={ids['fast']}").text
    for preview_when in ("now", "next_period"):
        plan_ = _preview(cabinet_ctx, subscriber.account_id, "Fast 500", preview_when, today)
        block = re.search(rf'data-test="preview-{preview_when}">(.*?)</label>', terms,
                          re.S).group(1)
        assert f"The new tariff starts on {_long(plan_.starts_on)}." in block
        assert f"Charged on that day: ₽{plan_.charged_on_start:.2f}." in block
        assert f"Then ₽{plan_.fee_per_day:.2f} a day." in block
    assert 'data-test="limit"' not in terms

    # 3. confirm: the summary and one POST.
    confirm = owner.get(f"/tariff/confirm?tariff={ids['fast']}&when={when}").text
    assert f'data-test="starts-on">{_long(starts_on)}<' in confirm
    again = (dt.datetime.now(ZoneInfo(TIMEZONE)) + dt.timedelta(days=30)).date()
    assert f'data-test="again">After this change you may switch again from {_long(again)}.' \
        in confirm
    fields = form_fields(confirm, "/tariff/change")
    assert set(fields) == {"csrf_token", "account_id", "tariff", "when", "starts_on"}
    assert _account(cabinet_ctx, subscriber.account_id).next_tariff_id is None  # no GET changes

    response = owner.post("/tariff/change", data=fields)
    assert response.status_code == 302 and response.location.endswith("/")
    account = _account(cabinet_ctx, subscriber.account_id)
    assert (account.tariff_id, account.next_tariff_id, account.next_tariff_from) == \
        (ids["home"], ids["fast"], starts_on)
    overview = owner.get("/").text
    assert f"The tariff Fast 500 is ordered from {_long(starts_on)}." in overview
    assert f"From {_long(starts_on)} your tariff will be Fast 500." in overview
    assert "Tariff change ordered" in owner.get("/history").text

    # The scheduler switches it on its start day, not before.
    with cabinet_ctx.Session() as session:
        assert tariff_change.apply_due(session, starts_on - dt.timedelta(days=1)) == 0
        assert tariff_change.apply_due(session, starts_on) == 1
        session.commit()
    account = _account(cabinet_ctx, subscriber.account_id)
    assert (account.tariff_id, account.next_tariff_id, account.next_tariff_from) == \
        (ids["fast"], None, None)
    assert 'data-test="tariff">Fast 500<' in owner.get("/").text


def _preview(ctx, account_id, name, when, today):
    with ctx.Session() as session:
        return tariff_change.preview(session, session.get(Account, account_id), name, when,
                                     today)


def test_a_pending_change_is_cancelled_and_the_limit_given_back(owner, cabinet_ctx, plan):
    subscriber, ids = plan
    confirm = owner.get(f"/tariff/confirm?tariff={ids['fast']}&when=next_period").text
    assert owner.post("/tariff/change", data=form_fields(confirm, "/tariff/change")) \
        .status_code == 302
    overview = owner.get("/").text
    response = owner.post("/tariff/cancel", data=form_fields(overview, "/tariff/cancel"))
    assert response.status_code == 302
    account = _account(cabinet_ctx, subscriber.account_id)
    assert (account.next_tariff_id, account.next_tariff_from, account.tariff_changed_at) == \
        (None, None, None)
    overview = owner.get("/").text
    assert "The change to the tariff Fast 500 is cancelled." in overview
    assert 'data-test="pending-tariff"' not in overview
    assert "Tariff change cancelled" in owner.get("/history").text

    # Nothing to cancel now; and the cancelled order does not hold the limit.
    again = post(owner, "/tariff/cancel", {"account_id": subscriber.account_id})
    assert again.status_code == 400 and "There is no tariff change to cancel" in again.text
    confirm = owner.get(f"/tariff/confirm?tariff={ids['fast']}&when=now").text
    assert 'data-test="limit"' not in confirm
    assert owner.post("/tariff/change", data=form_fields(confirm, "/tariff/change")) \
        .status_code == 302


def test_a_new_order_replaces_the_pending_one(owner, cabinet_ctx, plan):
    subscriber, _ids = plan
    with cabinet_ctx.Session() as session:
        lite = make_tariff(session, name="Lite 50", fee="400.00", fee_period="daily").id
        mini = make_tariff(session, name="Mini 20", fee="300.00", fee_period="daily").id
        session.commit()
    confirm = owner.get(f"/tariff/confirm?tariff={lite}&when=next_period").text
    assert 'data-test="replaces"' not in confirm
    assert owner.post("/tariff/change", data=form_fields(confirm, "/tariff/change")) \
        .status_code == 302
    confirm = owner.get(f"/tariff/confirm?tariff={mini}&when=now").text
    start = _first_of_next_month(_today())
    assert (f"This replaces the change to Lite 50 ordered from {_long(start)}."
            in confirm)
    assert owner.post("/tariff/change", data=form_fields(confirm, "/tariff/change")) \
        .status_code == 302
    account = _account(cabinet_ctx, subscriber.account_id)
    assert (account.next_tariff_id, account.next_tariff_from) == \
        (mini, _today() + dt.timedelta(days=1))


def test_the_frequency_limit_refuses_and_says_from_when(owner, cabinet_ctx, plan):
    subscriber, ids = plan
    changed_at = utcnow().replace(microsecond=0) - dt.timedelta(days=5)
    with cabinet_ctx.Session() as session:
        session.execute(update(Account).where(Account.id == subscriber.account_id)
                        .values(tariff_changed_at=changed_at))
        session.commit()
    limit = changed_at + dt.timedelta(days=30)

    choose = owner.get("/tariff").text
    offer = re.search(rf'data-test="offer-{ids["fast"]}">(.*?)</section>', choose, re.S).group(1)
    assert "You may switch to this tariff from" in offer and "choose-" not in offer
    message = f"The tariff can be changed again from {limit:%Y-%m-%d}"
    assert message in owner.get(f"/tariff/terms?tariff={ids['fast']}").text
    confirm = owner.get(f"/tariff/confirm?tariff={ids['fast']}&when=now").text
    assert message in confirm and "/tariff/change" not in confirm

    before = snapshot(cabinet_ctx)
    response = post(owner, "/tariff/change", {
        "account_id": subscriber.account_id, "tariff": ids["fast"], "when": "now",
        "starts_on": (_today() + dt.timedelta(days=1)).isoformat()})
    assert response.status_code == 400 and message in response.text
    assert snapshot(cabinet_ctx) == before


@pytest.mark.parametrize("change, message", [
    ({"tariff": "999999"}, "This tariff is not offered to the account"),
    ({"tariff": "old"}, "This tariff is not offered to the account"),
    ({"tariff": "home"}, "This tariff is not offered to the account"),
    ({"tariff": "fast'; DROP TABLE accounts"}, "The form is incomplete; please start again"),
    ({"tariff": "1 OR 1=1"}, "This tariff is not offered to the account"),
    ({"tariff": "99999999999999999999"}, "This tariff is not offered to the account"),
    ({"when": "yesterday"}, "A change starts now or from the next period"),
    ({"starts_on": "2020-01-01"}, "The terms have changed since the page was drawn"),
    ({"starts_on": ""}, "The form is incomplete; please start again"),
])
def test_a_tampered_tariff_form_changes_nothing(owner, cabinet_ctx, plan, change, message):
    subscriber, ids = plan
    fields = form_fields(owner.get(f"/tariff/confirm?tariff={ids['fast']}&when=now").text,
                         "/tariff/change")
    for name, value in change.items():
        fields[name] = str(ids.get(value, value))
    before = snapshot(cabinet_ctx)
    response = owner.post("/tariff/change", data=fields)
    assert response.status_code == 400
    assert message in response.text
    assert snapshot(cabinet_ctx) == before


def test_unknown_tariff_pages_answer_404_with_a_sentence(owner, plan):
    _subscriber, ids = plan
    for path in ("/tariff/terms?tariff=999999", f"/tariff/terms?tariff={ids['old']}",
                 "/tariff/terms", "/tariff/confirm?tariff=x&when=now"):
        response = owner.get(path)
        assert response.status_code == 404, path
        assert "This tariff is not offered to the account" in response.text


# -- voluntary freeze -------------------------------------------------------------------

def test_freeze_within_bounds_then_unfreeze_early(owner, cabinet_ctx, plan):
    subscriber, _ids = plan
    today = _today()
    page = owner.get("/freeze").text
    assert "A frozen day costs ₽1.50." in page
    assert (f"can end on any day from {_long(today + dt.timedelta(days=7))} "
            f"to {_long(today + dt.timedelta(days=90))}") in page
    fields = form_fields(page, "/freeze")
    assert fields["until"] == (today + dt.timedelta(days=7)).isoformat()

    before = snapshot(cabinet_ctx)
    for days in (6, 91, -1):
        response = owner.post("/freeze", data={
            **fields, "until": (today + dt.timedelta(days=days)).isoformat()})
        assert response.status_code == 400
        assert "A freeze lasts from 7 to 90 days" in response.text
    response = owner.post("/freeze", data={**fields, "until": "next week"})
    assert response.status_code == 400
    assert snapshot(cabinet_ctx) == before

    until = today + dt.timedelta(days=90)
    response = owner.post("/freeze", data={**fields, "until": until.isoformat()})
    assert response.status_code == 302
    account = _account(cabinet_ctx, subscriber.account_id)
    assert (account.state, account.frozen_until, account.profile) == \
        ("frozen", until, "suspended")
    overview = owner.get("/").text
    assert f'<strong>Frozen until {_long(until)}.</strong>' in overview
    assert "The account is frozen at your request, so the access is off." in overview
    assert "below the credit limit" not in overview
    page = owner.get("/freeze").text
    assert 'data-test="unfreeze"' in page and 'data-test="freeze"' not in page

    response = owner.post("/freeze/end", data=form_fields(page, "/freeze/end"))
    assert response.status_code == 302
    account = _account(cabinet_ctx, subscriber.account_id)
    assert (account.state, account.frozen_until, account.profile) == ("active", None, "normal")
    assert 'data-test="frozen-until"' not in owner.get("/").text
    history = owner.get("/history").text
    assert "Account frozen" in history and "Account unfrozen" in history

    again = post(owner, "/freeze/end", {"account_id": subscriber.account_id})
    assert again.status_code == 400 and "The account is not frozen" in again.text


# -- options ------------------------------------------------------------------------------

def test_options_on_sale_and_a_purchase_without_money_is_refused(client, cabinet_ctx, plan):
    poor = seed_subscriber(cabinet_ctx, balance="100", tariff="Home 100")
    log_in(client, poor.login, poor.password, lang="en")
    page = client.get("/options").text
    turbo = re.search(r'data-test="option-turbo">(.*?)</section>', page, re.S).group(1)
    assert "Speed ×2" in turbo and "24 h" in turbo and "₽50.00" in turbo
    pack = re.search(r'data-test="option-gb10">(.*?)</section>', page, re.S).group(1)
    assert "+10.0 GB of traffic" in pack and "30 days" in pack and "₽150.00" in pack

    confirm = client.get("/options/buy?code=gb10").text
    assert "Not enough money for this option" in confirm
    assert 'data-test="confirm-buy"' not in confirm

    before = snapshot(cabinet_ctx)
    token = csrf_token(confirm)
    response = client.post("/options/buy", data={
        "csrf_token": token, "account_id": poor.account_id, "code": "gb10",
        "request_id": "a-forged-request"})
    assert response.status_code == 400 and "Not enough money for this option" in response.text
    assert snapshot(cabinet_ctx) == before
    assert _account(cabinet_ctx, poor.account_id).balance == Decimal("100.00")


def test_an_option_is_bought_once_and_shows_its_time_left(owner, cabinet_ctx, plan):
    subscriber, _ids = plan
    confirm = owner.get("/options/buy?code=turbo").text
    assert "Buy for ₽50.00" in confirm
    fields = form_fields(confirm, "/options/buy")
    assert owner.post("/options/buy", data=fields).status_code == 302
    # The same form again (a double tap): bought once.
    assert owner.post("/options/buy", data=fields).status_code == 302
    account = _account(cabinet_ctx, subscriber.account_id)
    # The turbo stacks on the ladder's verdict, which stays "normal".
    assert (account.balance, account.profile) == (Decimal("450.00"), "normal")
    assert _count(cabinet_ctx, AccountOption) == 1
    page = owner.get("/options").text
    assert re.findall(r'data-test="time-left">([^<]*)<', page) == ["23 h 59 min left"]
    assert "Turbo ×2: 23 h 59 min left" in owner.get("/").text

    # A second turbo while one runs: the page says so, a forged POST is refused.
    confirm = owner.get("/options/buy?code=turbo").text
    assert "A turbo is already active" in confirm
    response = owner.post("/options/buy", data={**fields, "request_id": "another-request"})
    assert response.status_code == 400 and "A turbo is already active" in response.text
    assert _account(cabinet_ctx, subscriber.account_id).balance == Decimal("450.00")


def test_unknown_option_answers_404(owner, plan):
    subscriber, _ids = plan
    assert owner.get("/options/buy?code=nope").status_code == 404
    response = post(owner, "/options/buy", {"account_id": subscriber.account_id,
                                            "code": "nope", "request_id": "request-1"})
    assert response.status_code == 404 and "This option is not on sale" in response.text


def _seed_options_ending_in(ctx, account_id, deltas):
    now = utcnow()
    with ctx.Session() as session:
        for n, delta in enumerate(deltas):
            kind = options.create_option_type(session, code=f"pack{n}", name=f"Pack {n}",
                                              kind="traffic", price="1", traffic_mb=100)
            session.add(AccountOption(account_id=account_id, option_type_id=kind.id,
                                      starts_at=now, ends_at=now + delta))
        session.commit()


def test_time_left_uses_russian_plural_forms(client, cabinet_ctx, plan):
    subscriber, _ids = plan
    # 30 s spare: the page is drawn a moment after the seed.
    _seed_options_ending_in(cabinet_ctx, subscriber.account_id,
                            [dt.timedelta(hours=h, seconds=30) for h in (1, 2, 5, 11, 21)])
    log_in(client, subscriber.login, subscriber.password, lang="ru")
    page = client.get("/options").text
    assert re.findall(r'data-test="time-left">([^<]*)<', page) == [
        "ещё 1 час", "ещё 2 часа", "ещё 5 часов", "ещё 11 часов", "ещё 21 час"]


@pytest.mark.parametrize("lang, minutes, days, mixed", [
    ("ru", ["ещё 1 минута", "ещё 2 минуты", "ещё 5 минут", "ещё 11 минут", "ещё 21 минута"],
     ["ещё 1 день", "ещё 2 дня", "ещё 5 дней", "ещё 11 дней", "ещё 21 день"],
     "ещё 2 часа 15 минут"),
    ("en", ["1 min left", "2 min left", "5 min left", "11 min left", "21 min left"],
     ["1 day left", "2 days left", "5 days left", "11 days left", "21 days left"],
     "2 h 15 min left"),
])
def test_time_left_text(app, lang, minutes, days, mixed):
    from cabinet.plans import time_left
    now = dt.datetime(2026, 11, 23, 12, 0)
    with app.test_request_context(headers={"Accept-Language": lang}):
        assert [time_left(now + dt.timedelta(minutes=n, seconds=59), now)
                for n in (1, 2, 5, 11, 21)] == minutes
        assert [time_left(now + dt.timedelta(days=n), now) for n in (1, 2, 5, 11, 21)] == days
        assert time_left(now + dt.timedelta(hours=2, minutes=15), now) == mixed
        assert time_left(now + dt.timedelta(seconds=20), now) == \
            ("меньше минуты" if lang == "ru" else "less than a minute left")


def test_the_pages_in_russian(client, cabinet_ctx, plan):
    subscriber, ids = plan
    log_in(client, subscriber.login, subscriber.password, lang="ru")
    choose = client.get("/tariff").text
    assert "Смена тарифа" in choose and "930,00\u00a0₽ в месяц, списывается ежедневно" in choose
    assert "50,0 ГБ включено, далее 2,00\u00a0₽ за ГБ" in choose
    # The tariff's time-of-day windows, as rating applies them.
    assert "С 01:00 до 07:00" in choose and "трафик бесплатно" in choose
    assert "С 19:00 до 23:00" in choose and "трафик 0,50\u00a0₽ за ГБ" in choose
    start = _first_of_next_month(_today())
    confirm = client.get(f"/tariff/confirm?tariff={ids['fast']}&when=next_period").text
    assert f'data-test="starts-on">{_long(start, "ru")}<' in confirm
    response = client.post("/tariff/change", data=form_fields(confirm, "/tariff/change"))
    assert response.status_code == 302
    overview = client.get("/").text
    assert f"Тариф «Fast 500» заказан с {_long(start, 'ru')}." in overview
    assert "Отменить смену тарифа" in overview
    refused = client.post("/tariff/change", data=form_fields(confirm, "/tariff/change"))
    assert refused.status_code == 400
    assert "Тариф можно будет сменить снова с" in refused.text
    freeze_page = client.get("/freeze").text
    assert "Стоимость дня заморозки: 1,50\u00a0₽." in freeze_page
    response = client.post("/freeze", data={**form_fields(freeze_page, "/freeze"),
                                            "until": _today().isoformat()})
    assert "Заморозка длится от 7 до 90 дней" in response.text
    options_page = client.get("/options").text
    assert "Скорость ×2" in options_page and "24 часа" in options_page
    assert "30 дней" in options_page


# -- safety: CSRF, roles, foreign accounts ------------------------------------------------

POSTS = ("/tariff/change", "/tariff/cancel", "/freeze", "/freeze/end", "/options/buy")


def _full_form(subscriber, ids, path):
    today = _today()
    return {"/tariff/change": {"tariff": ids["fast"], "when": "now",
                               "starts_on": (today + dt.timedelta(days=1)).isoformat()},
            "/tariff/cancel": {},
            "/freeze": {"until": (today + dt.timedelta(days=10)).isoformat()},
            "/freeze/end": {},
            "/options/buy": {"code": "turbo", "request_id": "request-1"}}[path] | \
        {"account_id": subscriber.account_id}


@pytest.mark.parametrize("path", POSTS)
def test_every_post_needs_the_csrf_token(owner, cabinet_ctx, plan, path):
    subscriber, ids = plan
    before = snapshot(cabinet_ctx)
    response = owner.post(path, data=_full_form(subscriber, ids, path))
    assert response.status_code == 400
    assert "The form has expired" in response.text
    response = owner.post(path, data={**_full_form(subscriber, ids, path),
                                      "csrf_token": "forged"})
    assert response.status_code == 400
    assert snapshot(cabinet_ctx) == before


def test_every_post_refuses_get(owner, plan):
    for path in ("/tariff/change", "/tariff/cancel", "/freeze/end"):
        assert owner.get(path).status_code == 405


@pytest.mark.parametrize("path", POSTS)
def test_a_foreign_account_id_answers_404(owner, cabinet_ctx, plan, path):
    subscriber, ids = plan
    other = seed_subscriber(cabinet_ctx, balance="900", tariff="Home 100")
    before = snapshot(cabinet_ctx)
    response = post(owner, path, {**_full_form(subscriber, ids, path),
                                  "account_id": other.account_id})
    assert response.status_code == 404
    assert snapshot(cabinet_ctx) == before


def test_a_viewer_may_look_but_not_change(client, cabinet_ctx, plan):
    subscriber, ids = plan
    with cabinet_ctx.Session() as session:
        create_cabinet_user(session, session.get(Account, subscriber.account_id),
                            login="viewer7", password="viewer-pass-7", role="viewer")
        session.commit()
    log_in(client, "viewer7", "viewer-pass-7", lang="en")
    note = "Only the account's owner can change the tariff, freeze the account or buy options."
    for path in ("/tariff", f"/tariff/confirm?tariff={ids['fast']}&when=now", "/freeze",
                 "/options", "/options/buy?code=turbo"):
        page = client.get(path)
        assert page.status_code == 200 and note in page.text, path
        assert 'data-test="confirm-' not in page.text and 'data-test="freeze"' not in page.text
    before = snapshot(cabinet_ctx)
    for path in POSTS:
        assert post(client, path, _full_form(subscriber, ids, path)).status_code == 403, path
    assert snapshot(cabinet_ctx) == before
    assert _count(cabinet_ctx, CabinetUser, CabinetUser.role == "viewer") == 1


def test_plan_pages_need_a_login(client, plan):
    for path in ("/tariff", "/tariff/terms?tariff=1", "/freeze", "/options"):
        response = client.get(path)
        assert response.status_code == 302 and "/login" in response.location


def test_archived_and_current_tariffs_are_not_offered(cabinet_ctx, plan):
    subscriber, ids = plan
    with cabinet_ctx.Session() as session:
        account = session.get(Account, subscriber.account_id)
        assert [t.name for t in tariff_change.offers(session, account)] == ["Fast 500"]
        assert session.get(Tariff, ids["old"]).archived


def test_a_change_waits_for_the_account_row(pg_url, tmp_path):
    """Two changes at once (a double tap, two devices) are decided one after
    the other: the second sees what the first did (PostgreSQL; SQLite has
    one writer)."""
    import threading
    import time

    from cabinet.app import create_app
    from rating import freeze as freezing

    ctx = make_context(pg_url, data_dir=tmp_path)
    try:
        subscriber = seed_subscriber(ctx, balance="500")
        browser = create_app(ctx, testing=True).test_client()
        log_in(browser, subscriber.login, subscriber.password, lang="en")
        fields = form_fields(browser.get("/freeze").text, "/freeze")
        today = _today()
        answer = {}
        with ctx.Session() as other:
            # Another request holds the row and freezes the account.
            account = other.get(Account, subscriber.account_id, with_for_update={"of": Account})
            thread = threading.Thread(target=lambda: answer.update(
                response=browser.post("/freeze", data=fields)))
            thread.start()
            time.sleep(0.5)
            freezing.freeze(other, account, today + dt.timedelta(days=30), today,
                            min_days=7, max_days=90, actor="other")
            other.commit()
        thread.join(timeout=10)
        response = answer["response"]
        assert response.status_code == 400
        assert "Only an active account can be frozen" in response.text
        assert _count(ctx, OperationLog, OperationLog.action == "account.freeze") == 1
        assert _account(ctx, subscriber.account_id).frozen_until == \
            today + dt.timedelta(days=30)
    finally:
        ctx.dispose()
