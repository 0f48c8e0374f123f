"""Notifications over a real SMTP server on loopback (aiosmtpd)."""

import datetime as dt
from decimal import Decimal

from sqlalchemy import delete, select

from rating import notify
from rating.models import Account, Notification
from tests.conftest import free_tcp_port
from tests.factories import make_account, make_tariff


def test_low_balance_and_runs_out_are_mailed_once_a_day(ctx, inbox):
    today = dt.date(2026, 4, 1)
    with ctx.Session() as session:
        tariff = make_tariff(session, fee="300.00", fee_period="daily")  # 10.00 a day
        low = make_account(session, tariff=tariff.name, balance="25", email="low@example.net")
        low.low_balance_threshold = Decimal("100")
        make_account(session, tariff=tariff.name, balance="500", email="rich@example.net")
        # Exactly three days of fee left is not "less than three days".
        make_account(session, tariff=tariff.name, balance="30", email="edge@example.net")
        sms = make_account(session, tariff=tariff.name, balance="5", phone="+79000000001")
        sms.notify_channels = ["sms"]
        for account in session.scalars(select(Account)):
            account.language = "en"
        # The seed payments' "payment received" notices are not this test's.
        session.execute(delete(Notification))
        session.commit()
        assert notify.queue(session, today) == 3
        assert notify.queue(session, today) == 0  # a second run, or a second node
        session.commit()
    sms_gateway = notify.LoggingChannel("sms")
    channels = {"email": notify.EmailChannel("127.0.0.1", inbox.port, "billing@isp.test"),
                "sms": sms_gateway}
    assert notify.deliver(ctx.Session, channels).sent == 3
    assert notify.deliver(ctx.Session, channels).sent == 0
    subjects = sorted((m["To"], m["Subject"]) for m in inbox.messages)
    assert subjects == [("low@example.net", "Low balance"),
                        ("low@example.net", "Your money runs out soon")]
    body = next(m for m in inbox.messages if m["Subject"] == "Low balance").get_payload()
    assert "25.00" in body and "100.00" in body
    assert sms_gateway.sent == [("+79000000001", "Your money runs out soon")]


def test_an_unreachable_smtp_server_is_retried_then_given_up(ctx):
    with ctx.Session() as session:
        tariff = make_tariff(session, fee="300.00", fee_period="daily")
        make_account(session, tariff=tariff.name, balance="1", email="a@example.net")
        session.execute(delete(Notification))
        notify.queue(session, dt.date(2026, 4, 1))
        session.commit()
    dead = {"email": notify.EmailChannel("127.0.0.1", free_tcp_port(), "b@isp.test", timeout=2)}
    moment = dt.datetime(2026, 4, 1, 12, 0)
    for _ in range(notify.MAX_ATTEMPTS):
        # Each retry waits out its backoff (an hour at most).
        assert notify.deliver(ctx.Session, dead, now=moment).sent == 0
        moment += notify.MAX_BACKOFF
    with ctx.Session() as session:
        note = session.scalars(select(Notification)).one()
        assert (note.status, note.attempts) == ("failed", notify.MAX_ATTEMPTS)
        assert "ConnectionRefused" in note.last_error


def test_days_left():
    assert notify.days_left(Decimal("25"), Decimal("0"), Decimal("10")) == 2
    assert notify.days_left(Decimal("-5"), Decimal("0"), Decimal("10")) == 0
    assert notify.days_left(Decimal("25"), Decimal("10"), Decimal("10")) == 3
    assert notify.days_left(Decimal("25"), Decimal("0"), Decimal("0")) is None
