"""Telephony on SQLite and PostgreSQL: calls recorded once per (source, id),
rated and charged through the ledger with the balance kept equal to it;
the CDR import all or nothing; re-rating as reversal + new entries; the
`abonent rates|phone|cdr|calls` commands through the installed executable."""

from __future__ import annotations

import datetime as dt
import json
import threading
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from rating import ledger, phones
from rating.accounts import create_account
from rating.models import Account, Call, LedgerEntry, VoiceAllowance
from rating.telephony import CallInput, Config, NumberRules, may_call, record_calls
from tests.conftest import make_context

CONFIG = Config(NumberRules(), "Europe/Moscow")
NOON = dt.datetime(2026, 12, 7, 9)  # 12:00 in Moscow, a Monday
RATES = ("prefix;zone;price;increments;connection_fee;offpeak_price\n"
         "7;Russia;3.00\n7495;Moscow;1.50;60/60;;0.50\n44;UK;12.00;30/6;1.00\n")


def call(external_id, calling="84951110000", called="84952223344", billsec=61,
         start=NOON, disposition="answered", source="asterisk"):
    return CallInput(source, external_id, calling, called, start, start,
                     start + dt.timedelta(seconds=billsec), billsec, disposition)


@pytest.fixture
def telephony(ctx, tmp_path):
    """Plan Home (2 free minutes on Moscow), accounts 100 (74951110000)
    and 101 (74951110001, login ivan)."""
    from rating.cdr import parse_rates
    import io
    with ctx.Session() as session:
        phones.save_plan(session, "Home", free_minutes=2, free_zones=["Moscow"], actor="test")
        phones.import_rates(session, "Home", parse_rates(io.StringIO(RATES)), actor="test")
        for number, phone, login in (("100", "84951110000", None),
                                     ("101", "+7 495 111-00-01", "ivan")):
            account = create_account(session, number=number, name="Ivan")
            account.credit_limit = Decimal("1000.00")
            phones.add_phone(session, account, number=phone, login=login, plan_name="Home",
                             config=CONFIG, actor="test")
        session.commit()
    return ctx


def balances_match(session):
    assert ledger.balance_mismatches(session) == []


def test_record_calls_is_idempotent_and_charges_through_the_ledger(telephony):
    with telephony.Session() as session:
        first = record_calls(session, [call("a1"), call("a2"), call("a1"),
                                       call("a3", called="810442071234567"),
                                       call("a4", disposition="no_answer", billsec=0),
                                       call("a5", called="84951110001"),       # on-net
                                       call("a6", calling="999", called="84951110001"),
                                       call("a7", calling="999", called="111")],
                             config=CONFIG)
        session.commit()
        assert (first.inserted, first.duplicates, first.unmatched) == (7, 1, 1)
        # a1 and a2: 120 s each, 120 free, then 120 x 1.50; a3: 66 s x 12 + 1.
        assert first.charged == Decimal("3.00") + Decimal("14.20")
        again = record_calls(session, [call("a1"), call("a3", called="810442071234567")],
                             config=CONFIG)
        session.commit()
        assert (again.inserted, again.duplicates, again.charged) == (0, 2, Decimal("0.00"))
        account = session.scalar(select(Account).where(Account.number == "100"))
        assert account.balance == Decimal("-17.20")
        balances_match(session)
        reasons = dict(session.execute(select(Call.external_id, Call.reason)).all())
        assert reasons == {"a1": "package", "a2": "rated", "a3": "rated", "a4": "unanswered",
                           "a5": "onnet", "a6": "incoming", "a7": "unknown_number"}
        assert session.scalar(select(VoiceAllowance.used_seconds)) == 120
        # One entry for the day's charged calls, which name it.
        (entry,) = session.scalars(select(LedgerEntry).where(LedgerEntry.kind == "call"))
        assert entry.amount == Decimal("-17.20") and entry.memo_code == "calls"
        assert session.scalar(select(func.count()).select_from(Call).where(
            Call.ledger_key == entry.idempotency_key)) == 2


def test_may_call_follows_the_balance_ladder(telephony):
    with telephony.Session() as session:
        assert may_call(session, "+74951110000", config=CONFIG) == (True, "allowed")
        assert may_call(session, "ivan", config=CONFIG)[0] is True
        assert may_call(session, "74950000000", config=CONFIG) == \
            (False, "unknown number or login")
        record_calls(session, [call(f"x{i}", billsec=3600, called="810442071234567",
                                    start=NOON + dt.timedelta(hours=i)) for i in range(3)],
                     config=CONFIG)
        session.commit()
        allowed, reason = may_call(session, "84951110000", config=CONFIG)
        assert not allowed and "barred" in reason
        balances_match(session)


@pytest.mark.parametrize("called, balance, package_seconds", [
    ("810442071234567", Decimal("-2840.00"), 0),     # UK: 200 x 14.20, no package
    ("84952223344", Decimal("-597.00"), 120),        # Moscow: the first 120 s free
])
def test_concurrent_imports_of_the_same_calls_charge_once(telephony, called, balance,
                                                         package_seconds):
    batch = [call(f"c{i}", called=called, start=NOON + dt.timedelta(minutes=i))
             for i in range(200)]
    errors = []

    def work():
        try:
            with telephony.Session() as session:
                record_calls(session, batch, config=CONFIG)
                session.commit()
        except Exception as error:  # SQLite: "database is locked" is a retry, not a loss
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        work()
    with telephony.Session() as session:
        assert session.scalar(select(func.count()).select_from(Call)) == 200
        assert session.scalar(select(Account.balance).where(Account.number == "100")) == balance
        assert (session.scalar(select(VoiceAllowance.used_seconds)) or 0) == package_seconds
        balances_match(session)


def test_rerate_reverses_and_posts_again_once(telephony):
    with telephony.Session() as session:
        record_calls(session, [call("r1", billsec=300, called="74832223344"),
                               call("r2", billsec=60, called="99912345")], config=CONFIG)
        session.commit()
        assert session.scalar(select(Call.reason).where(Call.external_id == "r2")) == "no_rate"
        from rating.cdr import parse_rates
        import io
        phones.import_rates(session, "Home", parse_rates(io.StringIO(
            RATES.replace("7;Russia;3.00", "7;Russia;2.00") + "999;Satellite;10.00\n")),
            actor="test")
        session.commit()
        start, end = dt.datetime(2026, 12, 1), dt.datetime(2027, 1, 1)
        result = phones.rerate(session, start, end, config=CONFIG, actor="admin:test")
        session.commit()
        assert (result.reversed, result.before, result.after) == \
            (1, Decimal("15.00"), Decimal("20.00"))
        again = phones.rerate(session, start, end, config=CONFIG, actor="admin:test")
        session.commit()
        assert (again.changed, again.reversed, again.posted) == (0, 0, 0)
        assert session.scalar(select(Account.balance).where(Account.number == "100")) == \
            Decimal("-20.00")
        kinds = sorted(session.scalars(select(LedgerEntry.kind)))
        assert kinds == ["call", "call", "correction"]
        balances_match(session)


ASTERISK = ('"","84951110000","{called}","ctx","","SIP/{i}","SIP/t","Dial","x",'
            '"2026-12-07 12:{i:02d}:00","2026-12-07 12:{i:02d}:03","2026-12-07 12:{i:02d}:50",'
            '50,47,"ANSWERED","DOCUMENTATION","u{i}",""\n')


def js(result):
    return json.loads(result.stdout)


def test_commands(abonent_exe, db_url, tmp_path):
    context = make_context(db_url)
    with context.Session() as session:
        create_account(session, number="100", name="Ivan")
        session.commit()
    context.dispose()
    rates = tmp_path / "rates.csv"
    rates.write_text(RATES)
    abonent_exe("rates", "plan", "Home", "--offpeak", "22-8")
    assert js(abonent_exe("rates", "import", str(rates), "--plan", "Home", "--json"))[
        "prefixes"] == 3
    abonent_exe("phone", "add", "100", "8 (495) 111-00-00", "--plan", "Home")
    listed = js(abonent_exe("phone", "list", "--json"))
    assert [(p["account"], p["number"]) for p in listed] == [("100", "74951110000")]
    shown = js(abonent_exe("rates", "show", "+44 20 7123 4567", "--plan", "Home",
                           "--seconds", "61", "--json"))
    assert (shown["prefix"], shown["zone"], shown["billed_seconds"], shown["charge"]) == \
        ("44", "UK", 66, "14.20")
    cdrs = tmp_path / "Master.csv"
    cdrs.write_text("".join(ASTERISK.format(i=i, called="84952223344") for i in range(5)))
    report = js(abonent_exe("cdr", "import", str(cdrs), "--format", "asterisk", "--json"))
    assert (report["inserted"], report["charged"]) == (5, "7.50")
    again = js(abonent_exe("cdr", "import", str(cdrs), "--format", "asterisk", "--json"))
    assert (again["inserted"], again["duplicates"]) == (0, 5)
    # A bad line: exit 2 naming it, and none of the file's good lines stored.
    bad = tmp_path / "bad.csv"
    bad.write_text(ASTERISK.format(i=10, called="84952223344") +
                   '"","1","2","c","","S","","D","x","soon","","",1,0,"ANSWERED","D","u11",""\n')
    refused = abonent_exe("cdr", "import", str(bad), "--format", "asterisk", code=2)
    assert "line 2" in refused.stderr
    calls = js(abonent_exe("calls", "list", "--from", "2026-12-01", "--to", "2027-01-01",
                           "--json"))
    assert len(calls) == 5 and {c["zone"] for c in calls} == {"Moscow"}
    rates.write_text(RATES.replace("7495;Moscow;1.50", "7495;Moscow;1.00"))
    abonent_exe("rates", "import", str(rates), "--plan", "Home")
    rerated = js(abonent_exe("calls", "rerate", "--from", "2026-12-01", "--to", "2027-01-01",
                             "--json"))
    assert (rerated["charged_before"], rerated["charged_after"]) == ("7.50", "5.00")
    assert js(abonent_exe("calls", "rerate", "--from", "2026-12-01", "--to", "2027-01-01",
                          "--json"))["changed"] == 0
    abonent_exe("calls", "list", "--from", "2027-01-01", "--to", "2026-12-01", code=2)
    abonent_exe("phone", "add", "100", "84951110000", "--plan", "Home", code=2)
    abonent_exe("rates", "import", str(tmp_path / "missing.csv"), "--plan", "Home", code=2)
    abonent_exe("phone", "remove", "+74951110000")
    assert js(abonent_exe("phone", "list", "--json")) == []


def test_calls_are_a_line_of_a_companys_monthly_documents(telephony):
    from rating import documents
    with telephony.Session() as session:
        account = session.scalar(select(Account).where(Account.number == "100"))
        account.kind = "company"
        record_calls(session, [call("d1", called="810442071234567")], config=CONFIG)
        session.commit()
        now = dt.datetime.utcnow()
        document = documents.month_services(session, account.id, now.date(), now.date(),
                                            now - dt.timedelta(days=1),
                                            now + dt.timedelta(days=1))
        assert [(line.kind, line.amount) for line in document.lines] == \
            [("call", Decimal("14.20"))]


def test_odd_characters_in_ids_and_numbers_are_stored_as_given(telephony):
    """PostgreSQL gets each batch as array literals: quotes, backslashes,
    commas, braces, a NULL-looking text and Cyrillic arrive intact."""
    odd = ['a"b', "c\\d", "e,f", "{g}", "NULL", "звонок", "tab\there"]
    with telephony.Session() as session:
        record_calls(session, [call(external_id) for external_id in odd], config=CONFIG)
        session.commit()
        assert sorted(session.scalars(select(Call.external_id))) == sorted(odd)
        assert session.scalar(select(func.count()).select_from(Call).where(
            Call.calling == "74951110000")) == len(odd)


def test_copy_keeps_tabs_newlines_and_backslashes_of_ids(telephony):
    """PostgreSQL gets the calls by COPY: what its text format would read
    as a delimiter, an end of row, an escape or NULL arrives as given."""
    odd = ["\\N", "x\\Ny", "new\nline", "cr\rlf", "two\t\ttabs", "back\\slash\\", "\\."]
    with telephony.Session() as session:
        result = record_calls(session, [call(external_id) for external_id in odd] +
                              [call("plain")], config=CONFIG)
        session.commit()
        assert result.inserted == len(odd) + 1
        assert sorted(session.scalars(select(Call.external_id))) == sorted(odd + ["plain"])
        assert record_calls(session, [call(external_id) for external_id in odd],
                            config=CONFIG).duplicates == len(odd)


def test_an_entrys_calls_are_found_by_its_key(telephony):
    from rating.telephony import calls_of_entries
    with telephony.Session() as session:
        record_calls(session, [call(f"k{i}", called="810442071234567",
                                    start=NOON + dt.timedelta(hours=10 * i)) for i in range(6)],
                     config=CONFIG)
        session.commit()
        keys = set(session.scalars(select(LedgerEntry.idempotency_key)))
        assert len(keys) == 3  # two calls a day, 7 to 9 Dec in Moscow
        expected = {(c.id, c.ledger_key) for c in session.scalars(select(Call))}
        assert {(c.id, c.ledger_key) for c in calls_of_entries(session, keys)} == expected
        one = sorted(keys)[0]
        assert {c.ledger_key for c in calls_of_entries(session, [one, "call:x:y:z"])} == {one}
