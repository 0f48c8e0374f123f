"""Self-service pages in Debian's Chromium, in Russian and English, on a
phone (390×844) and a desktop (1366×900): forgotten password with the link
from a real mail, notification settings and service requests.

Playwright drives /usr/bin/chromium through ``executable_path``; no browser
is ever downloaded. Every page is screenshotted into test-artifacts/.
"""

from __future__ import annotations

import re

import pytest

from cabinet.app import CabinetServer
from rating import ledger
from rating import requests as service_requests
from tests.conftest import Inbox, free_tcp_port, make_context
from tests.e2e.test_cabinet_browser import VIEWPORTS, browser, go_to  # noqa: F401 (fixture)
from tests.integration.cabinet_helpers import seed_subscriber

pytestmark = pytest.mark.peer

LINK = re.compile(r"https?://\S+/reset\?token=[A-Za-z0-9_\-]+")
LOCALES = {"ru": "ru-RU", "en": "en-US"}
WORDS = {
    "ru": {"sent": "ссылка для установки нового пароля уже отправлена",
           "changed": "Пароль изменён", "used": "уже использована",
           "saved": "Настройки уведомлений сохранены", "registered": "зарегистрирована",
           "in_progress": "в работе", "forgot": "Забыли пароль?"},
    "en": {"sent": "a link to set a new password is on its way",
           "changed": "Your password has been changed", "used": "already been used",
           "saved": "Notification settings saved", "registered": "is registered",
           "in_progress": "in progress", "forgot": "Forgot password?"},
}


@pytest.fixture
def cabinet_server(db_url, tmp_path, inbox):
    port = free_tcp_port()
    context = make_context(db_url, data_dir=tmp_path, smtp_host="127.0.0.1",
                           smtp_port=inbox.port, smtp_sender="billing@isp.test",
                           cabinet_public_url=f"http://127.0.0.1:{port}")
    server = CabinetServer(context, host="127.0.0.1", port=port).start()
    yield server
    server.stop()
    context.dispose()


def _fits(page, viewport, what):
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= viewport["width"], f"{what}: {width}px wide"


@pytest.mark.parametrize("lang", ["ru", "en"])
@pytest.mark.parametrize("device", ["phone", "desktop"])
def test_self_service_pages(browser, cabinet_server, db_url, artifacts, inbox, lang, device):
    ctx = cabinet_server.app.extensions["abonent"]
    viewport = VIEWPORTS[device]
    words = WORDS[lang]
    mail = f"{lang}-{device}@example.ru"
    # A negative balance: the subscriber who forgot the password is often broke.
    subscriber = seed_subscriber(ctx, balance=None, email=mail, phone="+79123456789")
    with ctx.Session() as session:
        ledger.post(session, account_id=subscriber.account_id, amount="-120", kind="fee",
                    key=f"fee:{subscriber.number}", author="test")
        session.commit()
    backend = db_url.split(":")[0].split("+")[0]
    url = cabinet_server.url

    def shot(name):
        _fits(page, viewport, name)
        page.screenshot(path=str(artifacts / f"selfservice-{name}-{lang}-{device}-{backend}.png"),
                        full_page=True)

    page = browser.new_page(viewport=viewport, locale=LOCALES[lang])
    try:
        # -- forgotten password -------------------------------------------------
        page.goto(f"{url}/login")
        assert page.inner_text("[data-test=forgot-link]") == words["forgot"]
        page.click("[data-test=forgot-link]")
        page.wait_for_selector("[data-test=forgot-submit]")
        shot("forgot")
        page.fill("input[name=identifier]", subscriber.login)
        page.click("[data-test=forgot-submit]")
        page.wait_for_selector("[data-test=forgot-sent]")
        assert words["sent"] in page.inner_text("[data-test=forgot-sent]")
        shot("forgot-sent")

        link = LINK.search(Inbox.text(inbox.wait_for(mail))).group(0)
        assert link.startswith(url + "/reset?token=")
        page.goto(link)
        assert page.inner_text("[data-test=reset-login]") == subscriber.login
        shot("reset")
        page.fill("input[name=new]", "new-password-42")
        page.fill("input[name=confirm]", "new-password-42")
        page.click("[data-test=reset-submit]")
        page.wait_for_selector("[data-test=login-submit]")
        assert words["changed"] in page.inner_text("main")
        shot("reset-done")

        page.goto(link)
        page.wait_for_selector("[data-test=reset-refused]")
        assert words["used"] in page.inner_text("[data-test=error]")
        shot("reset-used")

        page.goto(f"{url}/login")
        page.fill("input[name=login]", subscriber.login)
        page.fill("input[name=password]", "new-password-42")
        page.click("[data-test=login-submit]")
        page.wait_for_selector("[data-test=balance]")

        # -- notification settings, reached through the nav ----------------------
        go_to(page, "notifications")
        page.wait_for_selector("[data-test=save-notifications]")
        assert page.is_checked("[data-test=channel-email]")
        shot("notifications")
        page.check("[data-test=channel-sms]")
        page.fill("input[name=low_balance_threshold]", "150")
        page.click("[data-test=save-notifications]")
        page.wait_for_selector(f"text={words['saved']}")
        assert page.is_checked("[data-test=channel-sms]")
        shot("notifications-saved")

        # -- service requests ----------------------------------------------------
        go_to(page, "requests_page")
        page.wait_for_selector("[data-test=send-request]")
        shot("requests")
        page.select_option("[data-test=request-topic]", "slow_speed")
        page.fill("[data-test=request-text]",
                  "Evenings the speed drops to 5 Mbit/s. Скорость вечером падает.")
        page.click("[data-test=send-request]")
        page.wait_for_selector(f"text={words['registered']}")
        (row,) = page.query_selector_all("[data-test=requests] li")
        assert "Evenings the speed drops" in row.inner_text()
        with ctx.Session() as session:
            (view,) = service_requests.for_account(session, subscriber.account_id)
            service_requests.set_status(session, view.id, "in_progress",
                                        answer="We are checking the line.", actor="admin:test")
            session.commit()
        page.reload()
        assert page.inner_text("[data-test=request-status]") == words["in_progress"]
        assert "We are checking the line." in page.inner_text("[data-test=request-answer]")
        shot("requests-answered")
    finally:
        page.close()
