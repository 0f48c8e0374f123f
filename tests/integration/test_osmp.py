"""OSMP check/pay over real HTTP: the cabinet on a loopback port, an agent
calling /osmp/<agent> the way a terminal network does (GET with the
parameters in the query string, or a URL-encoded POST), on SQLite and
PostgreSQL. Every refusal is a result code and changes nothing."""

from __future__ import annotations

import base64
import logging
import threading
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from cabinet.app import CabinetServer
from rating import agents
from rating.agents import AgentPayment
from rating.models import Account, LedgerEntry
from rating.payments import ProviderPayment
from tests.factories import make_account
from tests.integration.cabinet_helpers import cabinet_ctx  # noqa: F401 (fixture)

PASSWORD = "terminal-pass-123"


class Agent:
    def __init__(self, url: str, name: str, password: str = PASSWORD):
        self.url, self.name, self.password = url, name, password

    def call(self, method: str = "GET", password: str | None = None, user: str | None = None,
             **params):
        query = urllib.parse.urlencode(params)
        target = f"{self.url}/osmp/{self.name}"
        data = None
        if method == "GET":
            target += "?" + query
        else:
            data = query.encode()
        request = urllib.request.Request(target, data=data, method=method)
        credentials = f"{user or self.name}:{password or self.password}".encode()
        request.add_header("Authorization", "Basic " + base64.b64encode(credentials).decode())
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, body, kind = response.status, response.read(), response.headers
        except urllib.error.HTTPError as error:
            with error:
                status, body, kind = error.code, error.read(), error.headers
        assert kind["Content-Type"].startswith("text/xml"), kind["Content-Type"]
        root = ET.fromstring(body)
        assert root.tag == "response"
        answer = {child.tag: (child.text or "") for child in root}
        answer["status"] = status
        answer["result"] = int(answer["result"])
        name = root.find("fields/field1")
        answer["name"] = name.text if name is not None else None
        return answer

    def pay(self, txn_id="1000001", account="", amount="100.00", date="20261205101500",
            **extra):
        return self.call(command="pay", txn_id=txn_id, account=account, sum=amount,
                         txn_date=date, **extra)


@pytest.fixture
def server(cabinet_ctx):  # noqa: F811
    with CabinetServer(cabinet_ctx, host="127.0.0.1", port=0) as running:
        yield running


@pytest.fixture
def world(cabinet_ctx, server):  # noqa: F811
    with cabinet_ctx.Session() as session:
        account = make_account(session, name="Иванов Иван Иванович", number="100002")
        agents.add_agent(session, name="qiwi", password=PASSWORD, networks=["127.0.0.0/8"])
        agents.add_agent(session, name="far", password=PASSWORD, networks=["10.20.0.0/16"])
        session.commit()
        number = account.number
    return dict(ctx=cabinet_ctx, agent=Agent(server.url, "qiwi"), number=number,
                server=server)


def snapshot(ctx):
    with ctx.Session() as session:
        return (session.scalar(select(func.count()).select_from(LedgerEntry)),
                session.scalar(select(func.count()).select_from(ProviderPayment)),
                session.scalar(select(func.count()).select_from(AgentPayment)),
                tuple(session.scalars(select(Account.balance).order_by(Account.id))))


def balance(ctx, number):
    with ctx.Session() as session:
        return session.scalar(select(Account.balance).where(Account.number == number))


def test_check_answers_a_masked_name_and_writes_nothing(world):
    before = snapshot(world["ctx"])
    answer = world["agent"].call(command="check", txn_id="555", account=world["number"],
                                 sum="10.00")
    assert answer["result"] == 0 and answer["status"] == 200
    assert answer["osmp_txn_id"] == "555"
    assert answer["name"] == "Ив***в И."
    assert "Иванов" not in answer["name"]
    assert snapshot(world["ctx"]) == before


def test_pay_credits_once_and_a_repeat_returns_the_first_result(world):
    ctx, agent, number = world["ctx"], world["agent"], world["number"]
    start = balance(ctx, number)
    first = agent.pay(txn_id="1000001", account=number, amount="150.50")
    assert first["result"] == 0, first
    assert first["osmp_txn_id"] == "1000001" and first["sum"] == "150.50"
    assert balance(ctx, number) == start + Decimal("150.50")
    after_first = snapshot(ctx)
    again = agent.pay(txn_id="1000001", account=number, amount="150.50")
    assert again["result"] == 0 and again["prv_txn"] == first["prv_txn"]
    # The repeat as a POST: the same payment, still credited once.
    posted = agent.pay(txn_id="1000001", account=number, amount="150.50", method="POST")
    assert posted["prv_txn"] == first["prv_txn"]
    assert snapshot(ctx) == after_first
    with ctx.Session() as session:
        record = session.scalar(select(ProviderPayment)
                                .where(ProviderPayment.provider == "osmp:qiwi"))
        assert (record.txn_id, record.status, record.amount) == ("1000001", "paid",
                                                                 Decimal("150.50"))
        entry = session.get(LedgerEntry, record.entry_id)
        assert entry.idempotency_key == "payment:osmp:qiwi:1000001"
        row = session.scalar(select(AgentPayment))
        assert str(row.id) == first["prv_txn"]
        assert row.txn_date.isoformat() == "2026-12-05T10:15:00"
    # The same txn_id with another sum is not the payment we accepted.
    other = agent.pay(txn_id="1000001", account=number, amount="99.00")
    assert other["result"] == 300
    assert snapshot(ctx) == after_first


def test_a_different_agent_may_reuse_a_txn_id(world):
    ctx, number = world["ctx"], world["number"]
    with ctx.Session() as session:
        agents.add_agent(session, name="cityterm", password=PASSWORD, networks=["127.0.0.1"])
        session.commit()
    start = balance(ctx, number)
    assert world["agent"].pay(txn_id="7", account=number, amount="10")["result"] == 0
    other = Agent(world["server"].url, "cityterm")
    assert other.pay(txn_id="7", account=number, amount="10")["result"] == 0
    assert balance(ctx, number) == start + Decimal("20.00")


@pytest.mark.parametrize("account, code", [("999999", 5), ("12 34", 4), ("", 4),
                                           ("x" * 40, 4)])
def test_a_wrong_account_is_refused(world, account, code):
    before = snapshot(world["ctx"])
    for command in ("check", "pay"):
        answer = world["agent"].call(command=command, txn_id="42", account=account,
                                     sum="100.00", txn_date="20261205101500")
        assert answer["result"] == code, (command, answer)
        assert answer["status"] == 200
    assert snapshot(world["ctx"]) == before


def test_a_closed_account_is_not_active(world):
    with world["ctx"].Session() as session:
        session.execute(Account.__table__.update().where(Account.number == world["number"])
                        .values(state="closed"))
        session.commit()
    before = snapshot(world["ctx"])
    assert world["agent"].pay(account=world["number"])["result"] == 79
    assert snapshot(world["ctx"]) == before


@pytest.mark.parametrize("amount, code", [
    ("10.455", 300),       # three decimals: refused, never rounded
    ("0", 241), ("0.00", 241), ("-5", 241),
    ("0.50", 241),         # below the agent's minimum (1.00)
    ("15000.01", 242),     # above its maximum
    ("99999999999999999999", 242),
    ("1e3", 300), ("NaN", 300), ("", 300), ("10,00.5", 300),
])
def test_a_bad_amount_is_refused_with_its_code(world, amount, code):
    before = snapshot(world["ctx"])
    answer = world["agent"].pay(account=world["number"], amount=amount)
    assert answer["result"] == code, answer
    assert snapshot(world["ctx"]) == before


@pytest.mark.parametrize("params", [
    dict(txn_id="abc"), dict(txn_id="1" * 21), dict(txn_id=""), dict(txn_id="-1"),
    dict(date="2026-12-05"), dict(date="20261305101500"), dict(date=""),
])
def test_a_malformed_txn_id_or_date_is_refused(world, params):
    before = snapshot(world["ctx"])
    answer = world["agent"].pay(account=world["number"], **params)
    assert answer["result"] == 300, answer
    assert snapshot(world["ctx"]) == before


def test_an_unknown_command_is_refused(world):
    before = snapshot(world["ctx"])
    assert world["agent"].call(command="refund", txn_id="1")["result"] == 300
    assert world["agent"].call(txn_id="1")["result"] == 300
    assert snapshot(world["ctx"]) == before


def test_a_wrong_password_or_agent_is_refused_and_not_logged(world, caplog):
    caplog.set_level(logging.INFO)
    before = snapshot(world["ctx"])
    agent = world["agent"]
    wrong = agent.pay(account=world["number"], password="guessed-password-1")
    assert wrong["status"] == 401 and wrong["result"] == 300
    assert agent.pay(account=world["number"], user="far")["status"] == 401
    stranger = Agent(agent.url, "nobody")
    assert stranger.pay(account=world["number"])["status"] == 401
    assert snapshot(world["ctx"]) == before
    text = caplog.text
    assert "osmp.refused agent='qiwi'" in text
    assert "guessed-password-1" not in text and PASSWORD not in text
    assert base64.b64encode(b"qiwi:guessed-password-1").decode() not in text


def test_no_credentials_at_all_is_refused(world):
    request = urllib.request.Request(f"{world['agent'].url}/osmp/qiwi?command=check&txn_id=1"
                                     f"&account={world['number']}")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    with refused.value as error:
        assert error.code == 401
        assert error.headers["WWW-Authenticate"].startswith("Basic")


def test_a_source_address_not_allowed_is_refused(world):
    before = snapshot(world["ctx"])
    far = Agent(world["agent"].url, "far")   # allowed from 10.20.0.0/16 only
    for command in ("check", "pay"):
        answer = far.call(command=command, txn_id="43", account=world["number"], sum="100",
                          txn_date="20261205101500")
        assert answer["status"] == 403 and answer["result"] == 300
    # From outside its networks a wrong password gets the same answer: no
    # way to guess the password from there.
    guessed = far.pay(account=world["number"], password="guessed-password-1")
    assert guessed["status"] == 403
    assert snapshot(world["ctx"]) == before


def test_a_disabled_agent_is_refused(world):
    with world["ctx"].Session() as session:
        agents.edit_agent(session, "qiwi", enabled=False)
        session.commit()
    before = snapshot(world["ctx"])
    assert world["agent"].pay(account=world["number"])["result"] == 7
    assert snapshot(world["ctx"]) == before


def test_the_same_pay_sent_at_once_credits_once(world):
    """Terminals retry on a timeout; the copies can arrive together."""
    ctx, agent, number = world["ctx"], world["agent"], world["number"]
    start = balance(ctx, number)
    answers, barrier = [], threading.Barrier(4)

    def send():
        barrier.wait()
        answers.append(agent.pay(txn_id="424242", account=number, amount="300.00"))

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(answers) == 4
    # Every copy either got the payment's result or a "repeat later" (1),
    # which the agent answers by asking again.
    assert {a["result"] for a in answers} <= {0, 1}
    paid = {a["prv_txn"] for a in answers if a["result"] == 0}
    assert len(paid) == 1
    again = agent.pay(txn_id="424242", account=number, amount="300.00")
    assert again["prv_txn"] in paid
    assert balance(ctx, number) == start + Decimal("300.00")
    with ctx.Session() as session:
        assert session.scalar(select(func.count()).select_from(AgentPayment)) == 1
