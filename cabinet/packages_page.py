"""The packages page: service packages on and off, a promo code, bonus points.

The rules are rating.packages' and rating.promotions'; this page only
calls them. Every change is a POST with the CSRF token (Flask-WTF) and the
id of the account the page was drawn for, so a form left open in a tab
after logging in as someone else does not act on the new login. Owners and
accountants may change; a viewer looks.
"""

from __future__ import annotations

import logging
import re

from flask import Blueprint, abort, current_app, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import HiddenField, IntegerField, StringField
from wtforms.validators import AnyOf, DataRequired, InputRequired, Length

from cabinet.app import db
from cabinet.formatting import money, money_with_currency
from cabinet.views import CONTACT_EDITORS
from rating import jobs, packages, promotions
from rating.models import Account, Package
from rating.validate import DomainError

log = logging.getLogger(__name__)

blueprint = Blueprint("packages", __name__)

PERIODS = {"monthly": _l("a month"), "daily": _l("a day")}

# rating's sentences on this page, in the page's language: (pattern, msgid).
MESSAGES = (
    (re.compile(r"^this package is switched on and off by the operator only$"),
     _l("This package is switched on and off by the operator only.")),
    (re.compile(r"^the balance is not enough for the package's fee of (?P<value>[0-9.]+)$"),
     _l("The balance is not enough for the package's fee of %(value)s.")),
    (re.compile(r"^package .* is archived and not offered any more$"),
     _l("This package is not offered any more.")),
    (re.compile(r"^account \S+ is \w+; a package needs an active account$"),
     _l("A package can be switched on only on an active account.")),
    (re.compile(r"^promo code (?P<value>\S+) does not exist$"),
     _l("There is no promo code %(value)s.")),
    (re.compile(r"^promo code (?P<value>\S+) expired on \S+$"),
     _l("Promo code %(value)s has expired.")),
    (re.compile(r"^promo code (?P<value>\S+) has been used up$"),
     _l("Promo code %(value)s has been used up.")),
    (re.compile(r"^promo code (?P<value>\S+) was already redeemed for this account$"),
     _l("Promo code %(value)s has already been used on this account.")),
    (re.compile(r"^a promo code is 3-32 letters, digits, dashes or underscores$"),
     _l("A promo code is 3 to 32 letters, digits, dashes or underscores.")),
)


def error_text(error: Exception) -> str:
    message = str(error)
    for pattern, text in MESSAGES:
        match = pattern.match(message)
        if match:
            value = match.groupdict().get("value")
            if value is not None and re.fullmatch(r"[0-9]+\.[0-9]{2}", value):
                from decimal import Decimal
                value = money(Decimal(value))
            return str(text) % {"value": value} if value is not None else str(text)
    return message[:1].upper() + message[1:]


class SwitchForm(FlaskForm):
    account_id = IntegerField(validators=[InputRequired()])
    package_id = IntegerField(validators=[InputRequired()])
    action = HiddenField(validators=[AnyOf(["on", "off"])])


class PromoForm(FlaskForm):
    account_id = IntegerField(validators=[InputRequired()])
    code = StringField(_l("Promo code"), validators=[DataRequired(), Length(max=64)])


def _actor() -> str:
    return f"cabinet:{current_user.login}"


def _today():
    return jobs.local_today(current_app.config["BABEL_DEFAULT_TIMEZONE"])


def _page(status: int = 200, error: str | None = None, promo_form: PromoForm | None = None):
    session = db()
    account = session.get(Account, current_user.account_id)
    if account is None:
        abort(404)
    rule = promotions.bonus_rule(session)
    return render_template(
        "packages.html", account=account, rows=packages.for_account(session, account.id),
        may_change=current_user.role in CONTACT_EDITORS, periods=PERIODS,
        points=promotions.points(session, account.id),
        earn_percent=rule.earn_percent if rule and rule.earn_percent > 0 else None,
        promo_form=promo_form or PromoForm(account_id=account.id), error=error), status


def _may_change() -> None:
    """A change may come only from an owner or accountant (a viewer: 403,
    whatever the form holds)."""
    if current_user.role not in CONTACT_EDITORS:
        abort(403)


def _own_form(form) -> None:
    """For the account the page was drawn for (another id answers 404)."""
    if form.account_id.data != current_user.account_id:
        abort(404)


@blueprint.route("/packages")
@login_required
def packages_page():
    return _page()


@blueprint.route("/packages/switch", methods=["POST"])
@login_required
def switch():
    _may_change()
    form = SwitchForm()
    if not form.validate_on_submit():
        return _page(400, _("The form is incomplete; reload the page and try again."))
    _own_form(form)
    session = db()
    account = session.get(Account, current_user.account_id)
    package = session.get(Package, form.package_id.data)
    if package is None:
        abort(404)
    try:
        done = packages.switch(session, account, package, form.action.data == "on",
                               today=_today(), actor=_actor(), by_subscriber=True)
    except DomainError as error:
        session.rollback()
        return _page(400, error_text(error))
    session.commit()
    if done.changed and form.action.data == "on":
        flash(_("%(name)s is on.", name=package.name) + (
            " " + _("%(amount)s charged for this period.",
                    amount=money_with_currency(done.charged))
            if done.charged else ""), "ok")
    elif done.changed:
        flash(_("%(name)s is off from the next period.", name=package.name), "ok")
    return redirect(url_for("packages.packages_page"))


@blueprint.route("/packages/promo", methods=["POST"])
@login_required
def redeem_promo():
    _may_change()
    form = PromoForm()
    if not form.validate_on_submit():
        return _page(400, promo_form=form)
    _own_form(form)
    session = db()
    account = session.get(Account, current_user.account_id)
    try:
        promotions.redeem(session, account, form.code.data, today=_today(), actor=_actor())
    except DomainError as error:
        session.rollback()
        return _page(400, error_text(error), promo_form=form)
    session.commit()
    flash(_("Promo code accepted."), "ok")
    return redirect(url_for("packages.packages_page"))
