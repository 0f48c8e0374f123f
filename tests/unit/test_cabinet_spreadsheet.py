"""cabinet.spreadsheet: text cells that no spreadsheet runs as a formula."""

from __future__ import annotations

import csv
import io

import pytest

from cabinet.spreadsheet import csv_text, safe_text


@pytest.mark.parametrize("text, safe", [
    ("plain memo", "plain memo"),
    ("=1+1", "'=1+1"),
    ("+7 900 000-00-01", "'+7 900 000-00-01"),
    ("-5", "'-5"),
    ("@SUM(A1)", "'@SUM(A1)"),
    ("\t=1", "'\t=1"),
    ("a;=1", "a;'=1"),
    ("a, +1", "a, '+1"),
    ('a; "=1', 'a; "\'=1'),
    ("a\n@x", "a\n'@x"),
    ("a;b=1", "a;b=1"),          # = inside a cell is harmless
    ("x-y+z", "x-y+z"),
    ("\uff1d1", "'\uff1d1"),
    ("", ""),
])
def test_safe_text(text, safe):
    assert safe_text(text) == safe


def test_every_cell_is_quoted_and_only_text_columns_are_touched():
    body = csv_text(["Date", "Memo"], [["-10.00", "a;=1"]], text_columns={1})
    assert body.startswith("\ufeff")
    lines = body.lstrip("\ufeff").splitlines()
    assert lines == ['"Date","Memo"', '"-10.00","a;\'=1"']
    assert list(csv.reader(io.StringIO(body.lstrip("\ufeff"))))[1] == ["-10.00", "a;'=1"]
