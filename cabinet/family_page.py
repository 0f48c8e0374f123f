"""Family accounts in the cabinet (issue 21): watch and pay for a relative's
account with the relative's consent (rating.family).

The inviter names the account (and, if the holder gave one, its one-time
code); the holder accepts or declines in their own cabinet; either side ends
the link. A watched account is then in the account switcher with the rights
"view" and "pay": its pages show the balance, and Top up pays it. Every
change is a plain form POST with the CSRF token.
"""

from __future__ import annotations

import logging

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required

from cabinet import labels
from cabinet.app import db
from config.db import utcnow
from rating import family
from rating.models import CabinetUser
from rating.validate import DomainError, NotFound

log = logging.getLogger(__name__)

blueprint = Blueprint("family", __name__, url_prefix="/family")

DOMAIN_MESSAGES = (
    _l("no open account has this number"), _l("this is your own account"),
    _l("you already watch this account"),
    _l("you have already asked; the holder has not answered yet"),
    _l("too many requests wait for an answer; wait for them first"),
    _l("the code is wrong or no longer valid; ask the holder for a new one"),
    _l("the invitation has been answered or has expired"),
)
labels.ACTIONS.update({
    "family.invite": _l("Asked to watch the account"), "family.code": _l("Family code made"),
    "family.link": _l("A relative watches the account"),
    "family.decline": _l("Request to watch declined"),
    "family.end": _l("A relative no longer watches the account"),
    "org.attach": _l("Placed in the company's structure"),
})


def _actor() -> str:
    return f"cabinet:{current_user.login}"


def _holder() -> bool:
    """This login answers for its own account (its owner login)."""
    user = db().get(CabinetUser, current_user.user_id)
    return user is not None and user.role == "owner"


def _int(name: str) -> int:
    value = (request.form.get(name) or "").strip()
    if not value.isdigit() or len(value) > 10:
        abort(404)
    return int(value)


@blueprint.get("/")
@login_required
def family_page(code: str | None = None, status: int = 200):
    session, now = db(), utcnow()
    holder = _holder()
    own = current_user.own_account_id
    return render_template(
        "family.html", watched=family.watched_by(session, current_user.user_id),
        outgoing=family.outgoing(session, current_user.user_id, now),
        incoming=family.incoming(session, own, now) if holder else [],
        watchers=family.watchers_of(session, own) if holder else [],
        holder=holder, code=code, code_days=family.CODE_DAYS), status


def _done(message: str):
    db().commit()
    flash(message, "ok")
    return redirect(url_for("family.family_page"))


def _holder_only() -> None:
    """Asking for, and answering for, family links is the account holder's:
    a company's accountant or viewer does not tie its login to strangers'
    accounts (403 before the form is read)."""
    if not _holder():
        abort(403)


def _asked(change, done: str):
    """The holder's own request or code: made (``done`` said), or refused
    with its sentence; nothing kept either way but the answer."""
    try:
        change()
    except DomainError as error:
        db().rollback()
        flash(labels.error_text(error), "error")
        return redirect(url_for("family.family_page"))
    return _done(done)


@blueprint.post("/invite")
@login_required
def invite():
    _holder_only()
    return _asked(lambda: family.invite(
        db(), current_user.user_id, request.form.get("number", "")[:32], utcnow(),
        actor=_actor()),
        _("The request has been sent; the account's holder answers it in their cabinet."))


@blueprint.post("/redeem")
@login_required
def redeem():
    _holder_only()
    return _asked(lambda: family.redeem(
        db(), current_user.user_id, request.form.get("number", "")[:32],
        request.form.get("code", "")[:32], utcnow(), actor=_actor()),
        _("Done: the account is now in your account list."))


@blueprint.post("/code")
@login_required
def make_code():
    _holder_only()
    code = family.make_code(db(), current_user.user_id, current_user.own_account_id, utcnow(),
                            actor=_actor())
    db().commit()
    # Shown this once, in this answer; never stored in clear or logged.
    return family_page(code=code)


@blueprint.post("/invitations/<int:invitation_id>/accept")
@login_required
def accept(invitation_id: int):
    return _answer(invitation_id, "accept")


@blueprint.post("/invitations/<int:invitation_id>/decline")
@login_required
def decline(invitation_id: int):
    return _answer(invitation_id, "decline")


def _answer(invitation_id: int, answer: str):
    _holder_only()
    try:
        family.answer(db(), invitation_id, current_user.user_id, answer == "accept", utcnow(),
                      actor=_actor())
    except (NotFound, family.Forbidden):
        db().rollback()
        abort(404)
    except DomainError as error:
        db().rollback()
        flash(labels.error_text(error), "error")
        return redirect(url_for("family.family_page"))
    return _done(_("The request has been accepted.") if answer == "accept"
                 else _("The request has been declined."))


@blueprint.post("/links/<int:link_id>/end")
@login_required
def end(link_id: int):
    try:
        family.end(db(), link_id, current_user.user_id, actor=_actor())
    except (NotFound, family.Forbidden):
        db().rollback()
        abort(404)
    return _done(_("The link has been ended."))


def install(app) -> None:
    app.register_blueprint(blueprint)
