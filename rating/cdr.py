"""Files in: call records (Asterisk ``Master.csv``, FreeSWITCH ``cdr_csv``)
and rate tables (our CSV).

A file is all or nothing: a malformed line stops the import with its line
number and nothing of the file is kept (the caller's transaction rolls
back). Records already stored (same source and id) are counted as
duplicates, so importing a file again, or a file that overlaps the last
one, adds only what is new.

Asterisk writes Master.csv (cdr_csv.conf) as::

    accountcode, src, dst, dcontext, clid, channel, dstchannel, lastapp,
    lastdata, start, answer, end, duration, billsec, disposition, amaflags
    [, uniqueid [, userfield]]

uniqueid is there with ``loguniqueid=yes``; without it a record's id is
made of its channel, start and destination. FreeSWITCH's mod_cdr_csv
default ("example") template::

    caller_id_name, caller_id_number, destination_number, context,
    start_stamp, answer_stamp, end_stamp, duration, billsec, hangup_cause,
    uuid, bleg_uuid, accountcode, read_codec, write_codec

Both write local time (unless Asterisk's ``usegmtime=yes``): the times are
read in the time zone given (the operator's by default).
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import gc
import itertools
import queue
import threading
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Callable, Iterator
from zoneinfo import ZoneInfo

from rating import cdr_columns
from rating.telephony import BATCH_CALLS, CallInput, Config, Rate, RecordResult, record_calls
from rating.validate import DomainError

FORMATS = ("asterisk", "freeswitch")

_ASTERISK_DISPOSITIONS = {"ANSWERED": "answered", "NO ANSWER": "no_answer", "BUSY": "busy",
                          "FAILED": "failed", "CONGESTION": "failed"}
# FreeSWITCH hangup causes (Q.850 names) that say who did not answer.
_FS_NO_ANSWER = {"NO_ANSWER", "NO_USER_RESPONSE", "ORIGINATOR_CANCEL", "ALLOTTED_TIMEOUT"}
_FS_BUSY = {"USER_BUSY", "CALL_REJECTED"}


class LineError(DomainError):
    def __init__(self, path: str, line: int, message: str):
        super().__init__(f"{path}, line {line}: {message}; nothing of the file was stored")
        self.line = line


class _Times:
    """Local "YYYY-MM-DD HH:MM:SS" to naive UTC; the offset is cached per
    hour, so a million records do not each ask the zone database."""

    def __init__(self, zone: str):
        self.zone = ZoneInfo(zone)
        self._offsets: dict[str, dt.timedelta] = {}

    def __call__(self, value: str) -> dt.datetime | None:
        value = value.strip()
        if not value:
            return None
        moment = dt.datetime.fromisoformat(value)
        if moment.tzinfo is not None:
            return moment.astimezone(dt.timezone.utc).replace(tzinfo=None)
        hour = value[:13]
        offset = self._offsets.get(hour)
        if offset is None:
            offset = self._offsets[hour] = moment.replace(tzinfo=self.zone).utcoffset()
        return moment - offset


def _asterisk(fields: list[str], times: _Times) -> CallInput:
    if len(fields) < 16:
        raise ValueError(f"an Asterisk record has at least 16 fields, this one {len(fields)}")
    disposition = _ASTERISK_DISPOSITIONS.get(fields[14].strip().upper())
    if disposition is None:
        raise ValueError(f"unknown disposition {fields[14]!r}")
    start = times(fields[9])
    if start is None:
        raise ValueError("the start time is empty")
    billsec = int(fields[13])
    unique = fields[16].strip() if len(fields) > 16 else ""
    external_id = unique or f"{fields[5]}|{fields[9]}|{fields[2]}"
    if disposition != "answered":
        billsec = 0
    return CallInput("asterisk", external_id[:150], fields[1], fields[2], start,
                     times(fields[10]), times(fields[11]), billsec, disposition,
                     login=fields[0].strip() or None)


def _freeswitch(fields: list[str], times: _Times) -> CallInput:
    if len(fields) < 11:
        raise ValueError(f"a FreeSWITCH record has at least 11 fields, this one {len(fields)}")
    start = times(fields[4])
    if start is None:
        raise ValueError("the start time is empty")
    billsec = int(fields[8])
    cause = fields[9].strip().upper()
    if billsec > 0:
        disposition = "answered"
    elif cause in _FS_BUSY:
        disposition = "busy"
    elif cause in _FS_NO_ANSWER or cause == "NORMAL_CLEARING":
        disposition = "no_answer"
    else:
        disposition = "failed"
    if not fields[10].strip():
        raise ValueError("the uuid is empty")
    return CallInput("freeswitch", fields[10].strip()[:150], fields[1], fields[2], start,
                     times(fields[5]), times(fields[6]), billsec, disposition,
                     login=(fields[12].strip() or None) if len(fields) > 12 else None)


def _parser(fmt: str):
    """The record parser of a CDR format."""
    if fmt not in FORMATS:
        raise DomainError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    return _asterisk if fmt == "asterisk" else _freeswitch


def _parse_batch(parse, times: _Times, path: str, numbers, rows) -> list[CallInput]:
    """A batch of records (``_batches``) parsed one by one; LineError names
    the first bad line."""
    calls = []
    for number, fields in zip(numbers, rows):
        try:
            calls.append(parse(fields, times))
        except (ValueError, IndexError) as error:
            raise LineError(path, number, str(error)) from None
    return calls


def parse_cdrs(handle, fmt: str, *, timezone: str, path: str = "-") -> Iterator[CallInput]:
    """Records of an open text file; LineError names the first bad line."""
    parse, times = _parser(fmt), _Times(timezone)
    for numbers, rows in _batches(csv.reader(handle), BATCH_CALLS):
        yield from _parse_batch(parse, times, path, numbers, rows)


@dataclass
class ImportReport:
    path: str
    format: str
    records: int = 0
    inserted: int = 0
    duplicates: int = 0
    unmatched: int = 0
    entries: int = 0
    charged: Decimal = Decimal("0.00")
    # Of ``records``, those recorded by columns (rating.cdr_columns).
    by_columns: int = 0

    def add(self, result: RecordResult) -> None:
        self.inserted += result.inserted
        self.duplicates += result.duplicates
        self.unmatched += result.unmatched
        self.entries += result.entries
        self.charged += result.charged

    def as_dict(self) -> dict:
        return dict(path=self.path, format=self.format, records=self.records,
                    inserted=self.inserted, duplicates=self.duplicates, unmatched=self.unmatched,
                    ledger_entries=self.entries, charged=self.charged)


def import_cdrs(session, path: str, fmt: str, *, config: Config, timezone: str | None = None,
                progress: Callable[[int], None] | None = None,
                batch: int = BATCH_CALLS, by_columns: bool = True) -> ImportReport:
    """Import a CDR file in batches inside the caller's one transaction.

    Asterisk batches are recorded by columns (rating.cdr_columns), the file
    read and parsed by a second thread one batch ahead; a batch the columns
    cannot take exactly, and FreeSWITCH files, through ``record_calls``.

    Python's cyclic garbage collector is paused meanwhile: a batch makes
    hundreds of thousands of tuples, none in a cycle, and the collections
    they set off cost a quarter of the import's CPU time.

    ``by_columns=False`` records every batch through ``record_calls``, one
    record at a time: the reference the columns are tested against."""
    report = ImportReport(path, fmt)
    try:
        handle = open(path, encoding="utf-8", errors="strict", newline="")
    except OSError as error:
        raise DomainError(f"cannot read {path}: {error.strerror}") from None
    collecting = gc.isenabled()
    gc.disable()
    try:
        _import(session, handle, path, fmt, report, config=config, timezone=timezone,
                progress=progress, batch=batch, by_columns=by_columns)
    finally:
        if collecting:
            gc.enable()
    return report


def _import(session, handle, path: str, fmt: str, report: ImportReport, *, config: Config,
            timezone: str | None, progress: Callable[[int], None] | None, batch: int,
            by_columns: bool) -> None:
    with handle:
        parse, times = _parser(fmt), _Times(timezone or config.timezone)
        # Asterisk records go by columns (rating.cdr_columns); a batch they
        # cannot take exactly, and FreeSWITCH's, one record at a time.
        recorder = cdr_columns.Recorder(session, config) \
            if fmt == "asterisk" and by_columns else None
        def parsed():
            """(numbers, rows, Columns or None); the pure part of the work."""
            cache: dict[str, str] = {}
            for numbers, rows in _batches(csv.reader(handle), batch):
                columns = None
                if recorder is not None:
                    try:
                        columns = cdr_columns.asterisk_columns(rows, times).normalised(
                            config.rules, cache)
                    except cdr_columns.Unsupported:
                        columns = None
                yield numbers, rows, columns

        try:
            with contextlib.closing(_read_ahead(parsed())) as batches:
                _record(session, batches, path, parse, times, recorder, report, config,
                        progress)
        except UnicodeDecodeError:
            raise DomainError(f"{path} is not UTF-8 text; nothing of the file was stored") \
                from None


def _record(session, batches, path, parse, times, recorder, report, config, progress) -> None:
    """Each batch by columns if it was read into them and they take it,
    else record by record (a bad line raises its LineError here)."""
    for numbers, rows, columns in batches:
        result = None
        if columns is not None:
            try:
                result = recorder.record(columns)
            except cdr_columns.Unsupported:
                result = None
        if result is not None:
            report.by_columns += len(rows)
        else:
            calls = _parse_batch(parse, times, path, numbers, rows)
            if recorder is not None:
                report.entries += recorder.flush()  # record_calls reads what it wrote
            result = record_calls(session, calls, config=config)
        report.add(result)
        report.records += len(rows)
        if progress:
            progress(len(rows))
    if recorder is not None:
        report.entries += recorder.flush()


def _read_ahead(items, depth: int = 1):
    """``items`` produced by a second thread, up to ``depth`` ahead: the file
    is read and parsed while this thread waits for the database (the
    waits release the GIL). An exception there is raised here, in order."""
    out: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def produce():
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        out.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            out.put((done, None))
        except BaseException as error:  # handed over, raised by the consumer
            out.put((done, error))

    worker = threading.Thread(target=produce, name="cdr-reader", daemon=True)
    worker.start()
    try:
        while True:
            item, error = out.get()
            if item is done:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        while worker.is_alive():
            try:
                out.get(timeout=0.1)
            except queue.Empty:
                pass
        worker.join()


def _batches(reader, size: int):
    """(record numbers, records) of ``size`` records each, blank lines
    left out (they count in the numbers, as csv.reader counts them)."""
    number = 0
    while True:
        rows = list(itertools.islice(reader, size))
        if not rows:
            return
        numbers = range(number + 1, number + len(rows) + 1)
        number += len(rows)
        if min(map(len, rows)) < 2:
            kept = [(n, fields) for n, fields in zip(numbers, rows)
                    if fields and (len(fields) > 1 or fields[0].strip())]
            while len(kept) < size:
                more = next(reader, None)
                if more is None:
                    break
                number += 1
                if more and (len(more) > 1 or more[0].strip()):
                    kept.append((number, more))
            if not kept:
                continue
            numbers, rows = [n for n, _ in kept], [f for _, f in kept]
        yield numbers, rows


# -- rate tables ---------------------------------------------------------------------

def _money(text: str, what: str) -> Decimal:
    try:
        value = Decimal(text.strip().replace(",", "."))
    except InvalidOperation:
        raise ValueError(f"{what} must be an amount like 1.50, not {text!r}") from None
    if not value.is_finite() or value < 0 or value > 100000 or value != value.quantize(
            Decimal("0.01")):
        raise ValueError(f"{what} must be an amount like 1.50 (0 or more, two decimals), "
                         f"not {text!r}")
    return value.quantize(Decimal("0.01"))


def parse_rate_line(fields: list[str]) -> Rate:
    """prefix;zone;price[;first/next[;connection_fee[;offpeak_price]]]"""
    if len(fields) < 3:
        raise ValueError("a rate needs at least prefix;zone;price")
    prefix = fields[0].strip().lstrip("+")
    if not prefix.isdigit() or len(prefix) > 16:
        raise ValueError(f"prefix must be 1 to 16 digits, not {fields[0]!r}")
    zone = fields[1].strip()
    if not zone or len(zone) > 64:
        raise ValueError("zone must be 1 to 64 characters")
    price = _money(fields[2], "price")
    first = next_ = 60
    if len(fields) > 3 and fields[3].strip():
        parts = fields[3].strip().split("/")
        if len(parts) != 2 or not all(p.isdigit() and 1 <= int(p) <= 3600 for p in parts):
            raise ValueError(f"increments must look like 60/60, 30/6 or 1/1, not {fields[3]!r}")
        first, next_ = int(parts[0]), int(parts[1])
    connection = _money(fields[4], "connection fee") if len(fields) > 4 and fields[4].strip() \
        else Decimal("0.00")
    offpeak = _money(fields[5], "off-peak price") if len(fields) > 5 and fields[5].strip() \
        else None
    return Rate(prefix, zone, price, offpeak, first, next_, connection)


def parse_rates(handle, path: str = "-") -> list[Rate]:
    """Every rate of a file; ``#`` comments and a ``prefix;...`` header are skipped."""
    rates: dict[str, Rate] = {}
    for number, fields in enumerate(csv.reader(handle, delimiter=";"), start=1):
        if not fields or not "".join(fields).strip() or fields[0].lstrip().startswith("#"):
            continue
        if number == 1 and fields[0].strip().lower() == "prefix":
            continue
        try:
            rate = parse_rate_line(fields)
        except ValueError as error:
            raise LineError(path, number, str(error)) from None
        if rate.prefix in rates:
            raise LineError(path, number, f"prefix {rate.prefix} is listed twice")
        rates[rate.prefix] = rate
    if not rates:
        raise DomainError(f"{path} has no rates")
    return list(rates.values())


def read_rates(path: str) -> list[Rate]:
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            return parse_rates(handle, path)
    except OSError as error:
        raise DomainError(f"cannot read {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise DomainError(f"{path} is not UTF-8 text") from None

