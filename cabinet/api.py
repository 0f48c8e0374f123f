"""The cabinet's JSON API, ``/api/v1/...``: the pages' actions for programs.

Two ways in:

- ``Authorization: Bearer <token>`` with a personal API token (made on the
  "API tokens" page). No cookie is read and no CSRF token is needed: a
  browser never adds that header by itself. Each token is rate-limited.
- The cabinet's session cookie (the pages' own scripts, a logged-in
  browser). Then a request that changes anything needs the CSRF token in
  an ``X-CSRFToken`` header, exactly as a form would.

Every answer is JSON; an error is ``{"error": "<sentence>"}`` with 400,
401, 403, 404, 405 or 429. Money is a decimal string ("500.00"), a time
is ISO 8601 in UTC ("2026-11-23T12:00:00Z"). An account id that is not the
caller's answers 404, like one that does not exist. A viewer (or a
read-only token) may read and is refused every change with 403.

The views call the same use cases as the pages (rating.cabinet_ops,
rating.promised, rating.options, cabinet.queries); nothing here decides a
business rule. The description of all of it is ``/api/v1/openapi.json``
(cabinet.openapi).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from decimal import Decimal
from functools import wraps

from flask import Blueprint, Flask, abort, current_app, g, jsonify, request
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from limits import parse as parse_limit
from sqlalchemy import select
from werkzeug.exceptions import HTTPException

from cabinet import overview, periods, queries
from cabinet.app import db, ladder
from config.db import utcnow
from rating import api_tokens, cabinet_ops, options, org, promised
from rating.accounts import DomainError
from rating.api_tokens import Caller
from rating.models import Account, PromisedPayment
from rating import validate

log = logging.getLogger(__name__)

blueprint = Blueprint("api", __name__, url_prefix="/api/v1")

# Per token, in each process: a script in a loop must not starve the
# others. ``app.config["ABONENT_API_RATE_LIMIT"]`` overrides it.
RATE_LIMIT = "120 per minute"
TURBO_CODE = "turbo"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")

_MESSAGES = {400: "bad request", 401: "login required", 403: "forbidden",
             404: "not found", 405: "method not allowed",
             413: "the request body is too large", 429: "too many requests"}


# -- answers -------------------------------------------------------------------

def error(status: int, message: str | None = None, **headers):
    response = jsonify({"error": message or _MESSAGES.get(status, "error")})
    response.status_code = status
    response.headers.update(headers)
    return response


def iso(value: dt.datetime | None) -> str | None:
    """A stored (naive UTC) time as ISO 8601 with a Z."""
    if value is None:
        return None
    return value.replace(tzinfo=None, microsecond=0).isoformat() + "Z"


def amount(value: Decimal | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, Decimal):
        raise TypeError(f"money must be a Decimal, not {type(value).__name__}")
    return f"{value:.2f}"


def _http_error(exc: HTTPException):
    # abort() inside an API view, a CSRFError (a BadRequest) and the like.
    message = exc.description if exc.code == 400 and exc.description else None
    return error(exc.code or 500, message)


# Flask looks for a handler by status code (blueprint, then app) before it
# looks by class, and the app has HTML ones for 400 (CSRFError), 404, 429.
blueprint.register_error_handler(HTTPException, _http_error)
for _code in (400, 403, 404, 405, 413, 429):
    blueprint.register_error_handler(_code, _http_error)
blueprint.register_error_handler(CSRFError, _http_error)


# -- who is calling ------------------------------------------------------------

def caller() -> Caller:
    return g.api_caller


def _actor() -> str:
    who = caller()
    if who.token_id is None:
        return f"cabinet:{who.login}"
    return f"api:{who.login}:{who.prefix}"


def _over_limit(token_id: int):
    limiter = current_app.extensions["abonent_limiter"].limiter
    limit = parse_limit(current_app.config.get("ABONENT_API_RATE_LIMIT", RATE_LIMIT))
    if limiter.hit(limit, "api-token", str(token_id)):
        return None
    reset_at, _remaining = limiter.get_window_stats(limit, "api-token", str(token_id))
    retry_after = max(1, int(reset_at - time.time()) + 1)
    return error(429, "too many requests for this token; try again later",
                 **{"Retry-After": str(retry_after)})


def bearer_caller():
    """``(caller, None)`` for a valid token in this request's Authorization
    header, else ``(None, the error answer)``. Checked once per request."""
    if "api_bearer" in g:
        return g.api_bearer
    scheme, _, secret = request.headers.get("Authorization", "").strip().partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        result = None, error(401, "the Authorization header must be 'Bearer <token>'",
                             **{"WWW-Authenticate": 'Bearer realm="abonent"'})
    else:
        found = api_tokens.authenticate(db(), secret, utcnow())
        if found is None:
            # Never the token itself in a log line.
            log.info("cabinet.api_token_refused ip=%s", request.remote_addr)
            result = None, error(401, "the token is unknown, revoked or expired",
                                 **{"WWW-Authenticate": 'Bearer realm="abonent", '
                                                        'error="invalid_token"'})
        else:
            result = found, _over_limit(found.token_id)
            if result[1] is not None:
                result = None, result[1]
    g.api_bearer = result
    return result


def authenticated(view):
    """A bearer token or a logged-in session; sets ``g.api_caller``.

    With an Authorization header the cookie is not looked at: a browser
    that is logged in but sends a bad token is refused.
    """
    @wraps(view)
    def wrapper(**kwargs):
        if "Authorization" in request.headers:
            found, refused = bearer_caller()
            if refused is not None:
                return refused
            g.api_caller = found
        else:
            if not current_user.is_authenticated:
                return error(401, "login required")
            if request.method not in SAFE_METHODS:
                # The blueprint is exempt from CSRFProtect's blanket check
                # (bearer calls carry no CSRF token); a cookie carries the
                # browser's authority, so here the token is required.
                current_app.extensions["csrf"].protect()
            g.api_caller = Caller(None, None, current_user.user_id, current_user.account_id,
                                  current_user.login, current_user.role)
        return view(**kwargs)
    return wrapper


def _load_user_from_bearer(req):
    """Flask-Login's request loader: ``login_required`` API routes of other
    blueprints take a bearer token too (reads; their changes still need a
    CSRF token). The principal is never put in the session."""
    if not req.path.startswith("/api/") or "Authorization" not in req.headers:
        return None
    found, refused = bearer_caller()
    if refused is not None:
        if refused.status_code == 429:
            abort(refused)
        return None
    from cabinet.auth import Principal
    return Principal(found.user_id, found.account_id, found.login, found.role, epoch=-1,
                     own_account_id=found.account_id, rights=caller_rights(found))


def caller_rights(who: Caller | None = None) -> frozenset:
    """What the caller may do on its account (rating.org). A cookie: the
    login's rights on the selected account. A token: its role's rights (the
    lower of its scope and the user's role), and for a login with grants on
    a customer's branches no more than those give on the token's account."""
    who = who or caller()
    if who.token_id is None:
        return current_user.rights
    cached = g.get("api_rights")
    if cached is not None and cached[0] == who.token_id:
        return cached[1]
    rights = org.role_rights(who.role)
    if org.has_grants(db(), who.user_id):
        rights = rights & org.rights_on(db(), who.user_id, who.account_id)
    g.api_rights = (who.token_id, rights)
    return rights


def own_account(view):
    """Another account's id answers 404, as if it did not exist; so does the
    caller's own when its grants do not let it see it."""
    @wraps(view)
    def wrapper(account_id: int, **kwargs):
        if account_id != caller().account_id or "view" not in caller_rights():
            return error(404)
        return view(account_id=account_id, **kwargs)
    return wrapper


def may_change(group: str = "money"):
    """A change of rating.roles' ``group``: refused with 403 without the right."""
    def decorate(view):
        @wraps(view)
        def wrapper(**kwargs):
            if not org.may(caller_rights(), group):
                return error(403, f"the {caller().role} role may only read")
            return view(**kwargs)
        return wrapper
    return decorate


def may_change_service(view):
    """A change of the service (a turbo): the owner's (rating.roles)."""
    @wraps(view)
    def wrapper(**kwargs):
        if not org.may(caller_rights(), "service"):
            return error(403, f"the {caller().role} role may not change the service")
        return view(**kwargs)
    return wrapper


def account_route(rule: str, **options_):
    """A route under /accounts/<account_id>: authenticated and scoped."""
    def decorate(view):
        return blueprint.route(f"/accounts/<int:account_id>{rule}", **options_)(
            authenticated(own_account(view)))
    return decorate


def _body() -> dict:
    """The request's JSON object; numbers come as Decimal, never float."""
    raw = request.get_data(cache=True, as_text=True)
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw, parse_float=Decimal)
    except ValueError:
        raise DomainError("the body must be JSON") from None
    except ArithmeticError:
        # A number whose exponent Decimal cannot hold (e.g. 2e2222222222222222222).
        raise DomainError("a number in the body is out of range") from None
    if not isinstance(value, dict):
        raise DomainError("the body must be a JSON object")
    return value


def _timezone() -> str:
    return current_app.config["BABEL_DEFAULT_TIMEZONE"]


# -- the description -------------------------------------------------------------

@blueprint.get("/openapi.json")
def openapi():
    """Public: the description is no secret, and clients fetch it before a token."""
    from cabinet.openapi import document
    cached = current_app.extensions.get("abonent_openapi")
    if cached is None:
        cached = current_app.extensions["abonent_openapi"] = document(current_app)
    return jsonify(cached)


# -- reads ---------------------------------------------------------------------

@blueprint.get("/me")
@authenticated
def me():
    who = caller()
    return jsonify({"login": who.login, "role": who.role, "account_id": who.account_id,
                    "token": None if who.token_id is None else {"prefix": who.prefix}})


def _speed(session, account_id: int):
    account = session.get(Account, account_id)
    speed = cabinet_ops.speed_now(session, account, utcnow(), ladder(), _timezone())
    if speed is None:
        return None
    return {"profile": speed.profile, "rate_down_kbps": speed.rate_down_kbps,
            "rate_up_kbps": speed.rate_up_kbps, "until": iso(speed.until)}


@account_route("")
def account(account_id: int):
    session = db()
    view = queries.account_view(session, account_id)
    if view is None:
        return error(404)
    tariff = view.tariff
    return jsonify({
        "id": view.id, "number": view.number, "name": view.name, "kind": view.kind,
        "state": view.state, "profile": view.profile, "balance": amount(view.balance),
        "credit_limit": amount(view.credit_limit),
        "tariff": None if tariff is None else {
            "name": tariff.name, "fee": amount(tariff.fee), "fee_period": tariff.fee_period,
            "rate_down_kbps": tariff.rate_down_kbps, "rate_up_kbps": tariff.rate_up_kbps,
            "negative_rate_kbps": tariff.negative_rate_kbps},
        "speed": _speed(session, account_id),
        "runway": _runway(session, view),
    })


def _runway(session, view):
    """How long the money lasts (rating.runout through cabinet.overview)."""
    today = periods.local_today(_timezone())
    forecast = overview.forecast_for(session, session, view, ladder=ladder(), today=today)
    if forecast is None:
        return None
    return {"runs_out_on": None if forecast.runs_out_on is None
            else forecast.runs_out_on.isoformat(),
            "days_left": None if forecast.runs_out_on is None
            else (forecast.runs_out_on - today).days,
            "needed": amount(forecast.needed), "monthly_cost": amount(forecast.monthly_cost),
            "no_fees": forecast.no_fees,
            "next": [{"day": step.day.isoformat(), "profile": step.profile}
                     for step in forecast.steps]}


@account_route("/sessions")
def sessions(account_id: int):
    try:
        period = periods.month(request.args.get("month"), _timezone(),
                               periods.local_today(_timezone()))
    except periods.PeriodError as exc:
        return error(400, str(exc))
    rows = queries.sessions_between(db(), account_id, period.start_utc, period.end_utc)
    return jsonify({
        "month": period.first_day.strftime("%Y-%m"), "start": iso(period.start_utc),
        "end": iso(period.end_utc),
        "total_down": sum(r.octets_down for r in rows),
        "total_up": sum(r.octets_up for r in rows),
        "sessions": [{"started_at": iso(r.started_at), "stopped_at": iso(r.stopped_at),
                      "framed_ip": r.framed_ip, "octets_down": r.octets_down,
                      "octets_up": r.octets_up, "terminate_cause": r.terminate_cause}
                     for r in rows],
    })


@account_route("/payments")
def payments(account_id: int):
    """The money flow over local days [from, to]: the payments page's statement."""
    zone = _timezone()
    today = periods.local_today(zone)
    try:
        first = periods.parse_day(request.args.get("from"), today.replace(day=1))
        last = periods.parse_day(request.args.get("to"), today)
        period = periods.days(first, last, zone)
        statement = cabinet_ops.statement(db(), account_id, period.start_utc, period.end_utc)
    except (periods.PeriodError, DomainError) as exc:
        return error(400, str(exc))
    return jsonify({
        "from": period.first_day.isoformat(), "to": period.last_day.isoformat(),
        "start": iso(period.start_utc), "end": iso(period.end_utc),
        "opening": amount(statement.opening), "closing": amount(statement.closing),
        "credits": amount(statement.credits), "debits": amount(statement.debits),
        "entries": [{"id": line.entry_id, "created_at": iso(line.created_at),
                     "kind": line.kind, "amount": amount(line.amount),
                     "balance_after": amount(line.balance_after), "memo": line.memo}
                    for line in statement.lines],
    })


def _promise(row: PromisedPayment) -> dict:
    return {"amount": amount(row.amount), "granted_at": iso(row.granted_at),
            "due_at": iso(row.due_at), "status": row.status}


def _rules() -> promised.PromisedRules:
    return promised.PromisedRules.from_settings(current_app.extensions["abonent"].settings)


@account_route("/promised")
def promised_status(account_id: int):
    session = db()
    account_row = session.get(Account, account_id)
    rules = _rules()
    reason = None
    try:
        promised.check(session, account_row, rules.max_amount, utcnow(), rules)
    except DomainError as exc:
        reason = str(exc)
    recent = session.scalars(select(PromisedPayment)
                             .where(PromisedPayment.account_id == account_id)
                             .order_by(PromisedPayment.granted_at.desc()).limit(5)).all()
    return jsonify({"available": reason is None, "reason": reason,
                    "max_amount": amount(rules.max_amount), "term_days": rules.term_days,
                    "fee": amount(rules.fee), "balance": amount(account_row.balance),
                    "recent": [_promise(row) for row in recent]})


# -- changes -------------------------------------------------------------------

def _money_field(body: dict, name: str) -> Decimal:
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
        raise DomainError(f'{name} must be a decimal string like "300.00"')
    try:
        return validate.amount(value, negative_ok=True)
    except (ValueError, ArithmeticError):
        raise DomainError(f'{name} must be a decimal string like "300.00"') from None


@account_route("/promised", methods=["POST"])
@may_change()
def take_promised(account_id: int):
    session = db()
    now = utcnow()
    try:
        value = _money_field(_body(), "amount")
        account_row = session.get(Account, account_id)
        grant = promised.grant(session, account_row, value, now, _rules(), actor=_actor())
    except DomainError as exc:
        session.rollback()
        return error(400, str(exc))
    session.commit()
    created = grant.granted_at == now
    body = _promise(grant)
    body["balance"] = amount(session.get(Account, account_id).balance)
    body["created"] = created
    return jsonify(body), 201 if created else 200


@account_route("/turbo", methods=["POST"])
@may_change()
@may_change_service
def buy_turbo(account_id: int):
    session = db()
    try:
        request_id = _body().get("request_id")
        if not isinstance(request_id, str) or not 8 <= len(request_id) <= 64:
            raise DomainError("request_id must be a string of 8 to 64 characters, new for "
                              "each purchase (a retry with the same one buys once)")
        purchase = options.buy(session, session.get(Account, account_id), TURBO_CODE,
                               utcnow(), request_id=request_id, actor=_actor())
    except DomainError as exc:
        session.rollback()
        return error(400, str(exc))
    session.commit()
    return jsonify({"option_id": purchase.option_id, "ends_at": iso(purchase.ends_at),
                    "created": purchase.created,
                    "balance": amount(session.get(Account, account_id).balance),
                    "speed": _speed(session, account_id)}), 201 if purchase.created else 200


CONTACT_FIELDS = ("email", "phone", "phone_landline")


def _contacts(view) -> dict:
    return {name: getattr(view, name) for name in CONTACT_FIELDS}


@account_route("/contacts")
def contacts(account_id: int):
    return jsonify(_contacts(queries.account_view(db(), account_id)))


@account_route("/contacts", methods=["PUT"])
@may_change("contacts")
def put_contacts(account_id: int):
    """Fields left out keep their value; null or "" clears one."""
    session = db()
    try:
        body = _body()
        unknown = sorted(set(body) - set(CONTACT_FIELDS))
        if unknown:
            raise DomainError(f"unknown field: {unknown[0]}")
        current = _contacts(queries.account_view(session, account_id))
        wanted = {}
        for name in CONTACT_FIELDS:
            value = body.get(name, current[name])
            if value is not None and not isinstance(value, str):
                raise DomainError(f"{name} must be a string or null")
            wanted[name] = value
        changed = cabinet_ops.update_contacts(session, account_id, actor=_actor(), **wanted)
    except DomainError as exc:
        session.rollback()
        return error(400, str(exc))
    session.commit()
    result = _contacts(queries.account_view(session, account_id))
    result["changed"] = sorted(changed)
    return jsonify(result)


# -- wiring --------------------------------------------------------------------

def _method_not_allowed(exc):
    if request.path.startswith("/api/"):
        return error(405)
    return exc


def register(app: Flask) -> None:
    app.register_blueprint(blueprint)
    # Bearer calls carry no CSRF token; the cookie path checks it itself
    # (``authenticated``).
    app.extensions["csrf"].exempt(blueprint)
    app.register_error_handler(405, _method_not_allowed)
    app.login_manager.request_loader(_load_user_from_bearer)
