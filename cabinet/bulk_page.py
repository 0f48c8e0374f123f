"""Bulk changes and scheduled changes in the cabinet (issue 21).

A company's login with the "service" right on a branch (rating.org) picks
accounts of the branch and one change (a tariff, a package on or off, an
option, a freeze), sees the preview (each account's cost, or why it
cannot), confirms, follows the counts and can revert. The changes page
lists the changes scheduled for the accounts the login may see and
cancels them before their day.

The rules are rating.bulk's and rating.scheduled_changes'; this page only
calls them. Every change is a POST with the CSRF token; the accounts a
form names must all be the login's to change (403 otherwise), and an
operation is shown only to the login that made it (404 otherwise).
Changes are made as the subscriber makes them (guarded debits,
self-service packages only).
"""

from __future__ import annotations

import datetime as dt
import logging

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, \
    url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from sqlalchemy import select

from cabinet.app import db
from config.db import utcnow
from rating import bulk, changes, freeze, jobs, org, scheduled_changes
from rating.models import Account, OptionType, Package, Tariff
from rating.validate import DomainError

log = logging.getLogger(__name__)

blueprint = Blueprint("bulk", __name__)

KINDS = {"tariff": _l("Change the tariff"), "package_on": _l("Switch a package on"),
         "package_off": _l("Switch a package off"), "option": _l("Buy an option"),
         "freeze": _l("Freeze"), "unfreeze": _l("Unfreeze")}
REASONS = {
    "closed": _l("The account is closed."),
    "not_active": _l("The account is not active."),
    "not_frozen": _l("The account is not frozen."),
    "same_tariff": _l("The account already has this tariff."),
    "not_offered": _l("This is not offered any more."),
    "too_frequent": _l("The tariff was changed too recently."),
    "no_money": _l("The balance is not enough."),
    "turbo_running": _l("A turbo is already active."),
    "month_limit": _l("The monthly limit of this option is reached."),
    "already_on": _l("The package is on already."),
    "already_off": _l("The package is off already."),
    "operator_only": _l("This package is switched by the operator only."),
    "freeze_length": _l("The freeze is too short or too long."),
    "changed_since": _l("The account has changed since."),
    "not_pending": _l("The scheduled change is no longer pending."),
    "refused": _l("The change cannot be made."),
}
STATES = {"previewed": _l("previewed, not applied yet"), "applying": _l("being applied"),
          "applied": _l("applied"), "partially": _l("applied, some refused"),
          "reverted": _l("reverted")}
ITEM_STATES = {"ready": _l("ready"), "refused": _l("refused"), "done": _l("changed"),
               "scheduled": _l("scheduled")}
CHANGE_STATES = {"pending": _l("pending"), "applied": _l("made"),
                 "cancelled": _l("cancelled"), "failed": _l("failed")}
# The accounts the page lists at most (the selection may be all of them).
LISTED = 1000


class PostForm(FlaskForm):
    """The CSRF token only; the fields are read from request.form."""


def _actor() -> str:
    return f"cabinet:{current_user.login}"


def _today() -> dt.date:
    return jobs.local_today(current_app.config["BABEL_DEFAULT_TIMEZONE"])


def _terms() -> changes.Terms:
    settings = current_app.extensions["abonent"].settings
    return changes.Terms(now=utcnow(), today=_today(), actor=_actor(),
                         freeze_rules=freeze.FreezeRules.from_settings(settings),
                         by_subscriber=True)


def _mine(right: str) -> list[int]:
    return org.accounts_with_right(db(), current_user.user_id, right)


def change_text(kind: str, parameters: dict) -> str:
    """A change in the reader's language."""
    if kind == "tariff":
        return _("Tariff %(name)s", name=parameters["tariff"])
    if kind == "tariff_undo":
        return _("Back to tariff %(name)s", name=parameters.get("back_to") or "")
    if kind in ("package_on", "package_off"):
        return "%s: %s" % (KINDS[kind], parameters["package"])
    if kind == "option":
        return "%s: %s" % (KINDS[kind], parameters["option"])
    if kind == "freeze":
        return _("Freeze until %(day)s", day=parameters["until"])
    if kind == "cancel":
        return _("Cancel scheduled change No. %(id)s", id=parameters["scheduled"])
    return str(KINDS.get(kind, kind))


def operation_text(operation) -> str:
    if operation.kind == "revert":
        return _("Revert of bulk change No. %(id)s", id=operation.parameters.get("of"))
    return change_text(operation.kind, operation.parameters)


def reason_text(code: str | None) -> str:
    return str(REASONS.get(code or "refused", REASONS["refused"]))


def _catalogue(session):
    return dict(
        tariffs=list(session.scalars(select(Tariff).where(Tariff.archived.is_(False))
                                     .order_by(Tariff.fee, Tariff.name))),
        packages=list(session.scalars(select(Package).where(
            Package.archived.is_(False), Package.self_service.is_(True)).order_by(Package.name))),
        options=list(session.scalars(select(OptionType).order_by(OptionType.price,
                                                                  OptionType.code))))


def _page(status: int = 200, error: str | None = None):
    session = db()
    ids = _mine("service")
    accounts = list(session.execute(select(Account.id, Account.number, Account.name,
                                           Account.state)
                                    .where(Account.id.in_(ids[:LISTED]))
                                    .order_by(Account.number))) if ids else []
    operation = None
    rows, shown = [], None
    wanted = request.args.get("op")
    if wanted:
        try:
            operation = bulk.get(session, wanted, created_by=_actor())
        except DomainError:
            abort(404)
        shown = bulk.totals(session, operation.id)
        rows = bulk.items(session, operation.id, limit=LISTED)
    today = _today()
    return render_template(
        "bulk.html", accounts=accounts, total_accounts=len(ids), operation=operation,
        shown=shown, rows=rows, kinds=KINDS, states=STATES, item_states=ITEM_STATES,
        reason_text=reason_text, change_text=change_text, operation_text=operation_text,
        recent=bulk.listing(session, created_by=_actor(), limit=10), form=PostForm(),
        tomorrow=today + dt.timedelta(days=1), error=error, **_catalogue(session)), status


@blueprint.route("/bulk")
@login_required
def bulk_page():
    return _page()


def _parameters(session, kind: str) -> dict:
    form = request.form
    if kind == "tariff":
        tariff = session.get(Tariff, _number(form.get("tariff_id")))
        if tariff is None or tariff.archived:
            raise DomainError(_("Choose a tariff."))
        when = form.get("when", "now")
        return {"tariff": tariff.name, "when": when if when in ("now", "next_period") else "now"}
    if kind in ("package_on", "package_off"):
        package = session.get(Package, _number(form.get("package_id")))
        if package is None:
            raise DomainError(_("Choose a package."))
        return {"package": package.name}
    if kind == "option":
        option = session.get(OptionType, _number(form.get("option_id")))
        if option is None:
            raise DomainError(_("Choose an option."))
        return {"option": option.code}
    if kind == "freeze":
        day = _day(form.get("until"))
        if day is None:
            raise DomainError(_("Give the day the freeze ends."))
        return {"until": day.isoformat()}
    return {}


def _number(value) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return 0
    return number if 0 < number < 2 ** 31 else 0


def _day(value) -> dt.date | None:
    try:
        return dt.date.fromisoformat(value) if value else None
    except ValueError:
        return None


@blueprint.route("/bulk/preview", methods=["POST"])
@login_required
def preview():
    if not current_user.may("service"):
        abort(403)
    form = PostForm()
    if not form.validate_on_submit():
        return _page(400, _("The form is incomplete; reload the page and try again."))
    allowed = set(_mine("service"))
    if request.form.get("all") == "1":
        chosen = sorted(allowed)
    else:
        chosen = sorted({_number(v) for v in request.form.getlist("accounts")} - {0})
    if not chosen:
        return _page(400, _("Choose at least one account."))
    if not set(chosen) <= allowed:
        abort(403)
    kind = request.form.get("kind", "")
    if kind not in KINDS:
        return _page(400, _("Choose a change."))
    session = db()
    effective_on = _day(request.form.get("effective_on"))
    if request.form.get("effective_on") and effective_on is None:
        return _page(400, _("The day is not a date."))
    try:
        operation = bulk.preview(session, kind, _parameters(session, kind), chosen, _terms(),
                                 selection={"cabinet": len(chosen)}, effective_on=effective_on)
    except DomainError as error:
        session.rollback()
        return _page(400, str(error) if isinstance(error.args[0], str) and not
                     error.args[0][:1].islower() else _("The change cannot be made."))
    session.commit()
    return redirect(url_for("bulk.bulk_page", op=operation.id))


def _service_post() -> None:
    """A change of the service: the login's right first (403), then the
    CSRF token (400)."""
    if not current_user.may("service"):
        abort(403)
    if not PostForm().validate_on_submit():
        abort(400)


def _own_operation():
    _service_post()
    try:
        return bulk.get(db(), request.form.get("operation_id"), created_by=_actor())
    except DomainError:
        abort(404)


@blueprint.route("/bulk/apply", methods=["POST"])
@login_required
def apply():
    operation = _own_operation()
    operation_id = operation.id
    # The request's own session lets go before the apply's sessions write
    # (SQLite has one writer at a time).
    db().rollback()
    finished = bulk.apply(current_app.extensions["abonent"].Session, operation_id, _terms())
    log.info("cabinet.bulk_apply bulk=%d login=%s done=%d refused=%d", operation_id,
             current_user.login, finished.done, finished.refused)
    flash(_("Done: %(done)s of %(total)s.", done=finished.done, total=finished.total), "ok")
    return redirect(url_for("bulk.bulk_page", op=operation_id))


@blueprint.route("/bulk/revert", methods=["POST"])
@login_required
def revert():
    operation = _own_operation()
    session = db()
    try:
        back = bulk.revert(session, operation.id, _terms())
    except DomainError:
        session.rollback()
        flash(_("This bulk change cannot be reverted."), "error")
        return redirect(url_for("bulk.bulk_page", op=operation.id))
    session.commit()
    return redirect(url_for("bulk.bulk_page", op=back.id))


# -- scheduled changes ---------------------------------------------------------------

@blueprint.route("/changes")
@login_required
def changes_page():
    session = db()
    visible = _mine("view")
    rows = scheduled_changes.listing(session, account_ids=visible, limit=LISTED) \
        if visible else []
    return render_template("changes.html", rows=rows, form=PostForm(),
                           may_cancel=set(_mine("service")), change_text=change_text,
                           states=CHANGE_STATES, reason_text=reason_text, today=_today())


@blueprint.route("/changes/cancel", methods=["POST"])
@login_required
def cancel():
    _service_post()
    session = db()
    try:
        scheduled_changes.cancel(session, request.form.get("change_id"), today=_today(),
                                 actor=_actor(), account_ids=_mine("service"))
    except changes.Refusal:
        session.rollback()
        flash(_("The change can no longer be cancelled."), "error")
        return redirect(url_for("bulk.changes_page"))
    except DomainError:
        abort(404)
    session.commit()
    flash(_("The scheduled change is cancelled."), "ok")
    return redirect(url_for("bulk.changes_page"))
