"""Pure parts of the agents' protocol, their registry and the 1C statement
parser: what they accept, what they refuse, and that arbitrary input only
ever gets a refusal, never a crash."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cabinet.osmp import render
from rating import agent_registry, bank_statement
from rating.agents import (Answer, OsmpRefusal, Result, mask_name, parse_account, parse_sum,
                           parse_txn_date, parse_txn_id)


@pytest.mark.parametrize("text, value", [("100", "100.00"), ("10.45", "10.45"),
                                         ("10,5", "10.50"), (" 7.00 ", "7.00"),
                                         ("000001.10", "1.10")])
def test_sums_the_protocol_sends(text, value):
    assert parse_sum(text) == Decimal(value)


@pytest.mark.parametrize("text, code", [
    ("10.455", Result.OTHER), ("1e3", Result.OTHER), ("Infinity", Result.OTHER),
    ("", Result.OTHER), (None, Result.OTHER), ("1 000", Result.OTHER), ("0x10", Result.OTHER),
    ("0", Result.AMOUNT_TOO_SMALL), ("-1.00", Result.AMOUNT_TOO_SMALL),
    ("-0.001", Result.AMOUNT_TOO_SMALL),
    ("1" * 16, Result.AMOUNT_TOO_LARGE),
])
def test_sums_refused_with_their_code(text, code):
    with pytest.raises(OsmpRefusal) as refused:
        parse_sum(text)
    assert refused.value.code == code


@settings(max_examples=500, deadline=None)
@given(st.decimals(min_value=Decimal("0.01"), max_value=Decimal("999999999999999.99"),
                   places=2, allow_nan=False, allow_infinity=False))
def test_every_two_decimal_sum_reads_back_exactly(value):
    assert parse_sum(f"{value:.2f}") == value
    assert parse_sum(f"{value:.2f}".replace(".", ",")) == value


@settings(max_examples=1000, deadline=None)
@given(st.one_of(st.text(max_size=40), st.from_regex(r"-?[0-9]{0,20}([.,][0-9]{0,5})?",
                                                     fullmatch=True)))
def test_any_sum_text_is_money_or_a_refusal(text):
    try:
        value = parse_sum(text)
    except OsmpRefusal as refusal:
        assert refusal.code in (Result.OTHER, Result.AMOUNT_TOO_SMALL, Result.AMOUNT_TOO_LARGE)
        return
    assert isinstance(value, Decimal) and value > 0
    assert value == value.quantize(Decimal("0.01"))


def test_txn_id_date_and_account_formats():
    assert parse_txn_id("12345678901234567890") == "12345678901234567890"
    for bad in ("", "12a", "1" * 21, " 1", None, "１２"):
        with pytest.raises(OsmpRefusal):
            parse_txn_id(bad)
    assert parse_txn_date("20261205101500") == dt.datetime(2026, 12, 5, 10, 15)
    for bad in ("2026120510150", "20261232101500", "2026-12-05", None):
        with pytest.raises(OsmpRefusal):
            parse_txn_date(bad)
    assert parse_account(" 100002 ") == "100002"
    with pytest.raises(OsmpRefusal) as refused:
        parse_account("100 002")
    assert refused.value.code == Result.BAD_ACCOUNT_FORMAT


@pytest.mark.parametrize("name, masked", [
    ("Иванов И. И.", "Ив***в И."),
    ("Иванов Иван Иванович", "Ив***в И."),
    ("Ли Вэй", "Л*** В."),
    ("ООО Ромашка", "О*** Р."),
    ("Petrov", "Pe***v"),
    ("", ""),
])
def test_a_masked_name_shows_little(name, masked):
    assert mask_name(name) == masked


def test_the_answer_is_escaped_xml():
    text = render(Answer(0, "OK <&>", txn_id="1", prv_txn=7, amount=Decimal("10.50"),
                         name="Ив***в И."))
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    assert "<osmp_txn_id>1</osmp_txn_id>" in text and "<prv_txn>7</prv_txn>" in text
    assert "<sum>10.50</sum>" in text and "<result>0</result>" in text
    assert "OK &lt;&amp;&gt;" in text


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400) | st.text(max_size=400).map(lambda t: t.encode("utf-8")))
def test_the_registry_parser_only_ever_refuses(data):
    try:
        lines = agent_registry.parse(data)
    except agent_registry.RegistryError:
        return
    for line in lines:
        assert line.amount > 0


_STATEMENT_WORDS = ["1CClientBankExchange", "СекцияДокумент=Платежное поручение",
                    "КонецДокумента", "СекцияРасчСчет", "КонецРасчСчет", "КонецФайла",
                    "Номер=1", "Дата=05.12.2026", "Сумма=10.00", "ПолучательСчет=1",
                    "НазначениеПлатежа=договор 1", "ПлательщикИНН=7701234567", "=", ""]


@settings(max_examples=800, deadline=None)
@given(st.lists(st.sampled_from(_STATEMENT_WORDS) | st.text(max_size=30), max_size=30),
       st.sampled_from(["utf-8", "cp1251", "cp866"]))
def test_the_1c_parser_only_ever_refuses(lines, encoding):
    data = "\n".join(lines).encode(encoding, errors="replace")
    try:
        parsed = bank_statement.parse(data)
        orders, _other = bank_statement.incoming(parsed, "1")
    except bank_statement.StatementError:
        return
    for order in orders:
        assert order.amount > 0 and len(order.key) == 64


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_the_1c_parser_survives_any_bytes(data):
    try:
        bank_statement.parse(b"1CClientBankExchange\r\n" + data)
    except bank_statement.StatementError:
        pass


@pytest.mark.parametrize("purpose, found", [
    ("Оплата по договору № 100002 от 01.11.2026", ["100002"]),
    ("Оплата по дог. 100002 за декабрь", ["100002"]),
    ("Оплата услуг связи л/с 100003 без НДС", ["100003"]),
    ("лицевой счет 100004", ["100004"]),
    ("Оплата по договору N100005, НДС не облагается", ["100005"]),
    ("Оплата по счету 17 от 01.12.2026", []),
    ("Абонентская плата по договору №100002 и №100003", ["100002"]),
])
def test_references_in_a_purpose(purpose, found):
    assert bank_statement.references(purpose) == found
