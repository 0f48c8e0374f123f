"""Traffic rollups: bytes and packets per account, 5-minute interval, class, direction."""

from __future__ import annotations

import datetime as dt
from sqlalchemy import (BigInteger, DateTime, ForeignKey, Index, Integer, LargeBinary, String,
                        UniqueConstraint)
from sqlalchemy.orm import Mapped, mapped_column

from config.db import Base

INTERVAL_SECONDS = 300


class TrafficRollup(Base):
    __tablename__ = "traffic_rollups"
    __table_args__ = (
        UniqueConstraint("account_id", "interval_start", "traffic_class", "direction", "source",
                         name="uq_traffic_rollups_key"),
        Index("ix_traffic_rollups_interval", "interval_start"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    interval_start: Mapped[dt.datetime] = mapped_column(DateTime)
    traffic_class: Mapped[str] = mapped_column(String(32), default="internet")
    direction: Mapped[str] = mapped_column(String(3))  # in (to subscriber) / out
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    packets: Mapped[int] = mapped_column(BigInteger, default=0)
    source: Mapped[str] = mapped_column(String(16), default="netflow")


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
