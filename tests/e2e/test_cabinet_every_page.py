"""Every page of the cabinet in Debian's Chromium, as a subscriber with a lot
of history sees it: Russian and English, a phone (390×844) and a desktop
(1366×900), on SQLite and PostgreSQL.

The pages are not listed by hand: they are the GET routes of the app's
url_map, less a short list of what is no page (API, PDF, CSV, static files),
so a page added later is looked at without anyone remembering to. A route
with parts in its path needs an example here (EXAMPLES); a new one without
fails the test and says so.

On each page: no sideways scrolling (at 390 px, at 360 px and on the
desktop), no console error, no request to another host, exactly one visible
<h1>, and no serious or critical axe-core violation. Screenshots go to
test-artifacts/.

axe-core comes from the npm registry (tests/e2e/axe/package.json, installed by
.ci/run). It is loaded as an init script rather than with add_script_tag:
the cabinet's CSP forbids inline scripts, and add_script_tag would need the
CSP switched off, hiding the very violations the console check is there for.

Playwright drives /usr/bin/chromium through ``executable_path``; no browser
is ever downloaded.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from flask import url_for
from sqlalchemy import select

from aaa.models import Service
from cabinet.app import CabinetServer
from collector.models import TrafficRollup
from rating import (api_tokens, company_users, family, fees, options, org, packages, payments,
                    promised, selfservice, spending)
from rating import requests as service_requests
from rating.accounts import add_payment, create_cabinet_user
from rating.models import CabinetUser, CabinetUserAccount
from tests.conftest import free_tcp_port, make_context
from tests.e2e.test_cabinet_browser import VIEWPORTS, browser  # noqa: F401 (fixture)
from tests.factories import make_account, make_tariff
from tests.integration.cabinet_helpers import seed_network_session

pytestmark = pytest.mark.peer

AXE = Path(__file__).resolve().parent / "axe" / "node_modules" / "axe-core" / "axe.min.js"
LOCALES = {"ru": "ru-RU", "en": "en-US"}
NARROWEST = 360

# GET routes that are not pages a person reads: downloads by the end of
# their path, the JSON API by its start, the rest by endpoint.
NOT_PAGE_SUFFIXES = (".pdf", ".csv", ".json", ".css", ".ico")
NOT_PAGES = {
    "static",                       # files
    "brand_logo",                   # the operator's logo
    "auth.logout",                  # POST only today; never a page
    "osmp.gateway",                 # payment agents' XML endpoint (tests/integration/test_osmp.py)
}
# Pages of someone who is not logged in: looked at before logging in.
PUBLIC = {"auth.login", "selfservice.forgot", "selfservice.forgot_sent", "selfservice.reset",
          "users.accept"}


@dataclass
class Seeded:
    login: str
    password: str
    account_id: int
    tariff_id: int
    pending_txn: str
    paid_txn: str
    reset_token: str
    invite_token: str


def _seed_calls(session, account, now) -> None:
    import io

    from rating import cdr, phones
    from rating.telephony import CallInput, Config, NumberRules, record_calls
    config = Config(NumberRules(), "Europe/Moscow")
    phones.save_plan(session, "Офис", free_minutes=10, actor="test")
    phones.import_rates(session, "Офис", cdr.parse_rates(io.StringIO(
        "7;Россия;3.00\n7495;Москва;1.50\n44;Великобритания;12.00;30/6;1.00\n")), actor="test")
    session.flush()
    phones.add_phone(session, account, number="+7 495 111-00-00", login="romashka-sip",
                     plan_name="Офис", config=config, actor="test")
    start = now.replace(day=1, hour=9, minute=0, second=0)
    record_calls(session, [
        CallInput("asterisk", f"every-page-{n}", "84951110000", called, start +
                  dt.timedelta(minutes=n * 7), start, start + dt.timedelta(seconds=seconds),
                  seconds, "answered" if seconds else "no_answer")
        for n, (called, seconds) in enumerate((("84952223344", 754), ("810442071234567", 61),
                                               ("84952223344", 0), ("88005553535", 30)))],
        config=config)


def _seed(ctx) -> Seeded:
    """A company (it has every page a person has, and documents) with a
    catalogue, payments, fees, options, packages, a promised payment, network
    sessions, traffic, service requests, an API token, top-ups, a password
    reset link, and a second account under the same login."""
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0)
    today = now.date()
    login, password = "romashka", "correct-horse-1"
    with ctx.Session() as session:
        make_tariff(session, name="Home 100", fee="20.00", fee_period="daily")
        fast = make_tariff(session, name="Fast 500", fee="930.00", fee_period="monthly",
                           rate_down_kbps=500_000, rate_up_kbps=250_000, prepaid_mb=50_000,
                           price_per_gb="2.00")
        options.create_option_type(session, code="turbo", name="Turbo ×2", kind="turbo",
                                   price="50", duration_hours=24, rate_multiplier=2)
        options.create_option_type(session, code="gb10", name="Traffic 10 GB",
                                   kind="traffic", price="150", duration_hours=720,
                                   traffic_mb=10_000)
        tv = packages.create(session, name="TV Basic", fee="199",
                             description="50 channels, 12 of them in HD")
        packages.create(session, name="Kino", fee="10", fee_period="daily")
        account = make_account(session, tariff="Home 100", kind="company",
                               name="ООО «Ромашка и партнёры» — филиал на Садовой",
                               email="accounts@romashka.example", phone="+7 900 000-00-02",
                               credit_limit="100")
        create_cabinet_user(session, account, login=login, password=password,
                            email="boss@romashka.example")
        create_cabinet_user(session, account, login="romashka-books", password=password,
                            role="accountant", email="books@romashka.example")
        # A promised payment while the balance is low, then payments.
        promised.grant(session, account, "300", now - dt.timedelta(days=3),
                       promised.PromisedRules(), actor=f"cabinet:{login}")
        for n, amount in enumerate(("1500.00", "250.50", "12000.00")):
            add_payment(session, account, amount, external_id=f"bank-2026-000{n}-long-reference",
                        provider="sberbank", memo="Оплата по счёту")
        options.buy(session, account, "turbo", now - dt.timedelta(hours=2),
                    actor=f"cabinet:{login}")
        packages.switch(session, account, tv, True, today=today, actor=f"cabinet:{login}",
                        by_subscriber=True)
        session.add(Service(account_id=account.id, kind="pppoe", login="romashka-pppoe",
                            password="pppoe-secret", static_ipv4="100.64.10.7",
                            ipv6_prefix="2001:db8:10::/56"))
        # A phone number with calls this month (the calls page, issue 17).
        _seed_calls(session, account, now)
        for topic, text in (("no_connection", "Нет связи с утра, роутер мигает красным."),
                            ("billing", "Прошу выставить счёт на оплату за декабрь.")):
            service_requests.create(session, account.id, topic=topic, text=text,
                                    request_id=f"{topic}-1", actor=f"cabinet:{login}")
        session.flush()
        user_id = session.scalar(select(CabinetUser.id).where(CabinetUser.login == login))
        # A second account under the same login: the switcher is on every page.
        branch = make_account(session, tariff="Home 100", balance="50",
                              name="ООО «Ромашка» — склад на Окружной, 14")
        session.add(CabinetUserAccount(cabinet_user_id=user_id, account_id=branch.id))
        # Issue 21: both accounts in the company's tree, the login with every
        # right on it (the company pages show it all), and a relative who
        # asks to watch the account (the family page shows the request).
        customer = org.create_customer(session, kind="company", name="ООО «Ромашка»",
                                       actor="admin:noc")
        books = org.create_unit(session, customer.id, "Бухгалтерия и управление",
                                actor="admin:noc")
        store = org.create_unit(session, customer.id, "Склад на Окружной", actor="admin:noc",
                                parent_id=books.id)
        org.attach_account(session, account.id, customer.id, actor="admin:noc",
                           unit_id=books.id)
        org.attach_account(session, branch.id, customer.id, actor="admin:noc",
                           unit_id=store.id)
        org.grant(session, user_id, customer.id, org.RIGHTS, actor="admin:noc")
        # A spending limit on a branch: the spending page lists it.
        spending.set_limit(session, org_unit_id=books.id, metric="money", value="5000",
                           action="throttle", actor="admin:noc", now=now,
                           timezone="Europe/Moscow")
        relative = make_account(session, tariff="Home 100", balance="75",
                                name="Петрова Анна Сергеевна")
        create_cabinet_user(session, relative, login="anna", password=password)
        family.invite(session, session.scalar(select(CabinetUser.id).where(
            CabinetUser.login == "anna")), account.number, now, actor="cabinet:anna")
        api_tokens.create(session, user_id, name="Бухгалтерия 1С", actor=f"cabinet:{login}")
        provider = payments.TestPay("seed-secret")
        pending, _ = payments.start(session, provider, account, "700", payments.Limits(),
                                    actor=f"cabinet:{login}",
                                    request=payments.CreateRequest(PENDING_KEY))
        paid, _ = payments.start(session, provider, account, "300", payments.Limits(),
                                 actor=f"cabinet:{login}",
                                 request=payments.CreateRequest(PAID_KEY))
        paid.status = "paid"
        reset = selfservice.request_reset(session, "romashka-books", now, minutes=60,
                                          actor="cabinet:password-reset")
        invitation = company_users.invite(session, account.id, by_user_id=user_id,
                                          login="romashka-new", email="new@romashka.example",
                                          role="viewer", now=now, actor=f"cabinet:{login}")
        session.commit()
        seeded = Seeded(login, password, account.id, fast.id, pending.txn_id, paid.txn_id,
                        reset.token, invitation.token)
    with ctx.Session() as session:
        answered = service_requests.for_account(session, seeded.account_id)[0]
        service_requests.set_status(session, answered.id, "done", actor="admin:noc",
                                    answer="Счёт отправлен на почту accounts@romashka.example.")
        session.commit()
    with ctx.Session() as session:
        for days_ago in range(3, 0, -1):
            fees.charge_day(session, today - dt.timedelta(days=days_ago))
        session.commit()
    hour = now.replace(minute=0, second=0)
    seed_network_session(ctx, seeded.account_id, framed_ip="100.64.10.7",
                         started_at=now - dt.timedelta(hours=5), octets_out=3_200_000_000,
                         octets_in=150_000_000)
    for days_ago in (1, 2):
        start = now - dt.timedelta(days=days_ago, hours=3)
        seed_network_session(ctx, seeded.account_id, framed_ip="100.64.10.7",
                             started_at=start, stopped_at=start + dt.timedelta(hours=2),
                             octets_out=900_000_000 * days_ago, octets_in=40_000_000)
    with ctx.Session() as session:
        for days_ago in range(min(today.day - 1, 6) + 1):
            for traffic_class, direction, size in (("internet", "in", 700_000_000),
                                                   ("internet", "out", 90_000_000),
                                                   ("local", "in", 120_000_000)):
                session.add(TrafficRollup(account_id=seeded.account_id,
                                          interval_start=hour - dt.timedelta(days=days_ago),
                                          traffic_class=traffic_class, direction=direction,
                                          bytes=size * (days_ago + 1), packets=1000))
        session.commit()
    return seeded


# The card payments' idempotence keys (/topup/go and /topup/back find them by it).
PENDING_KEY, PAID_KEY = "seed-pending-card-payment", "seed-paid-card-payment"


# Example path parts (and queries) for the routes that need them.
def _examples(seeded: Seeded) -> dict[str, tuple[dict, dict]]:
    return {
        "money.testpay_page": ({"txn_id": seeded.pending_txn}, {}),
        "money.topup_return": ({"txn_id": seeded.paid_txn}, {}),
        "money.topup_back": ({}, {"key": PAID_KEY}),
        "money.topup_go": ({}, {"key": PENDING_KEY}),
        "plans.tariff_terms": ({}, {"tariff": seeded.tariff_id}),
        "plans.tariff_confirm": ({}, {"tariff": seeded.tariff_id, "when": "now"}),
        "plans.option_buy": ({}, {"code": "gb10"}),
        "selfservice.reset": ({}, {"token": seeded.reset_token}),
        "users.accept": ({}, {"token": seeded.invite_token}),
    }


def _page_paths(app, seeded: Seeded) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(endpoint, path) of the pages for a subscriber, and of the public ones,
    from the app's url_map. Routes that need path parts take theirs from
    _examples; one that has none fails the test."""
    examples = _examples(seeded)
    pages, public, unknown = [], [], []
    with app.test_request_context():
        for rule in app.url_map.iter_rules():
            if "GET" not in rule.methods or rule.endpoint in NOT_PAGES:
                continue
            if rule.rule.startswith("/api/") or rule.rule.endswith(NOT_PAGE_SUFFIXES):
                continue
            arguments, query = examples.get(rule.endpoint, ({}, {}))
            if set(rule.arguments) - set(arguments):
                unknown.append(rule.rule)
                continue
            path = url_for(rule.endpoint, **arguments, **query)
            (public if rule.endpoint in PUBLIC else pages).append((rule.endpoint, path))
    assert not unknown, (f"pages with parts in the path and no example in "
                         f"{__name__}._examples: {unknown}")
    # A sanity floor: discovery that found next to nothing would pass vacuously.
    assert len(pages) >= 20 and len(public) >= 3, (pages, public)
    return sorted(pages), sorted(public)


class Watch:
    """What a page did that it must not: console errors, uncaught
    exceptions, requests to any other host."""

    def __init__(self, page, origin: str):
        self.problems: list[str] = []
        self.origin = origin
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        page.on("request", self._request)

    def _console(self, message) -> None:
        if message.type == "error":
            self.problems.append(f"console error: {message.text}")

    def _request(self, request) -> None:
        parts = urlsplit(request.url)
        if parts.scheme in ("data", "blob"):
            return
        if f"{parts.scheme}://{parts.netloc}" != self.origin:
            self.problems.append(f"request to another host: {request.url}")

    def take(self) -> list[str]:
        problems, self.problems = self.problems, []
        return problems


AXE_RUN = """() => axe.run(document, {resultTypes: ['violations']}).then(result =>
    result.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
        .map(v => `${v.impact} ${v.id}: ${v.help} at ` +
                  v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(', ')))"""

CHECKS = """() => ({
    scroll: document.scrollingElement.scrollWidth, inner: window.innerWidth,
    h1: [...document.querySelectorAll('h1')].filter(h => h.getClientRects().length > 0
        && getComputedStyle(h).visibility !== 'hidden').length,
    lang: document.documentElement.lang,
    wide: [...document.querySelectorAll('main *, nav *, header *')]
        .filter(e => e.getBoundingClientRect().right > window.innerWidth + 0.5)
        .slice(0, 3).map(e => e.tagName.toLowerCase() +
                            (e.getAttribute('class') ? '.' + e.getAttribute('class') : '')),
})"""


def _look_at(page, watch: Watch, what: str, lang: str, width: int) -> list[str]:
    problems = [f"{what}: {p}" for p in watch.take()]
    facts = page.evaluate(CHECKS)
    if facts["scroll"] > facts["inner"]:
        problems.append(f"{what}: {facts['scroll']} px wide in a {facts['inner']} px window "
                        f"(too wide: {facts['wide']})")
    if facts["h1"] != 1:
        problems.append(f"{what}: {facts['h1']} visible <h1>, wanted exactly one")
    if facts["lang"] != lang:
        problems.append(f"{what}: <html lang={facts['lang']!r}>, wanted {lang!r}")
    problems += [f"{what}: axe {v}" for v in page.evaluate(AXE_RUN)]
    if width <= VIEWPORTS["phone"]["width"]:
        # The narrowest phones: the same page at 360 px.
        size = page.viewport_size
        page.set_viewport_size({"width": NARROWEST, "height": size["height"]})
        narrow = page.evaluate(CHECKS)
        if narrow["scroll"] > narrow["inner"]:
            problems.append(f"{what}: {narrow['scroll']} px wide at {NARROWEST} px "
                            f"(too wide: {narrow['wide']})")
        page.set_viewport_size(size)
    return problems


def _look_at_the_menu(page, watch, what, lang, device, viewport, artifacts, backend):
    """On a phone, the bar and its "More" sheet; on a desktop, every place as
    a tab. Either way every place is one tap or two away."""
    problems = []
    tabs, bar = page.locator("nav.tabs"), page.locator("[data-test=nav-bar]")
    if device == "desktop":
        if not tabs.is_visible() or bar.is_visible():
            problems.append(f"{what}: a desktop shows the tabs, not the phone's bar")
        elif tabs.locator("a").count() < 10:
            problems.append(f"{what}: the desktop tabs lack places")
        return problems
    if tabs.is_visible() or not bar.is_visible():
        return [f"{what}: a phone shows the bar, not the tabs"]
    box = bar.bounding_box()
    if box["height"] > 80 or box["y"] + box["height"] < viewport["height"] - 1:
        problems.append(f"{what}: the bar is not a slim bar at the bottom: {box}")
    # Above the content only the header and the account switcher, both slim.
    top = page.evaluate('''() => {
        const bottom = s => { const e = document.querySelector(s);
                              return e ? e.getBoundingClientRect().bottom : 0; };
        return {header: bottom('header'), switcher: bottom('.account-switcher'),
                main: document.querySelector('main').getBoundingClientRect().top}; }''')
    if top["main"] > max(top["header"], top["switcher"]) + 1 or top["main"] > 140:
        problems.append(f"{what}: the content starts at {top['main']} px: {top}")
    page.click("[data-test=nav-more] > summary")
    sheet = page.locator("[data-test=nav-more] .sheet")
    if not sheet.is_visible() or sheet.locator("a").count() < 8:
        problems.append(f"{what}: More opens no sheet of places")
    problems += _look_at(page, watch, f"{what} (More open)", lang, viewport["width"])
    page.screenshot(path=str(artifacts / f"page-more-{lang}-{device}-{backend}.png"))
    page.click("[data-test=nav-more] > summary")
    return problems


def _log_in(page, url: str, seeded: Seeded) -> None:
    page.goto(f"{url}/login")
    page.fill("input[name=login]", seeded.login)
    page.fill("input[name=password]", seeded.password)
    page.click("[data-test=login-submit]")
    page.wait_for_url(f"{url}/")


@pytest.fixture
def axe_script() -> Path:
    if not AXE.exists():
        pytest.skip(f"axe-core is not installed ({AXE}); run: npm ci --prefix tests/e2e/axe")
    return AXE


def test_every_page_in_both_languages_on_a_phone_and_a_desktop(
        axe_script, browser, db_url, tmp_path, artifacts):  # noqa: F811
    # YooKassa configured (never called here) shows the payments page's
    # autopay block; the test bank stays on for its own page.
    context = make_context(db_url, data_dir=tmp_path, payments_testpay_enabled="true",
                           yookassa_shop_id="1", yookassa_secret_key="never-used",
                           yookassa_api_url="http://127.0.0.1:9/v3")
    seeded = _seed(context)
    server = CabinetServer(context, host="127.0.0.1", port=free_tcp_port()).start()
    backend = db_url.split(":")[0].split("+")[0]
    started = time.monotonic()
    problems: list[str] = []
    visits = 0

    def visit(page, watch, endpoint, path, lang, device, viewport):
        what = f"{path} [{lang} {device} {backend}]"
        response = page.goto(f"{server.url}{path}")
        if response is None or response.status != 200:
            watch.take()
            return [f"{what}: HTTP {response.status if response else 'none'}"]
        if urlsplit(page.url).path != urlsplit(path).path:
            # Not the page itself: give it an example that shows it.
            watch.take()
            return [f"{what}: redirected to {page.url}"]
        found = _look_at(page, watch, what, lang, viewport["width"])
        page.screenshot(path=str(artifacts / f"page-{endpoint.replace('.', '-')}-{lang}-"
                                             f"{device}-{backend}.png"), full_page=True)
        if endpoint == "main.dashboard":
            found += _look_at_the_menu(page, watch, what, lang, device, viewport, artifacts,
                                       backend)
        return found

    try:
        pages, public = _page_paths(server.app, seeded)
        for lang, locale in LOCALES.items():
            for device, viewport in VIEWPORTS.items():
                # One browser context (and one login) per language and screen.
                browsing = browser.new_context(viewport=viewport, locale=locale)
                browsing.add_init_script(path=str(axe_script))
                page = browsing.new_page()
                watch = Watch(page, server.url)
                try:
                    # The language is chosen on the login page, as a person would.
                    page.goto(f"{server.url}/login")
                    if page.evaluate("document.documentElement.lang") != lang:
                        page.click(f"[data-test=lang-{lang}]")
                        page.wait_for_load_state()
                    for endpoint, path in public:
                        problems += visit(page, watch, endpoint, path, lang, device, viewport)
                    _log_in(page, server.url, seeded)
                    watch.take()
                    for endpoint, path in pages:
                        problems += visit(page, watch, endpoint, path, lang, device, viewport)
                    visits += len(public) + len(pages)
                finally:
                    browsing.close()
    finally:
        server.stop()
        context.dispose()
    elapsed = time.monotonic() - started
    print(f"{visits} page visits on {backend} in {elapsed:.1f} s")
    assert not problems, "\n".join(problems)
