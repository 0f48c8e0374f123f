"""Fuzz target: what a subscriber types into the cabinet, through the parsers
that turn text into amounts, dates and codes, and through the real pages and
JSON API that use them (a Flask test client on a scratch SQLite database).

Input layout: the first octet picks a form (``FORMS``), the rest is the
submitted value, percent-encoded as a browser would send it (invalid UTF-8
included); for JSON endpoints it is the raw request body. A ``|`` splits a
value into two fields where a form has two (from|to dates).

Contract (DESIGN: "bad input gets a clear error ... and changes nothing"):

- the pure parsers: ``config.db.money`` gives a finite Decimal with two
  places or raises ValueError / ArithmeticError; ``vouchers.normalize_code``
  gives None or 16 characters of the code alphabet, and is idempotent;
  ``periods.month`` gives a whole month in UTC bounds and ``periods.parse_day``
  a date, or PeriodError;
- every page and API answer is below 500;
- an answer of 400 or more changes nothing: balance, ledger, operation
  log, promised payments, card payments and contacts are as before;
- a promised payment or card top-up that changed something was for an
  amount ``money`` accepts, within its limits (a second request of the day
  is answered with the first promise: idempotent, it changes nothing).
"""

from __future__ import annotations

import datetime as dt
import json
import urllib.parse
from decimal import Decimal

from tests.fuzz import ContractViolation, check

INSTRUMENT = ["cabinet", "config.db"]
TIMEZONE = "Europe/Moscow"
TODAY = dt.date(2026, 11, 23)


def _form(*names):
    def body(text: str) -> dict:
        parts = text.split("|", len(names) - 1)
        parts += [""] * (len(names) - len(parts))
        return dict(zip(names, parts))
    return body


# (method, path, how the value becomes the request, kind of value)
FORMS = (
    ("POST", "/promised", _form("amount"), "amount"),
    ("POST", "/topup/voucher", _form("code"), "code"),
    ("POST", "/topup/online", _form("amount"), "amount"),
    ("POST", "/api/v1/accounts/{id}/promised", "json", "amount"),
    ("GET", "/sessions", _form("month"), "month"),
    ("GET", "/payments", _form("from", "to"), "day"),
    ("POST", "/freeze", _form("until"), "day"),
    ("POST", "/notifications", _form("low_balance_threshold", "telegram_chat_id"), "amount"),
    ("POST", "/contacts", _form("email", "phone", "phone_landline"), "text"),
    ("GET", "/payments.pdf", _form("from", "to"), "day"),
    ("POST", "/api/v1/accounts/{id}/turbo", "json", "text"),
    ("PUT", "/api/v1/accounts/{id}/contacts", "json", "text"),
    ("GET", "/api/v1/accounts/{id}/payments", _form("from", "to"), "day"),
)


def check_parsers(text: str) -> None:
    from cabinet import periods
    from config.db import money
    from rating.vouchers import ALPHABET, CODE_LENGTH, normalize_code

    try:
        value = money(text)
    except (ValueError, ArithmeticError):
        pass
    else:
        check(isinstance(value, Decimal) and value.is_finite()
              and value.as_tuple().exponent == -2, f"money({text!r}) = {value!r}")
    code = normalize_code(text)
    if code is not None:
        check(len(code) == CODE_LENGTH and all(c in ALPHABET for c in code),
              f"normalize_code({text!r}) = {code!r}")
        check(normalize_code(code) == code, "normalize_code is not idempotent")
    try:
        period = periods.month(text, TIMEZONE, TODAY)
    except periods.PeriodError:
        pass
    else:
        check(period.first_day.day == 1 and (period.last_day + dt.timedelta(days=1)).day == 1
              and period.start_utc < period.end_utc, f"month({text!r}) = {period}")
    try:
        day = periods.parse_day(text, TODAY)
    except periods.PeriodError:
        pass
    else:
        check(isinstance(day, dt.date), f"parse_day({text!r}) = {day!r}")


def setup():
    import atexit
    import shutil
    import tempfile
    from pathlib import Path

    from sqlalchemy import func, select

    from cabinet.app import create_app
    from config.db import money
    from config.migrate import upgrade
    from rating import api_tokens
    from rating.models import Account, CabinetUser
    from tests.conftest import make_context
    from tests.integration.cabinet_helpers import log_in, seed_subscriber

    folder = Path(tempfile.mkdtemp(prefix="abonent-fuzz-cabinet-"))
    atexit.register(shutil.rmtree, folder, True)
    ctx = make_context(f"sqlite:///{folder / 'cabinet.sqlite3'}", data_dir=folder)
    upgrade(ctx.engine)
    subscriber = seed_subscriber(ctx, login="fuzz", password="correct-horse-1", balance="0",
                                 email="fuzz@example.com")
    with ctx.Session() as session:
        user_id = session.scalar(select(CabinetUser.id).where(CabinetUser.login == "fuzz"))
        _row, bearer = api_tokens.create(session, user_id, name="fuzz", actor="fuzz")
        session.commit()
    app = create_app(ctx, testing=True)
    app.config.update(WTF_CSRF_ENABLED=False, PROPAGATE_EXCEPTIONS=False,
                      TESTPAY_ENABLED=True, ABONENT_API_RATE_LIMIT="1000000/second")
    app.extensions["abonent_limiter"].enabled = False
    client = app.test_client()
    status = log_in(client, subscriber.login, subscriber.password, lang="en").status_code
    if status != 302:
        raise RuntimeError(f"the fuzz subscriber cannot log in ({status})")
    account_id = subscriber.account_id
    tables = ("ledger_entries", "operation_log", "promised_payments", "provider_payments",
              "account_options")
    from sqlalchemy import table as sql_table

    def state() -> tuple:
        with ctx.Session() as session:
            account = session.get(Account, account_id)
            counts = tuple(session.scalar(select(func.count()).select_from(sql_table(name)))
                           for name in tables)
            return (account.balance, account.email, account.phone, account.phone_landline,
                    account.state) + counts

    def one_input(data: bytes) -> None:
        if not data:
            return
        method, path, encode, kind = FORMS[data[0] % len(FORMS)]
        raw = data[1:]
        text = raw.decode("utf-8", "replace")
        check_parsers(text)
        path = path.format(id=account_id)
        headers = {}
        if path.startswith("/api/"):
            headers["Authorization"] = f"Bearer {bearer}"
        before = state()
        if encode == "json":
            body = raw if kind != "amount" else (
                b'{"amount": ' + (raw if raw[:1] in b"-0123456789" else
                                  json.dumps(text).encode()) + b"}")
            response = client.open(path, method=method, data=body, headers=headers,
                                   content_type="application/json")
        else:
            fields = encode(text)
            if path == "/freeze":
                fields["account_id"] = str(account_id)
            if path == "/notifications":
                fields["channels"] = "email"
            query = urllib.parse.urlencode(
                {k: v.encode("utf-8", "surrogateescape") for k, v in fields.items()})
            if method == "GET":
                response = client.open(f"{path}?{query}", method=method, headers=headers)
            else:
                response = client.open(path, method=method, data=query, headers=headers,
                                       content_type="application/x-www-form-urlencoded")
        code = response.status_code
        if code >= 500:
            raise ContractViolation(f"{method} {path} answered {code} to {raw!r}")
        if code == 302 and response.location and "/login" in response.location:
            raise ContractViolation(f"{method} {path} logged the subscriber out")
        after = state()
        if code >= 400:
            check(after == before, f"{method} {path} answered {code} but changed {before} "
                                   f"to {after}")
        elif kind == "amount" and path in ("/promised", "/topup/online") and after != before:
            try:
                amount = money(text.strip())
            except (ValueError, ArithmeticError):
                raise ContractViolation(f"{path} accepted {text!r}") from None
            check(Decimal(0) < amount <= Decimal("100000.00"),
                  f"{path} accepted the amount {amount}")

    return one_input


def seeds() -> dict[str, bytes]:
    out = {}
    values = {
        "/promised": ["100", "99.50", "0.01", "1e3", "-5", "abc"],
        "/topup/voucher": ["ABCD-EFGH-JKMN-PQRS", "abcd efgh jkmn pqrs", "O0O0"],
        "/topup/online": ["250", "99.50", "10.00"],
        "/api/v1/accounts/{id}/promised": ['"300.00"', "300", '"1e2"'],
        "/sessions": ["2026-11", "2026-02", "1999-13"],
        "/payments": ["2026-11-01|2026-11-23", "2026-02-29|2026-03-01"],
        "/freeze": ["2026-12-24", "2026-11-23"],
        "/notifications": ["100.00|123456789", "0|"],
        "/contacts": ["a@example.com|+7 900 000-00-00|8 (495) 123-45-67"],
        "/payments.pdf": ["2026-11-01|2026-11-23"],
        "/api/v1/accounts/{id}/turbo": ['{"request_id": "req-0001-fuzz"}'],
        "/api/v1/accounts/{id}/contacts": ['{"email": "a@example.com", "phone": "+79000000000"}'],
        "/api/v1/accounts/{id}/payments": ["2026-11-01|2026-11-23"],
    }
    for index, (method, path, _encode, _kind) in enumerate(FORMS):
        for number, value in enumerate(values[path]):
            name = path.strip("/").replace("/", "_").replace("{id}", "id").replace(".", "_")
            out[f"{method.lower()}_{name}_{number}"] = bytes((index,)) + value.encode()
    return out
