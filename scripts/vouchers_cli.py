"""``abonent voucher``: issue prepaid cards and list them.

The codes are printed once, at issue; the database keeps only their hashes
(rating.vouchers), so a lost listing cannot be printed again.
"""

from __future__ import annotations

import click

from rating import vouchers
from scripts.common import (CliError, actor, emit_json, emit_rows, json_option, page_options,
                            transaction, trim_page)


@click.group("voucher")
def voucher_group():
    """Vouchers (prepaid cards)."""


@voucher_group.command("issue")
@click.option("--count", type=int, required=True, help=f"How many, 1-{vouchers.MAX_COUNT}.")
@click.option("--amount", required=True, help="What each is worth, e.g. 500 or 299.90.")
@click.option("--batch", help="A name for this batch (default: the time of issue).")
@json_option
def voucher_issue(count, amount, batch, as_json):
    """Issue COUNT vouchers of AMOUNT and print their codes (shown only now)."""
    if not 1 <= count <= vouchers.MAX_COUNT:
        raise CliError(f"--count must be 1 to {vouchers.MAX_COUNT}")
    with transaction() as session:
        issued = vouchers.issue(session, count=count, amount=amount, batch=batch, actor=actor())
        rows = [dict(id=v.id, code=v.code, amount=v.amount, batch=v.batch) for v in issued]
    if as_json:
        emit_json(rows)
        return
    click.echo(f"{len(rows)} voucher(s) of {rows[0]['amount']} in batch {rows[0]['batch']}; "
               f"the codes are shown only now:", err=True)
    for row in rows:
        click.echo(row["code"])


@voucher_group.command("list")
@click.option("--batch", help="Only this batch.")
@page_options()
@json_option
def voucher_list(batch, limit, offset, as_json):
    """List vouchers (the code's last characters only) and who redeemed them."""
    with transaction() as session:
        rows = [dict(id=v.id, batch=v.batch, code_tail=v.code_tail, amount=v.amount,
                     created_at=v.created_at, redeemed_by=v.redeemed_by,
                     redeemed_at=v.redeemed_at)
                for v in trim_page(vouchers.listing(session, batch=batch, limit=limit + 1,
                                                    offset=offset), limit, offset)]
    emit_rows(rows, as_json, ["id", "batch", "code_tail", "amount", "redeemed_by",
                              "redeemed_at"])
