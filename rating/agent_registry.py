"""An agent's daily registry (реестр платежей) and its reconciliation.

Agents send, once a day, the list of payments they took for us; it is what
they will transfer money for. The registry format we accept (docs/
payments-agents.md) is the plain one most agents can produce:

    txn_id;date;account;sum              <- optional header line
    1001;2026-12-05 10:15:00;100002;500.00
    1002;05.12.2026 11:00:00;100003;250,50
    total;2;750.50                       <- optional totals trailer

UTF-8 or windows-1251; ``;`` (or a tab) between fields; the date as
``YYYY-MM-DD HH:MM:SS``, ``DD.MM.YYYY HH:MM:SS``, OSMP's ``YYYYMMDDHHMMSS``
or a day alone; the sum with at most two decimals, dot or comma. Blank
lines and lines starting with ``#`` are skipped. A trailer must agree with
the lines above it, else the file is refused (a truncated file must not
look like a day with fewer payments).

Reconciliation compares by txn_id: missing on our side (they took it, we
never credited it), missing on theirs (we credited it, they do not list
it), amount differs, account differs; the rest match.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from decimal import Decimal

from config.db import money
from rating.agents import OsmpRefusal, parse_sum
from rating.validate import DomainError

MAX_LINES = 1_000_000
_TXN_ID = re.compile(r"^[0-9]{1,20}$")
_DATE_FORMATS = ("%Y-%m-%d %H:%M:%S", "%d.%m.%Y %H:%M:%S", "%Y%m%d%H%M%S", "%Y-%m-%d",
                 "%d.%m.%Y", "%Y-%m-%dT%H:%M:%S")
_HEADER = ("txn_id", "date", "account", "sum")
_TRAILER_WORDS = ("total", "итого")


class RegistryError(DomainError):
    """The registry file cannot be read; the message names the line."""


@dataclass(frozen=True)
class RegistryLine:
    line: int
    txn_id: str
    date: dt.datetime
    account: str
    amount: Decimal


def decode(data: bytes) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1251", errors="replace")


def _date(text: str, number: int) -> dt.datetime:
    for pattern in _DATE_FORMATS:
        try:
            return dt.datetime.strptime(text, pattern)
        except ValueError:
            continue
    raise RegistryError(f"line {number}: {text!r} is not a date like 2026-12-05 10:15:00")


def parse(data: bytes) -> list[RegistryLine]:
    text = decode(data)
    lines: list[RegistryLine] = []
    seen: set[str] = set()
    trailer: tuple[int, int, Decimal] | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        if number > MAX_LINES:
            raise RegistryError(f"the registry has more than {MAX_LINES} lines")
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if trailer is not None:
            raise RegistryError(f"line {number}: nothing may follow the totals line "
                                f"(line {trailer[0]})")
        fields = [f.strip() for f in re.split(r"[;\t]", stripped)]
        if fields[0].lower() in _TRAILER_WORDS:
            trailer = _trailer(fields, number)
            continue
        if not lines and [f.lower() for f in fields] == list(_HEADER):
            continue
        if len(fields) != 4:
            raise RegistryError(f"line {number}: expected txn_id;date;account;sum, "
                                f"found {len(fields)} fields")
        txn_id, date, account, amount = fields
        if not _TXN_ID.match(txn_id):
            raise RegistryError(f"line {number}: txn_id {txn_id!r} must be 1-20 digits")
        if txn_id in seen:
            raise RegistryError(f"line {number}: txn_id {txn_id} is listed twice")
        if not account or len(account) > 64:
            raise RegistryError(f"line {number}: the account is empty or too long")
        try:
            value = parse_sum(amount)
        except OsmpRefusal:
            raise RegistryError(f"line {number}: {amount!r} is not a sum like 500.00 "
                                f"above zero") from None
        seen.add(txn_id)
        lines.append(RegistryLine(number, txn_id, _date(date, number), account, value))
    if trailer is not None:
        _, count, total = trailer
        actual = sum((line.amount for line in lines), Decimal("0.00"))
        if count != len(lines) or total != actual:
            raise RegistryError(f"the totals line says {count} payments for {total}, the "
                                f"lines add up to {len(lines)} for {actual}")
    return lines


def _trailer(fields: list[str], number: int) -> tuple[int, int, Decimal]:
    if len(fields) != 3 or not fields[1].isdigit():
        raise RegistryError(f"line {number}: the totals line must be total;COUNT;SUM")
    if not re.match(r"^[0-9]{1,15}(?:[.,][0-9]{1,2})?$", fields[2]):
        raise RegistryError(f"line {number}: {fields[2]!r} is not a total like 750.50")
    return number, int(fields[1]), money(fields[2].replace(",", "."))


def window(lines: list[RegistryLine], day: dt.date | None) -> tuple[dt.datetime, dt.datetime]:
    """The days a registry covers: ``day`` when given, else from its first
    to its last payment's day."""
    if day is None:
        if not lines:
            raise RegistryError("the registry lists no payments; name its day with --date")
        first = min(line.date for line in lines).date()
        last = max(line.date for line in lines).date()
    else:
        first = last = day
        outside = [line for line in lines if line.date.date() != day]
        if outside:
            raise RegistryError(f"line {outside[0].line}: dated {outside[0].date.date()}, "
                                f"not {day}")
    start = dt.datetime.combine(first, dt.time())
    return start, dt.datetime.combine(last + dt.timedelta(days=1), dt.time())


@dataclass
class Report:
    start: dt.datetime
    end: dt.datetime
    matched_count: int = 0
    matched_total: Decimal = Decimal("0.00")
    missing_ours: list[dict] = field(default_factory=list)
    missing_theirs: list[dict] = field(default_factory=list)
    amount_differs: list[dict] = field(default_factory=list)
    account_differs: list[dict] = field(default_factory=list)
    ours_count: int = 0
    ours_total: Decimal = Decimal("0.00")
    theirs_count: int = 0
    theirs_total: Decimal = Decimal("0.00")

    @property
    def differences(self) -> int:
        return (len(self.missing_ours) + len(self.missing_theirs) + len(self.amount_differs)
                + len(self.account_differs))

    def as_dict(self) -> dict:
        # Days, and the agent's own times as text: they are the agent's
        # clock, not UTC, so they carry no zone mark.
        return dict(first_day=self.start.date(),
                    last_day=(self.end - dt.timedelta(days=1)).date(),
                    matched=dict(count=self.matched_count, total=self.matched_total),
                    ours=dict(count=self.ours_count, total=self.ours_total),
                    theirs=dict(count=self.theirs_count, total=self.theirs_total),
                    missing_ours=self.missing_ours, missing_theirs=self.missing_theirs,
                    amount_differs=self.amount_differs, account_differs=self.account_differs,
                    differences=self.differences)


def _time(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def reconcile(ours, theirs: list[RegistryLine], start: dt.datetime,
              end: dt.datetime) -> Report:
    """``ours``: (txn_id, txn_date, account, amount) of our payments dated
    in [start, end) (rating.agents.payments_between)."""
    report = Report(start, end)
    mine = {row[0]: row for row in ours}
    report.ours_count = len(mine)
    report.ours_total = sum((row[3] for row in mine.values()), Decimal("0.00"))
    report.theirs_count = len(theirs)
    report.theirs_total = sum((line.amount for line in theirs), Decimal("0.00"))
    listed = set()
    for line in theirs:
        listed.add(line.txn_id)
        row = mine.get(line.txn_id)
        if row is None:
            report.missing_ours.append(dict(txn_id=line.txn_id, date=_time(line.date),
                                            account=line.account, amount=line.amount,
                                            line=line.line))
        elif row[3] != line.amount:
            report.amount_differs.append(dict(txn_id=line.txn_id, account=row[2],
                                              ours=row[3], theirs=line.amount,
                                              line=line.line))
        elif row[2] != line.account:
            report.account_differs.append(dict(txn_id=line.txn_id, amount=row[3],
                                               ours=row[2], theirs=line.account,
                                               line=line.line))
        else:
            report.matched_count += 1
            report.matched_total += line.amount
    for txn_id, row in mine.items():
        if txn_id not in listed:
            report.missing_theirs.append(dict(txn_id=txn_id, date=_time(row[1]), account=row[2],
                                              amount=row[3]))
    return report
