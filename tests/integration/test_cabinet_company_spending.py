"""The company's spending and notice pages (issue 21) as its users see them:
the report by branch and service with CSV and PDF, limits set by a login
with "service" on the branch, notices sent by one with "users"; in Russian
and English, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

from pypdf import PdfReader
from sqlalchemy import select

from rating import accounts, ledger, org
from rating.models import Account, Notification, SpendingLimit
from tests.factories import make_account
from tests.integration.cabinet_helpers import (  # noqa: F401 (fixtures)
    app, cabinet_ctx, client, csrf_token, log_in)
from tests.integration.test_cabinet_russian_text import latin_words, page_text, pdf_text

PASSWORD = "correct-horse-1"
# The data's own Latin names (a company, its units, the lines' holder, logins).
OWN = {"Romashka", "Sales", "IT", "Ivan", "Petrov", "boss", "reader"}


def seed(ctx):
    """Romashka: Sales (two lines) and IT (one); "boss" has every right on
    Sales, "reader" only "view" on the whole company."""
    with ctx.Session() as session:
        customer = org.create_customer(session, kind="company", name="Romashka", actor="t")
        sales = org.create_unit(session, customer.id, "Sales", actor="t")
        it = org.create_unit(session, customer.id, "IT", actor="t")
        lines = []
        for unit, amount in ((sales, "100.00"), (sales, "25.50"), (it, "40.00")):
            account = make_account(session, balance="1000", kind="company",
                                   email=f"line{len(lines)}@example.net")
            org.attach_account(session, account.id, customer.id, actor="t", unit_id=unit.id)
            ledger.post(session, account_id=account.id, amount=-Decimal(amount), kind="fee",
                        key=f"fee:test:{account.id}", author="t")
            lines.append(account)
        boss = accounts.create_cabinet_user(session, lines[0], login="boss",
                                            password=PASSWORD)
        reader = accounts.create_cabinet_user(session, lines[2], login="reader",
                                              password=PASSWORD, role="viewer")
        org.grant(session, boss.id, customer.id, "view,service,users", actor="t",
                  unit_id=sales.id)
        org.grant(session, reader.id, customer.id, "view", actor="t")
        session.commit()
        return customer.id, sales.id, it.id, [line.id for line in lines], \
            [line.number for line in lines]


def test_a_branch_admin_reads_the_report_and_sets_a_limit(client, cabinet_ctx):
    customer_id, sales_id, it_id, ids, numbers = seed(cabinet_ctx)
    assert log_in(client, "boss", PASSWORD, lang="en").status_code == 302
    page = client.get("/company/spending")
    assert page.status_code == 200
    # Sales only: its two lines, not IT's.
    assert numbers[0] in page.text and numbers[1] in page.text and numbers[2] not in page.text
    assert "125.50" in page.text
    query = f"?branch={customer_id}:{sales_id}&from=2025-01-01&to=2030-12-31"
    rows = list(csv.reader(io.StringIO(
        client.get("/company/spending.csv" + query).text.lstrip("\ufeff"))))
    assert rows[-1][0] == "All branches" and rows[-1][-1] == "125.50"
    pdf = client.get("/company/spending.pdf" + query)
    assert pdf.mimetype == "application/pdf"
    assert numbers[0] in "".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf.data)).pages)
    # IT is not this login's: 404, not a report.
    assert client.get(f"/company/spending?branch={customer_id}:{it_id}").status_code == 404

    token = csrf_token(page.text)
    answer = client.post("/company/limits", data={
        "csrf_token": token, "scope": f"unit:{sales_id}", "metric": "money", "amount": "100",
        "warn_percent": "80", "action": "throttle"})
    assert answer.status_code == 302
    with cabinet_ctx.Session() as session:
        limit = session.scalar(select(SpendingLimit))
        assert limit.org_unit_id == sales_id and limit.amount == Decimal("100.00")
        # Sales has spent 125.50: both its lines are slowed at once.
        slowed = set(session.scalars(select(Account.id).where(
            Account.limit_throttled_until.is_not(None))))
        assert slowed == set(ids[:2])
    # The line's own overview says why it is slow.
    assert "Slowed by the spending limit" in client.get("/").text
    bad = client.post("/company/limits", data={
        "csrf_token": token, "scope": f"unit:{sales_id}", "metric": "money", "amount": "-3",
        "action": "notify"})
    assert bad.status_code == 400 and "more than zero" in bad.text
    # A unit out of reach is not found, whatever the form says.
    assert client.post("/company/limits", data={
        "csrf_token": token, "scope": f"unit:{it_id}", "metric": "money", "amount": "5",
        "action": "notify"}).status_code == 404
    assert client.post(f"/company/limits/{limit.id}/remove",
                       data={"csrf_token": token}).status_code == 302
    with cabinet_ctx.Session() as session:
        assert session.scalar(select(SpendingLimit)) is None


def test_a_notice_goes_to_the_branch_only_and_a_reader_may_not_send(client, cabinet_ctx, app):
    customer_id, sales_id, _it, ids, _numbers = seed(cabinet_ctx)
    assert log_in(client, "boss", PASSWORD, lang="ru").status_code == 302
    page = client.get("/company/notices")
    assert page.status_code == 200
    assert latin_words(page_text(page.text), OWN) == set()
    answer = client.post("/company/notices", data={
        "csrf_token": csrf_token(page.text), "branch": f"{customer_id}:{sales_id}",
        "text": "<script>alert(1)</script> Офис переезжает"})
    assert answer.status_code == 302
    listed = client.get("/company/notices").text
    assert "&lt;script&gt;" in listed and "<script>alert" not in listed
    with cabinet_ctx.Session() as session:
        reached = set(session.scalars(select(Notification.account_id).where(
            Notification.kind == "company-notice")))
    assert reached == set(ids[:2])
    spending_ru = client.get("/company/spending")
    assert latin_words(page_text(spending_ru.text), OWN) == set()
    csv_ru = client.get("/company/spending.csv").data.decode("utf-8-sig")
    assert "Все подразделения" in csv_ru and latin_words(csv_ru, OWN) == set()
    pdf_ru = pdf_text(client.get("/company/spending.pdf").data)
    assert "Расходы по подразделениям" in pdf_ru and latin_words(pdf_ru, OWN) == set()

    other = app.test_client()
    assert log_in(other, "reader", PASSWORD, lang="en").status_code == 302
    view = other.get("/company/notices")
    assert "may not send notices" in view.text
    assert other.post("/company/notices", data={
        "csrf_token": csrf_token(view.text), "branch": f"{customer_id}:",
        "text": "hello"}).status_code == 403
    # The reader sees the whole company's report, but sets no limit.
    report = other.get("/company/spending")
    assert report.status_code == 200 and "Set the limit" not in report.text
    assert other.post("/company/limits", data={
        "csrf_token": csrf_token(report.text), "scope": f"unit:{sales_id}", "metric": "money",
        "amount": "5", "action": "notify"}).status_code == 403
