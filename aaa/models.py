"""Network-side tables: NAS registry, services, sessions, IP leases, CoA jobs."""

from __future__ import annotations

import datetime as dt
from typing import Any, Optional

from sqlalchemy import (JSON, BigInteger, Boolean, DateTime, ForeignKey, Index,
                        Integer, String, Text, UniqueConstraint)
from sqlalchemy.orm import Mapped, mapped_column

from config.db import Base, utcnow

_BigId = BigInteger().with_variant(Integer, "sqlite")


class Nas(Base):
    __tablename__ = "nas"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    # An address or a prefix (CIDR); the smallest matching prefix wins.
    address: Mapped[str] = mapped_column(String(64), unique=True)
    secret: Mapped[str] = mapped_column(String(128))
    vendor: Mapped[str] = mapped_column(String(32), default="generic")
    coa_port: Mapped[int] = mapped_column(Integer, default=3799)
    # Laid over the vendor's attribute table (aaa.vendors.parse_override).
    vendor_override: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)
    # yes / no / auto (BlastRADIUS, CVE-2024-3596).
    require_message_authenticator: Mapped[str] = mapped_column(String(8), default="auto")
    limit_proxy_state: Mapped[str] = mapped_column(String(8), default="auto")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    # Secret rotation (issue 14): the secret before the last change, still
    # accepted on incoming requests until ``previous_secret_until`` (UTC).
    previous_secret: Mapped[Optional[str]] = mapped_column(String(128))
    previous_secret_until: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)


class Service(Base):
    """What an account gets on the network: a PPPoE login or an IPoE binding."""

    __tablename__ = "services"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16), default="pppoe")
    login: Mapped[Optional[str]] = mapped_column(String(64), unique=True)
    # Kept as given: CHAP and MS-CHAPv2 need the cleartext to verify.
    password: Mapped[Optional[str]] = mapped_column(String(128))
    mac: Mapped[Optional[str]] = mapped_column(String(17), unique=True)
    circuit_id: Mapped[Optional[str]] = mapped_column(String(128), unique=True)
    static_ipv4: Mapped[Optional[str]] = mapped_column(String(15), unique=True)
    ipv6_prefix: Mapped[Optional[str]] = mapped_column(String(43))
    pool: Mapped[Optional[str]] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Session(Base):
    """One RADIUS accounting session. No foreign keys here or on IpLease
    (migration a1800000f001): they were half of what a new session cost to
    write; the ids come from the server's caches of the same database."""

    __tablename__ = "sessions"
    __table_args__ = (
        UniqueConstraint("nas_id", "acct_session_id", name="uq_sessions_nas_acct_session"),
        Index("ix_sessions_open", "nas_id", "stopped_at"),
    )

    id: Mapped[int] = mapped_column(_BigId, primary_key=True)
    nas_id: Mapped[int] = mapped_column(Integer)
    acct_session_id: Mapped[str] = mapped_column(String(128))
    # Not indexed: nothing looks sessions up by it (migration a1800000s003).
    username: Mapped[str] = mapped_column(String(128))
    account_id: Mapped[Optional[int]] = mapped_column(Integer, index=True)
    service_id: Mapped[Optional[int]] = mapped_column(Integer)
    framed_ip: Mapped[Optional[str]] = mapped_column(String(45))
    calling_station_id: Mapped[Optional[str]] = mapped_column(String(64))
    started_at: Mapped[dt.datetime] = mapped_column(DateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime)
    stopped_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    # 64-bit counters, gigawords folded in, never decreasing.
    octets_in: Mapped[int] = mapped_column(BigInteger, default=0)
    octets_out: Mapped[int] = mapped_column(BigInteger, default=0)
    packets_in: Mapped[int] = mapped_column(BigInteger, default=0)
    packets_out: Mapped[int] = mapped_column(BigInteger, default=0)
    session_time: Mapped[int] = mapped_column(BigInteger, default=0)
    terminate_cause: Mapped[Optional[str]] = mapped_column(String(64))
    # The profile the NAS has (a rating.profile key): from the Class the
    # Access-Accept gave, echoed in accounting, then from each CoA ACK.
    # NULL: unknown (the NAS echoed no Class).
    profile: Mapped[Optional[str]] = mapped_column(String(32))


class IpPool(Base):
    """Addresses handed out to services that have no static IP."""

    __tablename__ = "ip_pools"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    # Comma-separated prefixes and ranges: "100.64.0.0/22, 10.1.0.10-10.1.0.99".
    ranges: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class IpLease(Base):
    """Which account held an address when: traffic is attributed by it."""

    __tablename__ = "ip_leases"
    __table_args__ = (Index("ix_ip_leases_address", "address", "valid_from"),)

    id: Mapped[int] = mapped_column(_BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(Integer, index=True)
    address: Mapped[str] = mapped_column(String(45))
    valid_from: Mapped[dt.datetime] = mapped_column(DateTime)
    valid_to: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    session_id: Mapped[Optional[int]] = mapped_column(_BigId)
    # Equal to ``address`` while the lease is open, NULL once closed: a plain
    # UNIQUE on it means one open lease per address on SQLite and PostgreSQL
    # alike, so two RADIUS nodes cannot hand out one address twice.
    open_address: Mapped[Optional[str]] = mapped_column(String(45), unique=True)


class EnforcementJob(Base):
    """Work on one session until the NAS has ``target`` (a rating.profile
    key): a CoA, or a Disconnect, tried again with backoff while the session
    is open and still differs. An admin's kick has no target."""

    __tablename__ = "enforcement_jobs"
    __table_args__ = (Index("ix_enforcement_jobs_status", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(_BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    session_id: Mapped[Optional[int]] = mapped_column(ForeignKey("sessions.id"), index=True)
    # The NAS's lane: a silent NAS holds up only its own jobs.
    nas_id: Mapped[Optional[int]] = mapped_column(ForeignKey("nas.id"), index=True)
    target: Mapped[Optional[str]] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(16))  # coa / disconnect
    profile: Mapped[Optional[str]] = mapped_column(String(32))
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    # Transmissions (retransmits included), and exchanges (tries).
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    tries: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_error: Mapped[Optional[str]] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)


class EnforcementAttempt(Base):
    """Every exchange with a NAS for a job, kept for audit."""

    __tablename__ = "enforcement_attempts"

    id: Mapped[int] = mapped_column(_BigId, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("enforcement_jobs.id"), index=True)
    nas_address: Mapped[Optional[str]] = mapped_column(String(64))
    started_at: Mapped[dt.datetime] = mapped_column(DateTime)
    finished_at: Mapped[dt.datetime] = mapped_column(DateTime)
    transmissions: Mapped[int] = mapped_column(Integer, default=0)
    outcome: Mapped[str] = mapped_column(String(16))
    error_cause: Mapped[Optional[int]] = mapped_column(Integer)


class VoiceStart(Base):
    """An answered call a voice NAS sent the Start of and not yet the Stop
    (aaa.voice). Kept in the database, not in a server's memory, so that a
    Stop after a restart, or one another RADIUS node received, still pairs
    with it; the Stop deletes the row in the transaction that records the
    call. Not a ``sessions`` row: those are data sessions, which the
    enforcer, the pools and the cabinet read."""

    __tablename__ = "voice_starts"
    __table_args__ = (UniqueConstraint("nas_id", "call_id", name="uq_voice_starts_nas_call"),)

    id: Mapped[int] = mapped_column(_BigId, primary_key=True)
    nas_id: Mapped[int] = mapped_column(Integer)
    # The SIP Call-ID (Acct-Session-Id), or Cisco's call-id / h323-conf-id.
    call_id: Mapped[str] = mapped_column(String(128))
    calling: Mapped[str] = mapped_column(String(64))
    called: Mapped[str] = mapped_column(String(64))
    login: Mapped[Optional[str]] = mapped_column(String(64))
    setup_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    answered_at: Mapped[dt.datetime] = mapped_column(DateTime, index=True)
    sip_code: Mapped[Optional[int]] = mapped_column(Integer)


# -- archive (issue 19, aaa.archive) --

class SessionArchive(Base):
    """Closed sessions past ``archive.sessions_hot_days``, moved out of
    ``sessions`` by the archive job with their columns and ids unchanged, so
    the hot table the accounting writer and the enforcer work on stays
    small. Readers of history (the cabinet's sessions page, `abonent session
    list/show`, the IP-at-time search) read both tables."""

    __tablename__ = "sessions_archive"
    __table_args__ = (
        Index("ix_sessions_archive_account", "account_id", "started_at"),
        Index("ix_sessions_archive_acct_session", "acct_session_id"),
        Index("ix_sessions_archive_framed_ip", "framed_ip", "started_at"),
    )

    # Not autoincrement: the id is the one the row had in ``sessions``.
    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=False)
    nas_id: Mapped[int] = mapped_column(Integer)
    acct_session_id: Mapped[str] = mapped_column(String(128))
    # No index on username (nothing looks sessions up by it, hot or
    # archived): each index is a write per moved row.
    username: Mapped[str] = mapped_column(String(128))
    account_id: Mapped[Optional[int]] = mapped_column(Integer)
    service_id: Mapped[Optional[int]] = mapped_column(Integer)
    framed_ip: Mapped[Optional[str]] = mapped_column(String(45))
    calling_station_id: Mapped[Optional[str]] = mapped_column(String(64))
    started_at: Mapped[dt.datetime] = mapped_column(DateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime)
    stopped_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    octets_in: Mapped[int] = mapped_column(BigInteger, default=0)
    octets_out: Mapped[int] = mapped_column(BigInteger, default=0)
    packets_in: Mapped[int] = mapped_column(BigInteger, default=0)
    packets_out: Mapped[int] = mapped_column(BigInteger, default=0)
    session_time: Mapped[int] = mapped_column(BigInteger, default=0)
    terminate_cause: Mapped[Optional[str]] = mapped_column(String(64))
    profile: Mapped[Optional[str]] = mapped_column(String(32))


class IpLeaseArchive(Base):
    """Closed leases past ``archive.leases_hot_days`` (never inside the
    collector's late-data window): who held an address when, kept for
    ``archive.leases_keep_days`` for the IP-at-time lookup."""

    __tablename__ = "ip_leases_archive"
    __table_args__ = (Index("ix_ip_leases_archive_address", "address", "valid_from"),)

    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=False)
    account_id: Mapped[int] = mapped_column(Integer, index=True)
    address: Mapped[str] = mapped_column(String(45))
    valid_from: Mapped[dt.datetime] = mapped_column(DateTime)
    valid_to: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    session_id: Mapped[Optional[int]] = mapped_column(_BigId)
    # Always NULL here (a closed lease); kept so both tables have one shape.
    open_address: Mapped[Optional[str]] = mapped_column(String(45))
