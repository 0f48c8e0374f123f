"""Notifications through real sockets: a test SMSC speaking SMPP 3.4, a fake
Bot API over HTTP, aiosmtpd; the outbox's once-only delivery on both
databases."""

import datetime as dt
from email.header import decode_header, make_header
import logging
import threading
import time
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from rating import notify, notify_texts, telegram_link
from rating.models import (Account, Notification, NotificationAttempt, SmsPart,
                           TelegramLink)
from rating.notify_channels import SmppChannel, TelegramChannel
from tests.fake_botapi import FakeBotApi
from tests.fake_smsc import FakeSmsc, decode_text
from tests.factories import make_account, make_tariff

LONG_RU = ("Уважаемый абонент! Сегодня с 02:00 до 05:00 на вашем узле связи ведутся "
           "плановые работы: замена коммутатора и обновление программного обеспечения. "
           "Интернет и телевидение могут быть недоступны. Приносим извинения за "
           "неудобства. Ваш провайдер.")


@pytest.fixture
def smsc():
    server = FakeSmsc()
    yield server
    server.close()


@pytest.fixture
def botapi():
    server = FakeBotApi()
    yield server
    server.close()


def _sms(smsc, **kw):
    return SmppChannel("127.0.0.1", smsc.port, smsc.system_id, smsc.password, **kw)


def _one(session, **where):
    return session.scalars(select(Notification).filter_by(**where)).one()


def test_cyrillic_multipart_sms_is_reassembled_and_receipted(ctx, smsc, caplog):
    caplog.set_level(logging.DEBUG)
    with ctx.Session() as session:
        account = make_account(session, phone="+79001112233")
        account.notify_channels = ["sms"]
        session.flush()
        notify.broadcast(session, select(Account.id), actor="noc", target="all",
                         text=LONG_RU)
        session.commit()
    channel = _sms(smsc)
    try:
        stats = notify.deliver(ctx.Session, {"sms": channel})
        assert stats.sent == 1
        notify.collect_receipts(ctx.Session, {"sms": channel}, wait=1.0)
    finally:
        channel.close()
    submits = smsc.messages_to("79001112233")
    assert len(submits) == 4  # 241 characters in UCS-2: 67 a part
    assert {s["data_coding"] for s in submits} == {8}
    assert all(s["esm_class"] & 0x40 and s["registered_delivery"] == 1 for s in submits)
    assert decode_text(submits) == LONG_RU
    assert smsc.binds == [("abonent", "s3cret")]
    # smpplib logs whole PDUs (the bind's password too) at DEBUG: held back.
    assert "s3cret" not in caplog.text and "733363726574" not in caplog.text
    with ctx.Session() as session:
        note = _one(session, channel="sms")
        assert (note.status, note.parts, note.parts_delivered) == ("delivered", 4, 4)
        assert note.delivered_at is not None
        parts = session.scalars(select(SmsPart).order_by(SmsPart.part)).all()
        assert [p.state for p in parts] == ["delivered"] * 4
        events = sorted(a.event + ":" + a.outcome for a in session.scalars(
            select(NotificationAttempt).where(NotificationAttempt.notification_id == note.id)))
        assert events == ["receipt:delivered"] * 4 + ["submit:sent"]


def test_ascii_sms_goes_in_gsm7_and_a_refusal_fails_it(ctx, smsc):
    with ctx.Session() as session:
        ok = make_account(session, phone="+79001110001")
        bad = make_account(session, phone="+79001110002")
        for account in (ok, bad):
            account.notify_channels, account.language = ["sms"], "en"
        session.flush()
        notify.notify_account(session, ok, "restored", "t1", {"balance": Decimal("5")})
        notify.notify_account(session, bad, "restored", "t2", {"balance": Decimal("5")})
        session.commit()
    smsc.status_for["79001110002"] = 0x0000000B  # invalid destination address
    channel = _sms(smsc)
    try:
        stats = notify.deliver(ctx.Session, {"sms": channel})
    finally:
        channel.close()
    assert (stats.sent, stats.failed) == (1, 1)
    [submit] = smsc.messages_to("79001110001")
    assert submit["data_coding"] == 0 and not submit["esm_class"] & 0x40
    assert decode_text([submit]).startswith("Account ")
    with ctx.Session() as session:
        assert _one(session, recipient="+79001110002").status == "failed"
        assert "0x0000000B" in _one(session, recipient="+79001110002").last_error


def test_a_late_smsc_answer_never_makes_a_second_sms(ctx, smsc):
    with ctx.Session() as session:
        account = make_account(session, phone="+79005550000")
        account.notify_channels = ["sms"]
        session.flush()
        notify.notify_account(session, account, "restored", "late", {"balance": Decimal("1")})
        session.commit()
    smsc.delay_resp[1] = 1.5  # the first submit is answered after the timeout
    channel = _sms(smsc, submit_timeout=0.5)
    try:
        stats = notify.deliver(ctx.Session, {"sms": channel})
        assert stats.unknown == 1
        with ctx.Session() as session:
            assert _one(session, channel="sms").status == "unknown"
        # Another run does not resend it.
        assert notify.deliver(ctx.Session, {"sms": channel}).sent == 0
        # The late answer and then the receipt arrive on the same bind.
        notify.collect_receipts(ctx.Session, {"sms": channel}, wait=2.5)
    finally:
        channel.close()
    assert len(smsc.messages_to("79005550000")) == 1
    with ctx.Session() as session:
        note = _one(session, channel="sms")
        assert note.status == "delivered" and note.attempts == 1
        outcomes = sorted(a.event + ":" + a.outcome for a in session.scalars(
            select(NotificationAttempt)))
        assert outcomes == ["late-answer:sent", "receipt:delivered", "submit:timeout"]


def test_sms_rate_is_respected(ctx, smsc):
    with ctx.Session() as session:
        for n in range(6):
            account = make_account(session, phone=f"+7900777000{n}")
            account.notify_channels = ["sms"]
        session.flush()
        notify.broadcast(session, select(Account.id), actor="noc", target="all",
                         template="maintenance")
        session.commit()
    # 6 single-part messages, 0.1 s apart (0.05 s of slack): >= 0.45 s.
    channel = _sms(smsc, rate=10)
    started = time.monotonic()
    try:
        assert notify.deliver(ctx.Session, {"sms": channel}).sent == 6
    finally:
        channel.close()
    assert time.monotonic() - started >= 0.45


def test_telegram_messages_and_the_secret_token_stays_out_of_logs(ctx, botapi, caplog):
    caplog.set_level(logging.DEBUG)
    with ctx.Session() as session:
        account = make_account(session)
        account.telegram_chat_id, account.language = "4242", "ru"
        blocked = make_account(session)
        blocked.telegram_chat_id = "666"
        for a in (account, blocked):
            a.notify_channels = ["telegram"]
        session.flush()
        notify.notify_account(session, account, "suspended", "s1", {"balance": Decimal("-3")})
        notify.notify_account(session, blocked, "suspended", "s2", {"balance": Decimal("-3")})
        session.commit()
    botapi.blocked.add("666")
    channel = TelegramChannel(botapi.token, botapi.base_url)
    try:
        stats = notify.deliver(ctx.Session, {"telegram": channel})
    finally:
        channel.close()
    assert (stats.sent, stats.failed) == (1, 1)
    assert botapi.sent[0]["chat_id"] == "4242"
    assert botapi.sent[0]["text"].startswith("Лицевой счёт") and "приостановлен" in \
        botapi.sent[0]["text"]
    assert botapi.token not in caplog.text and "TEST-token-secret" not in caplog.text


def test_telegram_linking_by_a_one_time_code(ctx, botapi):
    with ctx.Session() as session:
        account = make_account(session)
        other = make_account(session)
        code = telegram_link.new_code(session, account.id, minutes=30).code
        stale = telegram_link.new_code(session, other.id, minutes=30)
        stale.expires_at = stale.created_at - dt.timedelta(seconds=1)
        stale_code, account_id = stale.code, account.id
        session.commit()
    botapi.add_start(777, f"/start {code}")
    botapi.add_start(888, f"/start {code}")         # used already
    botapi.add_start(999, f"/start {stale_code}")   # expired
    botapi.add_start(555, "hello")
    channel = TelegramChannel(botapi.token, botapi.base_url)
    try:
        assert telegram_link.poll(ctx.Session, channel) == 1
        assert telegram_link.poll(ctx.Session, channel) == 0  # offset moved on
    finally:
        channel.close()
    with ctx.Session() as session:
        account = session.get(Account, account_id)
        assert account.telegram_chat_id == "777"
        assert "telegram" in account.notify_channels
        assert session.scalars(select(TelegramLink).where(
            TelegramLink.code == code)).one().chat_id == "777"
    replies = {m["chat_id"]: m["text"] for m in botapi.sent}
    assert set(replies) == {"777", "888", "999"}
    assert "Готово" in replies["777"] and "не подошёл" in replies["888"]


def test_email_in_the_subscribers_language(ctx, inbox):
    with ctx.Session() as session:
        ru = make_account(session, email="ru@example.net")
        en = make_account(session, email="en@example.net")
        en.language = "en"
        session.flush()
        from rating import accounts
        accounts.add_payment(session, ru, "150.00", external_id="p-1")
        accounts.add_payment(session, ru, "150.00", external_id="p-1")  # the same payment
        accounts.add_payment(session, en, "99.50", external_id="p-2")
        session.commit()
    channel = notify.EmailChannel("127.0.0.1", inbox.port, "billing@isp.test")
    assert notify.deliver(ctx.Session, {"email": channel}).sent == 2
    by_to = {m["To"]: m for m in inbox.messages}

    def subject(message):
        return str(make_header(decode_header(message["Subject"])))

    def body(message):
        return message.get_payload(decode=True).decode(message.get_content_charset())
    assert subject(by_to["ru@example.net"]) == "Платёж получен"
    assert "150,00" in body(by_to["ru@example.net"])
    assert subject(by_to["en@example.net"]) == "Payment received"
    assert "99.50" in body(by_to["en@example.net"])


def test_quiet_hours_hold_sms_but_not_email_or_urgent(ctx):
    quiet = notify.QuietHours.parse("22:00-09:00", "Europe/Moscow")
    night = dt.datetime(2026, 4, 1, 21, 0)   # 00:00 in Moscow
    day = dt.datetime(2026, 4, 1, 8, 0)      # 11:00 in Moscow
    assert quiet.covers(night) and not quiet.covers(day)
    with ctx.Session() as session:
        account = make_account(session, email="q@example.net", phone="+79001230000")
        account.notify_channels = ["email", "sms"]
        session.flush()
        notify.notify_account(session, account, "restored", "r", {"balance": Decimal("1")})
        notify.notify_account(session, account, "suspended", "s", {"balance": Decimal("-1")})
        session.commit()
    channels = {"email": notify.LoggingChannel("email"), "sms": notify.LoggingChannel("sms")}
    notify.deliver(ctx.Session, channels, quiet_hours=quiet, now=night)
    assert sorted(s for _, s in channels["email"].sent) == ["Доступ восстановлен",
                                                           "Доступ приостановлен"]
    assert [s for _, s in channels["sms"].sent] == ["Доступ приостановлен"]  # urgent
    notify.deliver(ctx.Session, channels, quiet_hours=quiet, now=day)
    assert sorted(s for _, s in channels["sms"].sent) == ["Доступ восстановлен",
                                                         "Доступ приостановлен"]


def test_channel_choice_per_kind(ctx):
    with ctx.Session() as session:
        account = make_account(session, email="k@example.net", phone="+79001239999")
        account.notify_channels = ["email", "sms"]
        account.notify_off = ["payment:sms", "broadcast:email"]
        session.flush()
        assert notify.channels_for(account, "payment") == ["email"]
        assert notify.channels_for(account, "broadcast") == ["sms"]
        assert notify.channels_for(account, "suspended") == ["email", "sms"]
        row = notify.broadcast(session, select(Account.id), actor="noc", target="all",
                               template="outage")
        session.commit()
        assert row.queued == 1
        assert _one(session, kind="broadcast").channel == "sms"


def test_broadcast_targets_a_tariff_and_skips_closed_accounts(ctx):
    with ctx.Session() as session:
        gold = make_tariff(session, name="Gold")
        silver = make_tariff(session, name="Silver")
        a = make_account(session, tariff="Gold", email="a@example.net")
        b = make_account(session, tariff="Gold", email="b@example.net")
        b.language = "en"
        make_account(session, tariff="Gold", email="c@example.net").state = "closed"
        make_account(session, tariff="Silver", email="d@example.net")
        session.flush()
        row = notify.broadcast(session, select(Account.id).where(Account.tariff_id == gold.id),
                               actor="noc", target="tariff", target_ref="Gold",
                               template="outage")
        again = notify.broadcast(session, select(Account.id).where(
            Account.tariff_id == silver.id), actor="noc", target="tariff",
            target_ref="Silver", text="Только текст")
        session.commit()
        assert (row.queued, again.queued) == (2, 1)
        bodies = {n.recipient: (n.language, n.body) for n in session.scalars(
            select(Notification).where(Notification.broadcast_id == row.id))}
        assert bodies == {"a@example.net": ("ru", notify_texts.BROADCASTS["outage"]["ru"]),
                          "b@example.net": ("en", notify_texts.BROADCASTS["outage"]["en"])}
        assert a.id


def test_two_delivery_runs_at_once_send_each_message_once(ctx):
    with ctx.Session() as session:
        for n in range(40):
            make_account(session, email=f"u{n}@example.net")
        session.flush()
        notify.broadcast(session, select(Account.id), actor="noc", target="all",
                         template="maintenance")
        session.commit()
    sent: list[str] = []
    lock = threading.Lock()

    class Slow:
        name = "email"

        def send(self, recipient, subject, body, tag=None):
            time.sleep(0.005)
            with lock:
                sent.append(recipient)

    barrier = threading.Barrier(2)
    errors = []

    def run(node):
        try:
            barrier.wait()
            notify.deliver(ctx.Session, {"email": Slow()}, limit=7, node=node)
        except Exception as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=run, args=(f"node{i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(sent) == 40 and len(set(sent)) == 40
    with ctx.Session() as session:
        assert session.scalar(select(func.count()).select_from(Notification).where(
            Notification.status == "sent")) == 40
        nodes = set(session.scalars(select(Notification.claimed_by)))
        assert nodes <= {"node0", "node1"}


def test_a_failed_send_backs_off_then_gives_up(ctx):
    with ctx.Session() as session:
        account = make_account(session, email="f@example.net")
        session.flush()
        notify.notify_account(session, account, "restored", "f", {"balance": Decimal("1")})
        session.commit()

    class Down:
        name = "email"

        def send(self, *args, **kwargs):
            raise notify.ChannelError("451 try later")

    start = dt.datetime(2026, 4, 1, 12, 0)
    stats = notify.deliver(ctx.Session, {"email": Down()}, now=start, max_attempts=2)
    assert stats.retry == 1
    # Not due again until the backoff has passed.
    assert notify.deliver(ctx.Session, {"email": Down()}, now=start, max_attempts=2).retry == 0
    with ctx.Session() as session:
        note = _one(session, kind="restored")
        due = note.next_attempt_at
    stats = notify.deliver(ctx.Session, {"email": Down()}, now=due, max_attempts=2)
    assert stats.failed == 1
    with ctx.Session() as session:
        note = _one(session, kind="restored")
        assert (note.status, note.attempts) == ("failed", 2)
        assert session.scalar(select(func.count()).select_from(NotificationAttempt)) == 2


def test_events_queue_their_notices_once(ctx):
    """Suspended by the ladder, a payment that restores, a request answered
    and a tariff change taking effect: each queued in its own transaction,
    in the account's language, once."""
    from rating import accounts as acc, fees, ledger, requests as service_requests
    from rating import tariff_change
    with ctx.Session() as session:
        make_tariff(session, name="Next")
        account = make_account(session, email="e@example.net")
        account.language = "en"
        session.execute(Notification.__table__.delete())
        ledger.post(session, account_id=account.id, amount=Decimal("-50"), kind="correction",
                    key="drop:1", author="test")
        fees.apply_policies(session, account.id, account.id + 1)
        fees.apply_policies(session, account.id, account.id + 1)  # nothing moves: no notice
        acc.add_payment(session, account, "80.00", external_id="pay-1")
        acc.add_payment(session, account, "80.00", external_id="pay-1")
        row, _ = service_requests.create(session, account.id, topic="other", text="Help",
                                         request_id="req-000001", actor="cabinet:x")
        service_requests.set_status(session, row.id, "done", answer="Fixed the port.",
                                    actor="noc")
        account.next_tariff_id = tariff_change.find_tariff(session, "Next").id
        account.next_tariff_from = dt.date(2026, 5, 1)
        tariff_change.apply_due(session, dt.date(2026, 5, 1))
        session.commit()
        kinds = sorted(n.kind for n in session.scalars(select(Notification)))
        assert kinds == ["payment", "request-answered", "restored", "suspended",
                         "tariff-change"]
        by_kind = {n.kind: n for n in session.scalars(select(Notification))}
        assert by_kind["suspended"].urgent and not by_kind["restored"].urgent
        assert by_kind["payment"].subject == "Payment received"
        assert "80.00" in by_kind["payment"].body
        assert "Fixed the port." in by_kind["request-answered"].body
        assert '"Next"' in by_kind["tariff-change"].body and "2026-05-01" in \
            by_kind["tariff-change"].body


def test_a_quiet_bind_is_kept_alive_and_a_dropped_one_bound_again(ctx, smsc):
    channel = _sms(smsc)
    try:
        channel.send("+79001000001", "", "one")
        channel.KEEPALIVE = 0.0
        channel.poll(0.2)           # quiet "long enough": enquire_link
        time.sleep(0.2)
        assert smsc.enquire_links >= 1 and channel.client is not None
        # The SMSC closes the bind; the next send notices and binds again.
        channel.client._socket.shutdown(2)
        channel.send("+79001000001", "", "two")
    finally:
        channel.close()
    assert [decode_text([s]) for s in smsc.messages_to("79001000001")] == ["one", "two"]
    assert len(smsc.binds) == 2
