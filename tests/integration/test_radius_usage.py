"""RADIUS octets become rollups once: a tariff can bill from accounting."""

import datetime as dt
from decimal import Decimal

from sqlalchemy import select

from aaa.models import Session as RadiusSession
from collector.models import TrafficRollup
from collector.radius_usage import roll_up
from rating import traffic
from rating.models import LedgerEntry
from tests.factories import make_account, make_nas, make_tariff

GB = 10 ** 9


def test_counter_growth_is_rolled_up_once_and_billed(session):
    tariff = make_tariff(session, price_per_gb="1.00")
    tariff.usage_source = "radius"
    account = make_account(session, tariff=tariff.name, balance="50")
    nas = make_nas(session)
    start = dt.datetime(2026, 8, 1, 10, 0)
    live = RadiusSession(nas_id=nas.id, acct_session_id="a1", username="u", account_id=account.id,
                         started_at=start, updated_at=start + dt.timedelta(minutes=3),
                         octets_in=100, octets_out=2 * GB, packets_in=1, packets_out=10)
    session.add(live)
    session.commit()
    assert roll_up(session, start) == 2
    assert roll_up(session, start) == 0  # nothing grew: nothing added
    live.octets_out, live.packets_out = 3 * GB + 5, 15
    live.updated_at = start + dt.timedelta(minutes=7)
    session.commit()
    roll_up(session, start)
    session.commit()
    rows = {(r.interval_start.minute, r.direction): (r.bytes, r.packets, r.source)
            for r in session.scalars(select(TrafficRollup))}
    assert rows == {(0, "in"): (2 * GB, 10, "radius"), (0, "out"): (100, 1, "radius"),
                    (5, "in"): (GB + 5, 5, "radius")}
    traffic.charge_hour(session, start, "UTC")
    session.commit()
    assert session.scalars(select(LedgerEntry.amount).where(
        LedgerEntry.kind == "traffic")).all() == [Decimal("-3.00")]
