"""Pure rules behind the cabinet's self-service pages (no database)."""

from __future__ import annotations

import hashlib
from decimal import Decimal

import pytest

from rating import requests as service_requests
from rating import selfservice
from rating.accounts import DomainError


def test_a_token_is_stored_as_its_sha256():
    assert selfservice.token_hash("abc") == hashlib.sha256(b"abc").hexdigest()
    assert len(selfservice.token_hash("x" * 43)) == 64


def test_a_reset_mail_does_not_show_its_token_when_logged():
    import datetime as dt
    mail = selfservice.ResetMail("s3cret", "a@b.ru", 7, "ivan", "0001", dt.datetime(2026, 1, 1))
    assert "s3cret" not in repr(mail) and "s3cret" not in str(mail)


@pytest.mark.parametrize("value, expected", [
    (None, None), ("", None), ("  ", None), ("0", Decimal("0.00")), ("99.5", Decimal("99.50")),
    (Decimal("100000"), Decimal("100000.00")),
])
def test_threshold_accepts_money_or_nothing(value, expected):
    assert selfservice._threshold(value) == expected


@pytest.mark.parametrize("value, message", [
    ("-0.01", "between 0 and 100000"), ("100000.01", "between 0 and 100000"),
    ("1.005", "an amount like"), ("ten", "an amount like"), (12.5, "an amount like"),
])
def test_threshold_refuses_bad_amounts(value, message):
    with pytest.raises(DomainError, match=message):
        selfservice._threshold(value)


@pytest.mark.parametrize("given, status", [
    ("done", "done"), ("In-Progress", "in_progress"), (" in progress ", "in_progress"),
])
def test_a_status_is_read_leniently(given, status):
    assert service_requests._check_status(given) == status


@pytest.mark.parametrize("given", ["", "closed", "open", None])
def test_an_unknown_status_is_one_sentence(given):
    with pytest.raises(DomainError, match="^status must be one of new, in_progress, done, "
                                          "rejected$"):
        service_requests._check_status(given)


def test_the_cli_shortens_long_texts_on_one_line():
    from scripts.requests_cli import _short
    assert _short(None) is None
    assert _short("two\nlines") == "two lines"
    assert _short("x" * 50) == "x" * 39 + "…"
