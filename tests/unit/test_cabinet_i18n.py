"""The Russian catalogue covers every message and its .mo is up to date."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

import cabinet

CABINET = Path(cabinet.__file__).resolve().parent
LC_MESSAGES = CABINET / "translations" / "ru" / "LC_MESSAGES"
METHODS = [("**.py", "python"), ("templates/**.html", "jinja2")]
KEYWORDS = {"_": None, "gettext": None, "_l": None, "lazy_gettext": None, "N_": None,
            "ngettext": (1, 2)}


def _key(value):
    """A plural message is (singular, plural); .mo files read back as lists."""
    return tuple(value) if isinstance(value, (list, tuple)) else value


def _translated(string) -> bool:
    return all(string) if isinstance(string, (list, tuple)) else bool(string)


def _extracted() -> set:
    return {_key(message) for _file, _line, message, _comments, _context
            in extract_from_dir(str(CABINET), METHODS, keywords=KEYWORDS)}


def test_every_message_has_a_russian_translation():
    with open(LC_MESSAGES / "messages.po", "rb") as handle:
        catalog = read_po(handle)
    translated = {_key(m.id) for m in catalog if m.id and _translated(m.string) and not m.fuzzy}
    missing = _extracted() - translated
    assert not missing, f"untranslated in messages.po: {sorted(missing, key=str)}"


def test_compiled_catalogue_matches_the_po_file():
    with open(LC_MESSAGES / "messages.po", "rb") as handle:
        source = {_key(m.id): _key(m.string) for m in read_po(handle)
                  if m.id and not m.fuzzy}
    with open(LC_MESSAGES / "messages.mo", "rb") as handle:
        compiled = {_key(m.id): _key(m.string) for m in read_mo(handle) if m.id}
    assert compiled == source, "run `pybabel compile -d cabinet/translations`"


def test_money_is_shown_with_two_decimals_and_refuses_floats():
    from flask import Flask
    from flask_babel import Babel

    from cabinet.formatting import money

    app = Flask(__name__)
    Babel(app, locale_selector=lambda: "en")
    with app.test_request_context():
        assert money(Decimal("1234.5")) == "1,234.50"
        assert money(Decimal("-0.01")) == "-0.01"
        with pytest.raises(TypeError):
            money(12.5)
