"""CSV cells a spreadsheet cannot take for formulas (CSV injection).

A cell that starts with = + - @ (or a tab or a carriage return) is a
formula to Excel and LibreOffice. That is not only the cell's start: the
statement is comma-separated, but Russian Excel opens a .csv splitting it at
";" (the list separator of the Russian locale), and a spreadsheet set to
commas splits a cell at ","; a line break can start a new row. So whatever
follows ; , or a line break (after spaces or quotes) is a cell start too.
Each such start gets an apostrophe in front: the text stays readable and is
never run. Every cell is also quoted, so a comma-separated reader keeps a
memo with commas in one cell.
"""

from __future__ import annotations

import csv
import io
import re
from typing import Iterable

# ASCII triggers and their full-width forms (some Excel locales read those too).
_TRIGGERS = "=+\\-@\t\r\uff1d\uff0b\uff0d\uff20"
_CELL_START = re.compile(rf"(^|[;,\r\n])([ \"']*)(?=[{_TRIGGERS}])")


def safe_text(text: str) -> str:
    """``text`` with an apostrophe before every formula trigger at a place a
    spreadsheet may take for the start of a cell."""
    return _CELL_START.sub(lambda m: m.group(1) + m.group(2) + "'", text)


def delimiter(locale: str) -> str:
    """The list separator a spreadsheet of the locale splits a .csv at:
    ";" where the decimal sign is a comma (Russian Excel), else ","."""
    from babel import Locale, numbers
    return ";" if numbers.get_decimal_symbol(Locale.parse(locale)) == "," else ","


def csv_text(header: list[str], rows: Iterable[list], text_columns: set[int],
             delimiter: str = ",") -> str:
    """A CSV document (with a BOM, so that a spreadsheet opens the Cyrillic
    right): every cell quoted, the ``text_columns`` neutralised. The other
    columns are ours (dates, amounts like -10.00 or -10,00, which are
    numbers)."""
    if delimiter not in ",;":
        raise ValueError(f"a CSV delimiter is , or ;, not {delimiter!r}")
    buffer = io.StringIO()
    buffer.write("\ufeff")
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, delimiter=delimiter)
    writer.writerow([safe_text(str(cell)) for cell in header])
    for row in rows:
        writer.writerow([safe_text(str(cell)) if index in text_columns else str(cell)
                         for index, cell in enumerate(row)])
    return buffer.getvalue()
