"""``abonent limit set|list|remove|run`` and ``abonent spend report``:
monthly spending limits and spend reports (rating.spending, issue 21).

Months and days are the operator's (settings ``timezone``). Money limits
are roubles, traffic limits gigabytes (10^9 bytes).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from config.db import utcnow
from rating.choices import SPENDING_ACTIONS, SPENDING_METRICS, SPENDING_SERVICES
from scripts.common import (CliError, actor, emit_json, emit_rows, get_context, json_option,
                            transaction)


def _timezone() -> str:
    return get_context().settings.get("", "timezone")


def _account_ids(session, numbers) -> list[int]:
    from rating import accounts
    return [accounts.find_account(session, number).id for number in numbers]


def _scope(session, account: str | None, unit: int | None) -> dict:
    if (account is None) == (unit is None):
        raise CliError("give --account NUMBER or --unit ID (one of them)")
    if account is not None:
        return {"account_id": _account_ids(session, [account])[0]}
    return {"org_unit_id": unit}


@click.group("limit")
def limit():
    """Monthly spending limits on an account or a branch: set, list, remove, run."""


@limit.command("set")
@click.option("--account", help="The account NUMBER the limit is on.")
@click.option("--unit", type=int, help="The org unit (branch) ID the limit is on, with the "
                                       "units under it.")
@click.option("--metric", type=click.Choice(SPENDING_METRICS), default="money",
              show_default=True, help="money: charges in roubles; traffic: gigabytes.")
@click.option("--amount", required=True, help="The monthly limit: roubles or GB.")
@click.option("--warn", "warn_percent", default="80", show_default=True,
              help="Warn at this percent of the limit (1-99).")
@click.option("--action", type=click.Choice(SPENDING_ACTIONS), default="notify",
              show_default=True, help="What happens when the limit is reached.")
@json_option
def set_command(account, unit, metric, amount, warn_percent, action, as_json):
    """Set (or change) the limit of an account or a branch. A changed limit
    lifts what it did this month and is checked again at once: a raised
    limit frees the accounts, a lowered one acts if it is reached."""
    from rating import spending
    with transaction() as session:
        scope = _scope(session, account, unit)
        row, changed = spending.set_limit(session, metric=metric, value=amount, action=action,
                                          warn_percent=warn_percent, actor=actor(),
                                          now=utcnow(), timezone=_timezone(), **scope)
        limit_id = row.id
    with transaction() as session:
        [view] = [v for v in spending.listing(session, utcnow(), _timezone())
                  if v.id == limit_id]
    if as_json:
        emit_json(dict(view.as_dict(), changed=changed))
    else:
        click.echo(f"limit {limit_id} {'set' if changed else 'unchanged'}: {view.metric} "
                   f"{_figure(view.metric, view.figure)}, warn at {view.warn_percent}%, "
                   f"{view.action}; used this month {_figure(view.metric, view.used)}")


def _figure(metric: str, value) -> str:
    from rating.spending import BYTES_PER_GB
    if metric == "money":
        return f"{value} RUB"
    return f"{value / BYTES_PER_GB:.2f} GB"


@limit.command("list")
@click.option("--customer", type=int, help="Only the limits on this customer's accounts and units.")
@click.option("--account", "numbers", multiple=True, help="Only this account's (repeatable).")
@click.option("--unit", "units", type=int, multiple=True, help="Only this unit's (repeatable).")
@json_option
def list_command(customer, numbers, units, as_json):
    """Limits with this month's use, share and what has fired."""
    from rating import org, spending
    with transaction() as session:
        ids = _account_ids(session, numbers)
        units = list(units)
        if customer is not None:
            ids += spending.customer_scope(session, customer)[0]
            units += [unit.id for unit in org.units(session, customer)]
        chosen = bool(numbers or units or customer is not None)
        views = spending.listing(session, utcnow(), _timezone(),
                                 account_ids=ids if chosen else None,
                                 org_unit_ids=units if chosen else None)
    rows = [view.as_dict() for view in views]
    if not as_json:
        for row, view in zip(rows, views):
            row["limit"], row["used"] = (_figure(view.metric, view.figure),
                                         _figure(view.metric, view.used))
    emit_rows(rows, as_json, ["id", "account", "unit", "metric", "limit", "used",
                              "share_percent", "warn_percent", "action", "warned", "acted"])


@limit.command("remove")
@click.argument("limit_id", type=int)
def remove_command(limit_id):
    """Remove limit LIMIT_ID; what it did this month is lifted."""
    from rating import spending
    with transaction() as session:
        spending.remove_limit(session, limit_id, actor=actor(), now=utcnow(),
                              timezone=_timezone())
    click.echo(f"limit {limit_id} removed")


@limit.command("run")
@json_option
def run_command(as_json):
    """Check every limit now (the scheduler does it every 5 minutes); each
    warning and action fires once a month whatever runs it."""
    from rating import jobs
    ctx = get_context()
    outcome = jobs.run_spending(ctx.engine, ctx.Session, _timezone())
    if outcome is None:
        raise CliError("another node is checking the limits right now; try again shortly")
    result = dict(month=outcome.month, limits=outcome.limits, warned=outcome.warned,
                  acted=outcome.acted, expired=outcome.expired, notices=outcome.notices)
    if as_json:
        emit_json(result)
    else:
        click.echo(f"{outcome.month}: {outcome.limits} limit(s) checked, "
                   f"{len(outcome.warned)} warned, {len(outcome.acted)} acted, "
                   f"{outcome.notices} notice(s) queued")


@click.group("spend")
def spend():
    """Spending reports by branch and by service."""


def _day(value: str, option: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise CliError(f"{option} must be a day like 2026-12-01, not {value!r}") from None


@spend.command("report")
@click.option("--customer", type=int, help="The customer (company) ID: all its accounts.")
@click.option("--unit", type=int, help="With --customer: only this branch and the units under it.")
@click.option("--account", "numbers", multiple=True,
              help="Accounts by NUMBER instead of a customer (repeatable).")
@click.option("--from", "first", required=True, help="The first day, YYYY-MM-DD.")
@click.option("--to", "last", required=True, help="The last day (included), YYYY-MM-DD.")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV.")
@click.option("--pdf", "pdf_path", type=click.Path(dir_okay=False, writable=True),
              help="Write a PDF to this file.")
@json_option
def report_command(customer, unit, numbers, first, last, as_csv, pdf_path, as_json):
    """Charges per account and branch by service (tariff fees, options,
    packages, traffic, other) for the operator's days --from to --to.
    Payments are not spending; a reversal counts against what it reverses."""
    from rating import spending
    if sum(map(bool, (as_csv, pdf_path, as_json))) > 1:
        raise CliError("choose one of --csv, --pdf and --json")
    if (customer is None) == (not numbers):
        raise CliError("give --customer ID or --account NUMBER (one of them)")
    if unit is not None and customer is None:
        raise CliError("--unit needs --customer")
    start, end = _day(first, "--from"), _day(last, "--to")
    with transaction() as session:
        if customer is not None:
            ids, units = spending.customer_scope(session, customer, unit)
        else:
            ids, units = _account_ids(session, numbers), None
        result = spending.report(session, ids, start, end, _timezone(), units)
    if as_json:
        emit_json(result.as_dict())
    elif as_csv:
        from cabinet.spend_documents import csv_document
        click.echo(csv_document(result), nl=False)
    elif pdf_path:
        from cabinet.spend_documents import pdf_document
        Path(pdf_path).write_bytes(pdf_document(result))
        click.echo(f"{len(result.rows)} account(s), total {result.total} RUB: {pdf_path}")
    else:
        rows = [dict(branch=row.unit_name, account=row.number, **row.services, total=row.total)
                for row in result.rows]
        rows += [dict(branch=name or "-", account="TOTAL", **by, total=total)
                 for _, name, by, total in result.units()]
        emit_rows(rows, False, ["branch", "account", *SPENDING_SERVICES, "total"])
