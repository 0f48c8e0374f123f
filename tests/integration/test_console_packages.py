"""Service packages, discounts, promo codes and bonus points through the
installed `abonent` executable, on SQLite and PostgreSQL: the fee run
charges each once per period however often it runs, and bad input is one
sentence that changes nothing (the database is read back)."""

from __future__ import annotations

import datetime as dt
import json
import threading
from decimal import Decimal

import pytest
from sqlalchemy import func, select, text

from rating import accounts as acc
from rating import ledger, packages, promotions
from rating.cabinet_ops import statement
from rating.models import (Account, AccountPackage, BonusPoint, LedgerEntry, OperationLog,
                           PromoCode)
from tests.conftest import make_context

DAY = dt.date(2026, 11, 10)
NEXT_DAY = DAY + dt.timedelta(days=1)


def js(result):
    return json.loads(result.stdout)


@pytest.fixture
def seeded(abonent_exe, db_url):
    """Tariff Home (600 a month), accounts 100 and 101 with 1000 on them."""
    context = make_context(db_url)
    with context.Session() as session:
        acc.create_tariff(session, name="Home", fee="600", rate_down_kbps=100000,
                          rate_up_kbps=50000)
        for number in ("100", "101"):
            account = acc.create_account(session, number=number, name="Ivan Petrov",
                                         tariff="Home")
            acc.add_payment(session, account, "1000", external_id=f"seed-{number}")
        session.commit()
    abonent_exe.ctx = context
    abonent_exe.url = db_url
    yield abonent_exe
    context.dispose()


def entries(run, number="100", kind=None):
    with run.ctx.Session() as session:
        query = (select(LedgerEntry).join(Account, Account.id == LedgerEntry.account_id)
                 .where(Account.number == number).order_by(LedgerEntry.id))
        if kind:
            query = query.where(LedgerEntry.kind == kind)
        return [(e.kind, e.amount, e.idempotency_key, e.memo, e.author)
                for e in session.scalars(query)]


def balance(run, number="100") -> Decimal:
    with run.ctx.Session() as session:
        return session.scalar(select(Account.balance).where(Account.number == number))


def account_id(run, number="100") -> int:
    with run.ctx.Session() as session:
        return session.scalar(select(Account.id).where(Account.number == number))


TABLES = ("accounts", "ledger_entries", "operation_log", "packages", "account_packages",
          "discounts", "promo_codes", "promo_redemptions", "bonus_rules", "bonus_points")


def snapshot(run):
    with run.ctx.engine.connect() as conn:
        return {t: [tuple(r) for r in conn.execute(text(f"SELECT * FROM {t} ORDER BY 1"))]
                for t in TABLES}


# -- packages -----------------------------------------------------------------------

def test_a_package_from_add_to_archive(seeded):
    added = js(seeded("package", "add", "TV Basic", "--fee", "199", "--description",
                      "50 channels", "--json"))
    assert added["fee"] == "199.00" and added["fee_period"] == "monthly"
    assert added["self_service"] is True
    seeded("package", "add", "Kino", "--fee", "9.90", "--period", "daily", "--operator-only")
    edited = js(seeded("package", "edit", "Kino", "--fee", "10", "--json"))
    assert edited["changed"] == ["fee"] and edited["fee"] == "10.00"

    on = js(seeded("package", "on", "100", "TV Basic", "--json"))
    assert on["changed"] is True and on["charged"] == "199.00"
    # Again: nothing new, nothing charged.
    again = js(seeded("package", "on", "100", "TV Basic", "--json"))
    assert again["changed"] is False and again["charged"] == "0.00"
    fees = entries(seeded, kind="fee")
    assert len(fees) == 1 and fees[0][1] == Decimal("-199.00")
    assert fees[0][3].startswith("package TV Basic for ") and fees[0][4] == "admin:test"
    assert balance(seeded) == Decimal("801.00")

    listed = {p["name"]: p for p in js(seeded("package", "list", "--json"))}
    assert listed["TV Basic"]["active_accounts"] == 1 and listed["Kino"]["active_accounts"] == 0
    shown = {p["name"]: p["active"] for p in js(seeded("package", "show", "100", "--json"))}
    assert shown == {"Kino": False, "TV Basic": True}

    seeded("package", "off", "100", "TV Basic")
    # Off and on again in the same month: the month is paid, nothing more.
    assert js(seeded("package", "on", "100", "TV Basic", "--json"))["charged"] == "0.00"
    assert balance(seeded) == Decimal("801.00")

    seeded("package", "archive", "TV Basic")
    assert [p["name"] for p in js(seeded("package", "list", "--json"))] == ["Kino"]
    refused = seeded("package", "on", "101", "TV Basic", code=2)
    assert "archived" in refused.stderr
    with seeded.ctx.Session() as session:
        actions = session.scalars(select(OperationLog.action)
                                  .where(OperationLog.actor == "admin:test")).all()
    assert {"package.add", "package.edit", "package.on", "package.off",
            "package.archive"} <= set(actions)


def test_the_fee_run_charges_a_package_once_per_period(seeded):
    context = seeded.ctx
    first, second = account_id(seeded, "100"), account_id(seeded, "101")
    with context.Session() as session:
        tv = packages.create(session, name="TV", fee="150")
        kino = packages.create(session, name="Kino", fee="10", fee_period="daily")
        session.add_all([AccountPackage(account_id=first, package_id=tv.id),
                         AccountPackage(account_id=second, package_id=tv.id),
                         AccountPackage(account_id=first, package_id=kino.id)])
        session.commit()
    for _ in range(2):  # a run repeated (a second node, a retry) counts once
        seeded("fees", "run", "--day", DAY.isoformat())
    fees = [e for e in entries(seeded, kind="fee") if e[2].startswith("pkg:")]
    assert [(e[1], e[3]) for e in fees] == [
        (Decimal("-150.00"), "package TV for 2026-11"),
        (Decimal("-10.00"), "package Kino for 2026-11-10")]
    assert len([e for e in entries(seeded, "101", "fee") if e[2].startswith("pkg:")]) == 1
    # 1000 - 600 (tariff) - 150 - 10
    assert balance(seeded) == Decimal("240.00")

    with context.Session() as session:
        packages.switch(session, session.get(Account, first), kino, False, today=DAY,
                        actor="test")
        session.commit()
    seeded("fees", "run", "--day", NEXT_DAY.isoformat())
    assert balance(seeded) == Decimal("240.00")  # the month's fees are paid; Kino is off

    # The bill explains each line.
    with context.Session() as session:
        lines = statement(session, first, dt.datetime(2000, 1, 1),
                          dt.datetime(2100, 1, 1)).lines
    memos = [line.memo for line in lines]
    assert "package TV for 2026-11" in memos and "package Kino for 2026-11-10" in memos


def test_the_scheduled_run_charges_packages_too(seeded):
    """`fees run` with no day: the scheduler's path (chunks over several
    connections on PostgreSQL), run twice."""
    first = account_id(seeded)
    with seeded.ctx.Session() as session:
        tv = packages.create(session, name="TV", fee="150")
        session.add(AccountPackage(account_id=first, package_id=tv.id))
        session.commit()
    seeded("fees", "run")
    seeded("fees", "run")
    fees = [e for e in entries(seeded, kind="fee") if e[2].startswith("pkg:")]
    assert len(fees) == 1 and fees[0][1] == Decimal("-150.00")
    with seeded.ctx.Session() as session:
        assert ledger.balance_mismatches(session) == []


def test_a_frozen_or_suspended_account_pays_no_package(seeded):
    first, second = account_id(seeded, "100"), account_id(seeded, "101")
    with seeded.ctx.Session() as session:
        tv = packages.create(session, name="TV", fee="150")
        session.add(AccountPackage(account_id=first, package_id=tv.id))
        session.add(AccountPackage(account_id=second, package_id=tv.id))
        session.get(Account, first).state = "frozen"
        # Far below the credit limit: the ladder suspends it.
        ledger.post(session, account_id=second, amount="-5000", kind="correction",
                    key="debt", author="test")
        session.commit()
    seeded("fees", "run", "--day", DAY.isoformat())
    assert not [e for n in ("100", "101") for e in entries(seeded, n)
                if e[2].startswith("pkg:")]


# -- discounts ----------------------------------------------------------------------

def test_discounts_are_their_own_entries_once_per_fee(seeded):
    first, second = account_id(seeded, "100"), account_id(seeded, "101")
    with seeded.ctx.Session() as session:
        tv = packages.create(session, name="TV", fee="200")
        session.add(AccountPackage(account_id=first, package_id=tv.id))
        session.commit()
    made = js(seeded("discount", "add", "100", "--percent", "10", "--on", "tariff",
                     "--from", "2026-11-01", "--until", "2027-03-01", "--json"))
    assert made["percent"] == "10.00" and made["valid_until"] == "2027-03-01"
    with seeded.ctx.Session() as session:
        promotions.add_discount(session, session.get(Account, first), target="package",
                                amount="500", package=tv, valid_from=dt.date(2026, 11, 1))
        # Not yet valid on the run's day: not applied.
        promotions.add_discount(session, session.get(Account, second), target="tariff",
                                percent="50", valid_from=dt.date(2026, 12, 1))
        session.commit()
    for _ in range(2):
        seeded("fees", "run", "--day", DAY.isoformat())
    discounts = entries(seeded, kind="discount")
    assert [(d[1], d[3]) for d in discounts] == [
        (Decimal("60.00"), f"discount 10% (No. {made['id']}) on fee for 2026-11"),
        # A fixed discount never exceeds the fee.
        (Decimal("200.00"), f"discount 500.00 (No. {made['id'] + 1}) on package TV for 2026-11")]
    assert all(d[2].startswith("discount:") for d in discounts)
    assert balance(seeded) == Decimal("1000.00") - 600 - 200 + 60 + 200
    assert entries(seeded, "101", "discount") == []
    seeded("discount", "remove", str(made["id"]))
    listed = js(seeded("discount", "list", "100", "--json"))
    assert [(d["target"], d["revoked"]) for d in listed] == [("tariff", True),
                                                            ("package", False)]


# -- promo codes --------------------------------------------------------------------

def test_promo_codes_count_once_per_account_and_keep_their_limit(seeded):
    seeded("promo", "add", "spring-2026", "--amount", "100", "--uses", "1",
           "--expires", "2099-01-01")
    with seeded.ctx.Session() as session:
        promotions.add_promo(session, "PCT15", percent="15", uses=5, days=30, today=DAY)
        session.add(PromoCode(code="OLD", amount=Decimal("50"), max_uses=10, used=0,
                              expires_on=dt.date(2020, 1, 1), created_by="test"))
        session.commit()
    redeemed = js(seeded("promo", "redeem", "100", "SPRING-2026", "--json"))
    assert redeemed["given"] == "100.00 credited"
    assert [(e[1], e[3]) for e in entries(seeded, kind="bonus")] == [
        (Decimal("100.00"), "promo code SPRING-2026")]
    assert "already redeemed" in seeded("promo", "redeem", "100", "spring-2026", code=2).stderr
    assert "used up" in seeded("promo", "redeem", "101", "spring-2026", code=2).stderr
    assert entries(seeded, "101", "bonus") == []

    given = js(seeded("promo", "redeem", "101", "pct15", "--json"))["given"]
    assert given.startswith("a 15% discount on the tariff fee until ")
    with seeded.ctx.Session() as session:
        [discount] = promotions.discounts_for(session, account_id(seeded, "101"))
        assert discount.percent == Decimal("15.00") and discount.target == "tariff"
    codes = {p["code"]: p for p in js(seeded("promo", "list", "--json"))}
    assert codes["SPRING-2026"]["used"] == 1 and codes["PCT15"]["used"] == 1
    assert "expired on 2020-01-01" in seeded("promo", "redeem", "100", "old", code=2).stderr


# Concurrency is PostgreSQL's (SQLite writes one at a time).
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_the_uses_limit_holds_under_concurrent_redemptions(seeded):
    context = seeded.ctx
    numbers = [f"2{n:02d}" for n in range(8)]
    with context.Session() as session:
        for number in numbers:
            acc.create_account(session, number=number, name="Racer")
        promotions.add_promo(session, "LAST", amount="10", uses=3, today=DAY)
        session.commit()
    barrier = threading.Barrier(len(numbers))
    outcomes = []

    def race(number):
        with context.Session() as session:
            account = acc.find_account(session, number)
            barrier.wait()
            try:
                promotions.redeem(session, account, "LAST", today=DAY, actor="test")
                session.commit()
                outcomes.append("ok")
            except promotions.DomainError as error:
                session.rollback()
                outcomes.append(str(error))

    threads = [threading.Thread(target=race, args=(n,)) for n in numbers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("ok") == 3
    assert all("used up" in o for o in outcomes if o != "ok")
    with context.Session() as session:
        assert session.scalar(select(PromoCode.used).where(PromoCode.code == "LAST")) == 3
        assert session.scalar(select(func.count()).select_from(LedgerEntry)
                              .where(LedgerEntry.kind == "bonus")) == 3


# -- bonus points -------------------------------------------------------------------

def test_bonus_points_are_earned_on_payments_and_spent_on_fees(seeded):
    rule = js(seeded("bonus", "set", "--percent", "2", "--json"))
    assert rule["earn_percent"] == "2.00"
    with seeded.ctx.Session() as session:
        acc.add_payment(session, session.get(Account, account_id(seeded)), "1500",
                        external_id="after-rule")
        session.commit()
    for _ in range(2):
        seeded("fees", "run", "--day", DAY.isoformat())
    shown = js(seeded("bonus", "show", "100", "--json"))
    # 2 % of 1500 = 30 points, all spent on the tariff fee.
    assert shown["points"] == "0.00"
    assert [(h["kind"], h["points"]) for h in shown["history"]] == [("spend", "-30.00"),
                                                                   ("earn", "30.00")]
    bonus = entries(seeded, kind="bonus")
    assert [(b[1], b[3]) for b in bonus] == [(Decimal("30.00"),
                                              "30.00 bonus points on fee for 2026-11")]
    # The seed payment (before the rule) earned nothing; 101 had no new payment.
    with seeded.ctx.Session() as session:
        assert promotions.points(session, account_id(seeded, "101")) == 0
    assert balance(seeded) == Decimal("1000.00") + 1500 - 600 + 30
    with seeded.ctx.Session() as session:
        assert ledger.balance_mismatches(session) == []
        assert session.scalar(select(func.count()).select_from(BonusPoint)) == 2


# -- bad input ----------------------------------------------------------------------

LONG = "x" * 10_000
BAD = [
    (["package", "add", "", "--fee", "1"], "must not be empty"),
    (["package", "add", "TV\nSport", "--fee", "1"], "control characters"),
    (["package", "add", LONG, "--fee", "1"], "at most 100 characters"),
    (["package", "add", "TV", "--fee", "1e3"], "amount like 100"),
    (["package", "add", "TV", "--fee", "-5"], "cannot be negative"),
    (["package", "add", "TV", "--fee", "1", "--period", "weekly"], "Invalid value"),
    (["package", "add", "Sport", "--fee", "1"], "already exists"),
    (["package", "on", "999", "Sport"], "account 999 does not exist"),
    (["package", "on", "100", "Nope"], "package 'Nope' does not exist"),
    (["discount", "add", "100", "--percent", "150", "--on", "tariff"], "must not exceed"),
    (["discount", "add", "100", "--percent", "10", "--amount", "5", "--on", "tariff"],
     "either a percent or an amount"),
    (["discount", "add", "100", "--percent", "10", "--on", "tariff", "--from", "2027-01-01",
      "--until", "2026-01-01"], "must end after it starts"),
    (["discount", "add", "100", "--percent", "10", "--on", "tariff", "--until", "tomorrow"],
     "Invalid value"),
    (["discount", "add", "100", "--percent", "10", "--on", "tariff", "--package", "Sport"],
     "only for a discount on a package"),
    (["promo", "add", "a b", "--amount", "5", "--uses", "1"], "promo code is 3-32"),
    (["promo", "add", "GIFT", "--amount", "5", "--uses", "0"], "uses must be 1"),
    (["promo", "add", "GIFT", "--amount", "5", "--uses", "1", "--expires", "2001-01-01"],
     "in the past"),
    (["promo", "redeem", "100", "NOPE"], "promo code NOPE does not exist"),
    (["bonus", "set", "--percent", "1e3"], "amount like 100"),
    (["bonus", "show", "999"], "account 999 does not exist"),
]


def test_bad_input_is_one_sentence_and_changes_nothing(seeded):
    seeded("package", "add", "Sport", "--fee", "100")
    before = snapshot(seeded)
    for args, message in BAD:
        result = seeded(*args, code=2)
        assert message in result.stderr, (args, result.stderr)
    assert snapshot(seeded) == before


# --help reads no database: one backend is enough.
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_every_command_has_help(abonent_exe, db_url):
    for group, commands in {"package": ["add", "edit", "list", "archive", "on", "off", "show"],
                            "discount": ["add", "list", "remove"],
                            "promo": ["add", "list", "redeem"],
                            "bonus": ["set", "show"]}.items():
        listing = abonent_exe(group, "--help").stdout
        for command in commands:
            assert command in listing
