"""Accounting-Request → ``sessions`` rows, idempotently and in batches.

A NAS retransmits: the same Start, Interim or Stop may arrive two or three
times, in any order, sometimes with a larger Acct-Delay-Time (RFC 2866
§5.2 lets it change the delay, which also changes the authenticator). So
the stored row never depends on how often a record arrived:

- counters are cumulative per session (RFC 2866 §5.3-5.8), stored with
  gigawords folded in (RFC 2869 §5.1-5.2) and only ever raised (GREATEST);
- the start time is the earliest seen, the last update the latest seen;
- the first Stop wins (COALESCE), a late Interim does not reopen a session;
- the event time is ``received - Acct-Delay-Time``, which is the same for
  every copy of one event.

``parse`` is pure; ``apply_batch`` writes one batch inside the caller's
transaction. On PostgreSQL that is one statement for the sessions and the
leases their new addresses open, plus one for the leases of Starts that
met another session's lease and one for the leases of Stops, each only if
the batch has such rows (issue 18: a BRAS's reboot storm is a batch of new
sessions); on SQLite the same rules run row by row.
"""

from __future__ import annotations

import datetime as dt
import json
from contextlib import nullcontext
from dataclasses import dataclass, replace

from sqlalchemy import and_, case, func, text, update

from aaa import packet as wire
from aaa.authorize import CLASS_PREFIX
from aaa.dictionary import value_name
from aaa.models import Session as RadiusSession
from config.db import discard_if_gone
from rating.profile import parse_key

START, STOP, INTERIM, ACCOUNTING_ON, ACCOUNTING_OFF = 1, 2, 3, 7, 8
SESSION_STATUSES = (START, STOP, INTERIM)
NAS_STATUSES = (ACCOUNTING_ON, ACCOUNTING_OFF)

ACCT_STATUS_TYPE = 40
ACCT_DELAY_TIME = 41
ACCT_INPUT_OCTETS = 42
ACCT_OUTPUT_OCTETS = 43
ACCT_SESSION_ID = 44
ACCT_SESSION_TIME = 46
ACCT_INPUT_PACKETS = 47
ACCT_OUTPUT_PACKETS = 48
ACCT_TERMINATE_CAUSE = 49
ACCT_INPUT_GIGAWORDS = 52
ACCT_OUTPUT_GIGAWORDS = 53
FRAMED_IP_ADDRESS = 8
CLASS = 25
CALLING_STATION_ID = 31

# A NAS that has been down longer than this is sending nonsense delays.
MAX_DELAY_S = 7 * 24 * 3600

# The largest octet counter stored (a signed 64-bit column on both
# databases): 9.2 EB in one session, decades at line rate. Gigawords are
# legal up to 0xFFFFFFFF on the wire (RFC 2869 §5.1), but a fold above this
# is a NAS bug (typically a negative counter sent unsigned), not traffic;
# such a record is refused whole (see CounterOutOfRange).
MAX_COUNTER = 2 ** 63 - 1


class CounterOutOfRange(wire.MalformedPacket):
    """An octet counter with gigawords folded in does not fit MAX_COUNTER.

    A drop of its own reason: the record is neither stored nor answered (RFC
    2866: no answer unless recorded), the NAS's retransmits are refused the
    same way, and the session closes at its next good record or as stale."""

    drop_reason = "counter-out-of-range"


@dataclass(slots=True)
class AcctRecord:
    nas_id: int
    status: int
    event_time: dt.datetime
    acct_session_id: str = ""
    username: str = ""
    framed_ip: str | None = None
    calling_station_id: str | None = None
    octets_in: int = 0
    octets_out: int = 0
    packets_in: int = 0
    packets_out: int = 0
    session_time: int = 0
    terminate_cause: str | None = None
    account_id: int | None = None
    service_id: int | None = None
    # A Start is among the copies folded into this record (leases open then).
    saw_start: bool = False
    # The profile the Access-Accept gave (its Class, echoed by the NAS).
    applied: str | None = None

    @property
    def key(self) -> tuple[int, str]:
        return (self.nas_id, self.acct_session_id)

    @property
    def started_at(self) -> dt.datetime:
        return self.event_time - dt.timedelta(seconds=self.session_time)


def terminate_cause_name(value: int) -> str:
    return value_name("Acct-Terminate-Cause", value) or str(value)


def _number(attributes: dict, kind: int) -> int:
    values = attributes.get(kind)
    if values is None:
        return 0
    value = values[0]
    if len(value) != 4:
        raise wire.MalformedPacket(f"attribute {kind} must be 4 octets, not {len(value)}")
    return int.from_bytes(value, "big")


def _fold(name: str, gigawords: int, octets: int) -> int:
    """An octet counter with its gigawords folded in; CounterOutOfRange if
    it does not fit MAX_COUNTER."""
    value = (gigawords << 32) + octets
    if value > MAX_COUNTER:
        raise CounterOutOfRange(f"{name} {gigawords} folds to {value} octets, "
                                f"more than {MAX_COUNTER}")
    return value


def _event_time(received_at: dt.datetime, delay: int) -> dt.datetime:
    if delay > MAX_DELAY_S:
        raise wire.MalformedPacket(f"Acct-Delay-Time {delay} is implausible")
    return received_at - dt.timedelta(seconds=delay) if delay else received_at


def _identity(session_id: str | None, username: str | None, framed: bytes | None,
              calling: str | None) -> tuple[str, str, str | None, str | None]:
    """A session's texts as stored: MalformedPacket if unusable."""
    if not session_id or len(session_id) > 128 or "\x00" in session_id:
        raise wire.MalformedPacket("Acct-Session-Id is missing, longer than 128 or has NUL")
    if framed is not None:
        if len(framed) != 4:
            raise wire.MalformedPacket("Framed-IP-Address must be 4 octets")
        framed = "%d.%d.%d.%d" % tuple(framed)
    # PostgreSQL text cannot hold NUL: one such packet would fail its batch.
    username = username or ""
    if "\x00" in username or len(username) > 128:
        username = username.replace("\x00", "")[:128]
    if calling:
        calling = calling.replace("\x00", "")[:64] or None
    return session_id, username, framed, calling


def _session_record(nas_id: int, status: int, event_time: dt.datetime, identity: tuple,
                    octets_in: int, octets_out: int, packets_in: int, packets_out: int,
                    session_time: int, cause: str | None, classes, owner) -> AcctRecord:
    session_id, username, framed, calling = identity
    found = owner(username) if owner is not None and username else None
    record = AcctRecord(
        nas_id, status, event_time, session_id, username, framed, calling, octets_in,
        octets_out, packets_in, packets_out, session_time, cause,
        found[0] if found else None, found[1] if found else None, status == START)
    if classes is not None:
        record.applied = applied_profile(classes)
    return record


def parse(request: wire.Packet, nas_id: int, received_at: dt.datetime,
          owner=None) -> AcctRecord:
    """The record an Accounting-Request carries; MalformedPacket if unusable.

    ``owner(username)`` may return (account_id, service_id) to attach.
    ``parse_fields`` gives the same record from aaa._fastauth.accounting's
    fields (the checks below that it cannot fail are its fallbacks)."""
    attributes = request.attributes
    if ACCT_STATUS_TYPE not in attributes:
        raise wire.MalformedPacket("Acct-Status-Type is missing")
    status = _number(attributes, ACCT_STATUS_TYPE)
    event_time = _event_time(received_at, _number(attributes, ACCT_DELAY_TIME))
    if status in NAS_STATUSES:
        return AcctRecord(nas_id=nas_id, status=status, event_time=event_time)
    if status not in SESSION_STATUSES:
        raise wire.MalformedPacket(f"Acct-Status-Type {status} is not supported")
    identity = _identity(request.text(ACCT_SESSION_ID), request.text(wire.USER_NAME),
                         request.first(FRAMED_IP_ADDRESS), request.text(CALLING_STATION_ID))
    cause = None
    if status == STOP:
        cause = (terminate_cause_name(_number(attributes, ACCT_TERMINATE_CAUSE))
                 if ACCT_TERMINATE_CAUSE in attributes else "Unknown")
    octets_in = _fold("Acct-Input-Gigawords", _number(attributes, ACCT_INPUT_GIGAWORDS),
                      _number(attributes, ACCT_INPUT_OCTETS))
    octets_out = _fold("Acct-Output-Gigawords", _number(attributes, ACCT_OUTPUT_GIGAWORDS),
                       _number(attributes, ACCT_OUTPUT_OCTETS))
    return _session_record(
        nas_id, status, event_time, identity, octets_in, octets_out,
        _number(attributes, ACCT_INPUT_PACKETS), _number(attributes, ACCT_OUTPUT_PACKETS),
        _number(attributes, ACCT_SESSION_TIME), cause, attributes.get(CLASS), owner)


def parse_fields(fields: tuple, nas_id: int, received_at: dt.datetime,
                 owner=None) -> AcctRecord:
    """``parse`` for aaa._fastauth.accounting's fields (a Start, Stop or
    Interim-Update whose integers are all 4 octets and texts UTF-8)."""
    (_reply, status, delay, session_id, username, calling, framed, octets_in, gigawords_in,
     octets_out, gigawords_out, packets_in, packets_out, session_time, cause, classes) = fields
    event_time = _event_time(received_at, delay)
    identity = _identity(session_id, username, framed, calling)
    if status == STOP:
        cause = terminate_cause_name(cause) if cause is not None else "Unknown"
    else:
        cause = None
    return _session_record(
        nas_id, status, event_time, identity,
        _fold("Acct-Input-Gigawords", gigawords_in, octets_in),
        _fold("Acct-Output-Gigawords", gigawords_out, octets_out),
        packets_in, packets_out, session_time, cause, classes, owner)


def applied_profile(classes: list[bytes]) -> str | None:
    """The profile key our Access-Accept put in Class, if one of the echoed
    Class values is ours and well formed (another server's is ignored)."""
    for value in classes:
        if value.startswith(CLASS_PREFIX):
            key = value[len(CLASS_PREFIX):].decode("ascii", "replace")
            if parse_key(key) is not None:
                return key
    return None


def merge(old: AcctRecord, new: AcctRecord) -> AcctRecord:
    """Two records of one session folded the way the SQL upsert folds them
    (the earliest start is tracked by the caller: it derives from event_time
    and session_time, which this fold does not keep together)."""
    stopped = old if old.status == STOP else new if new.status == STOP else None
    return replace(
        old,
        status=STOP if stopped else max(old.status, new.status),
        event_time=max(old.event_time, new.event_time) if not stopped else stopped.event_time,
        username=old.username or new.username,
        framed_ip=new.framed_ip or old.framed_ip,
        calling_station_id=new.calling_station_id or old.calling_station_id,
        octets_in=max(old.octets_in, new.octets_in),
        octets_out=max(old.octets_out, new.octets_out),
        packets_in=max(old.packets_in, new.packets_in),
        packets_out=max(old.packets_out, new.packets_out),
        session_time=max(old.session_time, new.session_time),
        terminate_cause=stopped.terminate_cause if stopped else None,
        account_id=old.account_id or new.account_id,
        service_id=old.service_id or new.service_id,
        saw_start=old.saw_start or new.saw_start,
        applied=old.applied or new.applied,
    )


def _columns(held) -> tuple[list, ...]:
    """Column arrays (in _COLUMNS order) for [(record, started_at), ...]."""
    columns = tuple([] for _ in range(17))
    (nas_ids, session_ids, usernames, account_ids, service_ids, framed_ips, callings, starts,
     updates, stops, octets_in, octets_out, packets_in, packets_out, times, causes,
     applied) = columns
    for record, started_at in held:
        nas_ids.append(record.nas_id)
        session_ids.append(record.acct_session_id)
        usernames.append(record.username)
        account_ids.append(record.account_id)
        service_ids.append(record.service_id)
        framed_ips.append(record.framed_ip)
        callings.append(record.calling_station_id)
        starts.append(started_at)
        updates.append(record.event_time)
        stops.append(record.event_time if record.status == STOP else None)
        octets_in.append(record.octets_in)
        octets_out.append(record.octets_out)
        packets_in.append(record.packets_in)
        packets_out.append(record.packets_out)
        times.append(record.session_time)
        causes.append(record.terminate_cause)
        applied.append(record.applied)
    return columns


_COLUMNS = ("nas_id", "acct_session_id", "username", "account_id", "service_id", "framed_ip",
            "calling_station_id", "started_at", "updated_at", "stopped_at", "octets_in",
            "octets_out", "packets_in", "packets_out", "session_time", "terminate_cause",
            "profile")
_PG_TYPES = ("int", "text", "text", "int", "int", "text", "text", "timestamp", "timestamp",
             "timestamp", "bigint", "bigint", "bigint", "bigint", "bigint", "text", "text")

# A session we closed ourselves (``close_stale_sessions``: the NAS went
# silent) reopens when the NAS speaks of it again with a newer record: an
# Interim reopens it, a Stop puts its real end and cause in place of our guess.
STALE_CAUSE = "Stale-Session"   # not an RFC 2866 cause: we closed it, the NAS never said
_REOPEN = (f"sessions.terminate_cause = '{STALE_CAUSE}' "
           "AND excluded.updated_at > sessions.stopped_at")

# PostgreSQL: the whole batch is one statement over one JSON array of rows
# (_rows_json), so the server parses and plans once per batch instead of
# once per row. JSON rather than a typed array per column: the json module
# writes it in C, where psycopg's array dumper loops in Python per element
# (measured: 31 us of the writer's time per record, under the GIL the
# receive thread needs, against ~4 us). The same
# statement opens a lease for each open session with an address that has
# none: an Interim whose Start never arrived, or one that reopened a
# session (its lease then starts where the closed one ended).
_PG_UPSERT = (
    "WITH up AS (INSERT INTO sessions (" + ", ".join(_COLUMNS) + ") SELECT "
    + ", ".join(f"(r->>{n})::{kind}" for n, kind in enumerate(_PG_TYPES))
    + " FROM jsonb_array_elements(%s::jsonb) AS r "
    "ON CONFLICT (nas_id, acct_session_id) DO UPDATE SET "
    "username = coalesce(nullif(sessions.username, ''), excluded.username), "
    "account_id = coalesce(sessions.account_id, excluded.account_id), "
    "service_id = coalesce(sessions.service_id, excluded.service_id), "
    "framed_ip = coalesce(excluded.framed_ip, sessions.framed_ip), "
    "calling_station_id = coalesce(excluded.calling_station_id, sessions.calling_station_id), "
    "started_at = least(sessions.started_at, excluded.started_at), "
    "updated_at = greatest(sessions.updated_at, excluded.updated_at), "
    f"stopped_at = CASE WHEN {_REOPEN} THEN excluded.stopped_at "
    "ELSE coalesce(sessions.stopped_at, excluded.stopped_at) END, "
    "octets_in = greatest(sessions.octets_in, excluded.octets_in), "
    "octets_out = greatest(sessions.octets_out, excluded.octets_out), "
    "packets_in = greatest(sessions.packets_in, excluded.packets_in), "
    "packets_out = greatest(sessions.packets_out, excluded.packets_out), "
    "session_time = greatest(sessions.session_time, excluded.session_time), "
    f"terminate_cause = CASE WHEN {_REOPEN} THEN excluded.terminate_cause "
    "ELSE coalesce(sessions.terminate_cause, excluded.terminate_cause) END, "
    # The enforcer's record of what the NAS has outranks the Class echoed.
    "profile = coalesce(sessions.profile, excluded.profile) "
    "RETURNING id, nas_id, acct_session_id, account_id, framed_ip, started_at, stopped_at), "
    "leased AS (INSERT INTO ip_leases (account_id, address, valid_from, open_address, session_id) "
    "SELECT up.account_id, up.framed_ip, coalesce((SELECT max(l.valid_to) FROM ip_leases l "
    "WHERE l.address = up.framed_ip AND l.session_id = up.id), up.started_at), "
    "up.framed_ip, up.id FROM up "
    "WHERE up.stopped_at IS NULL AND up.framed_ip IS NOT NULL AND up.account_id IS NOT NULL "
    "AND NOT EXISTS (SELECT 1 FROM ip_leases o WHERE o.open_address = up.framed_ip) "
    "ON CONFLICT (open_address) DO NOTHING RETURNING session_id) "
    # What the lease statements after it need (_follow_leases): the stored
    # rows that are stopped, and those of Starts (their Acct-Session-Ids are
    # the last parameter) that got no lease here.
    "SELECT up.nas_id, up.acct_session_id, up.id, up.account_id, up.framed_ip, up.started_at, "
    "up.stopped_at FROM up LEFT JOIN leased ON leased.session_id = up.id "
    "WHERE up.stopped_at IS NOT NULL OR (leased.session_id IS NULL "
    "AND up.acct_session_id = ANY(%b::text[]))")

# SQLite: the same lease rule, one session at a time after the upsert.
_LEASE_IF_NONE = text(
    "INSERT INTO ip_leases (account_id, address, valid_from, open_address, session_id) "
    "SELECT s.account_id, s.framed_ip, coalesce((SELECT max(l.valid_to) FROM ip_leases l "
    "WHERE l.address = s.framed_ip AND l.session_id = s.id), s.started_at), s.framed_ip, s.id "
    "FROM sessions s WHERE s.nas_id = :nas_id AND s.acct_session_id = :acct_session_id "
    "AND s.stopped_at IS NULL AND s.framed_ip IS NOT NULL AND s.account_id IS NOT NULL "
    "AND NOT EXISTS (SELECT 1 FROM ip_leases o WHERE o.open_address = s.framed_ip) "
    "ON CONFLICT (open_address) DO NOTHING")


def _execute(connection, statement: str, parameters) -> list[tuple]:
    """One PostgreSQL statement of a batch; its rows, if any.

    The cursor is on the caller's connection, so in its transaction; it is
    binary, which makes psycopg's array dumper several times cheaper than
    the text one (no per-element quoting).

    Prepared, so PostgreSQL parses and analyses the statement once per
    connection, but planned afresh on every run (plan_cache_mode, for this
    transaction only): the generic plan PostgreSQL would otherwise keep
    after the fifth run may have been made while ip_leases was empty, and
    then reads the whole table for every row where an index probe is
    needed (EXPLAIN with plan_cache_mode = force_generic_plan shows it).
    Parsing the upsert took about 0.4 ms of the backend's CPU a batch
    (apply_batch alone, batches of 32 new sessions: 70 us of the backend a
    row unprepared, 56 prepared).

    Planning costs 8-10 us of the backend a row (batches of 57 new
    sessions: 48.9 us a row planned afresh, 40.6 with one generic plan),
    but no cheaper guard held: one generic plan with sequential scans
    turned off (SET LOCAL enable_seqscan = off) was as fast while right,
    and when made from the statistics of a nearly empty ip_leases it read
    a whole index of it for every batch instead (bench/radius_acct.py
    --new-sessions: 1.5-4k req/s in six runs of nine, 15k otherwise;
    tests/integration/test_accounting_batches.py catches it by the rows
    fetched).
    """
    driver = connection.connection.driver_connection
    try:
        # In a pipeline, the SET and the statement go out together: one
        # round trip fewer per batch, each a wake-up of the backend. (The
        # BEGIN that psycopg starts the transaction with is not among
        # them: it syncs and waits for it first. strace of a writer under
        # bench/radius_acct.py --new-sessions shows three round trips a
        # batch: BEGIN; SET and upsert; COMMIT. A batch that also opens or
        # closes leases here has one more for each such statement.)
        with driver.cursor(binary=True) as cursor:
            with driver.pipeline() if _PIPELINE else nullcontext():
                driver.execute(_CUSTOM_PLANS)
                cursor.execute(statement, parameters, prepare=True)
            return cursor.fetchall() if cursor.description is not None else []
    except Exception as error:
        # SQLAlchemy did not see this error: a dead connection, or one to a
        # server that turned read-only (a standby), would go back to the
        # pool and fail the next batch the same way.
        discard_if_gone(connection, error)
        raise


# SET LOCAL: it ends with the batch's transaction, so nothing else the
# pooled connection runs later is planned differently.
_CUSTOM_PLANS = "SET LOCAL plan_cache_mode = force_custom_plan"


def _pipeline_supported() -> bool:
    try:
        import psycopg
        return psycopg.Pipeline.is_supported()
    except ImportError:
        return False


_PIPELINE = _pipeline_supported()


def _rows_json(held) -> str:
    """[(record, started_at), ...] as a JSON array of rows in _COLUMNS order
    (times in ISO 8601, naive UTC; parse keeps NUL out of every text)."""
    return json.dumps([
        (r.nas_id, r.acct_session_id, r.username, r.account_id, r.service_id, r.framed_ip,
         r.calling_station_id, started_at.isoformat(), r.event_time.isoformat(),
         r.event_time.isoformat() if r.status == STOP else None, r.octets_in, r.octets_out,
         r.packets_in, r.packets_out, r.session_time, r.terminate_cause, r.applied)
        for r, started_at in held], separators=(",", ":"))


def _upsert_postgresql(connection, held) -> dict[tuple[int, str], tuple]:
    """The upsert; {key: (id, account_id, framed_ip, started_at, stopped_at)}
    of the stored rows that are stopped or got no lease from it."""
    starts = [r.acct_session_id for r, _ in held if r.saw_start and r.status != STOP]
    return {(row[0], row[1]): row[2:]
            for row in _execute(connection, _PG_UPSERT, (_rows_json(held), starts))}


def _upsert(connection, held):
    if connection.dialect.name == "postgresql":
        return _upsert_postgresql(connection, held)
    arrays = _columns(held)
    rows = [dict(zip(_COLUMNS, values)) for values in zip(*arrays)]
    # SQLite: the same rules through SQLAlchemy (MAX/MIN of two arguments
    # are SQLite's scalar GREATEST/LEAST; its timestamps compare as text in
    # one fixed format).
    from sqlalchemy.dialects.sqlite import insert
    greatest, least = func.max, func.min
    table = RadiusSession.__table__
    statement = insert(table)
    new = statement.excluded
    c = table.c
    reopen = and_(c.terminate_cause == STALE_CAUSE, new.updated_at > c.stopped_at)
    statement = statement.on_conflict_do_update(
        index_elements=[c.nas_id, c.acct_session_id],
        set_=dict(
            username=func.coalesce(func.nullif(c.username, ""), new.username),
            account_id=func.coalesce(c.account_id, new.account_id),
            service_id=func.coalesce(c.service_id, new.service_id),
            framed_ip=func.coalesce(new.framed_ip, c.framed_ip),
            calling_station_id=func.coalesce(new.calling_station_id, c.calling_station_id),
            started_at=least(c.started_at, new.started_at),
            updated_at=greatest(c.updated_at, new.updated_at),
            stopped_at=case((reopen, new.stopped_at),
                            else_=func.coalesce(c.stopped_at, new.stopped_at)),
            octets_in=greatest(c.octets_in, new.octets_in),
            octets_out=greatest(c.octets_out, new.octets_out),
            packets_in=greatest(c.packets_in, new.packets_in),
            packets_out=greatest(c.packets_out, new.packets_out),
            session_time=greatest(c.session_time, new.session_time),
            terminate_cause=case((reopen, new.terminate_cause),
                                 else_=func.coalesce(c.terminate_cause, new.terminate_cause)),
            profile=func.coalesce(c.profile, new.profile),
        ))
    connection.execute(statement, rows)
    keys = [dict(nas_id=r.nas_id, acct_session_id=r.acct_session_id)
            for r, _ in held if r.status != STOP]
    if keys:
        connection.execute(_LEASE_IF_NONE, keys)


def _close_nas_sessions(connection, nas_id: int, at: dt.datetime, cause: str) -> list[int]:
    """Close the NAS's open sessions that started by ``at``; their ids."""
    table = RadiusSession.__table__
    return connection.execute(
        update(table)
        .where(and_(table.c.nas_id == nas_id, table.c.stopped_at.is_(None),
                    table.c.started_at <= at))
        .values(stopped_at=at, terminate_cause=cause)
        .returning(table.c.id)).scalars().all()


# Leases follow sessions. Values come from the stored session row (after
# the upsert), so a Start arriving after its Stop opens nothing, and no
# Python datetime is bound into raw SQL.
_OPEN_LEASE = text(
    "INSERT INTO ip_leases (account_id, address, valid_from, open_address, session_id) "
    "SELECT s.account_id, s.framed_ip, s.started_at, s.framed_ip, s.id FROM sessions s "
    "WHERE s.nas_id = :nas_id AND s.acct_session_id = :acct_session_id "
    "AND s.stopped_at IS NULL AND s.framed_ip IS NOT NULL AND s.account_id IS NOT NULL "
    "ON CONFLICT (open_address) DO UPDATE SET session_id = excluded.session_id "
    "WHERE ip_leases.account_id = excluded.account_id")


def _close_leases_of(sessions: str):
    """Close the open leases of the stopped sessions that ``sessions`` (a
    condition on ``s``) names, at the moment each session stopped."""
    return text(
        "UPDATE ip_leases SET valid_to = s.stopped_at, open_address = NULL FROM sessions s "
        f"WHERE {sessions} AND s.stopped_at IS NOT NULL "
        "AND ip_leases.open_address = s.framed_ip AND ip_leases.account_id = s.account_id")


_CLOSE_LEASE = _close_leases_of("s.nas_id = :nas_id AND s.acct_session_id = :acct_session_id")
# After Accounting-On/Off closed the NAS's sessions: their leases close too,
# at that moment. Only those sessions': a condition on the NAS alone also
# matched every session it ever stopped, so an open lease of the same
# account and address (a session on another NAS, or one the NAS handed the
# address to later) was closed too, with the stop time of whichever old
# session the join met first (PostgreSQL and SQLite met different ones).
_CLOSE_SESSION_LEASES = _close_leases_of("s.id = :session_id")
_PG_CLOSE_SESSIONS_LEASES = (
    "UPDATE ip_leases SET valid_to = s.stopped_at, open_address = NULL FROM sessions s "
    "WHERE s.id = ANY(%b::bigint[]) AND s.stopped_at IS NOT NULL "
    "AND ip_leases.open_address = s.framed_ip AND ip_leases.account_id = s.account_id")


def _close_leases_of_sessions(connection, session_ids: list[int]) -> None:
    if not session_ids:
        return
    if connection.dialect.name == "postgresql":
        # One statement for a BRAS's tens of thousands of sessions.
        _execute(connection, _PG_CLOSE_SESSIONS_LEASES, (session_ids,))
    else:
        connection.execute(_CLOSE_SESSION_LEASES, [{"session_id": i} for i in session_ids])


# PostgreSQL: the same two statements once per batch over the values the
# upsert returned (executed row by row they were most of what a batch of
# Starts cost). Only rows that need them are sent: a Start whose lease the
# upsert opened has nothing left to do (the row-by-row statement would
# rewrite the lease with the same session). Set-based equals row by row
# while no address appears twice among the rows, since each row then
# touches another lease; a batch where one does (a NAS handing an address
# on within milliseconds) takes the row-by-row statements, in key order.
# No join with sessions: the planner's estimate of its open rows goes
# stale between ANALYZEs and chose a scan of all of them.
_PG_OPEN_LEASES = (
    "INSERT INTO ip_leases (account_id, address, valid_from, open_address, session_id) "
    "SELECT v.account_id, v.address, v.valid_from, v.address, v.session_id "
    "FROM unnest(%b::int[], %b::text[], %b::timestamp[], %b::bigint[]) "
    "AS v(account_id, address, valid_from, session_id) "
    # Not even a conflict (which locks the lease row, a write) for a lease
    # the session holds already: a retransmitted Start's.
    "WHERE NOT EXISTS (SELECT 1 FROM ip_leases o WHERE o.open_address = v.address "
    "AND o.session_id = v.session_id) "
    "ON CONFLICT (open_address) DO UPDATE SET session_id = excluded.session_id "
    "WHERE ip_leases.account_id = excluded.account_id")
_PG_CLOSE_LEASES = (
    "UPDATE ip_leases SET valid_to = v.valid_to, open_address = NULL "
    "FROM unnest(%b::int[], %b::text[], %b::timestamp[]) AS v(account_id, address, valid_to) "
    "WHERE ip_leases.open_address = v.address AND ip_leases.account_id = v.account_id")


def _distinct(addresses: list[str]) -> bool:
    return len(set(addresses)) == len(addresses)


def _follow_leases(connection, held, stored=None) -> None:
    """Open the leases of Starts, close those of Stops (``stored``: what
    the PostgreSQL upsert returned, None on SQLite)."""
    opened = [r for r, _ in held
              if r.framed_ip and r.account_id and r.status != STOP and r.saw_start]
    closed = [r for r, _ in held if r.framed_ip and r.account_id and r.status == STOP]
    if stored is not None:
        # Stored values, as the row-by-row statements read them (sessions s).
        opening = [stored[r.key] for r in opened if r.key in stored]
        opening = [(account_id, ip, started, session_id)
                   for session_id, account_id, ip, started, stopped in opening
                   if stopped is None and ip is not None and account_id is not None]
        closing = [stored[r.key] for r in closed if r.key in stored]
        closing = [(account_id, ip, stopped)
                   for _id, account_id, ip, _started, stopped in closing
                   if stopped is not None and ip is not None and account_id is not None]
        if _distinct([row[1] for row in opening]):
            if opening:
                _execute(connection, _PG_OPEN_LEASES, [list(c) for c in zip(*opening)])
            opened = []
        if closing and _distinct([row[1] for row in closing]) and not opened:
            _execute(connection, _PG_CLOSE_LEASES, [list(c) for c in zip(*closing)])
            closed = []
        elif not closing:
            closed = []
    if opened:
        connection.execute(_OPEN_LEASE, [dict(nas_id=r.nas_id, acct_session_id=r.acct_session_id)
                                         for r in opened])
    if closed:
        connection.execute(_CLOSE_LEASE, [dict(nas_id=r.nas_id, acct_session_id=r.acct_session_id)
                                          for r in closed])


def _record_key(held: tuple[AcctRecord, dt.datetime]) -> tuple[int, str]:
    return held[0].nas_id, held[0].acct_session_id


def apply_batch(connection, records: list[AcctRecord]) -> None:
    """Write records in arrival order; Accounting-On/Off close the NAS's open
    sessions that started before it (RFC 2866 §5.1: the NAS rebooted)."""
    pending: dict[tuple[int, str], tuple[AcctRecord, dt.datetime]] = {}

    def flush():
        if pending:
            # In key order: two workers' batches (aaa.workers) that touch
            # the same sessions then lock their rows in the same order.
            held = sorted(pending.values(), key=_record_key)
            _follow_leases(connection, held, _upsert(connection, held))
            pending.clear()

    for record in records:
        if record.status in NAS_STATUSES:
            flush()
            cause = "NAS-Reboot" if record.status == ACCOUNTING_ON else "NAS-Request"
            _close_leases_of_sessions(connection, _close_nas_sessions(
                connection, record.nas_id, record.event_time, cause))
            continue
        held = pending.get(record.key)
        if held is None:
            pending[record.key] = (record, record.started_at)
        else:
            pending[record.key] = (merge(held[0], record), min(held[1], record.started_at))
    flush()


# -- sessions the NAS went silent about ---------------------------------------

_CLOSE_STALE_LEASE = _CLOSE_SESSION_LEASES


def close_stale_sessions(connection, now: dt.datetime, silent_for: dt.timedelta) -> int:
    """Close open sessions not heard of (no Interim, no Stop) for ``silent_for``.

    A NAS that lost power or a Stop that never arrived would otherwise keep
    a session, and its pool address, open for ever. The session ends when it
    was last heard of, with cause ``Stale-Session``; its lease closes at the
    same moment. Safe to run on several nodes at once: a closed session no
    longer matches.
    """
    table = RadiusSession.__table__
    closed = connection.execute(
        update(table)
        .where(table.c.stopped_at.is_(None), table.c.updated_at < now - silent_for)
        .values(stopped_at=table.c.updated_at, terminate_cause=STALE_CAUSE)
        .returning(table.c.id)).scalars().all()
    if closed:
        connection.execute(_CLOSE_STALE_LEASE, [{"session_id": i} for i in closed])
    return len(closed)


def close_session_as_stale(connection, session_id: int) -> bool:
    """Close one open session the NAS says it does not know (CoA-NAK 503):
    as ``close_stale_sessions`` does, at the moment last heard of, so that a
    NAS that speaks of it again reopens it."""
    table = RadiusSession.__table__
    closed = connection.execute(
        update(table).where(table.c.id == session_id, table.c.stopped_at.is_(None))
        .values(stopped_at=table.c.updated_at, terminate_cause=STALE_CAUSE)).rowcount
    if closed:
        connection.execute(_CLOSE_STALE_LEASE, {"session_id": session_id})
    return bool(closed)
