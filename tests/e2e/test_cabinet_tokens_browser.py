"""The API tokens page in Debian's Chromium, in Russian and English, on a
phone and a desktop: make a token, use it over HTTP, revoke it.

Playwright drives /usr/bin/chromium through ``executable_path``; no browser
is ever downloaded.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from tests.e2e.test_cabinet_browser import (VIEWPORTS, browser, cabinet_server, go_to,  # noqa: F401
                                             log_in)
from tests.integration.cabinet_helpers import seed_subscriber

pytestmark = pytest.mark.peer

TEXTS = {
    "ru": {"title": "Токены API", "created": "Ваш новый токен", "revoked": "Отозван",
           "active": "Действует", "rights": "Наблюдатель: только чтение"},
    "en": {"title": "API tokens", "created": "Your new token", "revoked": "Revoked",
           "active": "Active", "rights": "Viewer: read only"},
}


def _api_status(url: str, token: str) -> tuple[int, dict]:
    request = urllib.request.Request(f"{url}/api/v1/me",
                                     headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.load(error)


@pytest.mark.parametrize("lang", ["ru", "en"])
def test_make_use_and_revoke_a_token(browser, cabinet_server, db_url, artifacts, lang):
    ctx = cabinet_server.app.extensions["abonent"]
    subscriber = seed_subscriber(ctx, balance="500")
    backend = db_url.split(":")[0].split("+")[0]
    texts = TEXTS[lang]

    for name, viewport in VIEWPORTS.items():
        page = browser.new_page(viewport=viewport, locale="ru-RU")
        try:
            log_in(page, cabinet_server.url, subscriber)
            if lang == "en":
                page.click("[data-test=lang-en]")
                page.wait_for_selector("text=Balance")

            go_to(page, "tokens")
            page.wait_for_selector("[data-test=create-token]")
            assert page.inner_text("h1") == texts["title"]
            page.fill("input[name=name]", f"Script {name}")
            page.select_option("select[name=scope]", "viewer")
            page.select_option("select[name=expires]", "30")
            page.click("[data-test=create-token]")
            page.wait_for_selector("[data-test=new-token]")
            assert texts["created"] in page.inner_text("[data-test=token-created]")
            token = page.inner_text("[data-test=new-token]").strip()
            assert token.startswith("abt_") and len(token) > 40
            row = page.locator(f"[data-test=token-row][data-prefix='{token[:12]}']")
            assert texts["rights"] in row.inner_text() and texts["active"] in row.inner_text()
            # The long token wraps: nothing overflows sideways on a phone.
            assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
            page.screenshot(path=str(artifacts / f"cabinet-tokens-{lang}-{name}-{backend}.png"),
                            full_page=True)

            status, body = _api_status(cabinet_server.url, token)
            assert status == 200 and body["role"] == "viewer"
            assert body["account_id"] == subscriber.account_id

            # Shown once: a fresh look at the page has only the prefix.
            page.goto(f"{cabinet_server.url}/tokens")
            assert token not in page.content() and token[:12] in page.content()

            row = page.locator(f"[data-test=token-row][data-prefix='{token[:12]}']")
            row.locator("[data-test=revoke-token]").click()
            page.wait_for_selector("p.flash.ok")
            row = page.locator(f"[data-test=token-row][data-prefix='{token[:12]}']")
            assert texts["revoked"] in row.locator("[data-test=token-status]").inner_text()
            assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
            page.screenshot(
                path=str(artifacts / f"cabinet-tokens-revoked-{lang}-{name}-{backend}.png"),
                full_page=True)
            assert _api_status(cabinet_server.url, token)[0] == 401
        finally:
            page.close()
