"""Issue 13 in Debian's Chromium: the page's icon loads and nothing the page
asks for fails; a token with the owner's rights asks for the password, and
a password change ends it.

Playwright drives /usr/bin/chromium through ``executable_path``; no browser
is ever downloaded.
"""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from tests.e2e.test_cabinet_browser import VIEWPORTS, browser, cabinet_server, log_in  # noqa: F401
from tests.integration.cabinet_helpers import seed_subscriber

pytestmark = pytest.mark.peer


def test_the_icon_loads_and_no_request_of_the_page_fails(browser, cabinet_server):
    page = browser.new_page(viewport=VIEWPORTS["phone"], locale="ru-RU")
    failed = []
    page.on("response", lambda r: failed.append((r.status, r.url)) if r.status >= 400 else None)
    page.on("requestfailed", lambda r: failed.append(("failed", r.url)))
    try:
        page.goto(f"{cabinet_server.url}/login")
        page.wait_for_load_state("networkidle")
        icons = page.evaluate("""async () => {
            const links = [...document.querySelectorAll('link[rel=icon]')];
            return Promise.all(links.map(async link => {
                const answer = await fetch(link.href);
                const body = await answer.arrayBuffer();
                return [link.getAttribute('href'), answer.status,
                        answer.headers.get('content-type'), body.byteLength];
            }));
        }""")
        assert len(icons) == 2, icons
        for href, status, kind, size in icons:
            assert status == 200 and kind.startswith("image/") and size > 100, (href, kind)
        # What a browser asks for by itself when a page names no icon.
        assert page.evaluate("fetch('/favicon.ico').then(r => r.status)") == 200
        assert failed == []
    finally:
        page.close()


def _api_status(url: str, token: str) -> int:
    request = urllib.request.Request(f"{url}/api/v1/me",
                                     headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        error.close()
        return error.code


@pytest.mark.parametrize("lang", ["ru", "en"])
def test_an_owner_token_asks_for_the_password_and_dies_with_it(browser, cabinet_server,
                                                               artifacts, db_url, lang):
    ctx = cabinet_server.app.extensions["abonent"]
    subscriber = seed_subscriber(ctx, balance="500")
    backend = db_url.split(":")[0].split("+")[0]
    page = browser.new_page(viewport=VIEWPORTS["phone"], locale="ru-RU")
    try:
        log_in(page, cabinet_server.url, subscriber)
        if lang == "en":
            page.click("[data-test=lang-en]")
            page.wait_for_selector("text=Balance")
        page.goto(f"{cabinet_server.url}/tokens")
        page.fill("input[name=name]", "Accounting")
        page.select_option("select[name=scope]", "owner")
        page.click("[data-test=create-token]")
        error = page.wait_for_selector("[data-test=token-password-error]")
        assert ("Введите пароль" if lang == "ru" else "Enter your password") in error.inner_text()
        assert page.locator("[data-test=new-token]").count() == 0
        page.fill("[data-test=token-password]", subscriber.password)
        page.select_option("select[name=scope]", "owner")
        page.click("[data-test=create-token]")
        token = page.inner_text("[data-test=new-token]").strip()
        assert _api_status(cabinet_server.url, token) == 200
        # The field shows no password after the answer.
        assert page.input_value("[data-test=token-password]") == ""
        scroll_width = page.evaluate("document.documentElement.scrollWidth")
        assert scroll_width <= VIEWPORTS["phone"]["width"]
        page.screenshot(path=str(artifacts / f"cabinet-owner-token-{lang}-{backend}.png"),
                        full_page=True)

        page.goto(f"{cabinet_server.url}/password")
        page.fill("input[name=current]", subscriber.password)
        page.fill("input[name=new]", "brand-new-pass-7")
        page.fill("input[name=confirm]", "brand-new-pass-7")
        page.click("[data-test=change-password]")
        page.wait_for_selector("p.flash.ok")
        assert _api_status(cabinet_server.url, token) == 401
        page.goto(f"{cabinet_server.url}/tokens")
        status = page.locator("[data-test=token-status]").first.inner_text()
        assert status == ("Отозван" if lang == "ru" else "Revoked")
    finally:
        page.close()
