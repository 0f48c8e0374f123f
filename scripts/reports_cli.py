"""Reports: an account's traffic, and `report reconcile|debtors|revenue`.

Read-only; months and days are the operator's (settings ``timezone``).
Every list takes ``--limit``/``--offset`` and says on stderr when cut.
"""

from __future__ import annotations

import datetime as dt
import sys
from decimal import Decimal

import click

from scripts.common import (CliError, emit_json, emit_rows, get_context,
                            json_option, page_options, transaction, trim_page)

NUMBERS_AS_ARGUMENTS = {"ignore_unknown_options": True}
month_option = click.option("--month", help="YYYY-MM in the operator's time zone "
                                            "(default: this month).")


def _timezone() -> str:
    return get_context().settings.get("", "timezone")


def _page(rows: list, limit: int, offset: int) -> list:
    return trim_page(rows[offset:offset + limit + 1], limit, offset)


@click.command("traffic")
@click.argument("number")
@month_option
@click.option("--by", type=click.Choice(["class", "day"]), default="class", show_default=True,
              help="Totals per traffic class or per day.")
@page_options(default_limit=1000)
@json_option
def traffic(number, month, by, limit, offset, as_json):
    """Bytes in (to the subscriber) and out of account NUMBER for a month,
    per traffic class or day and per source (netflow: the collector;
    radius: accounting counters rolled up by the scheduler)."""
    from rating import accounts as acc, reports
    period = _month(month)
    with transaction() as session:
        account = acc.find_account(session, number)
        rows = _page(reports.traffic(session, account.id, period, by), limit, offset)
    if as_json:
        emit_json(dict(account=number, month=period.label, by=by, rows=rows))
    else:
        emit_rows(rows, False, [by, "source", "bytes_in", "bytes_out", "bytes_total"])


def _month(value):
    from rating import reports
    from rating.validate import DomainError
    try:
        return reports.month(value, _timezone())
    except DomainError as error:
        raise CliError(str(error)) from None


@click.group("report")
def report():
    """Reports over the whole base: reconcile, debtors, revenue."""


@report.command("reconcile", context_settings=NUMBERS_AS_ARGUMENTS)
@click.option("--month", required=True, help="YYYY-MM in the operator's time zone.")
@click.option("--tolerance", default="10", show_default=True,
              help="Percent of the RADIUS count NetFlow may differ by before it is flagged.")
@click.option("--all", "include_all", is_flag=True, help="List accounts that agree too.")
@click.option("--fail-on-flag", is_flag=True,
              help="Exit 1 when any account is flagged (for cron and monitoring).")
@page_options(default_limit=1000)
@json_option
def reconcile(month, tolerance, include_all, fail_on_flag, limit, offset, as_json):
    """RADIUS accounting octets against NetFlow bytes per account for a month.

    Flags: apart (NetFlow differs from RADIUS by more than --tolerance
    percent of RADIUS), no_netflow (RADIUS counted traffic, NetFlow none: an
    exporter missing), no_radius (the reverse). A RADIUS session counts
    whole in the month it started. Exit 0 with the flagged list; with
    --fail-on-flag, exit 1 when the list is not empty."""
    from rating import reports, validate
    from rating.validate import DomainError
    period = _month(month)
    try:
        percent = validate.amount(tolerance, "tolerance", maximum=Decimal(1000))
    except DomainError as error:
        raise CliError(str(error)) from None
    with transaction() as session:
        rows = reports.reconcile(session, period, percent, include_all)
    flagged = sum(1 for row in rows if row["flag"])
    page = _page(rows, limit, offset)
    if as_json:
        emit_json(dict(month=period.label, tolerance_percent=percent, flagged=flagged,
                       accounts=page))
    else:
        emit_rows(page, False, ["account", "flag", "radius_bytes", "netflow_bytes",
                                "difference_percent"])
        click.echo(f"{flagged} account(s) flagged for {period.label} "
                   f"(tolerance {percent}%)", err=True)
    if fail_on_flag and flagged:
        sys.exit(1)


@report.command("debtors", context_settings=NUMBERS_AS_ARGUMENTS)
@click.option("--below", default="0", show_default=True,
              help="Balances below this amount (may be negative).")
@click.option("--days", type=click.IntRange(0, 36500),
              help="Only accounts in debt for at least this many days.")
@page_options(default_limit=1000)
@json_option
def debtors(below, days, limit, offset, as_json):
    """Accounts in debt: balance, credit limit, since when (from the ledger),
    most debt first."""
    from config.db import utcnow
    from rating import reports, validate
    from rating.validate import DomainError
    try:
        threshold = validate.amount(below, "--below", negative_ok=True)
    except DomainError as error:
        raise CliError(str(error)) from None
    now = utcnow()
    cutoff = now - dt.timedelta(days=days) if days is not None else None
    with transaction() as session:
        rows = trim_page(reports.debtors(session, threshold, cutoff, limit, offset), limit,
                         offset)
    for row in rows:
        row["days_in_debt"] = (now - row["since"]).days if row["since"] else None
    emit_rows(rows, as_json, ["number", "name", "balance", "credit_limit", "profile", "since",
                              "days_in_debt"])


@report.command("revenue")
@click.option("--month", required=True, help="YYYY-MM in the operator's time zone.")
@click.option("--by", type=click.Choice(["tariff", "kind", "day"]), default="kind",
              show_default=True)
@page_options(default_limit=1000)
@json_option
def revenue(month, by, limit, offset, as_json):
    """Charges, payments and refunds of a month from the ledger.

    charges: fees, traffic, options and manual charges, net of their
    reversals; payments: net of reversals; transfers between accounts are
    left out. By tariff: the account's current tariff."""
    from rating import reports
    period = _month(month)
    with transaction() as session:
        rows = reports.revenue(session, period, by)
    page = _page(rows, limit, offset)
    if as_json:
        emit_json(dict(month=period.label, by=by, rows=page))
    else:
        emit_rows(page, False, [by, "entries", "charges", "payments", "refunds", "promised"])
