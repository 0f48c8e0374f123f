"""A company's pages (issue 21): spending by branch and service with its
limits, and notices to the company's own users.

Who may do what follows the login's branch grants (rating.org):
- the report and the limits of a branch: "view" on it;
- setting or removing a limit: "service" on its branch (a limit changes what
  the service does: it slows the line or refuses turbo and packages), on a
  unit or on one account of it; a limit on the whole customer is a limit on
  each of its root units;
- a notice to the users of a branch: "users" on it.
A login without such grants sees a page that says so, and its changes are
refused with 403 before the form is read. The rules are rating.spending's
and rating.company_notices'; this module only calls them.
"""

from __future__ import annotations

import logging

from sqlalchemy import select

from flask import (Blueprint, Response, abort, current_app, flash, redirect, render_template,
                   request, url_for)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required

from cabinet import labels, periods, spreadsheet
from cabinet.app import db
from cabinet.formatting import csv_number, locale_key, money, money_with_currency, volume
from cabinet.spend_documents import csv_document, pdf_document
from config.db import utcnow
from rating import company_notices, org, spending
from rating.choices import SPENDING_ACTIONS, SPENDING_METRICS, SPENDING_SERVICES
from rating.models import Account, SpendingLimit
from rating.validate import DomainError, NotFound

log = logging.getLogger(__name__)

blueprint = Blueprint("spending", __name__)

SERVICES = {"tariff": _l("Tariff fees"), "options": _l("Options"),
            "packages": _l("Packages"), "traffic": _l("Traffic"), "calls": _l("Calls"),
            "other": _l("Other")}
METRICS = {"money": _l("Money, RUB"), "traffic": _l("Traffic, GB")}
ACTIONS = {"notify": _l("Send a notice"), "throttle": _l("Slow the line down"),
           "block_extras": _l("Refuse turbo and packages")}
assert set(SERVICES) == set(SPENDING_SERVICES) and set(ACTIONS) == set(SPENDING_ACTIONS)
assert set(METRICS) == set(SPENDING_METRICS)

# rating's sentences on these pages, marked for the catalogue
# (labels.error_text translates them).
DOMAIN_MESSAGES = (
    _l("the limit must be more than zero"),
    _l("the traffic limit must be a positive number of GB"),
    _l("write the text of the notice"),
    _l("a notice may be at most 500 characters long"),
    _l("the text holds control characters"),
    _l("at most 5 notices an hour; try again later"),
    _l("a date must look like 2026-11-23"),
    _l("the period ends before it starts"),
    _l("there is no such branch of yours"),
    _l("the monthly spending limit is reached: turbo, options and packages cannot be bought "
       "until the next month or until the limit is raised"),
)
labels.ACTIONS.update({
    "limit.set": _l("Spending limit set"),
    "limit.remove": _l("Spending limit removed"),
})


def _timezone() -> str:
    return current_app.config["BABEL_DEFAULT_TIMEZONE"]


def _actor() -> str:
    return f"cabinet:{current_user.login}"


def _words() -> dict:
    return {"title": _("Spending by branch and service"), "period": _("Period"),
            "account": _("Account"), "name": _("Name"), "branch": _("Branch"),
            **{code: str(text) for code, text in SERVICES.items()}, "total": _("Total"),
            "branches": _("Branch totals"), "all": _("All branches"),
            "no_branch": _("No branch")}


# -- the report -------------------------------------------------------------------

def _report(session, key: str | None):
    """(branches with "view", the chosen one, the period, the report)."""
    choices = spending.branches(session, current_user.user_id, "view")
    if not choices:
        return choices, None, None, None
    branch = spending.find_branch(session, current_user.user_id, "view",
                                  key or choices[0].key)
    today = periods.local_today(_timezone())
    first = periods.parse_day(request.args.get("from"), today.replace(day=1))
    last = periods.parse_day(request.args.get("to"), today)
    if last < first:
        raise periods.PeriodError("the period ends before it starts")
    ids, units = spending.customer_scope(session, branch.customer_id, branch.unit_id)
    return choices, branch, (first, last), spending.report(session, ids, first, last,
                                                           _timezone(), units)


def _limits(session):
    """The limits the login may see (on units and accounts it views), and
    the ids of those it may change."""
    user = current_user.user_id
    viewed = spending.branches(session, user, "view")
    units = [b.unit_id for b in viewed if b.unit_id is not None]
    accounts = org.accounts_with_right(session, user, "view")
    views = spending.listing(session, utcnow(), _timezone(), account_ids=accounts,
                             org_unit_ids=units) if viewed else []
    changeable = {view.id for view in views if _may_change(session, view.account_id,
                                                           view.org_unit_id)}
    return views, changeable


def _service_scopes(session) -> list[tuple[str, str]]:
    """(value, label) of every unit and account the login may put a limit on."""
    user = current_user.user_id
    found = [(f"unit:{b.unit_id}", "— " * (b.depth - 1) + b.unit_name)
             for b in spending.branches(session, user, "service") if b.unit_id is not None]
    ids = org.accounts_with_right(session, user, "service")
    if ids and found:
        found += [(f"account:{number_id}", _("Account %(number)s — %(name)s", number=number,
                                             name=name))
                  for number_id, number, name in session.execute(
                      select(Account.id, Account.number, Account.name)
                      .where(Account.id.in_(ids), Account.customer_id.is_not(None))
                      .order_by(Account.number))]
    return found


def _may_change(session, account_id: int | None, unit_id: int | None) -> bool:
    user = current_user.user_id
    if unit_id is not None:
        return any(b.unit_id == unit_id for b in spending.branches(session, user, "service"))
    return account_id is not None and "service" in org.rights_on(session, user, account_id) \
        and bool(spending.branches(session, user, "service"))


def _page(status: int = 200, error: str | None = None):
    session = db()
    try:
        choices, branch, period, report = _report(session, request.args.get("branch"))
    except NotFound:
        abort(404)
    except (periods.PeriodError, DomainError) as failure:
        choices, branch, period, report = spending.branches(
            session, current_user.user_id, "view"), None, None, None
        error, status = labels.error_text(failure), 400
    views, changeable = _limits(session)
    return render_template(
        "company_spending.html", choices=choices, branch=branch, period=period, report=report,
        services=SERVICES, metrics=METRICS, actions=ACTIONS, limits=views,
        changeable=changeable, scopes=_service_scopes(session), error=error,
        figure=_figure), status


def _figure(metric: str, value) -> str:
    return money_with_currency(value) if metric == "money" else volume(int(value))


@blueprint.route("/company/spending")
@login_required
def spending_page():
    return _page()


def _document():
    """(branch, period, report) of a download's query; a bad one ends the
    request with 404 or a 400 sentence."""
    try:
        _choices, branch, period, report = _report(db(), request.args.get("branch"))
    except NotFound:
        abort(404)
    except (periods.PeriodError, DomainError) as failure:
        abort(Response(labels.error_text(failure) + "\n", status=400, mimetype="text/plain"))
    if report is None:
        abort(404)
    return branch, period, report


def _filename(period, suffix: str) -> str:
    return f"spending-{period[0].isoformat()}-{period[1].isoformat()}.{suffix}"


@blueprint.route("/company/spending.csv")
@login_required
def spending_csv():
    _branch, period, report = _document()
    body = csv_document(report, _words(), spreadsheet.delimiter(locale_key()), csv_number)
    return Response(body, mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="{_filename(period, "csv")}"'})


@blueprint.route("/company/spending.pdf")
@login_required
def spending_pdf():
    _branch, period, report = _document()
    from cabinet.pdf import _day
    words = _words()
    body = pdf_document(report, words, f"{_day(period[0])} – {_day(period[1])}", money)
    return Response(body, mimetype="application/pdf", headers={
        "Content-Disposition": f'attachment; filename="{_filename(period, "pdf")}"'})


# -- limits -----------------------------------------------------------------------

def _need(right: str) -> None:
    """403 before the form is read when the login holds ``right`` nowhere."""
    if not spending.branches(db(), current_user.user_id, right):
        abort(403)


@blueprint.route("/company/limits", methods=["POST"])
@login_required
def set_limit():
    _need("service")
    session = db()
    kind, _sep, ident = (request.form.get("scope") or "").partition(":")
    if kind not in ("unit", "account") or not ident.isdigit():
        return _page(400, _("Choose what the limit is on."))
    unit_id = int(ident) if kind == "unit" else None
    account_id = int(ident) if kind == "account" else None
    if not _may_change(session, account_id, unit_id):
        abort(404)
    try:
        spending.set_limit(session, metric=request.form.get("metric", ""),
                           value=request.form.get("amount", ""),
                           action=request.form.get("action", ""),
                           warn_percent=request.form.get("warn_percent", "80"),
                           account_id=account_id, org_unit_id=unit_id, actor=_actor(),
                           now=utcnow(), timezone=_timezone())
    except DomainError as error:
        session.rollback()
        return _page(400, labels.error_text(error))
    session.commit()
    flash(_("The limit is set."), "ok")
    return redirect(url_for("spending.spending_page"))


@blueprint.route("/company/limits/<int:limit_id>/remove", methods=["POST"])
@login_required
def remove_limit(limit_id: int):
    _need("service")
    session = db()
    row = session.get(SpendingLimit, limit_id)
    if row is None or not _may_change(session, row.account_id, row.org_unit_id):
        abort(404)
    spending.remove_limit(session, limit_id, actor=_actor(), now=utcnow(),
                          timezone=_timezone())
    session.commit()
    flash(_("The limit is removed."), "ok")
    return redirect(url_for("spending.spending_page"))


# -- notices ----------------------------------------------------------------------

def _notices_page(status: int = 200, error: str | None = None, text: str = ""):
    session = db()
    return render_template(
        "company_notices.html", choices=spending.branches(session, current_user.user_id,
                                                          "users"),
        sent=company_notices.sent(session, current_user.user_id), error=error, text=text,
        maximum=company_notices.MAX_TEXT), status


@blueprint.route("/company/notices", methods=["GET", "POST"])
@login_required
def notices():
    if request.method == "GET":
        return _notices_page()
    _need("users")
    session = db()
    text = request.form.get("text", "")
    try:
        row = company_notices.send(session, cabinet_user_id=current_user.user_id,
                                   branch_key=request.form.get("branch", ""), text=text,
                                   actor=_actor(), now=utcnow())
    except NotFound:
        session.rollback()
        abort(404)
    except DomainError as error:
        session.rollback()
        return _notices_page(400, labels.error_text(error), text[:2000])
    session.commit()
    log.info("cabinet.company_notice user_id=%s broadcast=%s queued=%s",
             current_user.user_id, row.id, row.queued)
    flash(_("The notice is on its way to %(count)s addresses.", count=row.queued), "ok")
    return redirect(url_for("spending.notices"))
