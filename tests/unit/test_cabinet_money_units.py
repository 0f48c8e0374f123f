"""Pure parts of the money pages: voucher codes, the test provider's
signature, the PDF layout (no database)."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
from decimal import Decimal
from types import SimpleNamespace

import pytest

from rating import payments, vouchers


# -- voucher codes -------------------------------------------------------------

def test_codes_are_random_readable_and_distinct():
    codes = {vouchers.new_code() for _ in range(2000)}
    assert len(codes) == 2000
    for code in list(codes)[:50]:
        assert re.fullmatch(r"([2-9A-HJKMNP-Z]{4}-){3}[2-9A-HJKMNP-Z]{4}", code)
        assert not set(code) & set("01OIL")


@pytest.mark.parametrize("typed, normalized", [
    ("ABCD-EFGH-JKMN-PQRS", "ABCDEFGHJKMNPQRS"),
    (" abcd efgh jkmn pqrs ", "ABCDEFGHJKMNPQRS"),
    ("abcd-efgh-jkmn-pqr", None),        # too short
    ("ABCD-EFGH-JKMN-PQR0", None),       # 0 is not in the alphabet
    ("ABCD-EFGH-JKMN-PQRSX", None),      # too long
    ("", None), (None, None),
    ("АВСD-EFGH-JKMN-PQRS", None),       # Cyrillic look-alikes
])
def test_what_a_subscriber_types_is_normalised(typed, normalized):
    assert vouchers.normalize_code(typed) == normalized


def test_the_hash_is_of_the_normalised_code():
    assert vouchers.code_hash("ABCDEFGHJKMNPQRS") == vouchers.code_hash(
        vouchers.normalize_code("abcd-efgh-jkmn-pqrs"))
    assert len(vouchers.code_hash("ABCDEFGHJKMNPQRS")) == 64


# -- the test provider ---------------------------------------------------------

def test_a_signed_notice_verifies():
    provider = payments.TestPay("s3cret")
    body, headers = provider.notice_body("tp-1", Decimal("250.50"), "paid")
    assert json.loads(body) == {"txn_id": "tp-1", "amount": "250.50", "status": "paid"}
    notice = provider.verify_callback(body, headers)
    assert notice == payments.Notice("tp-1", Decimal("250.50"), "paid")
    assert isinstance(notice.amount, Decimal)


def test_a_tampered_or_foreign_notice_is_refused():
    provider = payments.TestPay("s3cret")
    body, headers = provider.notice_body("tp-1", Decimal("10.00"), "paid")
    with pytest.raises(payments.BadSignature):
        provider.verify_callback(body.replace(b"10.00", b"99.00"), headers)
    with pytest.raises(payments.BadSignature):
        payments.TestPay("other").verify_callback(body, headers)
    with pytest.raises(payments.BadSignature):
        provider.verify_callback(body, {})


@pytest.mark.parametrize("data", [
    b"[]", b"{}", b"not json",
    json.dumps({"txn_id": "a", "amount": 1.5, "status": "paid"}).encode(),  # a float
    json.dumps({"txn_id": "a", "amount": "1.001", "status": "paid"}).encode(),
    json.dumps({"txn_id": "a", "amount": "1.00", "status": "maybe"}).encode(),
    json.dumps({"txn_id": "", "amount": "1.00", "status": "paid"}).encode(),
])
def test_a_signed_body_that_is_no_notice_is_refused(data):
    provider = payments.TestPay("s3cret")
    with pytest.raises(payments.PaymentError):
        provider.verify_callback(data, {payments.SIGNATURE_HEADER: payments.sign("s3cret", data)})


def test_the_secret_is_needed_and_never_shown():
    with pytest.raises(ValueError):
        payments.TestPay("")
    provider = payments.TestPay("very-secret-value", bank_url="/testpay/")
    assert "very-secret-value" not in repr(provider)
    checkout = provider.create(SimpleNamespace(id=1), Decimal("10.00"))
    assert checkout.redirect_url == f"/testpay/{checkout.txn_id}"
    assert re.fullmatch(r"tp-[0-9a-f]{24}", checkout.txn_id)


# -- PDF layout ------------------------------------------------------------------

def _app():
    from flask import Flask
    from flask_babel import Babel

    app = Flask(__name__)
    Babel(app, locale_selector=lambda: "en", timezone_selector=lambda: "UTC")
    return app


def test_a_long_statement_runs_over_pages_and_stays_readable():
    from pypdf import PdfReader

    from cabinet import pdf
    from rating.cabinet_ops import Statement, StatementLine

    start = dt.datetime(2026, 11, 1)
    # An operator's reason is shown as written: a long one wraps in its cell.
    reasons = ["Tariff “Home 100” — day " + "x" * (n % 3 * 40) for n in range(120)]
    lines = tuple(StatementLine(n, start + dt.timedelta(hours=n), "fee", Decimal("-1.00"),
                                reasons[n], Decimal(1000 - n - 1).quantize(Decimal("0.01")),
                                f"charge:{n}", "charge", {"reason": reasons[n]})
                  for n in range(120))
    statement = Statement(1, start, start + dt.timedelta(days=30), Decimal("100.00"), lines,
                          Decimal("0.00"), Decimal("-120.00"), Decimal("-20.00"))
    account = SimpleNamespace(number="100001", name="Ivan Petrov")
    period = SimpleNamespace(first_day=dt.date(2026, 11, 1), last_day=dt.date(2026, 11, 30))
    with _app().test_request_context():
        data = pdf.statement(account, period, statement)
    reader = PdfReader(io.BytesIO(data))
    assert len(reader.pages) > 2
    text = "\n".join(page.extract_text() for page in reader.pages)
    assert text.count("-₽1.00") == 120 and text.count("Home 100") == 120
    assert "Closing balance -₽20.00" in text and f"{len(reader.pages)}/{len(reader.pages)}" in text
