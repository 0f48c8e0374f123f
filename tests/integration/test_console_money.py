"""Money corrections and the audit reader through the `abonent` executable,
on SQLite and PostgreSQL: charge, refund, reverse, transfer, audit.

Seeded with library calls; only the command under test runs as a process.
A refusal is one sentence, exit 2, and the database read back is unchanged.
"""

from __future__ import annotations

import datetime as dt
import json
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from sqlalchemy import select, text, update

from aaa import enforcement
from aaa.models import EnforcementJob, Nas, Session as RadiusSession
from rating import accounts as acc
from rating.models import Account, LedgerEntry, OperationLog, ProfileChange
from tests.conftest import make_context


def js(result):
    return json.loads(result.stdout)


@pytest.fixture
def run(abonent_exe, db_url):
    """Accounts 100 (balance 100.00) and 101 (balance 0); 100 has a tariff."""
    context = make_context(db_url)
    with context.Session() as session:
        acc.create_tariff(session, name="Home", fee="600", rate_down_kbps=100000,
                          rate_up_kbps=50000)
        first = acc.create_account(session, number="100", name="Ivan Petrov", tariff="Home")
        acc.create_account(session, number="101", name="Olga Petrova", tariff="Home")
        acc.add_payment(session, first, "100", external_id="seed", actor="admin:seed")
        session.commit()
    abonent_exe.context = context
    yield abonent_exe
    context.dispose()


def read(run, statement):
    with run.context.Session() as session:
        return session.execute(statement).all()


def balances(run) -> dict[str, Decimal]:
    return dict(read(run, select(Account.number, Account.balance)))


def entries(run) -> list[tuple]:
    return read(run, select(LedgerEntry.id, LedgerEntry.account_id, LedgerEntry.amount,
                            LedgerEntry.kind, LedgerEntry.author, LedgerEntry.memo,
                            LedgerEntry.reverses_id).order_by(LedgerEntry.id))


TABLES = ("accounts", "ledger_entries", "operation_log", "profile_changes",
          "enforcement_jobs")


def snapshot(run):
    with run.context.engine.connect() as conn:
        return {t: [tuple(r) for r in conn.execute(text(f"SELECT * FROM {t} ORDER BY 1"))]
                for t in TABLES}


BAD = [
    (["charge", "100", "1e3", "--reason", "r"], "amount like 100"),
    (["charge", "100", "-100", "--reason", "r"], "more than zero"),
    (["charge", "100", "1000000000000000", "--reason", "r"], "must not exceed"),
    (["charge", "100", "10.005", "--reason", "r"], "amount like 100"),
    (["charge", "100", "5", "--reason", ""], "reason must not be empty"),
    (["charge", "100", "5", "--reason", "a\x1bb"], "control characters"),
    (["charge", "100", "5"], "Missing option '--reason'"),
    (["charge", "999", "5", "--reason", "r"], "account 999 does not exist"),
    (["charge", "100", "5", "--reason", "r", "--external-id", "two words"], "external id"),
    (["refund", "100", "1e3", "--reason", "r"], "amount like 100"),
    (["refund", "100", "-100", "--reason", "r"], "more than zero"),
    (["refund", "100", "5", "--reason", ""], "reason must not be empty"),
    (["refund", "nobody", "5", "--reason", "r"], "account nobody does not exist"),
    (["transfer", "100", "100", "5", "--reason", "r"], "to itself"),
    (["transfer", "100", "999", "5", "--reason", "r"], "account 999 does not exist"),
    (["transfer", "100", "101", "1e3", "--reason", "r"], "amount like 100"),
    (["transfer", "100", "101", "1000000000000000", "--reason", "r"], "must not exceed"),
    (["transfer", "100", "101", "5", "--reason", ""], "reason must not be empty"),
    # 101 has nothing and no credit: the debit is guarded by the store.
    (["transfer", "101", "100", "5", "--reason", "r"], "has not enough money"),
    (["transfer", "100", "101", "100.01", "--reason", "r"], "has not enough money"),
    (["reverse", "999999", "--reason", "r"], "ledger entry 999999 does not exist"),
    (["reverse", "abc", "--reason", "r"], "entry id must be"),
    (["reverse", "99999999999999999999999", "--reason", "r"], "entry id must be"),
    (["reverse", "1", "--reason", ""], "reason must not be empty"),
    (["audit", "--account", "999"], "account 999 does not exist"),
    (["audit", "--since", "yesterday"], "--since must be a day"),
    (["audit", "--since", "2026-12-02", "--until", "2026-12-01"], "--since must be before"),
]


def refuse_all(run, cases):
    """Every case exits 2 with its sentence; the cases run four at a time
    (each is a process start), and the database read back afterwards is
    as it was before any of them."""
    before = snapshot(run)

    def one(case):
        args, message = case
        return args, message, run(*args, code=2).stderr

    with ThreadPoolExecutor(4) as pool:
        for args, message, stderr in pool.map(one, cases):
            assert message in stderr, (args, stderr)
    assert snapshot(run) == before


def test_bad_input_is_one_sentence_and_changes_nothing(run):
    refuse_all(run, BAD)


def test_a_charge_is_a_debit_by_the_admin_with_the_reason(run):
    out = js(run("--actor", "alice", "charge", "100", "30.50", "--reason", "router setup",
                 "--json"))
    assert out["created"] is True
    assert out["entries"][0]["amount"] == "-30.50" and out["entries"][0]["balance"] == "69.50"
    *_, last = entries(run)
    assert last[2:6] == (Decimal("-30.50"), "correction", "admin:alice", "router setup")
    (line,) = read(run, select(OperationLog).where(OperationLog.action == "ledger.charge"))
    assert line[0].actor == "admin:alice"
    assert line[0].details["reason"] == "router setup"
    assert line[0].details["amount"] == "30.50"


@pytest.mark.parametrize("command", ["charge", "refund"])
def test_the_same_external_id_posts_once(run, command):
    first = run(command, "100", "10", "--reason", "r", "--external-id", "ext-1")
    assert "balance 90.00" in first.stdout
    again = run(command, "100", "10", "--reason", "r", "--external-id", "ext-1")
    assert again.stdout.strip() == f"{command} ext-1 already recorded; nothing changed"
    assert js(run(command, "100", "10", "--reason", "r", "--external-id", "ext-1",
                  "--json"))["created"] is False
    assert len(entries(run)) == 2 and balances(run)["100"] == Decimal("90.00")
    # The same id for another amount is a mistake, not a retry.
    before = snapshot(run)
    assert "already recorded with another amount" in run(
        command, "100", "11", "--reason", "r", "--external-id", "ext-1", code=2).stderr
    assert snapshot(run) == before


def test_without_an_external_id_every_run_is_new(run):
    run("charge", "100", "1", "--reason", "r")
    run("charge", "100", "1", "--reason", "r")
    assert balances(run)["100"] == Decimal("98.00")


def test_a_refund_into_debt_reaches_the_network_as_a_payment_does(run):
    """The refund posts a debit of kind refund and runs the balance ladder
    at once: the account's profile changes and the profile-change outbox
    (what aaa's enforcer turns into CoA/Disconnect) gets a row."""
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    with run.context.Session() as session:
        nas = Nas(name="bras1", address="127.0.0.1", secret="s3cret", vendor="mikrotik")
        session.add(nas)
        session.flush()
        session.add(RadiusSession(nas_id=nas.id, acct_session_id="a1", username="ivan",
                                  account_id=session.scalar(select(Account.id).where(
                                      Account.number == "100")),
                                  started_at=now, updated_at=now, profile="normal"))
        session.commit()
    run("refund", "100", "150", "--reason", "moving out", "--external-id", "r-1")
    *_, last = entries(run)
    assert last[2:4] == (Decimal("-150.00"), "refund")
    ((profile,),) = read(run, select(Account.profile).where(Account.number == "100"))
    assert profile != "normal"
    changes = read(run, select(ProfileChange.profile, ProfileChange.reason))
    assert changes == [(profile, "refund")]
    # The enforcer's outbox pass turns it into work on the open session.
    with run.context.Session() as session:
        assert enforcement.expand(session) == 1
        session.commit()
    ((job_session, action),) = read(run, select(EnforcementJob.session_id,
                                                EnforcementJob.action))
    assert job_session is not None and action in ("coa", "disconnect")
    # Paying back lifts it the same way.
    run("reverse", str(last[0]), "--reason", "refund cancelled")
    ((profile,),) = read(run, select(Account.profile).where(Account.number == "100"))
    assert profile == "normal"
    assert read(run, select(ProfileChange.profile).order_by(ProfileChange.id))[-1] == ("normal",)


def test_a_transfer_moves_both_legs_once(run):
    out = js(run("transfer", "100", "101", "40", "--reason", "family", "--external-id", "t-1",
                 "--json"))
    assert [(e["account"], e["amount"]) for e in out["entries"]] == [("100", "-40.00"),
                                                                     ("101", "40.00")]
    again = run("transfer", "100", "101", "40", "--reason", "family", "--external-id", "t-1")
    assert "already recorded; nothing changed" in again.stdout
    assert balances(run) == {"100": Decimal("60.00"), "101": Decimal("40.00")}
    assert len(entries(run)) == 3
    lines = read(run, select(OperationLog.account_id, OperationLog.action)
                 .where(OperationLog.action == "ledger.transfer"))
    assert len(lines) == 2


def test_a_reversal_happens_once_and_is_not_reversed(run):
    run("charge", "100", "25", "--reason", "by mistake")
    charge_id = entries(run)[-1][0]
    out = js(run("reverse", str(charge_id), "--reason", "wrong account", "--json"))
    reversal_id = out["entries"][0]["entry_id"]
    assert out["entries"][0]["amount"] == "25.00" and out["entries"][0]["balance"] == "100.00"
    assert entries(run)[-1][2:] == (Decimal("25.00"), "correction", "admin:test",
                                    "wrong account", charge_id)
    before = snapshot(run)
    again = run("reverse", str(charge_id), "--reason", "again", code=2)
    assert f"was already reversed by entry {reversal_id}; nothing changed" in again.stderr
    twice = run("reverse", str(reversal_id), "--reason", "undo the undo", code=2)
    assert "is itself a reversal" in twice.stderr
    assert snapshot(run) == before


def test_reversing_one_leg_of_a_transfer_reverses_both(run):
    run("transfer", "100", "101", "30", "--reason", "r", "--external-id", "t-2")
    incoming = entries(run)[-1][0]
    out = js(run("reverse", str(incoming), "--reason", "wrong recipient", "--json"))
    assert sorted(e["amount"] for e in out["entries"]) == ["-30.00", "30.00"]
    assert balances(run) == {"100": Decimal("100.00"), "101": Decimal("0.00")}
    assert "already reversed" in run("reverse", str(incoming - 1), "--reason", "r",
                                     code=2).stderr


def test_audit_reads_the_log_newest_first_with_filters(run):
    run("--actor", "alice", "charge", "100", "5", "--reason", "a")
    run("--actor", "bob", "refund", "101", "1", "--reason", "b")
    run("--actor", "bob", "transfer", "100", "101", "2", "--reason", "c")
    every = js(run("audit", "--json"))
    assert [r["action"] for r in every[:4]] == ["ledger.transfer", "ledger.transfer",
                                                "ledger.refund", "ledger.charge"]
    assert {r["actor"] for r in every[:4]} == {"admin:alice", "admin:bob"}
    by_bob = js(run("audit", "--actor", "admin:bob", "--json"))
    assert len(by_bob) == 3
    only_101 = js(run("audit", "--account", "101", "--action", "ledger.", "--json"))
    assert [r["action"] for r in only_101] == ["ledger.transfer", "ledger.refund"]
    assert all(r["account"] == "101" for r in only_101)
    # "%" and "_" in a prefix are letters, not wildcards.
    assert js(run("audit", "--action", "ledger%", "--json")) == []
    page = run("audit", "--limit", "2", "--json")
    assert len(js(page)) == 2 and "more with --offset 2" in page.stderr
    text_out = run("audit", "--account", "100", "--action", "ledger.charge").stdout
    assert "admin:alice" in text_out and "reason=a" in text_out


def test_audit_by_time(run):
    run("charge", "100", "5", "--reason", "old")
    run("charge", "100", "6", "--reason", "new")
    with run.context.Session() as session:
        session.execute(update(OperationLog).where(OperationLog.action == "ledger.charge",
                                                   OperationLog.details["reason"].as_string()
                                                   == "old")
                        .values(created_at=dt.datetime(2026, 1, 10, 12, 0)))
        session.commit()
    old = js(run("audit", "--action", "ledger.", "--until", "2026-01-10", "--json"))
    assert [r["details"]["reason"] for r in old] == ["old"]
    assert js(run("audit", "--action", "ledger.", "--since", "2026-01-11", "--until",
                  "2100-01-01", "--json"))[0]["details"]["reason"] == "new"
    assert js(run("audit", "--action", "ledger.", "--since", "2026-01-10T12:00",
                  "--until", "2026-01-10T12:01", "--json"))[0]["details"]["reason"] == "old"


def test_help_says_how_retries_work(run):
    for command in ("charge", "refund", "transfer"):
        assert "Without it nothing is" in run(command, "--help").stdout
    assert "Once only" in run("reverse", "--help").stdout
