"""Time-of-day windows with their own speed (issue 14): written by
`abonent tariff`, given by RADIUS in the Access-Accept, pushed by the
enforcer to live sessions when a window starts and ends, and shown by the
cabinet's "speed now" — all through rating.profile, in the operator's time
zone (Europe/Moscow, UTC+3, in the tests' settings)."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from aaa import enforcement
from aaa.authorize import decide
from aaa.directory import SubscriberDirectory
from aaa.server import RadiusServer
from aaa.simulator import CoaResponder
from rating import cabinet_ops, catalogue, timewindows
from rating.models import Account
from rating.profile import ActiveOption, TariffSpeeds, desired_profile
from tests import factories
from tests.conftest import make_context
from tests.integration.cabinet_helpers import (  # noqa: F401 (fixtures)
    app, cabinet_ctx, client, log_in, seed_subscriber)
from tests.integration.test_console_nas import radclient

MSK = "Europe/Moscow"
NIGHT = catalogue.parse_window("01:00-07:00 speed=200000/100000")
EVENING = catalogue.parse_window("19:00-23:00 price=0.50 speed=50000")


def at(hour_utc: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, 12, 7, hour_utc, minute)


def test_the_speed_follows_the_local_hour_and_says_when_it_changes():
    speeds = TariffSpeeds(100_000, 50_000, 1_000, (NIGHT, EVENING), MSK)
    # 23:30 UTC is 02:30 in Moscow: the night speed, until 07:00 Moscow = 04:00 UTC.
    night = desired_profile(state="active", rung="normal", tariff=speeds, now=at(23, 30))
    assert (night.down_kbps, night.up_kbps) == (200_000, 100_000)
    assert night.valid_until == dt.datetime(2026, 12, 8, 4, 0)
    # 09:00 UTC is 12:00: the day speed, until the evening window at 19:00 = 16:00 UTC.
    day = desired_profile(state="active", rung="normal", tariff=speeds, now=at(9))
    assert (day.down_kbps, day.up_kbps, day.valid_until) == (100_000, 50_000, at(16))
    # speed=N alone is N both ways; the evening's end hands over to the day speed.
    evening = desired_profile(state="active", rung="normal", tariff=speeds, now=at(17))
    assert (evening.down_kbps, evening.up_kbps, evening.valid_until) == (50_000, 50_000, at(20))
    # A turbo multiplies the window's speed and ends the answer at its own end.
    turbo = ActiveOption("turbo", "turbo", 2, at(22), at(23, 45))
    boosted = desired_profile(state="active", rung="normal", tariff=speeds, options=[turbo],
                              now=at(23, 30))
    assert (boosted.down_kbps, boosted.valid_until) == (400_000, at(23, 45))
    # The balance ladder wins over any window.
    throttled = desired_profile(state="active", rung="throttled", tariff=speeds, now=at(23, 30))
    assert (throttled.name, throttled.down_kbps) == ("throttled", 1_000)


def test_windows_pass_midnight_and_the_day_boundary_is_found():
    late = timewindows.parse("22:00-02:00 speed=1000", lambda p: p, 10 ** 7)
    assert [h for h in range(24) if late.covers(h)] == [0, 1, 22, 23]
    window, changes = timewindows.current((late,), at(20, 10), MSK)  # 23:10 Moscow
    assert window is late and changes == at(23)                         # 02:00 Moscow
    whole = timewindows.parse("00:00-24:00 speed=1000", lambda p: p, 10 ** 7)
    assert timewindows.current((whole,), at(5), MSK) == (whole, None)


def test_radius_enforcer_and_cabinet_give_the_window_speed(ctx, abonent_exe):
    abonent_exe("tariff", "add", "Night boost", "--fee", "500", "--down", "100000", "--up",
                "50000", "--window", "01:00-07:00 speed=200000/100000", "--json")
    responder = CoaResponder(secret=b"coa-secret").start()
    try:
        with ctx.Session() as session:
            account = factories.make_account(session, tariff="Night boost", balance="100")
            factories.make_service(session, account, login="night-owl", password="pw")
            nas = factories.make_nas(session, vendor="mikrotik", secret="coa-secret",
                                     coa_port=responder.port)
            _open_session(session, account, nas)
            session.commit()
            account_id = account.id

        # RADIUS: the cached view carries the tariff's windows.
        directory = SubscriberDirectory(ctx.Session)
        directory.preload()
        subscriber = directory.by_login("night-owl")
        night = decide(subscriber, True, vendor="mikrotik", interim_interval=0, now=at(23, 30),
                       timezone=MSK)
        assert ("Mikrotik-Rate-Limit", "100000k/200000k") in night.attributes
        assert night.valid_until == dt.datetime(2026, 12, 8, 4, 0)
        day = decide(subscriber, True, vendor="mikrotik", interim_interval=0, now=at(9),
                     timezone=MSK)
        assert ("Mikrotik-Rate-Limit", "50000k/100000k") in day.attributes

        # The enforcer: a sweep inside the window changes the live session,
        # one after it changes it back.
        settings = enforcement.Settings(irt=0.05, mrt=0.2, mrd=0.6, timezone=MSK)
        enforcement.run_once(ctx.Session, now=at(23, 30), settings=settings, sweep=True)
        assert b"100000k/200000k" in b"".join(responder.applied["night-1"][26])
        enforcement.run_once(ctx.Session, now=at(4, 5), settings=settings, sweep=True)
        assert b"50000k/100000k" in b"".join(responder.applied["night-1"][26])
        assert responder.disconnected == set()

        # The cabinet's "speed now" is the same function's answer.
        with ctx.Session() as session:
            account = session.get(Account, account_id)
            assert cabinet_ops.speed_now(session, account, at(23, 30), timezone=MSK
                                         ).rate_down_kbps == 200_000
            assert cabinet_ops.speed_now(session, account, at(9), timezone=MSK
                                         ).rate_down_kbps == 100_000
    finally:
        responder.stop()

    shown = json.loads(abonent_exe("tariff", "show", "Night boost", "--json").stdout)
    assert shown["windows"] == ["01:00-07:00 speed=200000/100000"]


def _open_session(session, account, nas):
    from aaa.models import Session as RadiusSession
    now = dt.datetime(2026, 12, 7, 20, 0)
    session.add(RadiusSession(nas_id=nas.id, acct_session_id="night-1", username="night-owl",
                              account_id=account.id, framed_ip="10.0.0.9", started_at=now,
                              updated_at=now, profile="full:100000/50000"))


@pytest.mark.peer
def test_radclient_gets_the_window_speed_from_our_server(db_url, abonent_exe):
    """A whole-day window: FreeRADIUS's radclient sees its speed, whatever the clock."""
    abonent_exe("tariff", "add", "Always fast", "--fee", "500", "--down", "100000", "--up",
                "50000", "--window", "00:00-24:00 speed=300000/150000")
    context = make_context(db_url)
    with context.Session() as session:
        account = factories.make_account(session, tariff="Always fast", balance="100")
        factories.make_service(session, account, login="alice", password="correct horse")
        factories.make_nas(session, name="bras", address="127.0.0.1", secret="s3cret",
                           vendor="mikrotik")
        session.commit()
    server = RadiusServer(context, host="127.0.0.1", auth_port=0, acct_port=0)
    server.start()
    try:
        out = radclient(server, "auth", 'User-Name = "alice", User-Password = "correct horse"',
                        "s3cret")
        assert "Received Access-Accept" in out and "150000k/300000k" in out, out
    finally:
        server.stop()
        context.dispose()


def test_the_overview_shows_the_window_speed_now(client, cabinet_ctx):
    with cabinet_ctx.Session() as session:
        factories.make_tariff(session, name="Always fast", rate_down_kbps=100_000,
                              rate_up_kbps=50_000).rules = {"windows": [
                                  {"start": 0, "end": 24, "down_kbps": 300_000,
                                   "up_kbps": 150_000}]}
        session.commit()
    subscriber = seed_subscriber(cabinet_ctx, tariff="Always fast")
    assert log_in(client, subscriber.login, subscriber.password, lang="en").status_code == 302
    overview = client.get("/").text
    now = overview.split('data-test="speed-now">', 1)[1].split("<", 1)[0]
    assert "300" in now and "150" in now, now
