"""`abonent agent …` and `abonent payment reconcile AGENT FILE` against
the database (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from rating import agents
from rating.agents import PaymentAgent
from tests.factories import make_account

PASSWORD = "terminal-pass-123"


@pytest.fixture
def paid(ctx):
    """Agent "qiwi" with four payments on 2026-12-05 and one on the 6th."""
    with ctx.Session() as session:
        first = make_account(session, number="100002")
        second = make_account(session, number="100003")
        agent = agents.add_agent(session, name="qiwi", password=PASSWORD,
                                 networks=["127.0.0.1"])
        for txn_id, account, amount, date in (
                ("1001", first, "500.00", "20261205101500"),
                ("1002", second, "250.50", "20261205110000"),
                ("1003", first, "100.00", "20261205120000"),
                ("1004", second, "75.00", "20261205235959"),
                ("1005", first, "60.00", "20261206000001")):
            answer = agents.pay(session, agent, dict(txn_id=txn_id, account=account.number,
                                                     sum=amount, txn_date=date))
            assert answer.credited
        session.commit()
    return ctx


def write(tmp_path, text, encoding="utf-8", name="registry.csv"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return str(path)


def test_a_matching_registry_exits_0(paid, abonent, tmp_path):
    path = write(tmp_path, "txn_id;date;account;sum\n"
                           "1001;2026-12-05 10:15:00;100002;500.00\n"
                           "1002;05.12.2026 11:00:00;100003;250,50\n"
                           "1003;20261205120000;100002;100\n"
                           "1004;2026-12-05 23:59:59;100003;75.00\n"
                           "total;4;925.50\n")
    result = abonent("payment", "reconcile", "qiwi", path, "--json", code=0)
    report = json.loads(result.stdout)
    assert report["matched"] == {"count": 4, "total": "925.50"}
    assert report["differences"] == 0
    text = abonent("payment", "reconcile", "qiwi", path, code=0).stdout
    assert "everything matches" in text


def test_the_reconciliation_finds_each_kind_of_difference(paid, abonent, tmp_path):
    # 1001 matches; 1002 has another amount; 1003 names another account;
    # 1004 is not in their registry; 9009 is not on our side. cp1251 with
    # a Russian totals word, as agents' Windows programs write it.
    path = write(tmp_path, "txn_id;date;account;sum\n"
                           "1001;2026-12-05 10:15:00;100002;500.00\n"
                           "1002;2026-12-05 11:00:00;100003;205.50\n"
                           "1003;2026-12-05 12:00:00;100003;100.00\n"
                           "9009;2026-12-05 13:00:00;100002;40.00\n"
                           "итого;4;845.50\n", encoding="cp1251")
    result = abonent("payment", "reconcile", "qiwi", path, "--json", code=1)
    report = json.loads(result.stdout)
    assert report["matched"] == {"count": 1, "total": "500.00"}
    assert [r["txn_id"] for r in report["missing_ours"]] == ["9009"]
    assert report["missing_ours"][0]["amount"] == "40.00"
    assert report["missing_ours"][0]["date"] == "2026-12-05 13:00:00"
    assert (report["first_day"], report["last_day"]) == ("2026-12-05", "2026-12-05")
    assert [r["txn_id"] for r in report["missing_theirs"]] == ["1004"]
    assert report["amount_differs"] == [{"txn_id": "1002", "account": "100003",
                                         "ours": "250.50", "theirs": "205.50", "line": 3}]
    assert [(r["txn_id"], r["ours"], r["theirs"]) for r in report["account_differs"]] == \
        [("1003", "100002", "100003")]
    assert report["ours"] == {"count": 4, "total": "925.50"}
    assert report["theirs"] == {"count": 4, "total": "845.50"}
    # 1005 (on the 6th) belongs to another day's registry: not missing.
    assert "1005" not in result.stdout
    text = abonent("payment", "reconcile", "qiwi", path, code=1).stdout
    for title in ("missing on our side: 1", "missing on theirs: 1", "amount differs: 1",
                  "account differs: 1"):
        assert title in text


def test_a_payment_listed_under_another_day_is_not_missing(paid, abonent, tmp_path):
    path = write(tmp_path, "1005;2026-12-05 23:59:00;100002;60.00\n")
    result = abonent("payment", "reconcile", "qiwi", path, "--json", "--date", "2026-12-05",
                     code=1)
    report = json.loads(result.stdout)
    assert report["missing_ours"] == []
    assert {r["txn_id"] for r in report["missing_theirs"]} == {"1001", "1002", "1003", "1004"}


@pytest.mark.parametrize("text, message", [
    ("1001;2026-12-05 10:15:00;100002\n", "expected txn_id;date;account;sum"),
    ("1001;2026-12-05 10:15:00;100002;500.005\n", "not a sum"),
    ("1001;2026-12-05 10:15:00;100002;-5\n", "not a sum"),
    ("abc;2026-12-05 10:15:00;100002;5\n", "txn_id"),
    ("1001;yesterday;100002;5\n", "not a date"),
    ("1001;2026-12-05;100002;5\n1001;2026-12-05;100002;5\n", "listed twice"),
    ("1001;2026-12-05;100002;5\ntotal;2;10.00\n", "totals line says 2"),
    ("1001;2026-12-05;100002;5\ntotal;1;5\n1002;2026-12-05;100002;5\n", "nothing may follow"),
    ("", "no payments"),
])
def test_a_bad_registry_exits_2_with_the_line(paid, abonent, tmp_path, text, message):
    path = write(tmp_path, text)
    result = abonent("payment", "reconcile", "qiwi", path, code=2)
    assert message in result.stderr and result.stderr.startswith("abonent: ")
    assert result.stdout == ""


def test_an_unknown_agent_or_file_exits_2(paid, abonent, tmp_path):
    path = write(tmp_path, "1001;2026-12-05 10:15:00;100002;500.00\n")
    assert "does not exist" in abonent("payment", "reconcile", "nobody", path, code=2).stderr
    assert "does not exist" in abonent("payment", "reconcile", "qiwi",
                                       str(tmp_path / "none.csv"), code=2).stderr
    assert "2026-12-05" in abonent("payment", "reconcile", "qiwi", path, "--date",
                                   "2026-12-07", code=2).stderr


def test_agent_commands_keep_only_a_hash(ctx, abonent):
    abonent("agent", "add", "cityterm", "--password", PASSWORD, "--allow", "10.0.0.0/8",
            "--allow", "192.0.2.7", code=0)
    listed = json.loads(abonent("agent", "list", "--json").stdout)
    assert listed[0]["networks"] == ["10.0.0.0/8", "192.0.2.7/32"]
    assert listed[0]["enabled"] is True
    with ctx.Session() as session:
        stored = session.scalar(select(PaymentAgent.password_hash))
        assert PASSWORD not in stored and stored.startswith("scrypt$")
    abonent("agent", "add", "cityterm", "--password", PASSWORD, "--allow", "10.0.0.0/8",
            code=2)
    abonent("agent", "add", "short", "--password", "short", "--allow", "10.0.0.0/8", code=2)
    abonent("agent", "add", "nets", "--password", PASSWORD, "--allow", "10.0.0.300/8", code=2)
    abonent("agent", "edit", "cityterm", code=2)  # nothing to change
    edited = json.loads(abonent("agent", "edit", "cityterm", "--disable", "--max-amount",
                                "30000", "--json").stdout)
    assert edited["enabled"] is False and edited["max_amount"] == "30000.00"
    abonent("agent", "edit", "cityterm", "--min-amount", "40000", code=2)
    abonent("agent", "remove", "cityterm", code=0)
    with ctx.Session() as session:
        assert session.scalar(select(func.count()).select_from(PaymentAgent)) == 0


def test_an_agent_with_payments_is_not_removed(paid, abonent):
    result = abonent("agent", "remove", "qiwi", code=2)
    assert "disable it instead" in result.stderr
    with paid.Session() as session:
        assert session.scalar(select(PaymentAgent.name)) == "qiwi"
        assert session.scalar(select(func.sum(agents.AgentPayment.amount))) == \
            Decimal("985.50")


def test_the_installed_command_exits_1_on_differences_and_2_on_bad_input(paid, abonent_exe,
                                                                          tmp_path):
    path = write(tmp_path, "1001;2026-12-05 10:15:00;100002;500.00\n")
    result = abonent_exe("payment", "reconcile", "qiwi", path, code=1)
    assert "missing on theirs: 3" in result.stdout
    bad = write(tmp_path, "1001;2026-12-05 10:15:00;100002;500.001\n", name="bad.csv")
    refused = abonent_exe("payment", "reconcile", "qiwi", bad, code=2)
    assert "line 1" in refused.stderr
    abonent_exe("agent", "add", "x", "--password", "short", "--allow", "10.0.0.0/8", code=2)
