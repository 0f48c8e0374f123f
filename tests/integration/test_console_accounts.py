"""Accounts and services from the console (issue 14): edit, block, close,
find, service edit/remove, through the `abonent` executable on SQLite and
PostgreSQL. Seeded with library calls; each refusal is read back to prove
the database did not change.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import insert, select, text

from aaa import enforcement
from aaa.models import EnforcementJob, IpLease, Nas, Service, Session as RadiusSession
from rating import accounts as acc
from rating import search
from rating.models import Account, OperationLog, ProfileChange
from rating.profile import TariffSpeeds, desired_profile
from tests.conftest import make_context


def js(result):
    return json.loads(result.stdout)


TABLES = ("accounts", "services", "operation_log", "profile_changes", "enforcement_jobs",
          "sessions", "ledger_entries")


def snapshot(url):
    context = make_context(url)
    with context.engine.connect() as conn:
        rows = {t: [tuple(r) for r in conn.execute(text(f"SELECT * FROM {t} ORDER BY 1"))]
                for t in TABLES}
    context.dispose()
    return rows


T0 = dt.datetime(2026, 11, 1, 12, 0)


@pytest.fixture
def run(abonent_exe, db_url):
    """Two tariffs, three accounts, services, a NAS and sessions (one live)."""
    context = make_context(db_url)
    with context.Session() as session:
        acc.create_tariff(session, name="Home", fee="600", rate_down_kbps=100000,
                          rate_up_kbps=50000)
        acc.create_tariff(session, name="Fast", fee="900", rate_down_kbps=300000,
                          rate_up_kbps=100000)
        ivan = acc.create_account(session, number="100", name="Иванов Пётр Сергеевич",
                                  tariff="Home", phone="+7 (912) 345-67-89")
        acc.create_account(session, number="101", name="ООО Ромашка", tariff="Home",
                           kind="company", phone="8 495 111-22-33")
        acc.create_account(session, number="102", name="Ivan Smith", tariff="Home")
        nas = Nas(name="bras1", address="127.0.0.1", secret="s3cret", vendor="mikrotik")
        session.add(nas)
        session.flush()
        ppp = Service(account_id=ivan.id, kind="pppoe", login="ivan", password="pw1234",
                      mac="aa:bb:cc:00:11:22", static_ipv4="100.64.0.5")
        session.add(ppp)
        session.flush()
        live = RadiusSession(nas_id=nas.id, acct_session_id="S-live", username="ivan",
                             account_id=ivan.id, service_id=ppp.id, framed_ip="100.64.0.5",
                             calling_station_id="AA-BB-CC-00-11-22", started_at=T0,
                             updated_at=T0, profile="full:100000/50000")
        session.add(live)
        session.flush()
        # 10.9.0.7 was leased to 101 in the past, to 102 now.
        romashka = session.scalar(select(Account.id).where(Account.number == "101"))
        smith = session.scalar(select(Account.id).where(Account.number == "102"))
        session.add_all([
            IpLease(account_id=romashka, address="10.9.0.7", valid_from=T0,
                    valid_to=T0 + dt.timedelta(days=1)),
            IpLease(account_id=smith, address="10.9.0.7", valid_from=T0 + dt.timedelta(days=2),
                    open_address="10.9.0.7")])
        session.commit()
    context.dispose()
    abonent_exe.url = db_url
    return abonent_exe


def parallel(run, calls):
    """Read-only calls (queries, refusals) at once: each is a process that
    mostly waits for its own start-up."""
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(lambda call: run(*call[0], **call[1]), calls))


def eventually(check, seconds: float = 8.0) -> bool:
    import time
    deadline = time.monotonic() + seconds
    while True:
        if check():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.3)


def read(url, query):
    context = make_context(url)
    with context.Session() as session:
        value = query(session)
    context.dispose()
    return value


FINDS = [
    # Name: any case, Cyrillic on SQLite too, part of a word.
    (["иванов"], ["100"]),
    (["РОМАШ"], ["101"]),
    (["ivan"], ["100", "102"]),           # login ivan, name Ivan Smith
    # Phone in any notation.
    (["89123456789"], ["100"]),
    (["+7 495 111 22 33"], ["101"]),
    # MAC in any notation; IP static, current lease, and a lease at a time.
    (["aabb.cc00.1122"], ["100"]),
    (["100.64.0.5"], ["100"]),
    (["10.9.0.7"], ["102"]),
    (["10.9.0.7", "--at", "2026-11-01T18:00Z"], ["101"]),
    (["10.9.0.7", "--at", "2026-11-02T18:00Z"], []),
]


def test_find_by_every_key(run):
    results = parallel(run, [(["account", "find", *args, "--json"], {}) for args, _ in FINDS]
                       + [(["account", "show", "ivan", "--json"], {}),
                          (["account", "show", "AA:BB:CC:00:11:22", "--json"], {}),
                          (["account", "show", "о"], {"code": 2})])   # Cyrillic o
    for (args, expected), result in zip(FINDS, results):
        assert [row["number"] for row in js(result)] == expected, args
    # show takes any key that names one account, the key before a name part.
    show_login, show_mac, ambiguous = results[len(FINDS):]
    assert js(show_login)["number"] == "100" and js(show_mac)["number"] == "100"
    assert "2 accounts match" in ambiguous.stderr


def test_find_pages_with_a_note(run):
    first = run("account", "find", "а", "--limit", "1", "--json")   # Cyrillic a: 100 and 101
    assert [r["number"] for r in js(first)] == ["100"]
    assert "more with --offset 1" in first.stderr


def test_edit_records_old_and_new_and_changes_the_ladder(run):
    changed = js(run("account", "edit", "100", "--name", "Сидоров Пётр", "--phone",
                     "+7 900 000-00-01", "--credit-limit", "250.50", "--tariff", "Fast",
                     "--json"))["changed"]
    assert changed["name"] == {"old": "Иванов Пётр Сергеевич", "new": "Сидоров Пётр"}
    assert changed["credit_limit"]["new"] == "250.50"
    assert changed["tariff"]["new"].startswith("Fast from ")
    # The search keys follow the edit.
    assert [r["number"] for r in js(run("account", "find", "сидоров", "--json"))] == ["100"]
    assert [r["number"] for r in js(run("account", "find", "89000000001", "--json"))] == ["100"]

    def check(session):
        account = session.scalar(select(Account).where(Account.number == "100"))
        assert account.credit_limit == 250.5 and account.next_tariff_id is not None
        log = session.scalar(select(OperationLog).where(OperationLog.action == "account.edit"))
        assert log.actor == "admin:test"
        assert log.details["name"] == "Иванов Пётр Сергеевич -> Сидоров Пётр"
    read(run.url, check)


def test_block_refuses_radius_and_disconnects_live_sessions(run):
    run("--actor", "alice", "account", "block", "100", "--reason", "abuse report #7")

    def outbox(session):
        account = session.scalar(select(Account).where(Account.number == "100"))
        assert account.state == "blocked"
        assert session.scalar(select(ProfileChange.reason).where(
            ProfileChange.account_id == account.id)) == "block"
        log = session.scalar(select(OperationLog).where(OperationLog.action == "account.block"))
        assert log.actor == "admin:alice" and log.details["reason"] == "abuse report #7"
        # The enforcer's own pass turns the outbox into a Disconnect.
        enforcement.expand(session)
        session.commit()
        job = session.scalar(select(EnforcementJob))
        assert job.action == "disconnect" and job.session_id is not None
    read(run.url, outbox)
    # RADIUS, the enforcer and the cabinet ask this one function.
    assert desired_profile(state="blocked", rung="normal", tariff=TariffSpeeds(1, 1),
                           now=T0).key == "none"
    assert "already blocked" in run("account", "block", "100", "--reason", "x", code=2).stderr
    run("account", "unblock", "100")
    assert read(run.url, lambda s: s.scalar(select(Account.state).where(
        Account.number == "100"))) == "active"


def test_close_refused_with_money_then_forced(run):
    run("payment", "add", "102", "10", "--external-id", "p1")
    before = snapshot(run.url)
    assert "balance of 10.00" in run("account", "close", "102", code=2).stderr
    assert snapshot(run.url) == before
    closed = js(run("account", "close", "100", "--json"))
    assert closed["state"] == "closed" and closed["services_deactivated"] == 1
    assert read(run.url, lambda s: s.scalar(select(Service.active))) is False
    assert js(run("account", "close", "102", "--force", "--json"))["balance"] == "10.00"
    log = read(run.url, lambda s: s.scalar(select(OperationLog.details).where(
        OperationLog.action == "account.close").order_by(OperationLog.id.desc())))
    assert log["forced"] == "True"


def test_service_edit_list_and_remove(run):
    run("service", "edit", "ivan", "--mac", "00-11-22-33-44-55", "--ip", "", "--password",
        "n3wpass")
    rows = js(run("service", "list", "100", "--json"))
    assert rows[0]["mac"] == "00:11:22:33:44:55" and rows[0]["static_ipv4"] is None
    assert rows[0]["live_sessions"] == 1
    log = read(run.url, lambda s: s.scalar(select(OperationLog.details).where(
        OperationLog.action == "service.edit")))
    assert "n3wpass" not in json.dumps(log) and log["password"] == "(changed)"
    before = snapshot(run.url)
    assert "live session" in run("service", "remove", "ivan", code=2).stderr
    assert snapshot(run.url) == before
    removed = js(run("service", "remove", "ivan", "--force", "--json"))
    assert len(removed["disconnect_jobs"]) == 1
    assert read(run.url, lambda s: s.scalar(select(EnforcementJob.action))) == "disconnect"
    assert js(run("service", "list", "100", "--json")) == []


BAD = [
    (["account", "edit", "999", "--name", "X"], "does not exist"),
    (["account", "edit", "100", "--name", ""], "must not be empty"),
    (["account", "edit", "100", "--name", "a\x07b"], "control characters"),
    (["account", "edit", "100", "--name", "x" * 10_000], "at most 200 characters"),
    (["account", "edit", "100", "--phone", "not a phone"], "phone number"),
    (["account", "edit", "100", "--credit-limit", "1e3"], "amount like 100"),
    (["account", "edit", "100", "--tariff", "Nope"], "does not exist"),
    (["account", "block", "100", "--reason", ""], "must not be empty"),
    (["account", "find", "a\x1bb"], "control characters"),
    (["account", "find", "10.0.0.1", "--at", "yesterday"], "--at must be a time"),
    (["service", "edit", "ivan", "--mac", "aa:bb:cc:dd:ee"], "not a MAC address"),
    (["service", "edit", "ivan", "--ip", "10.0.0.256"], "not an IPv4 address"),
    (["service", "edit", "nobody", "--password", "abcdef"], "no service"),
]


def test_bad_input_is_one_sentence_and_changes_nothing(run):
    before = snapshot(run.url)
    for (args, message), result in zip(BAD, parallel(run, [(a, {"code": 2}) for a, _ in BAD])):
        assert message in result.stderr, (args, result.stderr)
    assert snapshot(run.url) == before


def test_backfill_fills_keys_of_core_inserts(db_url):
    context = make_context(db_url)
    with context.Session() as session:
        # As a bulk importer writes: Core, and the keys explicitly NULL.
        session.execute(insert(Account.__table__), [
            {"number": "500", "name": "Ёлкина Анна", "phone": "+7 (912) 000-11-22",
             "search_name": None, "phone_key": None}])
        session.commit()
        assert search.backfill(session) == 1
        session.commit()
        row = session.execute(select(Account.search_name, Account.phone_key)
                              .where(Account.number == "500")).one()
        assert tuple(row) == ("елкина анна", "9120001122")
        # Core inserts that leave the keys out get them from the defaults.
        session.execute(insert(Account.__table__), [{"number": "501", "name": "ПЕТРОВ"}])
        session.commit()
        assert session.scalar(select(Account.search_name).where(
            Account.number == "501")) == "петров"
        assert search.backfill(session) == 0
    context.dispose()


def test_a_blocked_subscriber_is_refused_at_radius_auth(abonent_exe, db_url):
    from aaa.server import RadiusServer
    from tests import factories
    from tests.integration.test_console_nas import radclient
    context = make_context(db_url)
    with context.Session() as session:
        account = factories.make_account(session, number="700", balance="100")
        factories.make_service(session, account, login="bob", password="correct horse")
        factories.make_nas(session, name="bras-1", address="127.0.0.1", secret="testing123")
        session.commit()
    server = RadiusServer(context, host="127.0.0.1", auth_port=0, acct_port=0)
    server.start()
    body = 'User-Name = "bob", User-Password = "correct horse"'
    try:
        assert "Received Access-Accept" in radclient(server, "auth", body, "testing123")
        abonent_exe("account", "block", "700", "--reason", "fraud")
        # The server's cache compares account versions about every second.
        assert eventually(lambda: "Received Access-Reject" in radclient(
            server, "auth", body, "testing123"))
        abonent_exe("account", "unblock", "700")
        assert eventually(lambda: "Received Access-Accept" in radclient(
            server, "auth", body, "testing123"))
    finally:
        server.stop()
        context.dispose()
