"""The CDR import by columns (rating.cdr_columns) against the per-record
reference (record_calls): random Asterisk files imported both ways into the
same database give the same calls, the same ledger entries, balances and
package seconds, to the kopeck; odd records send their batch the
reference way and change nothing of the result."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal

import pytest
from sqlalchemy import select

from rating import cdr, ledger, phones
from rating.accounts import create_account
from rating.models import Account, Call, LedgerEntry, VoiceAllowance
from rating.telephony import Config, NumberRules, Rate

# Berlin: the local times cross the end of summer time (25 Oct 2026,
# 03:00 -> 02:00), so an hour's offset is looked up from the record.
CONFIG = Config(NumberRules(), "Europe/Berlin")
OURS = ["74951110000", "74951110001", "74951110002", "74951110003", "74992220000",
        "78122220001"]
LOGINS = {"74951110002": "anna", "78122220001": "boris"}


def make_rates(rng: random.Random) -> list[Rate]:
    prefixes = {"7", "7495", "7499", "79", "44", "4420", "1", "0", "0049"}
    while len(prefixes) < 60:
        prefixes.add(str(rng.randint(1, 99)) + str(rng.randint(0, 10 ** rng.randint(1, 5))))
    return [Rate(p, rng.choice(["Moscow", "Russia", "Mobile", "World", "Back\\slash"]),
                 Decimal(rng.randint(0, 3000)) / 100,
                 Decimal(rng.randint(0, 50)) / 100 if rng.random() < 0.4 else None,
                 *rng.choice([(60, 60), (30, 6), (1, 1), (10, 7)]),
                 Decimal(rng.randint(1, 99)) / 100 if rng.random() < 0.3 else Decimal("0.00"))
            for p in sorted(prefixes)]


def a_number(rng: random.Random) -> str:
    own = rng.choice(OURS)
    return rng.choice([
        "8" + own[1:], own, "+" + own, "+7 (495) 111-00-0" + own[-1], own[-7:],
        own[1:], "8495" + str(rng.randint(1000000, 9999999)),
        "810" + str(rng.randint(1, 99)) + str(rng.randint(10 ** 8, 10 ** 9)),
        "00" + str(rng.randint(1, 99)) + str(rng.randint(10 ** 6, 10 ** 9)),
        "112", "0", "s", "", "sip:" + "8" + own[1:] + "@pbx", "12345678901234567890",
        str(rng.randint(1, 10 ** 17)), "٣٣٣", rng.choice(["79", "7", "44207"]) +
        str(rng.randint(0, 10 ** 8))])


def write_file(path, rng: random.Random, count: int, *, odd: bool) -> None:
    begin = dt.datetime(2026, 10, 24, 22)
    lines = []
    for i in range(count):
        when = begin + dt.timedelta(seconds=rng.randint(0, 3 * 86400))
        disposition = rng.choice(["ANSWERED", "ANSWERED", "ANSWERED", "NO ANSWER", "BUSY",
                                  "FAILED", "CONGESTION", "answered "])
        billsec = rng.choice([0, 1, 5, 29, 30, 31, 59, 60, 61, 119, 600, rng.randint(1, 4000)])
        answer = (when + dt.timedelta(seconds=2)).strftime("%Y-%m-%d %H:%M:%S") \
            if billsec or rng.random() < 0.2 else ""
        end = (when + dt.timedelta(seconds=2 + billsec)).strftime("%Y-%m-%d %H:%M:%S")
        calling = a_number(rng)
        account = LOGINS.get(calling[-11:], "") if rng.random() < 0.3 else ""
        unique = rng.choice([f"u{i}", f"u{i}", f"u{i}", f"u{rng.randint(0, i + 1)}", "", " ",
                             f"u{i}\\x", f"u\t{i}"])  # COPY escapes a backslash, a tab
        lines.append(
            f'"{account}","{calling}","{a_number(rng)}","ctx","","SIP/{i % 7}","SIP/t",'
            f'"Dial","x","{when:%Y-%m-%d %H:%M:%S}","{answer}","{end}",{billsec + 2},'
            f'{billsec},"{disposition}","DOCUMENTATION","{unique}",""\n')
        if rng.random() < 0.01:
            lines.append("\n")
    if odd:
        # Each of these takes its batch the per-record way.
        at = rng.randrange(len(lines))
        lines[at] = lines[at].replace('"ANSWERED"', '"ANSWERED"', 1).replace(
            ',"ctx",', ',"ctx",', 1).replace(f',"{begin:%Y}-', f',"{begin:%Y}-', 1)
        lines.insert(rng.randrange(len(lines)),
                     '"","84951110000","84952223344","ctx","","SIP/x","","Dial","",'
                     '"2026-10-25T09:00:00","","2026-10-25 09:01:00",60,60,"ANSWERED",'
                     '"DOCUMENTATION","odd-time",""\n')
        lines.insert(rng.randrange(len(lines)),
                     '"","84951110000","84952223344","ctx","","SIP/x","","Dial","",'
                     '"2026-10-25 10:00:00","","2026-10-25 10:01:00",60,60,"ANSWERED",'
                     '"DOCUMENTATION"\n')
    path.write_text("".join(lines))


@pytest.fixture
def plans(ctx):
    rng = random.Random(5)
    with ctx.Session() as session:
        phones.save_plan(session, "Home", free_minutes=7, free_zones=["Moscow", "Mobile"],
                         offpeak="22-7", weekend_offpeak=True, onnet_free=False, actor="test")
        phones.save_plan(session, "Office", free_minutes=0, offpeak="20-8", onnet_free=True,
                         actor="test")
        phones.save_plan(session, "Flat", free_minutes=3, actor="test")
        for name in ("Home", "Office", "Flat"):
            phones.import_rates(session, name, make_rates(rng), actor="test")
        for i, number in enumerate(OURS):
            account = create_account(session, number=f"C{i // 2}{i}", name="Caller")
            account.credit_limit = Decimal("50.00")
            phones.add_phone(session, account, number=number, login=LOGINS.get(number),
                             plan_name=("Home", "Office", "Flat")[i % 3], config=CONFIG,
                             actor="test")
        session.commit()
    return ctx


def outcome(session) -> dict:
    """Everything an import leaves, without ids, creation times and the
    batch part of the entries' keys."""
    calls = [tuple(getattr(c, column.name) for column in Call.__table__.columns
                   if column.name not in ("id", "created_at", "ledger_key"))
             + ((c.ledger_key or "").rsplit(":", 1)[0],)
             for c in session.scalars(select(Call).order_by(Call.source, Call.external_id))]
    entries = sorted((e.account_id, e.amount, e.kind, e.idempotency_key.rsplit(":", 1)[0],
                      e.memo, e.memo_code, repr(e.memo_args))
                     for e in session.scalars(select(LedgerEntry)))
    balances = session.execute(select(Account.id, Account.balance, Account.profile)
                               .order_by(Account.id)).all()
    used = session.execute(select(VoiceAllowance.service_id, VoiceAllowance.month,
                                  VoiceAllowance.used_seconds)
                           .order_by(VoiceAllowance.service_id, VoiceAllowance.month)).all()
    assert ledger.balance_mismatches(session) == []
    return dict(calls=calls, entries=entries, balances=balances, used=used)


def import_both_ways(ctx, path, batch: int):
    results = {}
    for by_columns in (False, True):
        with ctx.Session() as session:
            report = cdr.import_cdrs(session, str(path), "asterisk", config=CONFIG, batch=batch,
                                     by_columns=by_columns)
            results[by_columns] = (report, outcome(session))
            session.rollback()
    return results


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_columns_give_what_the_reference_gives(plans, tmp_path, seed):
    rng = random.Random(seed)
    path = tmp_path / "Master.csv"
    write_file(path, rng, 700, odd=False)
    results = import_both_ways(plans, path, batch=rng.choice([90, 250, 1000]))
    (reference, expected), (columns, got) = results[False], results[True]
    assert columns.by_columns == columns.records > 0 and reference.by_columns == 0
    assert len(expected["calls"]) > 500 and len(expected["entries"]) > 5
    reason = [c.name for c in Call.__table__.columns
              if c.name not in ("id", "created_at", "ledger_key")].index("reason")
    assert {c[reason] for c in expected["calls"]} >= {"package", "rated", "unanswered", "own",
                                                  "incoming", "no_rate"}
    assert got == expected
    assert columns.as_dict() == reference.as_dict()


def test_odd_records_take_their_batch_the_reference_way(plans, tmp_path):
    rng = random.Random(9)
    path = tmp_path / "Master.csv"
    write_file(path, rng, 600, odd=True)
    results = import_both_ways(plans, path, batch=100)
    (reference, expected), (columns, got) = results[False], results[True]
    assert 0 < columns.by_columns < columns.records
    assert got == expected
    assert columns.as_dict() == reference.as_dict()


def test_a_file_imported_again_adds_nothing(plans, tmp_path):
    path = tmp_path / "Master.csv"
    write_file(path, random.Random(4), 300, odd=False)
    with plans.Session() as session:
        first = cdr.import_cdrs(session, str(path), "asterisk", config=CONFIG, batch=120)
        session.commit()
        before = outcome(session)
        again = cdr.import_cdrs(session, str(path), "asterisk", config=CONFIG, batch=120)
        session.commit()
        assert again.by_columns == again.records == first.records
        assert (again.inserted, again.entries, again.charged) == (0, 0, Decimal("0.00"))
        assert again.duplicates == first.records
        assert outcome(session) == before


def test_a_bad_line_stores_nothing_and_names_its_number(plans, tmp_path):
    path = tmp_path / "Master.csv"
    write_file(path, random.Random(6), 250, odd=False)
    lines = path.read_text().splitlines(keepends=True)
    lines.insert(200, lines[10].replace('"ANSWERED"', '"MAYBE"').replace('"NO ANSWER"', '"MAYBE"')
                 .replace('"BUSY"', '"MAYBE"').replace('"FAILED"', '"MAYBE"')
                 .replace('"CONGESTION"', '"MAYBE"').replace('"answered "', '"MAYBE"'))
    path.write_text("".join(lines))
    messages = []
    for by_columns in (False, True):
        with plans.Session() as session:
            with pytest.raises(cdr.LineError) as raised:
                cdr.import_cdrs(session, str(path), "asterisk", config=CONFIG, batch=100,
                                by_columns=by_columns)
            session.rollback()
            messages.append(str(raised.value))
            assert session.scalar(select(Call.id)) is None
    assert "MAYBE" in messages[0] and messages[1] == messages[0]


def test_a_file_not_in_utf8_stores_nothing(plans, tmp_path):
    path = tmp_path / "Master.csv"
    write_file(path, random.Random(7), 300, odd=False)
    path.write_bytes(path.read_bytes() + b'"","8495\xff","1","c","","S","","D","",'
                     b'"2026-10-25 10:00:00","","2026-10-25 10:01:00",60,60,"ANSWERED",'
                     b'"DOCUMENTATION","bad",""\n')
    with plans.Session() as session:
        with pytest.raises(cdr.DomainError, match="not UTF-8"):
            cdr.import_cdrs(session, str(path), "asterisk", config=CONFIG, batch=100)
        session.rollback()
        assert session.scalar(select(Call.id)) is None


def test_numbers_normalised_in_columns_as_one_at_a_time():
    from rating.cdr_columns import key_of, normalise_column
    from rating.telephony import normalise
    rng = random.Random(3)
    raws = [a_number(rng) for _ in range(3000)] + [
        "81044", "8104412345678", "0044", "00441234567", "84951234567", "74951234567",
        "4951234567", "1234567", "123456", "007", "7", "8", "", "00000000000"]
    for rules in (NumberRules(), NumberRules("1", "1", 10, "011", "212", 7),
                  NumberRules("49", "0", 10, "00", "30", 0),
                  NumberRules("7", "", 10, "", "495", 7)):
        strings, keys = normalise_column(raws, rules, {})
        assert strings == [normalise(raw, rules)[:32] for raw in raws]
        assert keys.tolist() == [key_of(s) for s in strings]


def test_times_written_for_copy_as_numpy_writes_them():
    import numpy as np
    from rating.cdr_columns import _time_text
    rng = np.random.default_rng(8)
    seconds = rng.integers(-10 ** 9, 4 * 10 ** 9, 20000)
    values = seconds.astype("datetime64[s]")
    values[::13] = np.datetime64("NaT")
    expected = [r"\N" if text == "NaT" else text.replace("T", " ")
                for text in np.datetime_as_string(values, unit="s").tolist()]
    assert _time_text(values) == expected
