"""Catalogue commands: option types (Turbo and the like) and the balance ladder."""

from __future__ import annotations

import click
from sqlalchemy import select

from rating import options, policies
from rating.choices import OPTION_KINDS
from rating.models import OptionType
from scripts.common import (CliError, actor, emit_json, emit_rows, fetch_page, get_context,
                            json_option, page_options, transaction)


# -- option-type -------------------------------------------------------------

def option_view(option: OptionType) -> dict:
    return dict(id=option.id, code=option.code, name=option.name, kind=option.kind,
                price=option.price, duration_hours=option.duration_hours,
                rate_multiplier=option.rate_multiplier, traffic_mb=option.traffic_mb,
                max_per_month=option.max_per_month)


@click.group("option-type")
def option_type():
    """Options subscribers buy: turbo (speed × N for some hours), traffic packs."""


def option_fields(editing: bool):
    def default(value):
        return None if editing else value

    def decorate(function):
        for option in reversed([
            click.option("--name", required=not editing,
                         help="What the subscriber sees, e.g. \"Turbo ×2\"."),
            click.option("--kind", type=click.Choice(OPTION_KINDS), required=not editing,
                         help="turbo: multiplies the speed; traffic: adds prepaid MB."),
            click.option("--price", required=not editing, help="Price, e.g. 50 or 49.90."),
            click.option("--hours", "duration_hours", type=click.IntRange(1),
                         default=default(24), help="How long it lasts, hours (default 24)."),
            click.option("--multiplier", "rate_multiplier", type=click.IntRange(1),
                         default=default(1), help="Speed × this while it runs (turbo)."),
            click.option("--traffic-mb", type=click.IntRange(0), default=default(0),
                         help="Prepaid traffic it adds this month, MB (traffic pack)."),
            click.option("--max-per-month", type=click.IntRange(0), default=default(0),
                         help="Purchases per account and calendar month (0: no limit)."),
        ]):
            function = option(function)
        return function
    return decorate


@option_type.command("add", epilog="""
\b
Examples:
  abonent option-type add turbo --name "Turbo x2" --kind turbo --price 50 \\
      --hours 24 --multiplier 2 --max-per-month 4
  abonent option-type add gb10 --name "10 GB" --kind traffic --price 150 \\
      --hours 720 --traffic-mb 10000
""")
@click.argument("code")
@option_fields(editing=False)
@json_option
def option_type_add(code, as_json, **values):
    """Put option CODE on sale."""
    with transaction() as session:
        created = options.create_option_type(session, code=code, actor=actor(), **values)
        view = option_view(created)
    emit_json(view) if as_json else click.echo(f"option {code} added (id {view['id']})")


@option_type.command("edit", epilog="""
\b
Only the options given change; options already bought keep their end time.
Example:
  abonent option-type edit turbo --price 60 --max-per-month 2
""")
@click.argument("code")
@option_fields(editing=True)
@json_option
def option_type_edit(code, as_json, **values):
    """Change option CODE."""
    changes = {k: v for k, v in values.items() if v is not None}
    with transaction() as session:
        diff = options.edit_option_type(session, code, actor=actor(), **changes)
        view = option_view(options.find_option_type(session, code))
    if as_json:
        emit_json(dict(view, changed={k: {"old": a, "new": b} for k, (a, b) in diff.items()}))
    else:
        for field, (old, new) in diff.items():
            click.echo(f"{field}: {old} -> {new}")


@option_type.command("list")
@page_options()
@json_option
def option_type_list(limit, offset, as_json):
    """The options on sale."""
    query = select(OptionType).order_by(OptionType.kind.desc(), OptionType.price,
                                        OptionType.code)
    with transaction() as session:
        rows = [option_view(o) for o in fetch_page(session, query, limit, offset)]
    emit_rows(rows, as_json, ["code", "name", "kind", "price", "duration_hours",
                              "rate_multiplier", "traffic_mb", "max_per_month"])


# -- policy ------------------------------------------------------------------

def _settings_ladder():
    return policies.ladder_from_settings(get_context().settings.section("policy"))


def ladder_view(ladder, source: str) -> dict:
    return dict(source=source, rungs=[
        dict(position=n, profile=r.profile, below=r.offset, past_credit=r.past_credit,
             mode=r.mode, rate_kbps=r.rate_kbps, description=r.description,
             rung=policies.format_rung(r))
        for n, r in enumerate(ladder, 1)])


@click.group()
def policy():
    """The balance ladder: which profile a balance gives (throttle, portal, block)."""


@policy.command("show")
@json_option
def policy_show(as_json):
    """The ladder in force, worst rung first; the first rung whose condition
    holds decides, above them all the account is normal."""
    with transaction() as session:
        stored = policies.stored_ladder(session)
    view = ladder_view(stored or _settings_ladder(), "database" if stored else "settings")
    if as_json:
        emit_json(view)
        return
    click.echo(f"ladder from the {view['source']}:")
    for rung in view["rungs"]:
        click.echo(f"  {rung['position']}. {rung['rung']}    # {rung['description']}")


@policy.command("set", epilog="""
\b
A rung: "PROFILE below=AMOUNT [past-credit] mode=throttle|redirect|block [rate=KBPS]"
  below=AMOUNT   the rung holds when the balance is below AMOUNT
  past-credit    ... below AMOUNT minus the account's credit limit
  mode           throttle: the tariff's negative-balance speed (or rate=);
                 redirect: the captive portal; block: no session
Rungs run from the worst state to the best; thresholds must rise.
Example:
  abonent policy set --rung "suspended below=0 past-credit mode=block" \\
                     --rung "throttled below=50 mode=throttle rate=1024"
Running servers pick the new ladder up within 30 seconds.
""")
@click.option("--rung", "rungs", multiple=True, metavar='"PROFILE below=AMOUNT ..."',
              help="One rung (repeat, worst first); replaces the whole ladder.")
@click.option("--reset", is_flag=True,
              help="Forget the stored ladder: the settings' [policy] holds again.")
@json_option
def policy_set(rungs, reset, as_json):
    """Replace the balance ladder; accounts move to their new profile at once."""
    if bool(rungs) == reset:
        raise CliError("policy set: give the new ladder as --rung options, or --reset")
    from rating import fees
    with transaction() as session:
        ladder = policies.store_ladder(session, [] if reset else
                                       [policies.parse_rung(r) for r in rungs], actor=actor())
        changed = fees.apply_policies(session, reason="policy:ladder")
    view = ladder_view(ladder or _settings_ladder(), "database" if ladder else "settings")
    view["profiles_changed"] = changed
    if as_json:
        emit_json(view)
        return
    click.echo(f"ladder {'stored' if ladder else 'reset to the settings'}; "
               f"{changed} accounts changed profile")
    for rung in view["rungs"]:
        click.echo(f"  {rung['position']}. {rung['rung']}")
