"""Calls from a voice NAS: RADIUS accounting → one call record each.

A NAS whose vendor is a voice one (``sip``: Kamailio or OpenSIPS with
``acc_radius``; ``cisco-voip``: a Cisco IOS gateway) sends calls, not data
sessions:

- **Start** when the INVITE is answered (200 OK), **Stop** on the BYE, both
  with the SIP Call-ID as Acct-Session-Id, the numbers in Calling- and
  Called-Station-Id (Kamailio: ``radius_extra``), Sip-Method (101) and
  Sip-Response-Code (102) of draft-sterman-aaa-sip, and Event-Timestamp
  (an integer, or "seconds.microseconds" with ``rad_time_mode`` 1);
- **Failed** (Acct-Status-Type 15) for a call that was never answered (the
  final response: 486 busy, 480/408/487 no answer, others failed);
- a Cisco gateway sends h323-setup/connect/disconnect-time, h323-call-origin
  and h323-disconnect-cause (Q.850, hex) and Cisco-AVPair "call-id=…"; only
  its ``originate`` leg is a call (the ``answer`` leg is the same call as it
  came in), and its Acct-Session-Time is used where the times are missing.

A Start is held in ``voice_starts`` (durable, so that a Stop after a
restart or at another RADIUS node still pairs); the Stop takes it out and
becomes one ``rating.telephony.CallInput`` in the same transaction, which
the server commits before it answers (RFC 2866). Exactly once:

- a retransmit inside the duplicate window is answered from the server's
  cache; a later copy of a Start meets the row already there, a later copy
  of a Stop finds no row and makes a call that ``record_calls`` drops as a
  duplicate (idempotency per (source, Call-ID));
- a Stop without a Start makes its call alone: answered from
  h323-connect-time or Acct-Session-Time, else of unknown length (0 s);
- a Start never stopped is closed by ``close_stale_starts`` after
  ``radius.voice_call_timeout_s`` as a failed call of 0 s (the end is not
  known, so nothing is charged); its late Stop is then a duplicate.

``parse`` is pure; ``apply_batch`` writes inside the caller's transaction.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from sqlalchemy import delete, select, tuple_
from sqlalchemy.orm import Session as OrmSession

from aaa import packet as wire
from aaa.models import Nas, VoiceStart

START, STOP, INTERIM, ACCOUNTING_ON, ACCOUNTING_OFF, FAILED = 1, 2, 3, 7, 8, 15
STATUSES = (START, STOP, INTERIM, ACCOUNTING_ON, ACCOUNTING_OFF, FAILED)

ACCT_STATUS_TYPE = 40
ACCT_DELAY_TIME = 41
ACCT_SESSION_ID = 44
ACCT_SESSION_TIME = 46
CALLED_STATION_ID = 30
CALLING_STATION_ID = 31
SERVICE_TYPE = 6
EVENT_TIMESTAMP = 55
SIP_METHOD = 101
SIP_RESPONSE_CODE = 102
SIP_METHOD_BYE = 8

CISCO = 9
CISCO_AVPAIR = (CISCO, 1)
H323_CONF_ID = (CISCO, 24)
H323_SETUP_TIME = (CISCO, 25)
H323_CALL_ORIGIN = (CISCO, 26)
H323_CONNECT_TIME = (CISCO, 28)
H323_DISCONNECT_TIME = (CISCO, 29)
H323_DISCONNECT_CAUSE = (CISCO, 30)

# Service-Type of the caller check (misc_radius radius_load_caller_avps)
# and of RFC 2865's Call-Check; an Access-Request from a voice NAS with
# another one is refused.
SIP_CALLER_AVPS = 30
CALL_CHECK = 10

# Q.850 causes (h323-disconnect-cause, hex) and SIP codes of a call not
# answered, by disposition.
BUSY_CAUSES = {17}
NO_ANSWER_CAUSES = {18, 19, 20, 21}
BUSY_CODES = {486, 600}
NO_ANSWER_CODES = {408, 480, 487, 603}

MAX_DELAY_S = 7 * 24 * 3600
MAX_CALL_S = 7 * 24 * 3600      # rating.telephony refuses a longer call
MAX_ID = 128
MAX_NUMBER = 64


@dataclass(slots=True)
class VoiceRecord:
    nas_id: int
    nas_name: str
    status: int
    event_time: dt.datetime
    call_id: str = ""
    calling: str = ""
    called: str = ""
    login: str | None = None
    setup_at: dt.datetime | None = None
    answered_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None
    session_time: int | None = None
    sip_method: int | None = None
    sip_code: int | None = None
    cause: int | None = None        # Q.850
    # False: acknowledged and not recorded (Interim, On/Off, a Cisco
    # gateway's answer leg).
    counts: bool = True

    @property
    def key(self) -> tuple[int, str]:
        return (self.nas_id, self.call_id)

    @property
    def acct_session_id(self) -> str:   # what the server's error lines name
        return self.call_id

    @property
    def source(self) -> str:
        return source_of(self.nas_name)


def source_of(nas_name: str) -> str:
    return f"radius:{nas_name}"


def _integer(request: wire.Packet, kind: int) -> int | None:
    value = request.first(kind)
    if value is None:
        return None
    if len(value) != 4:
        raise wire.MalformedPacket(f"attribute {kind} must be 4 octets, not {len(value)}")
    return int.from_bytes(value, "big")


def _clean(text: str | None, limit: int) -> str:
    return (text or "").replace("\x00", "").strip()[:limit]


def number_of(text: str | None) -> str:
    """The user part of what a proxy sends for a number: "sip:74951234567@
    host;user=phone", "tel:+7 495 123-45-67" and plain "84951234567" all
    give the part before "@" without the scheme (normalising the digits is
    rating.telephony's)."""
    text = _clean(text, 256)
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    text = re.sub(r"^(sips?|tel):", "", text, flags=re.IGNORECASE)
    return text.split("@", 1)[0].split(";", 1)[0][:MAX_NUMBER]


def event_timestamp(value: bytes) -> dt.datetime:
    """Event-Timestamp: 4 octets of Unix seconds (RFC 2869), or Kamailio's
    ``rad_time_mode`` 1 text "1445590624.377372"."""
    if len(value) == 4:
        seconds = float(int.from_bytes(value, "big"))
    else:
        try:
            seconds = float(value.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            raise wire.MalformedPacket("Event-Timestamp is neither 4 octets nor seconds as text")
    if not 0 < seconds < 2 ** 32:
        raise wire.MalformedPacket("Event-Timestamp is out of range")
    return dt.datetime(1970, 1, 1) + dt.timedelta(seconds=seconds)


_CISCO_TIME = re.compile(
    r"^[*.]?(\d{1,2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?\s+(UTC|GMT|UT)\s+\w{3}\s+(\w{3})\s+"
    r"(\d{1,2})\s+(\d{4})$", re.IGNORECASE)
_MONTHS = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}


def cisco_value(value: bytes | None, name: str) -> str | None:
    """A Cisco VoIP VSA's value without its "name=" prefix."""
    if value is None:
        return None
    text = value.decode("utf-8", "replace").replace("\x00", "").strip()
    prefix = name + "="
    return text[len(prefix):] if text.lower().startswith(prefix) else text


def cisco_time(text: str | None) -> dt.datetime | None:
    """"18:01:02.123 UTC Sun Dec 6 2026" → naive UTC; None if absent or in
    another zone (a gateway's local zone name says nothing certain about
    its offset; the Event-Timestamp or the time received is used then). A
    leading "*" or "." (clock not synchronised) is accepted."""
    if not text:
        return None
    match = _CISCO_TIME.match(text.strip())
    if match is None:
        return None
    hour, minute, second, fraction, _zone, month, day, year = match.groups()
    month_number = _MONTHS.get(month.lower())
    if month_number is None:
        return None
    try:
        return dt.datetime(int(year), month_number, int(day), int(hour), int(minute),
                           int(second), int((fraction or "0").ljust(6, "0")))
    except ValueError:
        return None


def _cisco_call_id(request: wire.Packet) -> str | None:
    for value in request.vendor.get(CISCO_AVPAIR, ()):
        text = value.decode("utf-8", "replace")
        if text.lower().startswith("call-id="):
            return _clean(text[8:], MAX_ID) or None
    return None


def parse(request: wire.Packet, nas_id: int, nas_name: str,
          received_at: dt.datetime) -> VoiceRecord:
    """The call event an Accounting-Request from a voice NAS carries;
    MalformedPacket if it cannot be one."""
    status = _integer(request, ACCT_STATUS_TYPE)
    if status is None:
        raise wire.MalformedPacket("Acct-Status-Type is missing")
    if status not in STATUSES:
        raise wire.MalformedPacket(f"Acct-Status-Type {status} is not a call event")
    delay = _integer(request, ACCT_DELAY_TIME) or 0
    if delay > MAX_DELAY_S:
        raise wire.MalformedPacket(f"Acct-Delay-Time {delay} is implausible")
    stamp = request.first(EVENT_TIMESTAMP)
    event_time = (event_timestamp(stamp) if stamp is not None
                  else received_at - dt.timedelta(seconds=delay))
    record = VoiceRecord(nas_id=nas_id, nas_name=nas_name, status=status,
                         event_time=event_time)
    if status in (INTERIM, ACCOUNTING_ON, ACCOUNTING_OFF):
        record.counts = False
        return record
    origin = cisco_value(request.vendor.get(H323_CALL_ORIGIN, [None])[0], "h323-call-origin")
    if origin is not None and origin.lower() == "answer":
        record.counts = False
    call_id = (_cisco_call_id(request)
               or _clean(cisco_value(request.vendor.get(H323_CONF_ID, [None])[0],
                                     "h323-conf-id"), MAX_ID)
               or _clean(request.text(ACCT_SESSION_ID), MAX_ID))
    if not call_id:
        raise wire.MalformedPacket("no Call-ID: Acct-Session-Id and Cisco call-id are missing")
    record.call_id = call_id
    record.calling = number_of(request.text(CALLING_STATION_ID))
    record.called = number_of(request.text(CALLED_STATION_ID))
    if record.counts and not (record.calling and record.called):
        raise wire.MalformedPacket("a call needs Calling-Station-Id and Called-Station-Id")
    login = _clean(request.text(wire.USER_NAME), 64)
    record.login = login or None
    record.sip_method = _integer(request, SIP_METHOD)
    record.sip_code = _integer(request, SIP_RESPONSE_CODE)
    record.session_time = _integer(request, ACCT_SESSION_TIME)
    if record.session_time is not None and record.session_time > MAX_CALL_S:
        raise wire.MalformedPacket(f"Acct-Session-Time {record.session_time} is implausible")
    vendor = request.vendor
    record.setup_at = cisco_time(cisco_value(vendor.get(H323_SETUP_TIME, [None])[0],
                                             "h323-setup-time"))
    record.answered_at = cisco_time(cisco_value(vendor.get(H323_CONNECT_TIME, [None])[0],
                                                "h323-connect-time"))
    record.ended_at = cisco_time(cisco_value(vendor.get(H323_DISCONNECT_TIME, [None])[0],
                                             "h323-disconnect-time"))
    cause = cisco_value(vendor.get(H323_DISCONNECT_CAUSE, [None])[0], "h323-disconnect-cause")
    if cause:
        try:
            record.cause = int(cause, 16)
        except ValueError:
            raise wire.MalformedPacket(f"h323-disconnect-cause {cause!r} is not hex")
    if status == START and record.answered_at is None:
        record.answered_at = event_time
    if status in (STOP, FAILED) and record.ended_at is None:
        record.ended_at = event_time
    return record


def billed_seconds(answered_at: dt.datetime, ended_at: dt.datetime) -> int:
    """Whole seconds between answer and end, rounded half up (as Asterisk's
    billsec); never negative."""
    micros = (ended_at - answered_at) // dt.timedelta(microseconds=1)
    return max(0, (micros + 500_000) // 1_000_000)


def unanswered_disposition(sip_code: int | None, cause: int | None) -> str:
    if sip_code in BUSY_CODES or cause in BUSY_CAUSES:
        return "busy"
    if sip_code in NO_ANSWER_CODES or cause in NO_ANSWER_CAUSES:
        return "no_answer"
    return "failed"


def _call(record: VoiceRecord, start: VoiceStart | VoiceRecord | None):
    """The CallInput of a Stop or Failed record (``start``: its Start)."""
    from rating.telephony import CallInput
    end = record.ended_at
    calling, called, login = record.calling, record.called, record.login
    setup = record.setup_at
    answer = None
    if start is not None:
        answer = start.answered_at
        # The Start's numbers: a BYE from the callee has them swapped.
        calling, called = start.calling or calling, start.called or called
        login = start.login or login
        setup = start.setup_at or setup
    elif record.status == STOP:
        if record.answered_at is not None:
            answer = record.answered_at
        elif record.session_time:
            answer = end - dt.timedelta(seconds=record.session_time)
        elif record.sip_method == SIP_METHOD_BYE or record.cause is None:
            answer = end    # answered (there was a BYE), length unknown
    if answer is not None and answer > end:
        answer = end
    billsec = billed_seconds(answer, end) if answer is not None else 0
    if answer is None:
        disposition = unanswered_disposition(record.sip_code, record.cause)
    else:
        disposition = "answered"
    return CallInput(source=record.source, external_id=record.call_id, calling=calling,
                     called=called, start=min(setup or answer or end, answer or end),
                     answer=answer, end=end, billsec=billsec, disposition=disposition,
                     sip_code=record.sip_code, login=login)


def _insert_starts(connection, starts: list[VoiceRecord]) -> None:
    if not starts:
        return
    if connection.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    rows = [dict(nas_id=r.nas_id, call_id=r.call_id, calling=r.calling, called=r.called,
                 login=r.login, setup_at=r.setup_at, answered_at=r.answered_at,
                 sip_code=r.sip_code) for r in starts]
    connection.execute(insert(VoiceStart.__table__).on_conflict_do_nothing(
        index_elements=["nas_id", "call_id"]), rows)


def _take_starts(connection, keys: list[tuple[int, str]]) -> dict[tuple[int, str], VoiceStart]:
    """Delete and return the held Starts of these calls (one statement; a
    node that races for the same Stop waits for the row lock and gets none)."""
    if not keys:
        return {}
    table = VoiceStart.__table__
    rows = connection.execute(
        delete(table).where(tuple_(table.c.nas_id, table.c.call_id).in_(sorted(set(keys))))
        .returning(*table.c)).all()
    return {(row.nas_id, row.call_id): row for row in rows}


def apply_batch(connection, records: list[VoiceRecord], settings=None) -> tuple[int, int]:
    """Write a batch of call events in arrival order inside the caller's
    transaction: Starts held, Stops and Faileds recorded as calls through
    ``rating.telephony.record_calls``. Returns (inserted, duplicates)."""
    held: dict[tuple[int, str], VoiceRecord] = {}     # Starts of this batch
    ended: dict[tuple[int, str], VoiceRecord] = {}   # first Stop/Failed of a call
    pairs: dict[tuple[int, str], VoiceRecord] = {}
    for record in records:
        if not record.counts:
            continue
        key = record.key
        if record.status == START:
            if key not in held and key not in ended:
                held[key] = record
        elif key not in ended:
            ended[key] = record
            start = held.pop(key, None)
            if start is not None:
                pairs[key] = start
    _insert_starts(connection, sorted(held.values(), key=lambda r: r.key))
    taken = _take_starts(connection, [key for key in ended if key not in pairs])
    calls = [_call(record, pairs.get(key) or taken.get(key)) for key, record in ended.items()]
    if not calls:
        return 0, 0
    result = _record(connection, calls, settings)
    return result.inserted, result.duplicates


def _record(connection, calls, settings=None):
    """record_calls on an ORM session inside the connection's transaction
    (a savepoint: its commit leaves the caller's transaction open)."""
    from rating.telephony import record_calls
    session = OrmSession(bind=connection, join_transaction_mode="create_savepoint")
    try:
        result = record_calls(session, calls, settings=settings)
        session.commit()
    finally:
        session.close()
    return result


def close_stale_starts(connection, now: dt.datetime, timeout: dt.timedelta,
                       settings=None) -> int:
    """Close the held Starts answered more than ``timeout`` ago as failed
    calls of 0 s (the end is not known: nothing is charged). Safe on several
    nodes at once: the rows are deleted as they are taken. The number closed."""
    from rating.telephony import CallInput
    table = VoiceStart.__table__
    rows = connection.execute(
        delete(table).where(table.c.answered_at < now - timeout).returning(*table.c)).all()
    if not rows:
        return 0
    names = dict(connection.execute(select(Nas.id, Nas.name).where(
        Nas.id.in_({row.nas_id for row in rows}))).all())
    calls = [CallInput(source=source_of(names.get(row.nas_id, f"nas-{row.nas_id}")),
                       external_id=row.call_id, calling=row.calling, called=row.called,
                       start=row.setup_at or row.answered_at, answer=None,
                       end=row.answered_at, billsec=0, disposition="failed",
                       sip_code=row.sip_code, login=row.login)
             for row in rows]
    _record(connection, calls, settings)
    return len(rows)


# -- the caller check ---------------------------------------------------------

def caller_of(request: wire.Packet) -> str | None:
    """Who asks to call: User-Name (misc_radius sends the caller given to
    radius_load_caller_avps), else Calling-Station-Id."""
    for kind in (wire.USER_NAME, CALLING_STATION_ID):
        number = number_of(request.text(kind))
        if number:
            return number
    return None
