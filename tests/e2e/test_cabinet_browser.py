"""A subscriber logs in with Debian's Chromium and sees the balance.

Playwright drives /usr/bin/chromium through ``executable_path``; no browser
is ever downloaded.
"""

from __future__ import annotations

import pytest

from cabinet.app import CabinetServer
from tests.conftest import free_tcp_port, make_context, need_program
from tests.integration.cabinet_helpers import seed_subscriber

pytestmark = pytest.mark.peer

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
VIEWPORTS = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1366, "height": 900}}


def log_in(page, url: str, subscriber) -> None:
    """Log in through the form and wait for the overview."""
    page.goto(f"{url}/login")
    page.fill("input[name=login]", subscriber.login)
    page.fill("input[name=password]", subscriber.password)
    page.click("[data-test=login-submit]")
    page.wait_for_selector("[data-test=balance]")


def go_to(page, place: str) -> None:
    """Open a place through the navigation as a person on this screen would:
    its tab on a desktop; on a phone its button in the bar, or "More" and
    then the place. ``place`` is the endpoint's name ("tariffs", "tokens")."""
    tab = page.locator(f"[data-test=tab-{place}]")
    if tab.is_visible():
        tab.click()
        return
    button = page.locator(f"[data-test=bar-{place}]")
    if button.count():
        button.click()
        return
    page.click("[data-test=nav-more] > summary")
    page.click(f"[data-test=more-{place}]")


@pytest.fixture
def cabinet_server(db_url, tmp_path):
    context = make_context(db_url, data_dir=tmp_path)
    server = CabinetServer(context, host="127.0.0.1", port=free_tcp_port()).start()
    yield server
    server.stop()
    context.dispose()


@pytest.fixture(scope="module")
def browser():
    executable = need_program("chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS,
                                             headless=True)
        yield browser
        browser.close()


def test_subscriber_logs_in_and_sees_the_balance(browser, cabinet_server, db_url, artifacts):
    subscriber = seed_subscriber(cabinet_server.app.extensions["abonent"], balance="500")
    backend = db_url.split(":")[0].split("+")[0]

    for name, viewport in VIEWPORTS.items():
        page = browser.new_page(viewport=viewport, locale="ru-RU")
        try:
            page.goto(f"{cabinet_server.url}/")
            assert "/login" in page.url
            page.fill("input[name=login]", subscriber.login)
            page.fill("input[name=password]", subscriber.password)
            page.click("[data-test=login-submit]")
            page.wait_for_selector("[data-test=balance]")

            assert page.inner_text("[data-test=balance]").startswith("500,00")
            assert page.inner_text("[data-test=account-number]") == subscriber.number
            # Nothing overflows sideways on a phone.
            scroll_width = page.evaluate("document.documentElement.scrollWidth")
            assert scroll_width <= viewport["width"]
            page.screenshot(path=str(artifacts / f"cabinet-dashboard-{name}-{backend}.png"),
                            full_page=True)

            page.click("[data-test=lang-en]")
            page.wait_for_selector("text=Balance")
            assert page.inner_text("[data-test=balance]") == "₽500.00"

            page.click("[data-test=logout]")
            page.wait_for_selector("input[name=password]")
        finally:
            page.close()


def test_every_page_fits_a_phone(browser, cabinet_server, db_url, artifacts):
    """Each tab renders, in Russian, without sideways scrolling at 390 px."""
    import datetime as dt

    from collector.models import TrafficRollup
    from tests.integration.cabinet_helpers import seed_network_session

    ctx = cabinet_server.app.extensions["abonent"]
    subscriber = seed_subscriber(ctx, balance="1500")
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, minute=0, second=0,
                                                   microsecond=0)
    seed_network_session(ctx, subscriber.account_id, framed_ip="100.64.1.7",
                         started_at=now - dt.timedelta(hours=3), octets_out=3_200_000_000,
                         octets_in=150_000_000)
    with ctx.Session() as session:
        for days_ago in range(min(now.day - 1, 6)):
            session.add(TrafficRollup(account_id=subscriber.account_id,
                                      interval_start=now - dt.timedelta(days=days_ago),
                                      direction="in", bytes=(days_ago + 1) * 700_000_000,
                                      packets=1, source="netflow"))
        session.commit()
    backend = db_url.split(":")[0].split("+")[0]

    page = browser.new_page(viewport=VIEWPORTS["phone"], locale="ru-RU")
    try:
        log_in(page, cabinet_server.url, subscriber)
        for path in ("/payments", "/promised", "/sessions", "/traffic", "/traffic/day",
                     "/contacts", "/history", "/password"):
            response = page.goto(f"{cabinet_server.url}{path}")
            assert response.status == 200, path
            assert page.evaluate("document.documentElement.scrollWidth") <= 390, path
            name = path.strip("/").replace("/", "-")
            page.screenshot(path=str(artifacts / f"cabinet-{name}-phone-{backend}.png"),
                            full_page=True)
        assert page.locator("[data-test=traffic-chart] svg").count() == 0  # left the page
        page.goto(f"{cabinet_server.url}/traffic")
        # A bar for each day of the month so far: none after today.
        from cabinet import periods
        today = periods.local_today(ctx.settings.get("", "timezone"))
        assert page.locator("[data-test=traffic-chart] svg rect.down").count() == today.day
    finally:
        page.close()
