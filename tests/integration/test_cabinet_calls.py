"""The cabinet's calls page on SQLite and PostgreSQL: a month's calls with
filters by direction and zone, totals by zone, the CSV export, the phone
numbers among the account's services, the calls' ledger line worded in
Russian and English."""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal

import pytest

from config.db import utcnow
from rating import phones
from rating.cdr import parse_rates
from rating.models import Account
from rating.telephony import CallInput, Config, NumberRules, record_calls
from tests.integration.cabinet_helpers import (  # noqa: F401 (fixtures)
    app, cabinet_ctx, client, log_in, seed_subscriber)

CONFIG = Config(NumberRules(), "Europe/Moscow")


@pytest.fixture
def caller(cabinet_ctx):
    """A subscriber with 74951110000 on plan Home; this month: two calls to
    Moscow (one answered), one to the UK, one incoming; last month: one."""
    subscriber = seed_subscriber(cabinet_ctx, balance="500")
    other = seed_subscriber(cabinet_ctx, balance="500")
    now = utcnow()
    start = now.replace(day=1, hour=9, minute=0, second=0, microsecond=0)
    with cabinet_ctx.Session() as session:
        phones.save_plan(session, "Home", actor="test")
        phones.import_rates(session, "Home", parse_rates(io.StringIO(
            "7;Россия;3.00\n7495;Москва;1.50\n44;Великобритания;12.00;30/6;1.00\n")),
            actor="test")
        for owner, number in ((subscriber, "84951110000"), (other, "84951110009")):
            phones.add_phone(session, session.get(Account, owner.account_id), number=number,
                             login=None, plan_name="Home", config=CONFIG, actor="test")

        def call(key, calling, called, billsec, when):
            return CallInput("asterisk", key, calling, called, when, when,
                             when + dt.timedelta(seconds=billsec), billsec,
                             "answered" if billsec else "no_answer")
        record_calls(session, [
            call("m1", "84951110000", "84952223344", 61, start),
            call("m2", "84951110000", "84952223344", 0, start + dt.timedelta(minutes=5)),
            call("uk", "84951110000", "810442071234567", 61, start + dt.timedelta(minutes=9)),
            call("in", "84957770000", "84951110000", 30, start + dt.timedelta(minutes=20)),
            call("old", "84951110000", "84952223344", 600, start - dt.timedelta(days=3)),
        ], config=CONFIG)
        session.commit()
    return subscriber


def test_calls_page_filters_totals_and_csv(client, caller):
    assert log_in(client, caller.login, "correct-horse-1", lang="en").status_code == 302
    month = utcnow().strftime("%Y-%m")
    page = client.get(f"/calls?month={month}")
    assert page.status_code == 200
    text = page.text
    assert 'data-test="calls-count">4<' in text
    assert "+7 495 222-33-44" in text and "+442071234567" in text
    # 120 s x 1.50 + 66 s x 12.00 + 1.00
    assert 'data-zone="Москва"' in text and 'data-zone="Великобритания"' in text
    assert "17.20" in text
    only_uk = client.get(f"/calls?month={month}&zone=Великобритания").text
    assert 'data-test="calls-count">1<' in only_uk and "+7 495 222-33-44" not in only_uk
    incoming = client.get(f"/calls?month={month}&direction=in").text
    assert 'data-test="calls-count">1<' in incoming and 'data-direction="in"' in incoming
    exported = client.get(f"/calls.csv?month={month}&direction=out")
    assert exported.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(exported.data.decode("utf-8-sig"))))
    assert rows[0][0] == "Time" and len(rows) == 4
    assert sum(Decimal(r[-1]) for r in rows[1:]) == Decimal("17.20")
    # The month before holds the older call only.
    previous = (utcnow().replace(day=1) - dt.timedelta(days=1)).strftime("%Y-%m")
    assert 'data-test="calls-count">1<' in client.get(f"/calls?month={previous}").text
    assert client.get("/calls?month=2999-01").status_code == 400
    assert client.get("/calls?month=garbage").status_code == 400
    # The number among the services, and the day's calls as a statement line.
    overview = client.get("/").text
    assert 'data-test="phone-number">+7 495 111-00-00<' in overview
    assert "calls on" in client.get("/payments").text


def test_calls_page_in_russian(client, caller):
    assert log_in(client, caller.login, "correct-horse-1", lang="ru").status_code == 302
    page = client.get("/calls").text
    assert "Итоги по зонам" in page and "Исходящие" in page
    exported = client.get("/calls.csv").data.decode("utf-8-sig")
    assert exported.startswith('"Время";') and "14,20" in exported
    assert "звонка за" in client.get("/payments").text
