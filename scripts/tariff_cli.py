"""Catalogue commands: tariff add, edit, archive, show, list.

Every rule the rating engine reads can be written here (rating.catalogue
names them); what is typed is checked there, so a refusal is one sentence
and nothing is written.
"""

from __future__ import annotations

import click
from sqlalchemy import select

from rating import catalogue
from rating.accounts import find_tariff
from rating.choices import FEE_PERIODS, TRAFFIC_DIRECTIONS, USAGE_SOURCES
from rating.models import Tariff
from rating.validate import DomainError
from scripts.common import (actor, emit_json, emit_rows, fetch_page, get_context, json_option,
                            page_options, transaction)

RULES_HELP = """
\b
Rules, all optional:
  --class-price CLASS=PRICE   price per GB of one traffic class (repeat);
                              other classes cost --price-per-gb
  --window "HH:MM-HH:MM [price=X] [speed=DOWN/UP]"
                              a time of day with its own traffic price per
                              GB (price=0: free; the prepaid volume is left
                              alone) and/or speed in kbit/s (speed=N: N both
                              ways); operator's local time, whole hours, may
                              pass midnight; repeat for several (no overlap);
                              on edit, the windows given replace all
  --direction in|out          billed traffic directions (repeat; default in)
  --usage-source radius|netflow
                              which counters the traffic is rated from
  --switch-min-days N         a subscriber may switch to this tariff once
                              in N days at most (0: no limit)
Traffic classes are "internet" and those of the collector's classes file
(settings collector.classes).
"""


def known_classes() -> set[str]:
    """The traffic classes the collector assigns: "internet" and the names
    in the settings' classes file."""
    from scripts.serve_collector import load_classes
    lists = load_classes(get_context().settings.section("collector")["classes"])
    return {catalogue.DEFAULT_CLASS} | set(lists or ())


def _rules(class_prices, windows, directions, no_window=False) -> dict:
    """The rule options given, parsed; absent ones are left out."""
    values: dict = {}
    if class_prices:
        prices = {}
        for text in class_prices:
            name, price = catalogue.parse_class_price(text)
            if name in prices:
                raise DomainError(f"class {name!r} is priced twice")
            prices[name] = price
        values["class_prices"] = prices
    if windows and no_window:
        raise DomainError("give either --window or --no-window, not both")
    if windows:
        values["windows"] = tuple(catalogue.parse_window(text) for text in windows)
    if no_window:
        values["windows"] = ()
    if directions:
        values["directions"] = tuple(directions)
    return values


def print_tariff(view: dict) -> None:
    width = max(len(k) for k in view)
    for key, value in view.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
        elif key == "windows":
            value = ", ".join(value) or "-"
        elif isinstance(value, list):
            value = "+".join(str(v) for v in value)
        click.echo(f"{key.ljust(width)}  {'-' if value is None else value}")


# -- the options ---------------------------------------------------------------

def rule_options(editing: bool):
    """The options of ``add`` and ``edit``: the same names, no defaults on edit."""
    def default(value):
        return None if editing else value

    def decorate(function):
        options = [
            click.option("--fee", required=not editing,
                         help="Fee per period, e.g. 600 or 599.90."),
            click.option("--period", "fee_period", type=click.Choice(FEE_PERIODS),
                         default=default("monthly"), show_default=not editing,
                         help="monthly: the whole fee once a month; daily: the month's fee "
                              "spread over its days."),
            click.option("--down", "rate_down_kbps", type=click.IntRange(1),
                         required=not editing, help="Download speed, kbit/s."),
            click.option("--up", "rate_up_kbps", type=click.IntRange(1), required=not editing,
                         help="Upload speed, kbit/s."),
            click.option("--negative", "negative_rate_kbps", type=click.IntRange(0),
                         default=default(0), help="Speed on a negative balance, kbit/s "
                                                  "(0: suspend)."),
            click.option("--prepaid-mb", type=click.IntRange(0), default=default(0),
                         help="Traffic included each month, MB."),
            click.option("--price-per-gb", default=default("0"),
                         help="Price per GB over the prepaid traffic (classes not priced "
                              "with --class-price)."),
            click.option("--class-price", "class_prices", multiple=True, metavar="CLASS=PRICE",
                         help="Price per GB of one traffic class, e.g. local=0 (repeat)."),
            click.option("--window", "windows", multiple=True,
                         metavar='"HH:MM-HH:MM [price=X] [speed=DOWN/UP]"',
                         help="Hours each day (local time) with their own price per GB "
                              "and/or speed, e.g. \"00:00-07:00 price=0\" or "
                              "\"01:00-07:00 speed=200000/100000\" (repeat; on edit the "
                              "windows given replace all)."),
            click.option("--direction", "directions", multiple=True,
                         type=click.Choice(TRAFFIC_DIRECTIONS),
                         help="Billed traffic direction (repeat; default: in)."),
            click.option("--usage-source", type=click.Choice(USAGE_SOURCES),
                         default=default("radius"), show_default=not editing,
                         help="Counters the traffic is rated from."),
            click.option("--switch-min-days", type=click.IntRange(0), default=default(0),
                         help="Switching to this tariff at most once in N days (0: no limit)."),
            click.option("--fee-while-suspended/--no-fee-while-suspended", default=None,
                         help="Charge the fee while the ladder suspends the account "
                              "(default: no)."),
        ]
        for option in reversed(options):
            function = option(function)
        return function
    return decorate


# -- tariff ------------------------------------------------------------------

@click.group()
def tariff():
    """Tariffs: add, edit, archive, show, list."""


@tariff.command("add", epilog=RULES_HELP + """
\b
Example:
  abonent tariff add "Night 100" --fee 600 --down 100000 --up 50000 \\
      --negative 512 --prepaid-mb 50000 --price-per-gb 1.50 \\
      --class-price local=0 --window "00:00-07:00 price=0" --switch-min-days 30
""")
@click.argument("name")
@rule_options(editing=False)
@json_option
def tariff_add(name, as_json, class_prices, windows, directions, fee_while_suspended,
               **values):
    """Add a tariff NAME with its fee, speeds and rules."""
    with transaction() as session:
        values.update(_rules(class_prices, windows, directions))
        if fee_while_suspended is not None:
            values["fee_while_suspended"] = fee_while_suspended
        created = catalogue.add_tariff(session, name=name, actor=actor(),
                                       known_classes=known_classes(), **values)
        view = catalogue.tariff_view(created)
    emit_json(view) if as_json else click.echo(f"tariff {view['name']} added (id {view['id']})")


@tariff.command("edit", epilog=RULES_HELP + """
\b
Only the options given change; the audit log keeps old -> new.
Example:
  abonent tariff edit "Night 100" --fee 650 --class-price internet=1.20 --no-window
""")
@click.argument("name")
@rule_options(editing=True)
@click.option("--rename", help="A new name for the tariff.")
@click.option("--drop-class", "drop_classes", multiple=True, metavar="CLASS",
              help="Remove the price of a class (it costs --price-per-gb again).")
@click.option("--no-window", is_flag=True, help="Remove every time-of-day window.")
@json_option
def tariff_edit(name, as_json, class_prices, windows, directions, fee_while_suspended,
                rename, drop_classes, no_window, **values):
    """Change some rules of tariff NAME."""
    changes = {k: v for k, v in values.items() if v is not None}
    with transaction() as session:
        changes.update(_rules(class_prices, windows, directions, no_window))
        if fee_while_suspended is not None:
            changes["fee_while_suspended"] = fee_while_suspended
        diff = catalogue.edit_tariff(session, name, actor=actor(), rename=rename,
                                     known_classes=known_classes(),
                                     drop_classes=drop_classes, **changes)
        view = catalogue.tariff_view(find_tariff(session, diff.get("name", (name, name))[1]))
    if as_json:
        emit_json(dict(view, changed={k: {"old": a, "new": b} for k, (a, b) in diff.items()}))
    else:
        for field, (old, new) in diff.items():
            click.echo(f"{field}: {old} -> {new}")


@tariff.command("archive")
@click.argument("name")
@click.option("--restore", is_flag=True, help="Offer the tariff again.")
@json_option
def tariff_archive(name, restore, as_json):
    """Archive tariff NAME: new accounts cannot choose it and no one can
    switch to it; subscribers already on it keep it."""
    with transaction() as session:
        changed = catalogue.archive_tariff(session, name, actor=actor(), archived=not restore)
        found = find_tariff(session, name)
        view = catalogue.tariff_view(found, catalogue.subscribers(session, found))
    if as_json:
        emit_json(dict(view, changed=changed))
    else:
        state = "archived" if view["archived"] else "offered"
        click.echo(f"tariff {view['name']} {'is now' if changed else 'was already'} {state}"
                   f" ({view['subscribers']} subscribers keep it)")


@tariff.command("show")
@click.argument("name")
@json_option
def tariff_show(name, as_json):
    """Every rule of tariff NAME."""
    with transaction() as session:
        found = find_tariff(session, name)
        view = catalogue.tariff_view(found, catalogue.subscribers(session, found))
    emit_json(view) if as_json else print_tariff(view)


@tariff.command("list")
@click.option("--archived/--offered", default=None,
              help="Only archived, or only offered tariffs (default: all).")
@page_options()
@json_option
def tariff_list(archived, limit, offset, as_json):
    """List tariffs."""
    query = select(Tariff).order_by(Tariff.name, Tariff.id)
    if archived is not None:
        query = query.where(Tariff.archived.is_(archived))
    with transaction() as session:
        rows = [catalogue.tariff_view(t) for t in fetch_page(session, query, limit, offset)]
    emit_rows(rows, as_json, ["name", "fee", "fee_period", "rate_down_kbps", "rate_up_kbps",
                              "negative_rate_kbps", "prepaid_mb", "windows", "archived"])
