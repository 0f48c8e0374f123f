"""A customer's pages (issue 21): the consolidated overview of its accounts,
the hierarchy editor, rights on branches, the consolidated invoice and act.

Who sees what is rating.org's: a login reaches the customers it holds grants
on, and inside each only the branches its grants cover (``org.scope``). Every
page names the customer in ``?customer=`` (the first one by default); a
customer, unit, grant or account outside the login's reach answers 404 (a
unit it may see but not change: 403), and changes nothing. Every change is a
plain form POST with the CSRF token, so the editor works without JavaScript.
"""

from __future__ import annotations

import datetime as dt
import logging
import math

from flask import (Blueprint, Response, abort, current_app, flash, redirect, render_template,
                   request, url_for)
from flask_babel import format_date
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required
from sqlalchemy import select

from cabinet import labels, pdf, periods
from cabinet.app import db
from rating import documents, org
from rating.choices import CUSTOMER_DOCUMENTS
from rating.models import Account, CabinetUser, Customer
from rating.validate import DomainError, NotFound

log = logging.getLogger(__name__)

blueprint = Blueprint("company", __name__, url_prefix="/company")

PAGE_SIZE = 50
RIGHT_TITLES = {"view": _l("view"), "pay": _l("pay"), "service": _l("change services"),
                "users": _l("manage users and the structure")}
DOCUMENT_TITLES = {"per_account": _l("one per account"),
                   "consolidated": _l("one for the company, a line per account")}
DOMAIN_MESSAGES = (
    _l("the name is empty"), _l("a unit cannot move below itself"),
    _l("this part of the company is not yours to change"),
    _l("choose at least one right"), _l("the unit does not exist"),
    _l("the account does not exist"), _l("the cabinet user does not exist"),
    _l("the grant does not exist"),
    _l("documents are per account or consolidated"),
)


# -- which customer, which reach --------------------------------------------------

def _actor() -> str:
    return f"cabinet:{current_user.login}"


def _customer() -> Customer | None:
    """The customer the page is about (``customer`` in the query or the
    form); None when the login holds no grant at all; 404 for another."""
    mine = org.customers_of(db(), current_user.user_id)
    if not mine:
        return None
    wanted = request.values.get("customer", "")
    if not wanted:
        return mine[0]
    found = next((row for row in mine if str(row.id) == wanted), None)
    if found is None:
        abort(404)
    return found


def _reach(customer: Customer, right: str) -> org.Scope:
    reach = org.scope(db(), current_user.user_id, customer.id, right)
    if reach is None:
        abort(403)
    return reach


def _unit_arg(reach: org.Scope, name: str = "unit") -> int | None:
    """A unit id from the request, covered by ``reach`` (else 404); "" → None."""
    value = (request.values.get(name) or "").strip()
    if not value:
        return None
    if not value.isdigit() or len(value) > 10 or not reach.covers(int(value)):
        abort(404)
    return int(value)


def _visible_accounts(customer: Customer, reach: org.Scope, unit_id: int | None):
    """A SELECT of the customer's accounts in reach, of the unit's branch
    when given (rating.org.branch_query)."""
    if unit_id is not None:
        return org.branch_query(customer.id, [unit_id])
    return org.branch_query(customer.id, None if reach.whole else reach.roots)


def _units_in(customer: Customer, reach: org.Scope):
    rows = org.units(db(), customer.id)
    return [row for row in rows if reach.covers(row.id)], org.depths(rows), rows


def _month():
    timezone = current_app.config["BABEL_DEFAULT_TIMEZONE"]
    today = periods.local_today(timezone)
    try:
        period = periods.month(request.values.get("month"), timezone, today)
    except periods.PeriodError:
        abort(400)
    if period.first_day > today:
        abort(404)
    return period


def _months() -> list[tuple[str, str]]:
    timezone = current_app.config["BABEL_DEFAULT_TIMEZONE"]
    first = periods.local_today(timezone).replace(day=1)
    found = []
    for n in range(12):
        value = periods.shift_month(first, -n)
        found.append((value, format_date(dt.date.fromisoformat(f"{value}-01"), "LLLL yyyy")))
    return found


def _no_customer():
    return render_template("company_none.html"), 200


def _fail(error: DomainError):
    db().rollback()
    if isinstance(error, org.Forbidden):
        abort(403)
    if isinstance(error, NotFound):
        abort(404)
    flash(labels.error_text(error), "error")
    return None


def _back(endpoint: str, customer: Customer, **args):
    return redirect(url_for(endpoint, customer=customer.id, **args))


# -- the consolidated overview -------------------------------------------------------

@blueprint.get("/")
@login_required
def overview():
    customer = _customer()
    if customer is None:
        return _no_customer()
    reach = _reach(customer, "view")
    unit_id = _unit_arg(reach)
    period = _month()
    lines = org.account_lines(db(), _visible_accounts(customer, reach, unit_id),
                              period.start_utc, period.end_utc)
    visible_units, depth, every_unit = _units_in(customer, reach)
    names = {row.id: row.name for row in every_unit}
    # Totals per branch: the top units in reach (the roots of the tree, or
    # the branches the login was given), and the accounts at none.
    tops = [row.id for row in visible_units
            if (row.parent_id is None if reach.whole else row.id in reach.roots)]
    branch_of = org.top_branch(every_unit, tops)
    grouped: dict = {}
    for line in lines:
        grouped.setdefault(branch_of(line.unit_id), []).append(line)
    branches = [(names.get(top, _("Not in a department")), org.totals(grouped[top]))
                for top in tops + [None] if top in grouped]
    query = (request.values.get("q") or "").strip()[:100]
    if query:
        folded = query.casefold()
        lines = [line for line in lines
                 if folded in line.number.casefold() or folded in line.name.casefold()]
    pages = max(1, math.ceil(len(lines) / PAGE_SIZE))
    try:
        page = min(max(1, int(request.values.get("page", "1"))), pages)
    except ValueError:
        page = 1
    return render_template(
        "company_overview.html", customer=customer, customers=_customers(),
        lines=lines[(page - 1) * PAGE_SIZE: page * PAGE_SIZE], total=org.totals(lines),
        branches=branches, units=visible_units, depth=depth, unit_names=names,
        unit_id=unit_id, q=query, page=page, pages=pages, months=_months(),
        month=f"{period.first_day:%Y-%m}", may_edit=org.scope(
            db(), current_user.user_id, customer.id, "users") is not None)


def _customers():
    return org.customers_of(db(), current_user.user_id)


# -- the hierarchy editor ------------------------------------------------------------

@blueprint.get("/tree")
@login_required
def tree():
    customer = _customer()
    if customer is None:
        return _no_customer()
    reach = _reach(customer, "view")
    edit = org.scope(db(), current_user.user_id, customer.id, "users")
    visible_units, depth, _every = _units_in(customer, reach)
    counts: dict = {}
    loose = []
    for row in db().execute(select(Account.id, Account.number, Account.name, Account.org_unit_id)
                            .where(Account.customer_id == customer.id)
                            .order_by(Account.number)):
        if row.org_unit_id is None:
            if reach.whole:
                loose.append(row)
        elif reach.covers(row.org_unit_id):
            counts.setdefault(row.org_unit_id, []).append(row)
    return render_template(
        "company_tree.html", customer=customer, customers=_customers(), units=visible_units,
        depth=depth, accounts=counts, loose=loose, edit=edit,
        parents=[row for row in visible_units if edit is not None and edit.covers(row.id)])


def _edit_reach() -> tuple[Customer, org.Scope]:
    customer = _customer()
    if customer is None:
        # No grant at all: a change the login may not make (rating.roles'
        # answer for a viewer), whatever the form names.
        abort(403)
    return customer, _reach(customer, "users")


def _int_field(name: str) -> int | None:
    value = (request.form.get(name) or "").strip()
    if not value:
        return None
    if not value.isdigit() or len(value) > 10:
        abort(400)
    return int(value)


def _apply(customer: Customer, page: str, change, done: str):
    """Make one change (``change()`` calls rating.org), commit, say ``done``
    and go back to ``page``. A refusal keeps nothing: Forbidden is 403,
    NotFound 404, any other its sentence on the page."""
    try:
        change()
        db().commit()
        flash(done, "ok")
    except DomainError as error:
        _fail(error)
    return _back(page, customer)


@blueprint.post("/tree/add")
@login_required
def unit_add():
    customer, reach = _edit_reach()
    parent_id = _int_field("parent_id")

    def change():
        org.check_editable(reach, parent_id, parent=True)
        org.create_unit(db(), customer.id, request.form.get("name", ""), actor=_actor(),
                        parent_id=parent_id)
    return _apply(customer, "company.tree", change, _("The unit has been added."))


def _editable_unit(reach: org.Scope, unit_id: int) -> None:
    if not reach.covers(unit_id):
        abort(404)
    if not reach.editable(unit_id):
        abort(403)


@blueprint.post("/tree/<int:unit_id>/rename")
@login_required
def unit_rename(unit_id: int):
    customer, reach = _edit_reach()
    if not reach.covers(unit_id):
        abort(404)
    return _apply(customer, "company.tree", lambda: org.rename_unit(
        db(), unit_id, request.form.get("name", ""), actor=_actor(), customer_id=customer.id),
        _("The unit has been renamed."))


@blueprint.post("/tree/<int:unit_id>/move")
@login_required
def unit_move(unit_id: int):
    customer, reach = _edit_reach()
    _editable_unit(reach, unit_id)
    parent_id = _int_field("parent_id")

    def change():
        org.check_editable(reach, parent_id, parent=True)
        org.move_unit(db(), unit_id, parent_id, actor=_actor(), customer_id=customer.id)
    return _apply(customer, "company.tree", change, _("The unit has been moved."))


@blueprint.post("/tree/<int:unit_id>/delete")
@login_required
def unit_delete(unit_id: int):
    customer, reach = _edit_reach()
    _editable_unit(reach, unit_id)
    return _apply(customer, "company.tree", lambda: org.delete_unit(
        db(), unit_id, actor=_actor(), customer_id=customer.id),
        _("The unit has been deleted; what it held moved one level up."))


@blueprint.post("/tree/attach")
@login_required
def attach():
    """Place one of the customer's accounts (in reach) at a unit (in reach)."""
    customer, reach = _edit_reach()
    number = (request.form.get("number") or "").strip()[:32]
    unit_id = _int_field("unit_id")

    def change():
        account = db().scalar(select(Account).where(Account.number == number,
                                                    Account.customer_id == customer.id))
        if account is None or not (reach.whole or reach.covers(account.org_unit_id)):
            raise NotFound("the account does not exist")
        org.check_editable(reach, unit_id, parent=True)
        org.attach_account(db(), account.id, customer.id, actor=_actor(), unit_id=unit_id)
    return _apply(customer, "company.tree", change, _("The account has been placed."))


# -- rights on branches --------------------------------------------------------------

@blueprint.get("/access")
@login_required
def access():
    customer = _customer()
    if customer is None:
        return _no_customer()
    reach = _reach(customer, "users")
    visible_units, depth, every_unit = _units_in(customer, reach)
    names = {row.id: row.name for row in every_unit}
    grants = [grant for grant in org.customer_grants(db(), customer.id)
              if (reach.whole if grant.org_unit_id is None else reach.covers(grant.org_unit_id))]
    logins = {row.id: row.login for row in db().execute(
        select(CabinetUser.id, CabinetUser.login).where(
            CabinetUser.id.in_({grant.cabinet_user_id for grant in grants})))}
    return render_template(
        "company_access.html", customer=customer, customers=_customers(), grants=grants,
        logins=logins, unit_names=names, units=visible_units, depth=depth, whole=reach.whole,
        rights=RIGHT_TITLES, documents=DOCUMENT_TITLES,
        document_choices=CUSTOMER_DOCUMENTS)


def _granter_holds(customer: Customer, unit_id: int | None, wanted) -> None:
    """A login gives only rights it holds itself on that branch."""
    for right in wanted:
        held = org.scope(db(), current_user.user_id, customer.id, right)
        if held is None or not (held.whole if unit_id is None else held.covers(unit_id)):
            raise org.Forbidden("you may not give rights you do not hold there")


@blueprint.post("/access/grant")
@login_required
def grant_add():
    customer, reach = _edit_reach()
    unit_id = _int_field("unit_id")
    login = (request.form.get("login") or "").strip()[:64]

    def change():
        org.check_editable(reach, unit_id, parent=True)
        wanted = org.parse_rights(request.form.getlist("rights"))
        _granter_holds(customer, unit_id, wanted)
        user_id = db().scalar(select(CabinetUser.id).where(CabinetUser.login == login))
        if user_id is None:
            raise DomainError("the cabinet user does not exist")
        org.grant(db(), user_id, customer.id, wanted, actor=_actor(), unit_id=unit_id)
    return _apply(customer, "company.access", change, _("The rights have been given."))


@blueprint.post("/access/<int:grant_id>/revoke")
@login_required
def grant_revoke(grant_id: int):
    customer, reach = _edit_reach()
    found = next((grant for grant in org.customer_grants(db(), customer.id)
                  if grant.id == grant_id), None)
    if found is None or not (reach.whole if found.org_unit_id is None
                             else reach.covers(found.org_unit_id)):
        abort(404)
    return _apply(customer, "company.access", lambda: org.revoke(
        db(), grant_id, actor=_actor(), customer_id=customer.id),
        _("The rights have been taken back."))


@blueprint.post("/documents")
@login_required
def documents_setting():
    """Consolidated documents or one per account: the whole customer's choice."""
    customer, reach = _edit_reach()
    if not reach.whole:
        abort(403)
    return _apply(customer, "company.access", lambda: org.set_documents(
        db(), customer.id, request.form.get("documents", ""), actor=_actor()),
        _("The documents setting has been saved."))


# -- the consolidated invoice and act --------------------------------------------------

def _consolidated(customer: Customer):
    reach = _reach(customer, "view")
    unit_id = _unit_arg(reach)
    period = _month()
    number = f"C{customer.id}" + (f"-U{unit_id}" if unit_id is not None else "")
    document = documents.consolidated_services(
        db(), number, _visible_accounts(customer, reach, unit_id), period.first_day,
        period.last_day, period.start_utc, period.end_utc)
    return reach, unit_id, document


@blueprint.get("/invoice")
@login_required
def invoice():
    customer = _customer()
    if customer is None:
        return _no_customer()
    reach, unit_id, document = _consolidated(customer)
    visible_units, depth, every_unit = _units_in(customer, reach)
    kind = "act" if request.values.get("kind") == "act" else "invoice"
    return render_template(
        "company_invoice.html", customer=customer, customers=_customers(), document=document,
        kind=kind, unit_id=unit_id, units=visible_units, depth=depth,
        unit_name={row.id: row.name for row in every_unit}.get(unit_id),
        months=_months(), month=f"{document.first_day:%Y-%m}",
        kinds=documents.SERVICE_KINDS, seller=_seller(),
        date=format_date(document.last_day, "medium"),
        documents=DOCUMENT_TITLES[customer.documents])


def _seller() -> str:
    return current_app.extensions["abonent"].settings.get("payments", "seller")


@blueprint.get("/<any(invoice, act):kind>.pdf")
@login_required
def invoice_pdf(kind: str):
    customer = _customer()
    if customer is None:
        abort(404)
    _reach_, unit_id, document = _consolidated(customer)
    data = pdf.consolidated_document(kind, customer, document, _seller())
    return Response(data, mimetype="application/pdf", headers={
        "Content-Disposition": f'attachment; filename="{kind}-{document.number}.pdf"'})


def install(app) -> None:
    app.register_blueprint(blueprint)
