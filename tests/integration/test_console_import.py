"""`abonent import` from generated Ubilling-like and ABillS-like exports,
through the installed executable, on SQLite and PostgreSQL.

Each file carries deliberate faults (a login twice, an address that is not
one, an unknown tariff, amounts that are not amounts) next to legitimate
negative balances: the dry run lists exactly the faulty rows and writes
nothing; the default run imports nothing; --skip-bad imports the rest; a
second run of every file changes nothing. The database is read back each
time.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import text

from rating import accounts as acc
from tests.conftest import make_context

ROOT = Path(__file__).resolve().parents[2]
UBILLING = ROOT / "contrib" / "import" / "ubilling.toml"
ABILLS = ROOT / "contrib" / "import" / "abills.toml"
TABLES = ("accounts", "services", "ledger_entries", "operation_log", "tariffs")


def js(result) -> dict:
    return json.loads(result.stdout)


def write(path: Path, rows: list[list[str]], delimiter: str, encoding: str) -> Path:
    path.write_bytes("\r\n".join(delimiter.join(row) for row in rows).encode(encoding) + b"\r\n")
    return path


@pytest.fixture
def run(abonent_exe, db_url):
    """The executable against a database with the tariffs Home and Fast."""
    context = make_context(db_url)
    with context.Session() as session:
        for name in ("Home", "Fast"):
            acc.create_tariff(session, name=name, fee="600", rate_down_kbps=100000,
                              rate_up_kbps=50000, negative_rate_kbps=1000)
        session.commit()
    context.dispose()
    abonent_exe.url = db_url
    return abonent_exe


def snapshot(run) -> dict:
    context = make_context(run.url)
    with context.engine.connect() as conn:
        rows = {t: [tuple(r) for r in conn.execute(text(f"SELECT * FROM {t} ORDER BY 1"))]
                for t in TABLES}
    context.dispose()
    return rows


def read(run, sql: str) -> list[tuple]:
    context = make_context(run.url)
    with context.engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(text(sql))]
    context.dispose()
    return rows


def faulty_lines(result) -> list[int]:
    return sorted({p["line"] for p in js(result)["problems"]})


def check_kind(run, kind: str, path: Path, mapping: Path, bad: list[int], good: int,
               default_run: bool = False) -> dict:
    """Dry run: exactly ``bad`` refused, nothing written; (default run:
    nothing imported, exit 2); --skip-bad: ``good`` imported; again:
    nothing changes."""
    before = snapshot(run)
    dry = run("import", kind, path, "--mapping", mapping, "--dry-run", "--json",
              code=2 if bad else 0)
    assert faulty_lines(dry) == bad, js(dry)["problems"]
    assert js(dry)["would_import"] == good
    if bad:
        assert "dry run, nothing was written" in dry.stderr
    if default_run and bad:
        refused = run("import", kind, path, "--mapping", mapping, "--json", code=2)
        assert faulty_lines(refused) == bad
        assert "nothing was imported" in refused.stderr
    assert snapshot(run) == before
    done = run("import", kind, path, "--mapping", mapping, "--skip-bad", "--json")
    report = js(done)
    assert (report["imported"], report["refused"], report["written"]) == (good, len(bad),
                                                                          good > 0)
    after = snapshot(run)
    again = run("import", kind, path, "--mapping", mapping, "--skip-bad")
    assert f"0 imported, {good} already present, {len(bad)} refused; nothing changed" \
        in again.stdout
    assert snapshot(run) == after
    return report


def ubilling_files(tmp_path: Path) -> tuple[Path, Path]:
    users = write(tmp_path / "ubilling_users.csv", [
        "contract login Password realname Tariff Cash Credit IP mac mobile email Passive".split(),
        # 2: fine
        ["1001", "ivanov", "pw1001", "Иванов Иван", "Home", "250.00", "0", "10.10.0.2",
         "00:11:22:33:44:02", "+79120000002", "ivanov@example.ru", "0"],
        # 3: a debt brought over: legitimate
        ["1002", "petrov", "pw1002", "Петров Пётр", "Home", "-150.50", "100", "10.10.0.3",
         "", "89120000003", "", "0"],
        # 4: unknown tariff (so no account, so its service and balance fail too)
        ["1003", "sidorov", "pw1003", "Сидоров", "Ghost", "10", "0", "10.10.0.4", "", "", "",
         "0"],
        # 5: frozen; an address that is not one; a balance with 3 decimals
        ["1004", "kuznetsov", "pw1004", "Кузнецов", "Fast", "12.345", "0", "10.10.0.256", "",
         "", "", "1"],
        # 6: the login of line 2 again
        ["1005", "ivanov", "pw1005", "Иванова Анна", "Home", "0", "0", "10.10.0.6", "", "",
         "", "0"],
        # 7: no tariff, no address (a pool later)
        ["1006", "smirnov", "pw1006", "Смирнов", "*_NO_TARIFF_*", "300", "0", "", "", "", "",
         "0"],
        # 8: not a phone number
        ["1007", "popov", "pw1007", "Попов", "Home", "75.5", "0", "10.10.0.8", "",
         "not a phone", "", "0"],
        # 9: negative, legitimate
        ["1008", "volkov", "pw1008", "Волков", "Fast", "-20", "0", "10.10.0.9", "", "", "",
         "0"],
    ], ";", "cp1251")
    payments = write(tmp_path / "ubilling_payments.csv", [
        "contract id date summ note".split(),
        ["1001", "501", "2026-11-01 10:00:00", "500", "Оплата"],          # 2: id again on 5
        ["1002", "502", "2026-11-02 11:00:00", "1e3", ""],                # 3: not an amount
        ["1002", "503", "2026-11-03 12:00:00", "300", "Сбербанк"],        # 4: fine
        ["1001", "501", "2026-11-04 12:00:00", "100", ""],                # 5: id of line 2
        ["9999", "504", "2026-11-05 12:00:00", "100", ""],                # 6: no such account
        ["1005", "505", "05.11.2026", "100", ""],                         # 7: not a date
        ["1006", "506", "2026-11-06 09:30:00", "250", ""],                # 8: fine
    ], ";", "cp1251")
    return users, payments


def test_ubilling_export(run, tmp_path):
    users, payments = ubilling_files(tmp_path)
    check_kind(run, "accounts", users, UBILLING, bad=[4, 8], good=6, default_run=True)
    check_kind(run, "services", users, UBILLING, bad=[2, 4, 5, 6, 8], good=3)
    check_kind(run, "balances", users, UBILLING, bad=[4, 5, 8], good=5)
    check_kind(run, "payments", payments, UBILLING, bad=[2, 3, 5, 6, 7], good=2)

    accounts = {number: (name, state, balance) for number, name, state, balance in read(
        run, "SELECT number, name, state, balance FROM accounts")}
    assert set(accounts) == {"1001", "1002", "1004", "1005", "1006", "1008"}
    assert accounts["1004"][1] == "frozen" and accounts["1001"][0] == "Иванов Иван"
    balances = {n: run("account", "show", n, "--json") for n in ("1001", "1002", "1006", "1008")}
    assert {n: js(r)["balance"] for n, r in balances.items()} == {
        "1001": "250.00", "1002": "149.50", "1006": "550.00", "1008": "-20.00"}
    assert js(balances["1006"])["tariff"] is None
    assert [s["login"] for s in js(balances["1002"])["services"]] == ["petrov"]
    # The payment keeps the time it was paid (Moscow time, stored in UTC).
    paid_at = read(run, "SELECT created_at FROM ledger_entries "
                        "WHERE idempotency_key = 'payment:ubilling:503'")[0][0]
    assert str(paid_at).startswith("2026-11-03 09:00:00")
    # Every imported row has its line in the audit log, by the actor.
    actions = dict(read(run, "SELECT action, count(*) FROM operation_log "
                             "WHERE actor = 'admin:test' GROUP BY action"))
    assert (actions["account.import"], actions["service.import"], actions["balance.import"],
            actions["payment.import"]) == (6, 3, 5, 2)
    assert actions["import.accounts"] == 1


def abills_files(tmp_path: Path) -> tuple[Path, Path]:
    header = "uid id fio phone email deposit credit tp_name ip cid password disable company_id"
    users = write(tmp_path / "abills_users.tsv", [
        header.split(),
        ["1", "alpha", "Альфа Сергей", "+7 495 123-45-67", "a@example.com", "100.00", "0",
         "Home", "10.20.0.1", "aa:bb:cc:00:00:01", "pa1", "0", "0"],
        # 3: a company in debt (legitimate), on a pool, no MAC binding
        ["2", "beta", "ООО Бета", "+7 495 123-45-68", "", "-500.00", "1000", "Fast", "0.0.0.0",
         "ANY", "pa2", "0", "7"],
        # 4: unknown tariff
        ["3", "gamma", "Гамма", "", "", "50", "0", "Unknown", "10.20.0.3", "", "pa3", "0", "0"],
        # 5: the login of line 2
        ["4", "alpha", "Дубль", "", "", "10", "0", "Home", "10.20.0.4", "", "pa4", "0", "0"],
        # 6: disabled; an address that is not one; an exponent for an amount
        ["5", "delta", "Дельта", "", "", "1e3", "0", "Home", "10.20.0.300", "", "pa5", "1",
         "0"],
        # 7: not an e-mail address
        ["6", "epsilon", "Эпсилон", "", "nobody", "5", "0", "Home", "10.20.0.6", "", "pa6",
         "0", "0"],
        # 8 and 9: one MAC twice
        ["7", "zeta", "Зета", "", "", "0.5", "0", "Home", "10.20.0.7", "AA-BB-CC-00-00-07",
         "pa7", "3", "0"],
        ["8", "eta", "Эта", "", "", "-0.01", "0", "Home", "10.20.0.8", "aa:bb:cc:00:00:07",
         "pa8", "0", "0"],
    ], "\t", "utf-8")
    payments = write(tmp_path / "abills_payments.tsv", [
        "uid id date sum dsc".split(),
        ["1", "9001", "2026-11-10 10:00:00", "150.00", "Cash"],
        ["2", "9002", "2026-11-11 10:00:00", "-10", ""],                  # 3: not a payment
        ["2", "9003", "2026-11-12 10:00:00", "2000.00", "Bank\u0007"],    # 4: control char
        ["2", "9004", "2026-11-12 11:00:00", "2000.00", "Bank"],
    ], "\t", "utf-8")
    return users, payments


def test_abills_export(run, tmp_path):
    users, payments = abills_files(tmp_path)
    check_kind(run, "accounts", users, ABILLS, bad=[4, 7], good=6)
    check_kind(run, "services", users, ABILLS, bad=[2, 4, 5, 6, 7, 8, 9], good=1)
    check_kind(run, "balances", users, ABILLS, bad=[4, 6, 7], good=5)
    check_kind(run, "payments", payments, ABILLS, bad=[3, 4], good=2)
    beta = js(run("account", "show", "2", "--json"))
    assert (beta["kind"], beta["balance"], beta["credit_limit"]) == ("company", "1500.00",
                                                                     "1000.00")
    assert beta["services"][0]["static_ipv4"] is None and beta["services"][0]["mac"] is None
    states = dict(read(run, "SELECT number, state FROM accounts"))
    assert (states["1"], states["5"], states["7"]) == ("active", "frozen", "frozen")
    # A debt of one kopeck past a zero credit limit suspends: the ladder ran.
    eta = js(run("account", "show", "8", "--json"))
    assert (eta["balance"], eta["profile"]) == ("-0.01", "suspended")


def test_a_later_file_may_not_change_what_was_imported(run, tmp_path):
    accounts = write(tmp_path / "a.csv", [["number", "name"], ["1", "Ivan"]], ",", "utf-8")
    run("import", "accounts", accounts)
    first = write(tmp_path / "b1.csv", [["account", "amount"], ["1", "-100"]], ",", "utf-8")
    run("import", "balances", first)
    # The same account's opening balance, re-exported with another amount:
    # refused, not added a second time.
    second = write(tmp_path / "b2.csv", [["account", "amount"], ["1", "-90"]], ",", "utf-8")
    refused = run("import", "balances", second, "--json", code=2)
    assert "already imported for account 1 with another amount (-100.00)" in \
        js(refused)["problems"][0]["message"]
    payment = write(tmp_path / "p.csv", [["account", "amount", "external_id"],
                                         ["1", "100", "tx-1"]], ",", "utf-8")
    run("import", "payments", payment)
    # The same payment id from a payment already added by hand or by a provider.
    again = write(tmp_path / "p2.csv", [["account", "amount", "external_id"],
                                        ["1", "150", "tx-1"]], ",", "utf-8")
    run("import", "payments", again, code=2)
    assert read(run, "SELECT balance FROM accounts")[0][0] in (Decimal("0.00"), 0)


@pytest.mark.parametrize("content, mapping, message", [
    # More cases of a file or a mapping refused whole: tests/unit/test_import_rows.py.
    ("number,name,emial\n1,Ivan,x\n", None, "unknown column 'emial'"),
    ("contract;realname\n1;Ivan\n", UBILLING, "column 'tariff' named in"),
    ("number,name\n1,Ivan\n", "bad", "not valid TOML"),
])
def test_a_file_that_cannot_be_read_is_refused_whole(run, tmp_path, content, mapping, message):
    path = tmp_path / "in.csv"
    path.write_text(content, encoding="utf-8")
    args = ["import", "accounts", path]
    if isinstance(mapping, str):
        (tmp_path / "m.toml").write_text(mapping)
        mapping = tmp_path / "m.toml"
    if mapping is not None:
        args += ["--mapping", mapping]
    before = snapshot(run)
    refused = run(*args, code=2)
    assert message in refused.stderr
    assert snapshot(run) == before


def test_a_cp1251_file_read_as_utf8_is_refused(run, tmp_path):
    path = tmp_path / "in.csv"
    path.write_bytes("number,name\n1,Иван\n".encode("cp1251"))
    refused = run("import", "accounts", path, code=2)
    assert "is not utf-8-sig text" in refused.stderr and "encoding" in refused.stderr
    run("import", "accounts", path, "--help")


def test_imported_accounts_are_found_by_name_and_phone(abonent_exe, db_url, tmp_path):
    """The bulk import skips ORM events; the search keys are filled anyway."""
    from tests.conftest import make_context
    from rating import accounts as acc
    context = make_context(db_url)
    with context.Session() as session:
        acc.create_tariff(session, name="Home", fee="600", rate_down_kbps=100000,
                          rate_up_kbps=50000)
        session.commit()
    context.dispose()
    csv_file = tmp_path / "accounts.csv"
    csv_file.write_text("number,name,tariff,phone\n"
                        "7001,Пётр Сидоров,Home,+7 (912) 345-67-89\n", encoding="utf-8")
    abonent_exe("import", "accounts", csv_file)
    found = abonent_exe("account", "find", "сидоров", "--json").stdout
    assert "7001" in found
    found = abonent_exe("account", "find", "89123456789", "--json").stdout
    assert "7001" in found
