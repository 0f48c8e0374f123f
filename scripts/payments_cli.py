"""``abonent payment list|show|refund|poll|expire|autopay``: the operator's
view of payments through providers (card acquiring, the test bank, agents'
``osmp:<agent>`` rows) and what an operator does with them.

Attached to the ``payment`` group at the bottom of scripts/admin.py (also
reachable as ``abonent payments``).
"""

from __future__ import annotations

import datetime as dt

import click
from sqlalchemy import select

from scripts.common import (CliError, actor, emit_json, emit_rows, emit_table, fetch_page,
                            get_context, json_option, page_options, transaction)


def _moment(value: str | None, what: str, end: bool = False) -> dt.datetime | None:
    """A day (2026-12-01) or a UTC time (2026-12-01T10:00); a day as --until
    takes the whole day."""
    if value is None:
        return None
    try:
        if len(value) == 10:
            day = dt.date.fromisoformat(value)
            moment = dt.datetime.combine(day, dt.time())
            return moment + dt.timedelta(days=1) if end else moment
        return dt.datetime.fromisoformat(value).replace(tzinfo=None)
    except ValueError:
        raise CliError(f"{what} must be a day like 2026-12-01 or a time like "
                       f"2026-12-01T10:00, not {value!r}") from None


def _provider(ctx):
    from rating import yookassa
    provider = yookassa.from_settings(ctx.settings)
    if provider is None:
        raise CliError("YooKassa is not configured (settings yookassa.shop_id and "
                       "yookassa.secret_key)")
    return provider


def _row_view(row, number: str) -> dict:
    return dict(id=row.id, provider=row.provider, txn_id=row.txn_id, account=number,
                amount=row.amount, status=row.status, origin=row.origin,
                created_at=row.created_at, settled_at=row.settled_at, late=bool(row.late))


@click.command("list")
@click.option("--provider", help="Only this provider's (yookassa, testpay, osmp:AGENT).")
@click.option("--state", type=click.Choice(["pending", "paid", "declined", "expired"]),
              help="Only payments in this state.")
@click.option("--account", "number", help="Only this account's payments.")
@click.option("--since", help="Started at or after (a day, or a UTC time).")
@click.option("--until", help="Started before (a day counts whole).")
@page_options(default_limit=200)
@json_option
def payment_list(provider, state, number, since, until, limit, offset, as_json):
    """List payments through providers, newest first."""
    from rating import accounts as acc
    from rating.models import Account
    from rating.payments import ProviderPayment
    start, end = _moment(since, "--since"), _moment(until, "--until", end=True)
    with transaction() as session:
        query = (select(ProviderPayment, Account.number)
                 .join(Account, Account.id == ProviderPayment.account_id)
                 .order_by(ProviderPayment.created_at.desc(), ProviderPayment.id.desc()))
        if provider:
            query = query.where(ProviderPayment.provider == provider)
        if state:
            query = query.where(ProviderPayment.status == state)
        if number:
            query = query.where(ProviderPayment.account_id
                                == acc.find_account(session, number).id)
        if start is not None:
            query = query.where(ProviderPayment.created_at >= start)
        if end is not None:
            query = query.where(ProviderPayment.created_at < end)
        rows = [_row_view(row, account_number) for row, account_number
                in fetch_page(session, query, limit, offset, scalars=False)]
    emit_rows(rows, as_json, ["id", "provider", "txn_id", "account", "amount", "status",
                              "created_at", "settled_at"])


def _find_payment(session, ident: str):
    """A payment by our id, or by the provider's transaction id."""
    from rating.payments import ProviderPayment
    row = session.get(ProviderPayment, int(ident)) if ident.isdigit() else None
    if row is None:
        rows = list(session.scalars(select(ProviderPayment)
                                    .where(ProviderPayment.txn_id == ident).limit(2)))
        if len(rows) > 1:
            raise CliError(f"transaction {ident} is known at several providers; give our id")
        row = rows[0] if rows else None
    if row is None:
        raise CliError(f"no payment {ident}")
    return row


@click.command("show")
@click.argument("ident", metavar="ID")
@json_option
def payment_show(ident, as_json):
    """Show a payment: provider, state, amounts, refunds, receipt, history."""
    from rating import payments
    from rating.models import Account
    with transaction() as session:
        row = _find_payment(session, ident)
        number = session.get(Account, row.account_id).number
        refunds = [dict(id=r.id, refund_id=r.refund_id, amount=r.amount, status=r.status,
                        actor=r.actor, created_at=r.created_at, key=r.idempotence_key)
                   for r in payments.refunds_of(session, row.id)]
        history = [dict(at=e.at, from_status=e.from_status, to_status=e.to_status,
                        source=e.source, detail=e.detail)
                   for e in payments.history(session, row.id)]
        view = dict(_row_view(row, number), entry_id=row.entry_id,
                    idempotence_key=row.idempotence_key,
                    refunded=payments.refunded_total(session, row.id),
                    method=row.method_title, receipt=row.receipt, refunds=refunds,
                    history=history)
    if as_json:
        emit_json(view)
        return
    for key in ("id", "provider", "txn_id", "account", "amount", "status", "origin",
                "created_at", "settled_at", "late", "entry_id", "idempotence_key", "refunded",
                "method"):
        click.echo(f"{key}: {'-' if view[key] is None else view[key]}")
    if row.receipt:
        customer = row.receipt.get("customer", {})
        click.echo(f"receipt: to {customer.get('email') or customer.get('phone')}")
        for item in row.receipt.get("items", []):
            click.echo(f"  {item.get('description')} x {item.get('quantity')} = "
                       f"{item.get('amount', {}).get('value')} vat_code={item.get('vat_code')} "
                       f"{item.get('payment_subject')}/{item.get('payment_mode')}")
    if refunds:
        click.echo("refunds:")
        emit_table(refunds, ["id", "refund_id", "amount", "status", "actor", "created_at"])
    click.echo("history:")
    emit_table(history, ["at", "from_status", "to_status", "source", "detail"])


@click.command("refund", context_settings={"ignore_unknown_options": True})
@click.argument("ident", metavar="ID")
@click.argument("amount", required=False)
@click.option("--key", help="An idempotence key: the same refund run again refunds once.")
@click.option("--reason", help="Shown with the refund in the subscriber's statement "
                               "(default: the provider's payment id).")
@json_option
def payment_refund(ident, amount, key, reason, as_json):
    """Refund AMOUNT (default: all that is left) of a paid payment to the card
    it came from, and take it off the account's balance."""
    from rating import payments, yookassa
    from rating.models import Account
    ctx = get_context()
    with transaction() as session:
        row = _find_payment(session, ident)
        if row.provider != yookassa.YooKassa.name:
            raise CliError(f"payment {row.id} came through {row.provider}; only YooKassa "
                           f"payments can be refunded here")
        provider = _provider(ctx)
        account = session.get(Account, row.account_id)
        value = None
        if amount is not None:
            from rating import validate
            try:
                value = validate.amount(amount, "refund amount", positive=True)
            except (ValueError, TypeError, ArithmeticError):
                raise CliError(f"a refund must be an amount like 100 or 99.50, "
                               f"not {amount!r}") from None
        receipt = yookassa.receipt(account, value if value is not None
                                   else row.amount - payments.refunded_total(session, row.id),
                                   provider.vat_code) if row.receipt else None
        refund, created = payments.refund(session, provider, row, value, actor=actor(),
                                          idempotence_key=key, receipt=receipt,
                                          reason=reason)
        session.flush()
        session.refresh(account)
        view = dict(payment_id=row.id, refund_id=refund.refund_id, amount=refund.amount,
                    status=refund.status, created=created, key=refund.idempotence_key,
                    refunded=payments.refunded_total(session, row.id),
                    balance=account.balance)
    if as_json:
        emit_json(view)
    elif created:
        click.echo(f"refund of {view['amount']} ({view['status']}) for payment {row.id}; "
                   f"balance {view['balance']}")
    else:
        click.echo(f"refund {key} was already made; nothing changed")


@click.command("poll")
@click.option("--days", type=click.IntRange(1, 366), default=None,
              help="Ask about payments started this many days back (default: "
                   "yookassa.poll_days).")
@json_option
def payment_poll(days, as_json):
    """Ask YooKassa about payments still pending (or expired) here: the
    recovery for a lost webhook."""
    from config.db import utcnow
    from rating import payments
    ctx = get_context()
    provider = _provider(ctx)
    result = payments.poll(ctx.Session, provider, utcnow(), source="poll",
                           lookback_days=days or ctx.settings.get("yookassa", "poll_days"))
    view = dict(checked=result.checked,
                settled=[dict(payment_id=s.payment_id, status=s.status, amount=s.amount,
                              credited=s.credited, late=s.late) for s in result.settled],
                errors=result.errors)
    if as_json:
        emit_json(view)
    else:
        click.echo(f"checked {result.checked}; settled {len(result.settled)}")
        for line in view["settled"]:
            click.echo(f"  payment {line['payment_id']}: {line['status']} {line['amount']}"
                       + (" (credited late)" if line["late"] else ""))
        for error in result.errors:
            click.echo(f"  {error}", err=True)


@click.command("expire")
@click.option("--minutes", type=click.IntRange(1), default=None,
              help="Pending for longer than this (default: payments.pending_expiry_minutes).")
@json_option
def payment_expire(minutes, as_json):
    """Mark payments pending for too long expired (the scheduler does it too)."""
    from config.db import utcnow
    from rating import payments
    ctx = get_context()
    minutes = minutes or ctx.settings.get("payments", "pending_expiry_minutes")
    with transaction() as session:
        count = payments.expire_pending(session, utcnow(), minutes, source="cli")
    if as_json:
        emit_json(dict(expired=count))
    else:
        click.echo(f"expired {count} payment(s) pending for more than {minutes} minutes")


@click.command("autopay")
@json_option
def payment_autopay(as_json):
    """Run today's autopayments now (the scheduler does it too; at most one a
    day per account however often it runs)."""
    from rating import jobs
    ctx = get_context()
    results = jobs.run_autopay(ctx.engine, ctx.Session, ctx.settings, _provider(ctx))
    rows = [dict(account_id=r.account_id, outcome=r.outcome, payment_id=r.payment_id)
            for r in results]
    if as_json:
        emit_json(rows)
    else:
        emit_table(rows, ["account_id", "outcome", "payment_id"])


COMMANDS = (payment_list, payment_show, payment_refund, payment_poll, payment_expire,
            payment_autopay)
