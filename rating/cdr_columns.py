"""A batch of CDRs as columns: parsed, rated and written without a Python
step per record (issue 17: a million CDRs in 30 s).

``record_calls`` (rating.telephony) is the reference: it rates one
``CallInput`` at a time and RADIUS accounting uses it as it is. A CDR file
comes a hundred thousand records at a time, and there the same rules run
here over NumPy arrays:

- numbers are normalised as integers: a number of digits is kept as
  ``10 ** length + value`` (the leading 1 keeps its length and its leading
  zeros), so a national prefix is a division, the country code an
  addition, a service a ``searchsorted`` in its sorted numbers and a rate
  one ``searchsorted`` per prefix length, longest first;
- times are parsed by NumPy, the zone offset is looked up once per hour;
- billed seconds, the package (a running sum per service and month,
  capped at the plan's seconds) and the money are integer arrays in
  seconds and kopecks: ``(120 * fee + 2 * price * seconds + 60) // 120``
  is the charge rounded half up, as ``charge_for`` rounds it;
- the rows go to PostgreSQL as COPY text built a column at a time.

Whatever the columns cannot say exactly (a number with letters or more
than 17 digits, a time not written ``YYYY-MM-DD HH:MM:SS``, a price with
a fraction of a kopeck, rows of different lengths) the batch does not
take this way: ``Unsupported`` is raised before anything is written and
the caller records that batch through ``record_calls``. A number that
needs the reference rules alone is normalised and matched one at a time
and the rest of the batch stays in columns.

tests/integration/test_cdr_columns.py imports random files both ways and
compares every call and every entry.
"""

from __future__ import annotations

import datetime as dt
import operator
import re
import threading
import uuid
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from config.db import utcnow
from rating import telephony as tel
from rating.models import Call, VoiceService

_ANSWERED, _NO_ANSWER, _BUSY, _FAILED = range(4)
_DISPOSITIONS = ("answered", "no_answer", "busy", "failed")
_CODE = {name: code for code, name in enumerate(_DISPOSITIONS)}
_ASTERISK = {"ANSWERED": "answered", "NO ANSWER": "no_answer", "BUSY": "busy",
             "FAILED": "failed", "CONGESTION": "failed"}
# "YYYY-MM-DD HH:MM:SS": where the digits are, where the rest and what it is.
_DIGIT_AT = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18]
_PUNCTUATION_AT = [4, 7, 10, 13, 16]
_PUNCTUATION = np.array([ord(c) for c in "-- ::"], dtype=np.uint32)
_NAT = np.datetime64("NaT")
# A number as ``10 ** length + value`` stays below 2 ** 63 up to 18 digits;
# 17 leaves room for the country code added to a national number.
_MAX_DIGITS = 17
_POW10 = np.array([10 ** k for k in range(19)], dtype=np.int64)
_NO_KEY = -1
_COPY_SPECIAL = re.compile(r"[\t\n\r\\]")


class Unsupported(Exception):
    """This batch takes the per-record way (``record_calls``)."""


@dataclass
class Columns:
    """One batch of call records, a list or an array per field, in file order."""

    source: str
    external_id: list          # str
    calling: list              # raw A-numbers
    called: list               # raw B-numbers
    login: list | None         # str or None; None: no record has one
    start: np.ndarray          # datetime64[s], naive UTC
    answer: np.ndarray         # datetime64[s], NaT where empty
    end: np.ndarray
    billsec: np.ndarray        # int64, 0 unless answered
    disposition: np.ndarray    # int8 index into _DISPOSITIONS
    # ``normalise_column`` of calling and called (``normalised``).
    calling_e164: list | None = None
    calling_key: np.ndarray | None = None
    called_e164: list | None = None
    called_key: np.ndarray | None = None

    def normalised(self, rules: tel.NumberRules, cache: dict) -> "Columns":
        """The numbers normalised (a pure step: the import does it in its
        reading thread, ahead of the database work)."""
        self.calling_e164, self.calling_key = normalise_column(self.calling, rules, cache)
        self.called_e164, self.called_key = normalise_column(self.called, rules, cache)
        return self

    def __len__(self) -> int:
        return len(self.external_id)


# -- parsing ---------------------------------------------------------------------------

def _column(rows: list, index: int) -> list:
    return list(map(operator.itemgetter(index), rows))


def _times(values: list, clock, empty_allowed: bool) -> np.ndarray:
    """Local "YYYY-MM-DD HH:MM:SS" strings to naive UTC seconds, the offset
    taken per local hour from ``clock`` (rating.cdr._Times), which caches
    it across batches as the per-record parser does."""
    lengths = set(map(len, values))
    if not lengths <= ({0, 19} if empty_allowed else {19}):
        raise Unsupported("a time is not written YYYY-MM-DD HH:MM:SS")
    characters = np.array(values, dtype="U19").view(np.uint32).reshape(len(values), 19)
    written = characters[:, 0] != 0
    if int((~written).sum()) != values.count(""):
        raise Unsupported("a time starts with a NUL")
    shape = characters[written]
    digits = (shape >= 48) & (shape <= 57)
    if not (digits[:, _DIGIT_AT].all() and (shape[:, _PUNCTUATION_AT] == _PUNCTUATION).all()):
        raise Unsupported("a time is not written YYYY-MM-DD HH:MM:SS")
    try:
        local = characters.view("U19").reshape(-1).astype("datetime64[s]")
    except ValueError:
        raise Unsupported("a time NumPy does not read") from None
    present = ~np.isnat(local)
    seconds = local.astype(np.int64)
    hours, first, inverse = np.unique(np.where(present, seconds // 3600, -1), return_index=True,
                                      return_inverse=True)
    offsets = np.zeros(len(hours), dtype=np.int64)
    for slot, row in enumerate(first.tolist()):
        if hours[slot] == -1:
            continue
        value = values[row]
        offset = clock._offsets.get(value[:13])
        if offset is None:
            try:
                clock(value)  # computes and caches the offset of this hour
            except ValueError:
                raise Unsupported("a time Python does not read") from None
            offset = clock._offsets[value[:13]]
        offsets[slot] = int(offset.total_seconds())
    utc = seconds - offsets[inverse.reshape(-1)]
    return np.where(present, utc.astype("datetime64[s]"), _NAT)


def asterisk_columns(rows: list[list[str]], clock) -> Columns:
    """Columns of Asterisk Master.csv records (csv.reader rows, no blank
    ones), read as rating.cdr._asterisk reads each; Unsupported when one
    of them would need its per-record checks."""
    widths = set(map(len, rows))
    if len(widths) != 1:
        raise Unsupported("records of different lengths")
    width = widths.pop()
    if width < 16:
        raise Unsupported("short records")
    raw_dispositions = _column(rows, 14)
    codes = {}
    for value in set(raw_dispositions):
        name = _ASTERISK.get(value.strip().upper())
        if name is None:
            raise Unsupported(f"unknown disposition {value!r}")
        codes[value] = _CODE[name]
    count = len(rows)
    disposition = np.fromiter(map(codes.__getitem__, raw_dispositions), np.int8, count)
    start_text = _column(rows, 9)
    start = _times(start_text, clock, empty_allowed=False)
    answer = _times(_column(rows, 10), clock, empty_allowed=True)
    end = _times(_column(rows, 11), clock, empty_allowed=True)
    try:
        billsec = np.fromiter(map(int, _column(rows, 13)), np.int64, count)
    except (ValueError, OverflowError):
        raise Unsupported("billsec is not a number") from None
    billsec[disposition != _ANSWERED] = 0
    if count and (billsec.min() < 0 or billsec.max() > tel._MAX_BILLSEC):
        raise Unsupported("billsec out of range")
    if width > 16:
        ids = list(map(str.strip, _column(rows, 16)))
        if not all(ids):
            ids = [unique or f"{row[5]}|{row[9]}|{row[2]}" for unique, row in zip(ids, rows)]
    else:
        ids = [f"{row[5]}|{row[9]}|{row[2]}" for row in rows]
    if count and max(map(len, ids)) > 150:
        ids = [value[:150] for value in ids]
    logins = list(map(str.strip, _column(rows, 0)))
    login = [value or None for value in logins] if any(logins) else None
    return Columns("asterisk", ids, _column(rows, 1), _column(rows, 2), login, start, answer,
                   end, billsec, disposition)


# -- numbers ---------------------------------------------------------------------------

def _int_digits(values: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(plain, value, length): plain where a string is 1 to _MAX_DIGITS
    ASCII digits, and then its value and length."""
    count = len(values)
    length = np.fromiter(map(len, values), np.int64, count)
    joined = "".join(values)
    if joined.isascii() and joined.isdigit():  # the usual file: one test for all
        plain = (length >= 1) & (length <= _MAX_DIGITS)
    else:
        plain = (np.fromiter(map(str.isascii, values), bool, count)
                 & np.fromiter(map(str.isdigit, values), bool, count)
                 & (length >= 1) & (length <= _MAX_DIGITS))
    if plain.all():
        value = np.fromiter(map(int, values), np.int64, count)
    else:
        value = np.zeros(count, dtype=np.int64)
        where = np.flatnonzero(plain)
        value[where] = np.fromiter(map(int, [values[i] for i in where.tolist()]), np.int64,
                                   len(where))
    return plain, value, length


def _starts(value, length, prefix: str):
    """Which digit strings (value, length) start with ``prefix`` (digits)."""
    size = len(prefix)
    shift = np.clip(length - size, 0, 18)
    return (length >= size) & (value // _POW10[shift] == int(prefix))


def key_of(number: str) -> int:
    """A number's integer key, or _NO_KEY if it is not 1 to 18 ASCII digits."""
    if number and len(number) <= 18 and number.isascii() and number.isdigit():
        return 10 ** len(number) + int(number)
    return _NO_KEY


def normalise_column(raws: list, rules: tel.NumberRules, cache: dict) -> tuple[list, np.ndarray]:
    """``normalise(raw, rules)[:32]`` of every raw number: (the strings, their
    keys; _NO_KEY for an empty or unusual one). Plain digit strings are
    worked as integers; the rest by ``normalise`` itself (cached)."""
    plain, value, length = _int_digits(raws)
    new_value, new_length = value.copy(), length.copy()
    todo = plain.copy()

    def apply(mask, cut: int, add: str) -> None:
        nonlocal todo
        mask &= todo
        rest = length - cut
        new_value[mask] = (int(add or 0) * _POW10[np.clip(rest, 0, 18)] +
                           value % _POW10[np.clip(rest, 0, 18)])[mask]
        new_length[mask] = (len(add) + rest)[mask]
        todo &= ~mask

    intl = rules.international_prefix
    if intl:
        apply(_starts(value, length, intl) & (length > len(intl) + 6), len(intl), "")
    apply(_starts(value, length, "00") & (length > 8), 2, "")
    national, cc, national_prefix = rules.national_length, rules.country_code, rules.national_prefix
    if national_prefix:
        apply((length == len(national_prefix) + national)
              & _starts(value, length, national_prefix), len(national_prefix), cc)
    apply((length == len(cc) + national) & (_starts(value, length, cc) if cc else True), 0, "")
    apply(length == national, 0, cc)
    if rules.local_length:
        apply(length == rules.local_length, 0, cc + rules.local_area)
    fast = plain & (new_length >= 1) & (new_length <= 18)
    keys = np.where(fast, _POW10[np.clip(new_length, 0, 18)] + new_value, _NO_KEY)
    if fast.all():
        strings = list(map(str.zfill, map(str, new_value.tolist()), new_length.tolist()))
        return strings, keys
    strings = [None] * len(raws)
    where = np.flatnonzero(fast).tolist()
    for i, digits, size in zip(where, new_value[where].tolist(), new_length[where].tolist()):
        strings[i] = str(digits).zfill(size)
    for i in np.flatnonzero(~fast).tolist():
        raw = raws[i]
        found = cache.get(raw)
        if found is None:
            found = cache[raw] = tel.normalise(raw, rules)[:32]
        strings[i] = found
        keys[i] = key_of(found)
    return strings, keys


# -- lookups ---------------------------------------------------------------------------

class _Sorted:
    """Integer keys sorted, with a row of values each: ``find`` is a
    vectorised dict.get (-1 where absent)."""

    def __init__(self, keys: list[int]):
        keys_ = np.array(keys, dtype=np.int64)
        self.order = np.argsort(keys_, kind="stable")
        self.keys = keys_[self.order]

    def find(self, wanted: np.ndarray) -> np.ndarray:
        if not len(self.keys):
            return np.full(len(wanted), -1, dtype=np.int64)
        slot = np.searchsorted(self.keys, wanted)
        slot = np.minimum(slot, len(self.keys) - 1)
        hit = (self.keys[slot] == wanted) & (wanted != _NO_KEY)
        return np.where(hit, self.order[slot], -1)


class _RateColumns:
    """A RateTable as arrays: per prefix length (longest first) the sorted
    keys, and per rate its prices in kopecks and increments."""

    def __init__(self, table: tel.RateTable):
        rates = [rate for _, level in table._levels for rate in level.values()]
        self.rates = rates
        for rate in rates:
            if not (rate.prefix.isascii() and rate.prefix.isdigit() and len(rate.prefix) <= 18):
                raise Unsupported(f"prefix {rate.prefix!r}")
        self.price = _kopecks([r.price_per_minute for r in rates])
        self.offpeak = _kopecks([r.offpeak_price_per_minute for r in rates])
        self.connection = _kopecks([r.connection_fee for r in rates])
        self.first = np.array([r.first_increment_s for r in rates], dtype=np.int64)
        self.next = np.array([r.next_increment_s for r in rates], dtype=np.int64)
        self.position = {rate.prefix: i for i, rate in enumerate(rates)}
        self._texts: dict[int, str] = {}
        self.levels = []
        start = 0
        for length, level in table._levels:
            keys = [10 ** length + int(prefix) for prefix in level]
            lookup = _Sorted(keys)
            self.levels.append((length, lookup, start))
            start += len(level)

    def copy_text(self, index: int, offpeak: int) -> str:
        """"zone<TAB>prefix<TAB>price" of a rate (its off-peak price if asked), escaped."""
        key = index * 2 + offpeak
        found = self._texts.get(key)
        if found is None:
            rate = self.rates[index]
            price = rate.offpeak_price_per_minute if offpeak else rate.price_per_minute
            found = self._texts[key] = "\t".join(
                (tel._copy_escape(rate.zone), tel._copy_escape(rate.prefix), str(price)))
        return found

    def match(self, value: np.ndarray, length: np.ndarray) -> np.ndarray:
        """The index of the longest matching rate per (value, length), -1 if none."""
        found = np.full(len(value), -1, dtype=np.int64)
        for size, lookup, start in self.levels:
            todo = (found < 0) & (length >= size)
            if not todo.any():
                continue
            where = np.flatnonzero(todo)
            head = value[where] // _POW10[length[where] - size] + 10 ** size
            hit = lookup.find(head)
            found[where[hit >= 0]] = hit[hit >= 0] + start
        return found


def _kopecks(amounts: list) -> np.ndarray:
    """Decimals to integer kopecks (-1 for None); Unsupported for a fraction of one."""
    out = []
    for amount in amounts:
        if amount is None:
            out.append(-1)
            continue
        kopecks = amount * 100
        if kopecks != kopecks.to_integral_value() or kopecks < 0:
            raise Unsupported(f"amount {amount}")
        out.append(int(kopecks))
    return np.array(out, dtype=np.int64)


def _rate_columns(table: tel.RateTable) -> _RateColumns:
    columns = getattr(table, "_columns", None)
    if columns is None:
        columns = table._columns = _RateColumns(table)
    return columns


class _Coded:
    """An integer column and the text of each distinct value: the strings
    of a slice are a table lookup, not a conversion per row."""

    def __init__(self, codes: np.ndarray, text_of):
        self.distinct, self.first, inverse = np.unique(codes, return_index=True,
                                                       return_inverse=True)
        self.inverse = inverse.reshape(-1)
        self.table = np.array([text_of(code) for code in self.distinct.tolist()], dtype=object)

    def strings(self, part: slice) -> list:
        return self.table[self.inverse[part]].tolist()


def _money_text(kopecks: int) -> str:
    return f"{kopecks // 100}.{kopecks % 100:02d}"


# -- recording -------------------------------------------------------------------------

class Recorder:
    """Records batches of one import; keeps what a batch may reuse (the
    normalised numbers of odd strings, the services when all are read)."""

    def __init__(self, session: Session, config: tel.Config, author: str = "rating:calls"):
        self.session = session
        self.config = config
        self.author = author
        self.postgres = tel._postgres(session)
        self.clock = tel.LocalClock(config.timezone)
        self.norm_cache: dict[str, str] = {}
        self._services = None
        self._packages: dict = {}
        self.totals: dict[str, list] = {}                 # ledger entries to post
        self._pending = None  # (source, ids, store) of the batch rated, not written
        self._writer = None   # (thread, failure) of the COPY running
        self.used: dict[tuple[int, str], int] = {}        # package seconds, as now
        self.used_before: dict[tuple[int, str], int] = {}  # ... as read

    def flush(self) -> int:
        """Post the entries of the batches recorded since the last flush,
        move the balances, save the package seconds, apply the balance
        ladder to the accounts charged: what ``record_calls`` does at the
        end of each batch. Returns the entries written. Before the
        database is read by anyone else in this transaction (a batch the
        per-record way) and at the end of the import."""
        self._write_pending()
        session, totals = self.session, self.totals
        entries = tel.post_entries(session, totals, author=self.author)
        spent = {key: seconds for key, seconds in self.used.items()
                 if seconds != self.used_before[key]}
        if spent:
            tel._save_allowances(session, spent)
        accounts = {t[0] for t in totals.values()}
        if accounts:
            from rating.fees import apply_policies
            apply_policies(session, min(accounts), max(accounts) + 1, reason="calls")
        self.totals, self.used, self.used_before = {}, {}, {}
        return entries

    def services(self, calling: list, called: list, login: list | None):
        """(by_number, by_login): every active service if they are fewer
        than the numbers of the batch, else those of the batch (the
        reference's query). Same answer either way."""
        if self._services is not None:
            return self._services
        session = self.session
        numbers = set(calling) | set(called)
        numbers.discard("")
        logins = {v for v in login if v} if login else set()
        count = session.execute(text(
            "SELECT count(*) FROM voice_services WHERE state = 'active'")).scalar_one()
        if count > len(numbers) + len(logins):
            return tel._services(session, numbers, logins)
        by_number: dict[str, tuple[int, int, int]] = {}
        by_login: dict[str, tuple[int, int, int]] = {}
        for account_id, service_id, plan_id, number, login in session.execute(select(
                VoiceService.account_id, VoiceService.id, VoiceService.plan_id,
                VoiceService.number, VoiceService.login).where(VoiceService.state == "active")):
            if number is not None:
                by_number[number] = (account_id, service_id, plan_id)
            if login is not None:
                by_login[login] = (account_id, service_id, plan_id)
        # The services are read under this import's transaction; another
        # batch of the same import may reuse them only if nothing changed
        # them since, which nothing in an import does.
        self._services = (by_number, by_login)
        return self._services

    def _in_package(self, plan: tel.PlanRules, rate_cols: _RateColumns) -> np.ndarray:
        """Per rate of the table, whether the plan's package pays for its zone."""
        key = (plan, id(rate_cols))
        found = self._packages.get(key)
        if found is None:
            found = self._packages[key] = np.array(
                [plan.in_package(r.zone) for r in rate_cols.rates], bool)
        return found

    def record(self, columns: Columns) -> tel.RecordResult:
        """What ``record_calls`` does with these calls, in columns."""
        session = self.session
        result = tel.RecordResult()
        count = len(columns)
        if not count:
            return result
        source = columns.source
        ids = columns.external_id
        first_of = dict(zip(reversed(ids), range(count - 1, -1, -1)))
        if len(first_of) == count:
            unique = np.arange(count)
        else:
            unique = np.array(sorted(first_of.values()), dtype=np.int64)
        result.duplicates = count - len(unique)
        if self.postgres:
            session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
                            {"k": f"abonent.calls:{source}"})
        unique_ids = ids if len(unique) == count else [ids[i] for i in unique.tolist()]
        existing = self._existing(source, unique_ids)
        if existing:
            keep = np.fromiter((value not in existing for value in unique_ids), bool,
                               len(unique_ids))
            fresh = unique[keep]
        else:
            fresh = unique
        result.duplicates += len(unique) - len(fresh)
        if not len(fresh):
            return result
        try:
            return self._rate_and_store(columns, fresh, result)
        finally:
            self._join_writer()

    # PostgreSQL: batch N-1's COPY runs in a thread while batch N is rated
    # (the database stores while Python computes). Batch N reads what it
    # needs first (duplicates: the database plus N-1's ids, which are not
    # written yet; package seconds: kept here since the last flush), then
    # starts N-1's COPY and leaves its own pending; the connection is the
    # writer's alone until it is joined.

    def _start_writer(self) -> None:
        if self._pending is None:
            return
        store = self._pending[2]
        self._pending = None
        failure: list = []

        def write():
            try:
                store()
            except BaseException as error:  # raised again by _join_writer
                failure.append(error)

        self._writer = (threading.Thread(target=write, name="cdr-copy", daemon=True), failure)
        self._writer[0].start()

    def _join_writer(self) -> None:
        if self._writer is None:
            return
        thread, failure = self._writer
        self._writer = None
        thread.join()
        if failure:
            raise failure[0]

    def _write_pending(self) -> None:
        self._start_writer()
        self._join_writer()

    def _existing(self, source: str, ids: list) -> set:
        found = set()
        if self._pending is not None and self._pending[0] == source:
            found.update(self._pending[1].intersection(ids))  # not written yet
        for condition in tel._where_in(self.session, Call.external_id, ids):
            found.update(self.session.scalars(
                select(Call.external_id).where(Call.source == source, condition)))
        return found

    def _rate_and_store(self, columns: Columns, fresh: np.ndarray,
                        result: tel.RecordResult) -> tel.RecordResult:
        session, config = self.session, self.config
        postgres = self.postgres
        source = columns.source
        rows = fresh.tolist()
        every = len(rows) == len(columns)
        pick = (lambda values: values) if every else \
            (lambda values: [values[i] for i in rows])
        calling_raw, called_raw = pick(columns.calling), pick(columns.called)
        login = pick(columns.login) if columns.login is not None else None
        external_id = pick(columns.external_id)
        start = columns.start[fresh]
        answer, end = columns.answer[fresh], columns.end[fresh]
        billsec = columns.billsec[fresh]
        disposition = columns.disposition[fresh]
        n = len(rows)

        if columns.calling_key is None:
            columns.normalised(config.rules, self.norm_cache)
        calling, called = pick(columns.calling_e164), pick(columns.called_e164)
        calling_key, called_key = columns.calling_key[fresh], columns.called_key[fresh]
        by_number, by_login = self.services(calling, called, login)
        # Slots: every service once per number and once per login; the
        # last slot (index -1) says "none".
        slots = sorted(by_number.items())
        number_slot = {number: i for i, (number, _) in enumerate(slots)}
        login_slot = {}
        for value, found in by_login.items():
            login_slot[value] = len(slots)
            slots.append((value, found))
        accounts_ = np.array([s[0] for _, s in slots] + [-1], dtype=np.int64)
        services_ = np.array([s[1] for _, s in slots] + [-1], dtype=np.int64)
        plans_ = np.array([s[2] for _, s in slots] + [-1], dtype=np.int64)
        numbered = len(number_slot)
        service_keys = [key_of(number) for number, _ in slots[:numbered]]
        lookup = _Sorted(service_keys)
        odd_services = _NO_KEY in service_keys

        def find(strings: list, keys: np.ndarray) -> np.ndarray:
            found = lookup.find(keys)
            # A number with no key (letters, too long) or a service number
            # with none: the dict decides.
            odd = keys == _NO_KEY
            if odd_services:
                odd = np.ones(len(keys), dtype=bool)
            for i in np.flatnonzero(odd).tolist():
                found[i] = number_slot.get(strings[i], -1) if strings[i] else -1
            return found

        caller = find(calling, calling_key)
        callee = find(called, called_key)
        if login is not None and login_slot:
            for i, value in enumerate(login):
                if value:
                    slot = login_slot.get(value)
                    if slot is not None:
                        caller[i] = slot
        caller_account, caller_service = accounts_[caller], services_[caller]
        caller_plan = plans_[caller]
        callee_account, callee_service = accounts_[callee], services_[callee]
        has_caller, has_callee = caller >= 0, callee >= 0

        plans = tel._plans(session, {s[2] for _, s in slots})
        used_plans = set(np.unique(caller_plan[has_caller]).tolist())
        tables = {plan_id: tel.rate_table(session, plan) for plan_id, plan in plans.items()
                  if plan_id in used_plans}
        # Before anything is written: a table NumPy cannot hold exactly
        # sends the batch the per-record way.
        rate_columns = {plan_id: _rate_columns(table) for plan_id, table in tables.items()}

        # Local hour, day and month of each start (cached per UTC hour).
        utc_hours, hour_of = np.unique(start.astype(np.int64) // 3600, return_inverse=True)
        hour_of = hour_of.reshape(-1)
        locals_ = [self.clock(dt.datetime(1970, 1, 1) + dt.timedelta(hours=h))
                   for h in utc_hours.tolist()]
        days = sorted({day for _, day, _ in locals_})
        day_index = {day: i for i, day in enumerate(days)}
        months = sorted({month for _, _, month in locals_})
        month_index = {month: i for i, month in enumerate(months)}
        day_of = np.array([day_index[d] for _, d, _ in locals_], dtype=np.int64)[hour_of]
        month_of = np.array([month_index[m] for _, _, m in locals_], dtype=np.int64)[hour_of]

        free_seconds = np.zeros(n, dtype=np.int64)
        onnet_free = np.zeros(n, dtype=bool)
        rates_version = np.ones(n, dtype=np.int64)
        for plan_id, plan in plans.items():
            mine = caller_plan == plan_id
            free_seconds[mine] = plan.free_seconds
            onnet_free[mine] = plan.onnet_free
            rates_version[mine] = plan.rates_version

        package = has_caller & (free_seconds > 0)
        wanted_pairs = np.unique(np.stack([caller_service[package], month_of[package]]), axis=1) \
            if package.any() else np.zeros((2, 0), dtype=np.int64)
        wanted = {(s, months[m]) for s, m in wanted_pairs.T.tolist()}
        # Read (and locked) once per import; this import alone spends them
        # until flush() writes them.
        unknown = wanted - self.used.keys()
        if unknown:
            found = tel._allowances(session, unknown)
            self.used.update(found)
            self.used_before.update(found)
        used = self.used
        self._start_writer()  # the database is not asked anything more for this batch

        answered = (disposition == _ANSWERED) & (billsec > 0)
        own = has_callee & (callee_account == caller_account)
        reason_code = np.full(n, _R_UNKNOWN, dtype=np.int8)
        reason_code[~has_caller & has_callee] = _R_INCOMING
        reason_code[has_caller] = _R_NO_RATE
        reason_code[has_caller & ~answered] = _R_UNANSWERED
        stage = has_caller & answered
        reason_code[stage & own] = _R_OWN
        stage &= ~own
        reason_code[stage & has_callee & onnet_free] = _R_ONNET
        stage &= ~(has_callee & onnet_free)

        rate_of = np.full(n, -1, dtype=np.int64)
        billed = np.zeros(n, dtype=np.int64)
        price = np.zeros(n, dtype=np.int64)
        connection = np.zeros(n, dtype=np.int64)
        in_package = np.zeros(n, dtype=bool)
        # A rated call's zone, prefix and price: (plan's base + rate) * 2 + off-peak.
        rate_code = np.full(n, -1, dtype=np.int64)
        rate_bases: list[tuple[int, _RateColumns]] = []
        called_length = np.fromiter(map(len, called), np.int64, n)
        called_value = called_key - _POW10[np.clip(called_length, 0, 18)]
        for plan_id, plan in plans.items():
            mine = stage & (caller_plan == plan_id)
            if not mine.any():
                continue
            table, rate_cols = tables[plan_id], rate_columns[plan_id]
            where = np.flatnonzero(mine)
            keyed = called_key[where] != _NO_KEY
            found = np.full(len(where), -1, dtype=np.int64)
            found[keyed] = rate_cols.match(called_value[where[keyed]],
                                           called_length[where[keyed]])
            for j in np.flatnonzero(~keyed).tolist():
                rate = table.match(called[where[j]])
                found[j] = -1 if rate is None else rate_cols.position[rate.prefix]
            hit = where[found >= 0]
            found = found[found >= 0]
            rate_of[hit] = found
            first, step = rate_cols.first[found], rate_cols.next[found]
            seconds = billsec[hit]
            billed[hit] = np.where(seconds <= first, first,
                                   first + -(-(seconds - first) // step) * step)
            offpeak_hours = np.array([plan.offpeak(local) for local, _, _ in locals_], bool)
            offpeak = (rate_cols.offpeak[found] >= 0) & offpeak_hours[hour_of[hit]]
            price[hit] = np.where(offpeak, rate_cols.offpeak[found], rate_cols.price[found])
            connection[hit] = rate_cols.connection[found]
            in_package[hit] = self._in_package(plan, rate_cols)[found]
            base = sum(len(cols.rates) for _, cols in rate_bases)
            rate_bases.append((base, rate_cols))
            rate_code[hit] = (base + found) * 2 + offpeak
        rated = rate_of >= 0
        reason_code[stage & ~rated] = _R_NO_RATE

        # The package, spent in the order the calls started: per (service,
        # month) the seconds used after a call are min(cap, used + running
        # sum of billed), cap = max(plan seconds, used before) (a package
        # already spent past a lowered plan gives nothing).
        order = np.argsort(start.astype(np.int64), kind="stable")
        free = np.zeros(n, dtype=np.int64)
        eligible = rated & in_package & (free_seconds > 0)
        if eligible.any():
            rows_ = order[eligible[order]]
            group = caller_service[rows_] * len(months) + month_of[rows_]
            by_group = np.argsort(group, kind="stable")
            rows_, group = rows_[by_group], group[by_group]
            starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
            sizes = np.diff(np.r_[starts, len(group)])
            group_service = caller_service[rows_[starts]]
            group_month = month_of[rows_[starts]]
            before = np.array([used[(s, months[m])] for s, m in
                               zip(group_service.tolist(), group_month.tolist())], np.int64)
            cap = np.maximum(free_seconds[rows_[starts]], before)
            running = np.cumsum(billed[rows_])
            offset = np.repeat(running[starts] - billed[rows_[starts]], sizes)
            after = np.minimum(np.repeat(cap, sizes), np.repeat(before, sizes) + running - offset)
            previous = np.r_[0, after[:-1]]
            previous[starts] = before
            free[rows_] = after - previous
            last = after[starts + sizes - 1]
            for s, m, b, a in zip(group_service.tolist(), group_month.tolist(), before.tolist(),
                                  last.tolist()):
                if a != b:
                    used[(s, months[m])] = a
        reason_code[rated] = np.where(free[rated] > 0, _R_PACKAGE, _R_RATED)
        charged_seconds = billed - free
        charge = np.where(rated & (charged_seconds > 0),
                          (120 * connection + 2 * price * charged_seconds + 60) // 120, 0)

        account = np.where(has_caller, caller_account,
                           np.where(has_callee, callee_account, -1))
        service = np.where(has_caller, caller_service,
                           np.where(has_callee, callee_service, -1))
        direction = np.where(has_caller, np.where(has_callee, _D_ONNET, _D_OUT),
                             np.where(has_callee, _D_IN, _D_UNKNOWN))

        batch = uuid.uuid4().hex[:12]
        now = utcnow()
        key_text = np.full(n, None, dtype=object)
        paying = charge > 0
        totals: dict[str, list] = {}
        if paying.any():
            pay_rows = order[paying[order]]
            pairs = account[pay_rows] * len(days) + day_of[pay_rows]
            distinct, first_at, inverse = np.unique(pairs, return_index=True,
                                                    return_inverse=True)
            inverse = inverse.reshape(-1)
            keys = [f"call:{p // len(days)}:{days[p % len(days)]}:{batch}"
                    for p in distinct.tolist()]
            key_text[pay_rows] = np.array(keys, dtype=object)[inverse]
            amounts = np.bincount(inverse, weights=None, minlength=len(distinct))
            sums = np.zeros(len(distinct), dtype=np.int64)
            np.add.at(sums, inverse, charge[pay_rows])
            seconds_ = np.zeros(len(distinct), dtype=np.int64)
            np.add.at(seconds_, inverse, billed[pay_rows])
            for slot in np.argsort(first_at, kind="stable").tolist():
                pair = int(distinct[slot])
                totals[keys[slot]] = [pair // len(days), Decimal(_money_text(int(sums[slot]))),
                                      days[pair % len(days)], int(amounts[slot]),
                                      int(seconds_[slot])]

        # The rows, in the order the calls started (the reference's order).
        o = order
        out_calling = [value or raw[:32] for value, raw in zip(calling, calling_raw)] \
            if "" in calling else calling
        out_called = [value or raw[:32] for value, raw in zip(called, called_raw)] \
            if "" in called else called
        take = (lambda values: np.array(values, dtype=object)[o].tolist())
        login_o = take([v[:64] if v else None for v in login]) if login is not None \
            else [None] * n
        key_o = key_text[o].tolist()
        result.unmatched = int((account < 0).sum())

        def rate_values(code: int) -> tuple:
            """(zone, prefix, price per minute) of a rate code."""
            if code < 0:
                return None, None, None
            index, offpeak = divmod(code, 2)
            for base, cols in reversed(rate_bases):
                if index >= base:
                    rate = cols.rates[index - base]
                    return (rate.zone, rate.prefix, rate.offpeak_price_per_minute if offpeak
                            else rate.price_per_minute)
            raise AssertionError(code)

        def rate_text(code: int) -> str:
            """zone, prefix and price of a rate code as COPY text."""
            if code < 0:
                return "\\N\t\\N\t\\N"
            index, offpeak = divmod(code, 2)
            for base, cols in reversed(rate_bases):
                if index >= base:
                    return cols.copy_text(index - base, offpeak)
            raise AssertionError(code)

        if postgres:
            created = now.isoformat(" ")
            # The columns of few values go as a few strings joined beforehand
            # (a string per distinct value): fewer joins per row.
            head = _Coded(rates_version[o] * 128 + (disposition[o].astype(np.int64) * 4
                                                    + direction[o]) * 8 + reason_code[o],
                          lambda code: "\t".join((
                              source, _DISPOSITIONS[code // 32 % 4], "\\N",
                              _DIRECTIONS[code // 8 % 4], _REASONS[code % 8], str(code // 128),
                              created)))
            service_o, account_o = service[o], account[o]
            who = _Coded(service_o, lambda code: "\\N\t\\N" if code < 0 else None)
            who.table[:] = [f"{a}\t{code}" if code >= 0 else "\\N\t\\N" for a, code in
                            zip(account_o[who.first].tolist(), who.distinct.tolist())]
            seconds = _Coded((billsec[o] << 42) | (billed[o] << 21) | free[o],
                             lambda code: f"{code >> 42}\t{(code >> 21) & 0x1FFFFF}\t"
                                          f"{code & 0x1FFFFF}")
            rates = _Coded(rate_code[o], rate_text)
            money = _Coded(charge[o], _money_text)
            texts = (_escaped(take(external_id)), _escaped(take(out_calling)),
                     _escaped(take(out_called)), _nullable(_escaped(login_o)), _nullable(key_o))
            times_ = (start[o], answer[o], end[o])

            def bodies():
                # Streamed: the database stores a chunk while the next is built.
                for at in range(0, n, _COPY_ROWS):
                    part = slice(at, at + _COPY_ROWS)
                    columns_ = [coded.strings(part) for coded in (head, who, seconds, rates,
                                                                  money)]
                    columns_ += [values[part] for values in texts]
                    columns_ += [_time_text(values[part]) for values in times_]
                    yield "\n".join(map("\t".join, zip(*columns_))) + "\n"

            driver = session.connection().connection.driver_connection
            fresh_ids = set(external_id)
            self._pending = (source, fresh_ids, lambda: _copy(driver, bodies()))
            result.inserted = n
        else:
            start_o = start[o].astype("datetime64[us]").tolist()
            answer_o = answer[o].astype("datetime64[us]").tolist()
            end_o = end[o].astype("datetime64[us]").tolist()
            rate_o = [rate_values(code) for code in rate_code[o].tolist()]
            rows_out = list(zip(
                [source] * n, take(external_id),
                [None if a < 0 else a for a in account[o].tolist()],
                [None if s < 0 else s for s in service[o].tolist()],
                take(out_calling), take(out_called), login_o, start_o, answer_o, end_o,
                billsec[o].tolist(),
                np.array(_DISPOSITIONS, dtype=object)[disposition[o]].tolist(), [None] * n,
                np.array(_DIRECTIONS, dtype=object)[direction[o]].tolist(),
                [r[0] for r in rate_o], [r[1] for r in rate_o],
                billed[o].tolist(), free[o].tolist(), [r[2] for r in rate_o],
                [Decimal(_money_text(c)) for c in charge[o].tolist()],
                np.array(_REASONS, dtype=object)[reason_code[o]].tolist(), key_o,
                rates_version[o].tolist(), [now] * n))
            result.inserted, result.unmatched, totals = tel._insert_calls(session, rows_out)
            result.duplicates += n - result.inserted
        # The entries, balances, package seconds and the balance ladder are
        # written by flush(), once for every batch since the last: the
        # accounts' rows are updated once, not once a batch.
        self.totals.update(totals)
        result.charged = sum((t[1] for t in totals.values()), Decimal("0.00"))
        result.accounts = {t[0] for t in totals.values()}
        return result


_R_UNKNOWN, _R_INCOMING, _R_UNANSWERED, _R_OWN, _R_ONNET, _R_NO_RATE, _R_PACKAGE, _R_RATED = \
    range(8)
_REASONS = ("unknown_number", "incoming", "unanswered", "own", "onnet", "no_rate", "package",
            "rated")
_D_UNKNOWN, _D_IN, _D_ONNET, _D_OUT = range(4)
_DIRECTIONS = ("unknown", "in", "onnet", "out")


# -- COPY ------------------------------------------------------------------------------

def _time_text(values: np.ndarray) -> list:
    """datetime64[s] as "YYYY-MM-DD HH:MM:SS" ("\\N" for NaT), the digits
    computed as arrays (days to a civil date as in H. Hinnant's
    ``civil_from_days``): a third quicker than ``datetime_as_string``."""
    missing = np.isnat(values)
    seconds = np.where(missing, 0, values.astype(np.int64))
    days, second_of_day = np.divmod(seconds, 86400)
    shifted = days + 719468
    era = shifted // 146097
    day_of_era = shifted - era * 146097
    year_of_era = (day_of_era - day_of_era // 1460 + day_of_era // 36524
                   - day_of_era // 146096) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    march_month = (5 * day_of_year + 2) // 153
    day = day_of_year - (153 * march_month + 2) // 5 + 1
    month = np.where(march_month < 10, march_month + 3, march_month - 9)
    year = year_of_era + era * 400 + (month <= 2)
    hour, rest = np.divmod(second_of_day, 3600)
    minute, second = np.divmod(rest, 60)
    out = np.empty((len(values), 19), np.uint8)
    for at, number, width in ((0, year, 4), (5, month, 2), (8, day, 2), (11, hour, 2),
                              (14, minute, 2), (17, second, 2)):
        for digit in range(width):
            out[:, at + digit] = number // 10 ** (width - 1 - digit) % 10 + 48
    out[:, [4, 7]] = ord("-")
    out[:, 10] = ord(" ")
    out[:, [13, 16]] = ord(":")
    text_ = out.view("S19").reshape(-1).astype("U19").astype(object)
    text_[missing] = "\\N"
    return text_.tolist()


def _escaped(values: list) -> list:
    joined = "".join(filter(None, values))
    if not _COPY_SPECIAL.search(joined):
        return values
    return [None if v is None else tel._copy_escape(v) for v in values]


def _nullable(values: list) -> list:
    return ["\\N" if v is None else v for v in values]


_COPY_ROWS = 10_000


# The order the COPY text gives the columns in (the pre-joined ones first).
_COPY_COLUMNS = ("source", "disposition", "sip_code", "direction", "reason", "rating_version",
                 "created_at", "account_id", "service_id", "billsec", "billed_seconds",
                 "free_seconds", "zone", "prefix", "price_per_minute", "charge", "external_id",
                 "calling", "called", "login", "ledger_key", "start_at", "answer_at", "end_at")
assert sorted(_COPY_COLUMNS) == sorted(tel._CALL_COLUMNS)


def _copy(driver, bodies) -> None:
    with driver.cursor() as cursor:
        with cursor.copy(f"COPY calls ({', '.join(_COPY_COLUMNS)}) FROM STDIN") as copy:
            for body in bodies:
                copy.write(body)
