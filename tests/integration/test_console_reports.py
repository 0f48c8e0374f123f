"""Reports through the `abonent` executable on SQLite and PostgreSQL:
traffic, report reconcile, report debtors, report revenue.

Seeded through the ingestion paths' library functions (aaa.accounting's
batch writer for RADIUS sessions, the collector's rollup upsert for NetFlow,
the ledger for money); only the report runs as a process. Months are the
operator's (Europe/Moscow by default, UTC+3).
"""

from __future__ import annotations

import datetime as dt
import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import text, update

from aaa.accounting import STOP, AcctRecord, apply_batch
from aaa.models import Nas
from collector.flush import upsert_rows as upsert_rollups
from rating import accounts as acc, corrections, ledger
from rating.models import LedgerEntry
from tests.conftest import make_context

MB = 10 ** 6


def js(result):
    return json.loads(result.stdout)


@pytest.fixture
def run(abonent_exe, db_url):
    context = make_context(db_url)
    abonent_exe.context = context
    yield abonent_exe
    context.dispose()


def accounts(run, *numbers, tariff=None):
    with run.context.Session() as session:
        if tariff and not session.execute(text("SELECT 1 FROM tariffs WHERE name = :n"),
                                          {"n": tariff}).first():
            acc.create_tariff(session, name=tariff, fee="600", rate_down_kbps=1000,
                              rate_up_kbps=1000)
        ids = [acc.create_account(session, number=n, name=f"Subscriber {n}", tariff=tariff).id
               for n in numbers]
        session.commit()
    return ids


def radius(run, account_id, at, octets_in, octets_out, name):
    """A stopped session as the accounting writer stores it."""
    with run.context.Session() as session:
        nas = session.execute(text("SELECT id FROM nas")).scalar()
        if nas is None:
            session.add(Nas(name="bras1", address="10.0.0.1", secret="s"))
            session.commit()
            nas = session.execute(text("SELECT id FROM nas")).scalar()
    with run.context.engine.begin() as connection:
        apply_batch(connection, [AcctRecord(
            nas_id=nas, status=STOP, event_time=at, acct_session_id=name, username=name,
            octets_in=octets_in, octets_out=octets_out, session_time=3600,
            terminate_cause="User-Request", account_id=account_id, saw_start=True)])


def netflow(run, account_id, at, traffic_class, direction, volume, source="netflow"):
    with run.context.Session() as session:
        upsert_rollups(session, [dict(account_id=account_id, interval_start=at,
                                      traffic_class=traffic_class, direction=direction,
                                      bytes=volume, packets=volume // 1000, source=source)])
        session.commit()


NOV = dt.datetime(2026, 11, 10, 12, 0)


def test_reconcile_flags_a_30_percent_gap_and_missing_sources(run):
    apart, close, radius_only, netflow_only, quiet = accounts(run, "200", "201", "202", "203",
                                                               "204")
    # RADIUS: Acct-Input (from the subscriber) 300 MB, Acct-Output 700 MB.
    radius(run, apart, NOV, 300 * MB, 700 * MB, "s-apart")
    netflow(run, apart, NOV, "internet", "in", 490 * MB)
    netflow(run, apart, NOV, "internet", "out", 210 * MB)        # 700 MB: 30 % short
    radius(run, close, NOV, 500 * MB, 500 * MB, "s-close")
    netflow(run, close, NOV, "internet", "in", 950 * MB)          # 5 % short
    radius(run, radius_only, NOV, 10 * MB, 10 * MB, "s-only")
    netflow(run, netflow_only, NOV, "internet", "in", 5 * MB)
    # October's traffic is not November's.
    radius(run, quiet, dt.datetime(2026, 10, 10), 99 * MB, 99 * MB, "s-october")

    out = js(run("report", "reconcile", "--month", "2026-11", "--json"))
    flags = {row["account"]: row["flag"] for row in out["accounts"]}
    assert flags == {"200": "apart", "202": "no_netflow", "203": "no_radius"}
    assert out["flagged"] == 3 and out["tolerance_percent"] == "10.00"
    (row,) = [r for r in out["accounts"] if r["account"] == "200"]
    assert (row["radius_bytes"], row["netflow_bytes"], row["difference_percent"]) == (
        1000 * MB, 700 * MB, "-30.0")
    assert (row["radius_in"], row["netflow_in"]) == (700 * MB, 490 * MB)

    everyone = js(run("report", "reconcile", "--month", "2026-11", "--all", "--json"))
    assert {r["account"]: r["flag"] for r in everyone["accounts"]}["201"] is None
    # A wider tolerance lets the 30 % through; missing sources stay flagged.
    wide = js(run("report", "reconcile", "--month", "2026-11", "--tolerance", "30", "--json"))
    assert {r["account"] for r in wide["accounts"]} == {"202", "203"}
    run("report", "reconcile", "--month", "2026-11", "--fail-on-flag", code=1)
    run("report", "reconcile", "--month", "2026-10", "--tolerance", "100", "--fail-on-flag",
        code=1)  # October: account 204 has RADIUS and no NetFlow
    assert "204" in run("report", "reconcile", "--month", "2026-10").stdout
    assert js(run("report", "reconcile", "--month", "2026-09", "--fail-on-flag",
                  "--json"))["accounts"] == []


def test_traffic_by_class_and_by_the_operators_day(run):
    (account,) = accounts(run, "200")
    netflow(run, account, NOV, "internet", "in", 400 * MB)
    netflow(run, account, NOV, "local", "in", 90 * MB)
    netflow(run, account, NOV, "internet", "out", 210 * MB)
    # 22:00 UTC is 01:00 the next day in Moscow.
    netflow(run, account, NOV.replace(hour=22), "internet", "in", 1 * MB)
    netflow(run, account, NOV, "internet", "in", 7 * MB, source="radius")
    netflow(run, account, dt.datetime(2026, 12, 1), "internet", "in", 999 * MB)
    by_class = js(run("traffic", "200", "--month", "2026-11", "--json"))
    assert [(r["class"], r["source"], r["bytes_in"], r["bytes_out"]) for r in by_class["rows"]] \
        == [("internet", "netflow", 401 * MB, 210 * MB), ("internet", "radius", 7 * MB, 0),
            ("local", "netflow", 90 * MB, 0)]
    by_day = js(run("traffic", "200", "--month", "2026-11", "--by", "day", "--json"))
    assert [(r["day"], r["source"], r["bytes_total"]) for r in by_day["rows"]] == [
        ("2026-11-10", "netflow", 700 * MB), ("2026-11-10", "radius", 7 * MB),
        ("2026-11-11", "netflow", 1 * MB)]
    table = run("traffic", "200", "--month", "2026-11").stdout
    assert "BYTES_IN" in table and "local" in table


def post(session, account_id, amount, kind, key, at):
    posting = ledger.post(session, account_id=account_id, amount=amount, kind=kind, key=key,
                          author="admin:seed")
    session.execute(update(LedgerEntry).where(LedgerEntry.id == posting.entry_id)
                    .values(created_at=at))
    return posting


def test_debtors_with_how_much_and_since_when(run):
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    ago = lambda days: now - dt.timedelta(days=days)  # noqa: E731
    long_ago, recent, fine, again = accounts(run, "300", "301", "302", "303")
    with run.context.Session() as session:
        post(session, long_ago, "100", "payment", "p300", ago(40))
        post(session, long_ago, "-150", "fee", "f300", ago(30))
        post(session, recent, "-20", "fee", "f301", ago(2))
        post(session, fine, "10", "payment", "p302", ago(3))
        post(session, again, "-10", "fee", "f303a", ago(50))
        post(session, again, "50", "payment", "p303", ago(20))
        post(session, again, "-45", "fee", "f303b", ago(5))
        session.commit()
    rows = js(run("report", "debtors", "--json"))
    assert [(r["number"], r["balance"], r["days_in_debt"]) for r in rows] == [
        ("300", "-50.00", 30), ("301", "-20.00", 2), ("303", "-5.00", 5)]
    assert [r["number"] for r in js(run("report", "debtors", "--days", "10", "--json"))] \
        == ["300"]
    assert [r["number"] for r in js(run("report", "debtors", "--below", "-20", "--json"))] \
        == ["300"]
    page = run("report", "debtors", "--limit", "1", "--json")
    assert len(js(page)) == 1 and "more with --offset 1" in page.stderr


def test_revenue_by_kind_tariff_and_day(run):
    home, = accounts(run, "400", tariff="Home")
    office, = accounts(run, "401", tariff="Office")
    day = lambda n, hour=10: dt.datetime(2026, 11, n, hour)  # noqa: E731
    with run.context.Session() as session:
        post(session, home, "1000", "payment", "p400", day(5))
        fee = post(session, home, "-600", "fee", "f400", day(5))
        post(session, home, "-50", "traffic", "t400", day(6))
        post(session, office, "-300", "fee", "f401", day(6))
        reversal = ledger.reverse(session, fee.entry_id, author="admin:seed")
        refund = corrections.refund(session, session.get(acc.Account, home), "100",
                                    reason="r", actor="admin:seed")
        moved = corrections.transfer(session, session.get(acc.Account, home),
                                     session.get(acc.Account, office), "20", reason="r",
                                     actor="admin:seed")
        ids = [reversal.entry_id, refund.postings[0].entry_id]
        ids += [p.entry_id for p in moved.postings]
        session.execute(update(LedgerEntry).where(LedgerEntry.id.in_(ids))
                        .values(created_at=day(7)))
        post(session, home, "-999", "fee", "f400dec", dt.datetime(2026, 12, 2))
        session.commit()

    def table(by):
        out = js(run("report", "revenue", "--month", "2026-11", "--by", by, "--json"))
        return {row[by]: (row["entries"], row["charges"], row["payments"], row["refunds"])
                for row in out["rows"]}

    assert table("kind") == {"fee": (3, "300.00", "0.00", "0.00"),
                             "traffic": (1, "50.00", "0.00", "0.00"),
                             "payment": (1, "0.00", "1000.00", "0.00"),
                             "refund": (1, "0.00", "0.00", "100.00")}
    assert table("tariff") == {"Home": (5, "50.00", "1000.00", "100.00"),
                               "Office": (1, "300.00", "0.00", "0.00")}
    assert table("day") == {"2026-11-05": (2, "600.00", "1000.00", "0.00"),
                            "2026-11-06": (2, "350.00", "0.00", "0.00"),
                            "2026-11-07": (2, "-600.00", "0.00", "100.00")}


BAD = [
    (["report", "reconcile", "--month", "2026-13"], "month must look like 2026-12"),
    (["report", "reconcile", "--month", "2026-1"], "month must look like 2026-12"),
    (["report", "reconcile", "--month", "2026-11", "--tolerance", "1e3"], "amount like 100"),
    (["report", "reconcile", "--month", "2026-11", "--tolerance", "-5"], "cannot be negative"),
    (["report", "reconcile"], "Missing option '--month'"),
    (["report", "revenue", "--month", "2026-11", "--by", "nas"], "--by"),
    (["report", "revenue", "--month", "11.2026"], "month must look like"),
    (["report", "debtors", "--below", "1e3"], "amount like 100"),
    (["report", "debtors", "--below", "1000000000000000"], "must not exceed"),
    (["report", "debtors", "--days", "-1"], "--days"),
    (["traffic", "999"], "account 999 does not exist"),
    (["traffic", "200", "--month", "last"], "month must look like"),
]


def test_bad_input_is_one_sentence(run):
    accounts(run, "200")
    with ThreadPoolExecutor(4) as pool:
        results = pool.map(lambda case: (case, run(*case[0], code=2).stderr), BAD)
        for (args, message), stderr in results:
            assert message in stderr, (args, stderr)
