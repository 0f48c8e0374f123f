"""aaa.voice.parse: what a SIP proxy's and a Cisco gateway's accounting say."""

import datetime as dt

import pytest

from aaa import packet as wire
from aaa import voice

SECRET = b"testing123"
RECEIVED = dt.datetime(2026, 12, 6, 12, 0, 30)


def integer(value):
    return value.to_bytes(4, "big")


def request(*attributes, vendor=()):
    body = b"".join(wire.attribute(kind, value) for kind, value in attributes)
    body += b"".join(wire.vendor_attribute(v, t, value) for (v, t), value in vendor)
    return wire.decode(wire.encode_request(wire.ACCOUNTING_REQUEST, 7, SECRET, body))


def kamailio(status, *extra):
    """What Kamailio 5.6 acc_radius sent in this project's test (captured)."""
    return request((40, integer(status)), (6, integer(15)), (102, integer(200)),
                   (101, integer(1 if status == voice.START else 8)),
                   (55, b"1796558400.250000"), (105, b"12195SIPpTag001"),
                   (104, b"12083SIPpTag011"), (44, b"1-12195@127.0.0.1"),
                   (31, b"74951110001"), (30, b"sip:84952220002@127.0.0.1;user=phone"),
                   (5, integer(5060)), (41, integer(0)), (4, bytes([127, 0, 0, 1])), *extra)


def test_a_kamailio_start_is_answered_at_its_event_timestamp():
    record = voice.parse(kamailio(voice.START), 3, "kam", RECEIVED)
    assert (record.status, record.call_id, record.calling, record.called) == (
        voice.START, "1-12195@127.0.0.1", "74951110001", "84952220002")
    assert record.answered_at == dt.datetime(2026, 12, 6, 12, 0, 0, 250_000)
    assert record.source == "radius:kam" and record.counts
    assert (record.sip_method, record.sip_code) == (1, 200)


def test_a_kamailio_stop_ends_at_its_event_timestamp_and_integer_stamps_work():
    packet = request((40, integer(voice.STOP)), (55, integer(1796558410)), (44, b"call-9"),
                     (31, b"tel:+7 495 111-00-01"), (30, b"<sip:100@example.org>"))
    record = voice.parse(packet, 3, "kam", RECEIVED)
    assert record.ended_at == dt.datetime(2026, 12, 6, 12, 0, 10)
    assert (record.calling, record.called) == ("+7 495 111-00-01", "100")


def test_without_event_timestamp_the_delay_is_taken_off_the_time_received():
    packet = request((40, integer(voice.FAILED)), (41, integer(5)), (44, b"x"),
                     (31, b"1"), (30, b"2"), (102, integer(486)))
    record = voice.parse(packet, 3, "kam", RECEIVED)
    assert record.ended_at == RECEIVED - dt.timedelta(seconds=5)
    assert record.sip_code == 486


def test_cisco_voip_attributes():
    cisco = [((9, 1), b"call-id=abc@10.0.0.1"),
             ((9, 24), b"h323-conf-id=1A2B 3C4D 5E6F 7788"),
             ((9, 25), b"h323-setup-time=*11:59:50.100 UTC Sun Dec 6 2026"),
             ((9, 28), b"h323-connect-time=11:59:55.000 UTC Sun Dec 6 2026"),
             ((9, 29), b"h323-disconnect-time=12:00:25.600 UTC Sun Dec 6 2026"),
             ((9, 26), b"h323-call-origin=originate"),
             ((9, 30), b"h323-disconnect-cause=10")]
    packet = request((40, integer(voice.STOP)), (44, b"0000001F"), (46, integer(31)),
                     (31, b"4951110001"), (30, b"4952220002"), vendor=cisco)
    record = voice.parse(packet, 3, "gw", RECEIVED)
    assert record.call_id == "abc@10.0.0.1"
    assert record.setup_at == dt.datetime(2026, 12, 6, 11, 59, 50, 100_000)
    assert record.answered_at == dt.datetime(2026, 12, 6, 11, 59, 55)
    assert record.ended_at == dt.datetime(2026, 12, 6, 12, 0, 25, 600_000)
    assert (record.cause, record.session_time, record.counts) == (16, 31, True)
    # The answer leg is the same call as it came in: acknowledged, not a call.
    answer_leg = request((40, integer(voice.STOP)), (44, b"0000001E"), (31, b"1"), (30, b"2"),
                         vendor=[((9, 26), b"h323-call-origin=answer"),
                                 ((9, 24), b"h323-conf-id=1A2B")])
    assert not voice.parse(answer_leg, 3, "gw", RECEIVED).counts


def test_cisco_time_in_a_local_zone_is_not_guessed():
    assert voice.cisco_time("12:00:00.000 MSK Sun Dec 6 2026") is None
    assert voice.cisco_time("garbage") is None
    assert voice.cisco_time(".12:00:01 GMT Sun Dec 6 2026") == dt.datetime(2026, 12, 6, 12, 0, 1)


@pytest.mark.parametrize("attributes, reason", [
    ([(44, b"x"), (31, b"1"), (30, b"2")], "Acct-Status-Type is missing"),
    ([(40, integer(99)), (44, b"x"), (31, b"1"), (30, b"2")], "not a call event"),
    ([(40, integer(1)), (31, b"1"), (30, b"2")], "no Call-ID"),
    ([(40, integer(2)), (44, b"x"), (31, b"1")], "Calling-Station-Id and Called"),
    ([(40, integer(1)), (44, b"x"), (31, b"1"), (30, b"2"), (55, b"not a time")], "Event-Timestamp"),
    ([(40, integer(2)), (44, b"x"), (31, b"1"), (30, b"2"), (41, integer(10 ** 8))],
     "Acct-Delay-Time"),
    ([(40, integer(2)), (44, b"x"), (31, b"1"), (30, b"2"), (46, integer(10 ** 7))],
     "Acct-Session-Time"),
])
def test_what_cannot_be_a_call_is_refused_with_a_reason(attributes, reason):
    with pytest.raises(wire.MalformedPacket) as error:
        voice.parse(request(*attributes), 3, "kam", RECEIVED)
    assert reason in error.value.reason


def test_interims_are_acknowledged_without_numbers():
    record = voice.parse(request((40, integer(voice.INTERIM)), (44, b"x")), 3, "kam", RECEIVED)
    assert not record.counts


@pytest.mark.parametrize("seconds, billed", [(0.49, 0), (0.5, 1), (4.02, 4), (59.5, 60)])
def test_billed_seconds_round_half_up(seconds, billed):
    start = dt.datetime(2026, 1, 1)
    assert voice.billed_seconds(start, start + dt.timedelta(seconds=seconds)) == billed
