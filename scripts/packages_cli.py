"""``abonent package|discount|promo|bonus``: service packages and the ways
a fee gets smaller (rating.packages, rating.promotions).

Everything that moves money goes through the ledger with its own key, so
a command repeated (or a fee run repeated) changes nothing the second
time; every change is in the audit log under the acting admin.
"""

from __future__ import annotations

import click

from rating import jobs, packages, promotions
from rating.accounts import find_account
from scripts.common import (actor, emit_json, emit_rows, get_context, json_option,
                            page_options, transaction, trim_page)

DAY = click.DateTime(["%Y-%m-%d"])


def _today():
    return jobs.local_today(get_context().settings.get("", "timezone"))


def _package_row(p) -> dict:
    return dict(id=p.id, name=p.name, fee=p.fee, fee_period=p.fee_period,
                self_service=p.self_service, archived=p.archived,
                description=p.description,
                **({"active_accounts": p.active_accounts} if hasattr(p, "active_accounts")
                   else {}))


def _say(as_json: bool, row: dict, sentence: str) -> None:
    if as_json:
        emit_json(row)
    else:
        click.echo(sentence)


# -- packages ---------------------------------------------------------------------

@click.group("package")
def package():
    """Service packages (TV channels, extras): add, edit, list, archive, on, off."""


@package.command("add")
@click.argument("name")
@click.option("--fee", required=True, help="The price of one period, e.g. 199 or 9.90.")
@click.option("--period", "fee_period", type=click.Choice(["monthly", "daily"]),
              default="monthly", show_default=True,
              help="monthly: the fee once a month; daily: the fee every day.")
@click.option("--self-service/--operator-only", default=True, show_default=True,
              help="Whether the subscriber may switch it on and off in the cabinet.")
@click.option("--description", help="A line for the cabinet (channels, what it gives).")
@json_option
def package_add(name, fee, fee_period, self_service, description, as_json):
    """Add a package NAME."""
    with transaction() as session:
        created = packages.create(session, name=name, fee=fee, fee_period=fee_period,
                                  self_service=self_service, description=description,
                                  actor=actor())
        row = _package_row(created)
    _say(as_json, row, f"package {row['name']} added: {row['fee']} {row['fee_period']}")


@package.command("edit")
@click.argument("name")
@click.option("--name", "new_name", help="A new name.")
@click.option("--fee", help="A new fee (from the next period not yet charged).")
@click.option("--period", "fee_period", type=click.Choice(["monthly", "daily"]))
@click.option("--self-service/--operator-only", default=None)
@click.option("--description")
@json_option
def package_edit(name, new_name, fee, fee_period, self_service, description, as_json):
    """Change a package's name, fee, period, self-service or description."""
    with transaction() as session:
        edited, changes = packages.edit(session, name, new_name=new_name, fee=fee,
                                        fee_period=fee_period, self_service=self_service,
                                        description=description, actor=actor())
        row = dict(_package_row(edited), changed=sorted(changes))
    _say(as_json, row, f"package {row['name']}: " +
         (f"changed {', '.join(row['changed'])}" if changes else "nothing changed"))


@package.command("list")
@click.option("--all", "include_archived", is_flag=True, help="Archived packages too.")
@page_options()
@json_option
def package_list(include_archived, limit, offset, as_json):
    """Packages with their fee and how many accounts have them on."""
    with transaction() as session:
        rows = [_package_row(p) for p in trim_page(
            packages.listing(session, include_archived=include_archived, limit=limit + 1,
                             offset=offset), limit, offset)]
    emit_rows(rows, as_json, ["id", "name", "fee", "fee_period", "self_service", "archived",
                              "active_accounts"])


@package.command("archive")
@click.argument("name")
@json_option
def package_archive(name, as_json):
    """Stop offering a package (accounts that have it keep it until switched off)."""
    with transaction() as session:
        changed = packages.archive(session, name, actor=actor())
    _say(as_json, dict(name=name, archived=True, changed=changed),
         f"package {name} archived" if changed else f"package {name} was archived already")


def _switch(number: str, name: str, on: bool, as_json: bool) -> None:
    today = _today()
    with transaction() as session:
        account = find_account(session, number)
        chosen = packages.find(session, name)
        done = packages.switch(session, account, chosen, on, today=today, actor=actor())
        row = dict(account=number, package=chosen.name, active=on, changed=done.changed,
                   charged=done.charged)
    state = "on" if on else "off"
    _say(as_json, row, (f"package {row['package']} is {state} for account {number}"
                        + (f"; {row['charged']} charged for this period" if done.charged
                           else "")) if done.changed
         else f"package {row['package']} was {state} already for account {number}")


@package.command("on")
@click.argument("account")
@click.argument("name")
@json_option
def package_on(account, name, as_json):
    """Switch package NAME on for ACCOUNT; the current period is charged now."""
    _switch(account, name, True, as_json)


@package.command("off")
@click.argument("account")
@click.argument("name")
@json_option
def package_off(account, name, as_json):
    """Switch package NAME off for ACCOUNT (from the next period)."""
    _switch(account, name, False, as_json)


@package.command("show")
@click.argument("account")
@json_option
def package_show(account, as_json):
    """The packages ACCOUNT has on, and those it may switch on."""
    with transaction() as session:
        found = find_account(session, account)
        rows = [dict(name=p.name, fee=p.fee, fee_period=p.fee_period, active=p.active,
                     self_service=p.self_service, archived=p.archived)
                for p in packages.for_account(session, found.id)]
    emit_rows(rows, as_json, ["name", "fee", "fee_period", "active", "self_service"])


# -- discounts --------------------------------------------------------------------

@click.group("discount")
def discount():
    """Discounts for one account on its tariff or package fees: add, list, remove."""


def _discount_row(d, number=None) -> dict:
    return dict(id=d.id, account=number, target=d.target, package_id=d.package_id,
                percent=d.percent, amount=d.amount, valid_from=d.valid_from,
                valid_until=d.valid_until, reason=d.reason, revoked=d.revoked,
                created_by=d.created_by)


@discount.command("add")
@click.argument("account")
@click.option("--percent", help="Percent of the fee, e.g. 10 or 12.5.")
@click.option("--amount", help="A fixed amount off each fee, e.g. 100.")
@click.option("--on", "target", type=click.Choice(["tariff", "package"]), required=True,
              help="The tariff fee, or package fees.")
@click.option("--package", "package_name", help="With --on package: this package only.")
@click.option("--from", "valid_from", type=DAY, help="First day (default: today).")
@click.option("--until", "valid_until", type=DAY, help="The day it ends (not included).")
@click.option("--reason", help="Why, for the audit log.")
@json_option
def discount_add(account, percent, amount, target, package_name, valid_from, valid_until,
                 reason, as_json):
    """Give ACCOUNT a discount, applied by the fee run as its own ledger entry."""
    today = _today()
    with transaction() as session:
        found = find_account(session, account)
        chosen = packages.find(session, package_name) if package_name else None
        created = promotions.add_discount(
            session, found, target=target, percent=percent, amount=amount, package=chosen,
            valid_from=valid_from.date() if valid_from else today,
            valid_until=valid_until.date() if valid_until else None, reason=reason,
            actor=actor())
        row = _discount_row(created, account)
    _say(as_json, row, f"discount No. {row['id']} added for account {account}")


@discount.command("list")
@click.argument("account", required=False)
@page_options()
@json_option
def discount_list(account, limit, offset, as_json):
    """Discounts (of ACCOUNT, or all)."""
    with transaction() as session:
        found = find_account(session, account) if account else None
        from rating.models import Account
        rows = []
        for d in trim_page(promotions.discounts_for(session, found.id if found else None,
                                                    limit=limit + 1, offset=offset),
                           limit, offset):
            rows.append(_discount_row(d, session.get(Account, d.account_id).number))
    emit_rows(rows, as_json, ["id", "account", "target", "percent", "amount", "valid_from",
                              "valid_until", "revoked"])


@discount.command("remove")
@click.argument("discount_id", type=click.IntRange(1))
@json_option
def discount_remove(discount_id, as_json):
    """Stop discount DISCOUNT_ID from the next fee on."""
    with transaction() as session:
        changed = promotions.remove_discount(session, discount_id, actor=actor())
    _say(as_json, dict(id=discount_id, revoked=True, changed=changed),
         f"discount No. {discount_id} removed" if changed
         else f"discount No. {discount_id} was removed already")


# -- promo codes ------------------------------------------------------------------

@click.group("promo")
def promo():
    """Promo codes: add, list, redeem."""


def _promo_row(p) -> dict:
    return dict(id=p.id, code=p.code, percent=p.percent, amount=p.amount, target=p.target,
                days=p.days, max_uses=p.max_uses, used=p.used, expires_on=p.expires_on)


@promo.command("add")
@click.argument("code")
@click.option("--percent", help="A discount of this percent for --days after redemption.")
@click.option("--amount", help="A fixed credit to the balance.")
@click.option("--uses", type=int, required=True, help="How many accounts may redeem it.")
@click.option("--expires", type=DAY, help="The last day it may be redeemed.")
@click.option("--on", "target", type=click.Choice(["tariff", "package"]), default="tariff",
              show_default=True, help="What a percent code discounts.")
@click.option("--days", type=int, default=30, show_default=True,
              help="How long a percent code's discount lasts.")
@json_option
def promo_add(code, percent, amount, uses, expires, target, days, as_json):
    """Add promo code CODE (letters, digits, - and _; kept in capitals)."""
    today = _today()
    with transaction() as session:
        created = promotions.add_promo(session, code, percent=percent, amount=amount,
                                       uses=uses, expires_on=expires.date() if expires else None,
                                       target=target, days=days, today=today, actor=actor())
        row = _promo_row(created)
    _say(as_json, row, f"promo code {row['code']} added for {row['max_uses']} use(s)")


@promo.command("list")
@page_options()
@json_option
def promo_list(limit, offset, as_json):
    """Promo codes with their uses."""
    with transaction() as session:
        rows = [_promo_row(p) for p in trim_page(
            promotions.promos(session, limit=limit + 1, offset=offset), limit, offset)]
    emit_rows(rows, as_json, ["code", "percent", "amount", "target", "days", "used",
                              "max_uses", "expires_on"])


@promo.command("redeem")
@click.argument("account")
@click.argument("code")
@json_option
def promo_redeem(account, code, as_json):
    """Redeem CODE for ACCOUNT (once per account)."""
    today = _today()
    with transaction() as session:
        found = find_account(session, account)
        given = promotions.redeem(session, found, code, today=today, actor=actor())
    _say(as_json, dict(account=account, code=code.strip().upper(), given=given),
         f"promo code {code.strip().upper()} redeemed for account {account}: {given}")


# -- bonus points -----------------------------------------------------------------

@click.group("bonus")
def bonus():
    """Bonus points: earned on payments, spent by the fee run on fees."""


@bonus.command("set")
@click.option("--percent", required=True,
              help="Points per 100 of a payment (one point pays 1.00 of a fee); 0 stops.")
@json_option
def bonus_set(percent, as_json):
    """Set how many points payments earn from now on."""
    with transaction() as session:
        rule = promotions.set_bonus_percent(session, percent, actor=actor())
        row = dict(earn_percent=rule.earn_percent, since=rule.since)
    _say(as_json, row, f"payments from now on earn {row['earn_percent']}% in bonus points")


@bonus.command("show")
@click.argument("account")
@page_options(default_limit=20)
@json_option
def bonus_show(account, limit, offset, as_json):
    """ACCOUNT's bonus points and their latest changes."""
    with transaction() as session:
        found = find_account(session, account)
        total = promotions.points(session, found.id)
        history = [dict(kind=p.kind, points=p.points, memo=p.memo, created_at=p.created_at)
                   for p in trim_page(promotions.point_history(
                       session, found.id, limit=limit + 1, offset=offset), limit, offset)]
        rule = promotions.bonus_rule(session)
        percent = rule.earn_percent if rule else None
    if as_json:
        emit_json(dict(account=account, points=total, earn_percent=percent, history=history))
        return
    click.echo(f"account {account}: {total} bonus points")
    if history:
        emit_rows(history, False, ["created_at", "kind", "points", "memo"])
