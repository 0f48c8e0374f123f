"""The packages and options page: service packages (TV, extras) on and
off with their price and the day the change takes effect, the option
catalogue (turbo and others, each with its multiplier, hours, price and
monthly limit), a promo code, bonus points.

The rules are rating.packages', rating.options' and rating.promotions';
this page only calls them. Every change is a POST with the CSRF token
(Flask-WTF) and the id of the account the page was drawn for, so a form
left open in a tab after logging in as someone else (or switching
accounts) does not act on the new one. Who may do what is rating.roles':
packages change the service (the owner's), a promo code is money (the
owner's and the accountant's); anyone else gets 403 before the form is read.
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
from cabinet.plans import long_date
from config.db import utcnow
from rating import jobs, options, packages, promotions
from rating.models import Account, Package
from rating.validate import DomainError

log = logging.getLogger(__name__)

blueprint = Blueprint("packages", __name__)

PERIODS = {"monthly": _l("a month"), "daily": _l("a day")}
OPTION_KINDS = {"turbo": _l("Speed"), "traffic": _l("Traffic")}

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
    (re.compile(r"^the monthly spending limit is reached: "),
     _l("The monthly spending limit is reached: turbo, options and packages cannot be "
        "bought until the next month or until the limit is raised.")),
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


class AccountForm(FlaskForm):
    account_id = IntegerField(validators=[InputRequired()])


class SwitchForm(AccountForm):
    package_id = IntegerField(validators=[InputRequired()])
    action = HiddenField(validators=[AnyOf(["on", "off"])])


class PromoForm(AccountForm):
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
    rows = packages.for_account(session, account.id)
    now = utcnow()
    catalogue = options.on_sale(session)
    return render_template(
        "packages.html", account=account, rows=rows,
        terms=packages.switch_terms(session, account.id, rows, _today()),
        may_switch=current_user.may("service"),
        may_redeem=current_user.may("money"), periods=PERIODS,
        catalogue=catalogue, option_kinds=OPTION_KINDS,
        bought=options.bought_this_month_by_type(session, account.id, now) if catalogue else {},
        points=promotions.points(session, account.id),
        earn_percent=rule.earn_percent if rule and rule.earn_percent > 0 else None,
        promo_form=promo_form or PromoForm(account_id=account.id), error=error), status


def _change(form_class, group: str, act):
    """The one path of every change on this page: the role may make this
    group of changes (403 otherwise, whatever the form holds), the form is
    whole, it is for the account on screen (404 otherwise), then rating's
    call ``act(session, account, form)`` on the locked account row; a
    DomainError rolls everything back and redraws the page with rating's
    sentence. ``act`` returns the message to flash (None: nothing to say)."""
    if not current_user.may(group):
        abort(403)
    form = form_class()
    promo_form = form if isinstance(form, PromoForm) else None
    if not form.validate_on_submit():
        return _page(400, None if promo_form else
                     _("The form is incomplete; reload the page and try again."), promo_form)
    if form.account_id.data != current_user.account_id:
        abort(404)
    session = db()
    # Locked until the commit: a form sent twice at once is decided in turn.
    account = session.get(Account, current_user.account_id, with_for_update={"of": Account},
                          populate_existing=True)
    try:
        message = act(session, account, form)
    except DomainError as error:
        session.rollback()
        return _page(400, error_text(error), promo_form)
    session.commit()
    if message:
        flash(message, "ok")
    return redirect(url_for("packages.packages_page"))


@blueprint.route("/packages")
@login_required
def packages_page():
    return _page()


def _switch(session, account, form) -> str | None:
    package = session.get(Package, form.package_id.data)
    if package is None:
        abort(404)
    on = form.action.data == "on"
    today = _today()
    done = packages.switch(session, account, package, on, today=today, actor=_actor(),
                           by_subscriber=True)
    if not done.changed:
        return None
    if on:
        return _("%(name)s is on from today.", name=package.name) + (
            " " + _("%(amount)s charged for this period.", amount=money_with_currency(done.charged))
            if done.charged else " " + _("This period is paid already."))
    return _("%(name)s is off from %(day)s.", name=package.name,
             day=long_date(packages.next_period_start(package.fee_period, today)))


def _redeem(session, account, form) -> str:
    promotions.redeem(session, account, form.code.data, today=_today(), actor=_actor())
    return _("Promo code accepted.")


@blueprint.route("/packages/switch", methods=["POST"])
@login_required
def switch():
    return _change(SwitchForm, "service", _switch)


@blueprint.route("/packages/promo", methods=["POST"])
@login_required
def redeem_promo():
    return _change(PromoForm, "money", _redeem)
