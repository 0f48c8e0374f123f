"""`abonent payment statement import|unmatched|assign`: 1C client-bank
statements against the database (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from rating.bank_statement import StatementLine
from rating.models import Account, LedgerEntry
from rating.payments import ProviderPayment
from tests.factories import make_account

OURS = "40702810900000000001"


def document(number, amount, purpose, *, date="05.12.2026", inn="7701234567",
             payer="ООО \"Ромашка\"", to=OURS, payer_account="40702810100000000777"):
    return "\n".join([
        "СекцияДокумент=Платежное поручение",
        f"Номер={number}",
        f"Дата={date}",
        f"Сумма={amount}",
        f"ПлательщикСчет={payer_account}",
        f"Плательщик=ИНН {inn} {payer}",
        f"ПлательщикИНН={inn}",
        f"Плательщик1={payer}",
        "ПлательщикКПП=770101001",
        f"ПолучательСчет={to}",
        "Получатель=ИНН 7709876543 ООО \"Провайдер\"",
        "ПолучательИНН=7709876543",
        f"ДатаПоступило={date}",
        "ВидОплаты=01",
        "Очередность=5",
        f"НазначениеПлатежа={purpose}",
        "КонецДокумента",
    ])


def statement(*documents, account=OURS):
    return "\n".join([
        "1CClientBankExchange",
        "ВерсияФормата=1.03",
        "Кодировка=Windows",
        "Отправитель=Бухгалтерия предприятия",
        "Получатель=",
        "ДатаСоздания=06.12.2026",
        "ВремяСоздания=09:00:00",
        "ДатаНачала=05.12.2026",
        "ДатаКонца=05.12.2026",
        f"РасчСчет={account}",
        "Документ=Платежное поручение",
        "СекцияРасчСчет",
        "ДатаНачала=05.12.2026",
        "ДатаКонца=05.12.2026",
        f"РасчСчет={account}",
        "НачальныйОстаток=0.00",
        "ВсегоПоступило=0.00",
        "ВсегоСписано=0.00",
        "КонечныйОстаток=0.00",
        "КонецРасчСчет",
        *documents,
        "КонецФайла",
    ]) + "\n"


@pytest.fixture
def companies(ctx):
    with ctx.Session() as session:
        make_account(session, number="100002", kind="company", name="ООО Ромашка")
        make_account(session, number="100003", kind="company", name="ИП Петров")
        session.commit()
    return ctx


def write(tmp_path, text, encoding="cp1251", name="kl_to_1c.txt"):
    path = tmp_path / name
    path.write_bytes(text.replace("\n", "\r\n").encode(encoding))
    return str(path)


def balances(ctx):
    with ctx.Session() as session:
        return dict(session.execute(select(Account.number, Account.balance)).all())


def counts(ctx):
    with ctx.Session() as session:
        return tuple(session.scalar(select(func.count()).select_from(table))
                     for table in (LedgerEntry, ProviderPayment, StatementLine))


SAMPLE = statement(
    document("101", "15000.00", "Оплата по договору № 100002 от 01.11.2026 за услуги связи. "
                                "НДС не облагается"),
    document("102", "2400.50", "Оплата услуг интернета, л/с 100003, без НДС", inn="500100732259"),
    document("103", "999.00", "Оплата по счету 17 от 01.12.2026"),            # no reference
    document("104", "500.00", "Аванс по договору 777777"),                    # not ours
    document("55", "1200.00", "Оплата аренды", to="40702810100000000777",    # our own
             payer_account=OURS),                                            # outgoing
)


def test_import_credits_matched_lines_and_keeps_the_rest(companies, abonent, tmp_path):
    before = balances(companies)
    path = write(tmp_path, SAMPLE)
    result = json.loads(abonent("payment", "statement", "import", path, "--our-account", OURS,
                                "--json").stdout)
    assert result["encoding"] == "cp1251"
    assert result["documents"] == 5 and result["outgoing"] == 1
    assert [(m["number"], m["account"], m["amount"]) for m in result["matched"]] == \
        [("101", "100002", "15000.00"), ("102", "100003", "2400.50")]
    assert [u["number"] for u in result["unmatched"]] == ["103", "104"]
    assert result["credited"] == "17400.50"
    after = balances(companies)
    assert after["100002"] - before["100002"] == Decimal("15000.00")
    assert after["100003"] - before["100003"] == Decimal("2400.50")
    with companies.Session() as session:
        shown = session.scalars(select(ProviderPayment).where(ProviderPayment.provider == "bank")
                                .order_by(ProviderPayment.id)).all()
        assert [(p.status, p.amount) for p in shown] == [("paid", Decimal("15000.00")),
                                                         ("paid", Decimal("2400.50"))]
        entry = session.get(LedgerEntry, shown[0].entry_id)
        assert entry.idempotency_key.startswith("payment:bank:stmt-")
        assert "№ 101" in entry.memo and "7701234567" in entry.memo
    listed = json.loads(abonent("payment", "statement", "unmatched", "--json").stdout)
    assert [(u["number"], u["amount"], u["payer"]) for u in listed] == \
        [("103", "999.00", 'ООО "Ромашка"'), ("104", "500.00", 'ООО "Ромашка"')]


def test_a_repeated_import_credits_nothing_again(companies, abonent, tmp_path):
    path = write(tmp_path, SAMPLE)
    abonent("payment", "statement", "import", path, "--our-account", OURS, code=0)
    after_first = (balances(companies), counts(companies))
    again = json.loads(abonent("payment", "statement", "import", path, "--our-account", OURS,
                               "--json").stdout)
    assert again["repeated"] == 4 and again["matched"] == [] and again["unmatched"] == []
    # The next day's statement repeats one order and adds one.
    path = write(tmp_path, statement(document("101", "15000.00", "Оплата по договору № 100002"),
                                     document("106", "300.00", "Оплата л/с 100002",
                                              date="06.12.2026")), encoding="utf-8",
                 name="next.txt")
    result = json.loads(abonent("payment", "statement", "import", path, "--our-account", OURS,
                                "--json").stdout)
    assert result["encoding"] == "utf-8" and result["repeated"] == 1
    assert [m["number"] for m in result["matched"]] == ["106"]
    assert balances(companies)["100002"] == after_first[0]["100002"] + Decimal("300.00")


def test_the_setting_names_our_account(companies, abonent, tmp_path, monkeypatch):
    path = write(tmp_path, SAMPLE)
    result = abonent("payment", "statement", "import", path, code=2)
    assert "bank.account" in result.stderr
    monkeypatch.setenv("ABONENT_BANK_ACCOUNT", OURS)
    abonent("payment", "statement", "import", path, code=0)
    assert balances(companies)["100003"] >= Decimal("2400.50")


def test_an_operator_assigns_an_unmatched_line_once(companies, abonent, tmp_path):
    path = write(tmp_path, SAMPLE)
    abonent("payment", "statement", "import", path, "--our-account", OURS, code=0)
    line = json.loads(abonent("payment", "statement", "unmatched", "--json").stdout)[0]
    before = balances(companies)
    assigned = json.loads(abonent("payment", "statement", "assign", str(line["id"]), "100003",
                                  "--json").stdout)
    assert assigned["status"] == "assigned" and assigned["account"] == "100003"
    assert balances(companies)["100003"] == before["100003"] + Decimal("999.00")
    state = counts(companies)
    again = abonent("payment", "statement", "assign", str(line["id"]), "100002", code=2)
    assert "already credited to account 100003" in again.stderr
    assert "does not exist" in abonent("payment", "statement", "assign", "999999", "100002",
                                       code=2).stderr
    remaining = json.loads(abonent("payment", "statement", "unmatched", "--json").stdout)
    assert "does not exist" in abonent("payment", "statement", "assign",
                                       str(remaining[0]["id"]), "555555", code=2).stderr
    assert counts(companies) == state
    assert [r["number"] for r in remaining] == ["104"]
    # The assigned line stays credited after the file comes again.
    abonent("payment", "statement", "import", path, "--our-account", OURS, code=0)
    assert counts(companies) == state


@pytest.mark.parametrize("text, message", [
    ("not a statement\n", "not a 1C client-bank file"),
    (SAMPLE.replace("КонецФайла\n", ""), "without КонецФайла"),
    (SAMPLE.replace("Сумма=2400.50", "Сумма=2400.505"), "is not an amount"),
    (SAMPLE.replace("Сумма=2400.50", "Сумма=-2400.50"), "is not an amount"),
    (SAMPLE.replace("Дата=05.12.2026\nСумма=999.00", "Дата=35.12.2026\nСумма=999.00"),
     "not a date"),
    (SAMPLE.replace("КонецДокумента\nСекцияДокумент", "СекцияДокумент", 1),
     "before the section"),
    (SAMPLE.replace("Номер=103\n", "Номер=103\nгарбидж без равенства\n"), "Key=Value"),
    (SAMPLE.replace(f"РасчСчет={OURS}", "РасчСчет=40702810900000000999"),
     "the statement is for account"),
])
def test_a_malformed_file_is_refused_and_nothing_changes(companies, abonent, tmp_path, text,
                                                         message):
    before = (balances(companies), counts(companies))
    path = write(tmp_path, text)
    result = abonent("payment", "statement", "import", path, "--our-account", OURS, code=2)
    assert message in result.stderr, result.stderr
    assert (balances(companies), counts(companies)) == before


def test_a_dos_encoded_statement_is_read(companies, abonent, tmp_path):
    text = SAMPLE.replace("Кодировка=Windows", "Кодировка=DOS")
    path = write(tmp_path, text, encoding="cp866")
    result = json.loads(abonent("payment", "statement", "import", path, "--our-account", OURS,
                                "--json").stdout)
    assert result["encoding"] == "cp866" and len(result["matched"]) == 2
