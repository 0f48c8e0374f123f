"""The "API tokens" page: a cabinet user makes and revokes personal tokens.

A new token is shown once, in the answer to the POST that made it: it is
never put in the session (a signed cookie, readable by its holder but
also kept by the browser) nor in a redirect, and the store keeps only its
hash (rating.api_tokens).
"""

from __future__ import annotations

import logging

from flask import Blueprint, Flask, abort, flash, g, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_limiter import Limiter
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import PasswordField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Optional

from cabinet import labels
from cabinet.app import db
from config.db import utcnow
from rating import api_tokens, cabinet_ops
from rating.accounts import DomainError, NotFound

log = logging.getLogger(__name__)

blueprint = Blueprint("tokens", __name__)

SCOPES = {"owner": _l("Owner: read and change"),
          "accountant": _l("Accountant: read and change"),
          "viewer": _l("Viewer: read only")}
# rating.api_tokens' sentences, marked for translation (labels.error_text).
MESSAGES = (_l("a token needs a name of 1 to 100 characters"),
            _l("a token cannot have more rights than its user"),
            _l("a token may live 1 to 366 days"),
            _l("a login may have at most 20 active tokens; revoke one first"))
OWNER_SCOPE = "owner"
PASSWORD_LIMITS = "5 per 15 minutes;20 per day"
LIFETIMES = (("30", _l("30 days")), ("90", _l("90 days")), ("365", _l("1 year")),
             ("", _l("Never")))


def _choices(pairs) -> list[SelectChoice]:
    return [SelectChoice(value, label) for value, label in pairs]


class TokenForm(FlaskForm):
    name = StringField(_l("Token name"), validators=[DataRequired(), Length(max=100)])
    scope = SelectField(_l("Rights"), choices=[])
    expires = SelectField(_l("Expires in"), choices=_choices(LIFETIMES), default="90")
    # Asked again for a token with the owner's rights: a session someone
    # else got hold of must not turn itself into a key that outlives it.
    password = PasswordField(_l("Your password"), validators=[Optional(), Length(max=256)])


class RevokeForm(FlaskForm):
    """Only the CSRF token: revoking is a POST."""


def _form() -> TokenForm:
    form = TokenForm()
    form.scope.choices = _choices((scope, SCOPES[scope])
                                  for scope in api_tokens.allowed_scopes(current_user.role))
    return form


def _page(form: TokenForm, status: int = 200, secret: str | None = None, error=None):
    now = utcnow()
    rows = [(token, token.status(now)) for token in
            api_tokens.tokens_of(db(), current_user.user_id)]
    return render_template("tokens.html", form=form, revoke_form=RevokeForm(), rows=rows,
                           secret=secret, scopes=SCOPES, error=error,
                           asks_password=OWNER_SCOPE in api_tokens.allowed_scopes(
                               current_user.role)), status


@blueprint.route("/tokens", methods=["GET", "POST"])
@login_required
def tokens():
    form = _form()
    if not form.is_submitted():
        return _page(form)
    if not form.validate_on_submit():
        return _page(form, 400)
    session = db()
    if form.scope.data == OWNER_SCOPE and not cabinet_ops.password_matches(
            session, current_user.user_id, form.password.data):
        # Only a wrong password counts towards the limit, not a missing one.
        g.token_password_refused = bool(form.password.data)
        form.password.errors.append(
            _("The password is wrong.") if form.password.data else
            _("Enter your password to create a token with the owner's rights."))
        log.info("cabinet.api_token_password_refused account_id=%s user_id=%s",
                 current_user.account_id, current_user.user_id)
        return _page(form, 403 if form.password.data else 400)
    try:
        token, secret = api_tokens.create(
            session, current_user.user_id, name=form.name.data, scope=form.scope.data,
            expires_in_days=int(form.expires.data) if form.expires.data else None,
            now=utcnow(), actor=f"cabinet:{current_user.login}")
    except DomainError as exc:
        session.rollback()
        return _page(form, 400, error=labels.error_text(exc))
    session.commit()
    log.info("cabinet.api_token_created account_id=%s user_id=%s prefix=%s",
             current_user.account_id, current_user.user_id, token.prefix)
    return _page(_form_after_create(), secret=secret)


def _password_key() -> str:
    return f"password-check|{getattr(current_user, 'user_id', '-')}"


def _password_refused(_response) -> bool:
    return bool(g.get("token_password_refused") or g.get("password_refused"))


def apply_limits(app: Flask, limiter: Limiter) -> None:
    """Wrong passwords on the token form and on the password change form
    count per login, in one budget: a stolen session must not guess the
    password on either."""
    shared = limiter.shared_limit(PASSWORD_LIMITS, scope="password-check",
                                  key_func=_password_key, methods=["POST"],
                                  deduct_when=_password_refused)
    for endpoint in ("tokens.tokens", "main.password"):
        app.view_functions[endpoint] = shared(app.view_functions[endpoint])


def _form_after_create() -> TokenForm:
    form = _form()
    form.name.data = ""
    return form


@blueprint.route("/tokens/<int:token_id>/revoke", methods=["POST"])
@login_required
def revoke(token_id: int):
    if not RevokeForm().validate_on_submit():
        abort(400)
    session = db()
    try:
        revoked = api_tokens.revoke(session, current_user.user_id, token_id,
                                    actor=f"cabinet:{current_user.login}")
    except NotFound:
        session.rollback()
        abort(404)
    session.commit()
    flash(_("The token is revoked.") if revoked else _("The token was revoked already."), "ok")
    return redirect(url_for("tokens.tokens"))
