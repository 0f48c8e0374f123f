"""``abonent bulk`` and ``abonent change``: one change for many accounts
(rating.bulk), and changes scheduled for a day (rating.scheduled_changes).

A bulk change is previewed first (what each account pays, which cannot
and why) and applied by its number; applying again continues an apply cut
short and never makes a change twice. A revert previews the undoing
changes as a new bulk change.
"""

from __future__ import annotations

import sys

import click

from config.db import utcnow
from rating import bulk, changes, freeze, jobs, scheduled_changes
from rating.accounts import find_account
from scripts.common import (CliError, Progress, actor, emit_json, emit_rows, get_context,
                            json_option, page_options, transaction, trim_page)

DAY = click.DateTime(["%Y-%m-%d"])
KIND_NAMES = {"tariff": "tariff", "option": "option", "package-on": "package_on",
              "package-off": "package_off", "freeze": "freeze", "unfreeze": "unfreeze"}


def _terms(today=None) -> changes.Terms:
    context = get_context()
    return changes.Terms(now=utcnow(),
                         today=today or jobs.local_today(context.settings.get("", "timezone")),
                         actor=actor(),
                         freeze_rules=freeze.FreezeRules.from_settings(context.settings))


def _parameters(kind: str, to, when, option, package, until) -> dict:
    given = {"tariff": {"tariff": to, "when": when}, "option": {"option": option},
             "package_on": {"package": package}, "package_off": {"package": package},
             "freeze": {"until": until.date().isoformat() if until else None},
             "unfreeze": {}}[kind]
    needed = {"tariff": "--to", "option": "--option", "package_on": "--package",
              "package_off": "--package", "freeze": "--until"}
    if kind in needed and not next(iter(given.values())):
        raise CliError(f"a {kind.replace('_', '-')} change needs {needed[kind]}")
    return given


def change_options(function):
    """The options that say what the change is."""
    for option in reversed([
        click.argument("kind", type=click.Choice(list(KIND_NAMES))),
        click.option("--to", help="tariff: the tariff to switch to."),
        click.option("--when", type=click.Choice(["now", "next_period"]), default="now",
                     show_default=True, help="tariff: from tomorrow, or the next month."),
        click.option("--option", "option", help="option: the option's code (e.g. turbo)."),
        click.option("--package", help="package-on/-off: the package's name."),
        click.option("--until", type=DAY, help="freeze: the day it ends (YYYY-MM-DD)."),
    ]):
        function = option(function)
    return function


def _read_accounts(value: str) -> list[str]:
    """Numbers from a comma list, a file (@path) or stdin (-)."""
    if value == "-":
        text = sys.stdin.read()
    elif value.startswith("@"):
        try:
            with open(value[1:], encoding="utf-8") as handle:
                text = handle.read()
        except OSError as error:
            raise CliError(f"cannot read {value[1:]}: {error.strerror}") from None
    else:
        text = value
    return [n for n in text.replace(",", "\n").split() if n]


def _operation_row(session, operation) -> dict:
    shown = bulk.totals(session, operation.id)
    return dict(id=operation.id, change=bulk.describe(operation), kind=operation.kind,
                parameters=operation.parameters, state=operation.state,
                effective_on=operation.effective_on, created_by=operation.created_by,
                created_at=operation.created_at, applied_at=operation.applied_at,
                total=shown.total, ready=shown.ready, refused=shown.refused, done=shown.done,
                scheduled=shown.scheduled, cost=shown.cost, refused_by_reason=shown.by_reason,
                reverts=operation.reverts_id)


def _item_rows(session, operation_id: int, state=None, limit=1000, offset=0) -> list[dict]:
    return [dict(account=number, state=item.state, cost=item.cost,
                 reason_code=item.reason_code, reason=item.reason,
                 change=(changes.describe(item.change["kind"], item.change["parameters"])
                         if item.change else None),
                 result=item.result)
            for item, number in bulk.items(session, operation_id, state=state, limit=limit,
                                           offset=offset)]


def _show(session, operation, as_json: bool, state=None, limit=50, offset=0) -> None:
    row = _operation_row(session, operation)
    rows = _item_rows(session, operation.id, state, limit + 1, offset)
    if as_json:
        emit_json(dict(row, items=rows[:limit]))
        return
    rows = trim_page(rows, limit, offset)
    emit_rows(rows, False, ["account", "state", "cost", "reason"])
    click.echo(f"bulk change No. {row['id']}: {row['change']}, {row['state']}; "
               f"{row['total']} accounts: {row['ready']} ready, {row['refused']} refused, "
               f"{row['done']} done" + (f", {row['scheduled']} scheduled"
                                        if row["scheduled"] else "")
               + f"; cost {row['cost']}")
    for code, count in sorted(row["refused_by_reason"].items()):
        click.echo(f"  refused, {changes.REASONS.get(code, code)}: {count}")


@click.group("bulk")
def bulk_group():
    """Bulk changes: preview, apply, show, list, revert."""


@bulk_group.command("preview")
@change_options
@click.option("--accounts", "accounts_given",
              help="Account numbers: a comma list, @FILE (one a line) or - (stdin).")
@click.option("--tariff", "on_tariff", help="The accounts on this tariff.")
@click.option("--customer", type=click.IntRange(1), help="A customer's accounts (org tree).")
@click.option("--unit", type=click.IntRange(1), help="With --customer: this unit's subtree.")
@click.option("--on", "effective_on", type=DAY,
              help="Schedule each change for this day instead of making it on apply.")
@click.option("--limit", type=click.IntRange(1, 100000), default=50, show_default=True,
              help="List at most this many accounts (the totals count all).")
@json_option
def bulk_preview(kind, to, when, option, package, until, accounts_given, on_tariff, customer,
                 unit, effective_on, limit, as_json):
    """Preview a change for many accounts: each one's cost, or why it cannot.

    Nothing changes until `abonent bulk apply ID`."""
    kind = KIND_NAMES[kind]
    parameters = _parameters(kind, to, when, option, package, until)
    if unit is not None and customer is None:
        raise CliError("--unit needs --customer")
    terms = _terms()
    selection = {k: v for k, v in dict(tariff=on_tariff, customer=customer, unit=unit).items()
                 if v is not None}
    with transaction() as session:
        numbers = _read_accounts(accounts_given) if accounts_given is not None else None
        if numbers is not None:
            selection["accounts"] = len(numbers)
        ids = bulk.select_accounts(session, numbers=numbers, tariff=on_tariff,
                                   customer_id=customer, unit_id=unit)
        bar = Progress(len(ids), "previewing", as_json)
        try:
            operation = bulk.preview(session, kind, parameters, ids, terms, selection=selection,
                                     effective_on=effective_on.date() if effective_on else None,
                                     progress=bar.update)
        finally:
            bar.close()
        session.flush()
        _show(session, operation, as_json, limit=limit)
    if not as_json:
        click.echo(f"apply it with: abonent bulk apply {operation.id}")


@bulk_group.command("apply")
@click.argument("operation_id", type=click.IntRange(1))
@json_option
def bulk_apply(operation_id, as_json):
    """Apply a previewed bulk change (again: continue one cut short; nothing twice)."""
    context = get_context()
    with transaction() as session:
        operation = bulk.get(session, operation_id)
        left = bulk.totals(session, operation.id).ready
    bar = Progress(left, f"applying bulk change {operation_id}", as_json)
    try:
        finished = bulk.apply(context.Session, operation_id, _terms(), progress=bar.update)
    finally:
        bar.close()
    with transaction() as session:
        row = _operation_row(session, bulk.get(session, finished.id))
    if as_json:
        emit_json(row)
        return
    click.echo(f"bulk change No. {row['id']}: {row['state']}; {row['done']} done"
               + (f" ({row['scheduled']} scheduled for {row['effective_on']})"
                  if row["scheduled"] else "")
               + f", {row['refused']} refused; cost {row['cost']}")


@bulk_group.command("show")
@click.argument("operation_id", type=click.IntRange(1))
@click.option("--state", type=click.Choice(["ready", "refused", "done", "scheduled"]),
              help="Only the accounts in this state.")
@page_options(default_limit=1000)
@json_option
def bulk_show(operation_id, state, limit, offset, as_json):
    """A bulk change: its progress, totals and accounts."""
    with transaction() as session:
        _show(session, bulk.get(session, operation_id), as_json, state, limit, offset)


@bulk_group.command("list")
@page_options(default_limit=100)
@json_option
def bulk_list(limit, offset, as_json):
    """Bulk changes, newest first."""
    with transaction() as session:
        rows = [_operation_row(session, o) for o in trim_page(
            bulk.listing(session, limit=limit + 1, offset=offset), limit, offset)]
    emit_rows(rows, as_json, ["id", "change", "state", "total", "done", "refused", "cost",
                              "created_by", "created_at"])


@bulk_group.command("revert")
@click.argument("operation_id", type=click.IntRange(1))
@click.option("--limit", type=click.IntRange(1, 100000), default=50, show_default=True)
@json_option
def bulk_revert(operation_id, limit, as_json):
    """Preview the bulk change that undoes OPERATION_ID (apply it by its number)."""
    with transaction() as session:
        operation = bulk.revert(session, operation_id, _terms())
        session.flush()
        _show(session, operation, as_json, limit=limit)
    if not as_json:
        click.echo(f"apply it with: abonent bulk apply {operation.id}")


# -- changes scheduled for a day ----------------------------------------------------

@click.group("change")
def change_group():
    """Changes scheduled for a day: schedule, list, cancel."""


def _scheduled_row(row, number) -> dict:
    return dict(id=row.id, account=number, change=changes.describe(row.kind, row.parameters),
                kind=row.kind, parameters=row.parameters, effective_on=row.effective_on,
                state=row.state, reason=row.reason, bulk=row.bulk_id,
                created_by=row.created_by, created_at=row.created_at)


@change_group.command("schedule")
@click.argument("account")
@change_options
@click.option("--on", "effective_on", type=DAY, required=True,
              help="The day the change is made (after today).")
@json_option
def change_schedule(account, kind, to, when, option, package, until, effective_on, as_json):
    """Schedule a change of ACCOUNT for a day; cancellable until then."""
    kind = KIND_NAMES[kind]
    parameters = _parameters(kind, to, when, option, package, until)
    terms = _terms()
    with transaction() as session:
        found = find_account(session, account)
        row = scheduled_changes.schedule(session, found, kind, parameters,
                                         effective_on.date(), today=terms.today,
                                         actor=terms.actor)
        shown = _scheduled_row(row, found.number)
    if as_json:
        emit_json(shown)
    else:
        click.echo(f"change No. {shown['id']} scheduled: {shown['change']} for account "
                   f"{account} on {shown['effective_on'].isoformat()}")


@change_group.command("list")
@click.option("--account", help="Only this account's.")
@click.option("--state", type=click.Choice(list(scheduled_changes.STATES)))
@click.option("--bulk", "bulk_id", type=click.IntRange(1), help="Only those of a bulk change.")
@page_options()
@json_option
def change_list(account, state, bulk_id, limit, offset, as_json):
    """Scheduled changes by day."""
    with transaction() as session:
        ids = [find_account(session, account).id] if account else None
        rows = [_scheduled_row(r, n) for r, n in trim_page(scheduled_changes.listing(
            session, account_ids=ids, state=state, bulk_id=bulk_id, limit=limit + 1,
            offset=offset), limit, offset)]
    emit_rows(rows, as_json, ["id", "account", "change", "effective_on", "state", "reason",
                              "created_by"])


@change_group.command("cancel")
@click.argument("change_id", type=click.IntRange(1))
@json_option
def change_cancel(change_id, as_json):
    """Cancel a scheduled change before its day."""
    terms = _terms()
    with transaction() as session:
        row = scheduled_changes.cancel(session, change_id, today=terms.today, actor=terms.actor)
        shown = dict(id=row.id, state=row.state)
    if as_json:
        emit_json(shown)
    else:
        click.echo(f"change No. {change_id} cancelled")
