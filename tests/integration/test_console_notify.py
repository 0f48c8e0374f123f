"""`abonent notify list|show|send|broadcast|retry|deliver` on SQLite and
PostgreSQL: targeting by NAS and tariff, JSON output, bad input refused in
one line with exit 2, and delivery to a loopback SMSC from the command."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from aaa.models import Nas, Session as RadiusSession
from config.db import utcnow
from rating.models import Notification
from tests.factories import make_account, make_tariff
from tests.fake_smsc import FakeSmsc, decode_text


@pytest.fixture
def seeded(ctx):
    with ctx.Session() as session:
        gold = make_tariff(session, name="Gold")
        make_tariff(session, name="Silver")
        a = make_account(session, number="A1", tariff="Gold", email="a@example.net",
                         phone="+79000000001")
        a.notify_channels = ["email", "sms"]
        b = make_account(session, number="B1", tariff="Silver", email="b@example.net")
        b.language = "en"
        make_account(session, number="C1", tariff="Silver", email="c@example.net")
        nas = Nas(name="bras-1", address="10.0.0.1", secret="s", vendor="mikrotik")
        session.add(nas)
        session.flush()
        now = utcnow()
        session.add(RadiusSession(nas_id=nas.id, acct_session_id="x1", username="b",
                                  account_id=b.id, started_at=now, updated_at=now))
        session.add(RadiusSession(nas_id=nas.id, acct_session_id="x2", username="c",
                                  account_id=a.id, started_at=now, updated_at=now,
                                  stopped_at=now))
        # The seed payments' notices are not these tests'.
        session.query(Notification).delete()
        session.commit()
        assert gold.id
    return ctx


def _count(ctx, **where) -> int:
    with ctx.Session() as session:
        return session.scalar(select(func.count()).select_from(Notification).filter_by(**where))


def test_broadcast_by_nas_tariff_and_all(abonent, seeded):
    out = json.loads(abonent("notify", "broadcast", "--nas", "bras-1", "--template", "outage",
                             "--urgent", "--json").output)
    assert out["queued"] == 1  # only the session still open
    out = json.loads(abonent("notify", "broadcast", "--tariff", "Gold", "--text",
                             "Привет", "--json").output)
    assert out["queued"] == 2  # A1 by e-mail and SMS
    out = json.loads(abonent("notify", "broadcast", "--all", "--text", "Всем",
                             "--text-en", "To all", "--json").output)
    assert out["queued"] == 4
    listed = json.loads(abonent("notify", "list", "--kind", "broadcast", "--account", "B1",
                                "--json").output)
    assert [(r["language"], r["urgent"]) for r in listed] == [("en", False), ("en", True)]
    with seeded.Session() as session:
        bodies = set(session.scalars(select(Notification.body).where(
            Notification.broadcast_id == out["broadcast_id"])))
    assert bodies == {"Всем", "To all"}


def test_send_show_and_bad_input(abonent, seeded):
    out = json.loads(abonent("notify", "send", "A1", "--text", "Проверка", "--channel", "sms",
                             "--json").output)
    assert out["queued"] == 1
    [row] = json.loads(abonent("notify", "list", "--channel", "sms", "--json").output)
    assert row["recipient"] == "+79000000001" and row["status"] == "pending"
    shown = json.loads(abonent("notify", "show", str(row["id"]), "--json").output)
    assert shown["body"] == "Проверка" and shown["attempts"] == []
    for args, reason in [
            (("notify", "send", "ZZ", "--text", "x"), "does not exist"),
            (("notify", "send", "B1", "--text", "x", "--channel", "sms"), "no sms"),
            (("notify", "send", "A1"), "--template or a --text"),
            (("notify", "broadcast", "--text", "x"), "choose whom"),
            (("notify", "broadcast", "--all", "--nas", "bras-1", "--text", "x"), "choose whom"),
            (("notify", "broadcast", "--tariff", "Nope", "--text", "x"), "does not exist"),
            (("notify", "broadcast", "--all", "--text", " "), "--template or a --text"),
            (("notify", "retry", str(row["id"])), "only an unknown or failed")]:
        result = abonent(*args, code=2)
        assert reason in result.output and len(result.output.strip().splitlines()) == 1
    assert _count(seeded) == 1


def test_deliver_from_the_command_to_a_loopback_smsc(abonent, seeded, monkeypatch):
    smsc = FakeSmsc()
    try:
        for name, value in {"ENABLED": "true", "PORT": str(smsc.port), "SYSTEM_ID": "abonent",
                            "PASSWORD": "s3cret"}.items():
            monkeypatch.setenv(f"ABONENT_SMS_{name}", value)
        monkeypatch.setenv("ABONENT_NOTIFY_QUIET_HOURS", "")
        abonent("notify", "send", "A1", "--text", "Тест связи", "--channel", "sms")
        out = json.loads(abonent("notify", "deliver", "--json").output)
        assert out["sent"] == 1
        assert decode_text(smsc.messages_to("79000000001")) == "Тест связи"
        assert _count(seeded, status="sent") + _count(seeded, status="delivered") == 1
    finally:
        smsc.close()
