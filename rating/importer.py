"""Bring subscribers over from another billing: accounts, opening balances,
payments (services live in aaa.importer, since rating knows nothing of
RADIUS logins).

Rules:
- a file is read whole and every row is checked before anything is
  written: first alone (rating.validate, the same rules as ``account add``
  and ``payment add``), then against the rest of the file (a number, a key
  twice: every row that shares it is refused, since which one is right is
  not ours to guess) and against the database (an unknown tariff);
- a row already in the database (an account by number, a balance or a
  payment by its ledger key) is counted as present and left alone, so
  running the same file twice changes nothing the second time; one that
  conflicts with what is there (the same payment id with another amount) is
  a refused row;
- the caller decides what refused rows mean: nothing written (the
  default), or the good rows written and the bad ones reported;
- writes are bulk Core statements in batches (executemany), not one ORM
  object per row: 100,000 accounts must import in well under a minute;
- money goes through the ledger's rules: an entry per posting with a key
  unique in the table, the cached balance moved by the same amount in the
  same transaction, the policy ladder applied afterwards.

Exceptions: ``rating.validate.DomainError`` for a file that cannot be read
at all (encoding, header, mapping); a bad row is a ``Problem``, not an
exception.

Nothing here commits: the caller owns the transaction.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import re
import tomllib
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator
from zoneinfo import ZoneInfo

from sqlalchemy import exc, JSON, String, any_, bindparam, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from config.db import utcnow
from rating import fees, validate
from rating.choices import ACCOUNT_KINDS, ACCOUNT_STATES
from rating.models import Account, LedgerEntry, OperationLog, Tariff
from rating.validate import DomainError

# Rows written per statement; also the step of the progress bar.
BATCH = 10000
# Values per IN (...) when looking rows up: well inside SQLite's limit.
LOOKUP_CHUNK = 900
ACCOUNT_NUMBER = re.compile(r"^[0-9A-Za-z-]{1,32}$")
# The ledger kind of an opening balance: a correction (money that was on the
# account before it came to us), told apart from an admin's correction by
# its key, "opening:<number>".
OPENING_KIND = "correction"


class FieldError(Exception):
    """A row's field is bad: ``field`` and one sentence."""

    def __init__(self, field_name: str, message: str):
        super().__init__(message)
        self.field = field_name
        self.message = message


@dataclass(frozen=True)
class Problem:
    """A refused row: its line in the file, the field, why."""

    line: int
    field: str
    message: str

    def as_dict(self) -> dict:
        return {"line": self.line, "field": self.field, "message": self.message}


@dataclass
class Row:
    line: int
    values: dict[str, str | None]


@dataclass
class Plan:
    """What importing a file would do, worked out before anything is written."""

    kind: str
    total: int = 0
    new: list[dict] = field(default_factory=list)
    present: int = 0
    problems: list[Problem] = field(default_factory=list)


@dataclass
class Options:
    """What a row check needs beyond the row: the operator's time zone (a
    payment time with no offset is local), and the date format, if any."""

    timezone: str = "UTC"
    date_format: str | None = None
    now: dt.datetime = field(default_factory=utcnow)


@dataclass
class Kind:
    """One kind of file: its columns, the check of a row alone, the check
    against the file and the database, and the bulk write."""

    name: str
    fields: tuple[str, ...]
    required: tuple[str, ...]
    check_row: Callable[[dict, Options], dict]
    plan: Callable[[Session, list[tuple[Row, dict]], Plan], None]
    write: Callable[..., None]


# -- the mapping file ----------------------------------------------------------

@dataclass
class Mapping:
    """How another billing's export reads as ours (a TOML file; see
    docs/import.md): the delimiter and encoding, and per kind the columns
    (theirs -> our field), value translations and defaults."""

    delimiter: str = ","
    encoding: str = "utf-8-sig"
    date_format: str | None = None
    kinds: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: str = "built-in columns"

    def section(self, kind: str) -> dict[str, Any] | None:
        return self.kinds.get(kind)


def load_mapping(path: str | Path, known_kinds: dict[str, Kind]) -> Mapping:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise DomainError(f"cannot read the mapping {path}: {error.strerror or error}") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise DomainError(f"the mapping {path} is not valid TOML: {error}") from None
    return parse_mapping(data, known_kinds, source=str(path))


def parse_mapping(data: dict, known_kinds: dict[str, Kind], source: str = "mapping") -> Mapping:
    def fail(message: str):
        raise DomainError(f"mapping {source}: {message}")

    top = {"delimiter", "encoding", "date_format", "description", *known_kinds}
    for key in data:
        if key not in top:
            fail(f"unknown key {key!r} (known: {', '.join(sorted(top))})")
    delimiter = data.get("delimiter", ",")
    if delimiter == "\\t":
        delimiter = "\t"
    if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in "\"\r\n":
        fail("delimiter must be one character, such as \",\", \";\" or \"\\t\"")
    encoding = data.get("encoding", "utf-8-sig")
    try:
        if not isinstance(encoding, str):
            raise LookupError
        "".encode(encoding)
    except LookupError:
        fail(f"unknown encoding {encoding!r} (use utf-8, cp1251, koi8-r, ...)")
    date_format = data.get("date_format")
    if date_format is not None and not isinstance(date_format, str):
        fail("date_format must be a strftime pattern such as \"%d.%m.%Y %H:%M\"")
    kinds = {}
    for kind_name, kind in known_kinds.items():
        section = data.get(kind_name)
        if section is None:
            continue
        if not isinstance(section, dict):
            fail(f"[{kind_name}] must be a table")
        for key in section:
            if key not in ("columns", "values", "defaults", "date_format"):
                fail(f"[{kind_name}]: unknown key {key!r} (known: columns, values, "
                     f"defaults, date_format)")
        columns = section.get("columns", {})
        if not isinstance(columns, dict) or not columns:
            fail(f"[{kind_name}] needs columns = {{ their_column = \"our_field\", ... }}")
        for theirs, ours in columns.items():
            if ours not in kind.fields:
                fail(f"[{kind_name}]: column {theirs!r} maps to {ours!r}, which is not one "
                     f"of {', '.join(kind.fields)}")
        if len(set(columns.values())) != len(columns):
            fail(f"[{kind_name}]: two columns map to one field")
        values = section.get("values", {})
        defaults = section.get("defaults", {})
        for what, table in (("values", values), ("defaults", defaults)):
            if not isinstance(table, dict):
                fail(f"[{kind_name}].{what} must be a table")
            for ours in table:
                if ours not in kind.fields:
                    fail(f"[{kind_name}].{what}: {ours!r} is not one of {', '.join(kind.fields)}")
        for ours, translation in values.items():
            if not isinstance(translation, dict) or not all(
                    isinstance(v, str) for v in translation.values()):
                fail(f"[{kind_name}].values.{ours} must map their values to ours (strings)")
        if not all(isinstance(v, str) for v in defaults.values()):
            fail(f"[{kind_name}].defaults: values must be strings")
        kinds[kind_name] = {"columns": {k.strip().lower(): v for k, v in columns.items()},
                            "values": values, "defaults": defaults,
                            "date_format": section.get("date_format", date_format)}
    return Mapping(delimiter=delimiter, encoding=encoding, date_format=date_format,
                   kinds=kinds, source=source)


# -- reading -------------------------------------------------------------------

def file_digest(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_rows(path: str | Path, kind: Kind, mapping: Mapping | None = None) -> list[Row]:
    """The file's data rows as our fields (raw strings; empty means None).
    Raises DomainError when the file as a whole cannot be read."""
    path = Path(path)
    mapping = mapping or Mapping()
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DomainError(f"cannot read {path}: {error.strerror or error}") from None
    try:
        content = raw.decode(mapping.encoding)
    except UnicodeDecodeError as error:
        raise DomainError(f"{path} is not {mapping.encoding} text (byte {error.start}); "
                          f"set encoding in the mapping file") from None
    return parse_rows(content, kind, mapping, str(path))


def parse_rows(content: str, kind: Kind, mapping: Mapping, name: str = "file") -> list[Row]:
    section = mapping.section(kind.name)
    if mapping.kinds and section is None:
        raise DomainError(f"mapping {mapping.source} has no [{kind.name}] section")
    reader = csv.reader(io.StringIO(content, newline=""), delimiter=mapping.delimiter,
                        strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise DomainError(f"{name} is empty; the first line must name the columns")
        # A UTF-8 byte-order mark read as part of the first name (encoding
        # "utf-8" rather than "utf-8-sig") is not part of it.
        header = [h.strip().lstrip("\ufeff").lower() for h in header]
        positions = _positions(header, kind, section, name, mapping)
        rows = []
        line = reader.line_num + 1
        for record in reader:
            start, line = line, reader.line_num + 1
            if not "".join(record).strip():
                continue
            if len(record) != len(header):
                rows.append(Row(start, {"": f"has {len(record)} columns, the header "
                                            f"{len(header)}"}))
                continue
            rows.append(Row(start, _translate(record, positions, section, kind)))
    except csv.Error as error:
        raise DomainError(f"{name}, line {reader.line_num}: not readable as CSV "
                          f"({error})") from None
    return rows


def _positions(header: list[str], kind: Kind, section: dict | None, name: str,
               mapping: Mapping) -> dict[str, int]:
    """Our field -> its column's index in the file."""
    if len(set(header)) != len(header):
        seen = [h for h in header if header.count(h) > 1]
        raise DomainError(f"{name}: column {seen[0]!r} appears twice in the header")
    positions = {}
    if section is None:
        for index, column in enumerate(header):
            if column not in kind.fields:
                raise DomainError(f"{name}: unknown column {column!r}; the columns for "
                                  f"{kind.name} are {', '.join(kind.fields)} "
                                  f"(or give --mapping)")
            positions[column] = index
    else:
        for theirs, ours in section["columns"].items():
            if theirs not in header:
                raise DomainError(f"{name}: column {theirs!r} named in {mapping.source} is "
                                  f"not in the header")
            positions[ours] = header.index(theirs)
    defaults = section["defaults"] if section else {}
    missing = [f for f in kind.required if f not in positions and f not in defaults]
    if missing:
        raise DomainError(f"{name}: {kind.name} need the column{'s' if len(missing) > 1 else ''} "
                          f"{', '.join(missing)}")
    return positions


def _translate(record: list[str], positions: dict[str, int], section: dict | None,
               kind: Kind) -> dict[str, str | None]:
    values: dict[str, str | None] = {}
    for ours, index in positions.items():
        cell = record[index].strip()
        values[ours] = cell or None
    if section:
        for ours, translation in section["values"].items():
            cell = values.get(ours)
            if cell is None:
                continue
            if cell in translation:
                values[ours] = translation[cell] or None
            elif "*" in translation:
                values[ours] = translation["*"] or None
        for ours, default in section["defaults"].items():
            if values.get(ours) is None:
                values[ours] = default
    return values


# -- checking ------------------------------------------------------------------

def build_plan(session: Session, kind: Kind, rows: list[Row], options: Options) -> Plan:
    plan = Plan(kind=kind.name, total=len(rows))
    checked = []
    for row in rows:
        if "" in row.values:
            plan.problems.append(Problem(row.line, "", f"the row {row.values['']}"))
            continue
        try:
            checked.append((row, kind.check_row(row.values, options)))
        except FieldError as error:
            plan.problems.append(Problem(row.line, error.field, error.message))
        except DomainError as error:
            plan.problems.append(Problem(row.line, "", str(error)))
    kind.plan(session, checked, plan)
    plan.problems.sort(key=lambda p: (p.line, p.field))
    return plan


def refuse_duplicates(checked: list[tuple[Row, dict]], plan: Plan,
                      fields: Iterable[str]) -> list[tuple[Row, dict]]:
    """Every row sharing a value of a unique field with another row is
    refused (naming the other lines); the rest are returned."""
    bad: dict[int, Problem] = {}
    for name in fields:
        lines: dict[Any, list[int]] = {}
        for row, values in checked:
            value = values.get(name)
            if value is not None:
                lines.setdefault(value, []).append(row.line)
        for value, where in lines.items():
            if len(where) < 2:
                continue
            for line in where:
                if line in bad:
                    continue
                others = ", ".join(str(other) for other in where if other != line)
                bad[line] = Problem(line, name, f"{name} {value!r} also appears on "
                                                f"line{'s' if len(where) > 2 else ''} {others}")
    plan.problems.extend(bad.values())
    return [(row, values) for row, values in checked if row.line not in bad]


def chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def lookup(session: Session, columns, key_column, keys: Iterable) -> list:
    """Rows whose ``key_column`` is one of ``keys``: one ``= ANY(array)``
    on PostgreSQL (a statement with thousands of placeholders costs more to
    build than to run), chunks of ``IN (...)`` on SQLite."""
    keys = list(dict.fromkeys(keys))
    if not keys:
        return []
    if _postgresql(session):
        array = bindparam("keys", keys, type_=ARRAY(String()))
        return session.execute(select(*columns).where(key_column == any_(array))).all()
    found = []
    for part in chunks(keys, LOOKUP_CHUNK):
        found.extend(session.execute(select(*columns).where(key_column.in_(part))).all())
    return found


def _postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


# -- bulk writes ---------------------------------------------------------------

def allocate_ids(session: Session, table, count: int) -> list[int]:
    """``count`` new primary keys for ``table``, taken before the insert so
    that rows written by COPY can be referred to at once. PostgreSQL: from
    the table's sequence (safe beside other writers). SQLite: after the
    largest, which is safe because a writing transaction there holds the
    database's write lock from its start (BEGIN IMMEDIATE)."""
    if count == 0:
        return []
    if _postgresql(session):
        return list(session.scalars(
            text("SELECT nextval(pg_get_serial_sequence(:table, 'id')) "
                 "FROM generate_series(1, :count)"), {"table": table.name, "count": count}))
    start = session.scalar(select(func.max(table.c.id))) or 0
    return list(range(start + 1, start + count + 1))


def bulk_insert(session: Session, table, rows: list[dict]) -> None:
    """Insert ``rows`` (dicts with the same keys) into ``table``: COPY on
    PostgreSQL (psycopg 3), executemany on SQLite. Types are the table's:
    the caller gives Decimals for money and naive UTC datetimes."""
    if not rows:
        return
    if not _postgresql(session):
        session.execute(insert(table), rows)
        return
    columns = list(rows[0])
    as_json = [isinstance(table.c[c].type, JSON) for c in columns]
    import psycopg
    raw = session.connection().connection.dbapi_connection
    statement = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN"
    try:
        with raw.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row([json.dumps(row[c], ensure_ascii=False) if j and row[c] is not None
                                else row[c] for c, j in zip(columns, as_json)])
    except psycopg.Error as error:
        # Past SQLAlchemy here: give the caller the error it would have had
        # (a row written meanwhile by another import is an IntegrityError).
        kind = (exc.IntegrityError if isinstance(error, psycopg.errors.IntegrityError)
                else exc.DBAPIError)
        raise kind(statement, None, error) from None


def add_to_accounts(session: Session, column: str, deltas: dict[int, Any]) -> None:
    """``accounts.<column> += delta`` for each account id: one statement
    over arrays on PostgreSQL, executemany on SQLite."""
    if not deltas:
        return
    table = Account.__table__
    if _postgresql(session):
        cast = "numeric" if column == "balance" else "integer"
        session.execute(
            text(f"UPDATE accounts AS a SET {column} = a.{column} + v.delta "
                 f"FROM unnest(CAST(:ids AS integer[]), CAST(:deltas AS {cast}[])) "
                 f"AS v(id, delta) WHERE a.id = v.id"),
            {"ids": list(deltas), "deltas": list(deltas.values())})
        return
    statement = (update(table).where(table.c.id == bindparam("target"))
                 .values({column: table.c[column] + bindparam("delta",
                                                              type_=table.c[column].type)})
                 .execution_options(synchronize_session=False))
    session.execute(statement, [{"target": k, "delta": v} for k, v in deltas.items()])


def account_ids(session: Session, numbers: Iterable[str]) -> dict[str, int]:
    return {number: account_id for account_id, number in
            lookup(session, [Account.id, Account.number], Account.number, numbers)}


# -- accounts ------------------------------------------------------------------

def check_account_row(values: dict, options: Options) -> dict:
    number = values.get("number")
    if not number or not ACCOUNT_NUMBER.match(number):
        raise FieldError("number", f"account number must be 1-32 letters, digits or dashes, "
                                   f"not {number!r}")
    kind = values.get("kind") or "person"
    if kind not in ACCOUNT_KINDS:
        raise FieldError("kind", f"kind must be one of {', '.join(ACCOUNT_KINDS)}, not {kind!r}")
    state = values.get("state") or "active"
    if state not in ACCOUNT_STATES:
        raise FieldError("state", f"state must be one of {', '.join(ACCOUNT_STATES)}, "
                                  f"not {state!r}")
    result = {"number": number, "kind": kind, "state": state}
    for name, check in (("name", lambda v: validate.name(v, "name")),
                        ("email", validate.email), ("phone", validate.phone),
                        ("tariff", lambda v: validate.text(v, "tariff", maximum=100,
                                                           required=False)),
                        ("credit_limit", lambda v: validate.amount(v or "0", "credit limit"))):
        try:
            result[name] = check(values.get(name))
        except DomainError as error:
            raise FieldError(name, str(error)) from None
    return result


def plan_accounts(session: Session, checked: list[tuple[Row, dict]], plan: Plan) -> None:
    checked = refuse_duplicates(checked, plan, ["number"])
    tariffs = dict(session.execute(select(Tariff.name, Tariff.id)).all())
    existing = set(account_ids(session, [values["number"] for _, values in checked]))
    for row, values in checked:
        if values["tariff"] is not None and values["tariff"] not in tariffs:
            plan.problems.append(Problem(row.line, "tariff",
                                         f"tariff {values['tariff']!r} does not exist"))
        elif values["number"] in existing:
            plan.present += 1
        else:
            values["tariff_id"] = tariffs.get(values["tariff"])
            values["line"] = row.line
            plan.new.append(values)


def write_accounts(session: Session, items: list[dict], *, actor: str,
                   progress: Callable[[int], None]) -> None:
    table = Account.__table__
    now = utcnow()
    for batch in chunks(items, BATCH):
        ids = allocate_ids(session, table, len(batch))
        bulk_insert(session, table, [
            {"id": account_id, "number": v["number"], "kind": v["kind"], "name": v["name"],
             "email": v["email"], "phone": v["phone"], "state": v["state"],
             "tariff_id": v["tariff_id"], "credit_limit": v["credit_limit"],
             "balance": Decimal("0.00"), "profile": "normal", "version": 1,
             "created_at": now, "notify_channels": ["email"]}
            for account_id, v in zip(ids, batch)])
        log(session, [{"account_id": account_id, "actor": actor, "action": "account.import",
                       "details": {"number": v["number"], "tariff": v["tariff"]},
                       "created_at": now} for account_id, v in zip(ids, batch)])
        _after_accounts_inserted(session, ids)
        progress(len(batch))


def _after_accounts_inserted(session: Session, ids: list[int]) -> None:
    """The one place to derive whatever the ORM would have set on an Account
    (a bulk insert skips ORM events): called after each batch of imported
    accounts, with their ids, in the import's transaction."""
    from rating.search import backfill
    backfill(session)


# -- opening balances ----------------------------------------------------------

def check_balance_row(values: dict, options: Options) -> dict:
    result = {"account": _account_number(values)}
    try:
        # An opening balance may be negative: a debt brought over is legitimate.
        result["amount"] = validate.amount(values.get("amount"), "amount", negative_ok=True)
    except DomainError as error:
        raise FieldError("amount", str(error)) from None
    result["memo"] = _field(values, "memo", validate.memo)
    return result


def plan_balances(session: Session, checked: list[tuple[Row, dict]], plan: Plan) -> None:
    checked = refuse_duplicates(checked, plan, ["account"])
    for _, values in checked:
        values["key"] = f"opening:{values['account']}"
        values["kind"] = OPENING_KIND
        values["created_at"] = None
        values["memo"] = values["memo"] or "opening balance (import)"
    _plan_postings(session, checked, plan, "an opening balance")


def write_balances(session: Session, items: list[dict], *, actor: str,
                   progress: Callable[[int], None]) -> None:
    _write_postings(session, items, actor=actor, action="balance.import", progress=progress)


# -- payments ------------------------------------------------------------------

def check_payment_row(values: dict, options: Options) -> dict:
    result = {"account": _account_number(values)}
    try:
        result["amount"] = validate.amount(values.get("amount"), "amount", positive=True)
    except DomainError as error:
        raise FieldError("amount", str(error)) from None
    external = values.get("external_id")
    if external is None:
        raise FieldError("external_id", "external id is required: it is what makes a second "
                                        "import of the file change nothing")
    result["external_id"] = _field(values, "external_id", validate.external_id)
    provider = values.get("provider") or "import"
    if not re.match(r"^[a-z0-9_-]{1,32}$", provider):
        raise FieldError("provider", f"provider must be 1-32 lowercase letters, digits, - or _, "
                                     f"not {provider!r}")
    result["provider"] = provider
    result["memo"] = _field(values, "memo", validate.memo)
    result["paid_at"] = _paid_at(values.get("paid_at"), options)
    return result


def _paid_at(value: str | None, options: Options) -> dt.datetime | None:
    """The payment's time in UTC: with an offset as given, without one in
    the operator's time zone (what an export of a Russian billing holds)."""
    if value is None:
        return None
    try:
        if options.date_format:
            moment = dt.datetime.strptime(value, options.date_format)
        else:
            moment = dt.datetime.fromisoformat(value)
    except ValueError:
        pattern = options.date_format or "2024-01-31 or 2024-01-31 18:05:00"
        raise FieldError("paid_at", f"paid_at must be a time like {pattern}, "
                                    f"not {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(options.timezone))
    moment = moment.astimezone(dt.timezone.utc).replace(tzinfo=None)
    if moment > options.now + dt.timedelta(minutes=5):
        raise FieldError("paid_at", f"paid_at {value!r} is in the future")
    if moment.year < 1990:
        raise FieldError("paid_at", f"paid_at {value!r} is before 1990")
    return moment


def plan_payments(session: Session, checked: list[tuple[Row, dict]], plan: Plan) -> None:
    checked = refuse_duplicates(checked, plan, ["external_id"])
    for _, values in checked:
        values["key"] = f"payment:{values['provider']}:{values['external_id']}"
        values["kind"] = "payment"
        values["created_at"] = values["paid_at"]
    _plan_postings(session, checked, plan, "a payment with this external id")


def write_payments(session: Session, items: list[dict], *, actor: str,
                   progress: Callable[[int], None]) -> None:
    _write_postings(session, items, actor=actor, action="payment.import", progress=progress)


# -- postings (balances and payments) ------------------------------------------

def _account_number(values: dict) -> str:
    number = values.get("account")
    if not number or not ACCOUNT_NUMBER.match(number):
        raise FieldError("account", f"account must be an account number (1-32 letters, digits "
                                    f"or dashes), not {number!r}")
    return number


def _field(values: dict, name: str, check: Callable):
    try:
        return check(values.get(name))
    except DomainError as error:
        raise FieldError(name, str(error)) from None


def _plan_postings(session: Session, checked: list[tuple[Row, dict]], plan: Plan,
                   what: str) -> None:
    ids = account_ids(session, [values["account"] for _, values in checked])
    existing = {key: (account_id, amount, kind) for key, account_id, amount, kind in lookup(
        session, [LedgerEntry.idempotency_key, LedgerEntry.account_id, LedgerEntry.amount,
                  LedgerEntry.kind],
        LedgerEntry.idempotency_key, [values["key"] for _, values in checked])}
    for row, values in checked:
        account_id = ids.get(values["account"])
        if account_id is None:
            plan.problems.append(Problem(row.line, "account",
                                         f"account {values['account']} does not exist"))
            continue
        values["account_id"] = account_id
        found = existing.get(values["key"])
        if found is None:
            values["line"] = row.line
            plan.new.append(values)
        elif found == (account_id, values["amount"], values["kind"]):
            plan.present += 1
        else:
            plan.problems.append(Problem(row.line, "amount",
                                         f"{what} was already imported for account "
                                         f"{values['account']} with another amount "
                                         f"({found[1]})" if found[0] == account_id else
                                         f"{what} was already imported for another account"))


def _write_postings(session: Session, items: list[dict], *, actor: str, action: str,
                    progress: Callable[[int], None]) -> None:
    """Ledger entries and the cached balances they move, in batches; the
    ledger's invariant (balance = sum of entries) holds when the
    transaction commits."""
    entries = LedgerEntry.__table__
    now = utcnow()
    for batch in chunks(items, BATCH):
        bulk_insert(session, entries, [
            {"account_id": v["account_id"], "amount": v["amount"], "kind": v["kind"],
             "idempotency_key": v["key"], "author": actor, "memo": v["memo"],
             "created_at": v["created_at"] or now} for v in batch])
        totals: dict[int, Decimal] = {}
        for v in batch:
            totals[v["account_id"]] = totals.get(v["account_id"], Decimal("0.00")) + v["amount"]
        add_to_accounts(session, "balance", totals)
        log(session, [{"account_id": v["account_id"], "actor": actor, "action": action,
                       "details": {"amount": str(v["amount"]), "key": v["key"]},
                       "created_at": now} for v in batch])
        progress(len(batch))
    if items:
        ids = [v["account_id"] for v in items]
        # A negative opening balance throttles at once, as a payment lifts it.
        fees.apply_policies(session, min(ids), max(ids) + 1, reason="import")


def log(session: Session, rows: list[dict]) -> None:
    """Operation-log lines (rating.oplog's table), in bulk."""
    bulk_insert(session, OperationLog.__table__, rows)


# -- the kinds -----------------------------------------------------------------

ACCOUNTS = Kind(
    name="accounts",
    fields=("number", "name", "tariff", "kind", "email", "phone", "credit_limit", "state"),
    required=("number", "name"),
    check_row=check_account_row, plan=plan_accounts, write=write_accounts)

BALANCES = Kind(
    name="balances", fields=("account", "amount", "memo"), required=("account", "amount"),
    check_row=check_balance_row, plan=plan_balances, write=write_balances)

PAYMENTS = Kind(
    name="payments",
    fields=("account", "amount", "external_id", "paid_at", "provider", "memo"),
    required=("account", "amount", "external_id"),
    check_row=check_payment_row, plan=plan_payments, write=write_payments)


# -- one import ----------------------------------------------------------------

@dataclass
class Report:
    kind: str
    file: str
    sha256: str
    rows: int
    imported: int
    would_import: int
    present: int
    problems: list[Problem]
    dry_run: bool
    written: bool

    def as_dict(self) -> dict:
        return {"kind": self.kind, "file": self.file, "sha256": self.sha256, "rows": self.rows,
                "imported": self.imported, "would_import": self.would_import,
                "already_present": self.present, "refused": len(self.problems),
                "problems": [p.as_dict() for p in self.problems], "dry_run": self.dry_run,
                "written": self.written}


def import_file(session: Session, kind: Kind, path: str | Path, *,
                mapping: Mapping | None = None, dry_run: bool = False, skip_bad: bool = False,
                actor: str = "admin", timezone: str = "UTC",
                progress: Callable[[int], None] | None = None,
                start: Callable[[int], None] | None = None) -> Report:
    """Check a whole file, then (unless ``dry_run``, or a row was refused
    and not ``skip_bad``) write its new rows in the caller's transaction.
    ``start(n)`` is told how many rows will be written, ``progress(k)`` as
    each batch is."""
    mapping = mapping or Mapping()
    section = mapping.section(kind.name) or {}
    rows = read_rows(path, kind, mapping)
    options = Options(timezone=timezone,
                      date_format=section.get("date_format") or mapping.date_format)
    plan = build_plan(session, kind, rows, options)
    write = not dry_run and plan.new and (skip_bad or not plan.problems)
    digest = file_digest(path)
    if write:
        if start:
            start(len(plan.new))
        kind.write(session, plan.new, actor=actor, progress=progress or (lambda _: None))
        log(session, [{"account_id": None, "actor": actor, "action": f"import.{kind.name}",
                       "details": {"file": Path(path).name, "sha256": digest,
                                   "rows": str(plan.total), "imported": str(len(plan.new)),
                                   "already_present": str(plan.present),
                                   "refused": str(len(plan.problems))},
                       "created_at": utcnow()}])
    return Report(kind=kind.name, file=str(path), sha256=digest, rows=plan.total,
                  imported=len(plan.new) if write else 0, would_import=len(plan.new),
                  present=plan.present, problems=plan.problems, dry_run=dry_run,
                  written=bool(write))
