"""A company's owner invites a user in Debian's Chromium: the users page from
the contacts, the invitation (no mail configured: the link is shown once),
the invitee sets a password in another browser and logs in with the role
given. Russian on a phone, English on a desktop.

Playwright drives /usr/bin/chromium through ``executable_path``; no browser
is ever downloaded. Screenshots go into test-artifacts/.
"""

from __future__ import annotations

import pytest

from tests.e2e.test_cabinet_browser import (VIEWPORTS, browser, log_in,  # noqa: F401 (fixtures)
                                             cabinet_server)
from tests.integration.cabinet_helpers import Subscriber, seed_subscriber

pytestmark = pytest.mark.peer

TEXT = {"ru": {"viewer": "Наблюдатель", "read_only": "Подключать пакеты и покупать опции",
               "terms": "Если подключить, пакет заработает сегодня", "turbo": "скорость тарифа ×3"},
        "en": {"viewer": "Viewer", "read_only": "Only the account's owner can switch packages",
               "terms": "Switched on, it works from today", "turbo": "×3 the tariff's speed"}}


def _seed_catalogue(ctx) -> None:
    from rating import options, packages
    with ctx.Session() as session:
        packages.create(session, name="TV Plus", fee="249", description="120 channels")
        options.create_option_type(session, code="turbo3", name="Turbo ×3", kind="turbo",
                                   price="90", duration_hours=12, rate_multiplier=3,
                                   max_per_month=2)
        session.commit()


def test_the_owner_invites_a_user(browser, cabinet_server, db_url, artifacts):
    ctx = cabinet_server.app.extensions["abonent"]
    backend = db_url.split(":")[0].split("+")[0]
    _seed_catalogue(ctx)
    for lang, viewport_name in (("ru", "phone"), ("en", "desktop")):
        viewport = VIEWPORTS[viewport_name]
        owner = seed_subscriber(ctx, balance="900", kind="company", name="OOO Vector")
        newcomer_login = f"clerk-{lang}"
        locale = "ru-RU" if lang == "ru" else "en-US"
        page = browser.new_page(viewport=viewport, locale=locale)
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

        def shot(step: str) -> None:
            assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
            page.screenshot(path=str(artifacts / f"users-{step}-{lang}-{viewport_name}-"
                                                 f"{backend}.png"), full_page=True)

        try:
            log_in(page, cabinet_server.url, owner)
            assert page.get_attribute("html", "lang") == lang
            page.goto(f"{cabinet_server.url}/contacts")
            page.click("[data-test=manage-users]")
            page.wait_for_selector("[data-test=invite]")
            assert page.locator("h1").count() == 1
            shot("1-page")
            page.fill("input[name=login]", newcomer_login)
            page.select_option("select[name=role]", "viewer")
            page.click("[data-test=invite]")
            page.wait_for_selector("[data-test=invite-link]")
            link = page.input_value("[data-test=invite-link]")
            assert "/invite?token=" in link
            row = page.inner_text(f"[data-test=user-{newcomer_login}]")
            assert TEXT[lang]["viewer"] in row
            shot("2-invited")

            # The invitee, in a browser of their own.
            other = browser.new_page(viewport=viewport, locale=locale)
            try:
                other.goto(link)
                assert other.inner_text("[data-test=invite-login]") == newcomer_login
                other.fill("input[name=new]", "clerk-password-1")
                other.fill("input[name=confirm]", "clerk-password-1")
                other.screenshot(path=str(artifacts / f"users-3-accept-{lang}-"
                                                      f"{viewport_name}-{backend}.png"))
                other.click("[data-test=accept-submit]")
                other.wait_for_selector("input[name=password]")
                log_in(other, cabinet_server.url,
                       Subscriber(owner.account_id, owner.number, newcomer_login,
                                  "clerk-password-1"))
                assert other.inner_text("[data-test=account-number]") == owner.number
                # A viewer: the packages page says who may change.
                other.goto(f"{cabinet_server.url}/packages")
                assert TEXT[lang]["read_only"] in other.inner_text("[data-test=read-only]")
            finally:
                other.close()

            page.goto(f"{cabinet_server.url}/users")
            assert "/invite?token=" not in page.content()

            # The packages and options page the owner may change.
            page.goto(f"{cabinet_server.url}/packages")
            assert TEXT[lang]["terms"] in page.inner_text("[data-test=terms]")
            assert TEXT[lang]["turbo"] in page.inner_text("[data-test=multiplier]")
            shot("4-packages")
            assert errors == []
        finally:
            page.close()
