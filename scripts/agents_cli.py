"""Payment agents and bank transfers on the command line.

``abonent agent add|edit|list|remove``: the agents allowed to call the OSMP
endpoint (/osmp/<name>), their password (kept only as a hash), allowed
networks and limits.

Attached to the ``payment`` group (scripts/admin.py):

- ``abonent payment reconcile AGENT FILE``: the agent's daily registry
  against what we credited; exit 0 when everything matches, 1 when
  differences are found, 2 on bad input;
- ``abonent payment statement import|unmatched|assign``: 1C client-bank
  statements (rating.bank_statement).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from rating import agent_registry, agents, bank_statement
from scripts.common import (CliError, actor, emit_json, emit_rows, emit_table, fetch_page,
                            get_context, json_option, page_options, transaction)

AGENT_COLUMNS = ["name", "enabled", "networks", "min_amount", "max_amount"]


def _read(path: str, limit: int) -> bytes:
    file = Path(path)
    try:
        if file.stat().st_size > limit:
            raise CliError(f"{path} is larger than {limit // (1024 * 1024)} MB")
        return file.read_bytes()
    except FileNotFoundError:
        raise CliError(f"{path} does not exist") from None
    except IsADirectoryError:
        raise CliError(f"{path} is a directory, not a file") from None
    except OSError as error:
        raise CliError(f"cannot read {path}: {error.strerror}") from None


# -- agent --------------------------------------------------------------------

@click.group()
def agent():
    """Payment agents (OSMP terminals): add, edit, list, remove."""


@agent.command("add")
@click.argument("name")
@click.option("--password", envvar="ABONENT_AGENT_PASSWORD", required=True,
              help="The agent's HTTP Basic password (at least 12 characters); "
                   "or $ABONENT_AGENT_PASSWORD. Stored only as a hash.")
@click.option("--allow", "networks", multiple=True, required=True,
              help="A network its requests may come from (91.232.230.0/23); repeat or "
                   "separate with commas.")
@click.option("--min-amount", default=str(agents.DEFAULT_MIN_AMOUNT), show_default=True)
@click.option("--max-amount", default=str(agents.DEFAULT_MAX_AMOUNT), show_default=True)
@click.option("--disabled", is_flag=True, help="Add it switched off.")
@json_option
def agent_add(name, password, networks, min_amount, max_amount, disabled, as_json):
    """Add agent NAME; it calls /osmp/NAME with HTTP Basic user NAME."""
    with transaction() as session:
        row = agents.add_agent(session, name=name, password=password, networks=networks,
                               enabled=not disabled, min_amount=min_amount,
                               max_amount=max_amount, actor=actor())
        view = agents.agent_view(row)
    if as_json:
        emit_json(view)
    else:
        click.echo(f"agent {name} added: /osmp/{name}, allowed from {', '.join(view['networks'])}")


@agent.command("edit")
@click.argument("name")
@click.option("--password", help="A new password (at least 12 characters).")
@click.option("--allow", "networks", multiple=True,
              help="Replace the allowed networks (repeat or separate with commas).")
@click.option("--enable/--disable", "enabled", default=None, help="Switch it on or off.")
@click.option("--min-amount")
@click.option("--max-amount")
@json_option
def agent_edit(name, password, networks, enabled, min_amount, max_amount, as_json):
    """Change agent NAME: password, networks, limits, on or off."""
    with transaction() as session:
        row = agents.edit_agent(session, name, password=password,
                                networks=networks or None, enabled=enabled,
                                min_amount=min_amount, max_amount=max_amount, actor=actor())
        view = agents.agent_view(row)
    if as_json:
        emit_json(view)
    else:
        click.echo(f"agent {name} changed")


@agent.command("list")
@page_options()
@json_option
def agent_list(limit, offset, as_json):
    """The agents, by name."""
    from sqlalchemy import select
    with get_context().Session() as session:
        rows = fetch_page(session, select(agents.PaymentAgent)
                          .order_by(agents.PaymentAgent.name), limit, offset)
        emit_rows([agents.agent_view(r) for r in rows], as_json, AGENT_COLUMNS)


@agent.command("remove")
@click.argument("name")
def agent_remove(name):
    """Remove agent NAME (only one that never paid; else --disable it)."""
    with transaction() as session:
        agents.remove_agent(session, name, actor=actor())
    click.echo(f"agent {name} removed")


# -- payment reconcile --------------------------------------------------------

def _day(ctx, param, value):
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter("must be a day like 2026-12-05") from None


@click.command("reconcile")
@click.argument("agent_name", metavar="AGENT")
@click.argument("path", metavar="FILE")
@click.option("--date", "day", callback=_day,
              help="The registry's day (YYYY-MM-DD); default: the days its lines name.")
@json_option
def reconcile(agent_name, path, day, as_json):
    """Reconcile AGENT's daily registry FILE (txn_id;date;account;sum) with
    our payments: exit 0 when all match, 1 when differences are found."""
    data = _read(path, 200 * 1024 * 1024)
    try:
        lines = agent_registry.parse(data)
        start, end = agent_registry.window(lines, day)
    except agent_registry.RegistryError as error:
        raise CliError(f"{path}: {error}") from None
    with transaction() as session:
        row = agents.find_agent(session, agent_name)
        ours = agents.payments_for_registry(session, row, start, end,
                                            [line.txn_id for line in lines])
        session.rollback()
    report = agent_registry.reconcile(ours, lines, start, end)
    if as_json:
        emit_json(dict(agent=agent_name, **report.as_dict()))
    else:
        _print_report(agent_name, report)
    if report.differences:
        raise SystemExit(1)


def _print_report(agent_name: str, report: agent_registry.Report) -> None:
    last = (report.end - dt.timedelta(days=1)).date()
    days = str(report.start.date()) + ("" if last == report.start.date() else f"..{last}")
    click.echo(f"agent {agent_name}, {days}: theirs {report.theirs_count} for "
               f"{report.theirs_total}, ours {report.ours_count} for {report.ours_total}; "
               f"{report.matched_count} match for {report.matched_total}")
    sections = (("missing on our side", report.missing_ours,
                 ["txn_id", "date", "account", "amount", "line"]),
                ("missing on theirs", report.missing_theirs,
                 ["txn_id", "date", "account", "amount"]),
                ("amount differs", report.amount_differs,
                 ["txn_id", "account", "ours", "theirs", "line"]),
                ("account differs", report.account_differs,
                 ["txn_id", "amount", "ours", "theirs", "line"]))
    for title, rows, columns in sections:
        if rows:
            click.echo(f"\n{title}: {len(rows)}")
            emit_table(rows, columns)
    if not report.differences:
        click.echo("everything matches")


# -- payment statement --------------------------------------------------------

@click.group("statement")
def statement():
    """Bank statements (1C client-bank format): import, unmatched, assign."""


@statement.command("import")
@click.argument("path", metavar="FILE")
@click.option("--our-account", help="Our settlement account (20 digits); default: "
                                    "setting bank.account.")
@json_option
def statement_import(path, our_account, as_json):
    """Import FILE: credit the incoming orders whose purpose names one of our
    accounts, keep the rest for `statement assign`. Importing it again
    credits nothing again."""
    data = _read(path, bank_statement.MAX_BYTES)
    number = our_account or get_context().settings.get("bank", "account")
    with transaction() as session:
        try:
            result = bank_statement.import_statement(session, data, account_number=number,
                                                     actor=actor())
        except bank_statement.StatementError as error:
            raise CliError(f"{path}: {error}") from None
    if as_json:
        emit_json(result.as_dict())
        return
    view = result.as_dict()
    click.echo(f"{path}: {result.documents} documents ({result.encoding}); "
               f"{len(result.matched)} credited for {view['credited']}, "
               f"{len(result.unmatched)} left for an operator, "
               f"{result.repeated} imported before, {result.outgoing} not ours")
    if result.unmatched:
        click.echo("")
        emit_table(result.unmatched, ["id", "number", "date", "amount", "payer_inn", "purpose"])


@statement.command("unmatched")
@page_options()
@json_option
def statement_unmatched(limit, offset, as_json):
    """Incoming lines no account was found for, oldest first."""
    with get_context().Session() as session:
        rows = fetch_page(session, bank_statement.unmatched(session), limit, offset)
        emit_rows([bank_statement.line_view(r) for r in rows], as_json,
                  ["id", "number", "date", "amount", "payer_inn", "payer", "purpose"])


@statement.command("assign")
@click.argument("line_id", type=click.IntRange(1))
@click.argument("account_number", metavar="ACCOUNT")
@json_option
def statement_assign(line_id, account_number, as_json):
    """Credit unmatched statement line LINE_ID to ACCOUNT (once)."""
    with transaction() as session:
        row = bank_statement.assign(session, line_id, account_number, actor=actor())
        view = dict(bank_statement.line_view(row), account=account_number,
                    entry_id=row.entry_id)
    if as_json:
        emit_json(view)
    else:
        click.echo(f"statement line {line_id} ({view['amount']}) credited to {account_number}")
