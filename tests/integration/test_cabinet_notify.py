"""The cabinet's notice pages (issue 16): which notices on which channel
and their language, and linking Telegram by a one-time code that the bot's
updates (a fake Bot API on loopback) carry back."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from rating import notify, telegram_link
from rating.models import Account, TelegramLink
from rating.notify_channels import TelegramChannel
from tests.conftest import make_context
from tests.fake_botapi import FakeBotApi
from tests.integration.cabinet_helpers import (  # noqa: F401 (fixtures)
    app, client, csrf_token, log_in, post_form, seed_subscriber)


@pytest.fixture
def botapi():
    server = FakeBotApi()
    yield server
    server.close()


@pytest.fixture
def cabinet_ctx(db_url, tmp_path):
    context = make_context(db_url, data_dir=tmp_path, telegram_enabled="true",
                           telegram_bot_username="isp_test_bot", telegram_token="1:x")
    yield context
    context.dispose()


def test_channel_choices_and_language(cabinet_ctx, client):
    who = seed_subscriber(cabinet_ctx, email="n@example.net", phone="+79001234567")
    with cabinet_ctx.Session() as session:
        session.get(Account, who.account_id).notify_channels = ["email", "sms"]
        session.commit()
    assert log_in(client, who.login, who.password, lang="ru").status_code == 302
    page = client.get("/notifications/channels")
    assert page.status_code == 200
    assert "Какие уведомления куда" in page.text
    assert 'value="payment:sms"' in page.text and 'value="payment:telegram"' not in page.text
    every = {f"{kind}:{channel}" for kind in notify.KINDS for channel in ("email", "sms")}
    wanted = sorted(every - {"payment:sms", "broadcast:email"})
    response = post_form(client, "/notifications/channels", {"on": wanted, "language": "en"})
    assert response.status_code == 302
    with cabinet_ctx.Session() as session:
        account = session.get(Account, who.account_id)
        assert sorted(account.notify_off) == ["broadcast:email", "payment:sms"]
        assert account.language == "en"
        assert notify.channels_for(account, "payment") == ["email"]
    page = client.get("/notifications/channels")
    assert re.search(r'value="payment:sms"[^>]*>', page.text).group(0).find("checked") < 0
    assert "checked" in re.search(r'value="payment:email"[^>]*>', page.text).group(0)
    # A pair not on the page is refused with a sentence, nothing changes.
    bad = post_form(client, "/notifications/channels", {"on": ["payment:fax"], "language": ""})
    assert bad.status_code == 400 and "видов на странице" in bad.text
    with cabinet_ctx.Session() as session:
        assert session.get(Account, who.account_id).language == "en"


def test_telegram_linking_from_the_cabinet(cabinet_ctx, client, botapi):
    who = seed_subscriber(cabinet_ctx, email="t@example.net")
    assert log_in(client, who.login, who.password, lang="en").status_code == 302
    page = client.get("/notifications/telegram")
    assert page.status_code == 200 and "No Telegram chat is linked yet." in page.text
    assert 'data-test="deep-link"' not in page.text  # no code until asked
    response = post_form(client, "/notifications/telegram", {})
    assert response.status_code == 302
    page = client.get("/notifications/telegram")
    link = re.search(r'href="(https://t\.me/isp_test_bot\?start=([\w-]+))"', page.text)
    assert link, page.text
    code = link.group(2)
    assert f"/start {code}" in page.text
    # The subscriber opens the link; Telegram sends the bot /start <code>.
    botapi.add_start(31337, f"/start {code}")
    channel = TelegramChannel(botapi.token, botapi.base_url)
    try:
        assert telegram_link.poll(cabinet_ctx.Session, channel) == 1
    finally:
        channel.close()
    page = client.get("/notifications/telegram")
    assert "A Telegram chat is linked to your account." in page.text
    with cabinet_ctx.Session() as session:
        account = session.get(Account, who.account_id)
        assert account.telegram_chat_id == "31337" and "telegram" in account.notify_channels
        assert session.scalars(select(TelegramLink)).one().used_at is not None
    # Russian too.
    client.post("/lang", data={"lang": "ru", "next": "/",
                               "csrf_token": csrf_token(client.get("/").text)})
    page = client.get("/notifications/telegram")
    assert "К вашему счёту привязан чат в Telegram." in page.text
