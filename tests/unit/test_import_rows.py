"""The import's pure parts: a row checked alone, the mapping file, reading
a file, duplicates inside it. No database."""

from __future__ import annotations

import datetime as dt
import tomllib
from decimal import Decimal
from pathlib import Path

import pytest

from aaa.importer import SERVICES, check_service_row
from rating import importer
from rating.importer import (ACCOUNTS, BALANCES, PAYMENTS, FieldError, Options, Plan, Row,
                             check_account_row, check_balance_row, check_payment_row,
                             parse_mapping, parse_rows, refuse_duplicates)
from rating.validate import DomainError

KINDS = {"accounts": ACCOUNTS, "services": SERVICES, "balances": BALANCES,
         "payments": PAYMENTS}
CONTRIB = Path(__file__).resolve().parents[2] / "contrib" / "import"
OPTIONS = Options(timezone="Europe/Moscow", now=dt.datetime(2026, 12, 1, 12, 0))


def refused(check, values, options=OPTIONS) -> tuple[str, str]:
    with pytest.raises(FieldError) as caught:
        check(values, options)
    return caught.value.field, caught.value.message


def test_an_account_row_is_checked_like_account_add():
    ok = check_account_row({"number": "A-100", "name": " Иван ", "phone": "+7 912 345-67-89",
                            "credit_limit": "99,50"}, OPTIONS)
    assert ok["name"] == "Иван" and ok["phone"] == "+79123456789"
    assert ok["credit_limit"] == Decimal("99.50") and (ok["kind"], ok["state"]) == (
        "person", "active")
    assert refused(check_account_row, {"number": "1 2", "name": "x"})[0] == "number"
    assert refused(check_account_row, {"number": "1", "name": "x\ny"})[0] == "name"
    assert refused(check_account_row, {"number": "1", "name": None})[0] == "name"
    assert refused(check_account_row, {"number": "1", "name": "x" * 201})[0] == "name"
    assert refused(check_account_row, {"number": "1", "name": "x", "phone": "call me"})[0] \
        == "phone"
    assert refused(check_account_row, {"number": "1", "name": "x", "credit_limit": "-5"})[0] \
        == "credit_limit"
    assert refused(check_account_row, {"number": "1", "name": "x", "state": "gone"})[0] \
        == "state"


@pytest.mark.parametrize("amount, valid", [
    ("-150.50", True), ("0", True), ("1000000000", True), ("12.345", False), ("1e3", False),
    ("NaN", False), ("1000000000.01", False), ("", False), ("1 000", False),
])
def test_an_opening_balance_may_be_negative_but_must_be_an_amount(amount, valid):
    values = {"account": "1", "amount": amount or None}
    if valid:
        assert check_balance_row(values, OPTIONS)["amount"] == Decimal(amount)
    else:
        assert refused(check_balance_row, values)[0] == "amount"


def test_a_payment_needs_an_id_and_keeps_its_time_in_utc():
    ok = check_payment_row({"account": "1", "amount": "100", "external_id": "tx-1",
                            "paid_at": "2026-11-03 12:00:00"}, OPTIONS)
    assert ok["paid_at"] == dt.datetime(2026, 11, 3, 9, 0) and ok["provider"] == "import"
    with_offset = check_payment_row({"account": "1", "amount": "1", "external_id": "t",
                                     "paid_at": "2026-11-03T12:00:00+00:00"}, OPTIONS)
    assert with_offset["paid_at"] == dt.datetime(2026, 11, 3, 12, 0)
    russian = Options(timezone="Europe/Moscow", date_format="%d.%m.%Y %H:%M",
                      now=OPTIONS.now)
    assert check_payment_row({"account": "1", "amount": "1", "external_id": "t",
                              "paid_at": "03.11.2026 12:00"}, russian)["paid_at"] \
        == dt.datetime(2026, 11, 3, 9, 0)
    assert refused(check_payment_row, {"account": "1", "amount": "100"})[0] == "external_id"
    assert refused(check_payment_row, {"account": "1", "amount": "100",
                                       "external_id": "two words"})[0] == "external_id"
    assert refused(check_payment_row, {"account": "1", "amount": "-1",
                                       "external_id": "t"})[0] == "amount"
    assert refused(check_payment_row, {"account": "1", "amount": "1", "external_id": "t",
                                       "paid_at": "2027-01-01"}) == (
        "paid_at", "paid_at '2027-01-01' is in the future")
    assert refused(check_payment_row, {"account": "1", "amount": "1", "external_id": "t",
                                       "memo": "m" * 1001})[0] == "memo"


def test_a_service_row_is_checked_like_service_add():
    ok = check_service_row({"account": "1", "login": "ivan", "password": "pw",
                            "mac": "AA-BB-CC-00-00-01", "static_ip": "10.0.0.5"}, OPTIONS)
    assert (ok["kind"], ok["mac"], ok["static_ip"]) == ("pppoe", "aa:bb:cc:00:00:01",
                                                        "10.0.0.5")
    assert check_service_row({"account": "1", "mac": "aa:bb:cc:00:00:02"}, OPTIONS)["kind"] \
        == "ipoe"
    assert refused(check_service_row, {"account": "1", "login": "ivan"})[0] == "password"
    assert refused(check_service_row, {"account": "1", "login": "a b", "password": "p"})[0] \
        == "login"
    for address in ("10.0.0.256", "10.1", "::1", "10.0.0.1/24"):
        assert refused(check_service_row, {"account": "1", "login": "a", "password": "p",
                                           "static_ip": address})[0] == "static_ip"
    assert refused(check_service_row, {"account": "1", "mac": "not-a-mac"})[0] == "mac"
    assert refused(check_service_row, {"account": "1"})[0] == "mac"
    assert refused(check_service_row, {"account": "1", "login": "a", "password": "p",
                                       "ipv6_prefix": "2001:db8::1/56"})[0] == "ipv6_prefix"
    assert refused(check_service_row, {"account": "1", "login": "a", "password": "p",
                                       "static_ip": "10.0.0.1", "pool": "main"})[0] == "pool"


def test_every_row_sharing_a_unique_value_is_refused():
    checked = [(Row(line, {}), {"login": login, "mac": mac}) for line, login, mac in [
        (2, "a", None), (3, "b", "m1"), (4, "a", None), (5, "c", "m1"), (6, "d", None),
        (7, "a", None)]]
    plan = Plan(kind="services")
    rest = refuse_duplicates(checked, plan, ["login", "mac"])
    assert [row.line for row, _ in rest] == [6]
    messages = {p.line: (p.field, p.message) for p in plan.problems}
    assert messages[2] == ("login", "login 'a' also appears on lines 4, 7")
    assert messages[5] == ("mac", "mac 'm1' also appears on line 3")


def test_the_shipped_mappings_parse():
    for name in ("ubilling.toml", "abills.toml"):
        mapping = importer.load_mapping(CONTRIB / name, KINDS)
        assert set(mapping.kinds) == set(KINDS)
    assert importer.load_mapping(CONTRIB / "abills.toml", KINDS).delimiter == "\t"
    assert importer.load_mapping(CONTRIB / "ubilling.toml", KINDS).encoding == "cp1251"


@pytest.mark.parametrize("toml, message", [
    ("delimiter = ';;'", "delimiter must be one character"),
    ("encoding = 'klingon'", "unknown encoding"),
    ("speed = 1", "unknown key 'speed'"),
    ("[accounts]\ncolumns = { number = 'nummer' }", "'nummer', which is not one of"),
    ("[accounts]\ncolumns = { a = 'number', b = 'number' }", "two columns map to one field"),
    ("[accounts]\ncolumns = {}", "needs columns"),
    ("[accounts]\ncolumns = { a = 'number' }\nvalues = { state = 1 }", "must map their values"),
    ("[accounts]\ncolumns = { a = 'number' }\ndefaults = { color = 'red' }",
     "'color' is not one of"),
])
def test_a_bad_mapping_is_refused_with_a_sentence(toml, message):
    with pytest.raises(DomainError, match=message):
        parse_mapping(tomllib.loads(toml), KINDS)


def mapping(toml: str):
    return parse_mapping(tomllib.loads(toml), KINDS)


def test_a_mapping_renames_translates_and_fills_in():
    m = mapping("delimiter = ';'\n[accounts]\n"
                "columns = { Contract = 'number', FIO = 'name', Off = 'state', Co = 'kind' }\n"
                "defaults = { tariff = 'Home' }\n"
                "values = { state = { '0' = 'active', '1' = 'frozen' },"
                " kind = { '0' = 'person', '*' = 'company' } }\n")
    rows = parse_rows("contract;fio;off;co;ignored\n7;Иван;1;12;x\n\n8;Пётр;0;0;y\n9;short\n",
                      ACCOUNTS, m)
    assert [(r.line, r.values) for r in rows[:2]] == [
        (2, {"number": "7", "name": "Иван", "state": "frozen", "kind": "company",
             "tariff": "Home"}),
        (4, {"number": "8", "name": "Пётр", "state": "active", "kind": "person",
             "tariff": "Home"})]
    assert rows[2].line == 5 and "has 2 columns, the header 5" in rows[2].values[""]


def test_lines_are_counted_across_quoted_newlines():
    rows = parse_rows('number,name\n1,"two\nlines"\n2,Anna\n', ACCOUNTS, importer.Mapping())
    assert [r.line for r in rows] == [2, 4]


@pytest.mark.parametrize("content, message", [
    ("number,name,emial\n1,Ivan,x\n", "unknown column 'emial'"),
    ("number\n1\n", "accounts need the column name"),
    ("", "is empty"),
    ('number,name\n1,"Ivan\n', "not readable as CSV"),
    ("number,name,Name\n1,a,b\n", "appears twice in the header"),
])
def test_a_file_that_cannot_be_read_is_refused_whole(content, message):
    with pytest.raises(DomainError, match=message):
        parse_rows(content, ACCOUNTS, importer.Mapping())


def test_a_mapping_without_the_kind_is_refused():
    with pytest.raises(DomainError, match=r"has no \[accounts\] section"):
        parse_rows("a\n1\n", ACCOUNTS, mapping("[services]\ncolumns = { a = 'login' }"))
    with pytest.raises(DomainError, match="column 'tariff' named in"):
        parse_rows("contract;realname\n1;x\n", ACCOUNTS,
                   importer.load_mapping(CONTRIB / "ubilling.toml", KINDS))
