"""RADIUS octets as traffic rollups (source ``radius``), for tariffs that
bill from accounting rather than NetFlow.

Each pass takes, for every session whose counters moved, the growth since
the high-water mark it last rolled up, adds it to the rollup of the
5-minute interval of the session's last update, and moves the mark — all
in one transaction, so a pass repeated (or run on two nodes one after the
other) adds nothing twice. Counters never go backwards (the accounting
writer keeps them monotonic), so growth is never negative.

Directions follow the subscriber: Acct-Input (what the NAS received from the
subscriber) is ``out``, Acct-Output is ``in``.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, ForeignKey, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from aaa.models import Session as RadiusSession
from collector.models import INTERVAL_SECONDS, TrafficRollup
from config.db import Base


class RadiusUsageMark(Base):
    """How much of a session's counters is already in the rollups."""

    __tablename__ = "radius_usage_marks"

    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"), primary_key=True)
    octets_in: Mapped[int] = mapped_column(BigInteger, default=0)
    octets_out: Mapped[int] = mapped_column(BigInteger, default=0)
    packets_in: Mapped[int] = mapped_column(BigInteger, default=0)
    packets_out: Mapped[int] = mapped_column(BigInteger, default=0)


def interval_of(moment: dt.datetime) -> dt.datetime:
    epoch = int(moment.replace(tzinfo=dt.timezone.utc).timestamp())
    start = epoch - epoch % INTERVAL_SECONDS
    return dt.datetime.fromtimestamp(start, dt.timezone.utc).replace(tzinfo=None)


def roll_up(session: Session, since: dt.datetime, traffic_class: str = "internet") -> int:
    """Add the counter growth of sessions updated since ``since``; returns rows."""
    postgres = session.get_bind().dialect.name == "postgresql"
    insert = postgresql.insert if postgres else sqlite.insert
    query = (select(RadiusSession, RadiusUsageMark)
             .outerjoin(RadiusUsageMark, RadiusUsageMark.session_id == RadiusSession.id)
             .where(RadiusSession.updated_at >= since, RadiusSession.account_id.is_not(None)))
    if postgres:
        query = query.with_for_update(of=RadiusSession)
    sums: dict[tuple, list[int]] = {}
    for radius_session, mark in session.execute(query).all():
        if mark is None:
            mark = RadiusUsageMark(session_id=radius_session.id, octets_in=0, octets_out=0,
                                   packets_in=0, packets_out=0)
            session.add(mark)
        grown = {
            "out": (radius_session.octets_in - mark.octets_in,
                    radius_session.packets_in - mark.packets_in),
            "in": (radius_session.octets_out - mark.octets_out,
                   radius_session.packets_out - mark.packets_out),
        }
        interval = interval_of(radius_session.updated_at)
        for direction, (octets, packets) in grown.items():
            if octets > 0 or packets > 0:
                key = (radius_session.account_id, interval, direction)
                total = sums.setdefault(key, [0, 0])
                total[0] += max(octets, 0)
                total[1] += max(packets, 0)
        mark.octets_in, mark.octets_out = radius_session.octets_in, radius_session.octets_out
        mark.packets_in, mark.packets_out = radius_session.packets_in, radius_session.packets_out
    if not sums:
        session.flush()
        return 0
    rows = [dict(account_id=account_id, interval_start=interval, traffic_class=traffic_class,
                 direction=direction, bytes=octets, packets=packets, source="radius")
            for (account_id, interval, direction), (octets, packets) in sums.items()]
    statement = insert(TrafficRollup)
    statement = statement.on_conflict_do_update(
        index_elements=["account_id", "interval_start", "traffic_class", "direction", "source"],
        set_={"bytes": TrafficRollup.bytes + statement.excluded.bytes,
              "packets": TrafficRollup.packets + statement.excluded.packets})
    session.execute(statement, rows)
    session.flush()
    return len(rows)
