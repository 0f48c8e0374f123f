"""A company's structure and its consolidated invoice in Debian's Chromium
(issue 21): the director opens Company from the navigation, adds a
department, renames and moves it, places an account in it, deletes it; then
the consolidated invoice of one branch, and its PDF. Russian and English, a
phone and a desktop, on SQLite and PostgreSQL; every form is a plain form
(the editor needs no script). A branch manager's browser sees only its
branch.

Playwright drives /usr/bin/chromium through ``executable_path``; no browser
is ever downloaded. Screenshots go into test-artifacts/.
"""

from __future__ import annotations

import io

import pytest
from pypdf import PdfReader
from sqlalchemy import select

from rating import ledger, org
from rating.accounts import create_cabinet_user
from rating.models import Account, OrgUnit
from tests.e2e.test_cabinet_browser import (VIEWPORTS, browser, cabinet_server,  # noqa: F401
                                             go_to)
from tests.factories import make_account, make_company
from tests.integration.cabinet_helpers import Subscriber

pytestmark = pytest.mark.peer

PASSWORD = "director-pass-1"
TEXT = {"ru": {"added": "Подразделение добавлено", "invoice": "Счёт №", "total": "Итого"},
        "en": {"added": "The unit has been added", "invoice": "Invoice No.", "total": "Total"}}


def _seed(ctx, tag: str):
    """A company of 2 departments × 2 teams × 2 employees × 2 lines; the
    director with every right on it, a manager with rights on Dept 1."""
    with ctx.Session() as session:
        customer, units, accounts = make_company(session, departments=2, teams=2,
                                                 employees=2, lines=2,
                                                 name=f"ООО «Ромашка» {tag}")
        head = make_account(session, kind="company", name=f"Головной офис {tag}")
        org.attach_account(session, head.id, customer.id, actor="test")
        for n, account_id in enumerate(accounts):
            ledger.post(session, account_id=account_id, amount=f"-{300 + n}", kind="fee",
                        key=f"fee:e2e:{account_id}", author="test")
        director = create_cabinet_user(session, head, login=f"director-{tag}",
                                       password=PASSWORD)
        manager = create_cabinet_user(session, head, login=f"manager-{tag}",
                                      password=PASSWORD, role="viewer")
        org.grant(session, director.id, customer.id, org.RIGHTS, actor="test")
        org.grant(session, manager.id, customer.id, "view,pay", actor="test",
                  unit_id=units["Dept 1"].id)
        numbers = {account_id: session.get(Account, account_id).number
                   for account_id in accounts}
        session.commit()
        dept1 = org.branch_accounts(session, customer.id, units["Dept 1"].id)
        return (Subscriber(head.id, head.number, director.login, PASSWORD),
                Subscriber(head.id, head.number, manager.login, PASSWORD),
                {name: unit.id for name, unit in units.items()},
                [numbers[a] for a in dept1], [numbers[a] for a in accounts if a not in dept1])


def _log_in(page, url, who: Subscriber) -> None:
    page.goto(f"{url}/login")
    page.fill("input[name=login]", who.login)
    page.fill("input[name=password]", who.password)
    page.click("[data-test=login-submit]")
    page.wait_for_load_state()


# The other two pairs of language and screen: the every-page test looks at
# these pages in all four (tests/e2e/test_cabinet_every_page.py).
@pytest.mark.parametrize("lang,device", [("ru", "phone"), ("en", "desktop")])
def test_the_director_edits_the_tree_and_reads_the_invoice(browser, cabinet_server, db_url,
                                                          artifacts, lang, device):
    ctx = cabinet_server.app.extensions["abonent"]
    backend = db_url.split(":")[0].split("+")[0]
    director, manager, units, branch_numbers, other_numbers = _seed(ctx, f"{lang}{device}")
    viewport = VIEWPORTS[device]
    page = browser.new_page(viewport=viewport, locale="ru-RU" if lang == "ru" else "en-US",
                            java_script_enabled=False)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

    def shot(step: str) -> None:
        assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
        page.screenshot(path=str(artifacts / f"company-{step}-{lang}-{device}-{backend}.png"),
                        full_page=True)

    try:
        page.goto(f"{cabinet_server.url}/login")
        if page.get_attribute("html", "lang") != lang:
            page.click(f"[data-test=lang-{lang}]")
        _log_in(page, cabinet_server.url, director)
        assert page.get_attribute("html", "lang") == lang
        # Company from the navigation (a tab, or "More" on a phone).
        go_to(page, "overview")
        page.wait_for_selector("[data-test=company-nav]")
        assert page.locator("[data-test=account-row]").count() == 17  # 16 lines + head office
        shot("1-overview")
        page.click("[data-test=company-tree]")
        page.wait_for_selector("[data-test=tree]")
        # Add a department at the top level.
        page.fill("[data-test=unit-name-input]", "Logistics")
        page.select_option("[data-test=unit-parent]", "")
        page.click("[data-test=add-unit]")
        assert TEXT[lang]["added"] in page.inner_text("main")
        shot("2-added")
        with ctx.Session() as session:
            new_id = session.scalar(select(OrgUnit.id).where(OrgUnit.name == "Logistics")
                                    .order_by(OrgUnit.id.desc()))
        unit = page.locator(f"[data-unit='{new_id}']")
        # Rename, then move it under Dept 0 (the <details> opens without a script).
        unit.locator("[data-test=unit-edit] > summary").click()
        unit.locator("[data-test=rename-name]").fill("Logistics & supply")
        unit.locator("[data-test=rename]").click()
        unit = page.locator(f"[data-unit='{new_id}']")
        assert unit.locator("[data-test=unit-name]").inner_text() == "Logistics & supply"
        unit.locator("[data-test=unit-edit] > summary").click()
        unit.locator("[data-test=move-parent]").select_option(str(units["Dept 0"]))
        unit.locator("[data-test=move]").click()
        # Place an account of Dept 1 in it.
        page.fill("[data-test=attach-number]", branch_numbers[0])
        page.select_option("[data-test=attach-unit]", str(new_id))
        page.click("[data-test=attach]")
        shot("3-placed")
        with ctx.Session() as session:
            moved = session.get(OrgUnit, new_id)
            assert moved.parent_id == units["Dept 0"] and moved.name == "Logistics & supply"
            placed = session.scalar(select(Account.org_unit_id).where(
                Account.number == branch_numbers[0]))
            assert placed == new_id
        # Delete it: the account goes up to Dept 0.
        unit = page.locator(f"[data-unit='{new_id}']")
        unit.locator("[data-test=unit-edit] > summary").click()
        unit.locator("[data-test=delete]").click()
        assert page.locator(f"[data-unit='{new_id}']").count() == 0
        with ctx.Session() as session:
            assert session.scalar(select(Account.org_unit_id).where(
                Account.number == branch_numbers[0])) == units["Dept 0"]

        # The consolidated invoice of Dept 1.
        page.click("[data-test=company-invoice]")
        page.select_option("[data-test=invoice-unit]", str(units["Dept 1"]))
        page.click("[data-test=invoice-show]")
        page.wait_for_selector("[data-test=invoice-lines]")
        assert TEXT[lang]["invoice"] in page.inner_text("[data-test=invoice-title]")
        lines = page.locator("[data-test=invoice-line]")
        assert lines.count() == len(branch_numbers) - 1
        text = page.inner_text("[data-test=invoice-lines]")
        assert branch_numbers[1] in text and other_numbers[0] not in text
        assert TEXT[lang]["total"] in page.inner_text("[data-test=invoice-total]")
        shot("4-invoice")
        with page.expect_download() as download:
            page.click("[data-test=invoice-pdf]")
        with open(download.value.path(), "rb") as handle:
            data = handle.read()
        words = "".join(p.extract_text() for p in PdfReader(io.BytesIO(data)).pages)
        assert branch_numbers[1] in words and other_numbers[0] not in words
        assert errors == []

        # The manager's browser: its branch only, and no editor.
        other = browser.new_page(viewport=viewport, java_script_enabled=False)
        try:
            _log_in(other, cabinet_server.url, manager)
            other.goto(f"{cabinet_server.url}/company/")
            shown = other.inner_text("[data-test=accounts]")
            assert branch_numbers[1] in shown and other_numbers[0] not in shown
            other.goto(f"{cabinet_server.url}/company/tree")
            assert other.locator("[data-test=unit-edit]").count() == 0
            assert other.locator("[data-test=add-unit-form]").count() == 0
            other.goto(f"{cabinet_server.url}/company/invoice?unit={units['Dept 0']}")
            assert other.locator("[data-test=invoice]").count() == 0
        finally:
            other.close()
    finally:
        page.close()
