"""The OSMP endpoint payment agents and terminal networks call: /osmp/<agent>.

Machine to machine: no cabinet login, no CSRF token (csrf.exempt), no
cookie. The agent authenticates with HTTP Basic (user: the agent's name)
— a password in the query string would land in every access log on the
way — and its source address must be in the agent's allowed networks.

Parameters come as the protocol sends them: in the query string (GET) or a
URL-encoded body (POST). GET changes the database here, unlike anywhere
else in the cabinet: OSMP agents pay with GET, and the change is idempotent
on (agent, txn_id), so a repeat is harmless. That is why this view opens
its own session (a transaction) instead of the cabinet's db(), whose GETs
run on an autocommit connection.

Every answer is XML in UTF-8 with an OSMP result code (rating.agents.Result):
200 for every protocol answer; 401 (with a result) when the agent or its
password is wrong, 403 when the address is not allowed.
"""

from __future__ import annotations

import logging
from xml.sax.saxutils import escape

from flask import Blueprint, Flask, Response, current_app, request
from flask_wtf.csrf import CSRFProtect
from sqlalchemy.exc import DBAPIError, OperationalError

from rating import agents
from rating.agents import Answer, OsmpRefusal, Result
from rating.validate import DomainError

log = logging.getLogger(__name__)

blueprint = Blueprint("osmp", __name__)

COMMANDS = ("check", "pay")


def install(app: Flask, csrf: CSRFProtect) -> None:
    app.register_blueprint(blueprint)
    csrf.exempt(app.view_functions["osmp.gateway"])


def render(answer: Answer) -> str:
    parts = ['<?xml version="1.0" encoding="UTF-8"?>', "<response>"]
    if answer.txn_id is not None:
        parts.append(f"<osmp_txn_id>{escape(answer.txn_id)}</osmp_txn_id>")
    if answer.prv_txn is not None:
        parts.append(f"<prv_txn>{answer.prv_txn}</prv_txn>")
    if answer.amount is not None:
        parts.append(f"<sum>{answer.amount:.2f}</sum>")
    parts.append(f"<result>{answer.code}</result>")
    parts.append(f"<comment>{escape(answer.comment)}</comment>")
    if answer.name:
        parts.append(f'<fields><field1 name="name">{escape(answer.name)}</field1></fields>')
    parts.append("</response>")
    return "\n".join(parts) + "\n"


def _xml(answer: Answer, status: int = 200, headers=None) -> Response:
    response = Response(render(answer), status=status, mimetype="text/xml",
                        headers=headers or {})
    response.charset = "utf-8"
    return response


def _txn(params) -> str | None:
    value = params.get("txn_id")
    # Echoed back only when it is a well-formed id.
    try:
        return agents.parse_txn_id(value)
    except OsmpRefusal:
        return None


@blueprint.route("/osmp/<agent_name>", methods=["GET", "POST"])
def gateway(agent_name: str):
    params = request.values
    txn_id = _txn(params)
    command = params.get("command", "")
    auth = request.authorization
    user = auth.username if auth is not None and auth.type == "basic" else None
    password = auth.password if auth is not None and auth.type == "basic" else None
    ctx = current_app.extensions["abonent"]
    session = ctx.Session()
    try:
        try:
            if user != agent_name:
                raise OsmpRefusal(Result.OTHER, "user")
            agent = agents.authenticate(session, agent_name, password, request.remote_addr)
        except OsmpRefusal as refusal:
            session.rollback()
            # The reason, never the password or the Authorization header.
            log.warning("osmp.refused agent=%r ip=%s reason=%s", agent_name[:40],
                        request.remote_addr, refusal.comment)
            if refusal.comment == "address":
                return _xml(Answer(Result.OTHER, "address not allowed", txn_id), 403)
            if refusal.comment == "disabled":
                return _xml(Answer(Result.REFUSED, "the agent is disabled", txn_id))
            return _xml(Answer(Result.OTHER, "authentication failed", txn_id), 401,
                        {"WWW-Authenticate": 'Basic realm="osmp"'})
        if command not in COMMANDS:
            return _xml(Answer(Result.OTHER, "command must be check or pay", txn_id))
        try:
            if command == "check":
                answer = agents.check(session, agent, params)
                session.rollback()
            else:
                answer = agents.pay(session, agent, params)
                session.commit()
        except OsmpRefusal as refusal:
            session.rollback()
            log.info("osmp.%s agent=%s txn_id=%s result=%s reason=%s", command, agent.name,
                     txn_id, refusal.code, refusal.comment)
            return _xml(Answer(refusal.code, refusal.comment, txn_id))
        except DomainError as error:
            # The ledger refused (a key already used with another amount):
            # not a payment we can accept as sent.
            session.rollback()
            log.warning("osmp.%s agent=%s txn_id=%s result=300 reason=%s", command,
                        agent.name, txn_id, error)
            return _xml(Answer(Result.OTHER, str(error), txn_id))
        log.info("osmp.%s agent=%s txn_id=%s result=0 prv_txn=%s credited=%s", command,
                 agent.name, answer.txn_id, answer.prv_txn, answer.credited)
        return _xml(answer)
    except (OperationalError, DBAPIError) as error:
        # The database is away or the transaction lost a race it could not
        # finish: nothing was committed; the agent repeats the request.
        session.rollback()
        log.error("osmp.database_error agent=%r txn_id=%s error=%s", agent_name[:40], txn_id,
                  type(error).__name__)
        return _xml(Answer(Result.TEMPORARY, "temporary error, repeat later", txn_id))
    finally:
        session.close()
