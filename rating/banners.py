"""Banners: the operator's news and notices on the cabinet's overview.

Rules:
- a banner has a title (1-120 characters), an optional text (up to 1000),
  a period ``[starts_at, ends_at)`` in UTC (no end: until removed) and an
  audience: ``all``, ``tariff`` (the accounts on one tariff) or
  ``debtors`` (a balance below zero);
- several banners for one subscriber take turns, one per page view
  (``pick``), so none hides another for good;
- removing a banner deletes it; both are in the audit log.

The overview is the busiest page: the cabinet reads ``upcoming`` (the
banners not yet ended, a short list) once per process and TTL and filters
it per subscriber with the pure ``for_account``; no query per page.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from rating import oplog, validate
from rating.models import Banner, Tariff
from rating.validate import DomainError, NotFound

AUDIENCES = ("all", "tariff", "debtors")
MAX_TITLE = 120
MAX_BODY = 1000
# At most this many banners not yet ended are read for the cabinet.
MAX_UPCOMING = 100


@dataclass(frozen=True)
class BannerView:
    id: int
    title: str
    body: str
    audience: str
    tariff_id: int | None
    tariff: str | None
    starts_at: dt.datetime
    ends_at: dt.datetime | None

    def shown_at(self, now: dt.datetime) -> bool:
        return self.starts_at <= now and (self.ends_at is None or now < self.ends_at)


def parse_audience(value: str) -> tuple[str, str | None]:
    """``all``, ``debtors`` or ``tariff:NAME`` → (audience, tariff name)."""
    text = (value or "").strip()
    kind, sign, name = text.partition(":")
    if kind == "tariff" and sign and name.strip():
        return "tariff", name.strip()
    if kind in ("all", "debtors") and not sign:
        return kind, None
    raise DomainError(f"audience must be all, debtors or tariff:NAME, not {value!r}")


def add(session: Session, *, title: str, body: str | None = None, audience: str = "all",
        tariff: str | None = None, starts_at: dt.datetime, ends_at: dt.datetime | None = None,
        actor: str = "admin") -> BannerView:
    title = validate.text(title, "title", maximum=MAX_TITLE)
    body = validate.text(body, "text", maximum=MAX_BODY, required=False) or ""
    if audience not in AUDIENCES:
        raise DomainError(f"audience must be one of {', '.join(AUDIENCES)}, not {audience!r}")
    tariff_row = None
    if audience == "tariff":
        tariff_row = session.scalar(select(Tariff).where(Tariff.name == tariff))
        if tariff_row is None:
            raise NotFound(f"tariff {tariff!r} does not exist")
    elif tariff is not None:
        raise DomainError("a tariff is named only for the audience tariff")
    if ends_at is not None and ends_at <= starts_at:
        raise DomainError("the banner must end after it starts")
    banner = Banner(title=title, body=body, audience=audience,
                    tariff_id=tariff_row.id if tariff_row else None, starts_at=starts_at,
                    ends_at=ends_at, created_by=actor)
    session.add(banner)
    session.flush()
    oplog.record(session, account_id=None, actor=actor, action="banner.add", banner=banner.id,
                 title=title, audience=audience, tariff=tariff, starts_at=starts_at,
                 ends_at=ends_at)
    return _view(banner, tariff_row.name if tariff_row else None)


def remove(session: Session, banner_id: int, *, actor: str = "admin") -> None:
    banner = session.get(Banner, banner_id)
    if banner is None:
        raise NotFound(f"banner {banner_id} does not exist")
    session.execute(delete(Banner).where(Banner.id == banner_id))
    oplog.record(session, account_id=None, actor=actor, action="banner.remove",
                 banner=banner_id, title=banner.title)


def _view(banner: Banner, tariff: str | None) -> BannerView:
    return BannerView(banner.id, banner.title, banner.body, banner.audience, banner.tariff_id,
                      tariff, banner.starts_at, banner.ends_at)


def listing(session: Session, *, now: dt.datetime | None = None, limit: int = 1000,
            offset: int = 0) -> list[BannerView]:
    """Banners by id; with ``now``, only those not ended by then."""
    query = (select(Banner, Tariff.name).outerjoin(Tariff, Tariff.id == Banner.tariff_id)
             .order_by(Banner.id).limit(limit).offset(offset))
    if now is not None:
        query = query.where(or_(Banner.ends_at.is_(None), Banner.ends_at > now))
    return [_view(banner, name) for banner, name in session.execute(query).all()]


def upcoming(session, now: dt.datetime) -> tuple[BannerView, ...]:
    """The banners not ended at ``now`` (shown now or later), for a cache."""
    return tuple(listing(session, now=now, limit=MAX_UPCOMING))


def for_account(banners, *, now: dt.datetime, tariff_id: int | None,
                balance: Decimal) -> list[BannerView]:
    """The banners shown to this subscriber now."""
    return [b for b in banners if b.shown_at(now) and (
        b.audience == "all" or (b.audience == "tariff" and b.tariff_id == tariff_id)
        or (b.audience == "debtors" and balance < 0))]


def pick(banners, turn: int) -> BannerView | None:
    """One of them, taking turns: the ``turn``-th page view shows this one."""
    return banners[turn % len(banners)] if banners else None
