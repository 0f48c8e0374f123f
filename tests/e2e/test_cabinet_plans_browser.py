"""Tariff change in three steps, an option bought, a freeze and its early end,
in Debian's Chromium: Russian and English, on a phone and a desktop.

Playwright drives /usr/bin/chromium through ``executable_path``; no browser
is ever downloaded. Every page is screenshotted into test-artifacts/.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest

from cabinet import periods
from rating import options
from tests.e2e.test_cabinet_browser import (VIEWPORTS, browser, go_to, log_in,  # noqa: F401
                                             cabinet_server)
from tests.factories import make_tariff
from tests.integration.cabinet_helpers import seed_subscriber

pytestmark = pytest.mark.peer

TEXT = {
    "ru": {"pending": "ваш тариф — «Fast 500»", "left": re.compile(r"^ещё 23 часа 59 минут$"),
           "frozen": "Заморожен до"},
    "en": {"pending": "your tariff will be Fast 500", "left": re.compile(r"^23 h 59 min left$"),
           "frozen": "Frozen until"},
}


def _seed_catalogue(ctx) -> int:
    with ctx.Session() as session:
        make_tariff(session, name="Home 100", fee="600.00", fee_period="daily")
        fast = make_tariff(session, name="Fast 500", fee="930.00", fee_period="daily",
                           rate_down_kbps=500_000, rate_up_kbps=250_000, prepaid_mb=50_000,
                           price_per_gb="2.00", switch_min_days=30)
        options.create_option_type(session, code="turbo", name="Turbo ×2", kind="turbo",
                                   price="50", duration_hours=24, rate_multiplier=2)
        options.create_option_type(session, code="gb10", name="Traffic 10 GB",
                                   kind="traffic", price="150", duration_hours=720,
                                   traffic_mb=10_000)
        session.commit()
        return fast.id


def _fits(page, width: int, what: str) -> None:
    assert page.evaluate("document.documentElement.scrollWidth") <= width, what


@pytest.mark.parametrize("lang", ["ru", "en"])
def test_plan_pages_in_a_browser(browser, cabinet_server, db_url, artifacts, lang):
    ctx = cabinet_server.app.extensions["abonent"]
    fast_id = _seed_catalogue(ctx)
    backend = db_url.split(":")[0].split("+")[0]
    text = TEXT[lang]
    today = periods.local_today(ctx.settings.get("", "timezone"))

    for name, viewport in VIEWPORTS.items():
        subscriber = seed_subscriber(ctx, balance="500", tariff="Home 100")
        when = "now" if name == "phone" else "next_period"
        page = browser.new_page(viewport=viewport, locale="ru-RU" if lang == "ru" else "en-US")
        width = viewport["width"]

        def shot(step: str) -> None:
            _fits(page, width, step)
            page.screenshot(path=str(artifacts / f"plans-{step}-{lang}-{name}-{backend}.png"),
                            full_page=True)

        try:
            log_in(page, cabinet_server.url, subscriber)

            # The tariff change: 1. choose, 2. cost and start, 3. confirm.
            go_to(page, "tariffs")
            page.wait_for_selector(f"[data-test=choose-{fast_id}]")
            assert page.inner_text("[data-test=current-tariff]") == "Home 100"
            shot("1-tariffs")
            page.click(f"[data-test=choose-{fast_id}]")
            page.wait_for_selector("[data-test=continue]")
            shot("2-terms")
            page.click(f"[data-test=preview-{when}]")
            assert page.is_checked(f"[data-test=when-{when}]")
            page.click("[data-test=continue]")
            page.wait_for_selector("[data-test=confirm-change]")
            shot("3-confirm")
            page.click("[data-test=confirm-change]")
            page.wait_for_selector("[data-test=pending-tariff]")
            assert text["pending"] in page.inner_text("[data-test=pending-tariff]")
            shot("4-overview-pending")

            # An option: the catalogue, the confirmation, the time left.
            go_to(page, "tariffs")
            page.click("[data-test=subnav-options_page]")
            page.wait_for_selector("[data-test=choose-option-turbo]")
            shot("5-options")
            page.click("[data-test=choose-option-turbo]")
            page.wait_for_selector("[data-test=confirm-buy]")
            shot("6-option-confirm")
            page.click("[data-test=confirm-buy]")
            page.wait_for_selector("[data-test=time-left]")
            assert text["left"].match(page.inner_text("[data-test=time-left]").strip())
            assert page.inner_text("[data-test=balance]").startswith(
                "450,00" if lang == "ru" else "₽450.00")
            shot("7-option-bought")

            # A freeze, seen on the overview, then ended early.
            page.click("[data-test=subnav-freeze_page]")
            page.wait_for_selector("[data-test=freeze]")
            page.fill("input[name=until]", (today + dt.timedelta(days=10)).isoformat())
            shot("8-freeze")
            page.click("[data-test=freeze]")
            page.wait_for_selector("[data-test=unfreeze]")
            shot("9-frozen")
            page.goto(f"{cabinet_server.url}/")
            assert text["frozen"] in page.inner_text("[data-test=frozen-until]")
            shot("10-overview-frozen")
            page.goto(f"{cabinet_server.url}/freeze")
            page.click("[data-test=unfreeze]")
            page.wait_for_selector("[data-test=freeze]")
            shot("11-unfrozen")

            # The ordered change is cancelled from the overview.
            page.goto(f"{cabinet_server.url}/")
            page.click("[data-test=cancel-tariff]")
            page.wait_for_selector("[data-test=balance]")
            assert page.locator("[data-test=pending-tariff]").count() == 0
        finally:
            page.close()
