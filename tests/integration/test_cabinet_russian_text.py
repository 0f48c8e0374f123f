"""No English in the Russian cabinet: every page, the statement PDFs and the
CSV of a subscriber with rich data are scanned for Latin-script words.

The data comes from the domain's own posting sites (rating/), so a new
memo written in English at posting time, a raw history field or a code
shown as stored fails here. The allow-list holds what is Latin in Russian
too: brand names, protocol names and file formats; identifiers (anything
with a digit: a payment's id, a voucher's tail) and the subscriber's own
login, e-mail and promo code are not words.
"""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import re
import uuid
from decimal import Decimal
from html.parser import HTMLParser

import pytest
from pypdf import PdfReader
from sqlalchemy import select

from collector.models import TrafficRollup
from config.db import utcnow
from rating import (accounts, cabinet_ops, corrections, fees, options, packages, payments,
                    promised, promotions, requests, traffic, vouchers)
from rating.models import Account, LedgerEntry
from tests.factories import make_service
from tests.integration.cabinet_helpers import (  # noqa: F401 (fixtures)
    app, cabinet_ctx, client, log_in, seed_network_session)

GB = 10 ** 9
LOGIN = "ivanov"
EMAIL = "ivanov@example.ru"
PROMO = "WELCOME"

# Latin words a Russian page may hold: names of things that are spelled so
# in Russian too.
ALLOWED = {"PDF", "CSV", "API", "OpenAPI", "ID", "IP", "IPv", "IPoE", "PPPoE", "MAC", "Option",
           "SMS", "Telegram", "SIP",
           "English"}  # the language switch names each language in itself
# Values of this subscriber that are Latin by nature (no digit in them).
OWN_VALUES = {LOGIN, EMAIL, PROMO, "ivan@example.ru"}

# A run of letters, digits and the characters identifiers are made of;
# it is a Latin word if it has a Latin letter and no digit. A bot's command
# (/start) and a code's pattern (XXXX-XXXX) are not words either.
TOKEN = re.compile(r"/?[A-Za-z0-9@._\-…]+")
PATTERN = re.compile(r"^[X-]+$")
LATIN = re.compile(r"[A-Za-z]")


def latin_words(text: str, own: set[str] = frozenset()) -> set[str]:
    """The Latin words of ``text`` outside the allow-list and ``own`` (the
    subscriber's identifiers made at random, like a voucher's tail)."""
    found = set()
    for token in TOKEN.findall(text):
        token = token.strip("._-…")
        if (not LATIN.search(token) or re.search(r"\d", token) or token in OWN_VALUES
                or token.startswith("/") or PATTERN.match(token)):
            continue
        if token in ALLOWED or token in own:
            continue
        found.add(token)
    return found


class _Reader(HTMLParser):
    """What a person reads on a page: the text and the attributes that
    are shown or spoken (title, alt, placeholder, aria-label, a button's
    value); not scripts, styles, code to type as it is (<code>) or the
    page's data attributes."""

    SHOWN_ATTRIBUTES = ("title", "alt", "placeholder", "aria-label")

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style", "code"):
            self._skip += 1
        values = dict(attrs)
        for name in self.SHOWN_ATTRIBUTES:
            if values.get(name):
                self.parts.append(values[name])
        if tag == "input" and values.get("type") in ("submit", "button") and values.get("value"):
            self.parts.append(values["value"])

    def handle_endtag(self, tag):
        if tag in ("script", "style", "code") and self._skip:
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def page_text(markup: str) -> str:
    reader = _Reader()
    reader.feed(markup)
    return html.unescape(" ".join(reader.parts))


def pdf_text(data: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


@pytest.fixture
def rich(cabinet_ctx):
    """A person with every kind of ledger line and history entry."""
    now = utcnow()
    today = now.date()
    with cabinet_ctx.Session() as session:
        tariff = accounts.create_tariff(session, name="Домашний 100", fee="600.00",
                                        fee_period="monthly", rate_down_kbps=100_000,
                                        rate_up_kbps=50_000, negative_rate_kbps=1_000,
                                        price_per_gb="1.50")
        tariff.usage_source = "netflow"
        dearer = accounts.create_tariff(session, name="Домашний 300", fee="900.00",
                                        fee_period="monthly", rate_down_kbps=300_000,
                                        rate_up_kbps=150_000, negative_rate_kbps=1_000)
        promotions.set_bonus_percent(session, "5", now=now - dt.timedelta(minutes=1))
        account = accounts.create_account(session, number="00012345", name="Иванов Иван",
                                          tariff=tariff.name, email=EMAIL,
                                          phone="+7 900 000-00-01", credit_limit="100")
        accounts.create_cabinet_user(session, account, login=LOGIN, password="correct-horse-1",
                                     email=EMAIL)
        make_service(session, account, login=LOGIN)
        accounts.add_payment(session, account, "1000.00", external_id="kassa-1",
                             memo="cash at the office")
        # A card payment through the test bank, as its callback settles it.
        provider = payments.TestPay("secret")
        row, _checkout = payments.start(session, provider, account, Decimal("250.00"),
                                        payments.Limits(), actor=f"cabinet:{LOGIN}",
                                        request=payments.CreateRequest("rich-card-paid"))
        # And one still waiting for the bank (/topup/go shows it).
        payments.start(session, provider, account, Decimal("300.00"), payments.Limits(),
                       actor=f"cabinet:{LOGIN}", request=payments.CreateRequest("rich-card-wait"))
        body, headers = provider.notice_body(row.txn_id, row.amount, "paid")
        payments.settle(session, "testpay", provider.verify_callback(body, headers))
        code = vouchers.issue(session, count=1, amount="200")[0].code
        tail = vouchers.normalize_code(code)[-4:]
        vouchers.redeem(session, account, code, actor=f"cabinet:{LOGIN}")
        package = packages.create(session, name="Телевидение", fee="150.00")
        promotions.add_discount(session, account, target="tariff", percent="10",
                                valid_from=today - dt.timedelta(days=1))
        promotions.add_promo(session, PROMO, amount="100", uses=5, today=today)
        promotions.redeem(session, account, PROMO, today=today, actor=f"cabinet:{LOGIN}")
        packages.switch(session, account, package, True, today=today,
                        actor=f"cabinet:{LOGIN}", by_subscriber=True)
        turbo = options.create_option_type(session, code="turbo", name="Турбо ×2",
                                           kind="turbo", price="50.00", duration_hours=24,
                                           rate_multiplier=2)
        options.buy(session, account, turbo.code, now, request_id=uuid.uuid4().hex,
                    actor=f"cabinet:{LOGIN}")
        corrections.refund(session, account, "30", reason="Возврат за перерыв связи",
                           actor="admin")
        wrong = corrections.charge(session, account, "45", reason="Выезд мастера",
                                   actor="admin")
        corrections.reverse(session, wrong.postings[0].entry_id,
                            reason="Мастер не понадобился", actor="admin")
        cabinet_ops.update_contacts(session, account.id, email="ivan@example.ru",
                                    phone="+7 900 000-00-02", phone_landline=None,
                                    actor=f"cabinet:{LOGIN}")
        created, _new = requests.create(session, account.id, topic="no_connection",
                                        text="Нет связи с утра", request_id=uuid.uuid4().hex,
                                        actor=f"cabinet:{LOGIN}")
        requests.set_status(session, created.id, "done", answer="Заменили кабель",
                            actor="admin")
        hour = now.replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=1)
        session.add(TrafficRollup(account_id=account.id, interval_start=hour,
                                  traffic_class="internet", direction="in", bytes=3 * GB,
                                  packets=3_000_000, source="netflow"))
        session.commit()
        traffic.charge_hour(session, hour, "Europe/Moscow")
        session.commit()
        _seed_calls(session, account, now)
        session.commit()
        account_id = account.id
        dearer_id = dearer.id
    # The fee run of today: the tariff's fee, the package's, the discount,
    # the bonus points earned and spent.
    with cabinet_ctx.Session() as session:
        promotions.earn(session, until=utcnow() + dt.timedelta(seconds=1), author="test")
        session.commit()
        fees.charge_day(session, today)
    with cabinet_ctx.Session() as session:
        account = session.get(Account, account_id)
        rules = promised.PromisedRules(allowed_below=Decimal("100000"), fee=Decimal("10.00"))
        promised.grant(session, account, Decimal("300"), utcnow(), rules,
                       actor=f"cabinet:{LOGIN}")
        session.commit()
        kinds = set(session.scalars(select(LedgerEntry.memo_code)
                                    .where(LedgerEntry.account_id == account_id)))
    seed_network_session(cabinet_ctx, account_id, framed_ip="100.64.0.7",
                         started_at=now - dt.timedelta(hours=2), stopped_at=now,
                         octets_in=2 * GB, octets_out=GB // 3)
    return account_id, kinds, dearer_id, {tail}


def _seed_calls(session, account, now) -> None:
    """A phone number with calls this month (issue 17): the calls page and
    the calls' line in the statement."""
    from rating import cdr, phones
    from rating.telephony import CallInput, Config, NumberRules, record_calls
    config = Config(NumberRules(), "Europe/Moscow")
    phones.save_plan(session, "Домашний", actor="test")
    phones.import_rates(session, "Домашний", cdr.parse_rates(io.StringIO(
        "7;Россия;3.00\n7495;Москва;1.50\n")), actor="test")
    phones.add_phone(session, account, number="84951110000", login="sip1001",
                     plan_name="Домашний", config=config, actor="test")
    start = now.replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=1)
    record_calls(session, [CallInput("asterisk", f"ru-{n}", "84951110000", "84952223344",
                                     start + dt.timedelta(minutes=n), start, start, seconds,
                                     "answered" if seconds else "no_answer")
                           for n, seconds in enumerate((61, 0, 300))], config=config)


def test_the_data_holds_every_kind_of_line(rich):
    _account_id, codes, _tariff, _own = rich
    assert {"payment", "package", "discount", "promo", "bonus_spent", "turbo", "refund",
            "charge", "reversal", "traffic", "promised", "promised_fee", "calls"} <= codes
    assert None in codes  # the tariff's own fee: worded from its key


def _pages(app) -> list[str]:
    """Every page a logged-in subscriber can open with a GET and no
    arguments, from the application's own routes."""
    # Logged-out pages (login, password reset, a company's invitation),
    # files that are not text for a person, and a company's users page (this
    # subscriber is a person; tests/e2e/test_cabinet_every_page.py sees it)
    # and its spending and notices (tests/integration/test_cabinet_company_spending.py).
    skip = ("/api/", "/static/", "/favicon.ico", "/login", "/forgot", "/reset", "/brand",
            "/invite", "/users", "/company")
    paths = []
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods or rule.arguments or rule.rule.startswith(skip):
            continue
        paths.append(rule.rule)
    return sorted(paths)


def test_the_russian_cabinet_shows_no_english(app, client, rich, artifacts, db_url):
    account_id, _codes, tariff_id, own = rich
    assert log_in(client, LOGIN, "correct-horse-1", lang="ru").status_code == 302
    month = utcnow().strftime("%Y-%m")
    leaks: dict[str, set[str]] = {}
    pages = _pages(app)
    assert {"/", "/payments", "/history", "/documents", "/packages", "/requests"} <= set(pages)
    # Pages that need a query: what the pages before them link to.
    queries = {"/options/buy": "?code=turbo", "/tariff/terms": f"?tariff={tariff_id}",
               "/tariff/confirm": f"?tariff={tariff_id}&when=now",
               "/topup/back": "?key=rich-card-paid", "/topup/go": "?key=rich-card-wait"}
    for path in pages:
        response = client.get(path + queries.get(path, ""))
        assert response.status_code == 200, path
        if response.mimetype == "text/html":
            text = page_text(response.text)
        elif response.mimetype == "application/pdf":
            text = pdf_text(response.data)
        else:
            text = response.data.decode("utf-8-sig")
        if latin_words(text, own):
            leaks[path] = latin_words(text, own)
    for path in (f"/documents/statement-{month}.pdf",):
        response = client.get(path)
        assert response.status_code == 200, path
        if db_url.startswith("sqlite"):
            # To look at: the statement a Russian subscriber downloads.
            (artifacts / "statement-ru.pdf").write_bytes(response.data)
            (artifacts / "statement-ru.csv").write_bytes(client.get("/payments.csv").data)
        if latin_words(pdf_text(response.data), own):
            leaks[path] = latin_words(pdf_text(response.data), own)
    assert not leaks, f"English in the Russian cabinet: {leaks}"


def test_the_russian_statement_reads_as_russian(client, rich):
    assert log_in(client, LOGIN, "correct-horse-1", lang="ru").status_code == 302
    page = page_text(client.get("/payments").text)
    for words in ("Турбо ×2 на 24 ч", "пакет «Телевидение» за", "промокод WELCOME",
                  "карта оплаты …", "оплата картой онлайн", "внесён оператором",
                  "Возврат за перерыв связи", "отмена операции «Корректировка» от",
                  "скидка 10\u00a0% на плату за", "погасить до", "плата за обещанный платёж",
                  "за час с", "Списано:"):
        assert words in page, words
    # Money with its currency, in the Russian format; a debit total is spent money.
    assert re.search(r"Списано: \d[\d\u00a0]*,\d\d\u00a0₽", page), page
    assert "Списано: -" not in page
    # Runs of spaces and line breaks as one space; no-break spaces kept.
    history = re.sub(r"[ \t\n]+", " ", page_text(client.get("/history").text))
    for words in ("Тема: Нет подключения", "Статус: выполнена", "Роль: владелец",
                  "Логин: ivanov", "Эл. почта: ivanov@example.ru → ivan@example.ru",
                  "Заявка №\u00a01", "Промокод: WELCOME", "Начислено: 100,00\u00a0₽",
                  "Платёжная система: оператор", "Услуга: Турбо", "Процент: 10\u00a0%"):
        assert words in history, (words, history)
    assert not re.search(r"\d\d:\d\d:\d\d", history), "a time with seconds"
    # The card payment was recorded by the bank's callback, not by the operator.
    assert re.search(r"Поступил платёж Сумма: 250,00\u00a0₽ .*? банк ", history), history
    assert "Окончание: 20" not in history and "UTC" not in history


def test_the_russian_csv_opens_in_russian_excel(client, rich):
    assert log_in(client, LOGIN, "correct-horse-1", lang="ru").status_code == 302
    response = client.get("/payments.csv")
    body = response.data.decode("utf-8")
    assert body.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(body[1:]), delimiter=";"))
    assert rows[0] == ["Дата", "Операция", "Сумма", "Остаток", "Комментарий"]
    amounts = [row[2] for row in rows[2:-1]]
    assert amounts and all(re.fullmatch(r"-?\d+,\d\d", value) for value in amounts), amounts
    assert sum(Decimal(a.replace(",", ".")) for a in amounts) == \
        Decimal(rows[-1][3].replace(",", ".")) - Decimal(rows[1][3].replace(",", "."))
    english = client.get("/payments.csv", headers={"Accept-Language": "en"})
    assert english.status_code == 200


def test_the_english_cabinet_words_the_same_lines(client, rich):
    assert log_in(client, LOGIN, "correct-horse-1", lang="en").status_code == 302
    page = page_text(client.get("/payments").text)
    for words in ("Turbo ×2 for 24 h", "package “Телевидение” for", "promo code WELCOME",
                  "paid online by card", "a discount of 10\u00a0% on the fee for",
                  "Spent: ₽"):
        assert words in page, words
    rows = list(csv.reader(io.StringIO(client.get("/payments.csv").data.decode("utf-8")[1:])))
    assert rows[0][0] == "Date" and re.fullmatch(r"-?\d+\.\d\d", rows[2][2])


def test_set_based_fees_carry_their_codes(cabinet_ctx):
    """The fee run writes a million rows in one INSERT ... SELECT: a frozen
    day's fee and a package's fee get their code (and the package its
    name) in the same statement, on both databases."""
    day = dt.date(2026, 12, 5)
    with cabinet_ctx.Session() as session:
        tariff = accounts.create_tariff(session, name="Дневной", fee="300.00",
                                        fee_period="daily", rate_down_kbps=10_000,
                                        rate_up_kbps=10_000)
        watcher = accounts.create_account(session, number="00020001", name="Смотрящий",
                                          tariff=tariff.name)
        accounts.add_payment(session, watcher, "1000", external_id="w-1")
        sleeper = accounts.create_account(session, number="00020002", name="Спящий",
                                          tariff=tariff.name)
        accounts.add_payment(session, sleeper, "1000", external_id="s-1")
        sleeper.state = "frozen"
        package = packages.create(session, name="Кино", fee="5.00", fee_period="daily")
        packages.switch(session, watcher, package, True, today=day - dt.timedelta(days=1),
                        actor="admin")
        session.commit()
        fees.charge_day(session, day, freeze_fee=Decimal("1.00"))
        rows = {(e.account_id, e.idempotency_key): (e.memo_code, e.memo_args)
                for e in session.scalars(select(LedgerEntry).where(LedgerEntry.kind == "fee"))}
        watcher_id, sleeper_id = watcher.id, sleeper.id
    assert rows[(watcher_id, f"fee:{watcher_id}:2026-12-05")] == (None, None)
    assert rows[(sleeper_id, f"fee:{sleeper_id}:2026-12-05")] == ("freeze_fee", None)
    assert rows[(watcher_id, f"pkg:{watcher_id}:{package.id}:2026-12-05")] == (
        "package", {"name": "Кино", "period": "2026-12-05"})


def test_the_company_pages_in_russian_show_no_english(cabinet_ctx, client):
    """The company's users page (owner) and the invitation page (invitee)."""
    from rating import company_users
    from rating.models import CabinetUser
    from tests.factories import make_account
    with cabinet_ctx.Session() as session:
        company = make_account(session, kind="company", name="ООО «Ромашка»", balance="100")
        owner = accounts.create_cabinet_user(session, company, login="romashka",
                                             password="correct-horse-1")
        accounts.create_cabinet_user(session, company, login="romashka-books",
                                     password="correct-horse-1", role="accountant")
        session.flush()
        invitation = company_users.invite(session, company.id, by_user_id=owner.id,
                                          login="romashka-new", email="new@romashka.example",
                                          role="viewer", now=utcnow(), actor="cabinet:romashka")
        session.commit()
        assert session.scalar(select(CabinetUser.id).where(
            CabinetUser.login == "romashka-new")) is not None
    own = {"romashka", "romashka-books", "romashka-new", "new@romashka.example"}
    invite = client.get(f"/invite?token={invitation.token}",
                        headers={"Accept-Language": "ru"})
    assert invite.status_code == 200
    assert latin_words(page_text(invite.text), own) == set()
    assert log_in(client, "romashka", "correct-horse-1", lang="ru").status_code == 302
    users = client.get("/users")
    assert users.status_code == 200 and "romashka-books" in users.text
    assert latin_words(page_text(users.text), own) == set()


def test_the_customer_pages_in_russian_show_no_english(cabinet_ctx, client):
    """Issue 21: the company's overview, structure, rights, consolidated
    invoice and act (pages and PDF), and the family page with a request."""
    from rating import family, ledger, org
    from tests.factories import make_account
    with cabinet_ctx.Session() as session:
        head = make_account(session, kind="company", name="ООО «Ромашка»", balance="100")
        owner = accounts.create_cabinet_user(session, head, login="romashka",
                                             password="correct-horse-1")
        customer = org.create_customer(session, kind="company", name="ООО «Ромашка»",
                                       actor="admin:noc")
        sales = org.create_unit(session, customer.id, "Отдел продаж", actor="admin:noc")
        north = org.create_unit(session, customer.id, "Северный филиал", actor="admin:noc",
                                parent_id=sales.id)
        org.attach_account(session, head.id, customer.id, actor="admin:noc")
        for n in range(3):
            line = make_account(session, kind="company", name=f"Линия {n + 1}")
            org.attach_account(session, line.id, customer.id, actor="admin:noc",
                               unit_id=north.id)
            ledger.post(session, account_id=line.id, amount="-250", kind="fee",
                        key=f"fee:ru:{line.id}", author="test")
        org.grant(session, owner.id, customer.id, org.RIGHTS, actor="admin:noc")
        relative = make_account(session, name="Петрова Анна", balance="10")
        anna = accounts.create_cabinet_user(session, relative, login="anna",
                                            password="correct-horse-1")
        family.invite(session, anna.id, head.number, utcnow(), actor="cabinet:anna")
        session.commit()
    # The seller's name is the operator's setting (Latin in the default).
    own = {"romashka", "anna", *cabinet_ctx.settings.get("payments", "seller").split()}
    assert log_in(client, "romashka", "correct-horse-1", lang="ru").status_code == 302
    leaks = {}
    for path in ("/company/", "/company/tree", "/company/access", "/company/invoice",
                 "/company/invoice?kind=act", "/family/", "/users"):
        response = client.get(path)
        assert response.status_code == 200, path
        found = latin_words(page_text(response.text), own)
        if found:
            leaks[path] = found
    for path in ("/company/invoice.pdf", "/company/act.pdf"):
        response = client.get(path)
        assert response.status_code == 200, path
        found = latin_words(pdf_text(response.data), own)
        if found:
            leaks[path] = found
    assert "Линия 1" in pdf_text(client.get("/company/invoice.pdf").data)
    assert not leaks, f"English in the Russian company pages: {leaks}"
