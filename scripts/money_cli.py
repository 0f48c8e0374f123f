"""Money corrections and the audit reader: charge, refund, reverse, transfer, audit.

Each correction runs in one transaction (scripts.common.transaction): bad
input exits 2 with one sentence and nothing written. The admin (``--actor``,
``$ABONENT_ACTOR`` or the OS user) is the ledger entry's author and the
audit log's actor; the reason is the entry's memo.
"""

from __future__ import annotations

import click
from sqlalchemy import select

from scripts.common import (CliError, actor, emit_json, emit_rows, fetch_page, get_context,
                            json_option, page_options, transaction)

# "-100" is an amount to refuse with a sentence, not an unknown option -1.
NUMBERS_AS_ARGUMENTS = {"ignore_unknown_options": True}

_IDEMPOTENCY = ("With --external-id the same id is recorded once: a retry prints "
                "\"already recorded; nothing changed\" and exits 0. Without it nothing is "
                "deduplicated: every run is a new entry.")

reason_option = click.option("--reason", required=True,
                             help="Why (kept as the ledger entry's memo and in the audit log).")
external_id_option = click.option("--external-id",
                                  help="Your id for this correction (1-100 characters, no "
                                       "spaces); the same id is recorded once.")


def _view(session, correction) -> dict:
    from rating.models import Account
    rows = []
    for posting in correction.postings:
        number, balance = session.execute(select(Account.number, Account.balance)
                                          .where(Account.id == posting.account_id)).one()
        rows.append(dict(entry_id=posting.entry_id, account=number, amount=posting.amount,
                         kind=posting.kind, balance=balance))
    return dict(action=correction.action, created=correction.created, entries=rows)


def _report(view: dict, as_json: bool, external_id: str | None) -> None:
    if as_json:
        emit_json(view)
        return
    if not view["created"]:
        click.echo(f"{view['action']} {external_id} already recorded; nothing changed")
        return
    for row in view["entries"]:
        click.echo(f"{view['action']}: entry {row['entry_id']}, {row['amount']} on account "
                   f"{row['account']}; balance {row['balance']}")


def _debit_command(name: str, doc: str):
    @click.command(name, context_settings=NUMBERS_AS_ARGUMENTS, help=f"{doc}\n\n{_IDEMPOTENCY}")
    @click.argument("number")
    @click.argument("amount")
    @reason_option
    @external_id_option
    @json_option
    def command(number, amount, reason, external_id, as_json):
        from rating import accounts as acc, corrections
        with transaction() as session:
            account = acc.find_account(session, number)
            correction = getattr(corrections, name)(session, account, amount, reason=reason,
                                                    actor=actor(), external_id=external_id)
            session.flush()
            view = _view(session, correction)
        _report(view, as_json, external_id)
    return command


charge = _debit_command(
    "charge", "Charge AMOUNT to account NUMBER (a manual debit, ledger kind correction). "
              "It may take the balance below the credit limit; the balance policy then "
              "applies at once, as after a payment.")
refund = _debit_command(
    "refund", "Refund AMOUNT from account NUMBER's balance to the subscriber (ledger kind "
              "refund, a debit). It may take the balance below zero; the balance policy "
              "then applies at once.")


@click.command("transfer", context_settings=NUMBERS_AS_ARGUMENTS,
               help="Move AMOUNT from account SOURCE to account TARGET: both entries in one "
                    "transaction, or neither. Refused if SOURCE would pass its credit limit."
                    f"\n\n{_IDEMPOTENCY}")
@click.argument("source")
@click.argument("target")
@click.argument("amount")
@reason_option
@external_id_option
@json_option
def transfer(source, target, amount, reason, external_id, as_json):
    from rating import accounts as acc, corrections
    with transaction() as session:
        correction = corrections.transfer(session, acc.find_account(session, source),
                                          acc.find_account(session, target), amount,
                                          reason=reason, actor=actor(), external_id=external_id)
        session.flush()
        view = _view(session, correction)
    _report(view, as_json, external_id)


@click.command("reverse", context_settings=NUMBERS_AS_ARGUMENTS)
@click.argument("entry_id")
@reason_option
@json_option
def reverse(entry_id, reason, as_json):
    """Cancel ledger entry ENTRY_ID with an opposite entry (see `abonent ledger`).

    Once only: reversing a reversal, or an entry already reversed, is refused
    and changes nothing. Reversing either leg of a transfer reverses both."""
    from rating import corrections
    if not entry_id.isdigit() or len(entry_id) > 18:
        raise CliError(f"entry id must be a ledger entry number, not {entry_id!r}")
    with transaction() as session:
        correction = corrections.reverse(session, int(entry_id), reason=reason, actor=actor())
        session.flush()
        view = _view(session, correction)
    _report(view, as_json, None)


# -- audit -------------------------------------------------------------------

@click.command("audit")
@click.option("--account", "number", help="Only this account's lines.")
@click.option("--actor", "who", help="Only this actor's lines (e.g. admin:alice).")
@click.option("--action", "prefix", help="Only actions starting with this (e.g. ledger.).")
@click.option("--since", help="From this day (YYYY-MM-DD, the operator's time zone) or "
                              "UTC moment (YYYY-MM-DDTHH:MM).")
@click.option("--until", help="Up to the end of this day, or before this UTC moment.")
@page_options(default_limit=200)
@json_option
def audit(number, who, prefix, since, until, limit, offset, as_json):
    """Read the audit log (every change by an admin or a subscriber), newest first."""
    from rating import accounts as acc
    from rating import reports
    from rating.models import Account, OperationLog
    zone = get_context().settings.get("", "timezone")
    with transaction() as session:
        start = reports.moment(since, "--since", zone) if since else None
        end = reports.moment(until, "--until", zone, end=True) if until else None
        if start is not None and end is not None and start >= end:
            raise CliError("--since must be before --until")
        query = (select(OperationLog, Account.number)
                 .outerjoin(Account, Account.id == OperationLog.account_id)
                 .order_by(OperationLog.created_at.desc(), OperationLog.id.desc()))
        if number is not None:
            query = query.where(OperationLog.account_id == acc.find_account(session, number).id)
        if who is not None:
            query = query.where(OperationLog.actor == who)
        if prefix is not None:
            query = query.where(OperationLog.action.startswith(prefix, autoescape=True))
        if start is not None:
            query = query.where(OperationLog.created_at >= start)
        if end is not None:
            query = query.where(OperationLog.created_at < end)
        rows = [dict(id=line.id, created_at=line.created_at, actor=line.actor,
                     action=line.action, account=account_number, details=line.details or {})
                for line, account_number in fetch_page(session, query, limit, offset,
                                                       scalars=False)]
    if not as_json:
        for row in rows:
            row["details"] = " ".join(f"{k}={v}" for k, v in sorted(row["details"].items())
                                      if v is not None)
    emit_rows(rows, as_json, ["created_at", "actor", "action", "account", "details"])
