"""``abonent request``: the operator's side of the cabinet's service requests."""

from __future__ import annotations

import click

from rating import requests as service_requests
from scripts.common import (CliError, actor, emit_json, emit_rows, json_option, page_options,
                            transaction, trim_page)


@click.group("request")
def request_group():
    """Service requests (заявки) from the cabinet."""


@request_group.command("list")
@click.option("--status", help="Only requests in this status: "
              + ", ".join(service_requests.STATUSES) + ".")
@click.option("--account", "number", help="Only this account's requests.")
@page_options()
@json_option
def request_list(status, number, limit, offset, as_json):
    """List requests, oldest first."""
    with transaction() as session:
        rows = [view.as_dict() for view in trim_page(service_requests.listing(
            session, status=status, account_number=number, limit=limit + 1, offset=offset),
            limit, offset)]
    if not as_json:
        for row in rows:
            row["text"] = _short(row["text"])
            row["answer"] = _short(row["answer"])
    emit_rows(rows, as_json, ["id", "created_at", "account", "topic", "status", "text",
                              "answer"])


@request_group.command("set")
@click.argument("request_id", metavar="ID")
@click.argument("status")
@click.option("--answer", help="The answer the subscriber sees in the cabinet.")
@json_option
def request_set(request_id, status, answer, as_json):
    """Set request ID's STATUS (new, in_progress, done, rejected)."""
    if not request_id.isdigit():
        raise CliError(f"a request id is a number, not {request_id!r}")
    with transaction() as session:
        view = service_requests.set_status(session, int(request_id), status, answer=answer,
                                           actor=actor())
    if as_json:
        emit_json(view.as_dict())
    else:
        click.echo(f"request {view.id} of account {view.account_number} is {view.status}")


def _short(text: str | None, width: int = 40) -> str | None:
    if text is None:
        return None
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 1] + "…"
