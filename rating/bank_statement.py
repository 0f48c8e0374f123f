"""Bank transfers from companies: the 1C client-bank statement import.

A company pays by a payment order (платёжное поручение) to our settlement
account; the bank's client program exports the day's statement in the
``1CClientBankExchange`` text format (the de facto Russian standard, 1C's
exchange format 1.02/1.03): a header of ``Key=Value`` lines, the account's
balance section (``СекцияРасчСчет`` … ``КонецРасчСчет``), one section per
document (``СекцияДокумент=Платежное поручение`` … ``КонецДокумента``) and
``КонецФайла``. The file is windows-1251 (``Кодировка=Windows``), DOS
cp866 (``Кодировка=DOS``) or, from newer banks, UTF-8.

Rules kept here:

- only incoming documents count: those whose ``ПолучательСчет`` is our
  settlement account (settings ``bank.account``); the rest (our own
  outgoing payments) are skipped;
- each incoming line is recorded once, keyed by document number, date,
  amount and payer INN; importing the same statement again (or the next
  statement that repeats a day) credits nothing again;
- a line is matched to an account when its purpose (``НазначениеПлатежа``)
  names exactly one of our account/contract numbers ("по договору №
  100002", "л/с 100002"); a matched line is credited at once through
  rating.accounts.add_payment (ledger key ``payment:bank:<line key>``) and
  shown among payments (``provider_payments``, provider ``bank``);
- an unmatched line waits in ``bank_statement_lines`` for an operator, who
  assigns it to an account (credited then, once);
- a file that cannot be read is refused whole, with the line named, and
  nothing of it is kept.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Optional

from sqlalchemy import (CheckConstraint, Date, DateTime, ForeignKey, Integer, String, Text,
                        select, update)
from sqlalchemy.orm import Mapped, Session, mapped_column

from config.db import Base, Money, money, utcnow
from rating import accounts, oplog
from rating.models import Account
from rating.payments import ProviderPayment
from rating.validate import DomainError, NotFound

PROVIDER = "bank"
MAGIC = "1CClientBankExchange"
LINE_STATUSES = ("matched", "unmatched", "assigned")
MAX_BYTES = 50 * 1024 * 1024
_AMOUNT = re.compile(r"^[0-9]{1,15}(?:[.,][0-9]{1,2})?$")
_BANK_ACCOUNT = re.compile(r"^[0-9]{20}$")
# Where a purpose names the contract or account: "договор № 100002",
# "дог. 100002", "л/с 100002", "лицевой счет 100002", "account 100002".
_REFERENCE = re.compile(
    r"(?:догов\w*|дог\.?|л\s*/\s*с(?:ч(?:ет|ёт)?)?\.?|лс|лицев\w*\s+сч\w*|абонент\w*|"
    r"account|contract)\s*(?:№|N|No\.?|#|номер)?\s*([0-9A-Za-z][0-9A-Za-z-]{0,31})",
    re.IGNORECASE)


class StatementError(DomainError):
    """The statement cannot be read; the message names the line."""


def _in(column: str, values) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class StatementLine(Base):
    """An incoming payment order from a statement."""

    __tablename__ = "bank_statement_lines"
    __table_args__ = (
        CheckConstraint(_in("status", LINE_STATUSES), name="status"),
        CheckConstraint("amount > 0", name="amount"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # sha256 of number|date|amount|payer INN: the same order imported twice
    # is one line.
    line_key: Mapped[str] = mapped_column(String(64), unique=True)
    doc_number: Mapped[str] = mapped_column(String(32))
    doc_date: Mapped[dt.date] = mapped_column(Date)
    received_on: Mapped[Optional[dt.date]] = mapped_column(Date)
    amount: Mapped[Decimal] = mapped_column(Money)
    payer_inn: Mapped[Optional[str]] = mapped_column(String(12))
    payer_name: Mapped[Optional[str]] = mapped_column(String(500))
    payer_account: Mapped[Optional[str]] = mapped_column(String(32))
    purpose: Mapped[Optional[str]] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    account_id: Mapped[Optional[int]] = mapped_column(ForeignKey("accounts.id"), index=True)
    entry_id: Mapped[Optional[int]] = mapped_column(ForeignKey("ledger_entries.id"))
    imported_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    imported_by: Mapped[str] = mapped_column(String(80))
    assigned_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    assigned_by: Mapped[Optional[str]] = mapped_column(String(80))

    @property
    def external_id(self) -> str:
        return "stmt-" + self.line_key[:32]


# -- the file (pure) ------------------------------------------------------------

@dataclass(frozen=True)
class Document:
    line: int           # where its section starts
    kind: str           # СекцияДокумент=… (Платежное поручение, …)
    fields: dict

    def get(self, key: str) -> str:
        return self.fields.get(key, "").strip()


@dataclass
class Statement:
    header: dict = field(default_factory=dict)
    documents: list[Document] = field(default_factory=list)
    encoding: str = "utf-8"


def decode(data: bytes) -> tuple[str, str]:
    """The text and its encoding: UTF-8 when it is valid UTF-8, else the
    file's ``Кодировка`` (Windows: cp1251, DOS: cp866), read by trying
    both (the key itself is in the encoding it names)."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    for encoding in ("cp1251", "cp866"):
        text = data.decode(encoding, errors="replace")
        if re.search(r"^\s*(Кодировка|СекцияДокумент)\s*=", text, re.MULTILINE):
            return text, encoding
    return data.decode("cp1251", errors="replace"), "cp1251"


def parse(data: bytes) -> Statement:
    """A statement, or StatementError naming the line that is wrong."""
    if len(data) > MAX_BYTES:
        raise StatementError(f"the file is larger than {MAX_BYTES // (1024 * 1024)} MB")
    text, encoding = decode(data)
    lines = text.splitlines()
    if not lines or lines[0].strip().lstrip("\ufeff") != MAGIC:
        raise StatementError(f"line 1: not a 1C client-bank file (it must start with {MAGIC})")
    statement = Statement(encoding=encoding)
    section: str | None = None      # None, "account" or "document"
    current: dict | None = None
    start = kind = None
    ended = False
    for number, raw in enumerate(lines[1:], start=2):
        line = raw.strip()
        if not line:
            continue
        if ended:
            raise StatementError(f"line {number}: text after КонецФайла")
        key, sep, value = line.partition("=")
        key = key.strip()
        if key == "КонецФайла" and not sep:
            if section is not None:
                raise StatementError(f"line {number}: КонецФайла inside a section opened on "
                                     f"line {start}")
            ended = True
            continue
        if key == "СекцияДокумент":
            if section is not None:
                raise StatementError(f"line {number}: a document starts before the section "
                                     f"opened on line {start} ended")
            section, current, start, kind = "document", {}, number, value.strip()
            continue
        if key == "КонецДокумента" and not sep:
            if section != "document":
                raise StatementError(f"line {number}: КонецДокумента without СекцияДокумент")
            statement.documents.append(Document(start, kind, current))
            section, current = None, None
            continue
        if key == "СекцияРасчСчет" and not sep:
            if section is not None:
                raise StatementError(f"line {number}: a section starts before the section "
                                     f"opened on line {start} ended")
            section, start = "account", number
            continue
        if key == "КонецРасчСчет" and not sep:
            if section != "account":
                raise StatementError(f"line {number}: КонецРасчСчет without СекцияРасчСчет")
            section = None
            continue
        if not sep or not key:
            raise StatementError(f"line {number}: expected Key=Value, found {line[:60]!r}")
        if section == "document":
            current[key] = value
        elif section is None:
            statement.header.setdefault(key, value.strip())
    if section is not None:
        raise StatementError(f"the section opened on line {start} never ends (truncated file?)")
    if not ended:
        raise StatementError("the file ends without КонецФайла (truncated?)")
    return statement


@dataclass(frozen=True)
class Order:
    """An incoming payment order, checked."""

    line: int
    number: str
    date: dt.date
    received_on: dt.date | None
    amount: Decimal
    payer_inn: str
    payer_name: str
    payer_account: str
    purpose: str

    @property
    def key(self) -> str:
        text = "|".join((self.number, self.date.isoformat(), f"{self.amount:.2f}",
                         self.payer_inn))
        return hashlib.sha256(text.encode()).hexdigest()


def _date(text: str, what: str, line: int) -> dt.date:
    try:
        return dt.datetime.strptime(text.strip(), "%d.%m.%Y").date()
    except ValueError:
        raise StatementError(f"document on line {line}: {what} {text!r} is not a date "
                             f"like 05.12.2026") from None


def order(document: Document) -> Order:
    number = document.get("Номер")
    if not number or len(number) > 32:
        raise StatementError(f"document on line {document.line}: Номер is missing or too long")
    amount_text = document.get("Сумма")
    if not _AMOUNT.match(amount_text):
        raise StatementError(f"document on line {document.line}: Сумма {amount_text!r} is not "
                             f"an amount like 1500.00")
    amount = money(amount_text.replace(",", "."))
    if amount <= 0:
        raise StatementError(f"document on line {document.line}: Сумма must be above zero")
    date = _date(document.get("Дата"), "Дата", document.line)
    received = document.get("ДатаПоступило")
    inn = document.get("ПлательщикИНН")
    if inn and not re.match(r"^[0-9]{10}$|^[0-9]{12}$", inn):
        raise StatementError(f"document on line {document.line}: ПлательщикИНН {inn!r} is not "
                             f"10 or 12 digits")
    payer = document.get("Плательщик1") or document.get("Плательщик")
    return Order(document.line, number, date,
                 _date(received, "ДатаПоступило", document.line) if received else None,
                 amount, inn, payer[:500], document.get("ПлательщикСчет")[:32],
                 document.get("НазначениеПлатежа"))


def incoming(statement: Statement, our_account: str) -> tuple[list[Order], int]:
    """The orders paid to ``our_account``, and how many documents were not."""
    orders, other = [], 0
    for document in statement.documents:
        if document.get("ПолучательСчет") == our_account:
            orders.append(order(document))
        else:
            other += 1
    return orders, other


def references(purpose: str) -> list[str]:
    """Account or contract numbers a payment's purpose names, in order."""
    found = []
    for match in _REFERENCE.finditer(purpose or ""):
        value = match.group(1).strip("-")
        if value and value not in found:
            found.append(value)
    return found


# -- use cases ----------------------------------------------------------------

def our_account(value: str | None) -> str:
    value = (value or "").strip()
    if not _BANK_ACCOUNT.match(value):
        raise StatementError("our settlement account is not set: give --our-account or set "
                             "bank.account (20 digits)")
    return value


@dataclass
class ImportResult:
    encoding: str
    documents: int = 0
    outgoing: int = 0
    matched: list[dict] = field(default_factory=list)
    unmatched: list[dict] = field(default_factory=list)
    repeated: int = 0

    def as_dict(self) -> dict:
        return dict(encoding=self.encoding, documents=self.documents, outgoing=self.outgoing,
                    repeated=self.repeated, matched=self.matched, unmatched=self.unmatched,
                    credited=sum((m["amount"] for m in self.matched), Decimal("0.00")))


def _match(session: Session, purpose: str) -> Account | None:
    numbers = references(purpose)
    if not numbers:
        return None
    found = list(session.scalars(select(Account).where(Account.number.in_(numbers))))
    # Two of our accounts named in one purpose: an operator decides.
    return found[0] if len(found) == 1 else None


def import_statement(session: Session, data: bytes, *, account_number: str,
                     actor: str) -> ImportResult:
    """Parse, record every new incoming line, credit the matched ones.
    Works in the caller's transaction: a refusal leaves nothing."""
    ours = our_account(account_number)
    statement = parse(data)
    declared = statement.header.get("РасчСчет")
    if declared and declared != ours:
        raise StatementError(f"the statement is for account {declared}, ours is {ours}")
    orders, other = incoming(statement, ours)
    result = ImportResult(statement.encoding, documents=len(statement.documents), outgoing=other)
    seen = set()
    for item in orders:
        key = item.key
        if key in seen or session.scalar(select(StatementLine.id)
                                         .where(StatementLine.line_key == key)) is not None:
            result.repeated += 1
            continue
        seen.add(key)
        account = _match(session, item.purpose)
        if account is not None and account.state == "closed":
            account = None
        row = StatementLine(line_key=key, doc_number=item.number, doc_date=item.date,
                            received_on=item.received_on, amount=item.amount,
                            payer_inn=item.payer_inn or None,
                            payer_name=item.payer_name or None,
                            payer_account=item.payer_account or None,
                            purpose=item.purpose or None,
                            status="unmatched" if account is None else "matched",
                            account_id=account.id if account else None, imported_by=actor)
        session.add(row)
        session.flush()
        view = line_view(row)
        if account is None:
            result.unmatched.append(view)
            continue
        _credit(session, row, account, actor)
        view.update(account=account.number, entry_id=row.entry_id)
        result.matched.append(view)
    oplog.record(session, account_id=None, actor=actor, action="bank_statement.import",
                 documents=result.documents, matched=len(result.matched),
                 unmatched=len(result.unmatched), repeated=result.repeated)
    return result


def _credit(session: Session, row: StatementLine, account: Account, actor: str) -> None:
    memo = f"bank transfer № {row.doc_number} of {row.doc_date:%d.%m.%Y}"
    if row.payer_inn:
        memo += f", INN {row.payer_inn}"
    posting = accounts.add_payment(session, account, row.amount, external_id=row.external_id,
                                   provider=PROVIDER, actor=actor, memo=memo)
    session.add(ProviderPayment(provider=PROVIDER, txn_id=row.external_id,
                                account_id=account.id, amount=row.amount, status="paid",
                                settled_at=utcnow(), entry_id=posting.entry_id))
    row.entry_id = posting.entry_id
    session.flush()


def unmatched(session: Session):
    return select(StatementLine).where(StatementLine.status == "unmatched") \
        .order_by(StatementLine.doc_date, StatementLine.id)


def assign(session: Session, line_id: int, account_number: str, *, actor: str) -> StatementLine:
    """Credit an unmatched line to an account, once."""
    row = session.get(StatementLine, line_id)
    if row is None:
        raise NotFound(f"statement line {line_id} does not exist")
    account = accounts.find_account(session, account_number)
    if account.state == "closed":
        raise DomainError(f"account {account_number} is closed")
    # Only an unmatched line moves: of two operators at once, the second
    # UPDATE waits for the first and then finds nothing unmatched.
    moved = session.execute(
        update(StatementLine)
        .where(StatementLine.id == line_id, StatementLine.status == "unmatched")
        .values(status="assigned", account_id=account.id, assigned_at=utcnow(),
                assigned_by=actor)
        .returning(StatementLine.id)
        .execution_options(synchronize_session=False)).scalar_one_or_none()
    session.expire(row)
    if moved is None:
        owner = session.scalar(select(Account.number).where(Account.id == row.account_id))
        raise DomainError(f"statement line {line_id} was already credited to account {owner}")
    _credit(session, row, account, actor)
    oplog.record(session, account_id=account.id, actor=actor, action="bank_statement.assign",
                 line_id=line_id, amount=row.amount)
    return row


def line_view(row: StatementLine) -> dict:
    return dict(id=row.id, number=row.doc_number, date=row.doc_date, amount=row.amount,
                payer_inn=row.payer_inn, payer=row.payer_name, purpose=row.purpose,
                status=row.status)
