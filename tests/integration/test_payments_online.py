"""Online acquiring through YooKassa's SDK against a fake of its API on
127.0.0.1 (tests/fake_yookassa.py), on SQLite and PostgreSQL: the cabinet's
start with an idempotence key and the 54-FZ receipt, the webhook (checked
with the API; replayed; lost and recovered by polling; from a stranger;
for an unknown payment; with an amount that differs), expiry and a late
payment, refunds (partial, over the amount refused, retried once),
autopay once a day even when two runs race, and the operator's commands.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import uuid
from decimal import Decimal

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from cabinet.app import CabinetServer, create_app
from rating import accounts, autopay, payments, yookassa
from rating.models import Account, LedgerEntry
from rating.payments import ProviderPayment
from scripts.cli import cli
from tests.conftest import free_tcp_port, make_context
from tests.factories import make_tariff
from tests.fake_yookassa import FakeYooKassa
from tests.integration.cabinet_helpers import csrf_token, log_in, seed_subscriber

EMAIL = "ivan@example.ru"


@pytest.fixture
def fake():
    server = FakeYooKassa().start()
    yield server
    server.stop()


def _settings(fake, **extra) -> dict:
    values = dict(yookassa_shop_id=fake.shop_id, yookassa_secret_key=fake.secret_key,
                  yookassa_api_url=fake.api_url, yookassa_webhook_networks="127.0.0.0/8",
                  payments_pending_expiry_minutes="30")
    values.update(extra)
    return values


@pytest.fixture
def acq(db_url, tmp_path, fake):
    """The context, a live cabinet the fake sends webhooks to, and the fake."""
    context = make_context(db_url, data_dir=tmp_path, **_settings(fake))
    server = CabinetServer(context, host="127.0.0.1", port=free_tcp_port()).start()
    fake.webhook_url = f"{server.url}/payments/callback/yookassa"
    yield context
    server.stop()
    context.dispose()


@pytest.fixture
def provider(fake):
    return yookassa.YooKassa(fake.shop_id, fake.secret_key, api_url=fake.api_url,
                             return_url="http://127.0.0.1/topup/back")


@pytest.fixture
def subscriber(acq):
    return seed_subscriber(acq, balance="100", email=EMAIL)


@pytest.fixture
def web(acq, tmp_path, subscriber):
    """A Flask test client of the same cabinet, logged in, in English."""
    client = create_app(acq, testing=True).test_client()
    assert log_in(client, subscriber.login, subscriber.password, lang="en").status_code == 302
    return client


@pytest.fixture
def run(db_url, tmp_path, fake):
    """`abonent …` with YooKassa configured: run("payment", "list", code=0)."""
    env = {"ABONENT_DATABASE_URL": db_url, "ABONENT_DATA_DIR": str(tmp_path),
           "ABONENT_ACTOR": "admin:test",
           **{f"ABONENT_{k.upper()}": v for k, v in _settings(fake).items()}}

    def invoke(*args, code=0):
        result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
        assert result.exit_code == code, (result.output, result.stderr)
        return result
    return invoke


def _balance(ctx, account_id) -> Decimal:
    with ctx.Session() as session:
        return session.get(Account, account_id).balance


def _payment(ctx, **where) -> ProviderPayment:
    with ctx.Session() as session:
        query = select(ProviderPayment)
        for key, value in where.items():
            query = query.where(getattr(ProviderPayment, key) == value)
        row = session.scalar(query)
        session.expunge_all()
        return row


def _history(ctx, payment_id) -> list[tuple]:
    with ctx.Session() as session:
        return [(e.from_status, e.to_status, e.source, e.detail)
                for e in payments.history(session, payment_id)]


def _start(ctx, provider, account_id, amount="250.00", key=None, save=False):
    with ctx.Session() as session:
        account = session.get(Account, account_id)
        request = payments.CreateRequest(
            idempotence_key=key or payments.new_key(), return_url="http://127.0.0.1/back",
            receipt=yookassa.receipt(account, Decimal(amount), 1), save_method=save)
        row, checkout = payments.start(session, provider, account, amount,
                                       payments.Limits(), actor="cabinet:test",
                                       request=request)
        session.commit()
        return row.id, checkout


def _topup(web, amount="250"):
    page = web.get("/payments")
    assert page.status_code == 200
    key = page.text.split('name="key" value="', 1)[1].split('"', 1)[0]
    data = {"amount": amount, "key": key, "csrf_token": csrf_token(page.text)}
    return key, data, web.post("/topup/online", data=data)


# -- the cabinet's start ----------------------------------------------------------

def test_the_cabinet_starts_one_payment_per_key_with_the_receipt(acq, web, fake, subscriber):
    key, data, response = _topup(web)
    assert response.status_code == 302 and response.location.endswith(f"/topup/go?key={key}")
    # A page of ours takes the browser to the provider's (the CSP's
    # form-action 'self' would stop a redirect there).
    go = web.get(response.location)
    assert go.status_code == 200 and f'href="{fake.url}/pay/' in go.text
    # The form sent again (a double click): the same payment, one row.
    again = web.post("/topup/online", data=data)
    assert again.status_code == 302 and again.location == response.location
    creates = [r for r in fake.requests if r["path"] == "/v3/payments"]
    assert len(creates) == 1 and creates[0]["key"] == key and creates[0]["auth_ok"]
    body = creates[0]["body"]
    assert body["amount"] == {"value": "250.00", "currency": "RUB"} and body["capture"]
    assert body["confirmation"]["return_url"].endswith(f"/topup/back?key={key}")
    item = body["receipt"]["items"][0]
    assert body["receipt"]["customer"] == {"email": EMAIL}
    assert item["description"] == f"Оплата услуг связи, л/с {subscriber.number}"
    assert (item["vat_code"], item["payment_subject"], item["payment_mode"]) == \
        (1, "service", "full_prepayment")
    assert Decimal(item["quantity"]) == 1 and item["amount"]["value"] == "250.00"
    with acq.Session() as session:
        assert session.scalar(select(func.count()).select_from(ProviderPayment)) == 1
    row = _payment(acq, idempotence_key=key)
    assert row.status == "pending" and row.receipt["customer"] == {"email": EMAIL}
    # The return page says it is waiting.
    back = web.get(f"/topup/back?key={key}")
    assert "waiting for the bank" in back.text
    assert web.get(f"/topup/back?key={uuid.uuid4().hex}").status_code == 404


def test_a_key_reused_for_another_amount_is_refused(acq, provider, subscriber, fake):
    key = payments.new_key()
    first, _ = _start(acq, provider, subscriber.account_id, "250.00", key=key)
    same, _ = _start(acq, provider, subscriber.account_id, "250.00", key=key)
    assert same == first
    with pytest.raises(payments.PaymentError, match="another amount"):
        _start(acq, provider, subscriber.account_id, "300.00", key=key)
    assert len([r for r in fake.requests if r["path"] == "/v3/payments"]) == 1


def test_without_a_contact_for_the_receipt_nothing_starts(acq, fake):
    person = seed_subscriber(acq, balance="0")
    client = create_app(acq, testing=True).test_client()
    log_in(client, person.login, person.password, lang="en")
    _key, _data, response = _topup(client)
    assert response.status_code == 400 and "receipt" in response.text
    assert fake.requests == []


# -- webhooks -------------------------------------------------------------------

def test_paid_webhook_credits_once_even_replayed(acq, provider, fake, subscriber):
    payment_id, checkout = _start(acq, provider, subscriber.account_id)
    fake.decide(checkout.txn_id)
    assert fake.webhooks_sent[-1]["code"] == 200
    assert _balance(acq, subscriber.account_id) == Decimal("350.00")
    assert fake.send_webhook(checkout.txn_id) == 200  # replayed
    assert _balance(acq, subscriber.account_id) == Decimal("350.00")
    with acq.Session() as session:
        entries = session.scalar(select(func.count()).select_from(LedgerEntry).where(
            LedgerEntry.idempotency_key == f"payment:yookassa:{checkout.txn_id}"))
        assert entries == 1
    assert _payment(acq, id=payment_id).status == "paid"
    assert [h[:3] for h in _history(acq, payment_id)] == [(None, "pending", "cabinet"),
                                                           ("pending", "paid", "webhook")]


def test_a_declined_payment_moves_no_money(acq, provider, fake, subscriber):
    payment_id, checkout = _start(acq, provider, subscriber.account_id)
    fake.decide(checkout.txn_id, paid=False)
    assert _payment(acq, id=payment_id).status == "declined"
    assert _balance(acq, subscriber.account_id) == Decimal("100.00")


def test_the_webhook_body_is_not_trusted_the_api_is(acq, provider, fake, subscriber):
    """A forged 'succeeded' notice for a payment the API says is pending."""
    payment_id, checkout = _start(acq, provider, subscriber.account_id)
    forged = json.loads(fake.notification(checkout.txn_id))
    forged["event"], forged["object"]["status"] = "payment.succeeded", "succeeded"
    import urllib.request
    request = urllib.request.Request(fake.webhook_url, data=json.dumps(forged).encode(),
                                     method="POST")
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200
    assert _payment(acq, id=payment_id).status == "pending"
    assert _balance(acq, subscriber.account_id) == Decimal("100.00")


def test_an_amount_mismatch_changes_nothing(acq, provider, fake, subscriber):
    payment_id, checkout = _start(acq, provider, subscriber.account_id)
    fake.lose_webhooks = True
    fake.decide(checkout.txn_id)
    fake.payments[checkout.txn_id]["amount"]["value"] = "2500.00"
    assert fake.send_webhook(checkout.txn_id) == 400
    assert _payment(acq, id=payment_id).status == "pending"
    assert _balance(acq, subscriber.account_id) == Decimal("100.00")


def test_a_webhook_for_an_unknown_payment_is_refused(acq, provider, fake, subscriber):
    # Unknown to the API (404 there) ...
    body = json.dumps({"type": "notification", "event": "payment.succeeded",
                       "object": {"id": str(uuid.uuid4()), "status": "succeeded"}}).encode()
    import urllib.error
    import urllib.request
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(urllib.request.Request(fake.webhook_url, data=body,
                                                      method="POST"), timeout=10)
    refused.value.close()  # the error holds the response's socket
    assert refused.value.code == 400
    # ... and known to the API but not ours (another shop's integration).
    other = yookassa.YooKassa(fake.shop_id, fake.secret_key, api_url=fake.api_url)
    with acq.Session() as session:
        account = session.get(Account, subscriber.account_id)
        checkout = other.create(account, Decimal("50.00"),
                                payments.CreateRequest(idempotence_key="elsewhere",
                                                       return_url="http://127.0.0.1/"))
    fake.payments[checkout.txn_id]["status"] = "succeeded"
    assert fake.send_webhook(checkout.txn_id) == 400
    assert _balance(acq, subscriber.account_id) == Decimal("100.00")
    with acq.Session() as session:
        assert session.scalar(select(func.count()).select_from(ProviderPayment)) == 0


def test_a_webhook_from_a_stranger_is_refused_before_the_api_is_asked(acq, provider, fake,
                                                                       subscriber, db_url,
                                                                       tmp_path):
    payment_id, checkout = _start(acq, provider, subscriber.account_id)
    fake.lose_webhooks = True
    fake.decide(checkout.txn_id)
    strict = make_context(db_url, data_dir=tmp_path,
                          **_settings(fake, yookassa_webhook_networks="77.75.153.0/25"))
    try:
        client = create_app(strict, testing=True).test_client()
        asked = len(fake.requests)
        response = client.post("/payments/callback/yookassa",
                               data=fake.notification(checkout.txn_id),
                               environ_base={"REMOTE_ADDR": "203.0.113.9"})
        assert response.status_code == 403
        assert len(fake.requests) == asked
        ok = client.post("/payments/callback/yookassa", data=fake.notification(checkout.txn_id),
                         environ_base={"REMOTE_ADDR": "77.75.153.10"})
        assert ok.status_code == 200
    finally:
        strict.dispose()
    assert _balance(acq, subscriber.account_id) == Decimal("350.00")


# -- lost webhooks, expiry ---------------------------------------------------------

def test_a_lost_webhook_is_recovered_by_polling(acq, provider, fake, subscriber, run):
    payment_id, checkout = _start(acq, provider, subscriber.account_id)
    fake.lose_webhooks = True
    fake.decide(checkout.txn_id)
    assert _balance(acq, subscriber.account_id) == Decimal("100.00")
    result = json.loads(run("payment", "poll", "--json").stdout)
    assert result["checked"] == 1 and result["settled"][0]["credited"] is True
    assert _balance(acq, subscriber.account_id) == Decimal("350.00")
    # Polling again (or the webhook arriving after all) credits nothing more.
    assert json.loads(run("payments", "poll", "--json").stdout)["checked"] == 0
    assert fake.send_webhook(checkout.txn_id) == 200
    assert _balance(acq, subscriber.account_id) == Decimal("350.00")
    assert _history(acq, payment_id)[-1][:3] == ("pending", "paid", "poll")


def test_pending_payments_expire_and_a_late_payment_still_lands(acq, provider, fake,
                                                                subscriber, run):
    payment_id, checkout = _start(acq, provider, subscriber.account_id)
    fresh_id, _fresh = _start(acq, provider, subscriber.account_id, "120.00")
    with acq.Session() as session:
        row = session.get(ProviderPayment, payment_id)
        row.created_at = row.created_at - dt.timedelta(minutes=31)
        session.commit()
    assert "expired 1 payment" in run("payment", "expire").stdout
    assert "expired 0 payment" in run("payment", "expire").stdout
    assert _payment(acq, id=payment_id).status == "expired"
    assert _payment(acq, id=fresh_id).status == "pending"
    # The bank confirms it after all: the money is credited, late.
    fake.decide(checkout.txn_id)
    row = _payment(acq, id=payment_id)
    assert row.status == "paid" and row.late
    assert _balance(acq, subscriber.account_id) == Decimal("350.00")
    history = _history(acq, payment_id)
    assert [h[:3] for h in history[1:]] == [("pending", "expired", "cli"),
                                            ("expired", "paid", "webhook")]
    assert "late" in history[-1][3]
    shown = run("payment", "show", str(payment_id)).stdout
    assert "credited late" in shown and "expired" in shown


# -- refunds -----------------------------------------------------------------------

def test_refunds_are_partial_keyed_and_never_exceed_the_payment(acq, provider, fake,
                                                                subscriber, run):
    payment_id, checkout = _start(acq, provider, subscriber.account_id)
    fake.decide(checkout.txn_id)
    assert _balance(acq, subscriber.account_id) == Decimal("350.00")
    first = json.loads(run("payment", "refund", str(payment_id), "100", "--key", "rf-1",
                           "--json").stdout)
    assert first["created"] and first["amount"] == "100.00" and first["balance"] == "250.00"
    # The same refund again: nothing more.
    again = run("payment", "refund", str(payment_id), "100", "--key", "rf-1")
    assert "already made" in again.stdout
    assert _balance(acq, subscriber.account_id) == Decimal("250.00")
    # More than is left: refused, nothing sent, nothing changed.
    sent = len(fake.refunds)
    over = run("payment", "refund", str(payment_id), "150.01", code=2)
    assert "150.00" in over.stderr and "left" in over.stderr
    assert len(fake.refunds) == sent
    bad = run("payment", "refund", str(payment_id), "-5", code=2)
    assert "amount" in bad.stderr
    # The rest, by default.
    rest = json.loads(run("payment", "refund", checkout.txn_id, "--json").stdout)
    assert rest["amount"] == "150.00" and rest["refunded"] == "250.00"
    assert _balance(acq, subscriber.account_id) == Decimal("100.00")
    run("payment", "refund", str(payment_id), "1", code=2)
    with acq.Session() as session:
        keys = sorted(session.scalars(select(LedgerEntry.idempotency_key)
                                      .where(LedgerEntry.kind == "refund")))
    assert len(keys) == 2 and all(k.startswith("refund:yookassa-") for k in keys)
    assert "refund:yookassa-rf-1" in keys
    refund_body = [r for r in fake.requests if r["path"] == "/v3/refunds"][0]["body"]
    assert refund_body["receipt"]["items"][0]["amount"]["value"] == "100.00"
    shown = json.loads(run("payment", "show", str(payment_id), "--json").stdout)
    assert [r["amount"] for r in shown["refunds"]] == ["100.00", "150.00"]
    assert shown["receipt"]["customer"] == {"email": EMAIL}


def test_a_pending_payment_cannot_be_refunded(acq, provider, subscriber, run):
    payment_id, _checkout = _start(acq, provider, subscriber.account_id)
    assert "only a paid payment" in run("payment", "refund", str(payment_id), "10",
                                        code=2).stderr


# -- autopay -----------------------------------------------------------------------

def _saved_card(acq, provider, fake, account_id):
    _payment_id, checkout = _start(acq, provider, account_id, "100.00", save=True)
    fake.decide(checkout.txn_id)
    with acq.Session() as session:
        saved = payments.saved_method(session, account_id, "yookassa")
        assert saved is not None and saved.method_title == "Bank card *4444"


def _daily_tariff(acq) -> str:
    with acq.Session() as session:
        name = make_tariff(session, fee="3000.00", fee_period="daily").name
        session.commit()
    return name


def test_autopay_charges_once_a_day_even_when_two_runs_race(acq, provider, fake, db_url):
    person = seed_subscriber(acq, balance="20", email=EMAIL, tariff=_daily_tariff(acq))
    _saved_card(acq, provider, fake, person.account_id)
    today = dt.date.today()
    with acq.Session() as session:
        account = session.get(Account, person.account_id)
        assert autopay.days_left(account, today) < 5
        # Ten roubles leave it still due: the second run must be stopped
        # by the day's claim, not by the balance.
        autopay.configure(session, account, enabled=True, amount="10", days_below=5,
                          limits=payments.Limits(), actor="cabinet:test")
        session.commit()
    before = _balance(acq, person.account_id)
    results, barrier = [], threading.Barrier(2)

    def race():
        barrier.wait()
        results.extend(autopay.run(acq.Session, provider, today, limits=payments.Limits()))

    threads = [threading.Thread(target=race) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    outcomes = sorted(r.outcome for r in results)
    assert outcomes == ["paid", "skipped: charged today already"], outcomes
    assert _balance(acq, person.account_id) == before + Decimal("10.00")
    charges = [r for r in fake.requests if r["path"] == "/v3/payments"
               and "payment_method_id" in r["body"]]
    assert len(charges) == 1
    assert charges[0]["key"] == f"autopay-{person.account_id}-{today.isoformat()}"
    # Re-run the same day: nothing.
    assert [r.outcome for r in autopay.run(acq.Session, provider, today,
                                           limits=payments.Limits())] == \
        ["skipped: charged today already"]
    assert _balance(acq, person.account_id) == before + Decimal("10.00")
    row = _payment(acq, origin="autopay")
    assert row.status == "paid" and row.receipt["items"][0]["payment_mode"] == "full_prepayment"


def test_autopay_waits_for_the_threshold_and_the_switch(acq, provider, fake):
    person = seed_subscriber(acq, balance="5000", email=EMAIL, tariff=_daily_tariff(acq))
    _saved_card(acq, provider, fake, person.account_id)
    today = dt.date.today()
    with acq.Session() as session:
        account = session.get(Account, person.account_id)
        autopay.configure(session, account, enabled=True, amount="500", days_below=3,
                          limits=payments.Limits(), actor="cabinet:test")
        session.commit()
    assert autopay.run(acq.Session, provider, today, limits=payments.Limits()) == []
    with acq.Session() as session:
        account = session.get(Account, person.account_id)
        with pytest.raises(accounts.DomainError, match="from 1 to 30"):
            autopay.configure(session, account, enabled=True, amount="500", days_below=0,
                              limits=payments.Limits(), actor="cabinet:test")


def test_the_cabinet_turns_autopay_on(acq, web, subscriber):
    page = web.get("/payments")
    assert 'data-test="autopay"' in page.text and "No card is saved yet" in page.text
    response = web.post("/payments/autopay", data={
        "enabled": "y", "amount": "300", "days": "4", "csrf_token": csrf_token(page.text)})
    assert response.status_code == 302
    with acq.Session() as session:
        setting = autopay.get(session, subscriber.account_id)
        assert setting.enabled and setting.amount == Decimal("300.00") and setting.days_below == 4
    bad = web.post("/payments/autopay", data={"enabled": "y", "amount": "300", "days": "99",
                                              "csrf_token": csrf_token(page.text)})
    assert bad.status_code == 302
    with acq.Session() as session:
        assert autopay.get(session, subscriber.account_id).days_below == 4


# -- the operator's list -----------------------------------------------------------

def test_list_shows_every_provider_with_filters(acq, provider, fake, subscriber, run):
    paid_id, checkout = _start(acq, provider, subscriber.account_id)
    fake.decide(checkout.txn_id)
    _start(acq, provider, subscriber.account_id, "120.00")
    # A terminal agent's payment, as the agents' code writes it.
    with acq.Session() as session:
        session.add(ProviderPayment(provider="osmp:qiwi", txn_id="9001",
                                    account_id=subscriber.account_id, amount=Decimal("70.00"),
                                    status="paid"))
        session.commit()
    rows = json.loads(run("payment", "list", "--json").stdout)
    assert sorted(r["provider"] for r in rows) == ["osmp:qiwi", "yookassa", "yookassa"]
    paid = json.loads(run("payments", "list", "--state", "paid", "--provider", "yookassa",
                          "--json").stdout)
    assert [r["id"] for r in paid] == [paid_id]
    mine = json.loads(run("payment", "list", "--account", subscriber.number, "--since",
                          dt.date.today().isoformat(), "--json").stdout)
    assert len(mine) == 3
    assert json.loads(run("payment", "list", "--until", "2000-01-01", "--json").stdout) == []
    assert "osmp:qiwi" in run("payment", "list").stdout
    osmp = run("payment", "show", "9001").stdout
    assert "osmp:qiwi" in osmp and "paid" in osmp
    assert "must be a day" in run("payment", "list", "--since", "yesterday", code=2).stderr
    assert "no payment" in run("payment", "show", "424242", code=2).stderr
    assert "unknown" in run("payment", "list", "--account", "nobody", code=2).stderr.lower() \
        or run("payment", "list", "--account", "nobody", code=2)


# -- the pages in Russian -----------------------------------------------------------

def test_the_card_pages_in_russian_show_no_english(acq, provider, fake, subscriber, run):
    from tests.integration.test_cabinet_russian_text import latin_words, page_text
    client = create_app(acq, testing=True).test_client()
    assert log_in(client, subscriber.login, subscriber.password, lang="ru").status_code == 302
    key, _data, started = _topup(client, "250")
    pages = {"go": client.get(started.location).text}
    with acq.Session() as session:
        row = payments.find_by_key(session, key)
        txn_id = row.txn_id
    pages["waiting"] = client.get(f"/topup/back?key={key}").text
    fake.decide(txn_id)
    run("payment", "refund", txn_id, "50")
    with acq.Session() as session:
        account = session.get(Account, subscriber.account_id)
        autopay.configure(session, account, enabled=True, amount="500", days_below=3,
                          limits=payments.Limits(), actor=f"cabinet:{subscriber.login}")
        session.commit()
    pages["paid"] = client.get(f"/topup/back?key={key}").text
    pages["payments"] = client.get("/payments").text
    pages["history"] = client.get("/history").text
    assert "Автоплатёж" in pages["payments"] and "Сохранённая карта" not in pages["payments"]
    assert "Возврат" in pages["payments"]
    for name, markup in pages.items():
        assert latin_words(page_text(markup), {subscriber.login, 'Tariff'}) == set(), name


# -- the scheduler ---------------------------------------------------------------

def test_the_scheduler_polls_expires_and_autopays_when_yookassa_is_configured(
        acq, provider, fake, subscriber):
    from scripts.serve_scheduler import build_scheduler
    jobs_by_id = {job.id: job for job in build_scheduler(acq).get_jobs()}
    assert {"payment_expiry", "payment_poll", "autopay"} <= set(jobs_by_id)
    lost_id, lost = _start(acq, provider, subscriber.account_id)
    old_id, _old = _start(acq, provider, subscriber.account_id, "120.00")
    with acq.Session() as session:
        row = session.get(ProviderPayment, old_id)
        row.created_at = row.created_at - dt.timedelta(hours=2)
        session.commit()
    fake.lose_webhooks = True
    fake.decide(lost.txn_id)
    jobs_by_id["payment_expiry"].func()
    assert _payment(acq, id=old_id).status == "expired"
    jobs_by_id["payment_poll"].func()
    jobs_by_id["payment_poll"].func()
    assert _payment(acq, id=lost_id).status == "paid"
    assert _history(acq, lost_id)[-1][:3] == ("pending", "paid", "scheduler")
    assert _balance(acq, subscriber.account_id) == Decimal("350.00")
    assert jobs_by_id["autopay"].func() is None  # nobody has autopay on: nothing happens


def test_the_secret_key_never_reaches_a_log(acq, provider, fake, subscriber, caplog, run):
    import base64
    import logging
    caplog.set_level(logging.DEBUG)
    payment_id, checkout = _start(acq, provider, subscriber.account_id)
    fake.decide(checkout.txn_id)
    run("payment", "refund", str(payment_id), "10")
    wrong = yookassa.YooKassa(fake.shop_id, fake.secret_key + "-old", api_url=fake.api_url)
    with pytest.raises(payments.ProviderUnavailable) as refused:
        wrong.fetch(checkout.txn_id)
    token = base64.b64encode(f"{fake.shop_id}:{fake.secret_key}".encode()).decode()
    for text in (caplog.text, str(refused.value), repr(provider), repr(wrong)):
        assert fake.secret_key not in text and token not in text
    assert any(r["auth_ok"] is False for r in fake.requests)


def test_the_provider_down_is_a_clear_error_and_changes_nothing(acq, web, fake, subscriber,
                                                                 run):
    fake.stop()
    _key, _data, response = _topup(web)
    assert response.status_code == 503
    assert "does not answer" in response.text
    with acq.Session() as session:
        assert session.scalar(select(func.count()).select_from(ProviderPayment)) == 0
    # A pending payment the poll cannot ask about stays pending, with a line
    # on stderr.
    with acq.Session() as session:
        session.add(ProviderPayment(provider="yookassa", txn_id=str(uuid.uuid4()),
                                    account_id=subscriber.account_id, amount=Decimal("10.00")))
        session.commit()
    polled = run("payment", "poll")
    assert "settled 0" in polled.stdout and "did not answer" in polled.stderr

