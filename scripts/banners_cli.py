"""``abonent banner add|list|remove``: news and notices on the cabinet's
overview (rating.banners), for everyone, one tariff's accounts or debtors.

Times are the operator's local time (settings ``timezone``); stored in UTC.
A running cabinet shows a change within a minute (its banner cache).
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import click

from config.db import utcnow
from rating import banners
from scripts.common import (CliError, actor, emit_json, emit_rows, get_context, json_option,
                            page_options, transaction, trim_page)

_FORMATS = ("%Y-%m-%d", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M")


def _zone() -> ZoneInfo:
    return ZoneInfo(get_context().settings.get("", "timezone"))


def _moment(value: str | None, option: str, *, end: bool = False) -> dt.datetime | None:
    """A local day or day and time → naive UTC. A bare day given as the end
    means the end of that day (the banner is shown all of it)."""
    if value is None:
        return None
    for pattern in _FORMATS:
        try:
            local = dt.datetime.strptime(value.strip(), pattern)
        except ValueError:
            continue
        if pattern == "%Y-%m-%d" and end:
            local += dt.timedelta(days=1)
        return local.replace(tzinfo=_zone()).astimezone(dt.timezone.utc).replace(tzinfo=None)
    raise CliError(f"{option} must be a day like 2026-12-31 or a time like "
                   f"\"2026-12-31 18:00\", not {value!r}")


def _row(banner: banners.BannerView) -> dict:
    zone = _zone()

    def local(moment):
        if moment is None:
            return None
        return (moment.replace(tzinfo=dt.timezone.utc).astimezone(zone)
                .strftime("%Y-%m-%d %H:%M"))

    audience = f"tariff:{banner.tariff}" if banner.audience == "tariff" else banner.audience
    return dict(id=banner.id, title=banner.title, text=banner.body, audience=audience,
                starts=local(banner.starts_at), ends=local(banner.ends_at))


@click.group("banner")
def banner():
    """Banners on the cabinet's overview: add, list, remove."""


@banner.command("add")
@click.argument("title")
@click.option("--text", "body", help="A line or two under the title (up to 1000 characters).")
@click.option("--audience", default="all", show_default=True,
              help="Who sees it: all, debtors (a balance below zero) or tariff:NAME.")
@click.option("--from", "starts", help="Shown from this local day or time (default: now).")
@click.option("--until", "ends",
              help="Shown until this local time, or to the end of this day (default: "
                   "until removed).")
@json_option
def banner_add(title, body, audience, starts, ends, as_json):
    """Add a banner TITLE."""
    starts_at = _moment(starts, "--from") or utcnow()
    ends_at = _moment(ends, "--until", end=True)
    with transaction() as session:
        kind, tariff = banners.parse_audience(audience)
        created = banners.add(session, title=title, body=body, audience=kind, tariff=tariff,
                              starts_at=starts_at, ends_at=ends_at, actor=actor())
        row = _row(created)
    if as_json:
        emit_json(row)
    else:
        click.echo(f"banner {row['id']} added for {row['audience']}: {row['title']}")


@banner.command("list")
@click.option("--all", "include_ended", is_flag=True, help="Ended banners too.")
@page_options()
@json_option
def banner_list(include_ended, limit, offset, as_json):
    """Banners by id: not ended yet (with --all: every one)."""
    with transaction() as session:
        found = banners.listing(session, now=None if include_ended else utcnow(),
                                limit=limit + 1, offset=offset)
        rows = [_row(b) for b in trim_page(found, limit, offset)]
    emit_rows(rows, as_json, ["id", "title", "audience", "starts", "ends"])


@banner.command("remove")
@click.argument("banner_id", type=int)
@json_option
def banner_remove(banner_id, as_json):
    """Remove banner BANNER_ID."""
    with transaction() as session:
        banners.remove(session, banner_id, actor=actor())
    if as_json:
        emit_json(dict(id=banner_id, removed=True))
    else:
        click.echo(f"banner {banner_id} removed")
