"""Start/Stop pairing of a voice NAS's calls (aaa.voice) on both databases:
each call is recorded once whatever the NAS retransmits, loses or sends late."""

import datetime as dt

import pytest
from sqlalchemy import select

from aaa import voice
from aaa.models import VoiceStart
from rating.models import Call
from tests.factories import make_nas

T0 = dt.datetime(2026, 12, 6, 12, 0, 0)


@pytest.fixture
def nas(ctx):
    with ctx.Session() as session:
        row = make_nas(session, name="kam", vendor="sip")
        session.commit()
        return row.id


def event(nas_id, status, call_id, at, **fields):
    values = dict(calling="74951110001", called="74952220002")
    values.update(fields)
    record = voice.VoiceRecord(nas_id=nas_id, nas_name="kam", status=status, event_time=at,
                               call_id=call_id, **values)
    if status == voice.START and record.answered_at is None:
        record.answered_at = at
    if status in (voice.STOP, voice.FAILED) and record.ended_at is None:
        record.ended_at = at
    return record


def apply(ctx, *records):
    with ctx.engine.begin() as connection:
        return voice.apply_batch(connection, list(records))


def calls(ctx):
    with ctx.Session() as session:
        return session.scalars(select(Call).where(Call.source == "radius:kam")
                               .order_by(Call.external_id)).all()


def held(ctx):
    with ctx.Session() as session:
        return session.query(VoiceStart).count()


def test_start_then_stop_is_one_call_of_the_answered_seconds(ctx, nas):
    assert apply(ctx, event(nas, voice.START, "c1", T0)) == (0, 0)
    assert held(ctx) == 1
    stop = event(nas, voice.STOP, "c1", T0 + dt.timedelta(seconds=37, microseconds=600_000),
                 calling="74952220002", called="74951110001", sip_method=voice.SIP_METHOD_BYE)
    assert apply(ctx, stop) == (1, 0)
    [call] = calls(ctx)
    # The Start's numbers (a BYE from the callee has them swapped); 37.6 s → 38.
    assert (call.calling, call.called, call.billsec, call.disposition) == (
        "74951110001", "74952220002", 38, "answered")
    assert held(ctx) == 0


def test_retransmitted_start_and_stop_count_once(ctx, nas):
    start = event(nas, voice.START, "c2", T0)
    stop = event(nas, voice.STOP, "c2", T0 + dt.timedelta(seconds=5))
    apply(ctx, start)
    apply(ctx, start)                   # after the duplicate window: the row is there
    assert held(ctx) == 1
    assert apply(ctx, stop, stop) == (1, 0)     # twice in one batch
    assert apply(ctx, stop) == (0, 1)           # and once more later
    assert [(c.external_id, c.billsec) for c in calls(ctx)] == [("c2", 5)]
    # A Start copy that arrives after its Stop is held, and closed as a
    # duplicate by the timeout: still one call.
    apply(ctx, start)
    with ctx.engine.begin() as connection:
        assert voice.close_stale_starts(connection, T0 + dt.timedelta(days=1),
                                        dt.timedelta(hours=4)) == 1
    assert [(c.external_id, c.billsec) for c in calls(ctx)] == [("c2", 5)]


def test_start_and_stop_in_one_batch(ctx, nas):
    start = event(nas, voice.START, "c3", T0)
    stop = event(nas, voice.STOP, "c3", T0 + dt.timedelta(seconds=61))
    assert apply(ctx, start, stop, start) == (1, 0)
    assert [(c.external_id, c.billsec) for c in calls(ctx)] == [("c3", 61)]
    assert held(ctx) == 0


def test_stop_without_start_is_a_call_from_the_stop_alone(ctx, nas):
    end = T0 + dt.timedelta(minutes=3)
    apply(ctx, event(nas, voice.STOP, "bye-only", end, sip_method=voice.SIP_METHOD_BYE),
          event(nas, voice.STOP, "timed", end, session_time=42))
    by_id = {c.external_id: c for c in calls(ctx)}
    assert (by_id["bye-only"].billsec, by_id["bye-only"].disposition) == (0, "answered")
    assert (by_id["timed"].billsec, by_id["timed"].disposition) == (42, "answered")
    assert by_id["timed"].answer_at == end - dt.timedelta(seconds=42)


def test_a_start_never_stopped_is_closed_by_the_timeout_and_a_late_stop_does_not_double(
        ctx, nas):
    apply(ctx, event(nas, voice.START, "lost", T0),
          event(nas, voice.START, "young", T0 + dt.timedelta(hours=3, minutes=30)))
    with ctx.engine.begin() as connection:
        closed = voice.close_stale_starts(connection, T0 + dt.timedelta(hours=4, seconds=1),
                                          dt.timedelta(hours=4))
    assert closed == 1
    assert held(ctx) == 1               # the younger call is still open
    [call] = calls(ctx)
    assert (call.external_id, call.billsec, call.disposition) == ("lost", 0, "failed")
    assert apply(ctx, event(nas, voice.STOP, "lost", T0 + dt.timedelta(hours=5))) == (0, 1)
    assert [(c.external_id, c.billsec) for c in calls(ctx)] == [("lost", 0)]


def test_unanswered_calls_by_their_final_response(ctx, nas):
    apply(ctx, *(event(nas, voice.FAILED, f"f{code}", T0, sip_code=code)
                 for code in (486, 480, 503)))
    assert {c.external_id: c.disposition for c in calls(ctx)} == {
        "f486": "busy", "f480": "no_answer", "f503": "failed"}
    assert all(c.billsec == 0 and c.answer_at is None for c in calls(ctx))


def test_interims_and_cisco_answer_legs_are_not_calls(ctx, nas):
    interim = event(nas, voice.INTERIM, "i1", T0)
    interim.counts = False
    leg = event(nas, voice.STOP, "leg", T0, session_time=9)
    leg.counts = False
    assert apply(ctx, interim, leg) == (0, 0)
    assert calls(ctx) == [] and held(ctx) == 0
