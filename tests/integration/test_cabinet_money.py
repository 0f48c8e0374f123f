"""Money in through the cabinet: vouchers, the test payment provider and the
PDF documents, on both databases; the voucher CLI."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import threading
from decimal import Decimal

import pytest
from sqlalchemy import func, select, update

from rating import accounts, fees, ledger, payments, vouchers
from rating.accounts import create_cabinet_user
from rating.models import Account, LedgerEntry, OperationLog
from rating.payments import ProviderPayment
from rating.vouchers import Voucher
from tests.conftest import make_context
from tests.integration.cabinet_helpers import (  # noqa: F401 (fixtures)
    app, client, csrf_token, log_in, logged_in, seed_subscriber)

SECRET = "testpay-secret-for-tests"


@pytest.fixture
def cabinet_ctx(db_url, tmp_path):
    context = make_context(db_url, data_dir=tmp_path, payments_testpay_enabled="true",
                           payments_testpay_secret=SECRET)
    yield context
    context.dispose()


@pytest.fixture
def subscriber(cabinet_ctx):
    return seed_subscriber(cabinet_ctx, balance="100")


def _issue(ctx, count=1, amount="500", batch="t1") -> list[str]:
    with ctx.Session() as session:
        issued = vouchers.issue(session, count=count, amount=amount, batch=batch)
        session.commit()
    return [v.code for v in issued]


def _balance(ctx, account_id) -> Decimal:
    with ctx.Session() as session:
        return session.get(Account, account_id).balance


def _redeem(client, code):
    page = client.get("/topup")
    return client.post("/topup/voucher", data={"code": code,
                                               "csrf_token": csrf_token(page.text)})


def _add_user(ctx, account_id, login, role):
    with ctx.Session() as session:
        create_cabinet_user(session, session.get(Account, account_id), login=login,
                            password="role-pass-123", role=role)
        session.commit()


# -- vouchers -------------------------------------------------------------------

def test_a_voucher_is_redeemed_into_the_ledger(logged_in, cabinet_ctx, subscriber):
    code = _issue(cabinet_ctx)[0]
    response = _redeem(logged_in, code.lower().replace("-", " "))
    assert response.status_code == 302 and response.location.endswith("/payments")
    assert "₽500.00 credited" in logged_in.get("/payments").text
    assert _balance(cabinet_ctx, subscriber.account_id) == Decimal("600.00")
    with cabinet_ctx.Session() as session:
        voucher = session.scalar(select(Voucher))
        assert voucher.redeemed_by == subscriber.account_id and voucher.redeemed_at
        entry = session.scalar(select(LedgerEntry).where(
            LedgerEntry.idempotency_key == f"payment:voucher:{voucher.id}"))
        assert entry.amount == Decimal("500.00") and entry.kind == "payment"
        # The code itself is stored nowhere.
        assert code.replace("-", "") not in voucher.code_hash
        assert session.scalar(select(func.count()).select_from(OperationLog).where(
            OperationLog.action == "voucher.redeem")) == 1


def test_a_double_submit_credits_once(logged_in, cabinet_ctx, subscriber):
    code = _issue(cabinet_ctx)[0]
    assert _redeem(logged_in, code).status_code == 302
    again = _redeem(logged_in, code)
    assert again.status_code == 302
    assert "already credited to your account" in logged_in.get("/payments").text
    assert _balance(cabinet_ctx, subscriber.account_id) == Decimal("600.00")


def test_a_used_voucher_is_refused_for_another_account(app, logged_in, cabinet_ctx):
    code = _issue(cabinet_ctx)[0]
    assert _redeem(logged_in, code).status_code == 302
    other = seed_subscriber(cabinet_ctx, balance="0")
    second = app.test_client()
    log_in(second, other.login, other.password, lang="en")
    response = _redeem(second, code)
    assert response.status_code == 400
    assert "This voucher has already been used" in response.text
    assert _balance(cabinet_ctx, other.account_id) == Decimal("0.00")


def test_redeeming_restores_the_service(logged_in, cabinet_ctx, subscriber):
    with cabinet_ctx.Session() as session:
        ledger.post(session, account_id=subscriber.account_id, amount="-300", kind="fee",
                    key="fee:test", author="test")
        fees.apply_policies(session)
        session.commit()
        assert session.get(Account, subscriber.account_id).profile != "normal"
    assert _redeem(logged_in, _issue(cabinet_ctx)[0]).status_code == 302
    with cabinet_ctx.Session() as session:
        account = session.get(Account, subscriber.account_id)
        assert account.balance == Decimal("300.00") and account.profile == "normal"


@pytest.mark.parametrize("code", ["", "nonsense", "AAAA-AAAA-AAAA-AAAA"])
def test_a_wrong_code_is_refused_and_changes_nothing(logged_in, cabinet_ctx, subscriber,
                                                     code):
    _issue(cabinet_ctx)
    response = _redeem(logged_in, code)
    assert response.status_code == 400
    if code:
        assert "The voucher code is wrong" in response.text
    assert _balance(cabinet_ctx, subscriber.account_id) == Decimal("100.00")


def test_wrong_codes_are_rate_limited_per_account(app, logged_in, cabinet_ctx, subscriber):
    code = _issue(cabinet_ctx)[0]
    for _ in range(5):
        assert _redeem(logged_in, "WRNG-WRNG-WRNG-WRNG").status_code == 400
    blocked = _redeem(logged_in, code)  # even the right code waits now
    assert blocked.status_code == 429
    assert "Too many wrong voucher codes" in blocked.text
    assert _balance(cabinet_ctx, subscriber.account_id) == Decimal("100.00")
    # Another account from the same address is not blocked by this one's limit.
    other = seed_subscriber(cabinet_ctx, balance="0")
    second = app.test_client()
    log_in(second, other.login, other.password, lang="en")
    assert _redeem(second, code).status_code == 302


def test_wrong_codes_are_rate_limited_per_address(db_url, tmp_path):
    from cabinet.app import create_app
    ctx = make_context(db_url, data_dir=tmp_path, payments_voucher_limits_address="3 per minute",
                       payments_voucher_limits_account="100 per minute")
    try:
        app = create_app(ctx, testing=True)
        clients = []
        for _ in range(2):
            person = seed_subscriber(ctx, balance="0")
            client = app.test_client()
            log_in(client, person.login, person.password, lang="en")
            clients.append(client)
        assert _redeem(clients[0], "WRNG-WRNG-WRNG-WRNG").status_code == 400
        assert _redeem(clients[0], "WRNG-WRNG-WRNG-WRNG").status_code == 400
        assert _redeem(clients[1], "WRNG-WRNG-WRNG-WRNG").status_code == 400
        assert _redeem(clients[1], "WRNG-WRNG-WRNG-WRNG").status_code == 429
    finally:
        ctx.dispose()


def test_a_viewer_may_look_but_not_redeem(client, cabinet_ctx, subscriber):
    _add_user(cabinet_ctx, subscriber.account_id, "viewer-v", "viewer")
    log_in(client, "viewer-v", "role-pass-123", lang="en")
    page = client.get("/topup")
    assert page.status_code == 200 and "Only the account's owner or accountant" in page.text
    code = _issue(cabinet_ctx)[0]
    response = client.post("/topup/voucher", data={"code": code,
                                                   "csrf_token": csrf_token(page.text)})
    assert response.status_code == 403
    response = client.post("/topup/online", data={"amount": "100",
                                                  "csrf_token": csrf_token(page.text)})
    assert response.status_code == 403
    assert _balance(cabinet_ctx, subscriber.account_id) == Decimal("100.00")


def test_no_change_without_csrf_or_on_get(logged_in, cabinet_ctx, subscriber):
    code = _issue(cabinet_ctx)[0]
    assert logged_in.post("/topup/voucher", data={"code": code}).status_code == 400
    assert logged_in.get("/topup/voucher").status_code == 405
    assert logged_in.post("/topup/online", data={"amount": "100"}).status_code == 400
    assert _balance(cabinet_ctx, subscriber.account_id) == Decimal("100.00")


def _redeem_in_threads(url, code, account_ids):
    ctx = make_context(url)
    barrier = threading.Barrier(len(account_ids))
    outcomes = []

    def work(account_id):
        with ctx.Session() as session:
            account = session.get(Account, account_id)
            session.commit()
            barrier.wait()
            try:
                result = vouchers.redeem(session, account, code, actor="test")
                session.commit()
                outcomes.append(("ok", account_id, result.created))
            except vouchers.VoucherUsed:
                session.rollback()
                outcomes.append(("used", account_id, False))

    threads = [threading.Thread(target=work, args=(a,)) for a in account_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return ctx, outcomes


def test_two_accounts_racing_for_one_voucher_credit_once(pg_url):
    ctx = make_context(pg_url)
    code = _issue(ctx)[0]
    with ctx.Session() as session:
        ids = []
        for n in range(4):
            account = accounts.create_account(session, number=f"race{n}", name="Racer")
            ids.append(account.id)
        session.commit()
    ctx.dispose()
    ctx, outcomes = _redeem_in_threads(pg_url, code, ids)
    try:
        assert sorted(o[0] for o in outcomes) == ["ok", "used", "used", "used"]
        winner = next(o[1] for o in outcomes if o[0] == "ok")
        with ctx.Session() as session:
            credited = session.execute(select(LedgerEntry.account_id, LedgerEntry.amount)
                                       .where(LedgerEntry.kind == "payment")).all()
            assert credited == [(winner, Decimal("500.00"))]
            assert ledger.balance_mismatches(session) == []
    finally:
        ctx.dispose()


def test_one_account_submitting_twice_at_once_credits_once(pg_url):
    ctx = make_context(pg_url)
    code = _issue(ctx)[0]
    with ctx.Session() as session:
        account_id = accounts.create_account(session, number="race-self", name="Racer").id
        session.commit()
    ctx.dispose()
    ctx, outcomes = _redeem_in_threads(pg_url, code, [account_id] * 3)
    try:
        assert sorted(o[2] for o in outcomes) == [False, False, True]
        assert _balance(ctx, account_id) == Decimal("500.00")
    finally:
        ctx.dispose()


# -- the test payment provider -------------------------------------------------

def _start(client, amount="250"):
    page = client.get("/topup")
    return client.post("/topup/online", data={"amount": amount,
                                              "csrf_token": csrf_token(page.text)})


def _bank(client, location, decision):
    page = client.get(location)
    assert page.status_code == 200
    return client.post(location, data={"decision": decision,
                                       "csrf_token": csrf_token(page.text)})


def _row(ctx, txn_id=None):
    with ctx.Session() as session:
        query = select(ProviderPayment)
        if txn_id:
            query = query.where(ProviderPayment.txn_id == txn_id)
        return session.scalars(query).one()


def _callback(client, body: dict | bytes, secret=SECRET, signature=None):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    signature = signature or payments.sign(secret, raw)
    return client.post("/payments/callback/testpay", data=raw,
                       headers={"X-Testpay-Signature": signature,
                                "Content-Type": "application/json"})


def test_pay_through_the_test_bank(logged_in, cabinet_ctx, subscriber):
    started = _start(logged_in, "250.50")
    assert started.status_code == 302
    location = started.location
    assert re.search(r"/testpay/tp-[0-9a-f]{24}$", location)
    bank_page = logged_in.get(location).text
    assert "250.50" in bank_page and "TestPay" in bank_page
    assert _row(cabinet_ctx).status == "pending"
    assert _balance(cabinet_ctx, subscriber.account_id) == Decimal("100.00")

    paid = _bank(logged_in, location, "pay")
    assert paid.status_code == 302 and "/topup/return/" in paid.location
    result = logged_in.get(paid.location)
    assert "The payment of ₽250.50 is received" in result.text
    row = _row(cabinet_ctx)
    assert row.status == "paid" and row.settled_at and row.entry_id
    assert _balance(cabinet_ctx, subscriber.account_id) == Decimal("350.50")
    with cabinet_ctx.Session() as session:
        entry = session.get(LedgerEntry, row.entry_id)
        assert entry.idempotency_key == f"payment:testpay:{row.txn_id}"
    # The bank page cannot pay it twice.
    assert "already processed" in logged_in.get(location).text
    assert _bank(logged_in, location, "pay").status_code == 302
    assert _balance(cabinet_ctx, subscriber.account_id) == Decimal("350.50")


def test_the_payments_page_starts_a_card_payment(client, logged_in, cabinet_ctx, subscriber):
    page = logged_in.get("/payments").text
    assert 'data-test="payments-topup"' in page
    response = logged_in.post("/topup/online", data={"amount": "99.90",
                                                     "csrf_token": csrf_token(page)})
    assert response.status_code == 302 and "/testpay/" in response.location
    assert _row(cabinet_ctx).amount == Decimal("99.90")
    _add_user(cabinet_ctx, subscriber.account_id, "viewer-p", "viewer")
    viewer = logged_in.application.test_client()
    log_in(viewer, "viewer-p", "role-pass-123", lang="en")
    assert 'data-test="payments-topup"' not in viewer.get("/payments").text


def test_a_declined_payment_moves_no_money(logged_in, cabinet_ctx, subscriber):
    location = _start(logged_in).location
    declined = _bank(logged_in, location, "decline")
    assert "was declined" in logged_in.get(declined.location).text
    assert _row(cabinet_ctx).status == "declined"
    assert _balance(cabinet_ctx, subscriber.account_id) == Decimal("100.00")
    # A late "paid" for a declined payment changes nothing either.
    txn = _row(cabinet_ctx).txn_id
    late = _callback(logged_in, {"txn_id": txn, "amount": "250.00", "status": "paid"})
    assert late.status_code == 200 and late.json["credited"] is False
    assert _balance(cabinet_ctx, subscriber.account_id) == Decimal("100.00")


@pytest.mark.parametrize("signature", ["0" * 64, "", "not-hex"])
def test_a_bad_signature_is_refused_and_changes_nothing(logged_in, cabinet_ctx, subscriber,
                                                        signature):
    _start(logged_in)
    txn = _row(cabinet_ctx).txn_id
    body = {"txn_id": txn, "amount": "250.00", "status": "paid"}
    response = _callback(logged_in, body, signature=signature or " ")
    assert response.status_code == 400
    assert "signature" in response.json["error"]
    forged = _callback(logged_in, body, secret="guessed-secret")
    assert forged.status_code == 400
    assert _row(cabinet_ctx).status == "pending"
    assert _balance(cabinet_ctx, subscriber.account_id) == Decimal("100.00")


def test_a_replayed_callback_is_credited_once(app, logged_in, cabinet_ctx, subscriber):
    _start(logged_in)
    txn = _row(cabinet_ctx).txn_id
    body = {"txn_id": txn, "amount": "250.00", "status": "paid"}
    bank = app.test_client()  # the bank's server: no cookie, no CSRF token
    first = _callback(bank, body)
    second = _callback(bank, body)
    assert (first.status_code, second.status_code) == (200, 200)
    assert (first.json["credited"], second.json["credited"]) == (True, False)
    assert _balance(cabinet_ctx, subscriber.account_id) == Decimal("350.00")
    with cabinet_ctx.Session() as session:
        assert session.scalar(select(func.count()).select_from(LedgerEntry).where(
            LedgerEntry.idempotency_key == f"payment:testpay:{txn}")) == 1


def test_an_amount_mismatch_is_refused(app, logged_in, cabinet_ctx, subscriber):
    _start(logged_in, "250")
    txn = _row(cabinet_ctx).txn_id
    response = _callback(app.test_client(), {"txn_id": txn, "amount": "2500.00",
                                             "status": "paid"})
    assert response.status_code == 400 and "2500.00" in response.json["error"]
    assert _row(cabinet_ctx).status == "pending"
    assert _balance(cabinet_ctx, subscriber.account_id) == Decimal("100.00")


@pytest.mark.parametrize("body", [
    {"txn_id": "tp-unknown", "amount": "1.00", "status": "paid"},
    {"txn_id": "x", "amount": "1.5e400", "status": "paid"},
    {"txn_id": "x", "amount": "1.00", "status": "refunded"},
    b"not json",
])
def test_a_callback_that_is_no_payment_is_refused(app, cabinet_ctx, body):
    response = _callback(app.test_client(), body)
    assert response.status_code == 400
    with cabinet_ctx.Session() as session:
        assert session.scalar(select(func.count()).select_from(LedgerEntry)) == 0


@pytest.mark.parametrize("amount, message", [
    ("5", "A top-up must be between 10.00 and 100,000.00"),
    ("100001", "A top-up must be between"),
    ("10.005", "A top-up must be an amount like 100 or 99.50"),
    ("abc", "Not a valid decimal value"),
    ("", "This field is required"),
])
def test_a_bad_top_up_amount_is_refused(logged_in, cabinet_ctx, amount, message):
    response = _start(logged_in, amount)
    assert response.status_code == 400
    assert message in response.text
    with cabinet_ctx.Session() as session:
        assert session.scalar(select(func.count()).select_from(ProviderPayment)) == 0


def test_another_accounts_payment_answers_404(app, logged_in, cabinet_ctx):
    _start(logged_in)
    txn = _row(cabinet_ctx).txn_id
    other = seed_subscriber(cabinet_ctx, balance="0")
    second = app.test_client()
    log_in(second, other.login, other.password, lang="en")
    assert second.get(f"/topup/return/{txn}").status_code == 404
    assert second.get("/topup/return/tp-nothing").status_code == 404
    assert logged_in.get(f"/topup/return/{txn}").status_code == 200


def test_without_the_test_provider_there_is_no_online_payment(db_url, tmp_path):
    from cabinet.app import create_app
    ctx = make_context(db_url, data_dir=tmp_path)
    try:
        client = create_app(ctx, testing=True).test_client()
        person = seed_subscriber(ctx, balance="0")
        log_in(client, person.login, person.password, lang="en")
        page = client.get("/topup")
        assert "Online payment is not available" in page.text
        assert 'data-test="payments-topup"' not in client.get("/payments").text
        assert _start(client).status_code == 404
        assert client.get("/testpay/tp-x").status_code == 404
        assert _callback(client, {"txn_id": "x", "amount": "1.00",
                                  "status": "paid"}).status_code == 404
    finally:
        ctx.dispose()


# -- PDF documents ------------------------------------------------------------

def _pdf_text(response) -> str:
    from pypdf import PdfReader
    assert response.status_code == 200, response.text
    assert response.mimetype == "application/pdf"
    assert response.data.startswith(b"%PDF")
    reader = PdfReader(io.BytesIO(response.data))
    return "\n".join(page.extract_text() for page in reader.pages)


def _seed_ledger(ctx, account_id):
    """100 seed (Oct 1), fee -20 (Oct 31), 300 payment (Nov 10), traffic -7.50 and
    fee -20 (Nov 30), a reversed fee of -5 (Nov 15)."""
    with ctx.Session() as session:
        account = session.get(Account, account_id)
        accounts.add_payment(session, account, "300", external_id="bank-42")
        ledger.post(session, account_id=account_id, amount="-20", kind="fee", key="fee:oct",
                    author="test", memo="Абонентская плата за октябрь")
        ledger.post(session, account_id=account_id, amount="-20", kind="fee", key="fee:nov",
                    author="test")
        ledger.post(session, account_id=account_id, amount="-7.50", kind="traffic",
                    key="traffic:nov", author="test")
        wrong = ledger.post(session, account_id=account_id, amount="-5", kind="fee",
                            key="fee:wrong", author="test")
        ledger.reverse(session, wrong.entry_id, author="test")
        times = {f"payment:manual:seed-{account.number}": dt.datetime(2026, 10, 1, 10),
                 "fee:oct": dt.datetime(2026, 10, 31, 10),
                 "payment:manual:bank-42": dt.datetime(2026, 11, 10, 10),
                 "fee:wrong": dt.datetime(2026, 11, 15, 10),
                 f"reversal:{wrong.entry_id}": dt.datetime(2026, 11, 15, 11),
                 "traffic:nov": dt.datetime(2026, 11, 30, 9),
                 "fee:nov": dt.datetime(2026, 11, 30, 10)}
        for key, moment in times.items():
            session.execute(update(LedgerEntry).where(LedgerEntry.idempotency_key == key)
                            .values(created_at=moment))
        session.commit()


TAIL = re.compile(r"(-?₽[\d,]+\.\d\d)(?: (-?₽[\d,]+\.\d\d))?$")


def _figures(line: str) -> list[Decimal]:
    match = TAIL.search(line)
    assert match, line
    return [Decimal(value.replace(",", "").replace("₽", "")) for value in match.groups()
            if value]


def test_statement_pdf_adds_up_and_is_searchable(logged_in, cabinet_ctx, subscriber):
    _seed_ledger(cabinet_ctx, subscriber.account_id)
    response = logged_in.get("/payments.pdf?from=2026-11-01&to=2026-11-30")
    assert f"statement-{subscriber.number}-2026-11-01-2026-11-30.pdf" in \
        response.headers["Content-Disposition"]
    text = _pdf_text(response)
    assert "Money flow" in text and subscriber.number in text
    lines = text.splitlines()
    opening = _figures(next(line for line in lines if "Opening balance" in line))
    closing = _figures(next(line for line in lines if "Closing balance" in line))
    # Days in words ("Nov 10, 2026"), not "11/10/26"; an operation's text
    # may wrap inside its cell.
    entries = [[Decimal(v.replace(",", "").replace("₽", "")) for v in pair] for pair in re.findall(
        r"[A-Z][a-z]{2} \d{1,2}, 2026, .*?(-?₽[\d,]+\.\d\d) (-?₽[\d,]+\.\d\d)",
        " ".join(lines))]
    assert opening == [Decimal("80.00")] and closing == [Decimal("352.50")]
    amounts = [amount for amount, _after in entries]
    assert amounts == [Decimal("300.00"), Decimal("-5.00"), Decimal("5.00"),
                       Decimal("-7.50"), Decimal("-20.00")]
    assert opening[0] + sum(amounts) == closing[0]
    # Each line's balance after is the running sum.
    running = opening[0]
    for amount, after in entries:
        running += amount
        assert after == running
    assert "Subscription fee" in text and "Payment" in text and "Traffic" in text
    assert "Correction — cancels “Subscription fee” of" in " ".join(text.split())
    assert "Came in: ₽305.00" in text and "Spent: ₽32.50" in text


def test_statement_pdf_in_russian(client, cabinet_ctx, subscriber):
    log_in(client, subscriber.login, subscriber.password, lang="ru")
    _seed_ledger(cabinet_ctx, subscriber.account_id)
    text = _pdf_text(client.get("/payments.pdf?from=2026-10-01&to=2026-10-31"))
    text = " ".join(text.split())  # a long memo wraps inside its cell
    assert "Движение средств" in text and "Период" in text
    assert "Баланс на начало периода" in text and "Баланс на конец периода" in text
    # The operator's memo of a row without a code is not shown; its kind is.
    assert "Абонентская плата" in text and "октябрь" not in text
    # (the split above made the no-break space before ₽ a space)
    assert subscriber.number in text and "-20,00 ₽" in text and "80,00 ₽" in text
    assert "Поступило: 100,00 ₽" in text and "Списано: 20,00 ₽" in text
    backward = client.get("/payments.pdf?from=2026-11-30&to=2026-11-01")
    assert backward.status_code == 400 and "Период" in backward.text


@pytest.fixture
def company(cabinet_ctx):
    return seed_subscriber(cabinet_ctx, balance="100", kind="company",
                           name="ООО «Ромашка»")


@pytest.mark.parametrize("kind, title", [("invoice", "Счёт № "), ("act", "Акт № ")])
def test_company_invoice_and_act_in_russian(client, cabinet_ctx, company, kind, title):
    log_in(client, company.login, company.password, lang="ru")
    _seed_ledger(cabinet_ctx, company.account_id)
    assert "/documents" in client.get("/payments").text
    listing = client.get("/documents").text
    assert f'href="/documents/{kind}-' in listing
    assert re.search(r">[а-я]+ \d{4}<", listing)  # month names, in Russian
    response = client.get(f"/documents/{kind}-2026-11.pdf")
    assert f"{kind}-{company.number}-202611.pdf" in response.headers["Content-Disposition"]
    text = _pdf_text(response)
    assert f"{title}{company.number}-202611" in text
    assert "ООО «Ромашка»" in text and company.number in text
    assert "Абонентская плата, ноябрь 2026" in text and "Трафик, ноябрь 2026" in text
    # Fees 20 (the reversed 5 is netted out) + traffic 7.50.
    assert "20,00" in text and "7,50" in text and "27,50" in text
    assert "5,00" not in text.replace("25,00", "")


def test_company_documents_add_up(cabinet_ctx, company):
    from rating import documents
    _seed_ledger(cabinet_ctx, company.account_id)
    with cabinet_ctx.Session() as session:
        doc = documents.month_services(session, company.account_id, dt.date(2026, 11, 1),
                                       dt.date(2026, 11, 30), dt.datetime(2026, 11, 1),
                                       dt.datetime(2026, 12, 1))
    assert [(line.kind, line.amount) for line in doc.lines] == [
        ("fee", Decimal("20.00")), ("traffic", Decimal("7.50"))]
    assert doc.total == Decimal("27.50")


def test_a_person_has_monthly_statements_but_no_invoices(logged_in, cabinet_ctx, subscriber):
    assert "Monthly statements" in logged_in.get("/payments").text
    page = logged_in.get("/documents")
    assert page.status_code == 200
    assert 'data-test="statement-' in page.text and 'data-test="invoice-' not in page.text
    assert logged_in.get("/documents/invoice-2026-11.pdf").status_code == 404
    _seed_ledger(cabinet_ctx, subscriber.account_id)
    response = logged_in.get("/documents/statement-2026-11.pdf")
    assert f"statement-{subscriber.number}-2026-11.pdf" in response.headers["Content-Disposition"]
    text = " ".join(_pdf_text(response).split())
    assert "Statement for November 2026" in text
    assert "Opening balance ₽80.00" in text and "Closing balance ₽352.50" in text
    assert logged_in.get("/documents/statement-2999-01.pdf").status_code == 404
    bad = logged_in.get("/documents/statement-2026-13.pdf")
    assert bad.status_code == 400 and "2026-11" in bad.text


def test_a_viewer_may_download_documents(client, cabinet_ctx, company):
    _add_user(cabinet_ctx, company.account_id, "viewer-c", "viewer")
    log_in(client, "viewer-c", "role-pass-123", lang="en")
    _seed_ledger(cabinet_ctx, company.account_id)
    assert "Invoice No." in _pdf_text(client.get("/documents/invoice-2026-11.pdf"))
    assert "Money flow" in _pdf_text(client.get("/payments.pdf?from=2026-11-01&to=2026-11-30"))
    assert client.get("/documents/receipt-2026-11.pdf").status_code == 404
    assert client.get("/documents/act-2026-13.pdf").status_code == 400


# -- the voucher CLI ----------------------------------------------------------

def test_voucher_cli_issues_codes_once_and_lists_them(abonent, db_url):
    issued = json.loads(abonent("voucher", "issue", "--count", "3", "--amount", "299.90",
                                "--batch", "shop-7", "--json").stdout)
    assert len(issued) == 3 and {v["amount"] for v in issued} == {"299.90"}
    assert all(re.fullmatch(r"([2-9A-Z]{4}-){3}[2-9A-Z]{4}", v["code"]) for v in issued)
    assert len({v["code"] for v in issued}) == 3

    plain = abonent("voucher", "issue", "--count", "2", "--amount", "100")
    assert len(plain.stdout.split()) == 2 and "shown only now" in plain.stderr

    listed = json.loads(abonent("voucher", "list", "--batch", "shop-7", "--json").stdout)
    assert [v["code_tail"] for v in listed] == [v["code"][-4:] for v in issued]
    assert all(v["redeemed_by"] is None for v in listed)
    assert issued[0]["code"] not in abonent("voucher", "list", "--json").stdout

    ctx = make_context(db_url)
    try:
        with ctx.Session() as session:
            account = accounts.create_account(session, number="cli-1", name="Card Buyer")
            vouchers.redeem(session, account, issued[0]["code"], actor="test")
            session.commit()
    finally:
        ctx.dispose()
    listed = json.loads(abonent("voucher", "list", "--json").stdout)
    assert listed[0]["redeemed_by"] == "cli-1" and listed[0]["redeemed_at"]
    assert "cli-1" in abonent("voucher", "list").stdout


@pytest.mark.parametrize("args, message", [
    (["--count", "0", "--amount", "100"], "--count must be 1 to 10000"),
    (["--count", "10001", "--amount", "100"], "--count must be 1 to 10000"),
    (["--count", "2", "--amount", "-5"], "a voucher must be worth 0.01 to"),
    (["--count", "2", "--amount", "abc"], "amount must be an amount like"),
    (["--count", "2", "--amount", "1.005"], "amount must be an amount like"),
    (["--count", "2", "--amount", "5", "--batch", "bad batch!"], "a batch name must be"),
])
def test_voucher_cli_refuses_bad_input(abonent, args, message):
    result = abonent("voucher", "issue", *args, code=2)
    assert message in result.stderr and "Traceback" not in result.output
    assert json.loads(abonent("voucher", "list", "--json").stdout) == []


def test_the_same_callback_arriving_twice_at_once_credits_once(pg_url):
    """Banks retry: two deliveries of one notice race on two workers."""
    ctx = make_context(pg_url)
    try:
        provider = payments.TestPay(SECRET)
        with ctx.Session() as session:
            account = accounts.create_account(session, number="race-cb", name="Payer")
            row, _checkout = payments.start(session, provider, account, "250",
                                            payments.Limits(), actor="test")
            session.commit()
            account_id, txn = account.id, row.txn_id
        body, headers = provider.notice_body(txn, Decimal("250.00"), "paid")
        barrier = threading.Barrier(4)
        credited = []

        def deliver():
            notice = provider.verify_callback(body, headers)
            with ctx.Session() as session:
                barrier.wait()
                result = payments.settle(session, "testpay", notice)
                session.commit()
                credited.append(result.credited)

        threads = [threading.Thread(target=deliver) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert sorted(credited) == [False, False, False, True]
        assert _balance(ctx, account_id) == Decimal("250.00")
        assert _row(ctx, txn).status == "paid"
    finally:
        ctx.dispose()


@pytest.mark.parametrize("setting, value", [
    ("payments_min_topup", "ten"), ("payments_max_topup", "5.00"),
    ("payments_voucher_limits_account", "five a minute"),
])
def test_bad_payment_settings_stop_the_start(tmp_path, setting, value):
    from cabinet.app import create_app
    from config.settings import SettingsError
    # Amounts are refused when the settings load, the rest when the
    # cabinet starts: either way nothing starts with them.
    with pytest.raises(SettingsError, match="payments"):
        ctx = make_context(f"sqlite:///{tmp_path}/x.sqlite3", data_dir=tmp_path,
                           **{setting: value})
        try:
            create_app(ctx, testing=True)
        finally:
            ctx.dispose()
