"""A subscriber redeems a voucher and pays through the test bank in Debian's
Chromium, in Russian and English, on a phone and a desktop.

Playwright drives /usr/bin/chromium through ``executable_path``; no browser
is ever downloaded. Each page is saved into test-artifacts/.
"""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from cabinet.app import CabinetServer
from rating import vouchers
from rating.models import Account
from tests.conftest import free_tcp_port, make_context
from tests.e2e.test_cabinet_browser import VIEWPORTS, browser, log_in  # noqa: F401 (fixture)
from tests.integration.cabinet_helpers import seed_subscriber

pytestmark = pytest.mark.peer

TEXTS = {
    "ru": {"locale": "ru-RU", "redeemed": "зачислено 500,00\u00a0₽", "paid": "Платёж на 250,00\u00a0₽",
           "declined": "отклонён", "bank": "Тестовый банк"},
    "en": {"locale": "en-US", "redeemed": "₽500.00 credited", "paid": "The payment of ₽250.00",
           "declined": "was declined", "bank": "A test bank"},
}


@pytest.fixture
def cabinet_server(db_url, tmp_path):
    context = make_context(db_url, data_dir=tmp_path, payments_testpay_enabled="true")
    server = CabinetServer(context, host="127.0.0.1", port=free_tcp_port()).start()
    yield server
    server.stop()
    context.dispose()


def _balance(ctx, account_id) -> Decimal:
    with ctx.Session() as session:
        return session.get(Account, account_id).balance


def _fits(page, viewport, what):
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= viewport["width"], f"{what} is {width} px wide"


@pytest.mark.parametrize("lang", ["ru", "en"])
@pytest.mark.parametrize("device", ["phone", "desktop"])
def test_redeem_a_voucher_and_pay_through_the_test_bank(
        browser, cabinet_server, db_url, artifacts, lang, device):  # noqa: F811
    ctx = cabinet_server.app.extensions["abonent"]
    subscriber = seed_subscriber(ctx, balance="100")
    with ctx.Session() as session:
        code = vouchers.issue(session, count=1, amount="500", batch="e2e")[0].code
        session.commit()
    viewport = VIEWPORTS[device]
    words = TEXTS[lang]
    backend = db_url.split(":")[0].split("+")[0]

    def shot(name):
        _fits(page, viewport, name)
        page.screenshot(path=str(artifacts / f"money-{name}-{lang}-{device}-{backend}.png"),
                        full_page=True)

    page = browser.new_page(viewport=viewport, locale=words["locale"])
    try:
        log_in(page, cabinet_server.url, subscriber)
        assert page.evaluate("document.documentElement.lang") == lang

        # The payments page leads to the top-up page.
        page.goto(f"{cabinet_server.url}/payments")
        page.click("[data-test=topup-link]")
        page.wait_for_selector("[data-test=voucher-code]")
        shot("topup")

        # A voucher, typed in lower case with spaces as people do.
        page.fill("[data-test=voucher-code]", code.lower().replace("-", " "))
        page.click("[data-test=redeem-voucher]")
        page.wait_for_url(re.compile(r"/payments$"))
        assert words["redeemed"] in page.inner_text("main")
        assert _balance(ctx, subscriber.account_id) == Decimal("600.00")
        shot("voucher-redeemed")

        # A card payment through the test bank, from the payments page: Pay.
        page.fill("[data-test=payments-topup-amount]", "250")
        page.click("[data-test=payments-topup-submit]")
        page.wait_for_selector("[data-test=bank-pay]")
        assert words["bank"] in page.inner_text("main")
        assert "250" in page.inner_text("[data-test=bank-amount]")
        shot("bank")
        page.click("[data-test=bank-pay]")
        page.wait_for_selector("[data-test=topup-status]")
        assert words["paid"] in page.inner_text("[data-test=topup-status]")
        assert _balance(ctx, subscriber.account_id) == Decimal("850.00")
        shot("paid")

        # And one the subscriber declines at the bank: no money moves.
        page.goto(f"{cabinet_server.url}/topup")
        page.fill("[data-test=topup-amount]", "250")
        page.click("[data-test=topup-submit]")
        page.click("[data-test=bank-decline]")
        page.wait_for_selector("[data-test=topup-status]")
        assert words["declined"] in page.inner_text("[data-test=topup-status]")
        assert _balance(ctx, subscriber.account_id) == Decimal("850.00")
        shot("declined")

        # The statement as PDF downloads from the payments page.
        page.goto(f"{cabinet_server.url}/payments")
        with page.expect_download() as download:
            page.click("[data-test=pdf]")
        assert download.value.suggested_filename.startswith(f"statement-{subscriber.number}")
        assert download.value.suggested_filename.endswith(".pdf")
    finally:
        page.close()
