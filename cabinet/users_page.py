"""A company's cabinet users, managed by its owner: invite, role, remove;
and the public page where an invitee accepts with a password of their own.

The rules are rating.company_users'; this module only calls them. Every
change is a POST with the CSRF token and the id of the account the page
was drawn for (a form left open after switching accounts answers 404).
Whoever may not manage users gets 403 before the form is even read.

The invitation's link goes by mail when the invitee has an e-mail and the
cabinet knows its public address (the password reset's mail path, sent
from a background thread); otherwise it is shown to the owner once, in
the answer to the invitation, to hand over themselves. It is never
stored in clear, logged or put in a cookie.
"""

from __future__ import annotations

import logging
import threading

from flask import (Blueprint, abort, current_app, flash, redirect, render_template, request,
                   url_for)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import HiddenField, SelectField, StringField
from wtforms.validators import DataRequired, Length, Optional

from cabinet import labels
from cabinet.app import db
from cabinet.selfservice import ResetForm, SelectChoice, _deliver, log_out_keeping_language
from config.db import utcnow
from rating import company_users, org, selfservice
from rating.choices import USER_ROLES
from rating.models import Account
from rating.notify import EmailChannel
from rating.validate import DomainError, NotFound

log = logging.getLogger(__name__)

blueprint = Blueprint("users", __name__)

ROLES = {"owner": _l("Owner"), "accountant": _l("Accountant"), "viewer": _l("Viewer")}
ROLE_RIGHTS = {
    "owner": _l("everything: the tariff, options and packages, money, contacts and the "
                "company's users"),
    "accountant": _l("money and documents, contacts and requests; not the tariff, options "
                     "or packages"),
    "viewer": _l("reads every page and changes nothing"),
}
STATES = {"active": _l("active"), "invited": _l("invited, has not set a password yet"),
          "expired": _l("the invitation has expired")}

# rating's sentences on these pages, marked for the catalogue
# (labels.error_text translates them).
DOMAIN_MESSAGES = (
    _l("a login is 1 to 64 letters, digits or the signs . @ + - _"),
    _l("choose the role from the list"),
    _l("the company must keep at least one owner"),
    _l("you cannot remove your own login; ask another owner"),
    _l("you cannot change the role of your own login; ask another owner"),
    _l("you cannot invite again your own login; ask another owner"),
    _l("this user has already set a password"),
    _l("there is no such cabinet user of the account"),
    _l("the account is closed"),
    _l("this login is taken; choose another"),
    _l("a company may have at most 100 cabinet users"),
    _l("cabinet users with roles are for company accounts"),
    _l("only the account's owner manages its cabinet users"),
    _l("this invitation link is not valid"),
    _l("this invitation link has already been used"),
    _l("this invitation link has expired"),
)
labels.ACTIONS.update({
    "cabinet_user.invite": _l("Cabinet user invited"),
    "cabinet_user.accept": _l("Invitation accepted"),
    "cabinet_user.role": _l("Cabinet user's role changed"),
    "cabinet_user.remove": _l("Cabinet user removed"),
})
labels.FIELDS.update({"login": _l("Login"), "role": _l("Role")})


# -- forms -----------------------------------------------------------------------

def _role_choices() -> list:
    return [SelectChoice(code, ROLES[code]) for code in USER_ROLES]


class AccountForm(FlaskForm):
    """The CSRF token and the account the page was drawn for."""

    account_id = HiddenField(validators=[DataRequired(), Length(max=20)])


class InviteForm(AccountForm):
    login = StringField(_l("Login"), validators=[Optional(), Length(max=64)])
    email = StringField(_l("E-mail"), validators=[Optional(), Length(max=200)])
    # The choice is checked by rating.company_users, with its sentence.
    role = SelectField(_l("Role"), choices=_role_choices, validate_choice=False,
                       default="viewer")


class RoleForm(AccountForm):
    role = SelectField(_l("Role"), choices=_role_choices, validate_choice=False)


def _form(form_class, **data):
    return form_class(formdata=None, account_id=str(current_user.account_id), **data)


# -- helpers -----------------------------------------------------------------------

def _actor() -> str:
    return f"cabinet:{current_user.login}"


def _company_or_404() -> Account:
    """The page exists for a company's owner looking at the company's own
    account; anyone else has nothing to manage here."""
    account = db().get(Account, current_user.account_id)
    if account is None or account.kind != "company":
        abort(404)
    return account


def _may_manage() -> None:
    """Role first (403 whatever the form holds), then the account."""
    if not current_user.may("users") \
            or current_user.account_id != current_user.own_account_id:
        abort(403)


def _posted(form: AccountForm) -> bool:
    _may_manage()
    sent = (form.account_id.data or "").strip()
    if sent and sent != str(current_user.account_id):
        abort(404)
    return form.validate_on_submit()


def _page(status: int = 200, *, error: str | None = None, invite_form=None,
          shown_link: str | None = None, invited=None):
    account = _company_or_404()
    rows = company_users.listing(db(), account.id, utcnow())
    return render_template(
        "users.html", account=account, rows=rows, roles=ROLES, rights=ROLE_RIGHTS,
        states=STATES, me=current_user.user_id,
        invite_form=invite_form or _form(InviteForm),
        role_form=lambda row: _form(RoleForm, role=row.role),
        action_form=_form(AccountForm), shown_link=shown_link, invited=invited,
        # Issue 21: a login that manages a company's structure gives rights on
        # its departments on the company's Rights page.
        branch_rights=org.scope(db(), current_user.user_id, account.customer_id, "users")
        if account.customer_id else None,
        days=company_users.INVITE_DAYS, error=error), status


def _refused(error: DomainError, **context):
    db().rollback()
    if isinstance(error, company_users.Forbidden):
        abort(403)
    if isinstance(error, NotFound):
        abort(404)
    return _page(400, error=labels.error_text(error), **context)


def _invite_link(token: str) -> str:
    # The mailed link starts with the configured address, never the Host
    # header; the link shown to the owner in their own browser may use it.
    base = current_app.config["ABONENT_PUBLIC_URL"] or request.url_root.rstrip("/")
    return base + url_for("users.accept", token=token)


def _mail(invitation: company_users.Invitation, account: Account) -> bool:
    """Send the link by mail if it can go; False: show it to the owner."""
    if not invitation.recipient or not current_app.config["ABONENT_PUBLIC_URL"]:
        return False
    subject = _("Invitation to the subscriber cabinet")
    body = "\n\n".join([
        _("%(who)s invites you to the subscriber cabinet of %(name)s (account %(number)s) "
          "as %(role)s.", who=current_user.login, name=account.name, number=account.number,
          role=ROLES[invitation.role]),
        _("Your login is %(login)s. To set your password, open this link within %(days)s "
          "days:", login=invitation.login, days=company_users.INVITE_DAYS),
        _invite_link(invitation.token),
        _("The link works once. If you do not expect this invitation, ignore this mail."),
    ]) + "\n"
    smtp = current_app.extensions["abonent"].settings.section("smtp")
    channel = EmailChannel(smtp["host"], smtp["port"], smtp["sender"])
    threading.Thread(target=_deliver, args=(channel, invitation.recipient, subject, body,
                                            invitation.user_id),
                     name="cabinet-invite-mail", daemon=True).start()
    return True


def _invited(invitation: company_users.Invitation, account: Account):
    """The answer to an invitation (or a new link): the mail went, or the
    link is shown this once."""
    if _mail(invitation, account):
        flash(_("The invitation for %(login)s has been sent to %(email)s.",
                login=invitation.login, email=invitation.recipient), "ok")
        return redirect(url_for("users.users"))
    return _page(shown_link=_invite_link(invitation.token), invited=invitation)


# -- the owner's page ------------------------------------------------------------------

@blueprint.route("/users")
@login_required
def users():
    _company_or_404()
    _may_manage()
    return _page()


@blueprint.route("/users/invite", methods=["POST"])
@login_required
def invite():
    form = InviteForm()
    if not _posted(form):
        return _page(400, invite_form=form)
    session = db()
    account = _company_or_404()
    try:
        invitation = company_users.invite(
            session, account.id, by_user_id=current_user.user_id, login=form.login.data,
            email=form.email.data, role=form.role.data, now=utcnow(), actor=_actor())
    except DomainError as error:
        return _refused(error, invite_form=form)
    session.commit()
    log.info("cabinet.user_invited account_id=%s user_id=%s role=%s", account.id,
             invitation.user_id, invitation.role)
    return _invited(invitation, account)


@blueprint.route("/users/<int:user_id>/link", methods=["POST"])
@login_required
def new_link(user_id: int):
    form = AccountForm()
    if not _posted(form):
        return _page(400, error=_("The form is incomplete; reload the page and try again."))
    session = db()
    account = _company_or_404()
    try:
        invitation = company_users.new_invitation(
            session, account.id, user_id, by_user_id=current_user.user_id, now=utcnow(),
            actor=_actor())
    except DomainError as error:
        return _refused(error)
    session.commit()
    return _invited(invitation, account)


@blueprint.route("/users/<int:user_id>/role", methods=["POST"])
@login_required
def change_role(user_id: int):
    form = RoleForm()
    if not _posted(form):
        return _page(400, error=_("The form is incomplete; reload the page and try again."))
    session = db()
    account = _company_or_404()
    try:
        changed = company_users.change_role(
            session, account.id, user_id, form.role.data, by_user_id=current_user.user_id,
            now=utcnow(), actor=_actor())
    except DomainError as error:
        return _refused(error)
    session.commit()
    flash(_("The role is changed.") if changed else _("Nothing changed."), "ok")
    return redirect(url_for("users.users"))


@blueprint.route("/users/<int:user_id>/remove", methods=["POST"])
@login_required
def remove(user_id: int):
    form = AccountForm()
    if not _posted(form):
        return _page(400, error=_("The form is incomplete; reload the page and try again."))
    session = db()
    account = _company_or_404()
    try:
        login = company_users.remove(session, account.id, user_id,
                                     by_user_id=current_user.user_id, now=utcnow(),
                                     actor=_actor())
    except DomainError as error:
        return _refused(error)
    session.commit()
    log.info("cabinet.user_removed account_id=%s user_id=%s", account.id, user_id)
    flash(_("%(login)s can no longer log in to the cabinet.", login=login), "ok")
    return redirect(url_for("users.users"))


# -- the invitee's page (no login) ------------------------------------------------------

@blueprint.route("/invite", methods=["GET", "POST"])
def accept():
    session = db()
    if request.method == "GET":
        token = request.args.get("token", "")
        try:
            login = selfservice.reset_login(session, token, utcnow(), purpose="invite")
        except DomainError as error:
            return render_template("reset_refused.html", error=labels.error_text(error)), 400
        return render_template("invite_accept.html", form=ResetForm(token=token), login=login)
    form = ResetForm()
    if not form.validate_on_submit():
        if form.csrf_token.errors or form.token.errors:
            return render_template("reset_refused.html",
                                   error=_("The form has expired. Please reload the page "
                                           "and try again.")), 400
        return render_template("invite_accept.html", form=form, login=None), 400
    try:
        user = selfservice.complete_reset(session, form.token.data, form.new.data, utcnow(),
                                          actor="cabinet:invitation", purpose="invite")
    except selfservice.ResetLinkError as error:
        session.rollback()
        return render_template("reset_refused.html", error=labels.error_text(error)), 400
    except DomainError as error:
        session.rollback()
        return render_template("invite_accept.html", form=form, login=None,
                               error=labels.error_text(error)), 400
    session.commit()
    log.info("cabinet.invitation_accepted account_id=%s user_id=%s", user.account_id, user.id)
    # Whoever was logged in in this browser is logged out: the next login
    # is the invitee's.
    log_out_keeping_language()
    flash(_("Your password is set. Log in with your login %(login)s.", login=user.login), "ok")
    return redirect(url_for("auth.login"))


def manages_users() -> bool:
    """Whether the page's login may open the users page: an owner looking
    at its own company account (the request's account, read at login)."""
    from flask import g
    account = g.get("login_account")
    return (current_user.is_authenticated and account is not None
            and account.kind == "company" and current_user.may("users")
            and current_user.account_id == current_user.own_account_id)


def install(app) -> None:
    app.register_blueprint(blueprint)
    app.jinja_env.globals["manages_users"] = manages_users
