"""A subscriber pays by card through YooKassa in Debian's Chromium: the
cabinet sends the browser to the (fake) provider's page, the provider's
webhook credits the balance; the webhook replayed credits nothing more; a
lost webhook is recovered by `abonent payment poll`; an operator's refund
shows in the money flow. The provider is tests/fake_yookassa.py on
127.0.0.1, reached through the real SDK; everything else is real.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal

import pytest
from click.testing import CliRunner

from cabinet.app import CabinetServer
from rating.models import Account
from scripts.cli import cli
from tests.conftest import free_tcp_port, make_context
from tests.e2e.test_cabinet_browser import VIEWPORTS, browser, log_in  # noqa: F401 (fixture)
from tests.fake_yookassa import FakeYooKassa
from tests.integration.cabinet_helpers import seed_subscriber

pytestmark = pytest.mark.peer

TEXTS = {
    "ru": {"locale": "ru-RU", "paid": "Платёж на 250,00\u00a0₽ получен",
           "waiting": "Платёж на 120,00\u00a0₽ ожидает подтверждения банка",
           "paid_late": "Платёж на 120,00\u00a0₽ получен", "refund": "Возврат"},
    "en": {"locale": "en-US", "paid": "The payment of ₽250.00 is received",
           "waiting": "The payment of ₽120.00 is waiting for the bank's confirmation",
           "paid_late": "The payment of ₽120.00 is received", "refund": "Refund"},
}


@pytest.fixture
def fake():
    server = FakeYooKassa().start()
    yield server
    server.stop()


@pytest.fixture
def settings(fake) -> dict:
    return dict(yookassa_shop_id=fake.shop_id, yookassa_secret_key=fake.secret_key,
                yookassa_api_url=fake.api_url, yookassa_webhook_networks="127.0.0.0/8")


@pytest.fixture
def cabinet_server(db_url, tmp_path, fake, settings):
    context = make_context(db_url, data_dir=tmp_path, **settings)
    server = CabinetServer(context, host="127.0.0.1", port=free_tcp_port()).start()
    fake.webhook_url = f"{server.url}/payments/callback/yookassa"
    yield server
    server.stop()
    context.dispose()


def _abonent(db_url, tmp_path, settings, *args) -> str:
    env = {"ABONENT_DATABASE_URL": db_url, "ABONENT_DATA_DIR": str(tmp_path),
           "ABONENT_ACTOR": "admin:noc",
           **{f"ABONENT_{k.upper()}": v for k, v in settings.items()}}
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, (result.output, result.stderr)
    return result.stdout


def _balance(ctx, account_id) -> Decimal:
    with ctx.Session() as session:
        return session.get(Account, account_id).balance


@pytest.mark.parametrize("lang,device", [("ru", "phone"), ("en", "desktop")])
def test_pay_by_card_webhook_replay_lost_webhook_and_refund(
        browser, cabinet_server, fake, settings, db_url, tmp_path, artifacts,  # noqa: F811
        lang, device):
    ctx = cabinet_server.app.extensions["abonent"]
    subscriber = seed_subscriber(ctx, balance="100", email="ivan@example.ru")
    words = TEXTS[lang]
    backend = db_url.split(":")[0].split("+")[0]
    page = browser.new_page(viewport=VIEWPORTS[device], locale=words["locale"])

    def shot(name):
        page.screenshot(path=str(artifacts / f"yookassa-{name}-{lang}-{device}-{backend}.png"),
                        full_page=True)

    def pay(amount):
        page.goto(f"{cabinet_server.url}/payments")
        page.fill("[data-test=payments-topup-amount]", amount)
        page.click("[data-test=payments-topup-submit]")
        page.click("[data-test=go-to-bank]")
        page.wait_for_selector("[data-test=fake-pay]")  # the provider's page
        assert page.url.startswith(f"{fake.url}/pay/")
        payment_id = page.url.rsplit("/", 1)[1]
        assert Decimal(page.inner_text("[data-test=fake-amount]")) == Decimal(amount)
        page.click("[data-test=fake-pay]")
        page.wait_for_selector("[data-test=topup-status]")  # back in the cabinet
        return payment_id

    try:
        log_in(page, cabinet_server.url, subscriber)

        # Pay: the provider's page, its webhook, the balance.
        first = pay("250")
        assert words["paid"] in page.inner_text("[data-test=topup-status]")
        assert _balance(ctx, subscriber.account_id) == Decimal("350.00")
        shot("paid")

        # The webhook replayed: accepted, credited once.
        assert fake.send_webhook(first) == 200
        assert _balance(ctx, subscriber.account_id) == Decimal("350.00")

        # The webhook lost: pending until the operator's poll finds it paid.
        fake.lose_webhooks = True
        second = pay("120")
        assert words["waiting"] in page.inner_text("[data-test=topup-status]")
        assert _balance(ctx, subscriber.account_id) == Decimal("350.00")
        shot("waiting")
        polled = json.loads(_abonent(db_url, tmp_path, settings, "payment", "poll", "--json"))
        assert polled["checked"] == 1 and polled["settled"][0]["credited"]
        page.click("[data-test=topup-refresh]")
        page.wait_for_selector("[data-test=topup-status]")
        assert words["paid_late"] in page.inner_text("[data-test=topup-status]")
        assert _balance(ctx, subscriber.account_id) == Decimal("470.00")
        assert fake.payments[second]["status"] == "succeeded"

        # A refund of part of the first payment, by the operator.
        _abonent(db_url, tmp_path, settings, "payment", "refund", first, "100")
        assert _balance(ctx, subscriber.account_id) == Decimal("370.00")
        page.goto(f"{cabinet_server.url}/payments")
        statement = page.inner_text("main")
        assert words["refund"] in statement
        assert re.search(r"100[,.]00", statement)
        shot("refunded")
    finally:
        page.close()
