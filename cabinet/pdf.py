"""PDF documents: the money-flow statement, a company's invoice and act.

fpdf2 is pure Python; the font is DejaVu Sans bundled in static/fonts (the
PDF core fonts have no Cyrillic), embedded as a subset with a ToUnicode
map, so the text can be searched and copied out of the file. Words go
through gettext and figures through cabinet.formatting, as on the pages.
"""

from __future__ import annotations

from pathlib import Path

from flask_babel import format_date
from flask_babel import gettext as _
from fpdf import FPDF
from fpdf.enums import XPos, YPos

from cabinet import labels, ledger_text
from cabinet.formatting import money, money_with_currency, when

FONTS = Path(__file__).resolve().parent / "static" / "fonts"
FONT = "DejaVu"
WIDTH = 180  # mm between the margins of an A4 page


class _Document(FPDF):
    def __init__(self, title: str):
        super().__init__(format="A4")
        self.add_font(FONT, "", str(FONTS / "DejaVuSans.ttf"))
        self.add_font(FONT, "B", str(FONTS / "DejaVuSans-Bold.ttf"))
        self.set_title(title)
        self.set_creator("abonent")
        self.set_margins(15, 15, 15)
        self.set_auto_page_break(True, margin=18)
        self.add_page()

    def footer(self):
        self.set_y(-12)
        self.set_font(FONT, "", 8)
        self.cell(0, 5, f"{self.page_no()}/{{nb}}", align="R")

    def heading(self, text: str) -> None:
        self.set_font(FONT, "B", 14)
        self.multi_cell(0, 8, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.ln(2)

    def fact(self, label: str, value: str) -> None:
        self.set_font(FONT, "B", 10)
        self.cell(45, 6, label)
        self.set_font(FONT, "", 10)
        self.multi_cell(0, 6, value, new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def row(self, cells, widths, aligns, bold: bool = False, fill: bool = False) -> None:
        """One table row; a long text wraps inside its cell."""
        self.set_font(FONT, "B" if bold else "", 9)
        line_height = 5
        lines = max(self._lines(str(text), w, line_height) for text, w in zip(cells, widths))
        height = lines * line_height + 2
        if self.will_page_break(height):
            self.add_page()
        x, y = self.get_x(), self.get_y()
        if fill:
            self.set_fill_color(238, 241, 244)
            self.rect(x, y, sum(widths), height, style="F")
        for text, w, align in zip(cells, widths, aligns):
            self.set_xy(x, y + 1)
            self.multi_cell(w, line_height, str(text), align=align)
            x += w
        self.set_xy(self.l_margin, y + height)
        self.set_draw_color(221, 227, 232)
        self.line(self.l_margin, y + height, self.l_margin + sum(widths), y + height)

    def _lines(self, text: str, width: float, line_height: float) -> int:
        # Most cells fit on one line; only a long one is laid out to count.
        if self.get_string_width(text) <= width - 2 * self.c_margin:
            return 1
        return len(self.multi_cell(width, line_height, text, dry_run=True, output="LINES"))

    def paragraph(self, text: str, bold: bool = False, size: int = 10) -> None:
        self.set_font(FONT, "B" if bold else "", size)
        self.multi_cell(0, 6, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def bytes(self) -> bytes:
        return bytes(self.output())


def _day(value) -> str:
    # "5 дек. 2026 г." / "Dec 5, 2026": no reader takes it for another day.
    return format_date(value, "medium")


def statement(account, period, statement, title: str | None = None) -> bytes:
    """The money flow: opening balance, each entry with what it is for, closing.
    ``title`` names a month's statement; the default is "Money flow"."""
    title = title or _("Money flow")
    doc = _Document(title)
    doc.heading(title)
    doc.fact(_("Account number"), account.number)
    doc.fact(_("Name"), account.name)
    doc.fact(_("Period"), f"{_day(period.first_day)} — {_day(period.last_day)}")
    doc.ln(4)
    widths = (42, 74, 32, 32)
    aligns = ("L", "L", "R", "R")
    doc.row((_("Date"), _("Operation"), _("Amount"), _("Balance after")), widths, aligns,
            bold=True, fill=True)
    rub = money_with_currency
    doc.row(("", _("Opening balance"), "", rub(statement.opening)), widths, aligns,
            bold=True)
    for line in statement.lines:
        what = ledger_text.line_text(line.kind, line.key, line.memo_code, line.memo_args)
        doc.row((when(line.created_at), what, rub(line.amount), rub(line.balance_after)),
                widths, aligns)
    if not statement.lines:
        doc.row(("", _("No operations in this period."), "", ""), widths, aligns)
    doc.row(("", _("Closing balance"), "", rub(statement.closing)), widths, aligns,
            bold=True)
    doc.ln(4)
    came_in, spent = _("Came in"), _("Spent")
    doc.paragraph(f"{came_in}: {rub(statement.credits)}")
    # Money spent is a positive amount, as a reader says it.
    doc.paragraph(f"{spent}: {rub(-statement.debits)}")
    return doc.bytes()


def _month_title(kind: str, document) -> str:
    if kind == "invoice":
        return _("Invoice No. %(number)s of %(date)s", number=document.number,
                 date=_day(document.last_day))
    return _("Act No. %(number)s of %(date)s", number=document.number,
             date=_day(document.last_day))


def _month_closing(doc: _Document, kind: str, total, number: str | None) -> None:
    """After the table: the VAT line, the sum to pay (an invoice, with the
    account number to state when there is one) or the act's statement and
    the two signatures."""
    doc.ln(4)
    doc.paragraph(_("VAT is not charged."))
    if kind == "invoice":
        doc.paragraph(_("Total to pay: %(amount)s", amount=money_with_currency(total)),
                      bold=True, size=12)
        if number:
            doc.paragraph(_("Please state the account number %(number)s in the payment.",
                            number=number))
        return
    doc.paragraph(_("Services rendered for %(amount)s", amount=money_with_currency(total)),
                  bold=True, size=12)
    doc.paragraph(_("The services were rendered in full and on time; the customer has "
                    "no claims as to their volume, quality or timing."))
    doc.ln(10)
    seller_sign, customer_sign = _("Seller"), _("Customer")
    doc.paragraph(f"{seller_sign}: ____________________        "
                  f"{customer_sign}: ____________________")


def month_document(kind: str, account, document, seller: str) -> bytes:
    """A company's invoice (счёт) or act (акт) for one month."""
    month = format_date(document.first_day, "LLLL yyyy")
    title = _month_title(kind, document)
    doc = _Document(title)
    doc.heading(title)
    doc.fact(_("Seller"), seller)
    doc.fact(_("Customer"), account.name)
    doc.fact(_("Account number"), account.number)
    doc.fact(_("Period"), month)
    doc.ln(4)
    widths = (12, 118, 50)
    aligns = ("R", "L", "R")
    doc.row(("№", _("Service"), _("Amount, RUB")), widths, aligns, bold=True, fill=True)
    for number, line in enumerate(document.lines, 1):
        doc.row((number, f"{labels.kind(line.kind)}, {month}", money(line.amount)), widths,
                aligns)
    if not document.lines:
        doc.row(("", _("No services were charged this month."), money(document.total)),
                widths, aligns)
    doc.row(("", _("Total"), money(document.total)), widths, aligns, bold=True)
    _month_closing(doc, kind, document.total, account.number)
    return doc.bytes()


def consolidated_document(kind: str, customer, document, seller: str) -> bytes:
    """One invoice or act for many accounts of a customer (issue 21): a line
    per account, the account's services summed."""
    month = format_date(document.first_day, "LLLL yyyy")
    title = _month_title(kind, document)
    doc = _Document(title)
    doc.heading(title)
    doc.fact(_("Seller"), seller)
    doc.fact(_("Customer"), customer.name)
    doc.fact(_("Period"), month)
    doc.fact(_("Accounts"), str(len(document.lines)))
    doc.ln(4)
    widths = (12, 38, 90, 40)
    aligns = ("R", "L", "L", "R")
    doc.row(("№", _("Account number"), _("Name"), _("Amount, RUB")), widths, aligns,
            bold=True, fill=True)
    for number, line in enumerate(document.lines, 1):
        doc.row((number, line.number, line.name, money(line.total)), widths, aligns)
    if not document.lines:
        doc.row(("", "", _("No services were charged this month."), money(document.total)),
                widths, aligns)
    doc.row(("", "", _("Total"), money(document.total)), widths, aligns, bold=True)
    _month_closing(doc, kind, document.total, None)
    return doc.bytes()
