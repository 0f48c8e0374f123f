"""Catalogue commands: tariff."""

from __future__ import annotations

import click
from sqlalchemy import select

from rating import accounts as acc
from rating.choices import FEE_PERIODS
from rating.models import Tariff
from scripts.common import (actor, emit_json, emit_rows, json_option, transaction)


# -- tariff ------------------------------------------------------------------

def tariff_view(t: Tariff) -> dict:
    return dict(id=t.id, name=t.name, fee=t.fee, fee_period=t.fee_period,
                rate_down_kbps=t.rate_down_kbps, rate_up_kbps=t.rate_up_kbps,
                negative_rate_kbps=t.negative_rate_kbps, prepaid_mb=t.prepaid_mb,
                price_per_gb=t.price_per_gb)


@click.group()
def tariff():
    """Tariffs."""


@tariff.command("add")
@click.argument("name")
@click.option("--fee", required=True, help="Fee per period, e.g. 600 or 599.90.")
@click.option("--period", "fee_period", type=click.Choice(FEE_PERIODS), default="monthly",
              show_default=True)
@click.option("--down", "rate_down_kbps", type=click.IntRange(1), required=True,
              help="Download speed, kbit/s.")
@click.option("--up", "rate_up_kbps", type=click.IntRange(1), required=True,
              help="Upload speed, kbit/s.")
@click.option("--negative", "negative_rate_kbps", type=click.IntRange(0), default=0,
              help="Speed on a negative balance, kbit/s (0: suspend).")
@click.option("--price-per-gb", default="0")
@click.option("--prepaid-mb", type=click.IntRange(0), default=0)
@json_option
def tariff_add(name, as_json, **values):
    """Add a tariff."""
    with transaction() as session:
        created = acc.create_tariff(session, name=name, actor=actor(), **values)
        view = tariff_view(created)
    emit_json(view) if as_json else click.echo(f"tariff {name} added (id {view['id']})")


@tariff.command("list")
@json_option
def tariff_list(as_json):
    """List tariffs."""
    with transaction() as session:
        rows = [tariff_view(t) for t in session.scalars(select(Tariff).order_by(Tariff.name))]
    emit_rows(rows, as_json, ["name", "fee", "fee_period", "rate_down_kbps", "rate_up_kbps",
                              "negative_rate_kbps"])
