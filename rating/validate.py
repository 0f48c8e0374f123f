"""What the billing accepts from a person: amounts, names, phones, keys.

Every way in (the CLI, an import file, the cabinet) checks its input here,
so an amount or a name means the same thing whichever door it came through,
and what the database would refuse (a name longer than its column, a number
beyond NUMERIC(14, 2)) is refused before it is tried, with one sentence.
"""

from __future__ import annotations

import re
import unicodedata
from decimal import Decimal, InvalidOperation

from config.db import money


class DomainError(ValueError):
    """Bad input for a use case; the message is one sentence for the user."""


class NotFound(DomainError):
    pass


# Money a person types: digits, an optional sign, at most two decimals. No
# exponents ("1e3"), no "NaN", no thousands separators.
_AMOUNT = re.compile(r"^[+-]?\d{1,30}(?:[.,]\d{1,2})?$")
# The largest amount anything accepts (a payment, a fee, a credit limit):
# well inside NUMERIC(14, 2) so that sums of many stay representable.
MAX_AMOUNT = Decimal("1000000000.00")


def amount(value, what: str = "amount", *, positive: bool = False,
           negative_ok: bool = False, maximum: Decimal = MAX_AMOUNT) -> Decimal:
    """A money amount with at most 2 decimal places within ±``maximum``.

    ``positive``: more than zero; ``negative_ok``: below zero allowed (an
    opening balance, a correction). Strings must look like 100, 99.50 or
    99,50 (a Russian keyboard's comma)."""
    if isinstance(value, str):
        text = value.strip()
        if not _AMOUNT.match(text):
            raise DomainError(f"{what} must be an amount like 100 or 99.50, not {value!r}")
        value = text.replace(",", ".")
    try:
        result = money(value)
    except (ValueError, TypeError, ArithmeticError, InvalidOperation):
        raise DomainError(f"{what} must be an amount like 100 or 99.50, not {value!r}") from None
    if abs(result) > maximum:
        raise DomainError(f"{what} must not exceed {maximum:,.2f}".replace(",", " "))
    if positive and result <= 0:
        raise DomainError(f"{what} must be more than zero")
    if result < 0 and not (negative_ok or positive):
        raise DomainError(f"{what} cannot be negative")
    return result


def text(value, what: str, *, maximum: int, required: bool = True,
         multiline: bool = False) -> str | None:
    """A name, memo or label: stripped, no control characters (newlines only
    when ``multiline``), at most ``maximum`` characters; None or "" is
    refused when ``required``, else returned as None."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise DomainError(f"{what} must not be empty")
        return None
    if not isinstance(value, str):
        raise DomainError(f"{what} must be text")
    value = value.strip()
    if len(value) > maximum:
        raise DomainError(f"{what} must be at most {maximum} characters, not {len(value)}")
    if value.isprintable():
        # No control, format, private, unassigned or line/paragraph
        # separator character: the common case, checked in C.
        return value
    for char in value:
        if multiline and char in "\n\t":
            continue
        if unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn") or char in "\u2028\u2029":
            raise DomainError(f"{what} must not contain control characters "
                              f"(found U+{ord(char):04X})")
    return value


_PHONE_CHARS = re.compile(r"^\+?[0-9 ()\-.]{5,30}$")


def phone(value, what: str = "phone") -> str | None:
    """A phone number as a person writes it: digits with optional +, spaces,
    dashes, dots and parentheses, 7-15 digits (E.164's length). Returned as
    ``+digits`` when it started with +, else the digits alone."""
    if value is None or not str(value).strip():
        return None
    raw = str(value).strip()
    digits = re.sub(r"\D", "", raw)
    if not _PHONE_CHARS.match(raw) or not 7 <= len(digits) <= 15:
        raise DomainError(f"{what} must be a phone number like +7 912 345-67-89, not {value!r}")
    return ("+" + digits) if raw.startswith("+") else digits


_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")


def email(value, what: str = "e-mail") -> str | None:
    if value is None or not str(value).strip():
        return None
    value = text(value, what, maximum=200)
    if not _EMAIL.match(value):
        raise DomainError(f"{what} must be an address like name@example.com, not {value!r}")
    return value


_KEY = re.compile(r"^[\x21-\x7e]{1,100}$")


def external_id(value, what: str = "external id") -> str | None:
    """A payment's id at its source: 1-100 printable ASCII characters with
    no spaces. None means "none given"; an empty string is refused (it
    would look like protection against a duplicate and be none)."""
    if value is None:
        return None
    if not _KEY.match(value):
        raise DomainError(f"{what} must be 1-100 printable characters without spaces, "
                          f"not {value!r}")
    return value


def memo(value) -> str | None:
    return text(value, "memo", maximum=1000, required=False, multiline=True)


def name(value, what: str = "name", maximum: int = 200) -> str:
    return text(value, what, maximum=maximum)


def whole(value, what: str, minimum: int, maximum: int) -> int:
    """A whole number within [minimum, maximum], from an int or its text."""
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            value = int(str(value).strip())
        except ValueError:
            raise DomainError(f"{what} must be a whole number, not {value!r}") from None
    if not minimum <= value <= maximum:
        raise DomainError(f"{what} must be between {minimum} and {maximum}, not {value}")
    return value
