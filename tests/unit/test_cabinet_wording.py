"""What a ledger line and a history entry say, in Russian and English
(cabinet.ledger_text, cabinet.history_text), and money with its currency;
no database: the codes and arguments are those rating/ writes."""

from __future__ import annotations

from decimal import Decimal

import pytest
from flask import Flask
from flask_babel import Babel

from cabinet import formatting, history_text, ledger_text, spreadsheet
from cabinet.app import HERE
from rating.choices import MEMO_CODES

NBSP, NNBSP = "\u00a0", "\u202f"


def _app(locale: str) -> Flask:
    app = Flask(__name__)
    app.config.update(BABEL_DEFAULT_TIMEZONE="Europe/Moscow",
                      BABEL_TRANSLATION_DIRECTORIES=str(HERE / "translations"))
    Babel(app, locale_selector=lambda: locale)
    return app


APPS = {locale: _app(locale) for locale in ("ru", "en")}


@pytest.fixture(params=["ru", "en"])
def locale(request):
    with APPS[request.param].test_request_context():
        yield request.param


def _in(locale, ru, en):
    return ru if locale == "ru" else en


# -- money -------------------------------------------------------------------

@pytest.mark.parametrize("value, ru, en", [
    (Decimal("1069.35"), f"1{NBSP}069,35{NBSP}₽", "₽1,069.35"),
    (Decimal("-29.03"), f"-29,03{NBSP}₽", "-₽29.03"),
    (Decimal("0"), f"0,00{NBSP}₽", "₽0.00"),
])
def test_money_has_its_currency_in_the_locales_place(locale, value, ru, en):
    assert formatting.money_with_currency(value) == _in(locale, ru, en)
    assert formatting.money_with_currency(None) == "—"


def test_a_csv_amount_is_a_number_to_the_locales_spreadsheet(locale):
    assert formatting.csv_number(Decimal("-1069.35")) == _in(locale, "-1069,35", "-1069.35")
    assert spreadsheet.delimiter(locale) == _in(locale, ";", ",")


def test_a_russian_csv_is_split_at_semicolons_with_a_bom():
    body = spreadsheet.csv_text(["Дата", "Сумма"], [["5 дек.", "-1069,35"], ["=1+1", "1,00"]],
                                text_columns={0}, delimiter=";")
    assert body.startswith("\ufeff")
    assert body.splitlines()[1] == '"5 дек.";"-1069,35"'
    assert body.splitlines()[2] == "\"'=1+1\";\"1,00\""
    with pytest.raises(ValueError):
        spreadsheet.csv_text(["a"], [], text_columns=set(), delimiter="\t")


# -- ledger lines ------------------------------------------------------------

LINES = [
    # (kind, key, code, args, Russian, English)
    ("fee", "fee:7:2026-12-05", None, None,
     f"Абонентская плата — за 5 дек. 2026{NNBSP}г.", "Subscription fee — for Dec 5, 2026"),
    ("fee", "fee:7:2026-12", None, None,
     "Абонентская плата — за декабрь 2026", "Subscription fee — for December 2026"),
    ("fee", "fee:7:2026-12-05", "freeze_fee", None,
     f"Абонентская плата — день заморозки, 5 дек. 2026{NNBSP}г.",
     "Subscription fee — a frozen day, Dec 5, 2026"),
    ("option", "option:7:x", "turbo", {"name": "Turbo ×2", "hours": 24, "multiplier": 2},
     "Услуга — Турбо ×2 на 24 ч", "Option — Turbo ×2 for 24 h"),
    ("option", "option:7:y", "option", {"name": "Ночной безлимит", "hours": 8},
     "Услуга — «Ночной безлимит» на 8 ч", "Option — “Ночной безлимит” for 8 h"),
    ("payment", "payment:testpay:tp-1bc7", "payment", {"provider": "testpay"},
     "Платёж — оплата картой онлайн", "Payment — paid online by card"),
    ("payment", "payment:voucher:3", "payment", {"provider": "voucher", "tail": "K7QX"},
     "Платёж — карта оплаты …K7QX", "Payment — voucher …K7QX"),
    ("payment", "payment:osmp:qiwi:1000001", "payment", {"provider": "osmp:qiwi"},
     "Платёж — оплата через терминал или агента",
     "Payment — paid at a payment terminal or agent"),
    ("payment", "payment:bank:stmt-0f3a", "payment", {"provider": "bank"},
     "Платёж — банковский перевод", "Payment — bank transfer"),
    ("payment", "payment:manual:kassa-1", None, None,
     "Платёж — внесён оператором", "Payment — recorded by the operator"),
    ("payment", "opening:00012345", None, None,
     "Платёж — остаток, перенесённый из прежней системы расчётов",
     "Payment — opening balance carried over from the previous billing system"),
    ("promised", "promised:7:2026-12-05", "promised", {"due": "2026-12-10T09:00:00"},
     f"Обещанный платёж — погасить до 10 дек. 2026{NNBSP}г., 12:00",
     f"Promised payment — to be repaid by Dec 10, 2026, 12:00{NNBSP}PM"),
    ("correction", "reversal:5", "promised_expired", {"granted": "2026-12-05T09:00:00"},
     f"Корректировка — обещанный платёж от 5 дек. 2026{NNBSP}г. не погашен в срок",
     "Correction — the promised payment of Dec 5, 2026 was not repaid in time"),
    ("traffic", "traffic:7:2026-12-05T10", "traffic",
     {"hour": "2026-12-05T10:00:00", "gb": "1.250", "late": False},
     f"Трафик — 1,2 ГБ за час с 5 дек. 2026{NNBSP}г., 13:00",
     f"Traffic — 1.2 GB in the hour from Dec 5, 2026, 1:00{NNBSP}PM"),
    ("fee", "pkg:7:2:2026-12", "package", {"name": "Телевидение", "period": "2026-12"},
     "Абонентская плата — пакет «Телевидение» за декабрь 2026",
     "Subscription fee — package “Телевидение” for December 2026"),
    ("discount", "discount:1:9", "discount",
     {"percent": "10.00", "amount": None, "period": "2026-12-05", "package": None},
     f"Скидка — скидка 10{NBSP}% на плату за 5 дек. 2026{NNBSP}г.",
     f"Discount — a discount of 10{NBSP}% on the fee for Dec 5, 2026"),
    ("bonus", "promo:1:7", "promo", {"code": "WELCOME"},
     "Бонус — промокод WELCOME", "Bonus — promo code WELCOME"),
    ("refund", "refund:x", "refund", {"reason": "Возврат за перерыв связи"},
     "Возврат — Возврат за перерыв связи", "Refund — Возврат за перерыв связи"),
    ("correction", "reversal:8", "reversal",
     {"entry": 8, "kind": "correction", "day": "2026-12-05", "reason": "Ошибка"},
     f"Корректировка — отмена операции «Корректировка» от 5 дек. 2026{NNBSP}г.: Ошибка",
     "Correction — cancels “Correction” of Dec 5, 2026: Ошибка"),
    ("fee", "upgrade:7:2026-12-05:3", "tariff_difference",
     {"tariff": "Домашний 300", "starts_on": "2026-12-05"},
     f"Абонентская плата — тариф «Домашний 300» с 5 дек. 2026{NNBSP}г.: доплата до конца месяца",
     "Subscription fee — tariff “Домашний 300” from Dec 5, 2026: the difference for the rest "
     "of the month"),
    ("correction", "transfer:x:from", "transfer_out", {"reason": "По заявлению"},
     "Корректировка — перевод на другой счёт: По заявлению",
     "Correction — transfer to another account: По заявлению"),
    ("bonus", "bonus:9", "bonus_spent",
     {"points": "20.00", "period": "2026-12", "package": "Кино"},
     "Бонус — бонусными баллами оплачен пакет «Кино» за декабрь 2026",
     "Bonus — bonus points paid the package “Кино” for December 2026"),
    ("correction", "charge:x", "charge", {"reason": "Выезд мастера"},
     "Корректировка — Выезд мастера", "Correction — Выезд мастера"),
    ("correction", "opening:00012345", None, None,
     "Корректировка — остаток, перенесённый из прежней системы расчётов",
     "Correction — opening balance carried over from the previous billing system"),
    ("fee", "promised-fee:5", "promised_fee", None,
     "Абонентская плата — плата за обещанный платёж",
     "Subscription fee — the fee for a promised payment"),
]


@pytest.mark.parametrize("kind, key, code, args, ru, en", LINES)
def test_a_ledger_line_is_worded_in_the_readers_language(locale, kind, key, code, args, ru,
                                                          en):
    assert ledger_text.line_text(kind, key, code, args) == _in(locale, ru, en)


def test_every_memo_code_has_words(locale):
    assert set(MEMO_CODES) == set(ledger_text._WORDERS)


def test_an_unknown_or_broken_line_falls_back_to_its_kind(locale):
    assert ledger_text.line_text("fee", "fee:oct") == _in(locale, "Абонентская плата",
                                                          "Subscription fee")
    # A code from a newer version, arguments of an older one.
    assert ledger_text.line_text("payment", "x", "gift", {"a": 1}) == \
        _in(locale, "Платёж", "Payment")
    assert ledger_text.line_text("option", "option:1", "option", None).startswith(
        _in(locale, "Услуга — «»", "Option — “”"))


# -- history -----------------------------------------------------------------

def test_history_fields_read_as_words(locale):
    shown = dict(history_text.details({
        "login": "ivanov", "role": "owner", "amount": "1069.35", "external_id": "kassa-1",
        "provider": "manual", "due_at": "2026-12-06 07:41:39.400833", "topic": "no_connection",
        "status": "in_progress", "code": "turbo", "tariff_id": "3", "key": "opening:1",
        "channels": "email → email, telegram", "percent": "10.00", "starts_on": "2026-12-05",
        "forced": None}))
    assert shown == _in(locale, {
        "Логин": "ivanov", "Роль": "владелец", "Сумма": f"1{NBSP}069,35{NBSP}₽",
        "Номер платежа": "kassa-1", "Платёжная система": "оператор",
        "Срок": f"6 дек. 2026{NNBSP}г., 10:41", "Тема": "Нет подключения", "Статус": "в работе",
        "Услуга": "Турбо", "Каналы": "Эл. почта → Эл. почта, Telegram",
        "Процент": f"10{NBSP}%", "Начало": f"5 дек. 2026{NNBSP}г."}, {
        "Login": "ivanov", "Role": "owner", "Amount": "₽1,069.35", "Payment ID": "kassa-1",
        "Provider": "the operator", "Due": f"Dec 6, 2026, 10:41{NNBSP}AM",
        "Topic": "No connection", "Status": "in progress", "Option": "Turbo",
        "Channels": "E-mail → E-mail, Telegram", "Percent": f"10{NBSP}%",
        "Starts on": "Dec 5, 2026"})


def test_a_promo_codes_field_is_named_for_it(locale):
    assert history_text.details({"code": "WELCOME", "given": "100.00 credited"},
                                "promo.redeem") == _in(
        locale, [("Промокод", "WELCOME"), ("Начислено", f"100,00{NBSP}₽")],
        [("Promo code", "WELCOME"), ("Given", "₽100.00")])
    # What cannot be worded is left out, not shown raw.
    assert history_text.details({"given": "a 10% discount on the tariff fee until 2027-01-01"},
                                "promo.redeem") == []


def test_an_unknown_action_is_named_as_the_operators(locale):
    from cabinet import labels
    assert labels.action("nas.frobnicate") == _in(locale, "Изменение оператором",
                                                  "Change by the operator")


def test_a_numbered_thing_reads_as_one_text_and_ledger_ids_are_left_out(locale):
    assert history_text.details({"request": "5", "entry_id": "9", "reversed_entry_id": "8"}) \
        == [(_in(locale, f"Заявка №{NBSP}5", f"Request No.{NBSP}5"), "")]
