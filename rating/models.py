"""Billing domain tables: tariffs, accounts, cabinet users, options, ledger, log."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, Optional

from sqlalchemy import (JSON, BigInteger, Boolean, CheckConstraint, Date, DateTime, false,
                        ForeignKey, Index, Integer, String, Text, UniqueConstraint, text)
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from config.db import Base, Money, utcnow
from rating.choices import (ACCOUNT_KINDS, ACCOUNT_STATES, CUSTOMER_DOCUMENTS, CUSTOMER_KINDS,
                            FAMILY_INVITATION_STATES, FEE_PERIODS, LEDGER_KINDS,
                            SPENDING_ACTIONS, SPENDING_METRICS, USER_ROLES)


def _in(column: str, values) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _search_name(context, column: str):
    from rating.search import name_key
    return name_key(context.get_current_parameters().get(column))


def _search_phone(context, column: str):
    from rating.search import phone_key
    return phone_key(context.get_current_parameters().get(column))


class Tariff(Base):
    __tablename__ = "tariffs"
    __table_args__ = (CheckConstraint(_in("fee_period", FEE_PERIODS), name="fee_period"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    fee: Mapped[Decimal] = mapped_column(Money, default=Decimal("0.00"))
    fee_period: Mapped[str] = mapped_column(String(16), default="monthly")
    rate_down_kbps: Mapped[int] = mapped_column(Integer)
    rate_up_kbps: Mapped[int] = mapped_column(Integer)
    # The speed on a negative balance ("throttled"); 0 means suspend instead.
    negative_rate_kbps: Mapped[int] = mapped_column(Integer, default=0)
    prepaid_mb: Mapped[int] = mapped_column(BigInteger, default=0)
    price_per_gb: Mapped[Decimal] = mapped_column(Money, default=Decimal("0.00"))
    usage_source: Mapped[str] = mapped_column(String(16), default="radius")
    switch_min_days: Mapped[int] = mapped_column(Integer, default=0)
    rules: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    archived: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Account(Base):
    """Лицевой счёт. ``balance`` is a cache of SUM(ledger_entries.amount),
    changed only by rating.ledger in the same transaction as the entry."""

    __tablename__ = "accounts"
    __table_args__ = (
        CheckConstraint(_in("kind", ACCOUNT_KINDS), name="kind"),
        CheckConstraint(_in("state", ACCOUNT_STATES), name="state"),
        CheckConstraint("credit_limit >= 0", name="credit_limit"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    kind: Mapped[str] = mapped_column(String(16), default="person")
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[Optional[str]] = mapped_column(String(200))
    phone: Mapped[Optional[str]] = mapped_column(String(40))
    phone_landline: Mapped[Optional[str]] = mapped_column(String(40))
    state: Mapped[str] = mapped_column(String(16), default="active")
    tariff_id: Mapped[Optional[int]] = mapped_column(ForeignKey("tariffs.id"))
    credit_limit: Mapped[Decimal] = mapped_column(Money, default=Decimal("0.00"))
    balance: Mapped[Decimal] = mapped_column(Money, default=Decimal("0.00"))
    # The profile last decided for this account (normal, throttled, ...).
    profile: Mapped[str] = mapped_column(String(32), default="normal")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    # Bumped on every change that can alter the RADIUS answer, so caches
    # can tell a stale view from a fresh one.
    version: Mapped[int] = mapped_column(Integer, default=1)
    frozen_until: Mapped[Optional[dt.date]] = mapped_column(Date)
    # A tariff change ordered for the start of the next period.
    next_tariff_id: Mapped[Optional[int]] = mapped_column(ForeignKey("tariffs.id"))
    next_tariff_from: Mapped[Optional[dt.date]] = mapped_column(Date)
    tariff_changed_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    # Notification settings: the low-balance threshold and the channels.
    low_balance_threshold: Mapped[Optional[Decimal]] = mapped_column(Money)
    notify_channels: Mapped[list[str]] = mapped_column(JSON, default=lambda: ["email"],
                                                       server_default='["email"]')
    telegram_chat_id: Mapped[Optional[str]] = mapped_column(String(64))
    # Issue 16: the language notices are written in (None: the operator's
    # default, notify.default_language) and the (kind, channel) pairs the
    # subscriber turned off, as "kind:channel" strings (an opt-out list, so
    # a new kind reaches everyone's chosen channels, and a broadcast can
    # test it in SQL on both databases).
    language: Mapped[Optional[str]] = mapped_column(String(8))
    notify_off: Mapped[Optional[list[str]]] = mapped_column(JSON)
    # Issue 21: a spending limit reached this month (rating.spending) slows
    # the account down or refuses extras (turbo, packs) until then (naive
    # UTC, the start of the next month in the operator's zone); NULL: free.
    limit_throttled_until: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    extras_blocked_until: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    # Search keys (issue 14, rating.search): the name case-folded in Python
    # (SQLite's lower() knows only ASCII), the phone's national digits.
    # Filled on insert (ORM and Core alike) and on every ORM change;
    # rating.search.backfill fills rows written around both.
    search_name: Mapped[Optional[str]] = mapped_column(
        String(200), index=True, default=lambda ctx: _search_name(ctx, "name"))
    phone_key: Mapped[Optional[str]] = mapped_column(
        String(16), index=True, default=lambda ctx: _search_phone(ctx, "phone"))
    # Issue 21: the customer (a company or a family) holding this account
    # among others, and its place in the customer's tree (rating.org keeps
    # the unit within the same customer).
    customer_id: Mapped[Optional[int]] = mapped_column(ForeignKey("customers.id"), index=True)
    org_unit_id: Mapped[Optional[int]] = mapped_column(ForeignKey("org_units.id"), index=True)

    tariff: Mapped[Optional[Tariff]] = relationship(lazy="joined", foreign_keys=[tariff_id])

    @validates("name")
    def _name_changed(self, key, value):
        from rating.search import name_key
        self.search_name = name_key(value)
        return value

    @validates("phone")
    def _phone_changed(self, key, value):
        from rating.search import phone_key
        self.phone_key = phone_key(value)
        return value


class CabinetUser(Base):
    __tablename__ = "cabinet_users"
    __table_args__ = (CheckConstraint(_in("role", USER_ROLES), name="role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    login: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16), default="owner")
    email: Mapped[Optional[str]] = mapped_column(String(200))
    locale: Mapped[Optional[str]] = mapped_column(String(8))
    # Changes on password change and logout-everywhere: invalidates sessions.
    session_epoch: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    account: Mapped[Account] = relationship()


class OptionType(Base):
    """A purchasable change of profile for a time: turbo, traffic pack, ..."""

    __tablename__ = "option_types"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(16))
    price: Mapped[Decimal] = mapped_column(Money)
    duration_hours: Mapped[int] = mapped_column(Integer, default=24)
    rate_multiplier: Mapped[int] = mapped_column(Integer, default=1)
    traffic_mb: Mapped[int] = mapped_column(BigInteger, default=0)
    # How many an account may buy in a calendar month; 0: no limit.
    max_per_month: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class AccountOption(Base):
    __tablename__ = "account_options"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    option_type_id: Mapped[int] = mapped_column(ForeignKey("option_types.id"))
    starts_at: Mapped[dt.datetime] = mapped_column(DateTime)
    ends_at: Mapped[dt.datetime] = mapped_column(DateTime)
    status: Mapped[str] = mapped_column(String(16), default="active")

    option_type: Mapped[OptionType] = relationship(lazy="joined")


class LedgerEntry(Base):
    """Immutable. A mistake is corrected by a reversal entry, never an edit."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        CheckConstraint(_in("kind", LEDGER_KINDS), name="kind"),
        # Statements read an account's entries by time; one index serves both.
        Index("ix_ledger_entries_account_time", "account_id", "created_at"),
        # An entry is reversed at most once. Partial: the daily fee run writes
        # a million entries that reverse nothing, and need not touch it.
        Index("uq_ledger_entries_reverses_id", "reverses_id", unique=True,
              postgresql_where=text("reverses_id IS NOT NULL"),
              sqlite_where=text("reverses_id IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    amount: Mapped[Decimal] = mapped_column(Money)
    kind: Mapped[str] = mapped_column(String(16))
    # Unique per source: "payment:<provider>:<txid>", "fee:<acct>:<day>", ...
    # Bytewise order on PostgreSQL: a key is only ever compared for equality,
    # and a locale collation makes each of the ~20 comparisons per insert
    # into a million-row index a strcoll() call.
    idempotency_key: Mapped[str] = mapped_column(
        String(200).with_variant(String(200, collation="C"), "postgresql"), unique=True)
    author: Mapped[str] = mapped_column(String(100))
    memo: Mapped[Optional[str]] = mapped_column(Text)
    # What the entry is for, as a code and its arguments (rating.memo), so
    # the cabinet can word it in the reader's language; ``memo`` stays the
    # operator's text. NULL on a plain tariff fee (its key says the period)
    # and on rows written before the code existed.
    memo_code: Mapped[Optional[str]] = mapped_column(String(32))
    memo_args: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)
    reverses_id: Mapped[Optional[int]] = mapped_column(ForeignKey("ledger_entries.id"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class OperationLog(Base):
    """Every change a subscriber or an admin makes, for the history page."""

    __tablename__ = "operation_log"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True)
    account_id: Mapped[Optional[int]] = mapped_column(ForeignKey("accounts.id"), index=True)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class ProfileChange(Base):
    """Outbox: an account's profile changed. Written in the transaction that
    changed it; aaa's enforcement worker turns it into CoA/Disconnect jobs
    for the account's live sessions (rating knows nothing of RADIUS)."""

    __tablename__ = "profile_changes"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    profile: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    processed_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime, index=True)


class JobRun(Base):
    """A scheduled job's last completed run: lets missed days be caught up."""

    __tablename__ = "job_runs"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_day: Mapped[Optional[dt.date]] = mapped_column(Date)
    finished_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)


class PromisedPayment(Base):
    """A promised payment (обещанный платёж): credit now, reversed at its due
    time unless payments since the grant repaid it."""

    __tablename__ = "promised_payments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("ledger_entries.id"), unique=True)
    amount: Mapped[Decimal] = mapped_column(Money)
    granted_at: Mapped[dt.datetime] = mapped_column(DateTime)
    due_at: Mapped[dt.datetime] = mapped_column(DateTime, index=True)
    status: Mapped[str] = mapped_column(String(16), default="open")  # open/repaid/expired
    closed_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)


class Notification(Base):
    """Outbox of messages to subscribers; idempotent on ``key``."""

    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    channel: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(200), unique=True)
    recipient: Mapped[str] = mapped_column(String(200))
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    # pending -> sending (claimed by one delivery run) -> sent -> delivered
    # (an SMSC receipt); failed (given up or refused); unknown (the gateway
    # never answered a submit: not resent blindly, see rating.notify).
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[Optional[str]] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    sent_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    # Issue 16.
    language: Mapped[str] = mapped_column(String(8), default="ru", server_default="ru")
    # Bypasses the quiet hours (an outage notice, a suspension).
    urgent: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Not before this time (a retry's backoff); NULL: at once.
    next_attempt_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    claimed_by: Mapped[Optional[str]] = mapped_column(String(64))
    claimed_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    # The gateway's ids for what it accepted (SMPP: one message id a part,
    # space-separated); receipts are matched to them.
    provider_ids: Mapped[Optional[str]] = mapped_column(Text)
    parts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    parts_delivered: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    delivered_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    broadcast_id: Mapped[Optional[int]] = mapped_column(ForeignKey("notification_broadcasts.id"),
                                                        index=True)


# -- money and reports (issue 14) --

# `abonent audit` reads the operation log newest first, by time range.
Index("ix_operation_log_created_at", OperationLog.created_at)


# -- accounts (issue 14) --

class CabinetUserAccount(Base):
    """Family linking: a cabinet login reaches this account too (besides
    its own ``CabinetUser.account_id``), with the login's role."""

    __tablename__ = "cabinet_user_accounts"
    __table_args__ = (UniqueConstraint("cabinet_user_id", "account_id",
                                       name="uq_cabinet_user_accounts_user_account"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cabinet_user_id: Mapped[int] = mapped_column(ForeignKey("cabinet_users.id"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    # Issue 21: the rights this link gives, comma-separated (rating.org.RIGHTS);
    # None: the login's role, as for an admin-made link. A family invitation
    # accepted by the account's holder makes a link with "view,pay".
    rights: Mapped[Optional[str]] = mapped_column(String(64))


# -- catalogue (issue 14) --

class PolicyRung(Base):
    """The operator's balance ladder, one row per rung, worst first
    (``position``); no rows: the ladder of the settings ``[policy]``."""

    __tablename__ = "policy_rungs"
    __table_args__ = (CheckConstraint("mode IN ('throttle', 'redirect', 'block')", name="mode"),
                      CheckConstraint("rate_kbps >= 0", name="rate_kbps"))

    position: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    profile: Mapped[str] = mapped_column(String(32), unique=True)
    offset: Mapped[Decimal] = mapped_column(Money)
    past_credit: Mapped[bool] = mapped_column(Boolean, default=False)
    mode: Mapped[str] = mapped_column(String(16))
    rate_kbps: Mapped[int] = mapped_column(Integer, default=0)
    description: Mapped[str] = mapped_column(String(200), default="")


# -- packages (issue 14) --

class Package(Base):
    """A service package (a TV channel package, a static IP, ...): a fee a
    month or a day on top of the tariff, on or off per account."""

    __tablename__ = "packages"
    __table_args__ = (CheckConstraint(_in("fee_period", FEE_PERIODS), name="fee_period"),
                      CheckConstraint("fee >= 0", name="fee"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    fee: Mapped[Decimal] = mapped_column(Money)
    # "monthly": the fee whole once a month; "daily": the fee every day.
    fee_period: Mapped[str] = mapped_column(String(16), default="monthly")
    # Whether the subscriber may switch it on and off in the cabinet.
    self_service: Mapped[bool] = mapped_column(Boolean, default=True)
    description: Mapped[Optional[str]] = mapped_column(Text)
    archived: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class AccountPackage(Base):
    """A package on an account; one row per pair, switched on and off."""

    __tablename__ = "account_packages"
    __table_args__ = (Index("uq_account_packages_pair", "account_id", "package_id",
                            unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    package_id: Mapped[int] = mapped_column(ForeignKey("packages.id"), index=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    changed_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    package: Mapped[Package] = relationship(lazy="joined")


class Discount(Base):
    """A discount for one account on its tariff fee or its package fees,
    from ``valid_from`` to ``valid_until`` (exclusive; None: no end)."""

    __tablename__ = "discounts"
    __table_args__ = (
        CheckConstraint("target IN ('tariff', 'package')", name="target"),
        CheckConstraint("(percent IS NULL) <> (amount IS NULL)", name="one_rule"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    target: Mapped[str] = mapped_column(String(16))
    # For target "package": this package only; None: every package.
    package_id: Mapped[Optional[int]] = mapped_column(ForeignKey("packages.id"))
    percent: Mapped[Optional[Decimal]] = mapped_column(Money)
    amount: Mapped[Optional[Decimal]] = mapped_column(Money)
    valid_from: Mapped[dt.date] = mapped_column(Date)
    valid_until: Mapped[Optional[dt.date]] = mapped_column(Date)
    reason: Mapped[Optional[str]] = mapped_column(String(200))
    promo_id: Mapped[Optional[int]] = mapped_column(ForeignKey("promo_codes.id"))
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class PromoCode(Base):
    """A promo code: a fixed credit, or a percent discount for some days."""

    __tablename__ = "promo_codes"
    __table_args__ = (
        CheckConstraint("(percent IS NULL) <> (amount IS NULL)", name="one_rule"),
        CheckConstraint("used <= max_uses", name="uses"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    percent: Mapped[Optional[Decimal]] = mapped_column(Money)
    amount: Mapped[Optional[Decimal]] = mapped_column(Money)
    # What a percent code discounts, and for how many days from redemption.
    target: Mapped[str] = mapped_column(String(16), default="tariff")
    days: Mapped[int] = mapped_column(Integer, default=30)
    max_uses: Mapped[int] = mapped_column(Integer)
    used: Mapped[int] = mapped_column(Integer, default=0)
    # The last day it may be redeemed (the operator's calendar).
    expires_on: Mapped[Optional[dt.date]] = mapped_column(Date)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class PromoRedemption(Base):
    __tablename__ = "promo_redemptions"
    __table_args__ = (Index("uq_promo_redemptions_pair", "promo_id", "account_id",
                            unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    promo_id: Mapped[int] = mapped_column(ForeignKey("promo_codes.id"))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    actor: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class BonusRule(Base):
    """The one bonus rule (id 1): points earned per 100 of a payment."""

    __tablename__ = "bonus_rules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    earn_percent: Mapped[Decimal] = mapped_column(Money, default=Decimal("0.00"))
    # Payments from this moment on earn points.
    since: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(100))


class BonusPoint(Base):
    """Bonus points, ledger-like: immutable rows, a unique key each; an
    account's points are the sum. One point is worth 1.00 of money."""

    __tablename__ = "bonus_points"
    __table_args__ = (Index("ix_bonus_points_account_time", "account_id", "created_at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    points: Mapped[Decimal] = mapped_column(Money)
    kind: Mapped[str] = mapped_column(String(16))  # earn / spend
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    memo: Mapped[Optional[str]] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Banner(Base):
    """A notice on the cabinet's overview (news, works, offers), shown from
    ``starts_at`` to ``ends_at`` (exclusive; None: until removed) to its
    audience: everyone, the accounts of one tariff, or debtors."""

    __tablename__ = "banners"
    __table_args__ = (
        CheckConstraint("audience IN ('all', 'tariff', 'debtors')", name="audience"),
        CheckConstraint("(audience = 'tariff') = (tariff_id IS NOT NULL)", name="tariff"),
        Index("ix_banners_ends_at", "ends_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(120))
    body: Mapped[str] = mapped_column(Text, default="")
    audience: Mapped[str] = mapped_column(String(16), default="all")
    tariff_id: Mapped[Optional[int]] = mapped_column(ForeignKey("tariffs.id"))
    starts_at: Mapped[dt.datetime] = mapped_column(DateTime)
    ends_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


# -- notifications (issue 16) --

# The delivery run claims due rows by status and time.
Index("ix_notifications_due", Notification.status, Notification.next_attempt_at)


class NotificationAttempt(Base):
    """Every try to hand a notification to its gateway and every delivery
    receipt, for audit. A try is written (outcome "started") and committed
    before the gateway is spoken to."""

    __tablename__ = "notification_attempts"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True)
    notification_id: Mapped[int] = mapped_column(ForeignKey("notifications.id"), index=True)
    # submit | receipt | late-answer
    event: Mapped[str] = mapped_column(String(16))
    # started | sent | error | timeout | delivered | undelivered
    outcome: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    node: Mapped[Optional[str]] = mapped_column(String(64))
    # The gateway's ids (SMPP message ids) and, for an SMPP submit, the
    # bind and sequence numbers the parts went with (a late answer matches).
    provider_ids: Mapped[Optional[str]] = mapped_column(Text)
    provider_ref: Mapped[Optional[str]] = mapped_column(String(200), index=True)
    detail: Mapped[Optional[str]] = mapped_column(Text)


class SmsPart(Base):
    """One part of an SMS as the SMSC accepted it: its message id is what a
    delivery receipt names (receipted_message_id)."""

    __tablename__ = "sms_parts"

    message_id: Mapped[str] = mapped_column(String(65), primary_key=True)
    notification_id: Mapped[int] = mapped_column(ForeignKey("notifications.id"), index=True)
    part: Mapped[int] = mapped_column(Integer)
    # accepted | delivered | undelivered
    state: Mapped[str] = mapped_column(String(16), default="accepted")
    receipt_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)


class NotificationBroadcast(Base):
    """An operator's mass mailing: who it went to and what it said."""

    __tablename__ = "notification_broadcasts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(80))
    # all | nas | tariff
    target: Mapped[str] = mapped_column(String(16))
    target_ref: Mapped[Optional[str]] = mapped_column(String(100))
    template: Mapped[Optional[str]] = mapped_column(String(32))
    text_ru: Mapped[Optional[str]] = mapped_column(Text)
    text_en: Mapped[Optional[str]] = mapped_column(Text)
    urgent: Mapped[bool] = mapped_column(Boolean, default=False)
    queued: Mapped[int] = mapped_column(Integer, default=0)


class TelegramLink(Base):
    """A one-time code the cabinet shows; the bot's ``/start <code>`` links
    the chat it came from to the account, once, before ``expires_at``."""

    __tablename__ = "telegram_links"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)
    used_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    chat_id: Mapped[Optional[str]] = mapped_column(String(64))


class NotifyCursor(Base):
    """A reader's position: the Bot API's getUpdates offset."""

    __tablename__ = "notify_cursors"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


# -- telephony (issue 17) --

class VoicePlan(Base):
    """A telephony tariff plan: its rate table (VoiceRate rows), the free
    minutes a month its package gives, and when the off-peak price holds."""

    __tablename__ = "voice_plans"
    __table_args__ = (CheckConstraint("free_seconds >= 0", name="free_seconds"),
                      CheckConstraint("offpeak_from_hour BETWEEN 0 AND 23 AND "
                                      "offpeak_to_hour BETWEEN 0 AND 23", name="offpeak_hours"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    # The package: this many seconds a calendar month (the operator's time
    # zone) free on the zones listed (empty: every zone).
    free_seconds: Mapped[int] = mapped_column(Integer, default=0)
    free_zones: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Off-peak (night) hours in the operator's local time, [from, to), may
    # wrap midnight; equal: no night rate. Weekends off-peak all day.
    offpeak_from_hour: Mapped[int] = mapped_column(Integer, default=0)
    offpeak_to_hour: Mapped[int] = mapped_column(Integer, default=0)
    weekend_offpeak: Mapped[bool] = mapped_column(Boolean, default=False)
    # Calls between two numbers of ours cost nothing.
    onnet_free: Mapped[bool] = mapped_column(Boolean, default=True)
    # Bumped on every rate-table import; a call records the version it was rated with.
    rates_version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class VoiceRate(Base):
    """One prefix of a plan's rate table: the longest prefix of the called
    number (E.164 digits) decides the zone and the price."""

    __tablename__ = "voice_rates"
    __table_args__ = (UniqueConstraint("plan_id", "prefix", name="uq_voice_rates_plan_prefix"),
                      CheckConstraint("first_increment_s >= 1 AND next_increment_s >= 1",
                                      name="increments"),
                      CheckConstraint("price_per_minute >= 0 AND connection_fee >= 0",
                                      name="prices"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("voice_plans.id"))
    prefix: Mapped[str] = mapped_column(String(16))
    zone: Mapped[str] = mapped_column(String(64))
    price_per_minute: Mapped[Decimal] = mapped_column(Money)
    # None: the same price off-peak.
    offpeak_price_per_minute: Mapped[Optional[Decimal]] = mapped_column(Money)
    first_increment_s: Mapped[int] = mapped_column(Integer, default=60)
    next_increment_s: Mapped[int] = mapped_column(Integer, default=60)
    connection_fee: Mapped[Decimal] = mapped_column(Money, default=Decimal("0.00"))


class VoiceService(Base):
    """A phone number or a SIP login of an account: a service with its own plan."""

    __tablename__ = "voice_services"
    __table_args__ = (CheckConstraint("number IS NOT NULL OR login IS NOT NULL",
                                      name="number_or_login"),
                      CheckConstraint("state IN ('active', 'removed')", name="state"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    # E.164 digits without "+"; unique among the active (a removed number
    # may be given to someone else).
    number: Mapped[Optional[str]] = mapped_column(String(20))
    login: Mapped[Optional[str]] = mapped_column(String(64))
    plan_id: Mapped[int] = mapped_column(ForeignKey("voice_plans.id"))
    state: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    removed_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)

    plan: Mapped[VoicePlan] = relationship(lazy="joined")


Index("uq_voice_services_number", VoiceService.number, unique=True,
      postgresql_where=text("state = 'active'"), sqlite_where=text("state = 'active'"))
Index("uq_voice_services_login", VoiceService.login, unique=True,
      postgresql_where=text("state = 'active'"), sqlite_where=text("state = 'active'"))


class VoiceAllowance(Base):
    """Package seconds a service used in a month ("YYYY-MM", local)."""

    __tablename__ = "voice_allowances"

    service_id: Mapped[int] = mapped_column(ForeignKey("voice_services.id"), primary_key=True)
    month: Mapped[str] = mapped_column(String(7), primary_key=True)
    used_seconds: Mapped[int] = mapped_column(Integer, default=0)


class Call(Base):
    """One call record, rated. Unique per (source, external_id): a CDR
    imported twice or an Accounting-Request retransmitted is stored once.
    ``ledger_key`` names the ledger entry that charged it (several calls
    share one: a day's calls of an account from one batch)."""

    __tablename__ = "calls"
    __table_args__ = (UniqueConstraint("source", "external_id", name="uq_calls_source_external"),
                      Index("ix_calls_account_start", "account_id", "start_at"),
                      # BRIN: calls arrive in about the order they started; a
                      # B-tree cost the CDR import 3 CPU s a million calls.
                      Index("ix_calls_start", "start_at", postgresql_using="brin"))
    # No index on ledger_key: an entry's calls are found by the account and
    # the local day its key names (rating.telephony.calls_of_entries).

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True)
    source: Mapped[str] = mapped_column(String(80))
    external_id: Mapped[str] = mapped_column(
        String(150).with_variant(String(150, collation="C"), "postgresql"))
    account_id: Mapped[Optional[int]] = mapped_column(Integer)
    service_id: Mapped[Optional[int]] = mapped_column(Integer)
    calling: Mapped[str] = mapped_column(String(32))
    called: Mapped[str] = mapped_column(String(32))
    login: Mapped[Optional[str]] = mapped_column(String(64))
    start_at: Mapped[dt.datetime] = mapped_column(DateTime)
    answer_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    end_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    billsec: Mapped[int] = mapped_column(Integer, default=0)
    disposition: Mapped[str] = mapped_column(String(16))
    sip_code: Mapped[Optional[int]] = mapped_column(Integer)
    direction: Mapped[str] = mapped_column(String(8))
    zone: Mapped[Optional[str]] = mapped_column(String(64))
    prefix: Mapped[Optional[str]] = mapped_column(String(16))
    billed_seconds: Mapped[int] = mapped_column(Integer, default=0)
    free_seconds: Mapped[int] = mapped_column(Integer, default=0)
    price_per_minute: Mapped[Optional[Decimal]] = mapped_column(Money)
    charge: Mapped[Decimal] = mapped_column(Money, default=Decimal("0.00"))
    reason: Mapped[str] = mapped_column(String(16))
    ledger_key: Mapped[Optional[str]] = mapped_column(
        String(200).with_variant(String(200, collation="C"), "postgresql"))
    rating_version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


# -- bulk and scheduled changes (issue 21) --

class BulkOperation(Base):
    """One change for a selection of accounts (rating.bulk): previewed, then
    applied as one operation, followed by its counts, reverted by another."""

    __tablename__ = "bulk_operations"
    __table_args__ = (
        CheckConstraint("state IN ('previewed', 'applying', 'applied', 'partially', "
                        "'reverted')", name="state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # tariff / option / package_on / package_off / freeze / unfreeze / revert
    kind: Mapped[str] = mapped_column(String(16))
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # How the accounts were chosen, for the record ({"tariff": ...}, ...).
    selection: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(16), default="previewed")
    # A revert names the operation it reverts.
    reverts_id: Mapped[Optional[int]] = mapped_column(ForeignKey("bulk_operations.id"))
    # Set: applying schedules each change for this day (rating.scheduled_changes).
    effective_on: Mapped[Optional[dt.date]] = mapped_column(Date)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    applied_by: Mapped[Optional[str]] = mapped_column(String(100))
    applied_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    finished_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    total: Mapped[int] = mapped_column(Integer, default=0)
    refused: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[int] = mapped_column(Integer, default=0)


class BulkItem(Base):
    """One account of a bulk operation: what the change will cost or why it
    cannot be made, then what it did (``result``: the log line, ledger
    entry, scheduled change it produced) and what it found (``before``,
    which a revert goes back to)."""

    __tablename__ = "bulk_items"
    __table_args__ = (
        CheckConstraint("state IN ('ready', 'refused', 'done', 'scheduled')", name="state"),
        Index("uq_bulk_items_operation_account", "bulk_id", "account_id", unique=True),
        Index("ix_bulk_items_operation_state", "bulk_id", "state"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True)
    bulk_id: Mapped[int] = mapped_column(ForeignKey("bulk_operations.id"))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    state: Mapped[str] = mapped_column(String(16), default="ready")
    # A revert's items each carry their own change ({"kind", "parameters"}).
    change: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)
    cost: Mapped[Optional[Decimal]] = mapped_column(Money)
    reason_code: Mapped[Optional[str]] = mapped_column(String(32))
    reason: Mapped[Optional[str]] = mapped_column(String(300))
    before: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)
    result: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)
    changed_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)


class ScheduledChange(Base):
    """A service change ordered for a day (rating.scheduled_changes): the
    scheduler makes it once on that day; cancellable until then."""

    __tablename__ = "scheduled_changes"
    __table_args__ = (
        CheckConstraint("state IN ('pending', 'applied', 'cancelled', 'failed')",
                        name="state"),
        Index("ix_scheduled_changes_due", "state", "effective_on"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    effective_on: Mapped[dt.date] = mapped_column(Date)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    reason_code: Mapped[Optional[str]] = mapped_column(String(32))
    reason: Mapped[Optional[str]] = mapped_column(String(300))
    bulk_id: Mapped[Optional[int]] = mapped_column(ForeignKey("bulk_operations.id"),
                                                   index=True)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    finished_by: Mapped[Optional[str]] = mapped_column(String(100))
    finished_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    before: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)
    result: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)


# -- spending limits (issue 21) --

class SpendingLimit(Base):
    """A monthly limit on one account or on a branch (an org unit and the
    units under it): money charged or bytes used in the operator's calendar
    month, a warning at ``warn_percent`` of it and an action when reached."""

    __tablename__ = "spending_limits"
    __table_args__ = (
        CheckConstraint(_in("metric", SPENDING_METRICS), name="metric"),
        CheckConstraint(_in("action", SPENDING_ACTIONS), name="action"),
        CheckConstraint("(account_id IS NULL) <> (org_unit_id IS NULL)", name="one_scope"),
        CheckConstraint("warn_percent > 0 AND warn_percent < 100", name="warn_percent"),
        CheckConstraint("(metric = 'money' AND amount > 0 AND traffic_bytes IS NULL) OR "
                        "(metric = 'traffic' AND traffic_bytes > 0 AND amount IS NULL)",
                        name="figure"),
        # One limit a scope and metric: ``limit set`` replaces it.
        UniqueConstraint("account_id", "metric", name="uq_spending_limits_account_metric"),
        UniqueConstraint("org_unit_id", "metric", name="uq_spending_limits_unit_metric"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[Optional[int]] = mapped_column(ForeignKey("accounts.id"), index=True)
    # A branch's limit goes with the branch (rating.org.delete_unit).
    org_unit_id: Mapped[Optional[int]] = mapped_column(
        ForeignKey("org_units.id", ondelete="CASCADE"), index=True)
    metric: Mapped[str] = mapped_column(String(8))
    # The limit: money charged (metric money) or bytes used (traffic).
    amount: Mapped[Optional[Decimal]] = mapped_column(Money)
    traffic_bytes: Mapped[Optional[int]] = mapped_column(BigInteger)
    warn_percent: Mapped[int] = mapped_column(Integer, default=80)
    action: Mapped[str] = mapped_column(String(16), default="notify")
    # Bumped on each change of amount or action: the month's warning and
    # action may fire again against the new figure (once per revision).
    revision: Mapped[int] = mapped_column(Integer, default=1)
    author: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class SpendingLimitState(Base):
    """What a limit did in one month: the warning and the action each fire
    once (a conditional UPDATE claims them; two schedulers cannot both)."""

    __tablename__ = "spending_limit_states"
    __table_args__ = (UniqueConstraint("limit_id", "month",
                                       name="uq_spending_limit_states_limit_month"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    limit_id: Mapped[int] = mapped_column(ForeignKey("spending_limits.id", ondelete="CASCADE"))
    month: Mapped[str] = mapped_column(String(7))          # "2026-12", operator's calendar
    # What the last evaluation found (by the limit's metric).
    used_money: Mapped[Optional[Decimal]] = mapped_column(Money)
    used_bytes: Mapped[Optional[int]] = mapped_column(BigInteger)
    evaluated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    # The limit's revision each fired at (NULL: not yet at the current one).
    warned_revision: Mapped[Optional[int]] = mapped_column(Integer)
    warned_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    acted_revision: Mapped[Optional[int]] = mapped_column(Integer)
    acted_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    lifted_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)


# -- customers with many accounts (issue 21) --

class Customer(Base):
    """A company or a family holding several accounts (rating.org)."""

    __tablename__ = "customers"
    __table_args__ = (
        CheckConstraint(_in("kind", CUSTOMER_KINDS), name="kind"),
        CheckConstraint(_in("documents", CUSTOMER_DOCUMENTS), name="documents"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), default="company")
    name: Mapped[str] = mapped_column(String(200))
    # The month's invoice and act: one for the customer (or a branch) with
    # a line per account, or one per account as before.
    documents: Mapped[str] = mapped_column(String(16), default="per_account",
                                           server_default="per_account")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class OrgUnit(Base):
    """A department or an employee in a customer's tree (``parent_id`` None:
    a root). Depth is unlimited; rating.org refuses cycles and a parent of
    another customer."""

    __tablename__ = "org_units"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    parent_id: Mapped[Optional[int]] = mapped_column(ForeignKey("org_units.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    position: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class OrgGrant(Base):
    """A cabinet login's rights on a customer's branch (``org_unit_id`` None:
    the whole customer). ``rights``: comma-separated rating.org.RIGHTS."""

    __tablename__ = "org_grants"
    __table_args__ = (
        UniqueConstraint("cabinet_user_id", "customer_id", "org_unit_id",
                         name="uq_org_grants_user_customer_unit"),
        # NULLs never collide in a unique constraint: the whole-customer
        # grant gets its own partial index (both databases have them).
        Index("uq_org_grants_user_customer_whole", "cabinet_user_id", "customer_id",
              unique=True, sqlite_where=text("org_unit_id IS NULL"),
              postgresql_where=text("org_unit_id IS NULL")),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cabinet_user_id: Mapped[int] = mapped_column(ForeignKey("cabinet_users.id"), index=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    org_unit_id: Mapped[Optional[int]] = mapped_column(ForeignKey("org_units.id"), index=True)
    rights: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class FamilyInvitation(Base):
    """One login asks to watch and pay for another account; the account's
    holder accepts from their own cabinet (or gave ``code_hash``'s one-time
    code beforehand). Accepting makes a CabinetUserAccount link."""

    __tablename__ = "family_invitations"
    __table_args__ = (CheckConstraint(_in("state", FAMILY_INVITATION_STATES), name="state"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    inviter_user_id: Mapped[Optional[int]] = mapped_column(ForeignKey("cabinet_users.id"),
                                                           index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    # A code the holder made to hand over (only its SHA-256), or None for a
    # request the holder answers in the cabinet.
    code_hash: Mapped[Optional[str]] = mapped_column(String(64), unique=True)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)
    answered_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
