"""`abonent limit` and `abonent spend report` as an admin's shell runs them,
on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal

from pypdf import PdfReader
from sqlalchemy import select

from rating import ledger
from rating.models import Account, Notification
from tests.conftest import make_context
from tests.factories import make_account


def js(result):
    return json.loads(result.stdout)


def seed(db_url):
    context = make_context(db_url)
    with context.Session() as session:
        first = make_account(session, balance="1000", email="a@example.net")
        second = make_account(session, balance="1000", email="b@example.net")
        # Charged now: this month's spending whatever the day of the run.
        ledger.post(session, account_id=first.id, amount=Decimal("-120.00"), kind="fee",
                    key="fee:test:1", author="test")
        ledger.post(session, account_id=first.id, amount=Decimal("-30.00"), kind="option",
                    key="option:test:1", author="test", memo_code="turbo")
        ledger.post(session, account_id=second.id, amount=Decimal("-10.50"), kind="traffic",
                    key="traffic:test:1", author="test", memo_code="traffic")
        session.commit()
        numbers = first.number, second.number
    return context, numbers


def test_limit_set_list_run_remove(abonent, db_url):
    context, (first, second) = seed(db_url)
    set_ = js(abonent("limit", "set", "--account", first, "--amount", "100",
                          "--action", "throttle", "--json"))
    # Set over a reached limit: it acts at once.
    assert set_["changed"] and set_["used"] == "150.00" and set_["acted"]
    abonent("limit", "set", "--account", second, "--metric", "traffic", "--amount", "2.5")
    listed = js(abonent("limit", "list", "--json"))
    assert [(row["account"], row["metric"], row["limit"]) for row in listed] == [
        (first, "money", "100.00"), (second, "traffic", "2500000000")]
    assert js(abonent("limit", "run", "--json"))["acted"] == []
    with context.Session() as session:
        account = session.scalar(select(Account).where(Account.number == first))
        assert account.limit_throttled_until is not None
        assert session.scalar(select(Notification.kind).where(
            Notification.account_id == account.id, Notification.kind.like("spend-%"))) \
            == "spend-throttled"
    abonent("limit", "remove", str(set_["id"]))
    with context.Session() as session:
        assert session.scalar(select(Account.limit_throttled_until).where(
            Account.number == first)) is None
    context.dispose()


def test_limit_bad_input_exits_2_and_changes_nothing(abonent, db_url):
    context, (first, _) = seed(db_url)
    abonent("limit", "set", "--account", first, "--amount", "-1", code=2)
    abonent("limit", "set", "--account", first, "--amount", "10", "--warn", "120", code=2)
    abonent("limit", "set", "--amount", "10", code=2)
    abonent("limit", "set", "--account", "nope-404", "--amount", "10", code=2)
    abonent("limit", "remove", "999", code=2)
    abonent("spend", "report", "--account", first, "--from", "2026-13-01", "--to",
                "2026-12-31", code=2)
    assert js(abonent("limit", "list", "--json")) == []
    assert "--metric" in abonent("limit", "set", "--help").stdout
    context.dispose()


def test_spend_report_json_csv_pdf_agree_with_the_ledger(abonent, db_url, tmp_path):
    context, (first, second) = seed(db_url)
    period = ["--from", "2020-01-01", "--to", "2029-12-31"]
    report = js(abonent("spend", "report", "--account", first, "--account", second,
                            *period, "--json"))
    by_number = {row["account"]: row for row in report["accounts"]}
    assert (by_number[first]["tariff"], by_number[first]["options"],
            by_number[first]["total"]) == ("120.00", "30.00", "150.00")
    assert by_number[second]["traffic"] == "10.50"
    assert report["totals"]["total"] == "160.50"

    text = abonent("spend", "report", "--account", first, "--account", second, *period,
                       "--csv").stdout
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    assert rows[0][:3] == ["Branch", "Account", "Name"]
    assert rows[-1][0] == "All branches" and rows[-1][-1] == "160.50"

    pdf = tmp_path / "spend.pdf"
    abonent("spend", "report", "--account", first, "--account", second, *period,
                "--pdf", str(pdf))
    content = "".join(page.extract_text() for page in PdfReader(pdf).pages)
    assert first in content and "160.50" in content
    context.dispose()


def test_branch_limits_and_customer_reports(abonent, db_url):
    from rating import org
    context, (first, second) = seed(db_url)
    with context.Session() as session:
        customer = org.create_customer(session, kind="company", name="Romashka", actor="t")
        sales = org.create_unit(session, customer.id, "Sales", actor="t")
        for number in (first, second):
            account = session.scalar(select(Account).where(Account.number == number))
            org.attach_account(session, account.id, customer.id, actor="t", unit_id=sales.id)
        session.commit()
        customer_id, unit_id = customer.id, sales.id
    made = js(abonent("limit", "set", "--unit", str(unit_id), "--amount", "200", "--warn", "50",
                      "--json"))
    # 160.50 of 200: past the 50 % warning.
    assert made["unit"] == "Sales" and made["used"] == "160.50" and made["warned"]
    listed = js(abonent("limit", "list", "--customer", str(customer_id), "--json"))
    assert [row["id"] for row in listed] == [made["id"]]
    assert js(abonent("limit", "list", "--account", first, "--json")) == []
    report = js(abonent("spend", "report", "--customer", str(customer_id), "--unit",
                        str(unit_id), "--from", "2020-01-01", "--to", "2029-12-31", "--json"))
    assert report["units"] == [{"unit_id": unit_id, "unit": "Sales", "tariff": "120.00",
                                "options": "30.00", "packages": "0.00", "traffic": "10.50",
                                "calls": "0.00", "other": "0.00", "total": "160.50"}]
    abonent("spend", "report", "--customer", "999", "--from", "2026-01-01", "--to",
            "2026-01-31", code=2)
    abonent("limit", "set", "--unit", "999", "--amount", "5", code=2)
    context.dispose()
