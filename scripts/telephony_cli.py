"""``abonent rates|phone|cdr|calls``: telephony (rating.telephony, rating.phones,
rating.cdr; docs/telephony.md).

A file import is all or nothing: a bad line is named with its number and
nothing of the file is stored (exit 2). Calls already stored are counted
as duplicates, so a file imported again changes nothing.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import click

from rating.telephony import Config
from scripts.common import (CliError, Progress, actor, emit_json, emit_rows, get_context,
                            json_option, page_options, transaction, trim_page)

MOMENT = click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"])


def _config() -> Config:
    return Config.of(get_context().settings)


def _utc(moment: dt.datetime | None) -> dt.datetime:
    """A time the operator typed (local) as naive UTC; None: now."""
    if moment is None:
        return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    zone = ZoneInfo(get_context().settings.get("", "timezone"))
    return moment.replace(tzinfo=zone).astimezone(dt.timezone.utc).replace(tzinfo=None)


def _say(as_json: bool, row: dict, sentence: str) -> None:
    if as_json:
        emit_json(row)
    else:
        click.echo(sentence)


# -- rates ---------------------------------------------------------------------------

@click.group("rates")
def rates():
    """Voice plans and rate tables: plan, import, show, list."""


@rates.command("plan")
@click.argument("name")
@click.option("--free-minutes", type=click.IntRange(0, 100000),
              help="Package: free minutes a calendar month per number.")
@click.option("--free-zones", help="Zones the free minutes apply to, comma-separated "
                                   "(empty: every zone).")
@click.option("--offpeak", help="Off-peak hours in local time, e.g. 22-8 (none: no night rate).")
@click.option("--weekend-offpeak/--no-weekend-offpeak", default=None,
              help="Saturdays and Sundays at the off-peak price all day.")
@click.option("--onnet-free/--onnet-paid", default=None,
              help="Calls to our own subscribers' numbers free (default on a new plan: free).")
@json_option
def rates_plan(name, free_minutes, free_zones, offpeak, weekend_offpeak, onnet_free, as_json):
    """Add the voice plan NAME, or change the options given."""
    from rating import phones
    with transaction() as session:
        plan, created = phones.save_plan(
            session, name, free_minutes=free_minutes,
            free_zones=free_zones.split(",") if free_zones is not None else None,
            offpeak=offpeak, weekend_offpeak=weekend_offpeak, onnet_free=onnet_free,
            actor=actor())
        row = _plan_row(plan)
    _say(as_json, row, f"voice plan {name} {'added' if created else 'saved'}: "
                       f"{row['free_minutes']} free minutes, off-peak {row['offpeak'] or 'none'}")


def _plan_row(plan) -> dict:
    hours = (f"{plan.offpeak_from_hour}-{plan.offpeak_to_hour}"
             if plan.offpeak_from_hour != plan.offpeak_to_hour else "")
    return dict(id=plan.id, name=plan.name, free_minutes=plan.free_seconds // 60,
                free_zones=plan.free_zones or [], offpeak=hours,
                weekend_offpeak=plan.weekend_offpeak, onnet_free=plan.onnet_free,
                rates_version=plan.rates_version)


@rates.command("import")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--plan", "plan_name", required=True, help="The voice plan whose table this is.")
@json_option
def rates_import(path, plan_name, as_json):
    """Replace a plan's rate table with the CSV file PATH.

    One rate a line, separated by semicolons:

    \b
      prefix;zone;price[;increments[;connection_fee[;offpeak_price]]]
      7495;Moscow;1.50;60/60;;0.50

    prefix: digits of the E.164 number (7495, 44, 1212); zone: a name
    (Moscow, UK mobile); price: per minute, like 1.50; increments:
    first/next billing steps in seconds, 60/60 (default), 30/6 or 1/1;
    connection_fee: charged once per paid call; offpeak_price: per minute
    in the plan's off-peak hours and weekends (empty: the same price).
    A first line starting with "prefix" and lines starting with # are
    skipped. A bad line stops the import (exit 2) and nothing changes.
    """
    from rating import cdr, phones
    with transaction() as session:
        parsed = cdr.read_rates(path)
        report = phones.import_rates(session, plan_name, parsed, actor=actor())
    _say(as_json, report, f"plan {report['plan']}: {report['prefixes']} prefixes in "
                          f"{report['zones']} zones (replaced {report['replaced']}); "
                          f"rates version {report['version']}")


@rates.command("show")
@click.argument("number")
@click.option("--at", "moment", type=MOMENT,
              help="When the call is made, local time (default: now).")
@click.option("--plan", "plan_name", help="Rate with this plan.")
@click.option("--from", "caller", help="The calling number or SIP login (its plan, package "
                                       "minutes left, own/on-net rules).")
@click.option("--seconds", type=click.IntRange(1, 86400), default=60, show_default=True,
              help="How long the call lasts.")
@json_option
def rates_show(number, moment, plan_name, caller, seconds, as_json):
    """Which zone and price apply to a call to NUMBER, and why."""
    from rating import phones
    with transaction() as session:
        row = phones.explain(session, number, at=_utc(moment), config=_config(),
                             plan_name=plan_name, caller=caller, seconds=seconds)
    if as_json:
        emit_json(row)
        return
    for name in ("number", "plan", "prefix", "zone", "price_per_minute",
                 "offpeak_price_per_minute", "offpeak", "price_now", "increments",
                 "connection_fee", "package_seconds_left", "seconds", "billed_seconds",
                 "free_seconds", "charge", "why"):
        value = row.get(name)
        click.echo(f"{name.replace('_', ' ')}: {'-' if value is None else value}")


@rates.command("list")
@click.option("--plan", "plan_name", help="This plan's prefixes (default: the plans).")
@page_options()
@json_option
def rates_list(plan_name, limit, offset, as_json):
    """Voice plans, or one plan's prefixes."""
    from sqlalchemy import select

    from rating import phones
    from rating.models import VoicePlan, VoiceRate
    with transaction() as session:
        if plan_name is None:
            rows = [_plan_row(p) for p in trim_page(list(session.scalars(
                select(VoicePlan).order_by(VoicePlan.name).limit(limit + 1).offset(offset))),
                limit, offset)]
            emit_rows(rows, as_json, ["name", "free_minutes", "free_zones", "offpeak",
                                      "weekend_offpeak", "onnet_free", "rates_version"])
            return
        plan = phones.find_plan(session, plan_name)
        found = trim_page(list(session.scalars(
            select(VoiceRate).where(VoiceRate.plan_id == plan.id).order_by(VoiceRate.prefix)
            .limit(limit + 1).offset(offset))), limit, offset)
        rows = [dict(prefix=r.prefix, zone=r.zone, price=r.price_per_minute,
                     increments=f"{r.first_increment_s}/{r.next_increment_s}",
                     connection_fee=r.connection_fee, offpeak_price=r.offpeak_price_per_minute)
                for r in found]
    emit_rows(rows, as_json, ["prefix", "zone", "price", "increments", "connection_fee",
                              "offpeak_price"])


# -- phone numbers ----------------------------------------------------------------------------

@click.group("phone")
def phone():
    """Phone numbers and SIP logins as services of an account: add, list, remove."""


def _phone_row(service, account_number: str | None = None) -> dict:
    return dict(id=service.id, account=account_number, number=service.number,
                login=service.login, plan=service.plan.name, state=service.state,
                since=service.created_at)


@phone.command("add")
@click.argument("account_number")
@click.argument("number", required=False)
@click.option("--login", help="The SIP login (Kamailio's username) of this service.")
@click.option("--plan", "plan_name", help="The voice plan (default: telephony.default_plan).")
@json_option
def phone_add(account_number, number, login, plan_name, as_json):
    """Give account ACCOUNT_NUMBER the phone NUMBER (any form: +7 495 ..., 8495...)."""
    from rating import phones
    from rating.accounts import find_account
    plan_name = plan_name or get_context().settings.get("telephony", "default_plan")
    if not plan_name:
        raise CliError("say which voice plan (--plan), or set telephony.default_plan")
    with transaction() as session:
        account = find_account(session, account_number)
        service = phones.add_phone(session, account, number=number, login=login,
                                   plan_name=plan_name, config=_config(), actor=actor())
        row = _phone_row(service, account.number)
    _say(as_json, row, f"account {account_number}: phone {row['number'] or row['login']} "
                       f"added on plan {row['plan']}")


@phone.command("list")
@click.option("--account", "account_number", help="This account's numbers only.")
@page_options()
@json_option
def phone_list(account_number, limit, offset, as_json):
    """Active phone numbers and SIP logins with their account and plan."""
    from sqlalchemy import select

    from rating import phones
    from rating.accounts import find_account
    from rating.models import Account
    with transaction() as session:
        account_id = find_account(session, account_number).id if account_number else None
        found = trim_page(phones.phones_of(session, account_id, limit=limit + 1,
                                           offset=offset), limit, offset)
        numbers = dict(session.execute(select(Account.id, Account.number).where(
            Account.id.in_({s.account_id for s in found}))).all()) if found else {}
        rows = [_phone_row(s, numbers.get(s.account_id)) for s in found]
    emit_rows(rows, as_json, ["account", "number", "login", "plan", "since"])


@phone.command("remove")
@click.argument("number_or_login")
@json_option
def phone_remove(number_or_login, as_json):
    """Take a phone number or SIP login off its account (its calls stay)."""
    from rating import phones
    with transaction() as session:
        service = phones.remove_phone(session, number_or_login, config=_config(), actor=actor())
        row = _phone_row(service)
    _say(as_json, row, f"phone {row['number'] or row['login']} removed")


# -- CDR files -----------------------------------------------------------------------------------

@click.group("cdr")
def cdr_group():
    """Call records from a switch: import."""


@cdr_group.command("import")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["asterisk", "freeswitch"]), required=True,
              help="asterisk: Master.csv of cdr_csv; freeswitch: mod_cdr_csv's default template.")
@click.option("--timezone", help="The zone the file's times are in (default: the operator's; "
                                 "UTC for Asterisk with usegmtime=yes).")
@json_option
def cdr_import(path, fmt, timezone, as_json):
    """Import, rate and charge the call records in PATH.

    Idempotent per record (source and uniqueid/uuid): a file imported again,
    or one overlapping the last, adds only new calls. A malformed line stops
    the import with its line number, and nothing of the file is stored.
    """
    import os

    from rating import cdr
    if timezone:
        try:
            ZoneInfo(timezone)
        except (ValueError, KeyError, OSError):
            raise CliError(f"unknown time zone {timezone!r}") from None
    try:
        size = os.path.getsize(path)
    except OSError as error:
        raise CliError(f"cannot read {path}: {error.strerror}") from None
    bar = Progress(size // 150, f"importing {os.path.basename(path)}", as_json)
    try:
        with transaction() as session:
            report = cdr.import_cdrs(session, path, fmt, config=_config(), timezone=timezone,
                                     progress=bar.update)
    finally:
        bar.close()
    row = report.as_dict()
    _say(as_json, row, f"{path}: {row['records']} records, {row['inserted']} new, "
                       f"{row['duplicates']} already stored, {row['unmatched']} of unknown "
                       f"numbers; charged {row['charged']} in {row['ledger_entries']} entries")


# -- calls ----------------------------------------------------------------------------------------

@click.group("calls")
def calls():
    """Rated calls: list, rerate."""


def _period(start, end) -> tuple[dt.datetime, dt.datetime]:
    if start is None or end is None:
        raise CliError("give the period: --from and --to")
    begin, finish = _utc(start), _utc(end)
    if finish <= begin:
        raise CliError("--to must be after --from")
    return begin, finish


@calls.command("list")
@click.option("--from", "start", type=MOMENT, required=True, help="From (local), e.g. 2026-12-01.")
@click.option("--to", "end", type=MOMENT, required=True, help="Up to, not including (local).")
@click.option("--account", "account_number", help="This account's calls only.")
@click.option("--direction", type=click.Choice(["out", "in", "onnet", "unknown"]))
@click.option("--zone")
@click.option("--reason", help="Why a call cost what it did: rated, package, unanswered, "
                               "incoming, onnet, own, no_rate, unknown_number.")
@page_options()
@json_option
def calls_list(start, end, account_number, direction, zone, reason, limit, offset, as_json):
    """Calls that started in a period, with their zone, price and charge."""
    from rating import phones
    from rating.accounts import find_account
    begin, finish = _period(start, end)
    with transaction() as session:
        account_id = find_account(session, account_number).id if account_number else None
        query = phones.calls_query(begin, finish, account_id=account_id, direction=direction,
                                   zone=zone, reason=reason)
        found = trim_page(list(session.scalars(query.limit(limit + 1).offset(offset))),
                          limit, offset)
        rows = [dict(id=c.id, start=c.start_at, account_id=c.account_id, calling=c.calling,
                     called=c.called, direction=c.direction, zone=c.zone, billsec=c.billsec,
                     billed=c.billed_seconds, free=c.free_seconds, price=c.price_per_minute,
                     charge=c.charge, reason=c.reason, source=c.source,
                     external_id=c.external_id) for c in found]
    emit_rows(rows, as_json, ["start", "calling", "called", "direction", "zone", "billsec",
                              "billed", "free", "price", "charge", "reason"])


@calls.command("rerate")
@click.option("--from", "start", type=MOMENT, required=True, help="From (local), e.g. 2026-12-01.")
@click.option("--to", "end", type=MOMENT, required=True, help="Up to, not including (local).")
@click.option("--account", "account_number", help="This account's calls only.")
@json_option
def calls_rerate(start, end, account_number, as_json):
    """Rate a period's calls again with the rate tables as they are now.

    Each ledger entry whose calls now cost something else is reversed and
    its calls charged under a new entry; unchanged calls are left alone, so
    running it again changes nothing.
    """
    from rating import phones
    from rating.accounts import find_account
    begin, finish = _period(start, end)
    with transaction() as session:
        account_id = find_account(session, account_number).id if account_number else None
        result = phones.rerate(session, begin, finish, config=_config(), actor=actor(),
                               account_id=account_id)
        row = result.as_dict()
    _say(as_json, row, f"{row['calls']} calls looked at, {row['changed']} re-rated: "
                       f"{row['reversed_entries']} entries reversed, {row['new_entries']} new; "
                       f"{row['charged_before']} -> {row['charged_after']}")
