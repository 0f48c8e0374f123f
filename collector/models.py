"""Traffic rollups: bytes and packets per account, 5-minute interval, class, direction."""

from __future__ import annotations

import datetime as dt
from sqlalchemy import (BigInteger, DateTime, ForeignKey, Index, Integer, LargeBinary,
                        PrimaryKeyConstraint, String)
from sqlalchemy.orm import Mapped, mapped_column

from config.db import Base

INTERVAL_SECONDS = 300


class TrafficRollup(Base):
    """The 5-minute tier: what the collector and the RADIUS roll-up write.

    The key is the primary key (no surrogate id: at a billion rows a day an
    id column and its index are 8 bytes and a whole B-tree per row for
    nothing). On PostgreSQL the table is partitioned by day on
    ``interval_start`` (collector.tiers; a partitioned table's unique keys
    must hold the partition column, and this one does). Older rows move to
    the hourly and daily tiers below.
    """

    __tablename__ = "traffic_rollups"
    __table_args__ = (
        PrimaryKeyConstraint("account_id", "interval_start", "traffic_class", "direction",
                             "source", name="pk_traffic_rollups"),
        Index("ix_traffic_rollups_interval", "interval_start"),
    )

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    interval_start: Mapped[dt.datetime] = mapped_column(DateTime)
    traffic_class: Mapped[str] = mapped_column(String(32), default="internet")
    direction: Mapped[str] = mapped_column(String(3))  # in (to subscriber) / out
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    packets: Mapped[int] = mapped_column(BigInteger, default=0)
    source: Mapped[str] = mapped_column(String(16), default="netflow")


class _TierRow:
    """The columns of a tier above the 5-minute one: the same key, summed
    bytes and packets."""

    account_id: Mapped[int] = mapped_column(Integer)
    interval_start: Mapped[dt.datetime] = mapped_column(DateTime)
    traffic_class: Mapped[str] = mapped_column(String(32))
    direction: Mapped[str] = mapped_column(String(3))
    bytes: Mapped[int] = mapped_column(BigInteger)
    packets: Mapped[int] = mapped_column(BigInteger)
    source: Mapped[str] = mapped_column(String(16))


class TrafficRollupHourly(_TierRow, Base):
    """The hourly tier: UTC hours, built from the 5-minute tier by
    collector.tiers once those rows pass their retention. Monthly partitions
    on PostgreSQL. No foreign key on the account (nor in the daily tier):
    every row is summed from 5-minute rows that had one, accounts are never
    deleted, and a check per row would be most of a move's cost (issue 18
    dropped the sessions' keys for the same reason)."""

    __tablename__ = "traffic_rollups_hourly"
    __table_args__ = (
        PrimaryKeyConstraint("account_id", "interval_start", "traffic_class", "direction",
                             "source", name="pk_traffic_rollups_hourly"),
    )


class TrafficRollupDetail(_TierRow, Base):
    """5-minute rows of days already summed into the hourly tier, kept for
    the cabinet's day graph until ``traffic_tiers.five_minute_days``
    (collector.tiers). Every other reader reads the hourly rows of those
    days: a month of a busy subscriber is 12 times fewer rows. On
    PostgreSQL a day moves here as its whole partition (detached from
    ``traffic_rollups``, attached here: no row copied). Read by account and
    range only, so the primary key is its one index (a moved partition's
    ``interval_start`` index is dropped)."""

    __tablename__ = "traffic_rollups_detail"
    __table_args__ = (
        PrimaryKeyConstraint("account_id", "interval_start", "traffic_class", "direction",
                             "source", name="pk_traffic_rollups_detail"),
    )


class TrafficRollupDaily(_TierRow, Base):
    """The daily tier: the operator's days (settings ``timezone``; a row's
    ``interval_start`` is the UTC instant of the local midnight), built from
    the hourly tier. Yearly partitions on PostgreSQL."""

    __tablename__ = "traffic_rollups_daily"
    __table_args__ = (
        PrimaryKeyConstraint("account_id", "interval_start", "traffic_class", "direction",
                             "source", name="pk_traffic_rollups_daily"),
    )


class TrafficTier(Base):
    """Where each tier stops being complete (collector.tiers).

    ``complete_from`` of tier "5min" is the start of the oldest rows of
    ``traffic_rollups``: before it, the hourly tier holds the sums (and of
    tier "hourly", the daily tier). Of tier "detail": where the 5-minute
    rows kept for the day graph (``traffic_rollups_detail``) start. NULL:
    nothing was ever moved down. Readers
    read it in the same statement as the rows (rating.traffic.usage), so a
    tiering run committing meanwhile is seen whole or not at all.
    """

    __tablename__ = "traffic_tiers"

    tier: Mapped[str] = mapped_column(String(8), primary_key=True)
    complete_from: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    updated_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class ReplaySet(Base):
    """The export packets counted by one flush of one collector (replay detection).

    One row per flush, not per packet: ``digests`` is the packets' 16-byte
    keys end to end. Written in the same transaction as the rollup upserts
    they contributed to, so after a restart a replayed export packet is
    recognised and a packet whose rollup was never committed is not.
    ``batch_id`` names the flush: a flush that was spooled to local disk and
    is applied again after a restart finds its own row and is not counted
    twice.
    """

    __tablename__ = "collector_replay_sets"
    __table_args__ = (Index("ix_collector_replay_sets_seen_at", "seen_at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True)
    batch_id: Mapped[str] = mapped_column(String(32), unique=True)
    seen_at: Mapped[dt.datetime] = mapped_column(DateTime)
    origin: Mapped[str] = mapped_column(String(64), default="")
    packets: Mapped[int] = mapped_column(Integer, default=0)
    rows: Mapped[int] = mapped_column(Integer, default=0)
    flows: Mapped[int] = mapped_column(BigInteger, default=0)
    digests: Mapped[bytes] = mapped_column(LargeBinary)
