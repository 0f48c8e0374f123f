"""The spend report (rating.spending.report) as CSV and PDF.

Words come from the caller: the cabinet passes them through gettext in the
reader's language, the CLI uses ``ENGLISH``; nothing here needs a request,
so ``abonent spend report`` writes the same documents the cabinet serves.
Amounts are written as the ledger has them (``1234.50``): a spreadsheet
reads them as numbers whatever its locale's list separator.
"""

from __future__ import annotations

from rating.choices import SPENDING_SERVICES

from cabinet.spreadsheet import csv_text

ENGLISH = {
    "title": "Spending by branch and service",
    "period": "Period",
    "account": "Account",
    "name": "Name",
    "branch": "Branch",
    "tariff": "Tariff fees",
    "options": "Options",
    "packages": "Packages",
    "traffic": "Traffic",
    "calls": "Calls",
    "other": "Other",
    "total": "Total",
    "branches": "Branch totals",
    "all": "All branches",
    "no_branch": "No branch",
}


def _unit(name: str, words: dict) -> str:
    return name or words["no_branch"]


def csv_document(report, words: dict = ENGLISH, delimiter: str = ",", number=str) -> str:
    """One row an account, then one a branch and the grand total;
    ``number`` writes an amount (the cabinet's in the reader's locale)."""
    header = [words["branch"], words["account"], words["name"],
              *[words[s] for s in SPENDING_SERVICES], words["total"]]
    rows = [[_unit(row.unit_name, words), row.number, row.name,
             *[number(row.services[s]) for s in SPENDING_SERVICES], number(row.total)]
            for row in report.rows]
    rows += [[_unit(name, words), words["total"], "",
              *[number(by[s]) for s in SPENDING_SERVICES], number(total)]
             for _, name, by, total in report.units()]
    totals = report.totals()
    rows.append([words["all"], words["total"], "",
                 *[number(totals[s]) for s in SPENDING_SERVICES], number(report.total)])
    # Branch, account number and name are typed by people: neutralised.
    return csv_text(header, rows, text_columns={0, 1, 2}, delimiter=delimiter)


def pdf_document(report, words: dict = ENGLISH, period: str | None = None,
                 number=str) -> bytes:
    from cabinet.pdf import _Document
    document = _Document(words["title"])
    document.heading(words["title"])
    document.fact(words["period"], period or f"{report.start.isoformat()} – "
                                            f"{report.end.isoformat()}")
    document.ln(3)
    widths = [24, 36] + [20] * len(SPENDING_SERVICES) + [20]
    aligns = ["L", "L"] + ["R"] * (len(SPENDING_SERVICES) + 1)
    document.row([words["account"], words["branch"], *[words[s] for s in SPENDING_SERVICES],
                  words["total"]], widths, aligns, bold=True, fill=True)
    for row in report.rows:
        document.row([row.number, _unit(row.unit_name, words),
                      *[number(row.services[s]) for s in SPENDING_SERVICES], number(row.total)],
                     widths, aligns)
    document.ln(4)
    document.paragraph(words["branches"], bold=True)
    document.row([words["branch"], "", *[words[s] for s in SPENDING_SERVICES], words["total"]],
                 widths, aligns, bold=True, fill=True)
    for _, name, by, total in report.units():
        document.row([_unit(name, words), "", *[number(by[s]) for s in SPENDING_SERVICES],
                      number(total)],
                     widths, aligns)
    totals = report.totals()
    document.row([words["all"], "", *[number(totals[s]) for s in SPENDING_SERVICES],
                  number(report.total)],
                 widths, aligns, bold=True)
    return document.bytes()
