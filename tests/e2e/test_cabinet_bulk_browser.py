"""The bulk change in Debian's Chromium (issue 21): a company login chooses
all the accounts of its branch, previews a tariff change (each account's
cost, one refused with the reason in the page's language), confirms it and
sees the counts. Russian on a phone, English on a desktop.

Playwright drives /usr/bin/chromium through ``executable_path``; no browser
is ever downloaded. Screenshots go into test-artifacts/.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from rating.models import Account
from tests.e2e.test_cabinet_browser import (VIEWPORTS, browser, log_in,  # noqa: F401 (fixtures)
                                             cabinet_server)
from tests.e2e.test_cabinet_every_page import CHECKS
from tests.integration.cabinet_helpers import Subscriber
from tests.integration.test_cabinet_bulk import seed_company

pytestmark = pytest.mark.peer

TEXT = {"ru": {"title": "Массовое изменение", "refused": "У счёта уже этот тариф.",
               "state": "применено, часть счетов отклонена"},
        "en": {"title": "Bulk change", "refused": "The account already has this tariff.",
               "state": "applied, some refused"}}


def test_bulk_tariff_change_previewed_and_applied(browser, cabinet_server, db_url, artifacts):
    ctx = cabinet_server.app.extensions["abonent"]
    backend = db_url.split(":")[0].split("+")[0]
    for lang, viewport_name in (("ru", "phone"), ("en", "desktop")):
        viewport = VIEWPORTS[viewport_name]
        company = seed_company(ctx, accounts=8, suffix=f"-{lang}")
        with ctx.Session() as session:
            # One account of the branch is on the new tariff already.
            session.get(Account, company["ids"][-1]).tariff_id = company["new"]
            session.commit()
        page = browser.new_page(viewport=viewport,
                                locale="ru-RU" if lang == "ru" else "en-US")
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

        def look(step: str) -> None:
            facts = page.evaluate(CHECKS)
            assert facts["scroll"] <= facts["inner"], facts["wide"]
            assert facts["h1"] == 1 and facts["lang"] == lang
            page.screenshot(path=str(artifacts / f"bulk-{step}-{lang}-{viewport_name}-"
                                                 f"{backend}.png"), full_page=True)

        try:
            log_in(page, cabinet_server.url,
                   Subscriber(0, "", company["login"], "correct-horse-1"))
            page.goto(f"{cabinet_server.url}/bulk")
            assert TEXT[lang]["title"] in page.inner_text("h1")
            look("1-form")
            page.select_option("[data-test=bulk-kind]", "tariff")
            page.select_option("[data-test=bulk-tariff]", str(company["new"]))
            page.check("[data-test=bulk-all]")
            page.click("[data-test=bulk-preview]")
            page.wait_for_selector("[data-test=bulk-items]")
            assert page.inner_text("[data-test=bulk-ready]") == "7"
            assert page.inner_text("[data-test=bulk-refused]") == "1"
            assert TEXT[lang]["refused"] in page.inner_text("[data-test=bulk-reason]")
            look("2-preview")
            page.click("[data-test=bulk-apply]")
            page.wait_for_selector("[data-test=bulk-revert]")
            assert page.inner_text("[data-test=bulk-done]") == "7"
            assert TEXT[lang]["state"] in page.inner_text("[data-test=bulk-state]")
            look("3-applied")
            assert errors == []
        finally:
            page.close()
        with ctx.Session() as session:
            assert session.scalar(select(func.count()).select_from(Account).where(
                Account.id.in_(company["ids"]), Account.next_tariff_id == company["new"])) == 7
