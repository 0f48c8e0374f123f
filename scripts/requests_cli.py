"""``abonent request``: the operator's side of the cabinet's service requests.

``set`` moves a request on (an ``--answer`` with it is one entry in the
request's thread), ``reply`` adds the operator's message and ``show``
prints the thread in order: the request's text, then every message and
status change.
"""

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
@click.option("--answer", help="A message to the subscriber, added to the request's thread "
              "with the status change.")
@json_option
def request_set(request_id, status, answer, as_json):
    """Set request ID's STATUS (new, in_progress, done, rejected)."""
    request_id = _request_id(request_id)
    with transaction() as session:
        view = service_requests.set_status(session, int(request_id), status, answer=answer,
                                           actor=actor())
    if as_json:
        emit_json(view.as_dict())
    else:
        click.echo(f"request {view.id} of account {view.account_number} is {view.status}")


@request_group.command("reply")
@click.argument("request_id", metavar="ID")
@click.argument("text")
@json_option
def request_reply(request_id, text, as_json):
    """Answer request ID with TEXT (the subscriber sees it in the cabinet);
    the status stays."""
    request_id = _request_id(request_id)
    with transaction() as session:
        message = service_requests.reply(session, int(request_id), text, actor=actor())
        view = service_requests.get(session, int(request_id))
    if as_json:
        emit_json({**message.as_dict(), "request": view.id, "account": view.account_number})
    else:
        click.echo(f"answer {message.id} added to request {view.id} of account "
                   f"{view.account_number} ({view.status})")


@request_group.command("show")
@click.argument("request_id", metavar="ID")
@json_option
def request_show(request_id, as_json):
    """Show request ID and its thread, oldest first."""
    request_id = _request_id(request_id)
    with transaction() as session:
        view = service_requests.get(session, int(request_id))
        thread = service_requests.threads(session, [view.id])[view.id]
    if as_json:
        emit_json({**view.as_dict(), "messages": [m.as_dict() for m in thread]})
        return
    click.echo(f"request {view.id} of account {view.account_number}: {view.topic}, "
               f"{view.status}")
    click.echo(f"{view.created_at:%Y-%m-%d %H:%M:%S} subscriber ({view.author}):")
    click.echo(_indented(view.body))
    for message in thread:
        what = message.author_kind
        if message.status is not None:
            what += f", status {message.status}"
        click.echo(f"{message.created_at:%Y-%m-%d %H:%M:%S} {what} ({message.author}):")
        if message.body is not None:
            click.echo(_indented(message.body))


def _request_id(value: str) -> str:
    if not (value.isascii() and value.isdigit()):
        raise CliError(f"a request id is a number, not {value!r}")
    if int(value) > 2 ** 31 - 1:  # beyond the id column: no such request
        raise CliError(f"request {int(value)} does not exist")
    return value


def _indented(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def _short(text: str | None, width: int = 40) -> str | None:
    if text is None:
        return None
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 1] + "…"
